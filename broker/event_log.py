"""External events kept by JetStream, and read back for a time window (event replay).

Ingress records each external event on `{prefix}.ext.{type}` before it answers 202; the stream's retention
(`max_age_s`) keeps them. `read` takes a window from an ephemeral consumer that starts at `since` and stops
at the stream's last sequence when the read began, so each kept event is read once.
"""

from __future__ import annotations

from datetime import datetime, UTC

import nats.errors
from cloudevents.core.v1.event import CloudEvent
from nats.aio.client import Client as NATS
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from broker.codec import decode
from broker.errors import KnflowError
from broker.nats import JetStreamPublisher, StreamLayout


class JetStreamEventLog:
    def __init__(self, nc: NATS, layout: StreamLayout, publisher: JetStreamPublisher) -> None:
        self.nc = nc
        self.layout = layout
        self.publisher = publisher

    async def record(self, event: CloudEvent) -> None:
        """Keep an external event; raises PublishError if JetStream did not store it."""
        await self.publisher.publish(event)

    async def read(
        self, since: datetime, event_type: str | None = None, max_events: int = 100_000, batch: int = 500
    ) -> list[CloudEvent]:
        js = self.nc.jetstream()
        last_seq = (await js.stream_info(self.layout.stream)).state.last_seq
        subject = self.layout.external_subject(event_type) if event_type else f"{self.layout.prefix}.ext.>"
        config = ConsumerConfig(
            deliver_policy=DeliverPolicy.BY_START_TIME,
            opt_start_time=since.astimezone(UTC),  # nats-py sends it as RFC 3339 with a Z
            ack_policy=AckPolicy.EXPLICIT,
            inactive_threshold=60.0,
            max_ack_pending=-1,
        )
        sub = await js.pull_subscribe(subject, stream=self.layout.stream, config=config)
        out: list[CloudEvent] = []
        try:
            while len(out) < max_events:
                try:
                    msgs = await sub.fetch(batch, timeout=1.0)
                except (TimeoutError, nats.errors.TimeoutError):
                    break  # nothing more in the window
                done = False
                for msg in msgs:
                    await msg.ack()
                    if msg.metadata.sequence.stream > last_seq:
                        done = True
                        break
                    try:
                        out.append(decode(msg.headers or {}, msg.data))
                    except KnflowError:
                        continue  # ingress only records valid CloudEvents; anything else is not replayable
                    if msg.metadata.sequence.stream >= last_seq:
                        done = True
                        break
                if done:
                    break
        finally:
            await sub.unsubscribe()
        return out


def since_from_seconds(seconds: float) -> datetime:
    return datetime.fromtimestamp(datetime.now(UTC).timestamp() - seconds, UTC)
