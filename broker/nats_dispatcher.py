"""The dispatcher: delivers a stream's events to one subscriber the way a Knative Trigger does.

One durable pull consumer per subscriber, filtered by one subject (`knflow.invoke.resize`). The pull
loop asks for at most as many messages as it has free slots (`max_in_flight`, batches of up to
`batch_size`), so no fetched message waits in memory while its ack timer runs. It is a lean loop of its
own: one inbox subscription and `$JS.API.CONSUMER.MSG.NEXT` requests, instead of nats-py's `fetch()`,
which costs a task, a `wait_for` and a uuid per message. Its messages come raw from nats-py's read loop
(`broker.jetstream_wire`): headers parsed when read, acks sent as pre-built frames.

Per message, in this order (DESIGN.md, Delivery guarantees):
1. decode the CloudEvent (binary or structured mode, `codec.decode_stored`); a message that is not one
   is logged and terminated (a retry cannot fix it);
2. deliver it (`broker.sinks`: an async callable or an HTTP URL with `Prefer: reply`);
3. success: publish the reply event, if any, and await JetStream's ack of it; then ack the input.
   A reply that cannot be stored fails the attempt (502), so the whole delivery is retried;
4. retryable failure (5xx, 408, 429, network error, timeout) with retries left: `nak(delay)` with the
   policy's backoff; JetStream redelivers it after the delay. `num_delivered` counts the attempts;
5. otherwise (no retries left, or another 4xx): the event, stamped with `knativeerrordest`,
   `knativeerrorcode` and `knativeerrordata`, goes to the dead-letter sink, and only once the sink took
   it is the input acked. A sink that fails gets the message back later (`nak`); with no sink the
   failure is logged as an error and the message terminated.
A knflow function's failed try carries its node log lines in its error body (`logs`): they go on to the
router as a `dev.knflow.node.logs` event before a retry, or inside the dead letter's data.
Nothing is acked on an error that a retry could fix. The consumer's `max_deliver` stays unlimited so that
the server never drops a message silently: the dispatcher counts attempts itself. `ack_wait` is
`timeout_s + ack_margin_s`; a message whose dispatcher dies mid-delivery comes back after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass
from typing import Any, Final, Literal

import aiohttp
import nats.js.errors
import structlog
from cloudevents.core.v1.event import CloudEvent
from nats.aio.client import Client as NATS
from nats.aio.subscription import Subscription
from nats.js.api import AckPolicy, ConsumerConfig, ConsumerInfo, DeliverPolicy

from broker import jetstream_wire as wire
from broker import metrics, tracing
from broker.codec import decode_stored
from broker.delivery import DeliveryOutcome, dead_letter_event, split_logs
from broker.errors import InvalidEvent, KnflowError
from broker.events import logs_event, with_delivery
from broker.nats import DEFAULT_LAYOUT, JetStreamPublisher, StreamLayout, escape_token
from broker.retry import Retry, retry_for
from broker.sinks import Sink, Target, make_target

__all__ = ["Dispatcher", "DispatcherStats"]

log = structlog.get_logger("knflow.broker")

_NAME_FORBIDDEN: Final = set(" \t\r\n.*>/\\")
_LOST_REQUEST_GRACE_S: Final = 0.5  # past its expiry, a pull request the server never answered is lost
_CONSUMER_GONE_S: Final = 1.0  # pause before asking again when the consumer or connection is missing


@dataclass
class DispatcherStats:
    delivered: int = 0  # acked after a successful attempt
    replies: int = 0  # reply events stored
    retries: int = 0  # naks with a backoff
    dead_letters: int = 0  # acked after the dead-letter sink took them
    terminated: int = 0  # not CloudEvents, or failed for good with no dead-letter sink


class Dispatcher:
    """Deliver the events on `filter_subject` to `subscriber` through the durable consumer `name`.

    `retry` is the subscriber's retry policy (none by default, as a Trigger without `delivery.retry`), which
    an event's own `knflowretry` overrides; `timeout_s` bounds one attempt (the Trigger's `timeout`)."""

    def __init__(
        self,
        nc: NATS,
        *,
        name: str,
        filter_subject: str,
        subscriber: Sink,
        layout: StreamLayout = DEFAULT_LAYOUT,
        retry: Retry | None = None,
        timeout_s: float = 30.0,
        dead_letter: Sink | None = None,
        max_in_flight: int = 64,
        batch_size: int = 200,
        deliver_policy: Literal["all", "new"] = "all",
        ack_margin_s: float = 10.0,
        pull_expires_s: float = 2.0,
        publisher: JetStreamPublisher | None = None,
    ) -> None:
        if not name or _NAME_FORBIDDEN & set(name):
            raise KnflowError(
                f"Consumer name {name!r} is not valid: no whitespace, '.', '*', '>', '/' or '\\'.", consumer=name
            )
        if not filter_subject.startswith(layout.prefix + "."):
            raise KnflowError(
                f"Dispatcher '{name}' filters subject {filter_subject!r}, which is outside stream "
                f"'{layout.stream}' ({layout.subjects[0]!r}).",
                consumer=name,
            )
        if max_in_flight < 1 or batch_size < 1:
            raise KnflowError(
                f"Dispatcher '{name}': max_in_flight={max_in_flight} and batch_size={batch_size} must be >= 1.",
                consumer=name,
            )
        retry = retry or Retry()
        problems = retry.problems() + ([] if timeout_s > 0 else [f"timeout_s must be a number > 0, got {timeout_s!r}"])
        if problems:
            raise KnflowError(f"Dispatcher '{name}' is invalid: {'; '.join(problems)}.", consumer=name)
        self.name = name
        self.filter_subject = filter_subject
        self.layout = layout
        self.retry = retry
        self.timeout_s = timeout_s
        self.max_in_flight = max_in_flight
        self.batch_size = batch_size
        self.deliver_policy = deliver_policy
        self.ack_margin_s = ack_margin_s
        self.pull_expires_s = pull_expires_s
        self.stats = DispatcherStats()
        self._nc = nc
        self._subscriber_sink = subscriber
        self._dead_letter_sink = dead_letter
        self._publisher = publisher or JetStreamPublisher(nc, layout)
        self._session: aiohttp.ClientSession | None = None
        self._subscriber: Target | None = None
        self._dead_letter: Target | None = None
        self._sub: Subscription | None = None
        self._inbox = ""
        self._inbox_bytes = b""
        self._loop_task: asyncio.Task[None] | None = None
        self._in_flight: set[asyncio.Task[None]] = set()
        self._slot_freed = asyncio.Event()
        self._request_done = asyncio.Event()
        self._request_subject = ""
        self._request_left = 0
        self._consumer_gone = False
        self._log = log.bind(consumer=name, subject=filter_subject)

    @classmethod
    def for_function(cls, nc: NATS, function: str, subscriber: Sink, **options: Any) -> Dispatcher:
        """The dispatcher of one knflow function: consumer `fn-{function}` on `knflow.invoke.{function}`."""
        layout = options.get("layout", DEFAULT_LAYOUT)
        name = f"fn-{escape_token(function)}"
        return cls(nc, name=name, filter_subject=layout.invoke_subject(function), subscriber=subscriber, **options)

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    def consumer_config(self) -> ConsumerConfig:
        return ConsumerConfig(
            durable_name=self.name,
            filter_subject=self.filter_subject,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.NEW if self.deliver_policy == "new" else DeliverPolicy.ALL,
            ack_wait=self.timeout_s + self.ack_margin_s,
            max_deliver=-1,
            max_ack_pending=max(1000, 4 * self.max_in_flight),
        )

    async def ensure_consumer(self) -> ConsumerInfo:
        """Create the durable consumer, or update it to this dispatcher's settings (idempotent)."""
        try:
            return await self._nc.jetstream().add_consumer(self.layout.stream, self.consumer_config())
        except nats.js.errors.APIError as err:
            raise KnflowError(
                f"Consumer '{self.name}' on stream '{self.layout.stream}' (filter {self.filter_subject!r}) cannot "
                f"be created or updated: {err.description} (JetStream error {err.err_code}). If its settings "
                "changed in a way JetStream cannot update, delete the consumer or choose another name.",
                consumer=self.name,
                stream=self.layout.stream,
            ) from None

    async def start(self) -> None:
        if self._loop_task is not None:
            raise KnflowError(f"Dispatcher '{self.name}' is already started.", consumer=self.name)
        await self.ensure_consumer()
        needs_http = isinstance(self._subscriber_sink, str) or isinstance(self._dead_letter_sink, str)
        if needs_http:
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=self.max_in_flight))
        self._subscriber = make_target(self._subscriber_sink, self._session, self.timeout_s)
        if self._dead_letter_sink is not None:
            self._dead_letter = make_target(self._dead_letter_sink, self._session, self.timeout_s)
        self._inbox = self._nc.new_inbox()
        self._inbox_bytes = self._inbox.encode()
        self._sub = await wire.subscribe_raw(self._nc, f"{self._inbox}.*", self._on_message)
        self._loop_task = asyncio.create_task(self._pull_loop(), name=f"knflow-dispatcher-{self.name}")
        self._log.info("dispatcher started", max_in_flight=self.max_in_flight)

    async def stop(self, drain_timeout_s: float = 10.0) -> None:
        """Stop pulling, let deliveries in flight finish (up to `drain_timeout_s`), then cancel the rest:
        their messages are neither acked nor lost, JetStream redelivers them after `ack_wait`."""
        if self._loop_task is None:
            return
        self._loop_task.cancel()
        await asyncio.gather(self._loop_task, return_exceptions=True)
        self._loop_task = None
        if self._sub is not None:
            await self._sub.unsubscribe()
            wire.unsubscribed(self._nc, self._sub)
            self._sub = None
        if self._in_flight:
            _done, pending = await asyncio.wait(set(self._in_flight), timeout=drain_timeout_s)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None
        self._log.info("dispatcher stopped", **vars(self.stats))

    async def __aenter__(self) -> Dispatcher:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # ---- pulling --------------------------------------------------------------------------------

    async def _pull_loop(self) -> None:
        next_subject = f"$JS.API.CONSUMER.MSG.NEXT.{self.layout.stream}.{self.name}"
        low_water = max(1, min(self.batch_size, self.max_in_flight) // 4)
        expires_ns = int(self.pull_expires_s * 1e9)
        request_number = 0
        while True:
            free = self.max_in_flight - len(self._in_flight)
            if free < low_water:
                self._slot_freed.clear()
                await self._slot_freed.wait()
                continue
            if self._consumer_gone:
                await asyncio.sleep(_CONSUMER_GONE_S)
                try:
                    await self.ensure_consumer()
                    self._consumer_gone = False
                except Exception as err:  # JetStream unavailable: keep trying, loudly
                    self._log.error("consumer unavailable, retrying", error=str(err))
                    continue
            request_number += 1
            batch = min(free, self.batch_size)
            self._request_subject = f"{self._inbox}.{request_number}"
            self._request_left = batch
            self._request_done.clear()
            payload = json.dumps({"batch": batch, "expires": expires_ns}).encode()
            try:
                await self._nc.publish(next_subject, payload, reply=self._request_subject)
            except Exception as err:  # connection closed or draining: keep trying, loudly
                self._log.error("cannot request messages", error=f"{type(err).__name__}: {err}")
                await asyncio.sleep(_CONSUMER_GONE_S)
                continue
            # the server ends a request with `batch` messages or a status; a lost one (reconnect) times out
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._request_done.wait(), self.pull_expires_s + _LOST_REQUEST_GRACE_S)

    def _on_message(self, subject: bytes, reply: bytes, data: bytes, headers: bytes | None) -> None:
        """From nats-py's read loop, raw (`broker.jetstream_wire.subscribe_raw`): a message's headers are
        parsed only when read, its acks are pre-built frames."""
        if subject.startswith(self._inbox_bytes):  # a status for a pull request, not a stream message
            self._on_status(subject.decode(), wire.parse_headers(headers) or {})
            return
        self._request_left -= 1
        if self._request_left <= 0:
            self._request_done.set()
        msg = wire.JsMsg(self._nc, subject.decode(), reply.decode(), data, headers)
        task = asyncio.create_task(self._deliver(msg))
        self._in_flight.add(task)
        task.add_done_callback(self._delivery_done)

    def _on_status(self, subject: str, headers: dict[str, str]) -> None:
        status = headers.get("Status", "")
        if status == "100":  # idle heartbeat
            return
        if status == "503" or (status == "409" and "Consumer Deleted" in headers.get("Description", "")):
            self._log.error("consumer or JetStream is gone", status=status, description=headers.get("Description"))
            self._consumer_gone = True
        elif status not in ("404", "408", "409"):
            self._log.warning("unexpected pull status", status=status, description=headers.get("Description"))
        if subject == self._request_subject:  # a late status of an abandoned request changes nothing
            self._request_done.set()

    def _delivery_done(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        self._slot_freed.set()

    # ---- delivering -----------------------------------------------------------------------------

    async def _deliver(self, msg: wire.AnyJsMsg) -> None:
        try:
            await self._handle(msg)
        except asyncio.CancelledError:
            raise
        except Exception:  # e.g. the connection dropped while acking: the message comes back after ack_wait
            self._log.exception("delivery crashed; JetStream redelivers after ack_wait", nats_subject=msg.subject)

    async def _handle(self, msg: wire.AnyJsMsg) -> None:
        attempt = _num_delivered(msg)
        try:
            event = decode_stored(msg.headers or {}, msg.data)
        except KnflowError as err:
            self._log.error(
                "message is not a CloudEvent; terminated",
                nats_subject=msg.subject,
                stream_seq=msg.metadata.sequence.stream,
                error=str(err),
            )
            await msg.term()
            self.stats.terminated += 1
            return
        event = with_delivery(event, attempt)  # a retry says so: knflowdelivery = 2, 3 ...
        metrics.delivery(event)
        if tracing.ON:  # a consumer span; the subscriber gets the event under it
            with tracing.process(event, msg.subject, "nats", consumer=self.name) as event:
                return await self._settle(msg, event, attempt)
        await self._settle(msg, event, attempt)

    async def _settle(self, msg: wire.AnyJsMsg, event: CloudEvent, attempt: int) -> None:
        """Deliver `event` (the message `msg`, its `attempt`-th delivery), then ack, nak or dead-letter it."""
        assert self._subscriber is not None
        outcome = await self._subscriber.deliver(event)
        if outcome.ok and outcome.reply is not None:
            outcome = await self._store_reply(event, outcome)
        if outcome.ok:
            if tracing.ON:
                tracing.set_outcome(outcome.status)
            await msg.ack()
            self.stats.delivered += 1
            return
        fields = dict(event_id=event.get_id(), attempt=attempt, status=outcome.status)
        outcome, logs = split_logs(outcome)  # a knflow function's lines of this try: to the router, either way
        if tracing.ON:  # the error without the lines: they are the node log's, not the span's
            tracing.set_outcome(outcome.status, outcome.error_body)
        retry = self._retry_for(event)
        if outcome.should_retry and attempt <= retry.retries:
            if logs is not None:
                await self._forward_logs(event, logs)
            delay_s = retry.delay_before_s(attempt)
            self._log.info("delivery retry", retry_in_s=delay_s, reason=_preview(outcome.error_body), **fields)
            await msg.nak(delay=delay_s)
            self.stats.retries += 1
            metrics.retried(event)
            return
        await self._to_dead_letter(msg, event, outcome, fields, logs)

    async def _forward_logs(self, event: CloudEvent, logs: dict[str, Any]) -> None:
        """A failed try's node log lines go to the router as `node.logs`, beside the results; one that cannot
        be stored is logged (the retry goes on: lines never hold a delivery up)."""
        try:
            await self._publisher.publish(logs_event(event, logs, f"/knflow/dispatchers/{self.name}"))
        except KnflowError as err:
            self._log.error("node log lines of a failed try not stored", event_id=event.get_id(), error=str(err))

    def _retry_for(self, event: CloudEvent) -> Retry:
        """The node's own retries, where the router set them (`knflowretry`); else the subscriber's."""
        try:
            return retry_for(event, self.retry)
        except InvalidEvent as err:
            self._log.error("bad retry policy on the event; the subscriber's applies", error=str(err))
            return self.retry

    async def _store_reply(self, event: CloudEvent, outcome: DeliveryOutcome) -> DeliveryOutcome:
        assert outcome.reply is not None
        try:
            await self._publisher.publish(outcome.reply)
        except KnflowError as err:
            reply_id = outcome.reply.get_id()
            return DeliveryOutcome.failed(502, f"reply '{reply_id}' to '{event.get_id()}' not stored: {err}")
        self.stats.replies += 1
        return outcome

    async def _to_dead_letter(
        self,
        msg: wire.AnyJsMsg,
        event: CloudEvent,
        outcome: DeliveryOutcome,
        fields: dict[str, Any],
        logs: dict[str, Any] | None = None,
    ) -> None:
        assert self._subscriber is not None
        reason = _preview(outcome.error_body)
        if self._dead_letter is None:
            self._log.error("failed for good, no dead-letter sink is set; terminated", reason=reason, **fields)
            await msg.term()
            self.stats.terminated += 1
            return
        await msg.in_progress()  # the dead-letter sink gets a full ack_wait of its own
        dead = dead_letter_event(event, outcome, self._subscriber.destination, logs)
        sink_outcome = await self._dead_letter.deliver(dead)
        if sink_outcome.ok:
            await msg.ack()
            self.stats.dead_letters += 1
            self._log.warning("dead-lettered", reason=reason, **fields)
            return
        delay_s = self.retry.delay_before_s(fields["attempt"])
        self._log.error(
            "dead-letter sink failed; will try again",
            sink=self._dead_letter.destination,
            sink_status=sink_outcome.status,
            sink_reason=_preview(sink_outcome.error_body),
            retry_in_s=delay_s,
            **fields,
        )
        await msg.nak(delay=delay_s)


def _num_delivered(msg: wire.AnyJsMsg) -> int:
    """`msg.metadata.num_delivered`, read from the ack subject without building all of the metadata
    (timestamp, sequence pairs), which costs 2-3% of a run on the hot path (bench/PROFILE.md)."""
    tokens = (msg.reply or "").split(".")
    if len(tokens) == 9 and tokens[0] == "$JS" and tokens[1] == "ACK":  # $JS.ACK.stream.consumer.delivered...
        return int(tokens[4])
    return msg.metadata.num_delivered  # the longer form (domain, account hash): nats-py reads it


def _preview(body: bytes, max_chars: int = 200) -> str:
    text = body.decode("utf-8", "replace")
    return text if len(text) <= max_chars else text[:max_chars] + "…"
