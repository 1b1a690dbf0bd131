"""External events and dead letters kept by JetStream, and read back for a time window (event replay, the
dashboard's Events page).

Ingress records each external event on `{prefix}.ext.{type}` before it answers 202; the router records each
dead letter it takes (an invoke whose retries ran out, without its `knflowtoken`) on
`{prefix}.dead.{function}`, which no consumer reads. The stream's retention (`max_age_s`) keeps them. `read`
takes a window from an ephemeral consumer that starts at `since` and stops at the stream's last sequence
when the read began, so each kept event is read once.
"""

from __future__ import annotations

from datetime import datetime, UTC

import nats.errors
from cloudevents.core.v1.event import CloudEvent
from nats.aio.client import Client as NATS
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from broker import extensions as ext
from broker.codec import decode, encode_binary, trusted_event
from broker.errors import KnflowError, PublishError
from broker.nats import JetStreamPublisher, StreamLayout, escape_token


class JetStreamEventLog:
    def __init__(self, nc: NATS, layout: StreamLayout, publisher: JetStreamPublisher) -> None:
        self.nc = nc
        self.layout = layout
        self.publisher = publisher

    async def record(self, event: CloudEvent) -> None:
        """Keep an external event; raises PublishError if JetStream did not store it."""
        await self.publisher.publish(event)

    async def record_dead_letter(self, event: CloudEvent) -> None:
        """Keep a dead letter for the dashboard, without its `knflowtoken` (a reader must not learn it)."""
        attributes = {k: v for k, v in event.get_attributes().items() if k != ext.TOKEN}
        headers, body = encode_binary(trusted_event(attributes, event.get_data()))
        headers["Nats-Msg-Id"] = f"dead:{event.get_id()}"  # not the invoke's id, which the window holds
        function = str(event.get_extension(ext.FUNCTION) or "unknown")
        subject = f"{self.layout.prefix}.dead.{escape_token(function)}"
        try:
            await self.nc.jetstream().publish(subject, body, headers=headers, stream=self.layout.stream)
        except (nats.errors.Error, TimeoutError) as exc:
            raise PublishError(
                f"dead letter '{event.get_id()}' not kept on {subject}: {type(exc).__name__}: {exc}",
                stream=self.layout.stream,
                subject=subject,
            ) from None

    async def read(
        self,
        since: datetime,
        event_type: str | None = None,
        max_events: int = 100_000,
        batch: int = 500,
        kind: str = "ext",
        idle_s: float = 1.0,
    ) -> list[CloudEvent]:
        """The events kept since `since`, oldest first: external ones (`kind` "ext", of `event_type` if given)
        or dead letters (`kind` "dead"); at most `max_events`; the read ends after `idle_s` without one."""
        js = self.nc.jetstream()
        last_seq = (await js.stream_info(self.layout.stream)).state.last_seq
        if kind == "ext" and event_type:
            subject = self.layout.external_subject(event_type)
        else:
            subject = f"{self.layout.prefix}.{kind}.>"
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
                    msgs = await sub.fetch(min(batch, max_events - len(out)), timeout=idle_s)
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
