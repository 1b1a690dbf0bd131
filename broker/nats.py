"""NATS JetStream transport: the stream, its subject layout, and the publisher.

Stream and subjects (prefix `knflow`, stream `KNFLOW`; both configurable so that tests and several
installations share one server):

    stream KNFLOW                       subjects `knflow.>`, file storage, limits retention (max_age_s),
                                        duplicate_window_s (default 120 s) for Nats-Msg-Id dedupe
    knflow.invoke.{function}            dev.knflow.invoke            (extension knflowfunction)
    knflow.result.{pipeline}            dev.knflow.node.*            (extension knflowpipeline)
    knflow.run.{pipeline}.{state}       dev.knflow.run.{state}       (extension knflowpipeline)
    knflow.ext.{type}                   any other type: external events, the type as one token

A variable token is escaped so that it stays one token and the mapping stays one-to-one: `%`, `.`, `*`,
`>`, `/`, `\\`, whitespace, control and non-ASCII characters become `%XX` (UTF-8 bytes), so
`com.github.push` → `knflow.ext.com%2Egithub%2Epush`. A Trigger-like consumer filters one subject:
`knflow.invoke.resize`, `knflow.result.>`, `knflow.run.*.failed`, `knflow.ext.>`. (One filter subject
per consumer: nats-server 2.9 silently ignores `filter_subjects`.)

External events, run events and anything else carry the CloudEvent in binary mode: `ce-*` headers plus
`content-type`, the data as the payload, like the Knative NATS JetStream channel, so that what a channel
or a replay (`broker.event_log`) reads is what came in; binary data needs no base64. knflow's own hops,
invokes (`dev.knflow.invoke`) and results (`dev.knflow.node.*`), which only knflow's router and
dispatchers read, are structured mode instead (`codec.encode_compact`: one `content-type` header and one
JSON document written and read by orjson), about 40 % less CPU per message than fourteen `ce-*` headers
(bench/PROFILE.md). Both are standard CloudEvents NATS forms; the dispatcher reads both
(`codec.decode_stored`), so a stream written by an older version is read as before, and an older
dispatcher reads the structured form too. What a dispatcher sends an HTTP subscriber is binary mode
either way (`broker.sinks`). `Nats-Msg-Id` is the event id, so JetStream drops a duplicate published
within the duplicate window.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

import nats.errors
import nats.js.errors
import orjson
from cloudevents.core.v1.event import CloudEvent
from nats.aio.client import Client as NATS
from nats.js.api import PubAck, RetentionPolicy, StorageType, StreamConfig, StreamInfo

from broker import extensions as ext
from broker import jetstream_wire as wire
from broker import metrics, tracing
from broker.codec import encode_binary, encode_compact
from broker.errors import InvalidEvent, KnflowError, PayloadTooLarge, PublishError

__all__ = [
    "DEFAULT_LAYOUT",
    "JetStreamPublisher",
    "PublishError",
    "StreamLayout",
    "ensure_stream",
    "escape_token",
]

INVOKE_TYPE: Final = "dev.knflow.invoke"
NODE_TYPE_PREFIX: Final = "dev.knflow.node."
RUN_TYPE_PREFIX: Final = "dev.knflow.run."
_UNSAFE: Final = re.compile(r"[^\x21-\x7e]|[%.*>/\\]")
_NAME: Final = re.compile(r"[A-Za-z0-9_-]+")
_CHUNK: Final = 1000  # events per publish_many round: sent together, then their acks awaited
_PREFIX: Final = re.compile(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*")


def escape_token(text: str) -> str:
    """`text` as one NATS subject token (also a valid consumer name), reversibly: `a.b` → `a%2Eb`."""
    if not text:
        return "%00"  # an empty token is not allowed; '%00' cannot come from a non-empty text
    return _UNSAFE.sub(lambda m: "".join(f"%{b:02X}" for b in m.group().encode()), text)


@dataclass(frozen=True, slots=True)
class StreamLayout:
    """One stream over `{prefix}.>` and where each event goes in it."""

    stream: str = "KNFLOW"
    prefix: str = "knflow"
    duplicate_window_s: float = 120.0
    max_age_s: float = 7 * 24 * 3600.0
    replicas: int = 1

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.stream):
            raise KnflowError(
                f"Stream name {self.stream!r} is not valid. Use letters, digits, '-' and '_'.", stream=self.stream
            )
        if not _PREFIX.fullmatch(self.prefix):
            raise KnflowError(
                f"Subject prefix {self.prefix!r} is not valid. Use dot-separated tokens of letters, digits, "
                "'-' and '_' (like 'knflow' or 'team1.knflow').",
                prefix=self.prefix,
            )

    @property
    def subjects(self) -> list[str]:
        return [f"{self.prefix}.>"]

    def invoke_subject(self, function: str) -> str:
        return f"{self.prefix}.invoke.{escape_token(function)}"

    def result_subject(self, pipeline: str) -> str:
        return f"{self.prefix}.result.{escape_token(pipeline)}"

    def run_subject(self, pipeline: str, state: str) -> str:
        return f"{self.prefix}.run.{escape_token(pipeline)}.{escape_token(state)}"

    def external_subject(self, event_type: str) -> str:
        return f"{self.prefix}.ext.{escape_token(event_type)}"

    def subject_for(self, event: CloudEvent) -> str:
        """The subject of `event`, by its type and knflow's extensions (see the module's table)."""
        event_type = event.get_type()
        if event_type == INVOKE_TYPE:
            return self.invoke_subject(self._extension(event, ext.FUNCTION))
        if event_type.startswith(NODE_TYPE_PREFIX):
            return self.result_subject(self._extension(event, ext.PIPELINE))
        if event_type.startswith(RUN_TYPE_PREFIX) and len(event_type) > len(RUN_TYPE_PREFIX):
            state = event_type[len(RUN_TYPE_PREFIX) :]
            return self.run_subject(self._extension(event, ext.PIPELINE), state)
        return self.external_subject(event_type)

    @staticmethod
    def _extension(event: CloudEvent, name: str) -> str:
        value = event.get_extension(name)
        if value is None or value == "":
            raise InvalidEvent(
                f"Event '{event.get_id()}' of type '{event.get_type()}' lacks extension attribute '{name}' "
                f"(header ce-{name}), which routes it to a subject.",
                event_id=event.get_id(),
                attribute=name,
            )
        return str(value)

    def stream_config(self) -> StreamConfig:
        return StreamConfig(
            name=self.stream,
            subjects=self.subjects,
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            duplicate_window=self.duplicate_window_s,
            max_age=self.max_age_s,
            num_replicas=self.replicas,
        )


DEFAULT_LAYOUT: Final = StreamLayout()


async def ensure_stream(nc: NATS, layout: StreamLayout = DEFAULT_LAYOUT) -> StreamInfo:
    """Create the stream, or bring an existing one's subjects, duplicate window and max age up to date."""
    js = nc.jetstream()
    wanted = layout.stream_config()
    try:
        info = await js.stream_info(layout.stream)
    except nats.js.errors.NotFoundError:
        try:
            return await js.add_stream(wanted)
        except nats.js.errors.BadRequestError as err:
            if err.err_code != 10058:  # not "already in use" (created meanwhile): e.g. subjects overlap
                raise _stream_error(layout, "cannot be created", err) from None
            info = await js.stream_info(layout.stream)
    have = info.config
    if have.storage != StorageType.FILE:
        raise KnflowError(
            f"Stream '{layout.stream}' exists with {have.storage} storage; knflow needs file storage, which "
            f"cannot be changed in place. Delete the stream or choose another name.",
            stream=layout.stream,
        )
    if (
        sorted(have.subjects or []) != layout.subjects
        or have.duplicate_window != layout.duplicate_window_s
        or have.max_age != layout.max_age_s
    ):
        try:
            info = await js.update_stream(wanted)
        except nats.js.errors.APIError as err:
            raise _stream_error(layout, "cannot be updated", err) from None
    return info


def _stream_error(layout: StreamLayout, what: str, err: nats.js.errors.APIError) -> KnflowError:
    return KnflowError(
        f"Stream '{layout.stream}' over {layout.subjects[0]!r} {what}: {err.description} "
        f"(JetStream error {err.err_code}).",
        stream=layout.stream,
    )


_Message = tuple[CloudEvent, str, bytes, bytes]  # event, subject, header block, payload
_Result = PubAck | BaseException


class _Chunk:
    """The acks of one chunk of publishes, settled one by one from the publisher's inbox."""

    __slots__ = ("done", "left", "results")

    def __init__(self, size: int, done: asyncio.Future[None]) -> None:
        self.results: list[_Result | None] = [None] * size
        self.left = size
        self.done = done

    def settle(self, index: int, result: _Result) -> None:
        self.results[index] = result
        self.left -= 1
        if self.left == 0 and not self.done.done():
            self.done.set_result(None)


class JetStreamPublisher:
    """Publishes CloudEvents to the stream and returns once JetStream has stored them.

    What all callers publish in one event-loop tick goes out together: one write of HPUB frames, one
    timeout and one wait for all their acks, then each caller gets its own acks (or its own
    PublishError). A router handling 200 results, or a dispatcher storing 200 replies, pays for one
    round of waiting, not 200 (bench/PROFILE.md). Each caller's events keep their order.

    The frames are built here (`broker.jetstream_wire`), not by nats-py's `publish_async`, which costs a
    regex per header, a random token and a future with callbacks per message. Each message's reply subject
    is `{inbox}.{number}` on one inbox subscription of this publisher; JetStream's ack to it settles the
    message's slot in its chunk, and the chunk's one future wakes the sender once all are in.
    """

    compact = True  # knflow's own invokes and results in structured mode (the module's docstring); False: binary

    def __init__(self, nc: NATS, layout: StreamLayout = DEFAULT_LAYOUT, *, ack_timeout_s: float = 5.0) -> None:
        wire.check_hooks()
        self._nc = nc
        self.layout = layout
        self.ack_timeout_s = ack_timeout_s
        self._queued: list[tuple[list[_Message], asyncio.Future[list[_Result]]]] = []  # this tick's callers
        self._senders: set[asyncio.Task[None]] = set()
        self._pending: dict[int, tuple[_Chunk, int]] = {}  # reply number -> (chunk, index): acks not in yet
        self._last_number = 0
        self._inbox = ""  # `_INBOX.xyz.`, once subscribed
        self._inbox_bytes = 0  # its length, to cut the number off an ack's subject
        self._subscribing = asyncio.Lock()

    async def ensure_stream(self) -> StreamInfo:
        return await ensure_stream(self._nc, self.layout)

    def message(self, event: CloudEvent) -> tuple[str, dict[str, str], bytes]:
        """Subject, headers and payload of `event` as it is stored."""
        subject = self.layout.subject_for(event)
        event_type = event.get_type()
        encoded = None
        if self.compact and (event_type == INVOKE_TYPE or event_type.startswith(NODE_TYPE_PREFIX)):
            encoded = encode_compact(event)
        headers, body = encoded or encode_binary(event)
        headers["Nats-Msg-Id"] = event.get_id()
        headers["Nats-Expected-Stream"] = self.layout.stream
        return subject, headers, body

    def _message(self, event: CloudEvent) -> _Message:
        """`message(event)` with its header block encoded, checked against the server's max_payload."""
        subject, headers, body = self.message(event)
        header = wire.header_block(headers)
        max_payload = self._nc.max_payload
        size = len(header) + len(body)
        if max_payload and size > max_payload:
            raise PayloadTooLarge(
                f"Event '{event.get_id()}' for subject '{subject}' is {size:,} bytes with headers; the NATS "
                f"server's max_payload is {max_payload:,} bytes.",
                event_id=event.get_id(),
                subject=subject,
            )
        return event, subject, header, body

    async def publish(self, event: CloudEvent) -> PubAck:
        """Store one event; a duplicate id within the window is acknowledged with `duplicate=True`."""
        return (await self.publish_many([event]))[0]

    async def publish_many(self, events: Iterable[CloudEvent]) -> list[PubAck]:
        """Store a batch: send it with the others of this tick without waiting, then await all their acks
        (one `ack_timeout_s` per chunk of 1,000). Raises `PublishError` if any event was not stored, listing
        them in `fields['failed_ids']`; the others are stored, and publishing all of them again is safe
        (ids dedupe)."""
        if tracing.ON:  # a producer span per event, its context in the event's traceparent
            events, spans = tracing.publishing(list(events), self.layout.subject_for, "nats")
        messages = [self._message(event) for event in events]
        if not messages:
            return []
        loop = asyncio.get_running_loop()
        done: asyncio.Future[list[_Result]] = loop.create_future()
        if not self._queued:
            loop.call_soon(self._send_queued)
        self._queued.append((messages, done))
        results = await done
        if tracing.ON:
            tracing.published(spans, results)
        failed = [(m[0], m[1], r) for m, r in zip(messages, results, strict=True) if isinstance(r, BaseException)]
        if failed:
            raise _publish_error(failed, len(messages), self)
        return results  # type: ignore[return-value]

    def _send_queued(self) -> None:
        queued, self._queued = self._queued, []
        task = asyncio.get_running_loop().create_task(self._send(queued))
        self._senders.add(task)
        task.add_done_callback(self._senders.discard)

    async def _send(self, queued: list[tuple[list[_Message], asyncio.Future[list[_Result]]]]) -> None:
        messages = [m for batch, _done in queued for m in batch]
        results: list[_Result] = []
        started = time.perf_counter()
        try:
            for start in range(0, len(messages), _CHUNK):
                results += await self._publish_chunk(messages[start : start + _CHUNK])
        except BaseException as err:  # cancelled while sending: what was not settled is not stored
            results += [err] * (len(messages) - len(results))
            raise
        finally:
            metrics.published(len(messages), time.perf_counter() - started)
            at = 0
            for batch, done in queued:
                if not done.done():
                    done.set_result(results[at : at + len(batch)])
                at += len(batch)

    async def _publish_chunk(self, messages: list[_Message]) -> list[_Result]:
        """Send `messages` in one write and wait for their acks; what has none within the timeout, or could
        not be sent, gets the reason instead. A connection lost meanwhile loses the acks in flight (they
        time out: the events may be stored, and publishing again is safe); frames queued while nats-py
        reconnects go out once it has, and their acks count if they come in time."""
        chunk = _Chunk(len(messages), asyncio.get_running_loop().create_future())
        first = self._last_number + 1
        self._last_number += len(messages)
        problem: BaseException = TimeoutError(f"no ack within ack_timeout_s={self.ack_timeout_s:g}")
        try:
            async with asyncio.timeout(self.ack_timeout_s):
                inbox = self._inbox or await self._subscribe()
                frames = []
                for index, (_event, subject, header, body) in enumerate(messages):
                    self._pending[first + index] = (chunk, index)
                    frames.append(wire.hpub_frame(subject, f"{inbox}{first + index}", header, body))
                await wire.send(self._nc, b"".join(frames), len(frames))
                await chunk.done
        except TimeoutError:
            pass
        except Exception as err:  # could not send (connection closed, ...): none of the chunk went out
            problem = err
        finally:
            for number in range(first, first + len(messages)):
                self._pending.pop(number, None)
        return [problem if result is None else result for result in chunk.results]

    async def _subscribe(self) -> str:
        async with self._subscribing:
            if not self._inbox:
                inbox = self._nc.new_inbox() + "."
                await wire.subscribe_raw(self._nc, inbox + "*", self._on_ack)
                self._inbox_bytes = len(inbox)
                self._inbox = inbox
        return self._inbox

    def _on_ack(self, subject: bytes, _reply: bytes, data: bytes, headers: bytes | None) -> None:
        entry = self._pending.pop(int(subject[self._inbox_bytes :]), None)
        if entry is None:  # late: its chunk timed out
            return
        chunk, index = entry
        chunk.settle(index, _ack_result(data, headers))


_PUB_ACK_FIELDS: Final = frozenset({"stream", "seq", "duplicate", "domain"})


def _ack_result(data: bytes, headers: bytes | None) -> _Result:
    """JetStream's answer to one publish: its PubAck, or the error it stands for."""
    if headers is not None and wire.status_of(headers) == "503":  # no responders: no stream on the subject
        return nats.js.errors.NoStreamResponseError()
    try:
        answer = orjson.loads(data)
    except orjson.JSONDecodeError:
        return nats.js.errors.APIError(description=f"unreadable ack {data[:200]!r}")
    if "error" in answer:
        try:
            nats.js.errors.APIError.from_error(answer["error"])  # raises the error's own class
        except nats.js.errors.APIError as err:
            return err
        return nats.js.errors.APIError(description=f"unreadable error {data[:200]!r}")
    if _PUB_ACK_FIELDS.issuperset(answer):
        return PubAck(**answer)
    return PubAck.from_response(answer)


def _publish_error(
    failed: list[tuple[CloudEvent, str, BaseException]], total: int, publisher: JetStreamPublisher
) -> PublishError:
    event, subject, err = failed[0]
    stream = publisher.layout.stream
    if isinstance(err, (nats.js.errors.NoStreamResponseError, nats.errors.NoRespondersError)):
        reason = f"no stream answered for it (is stream '{stream}' created? JetStreamPublisher.ensure_stream())"
    elif isinstance(err, (TimeoutError, asyncio.TimeoutError, nats.errors.TimeoutError)):
        reason = f"JetStream did not acknowledge it within ack_timeout_s={publisher.ack_timeout_s:g}"
    elif isinstance(err, nats.js.errors.APIError):
        reason = f"JetStream refused it: {err.description} (error {err.err_code})"
    else:
        reason = f"{type(err).__name__}: {err}"
    what = f"Event '{event.get_id()}' on subject '{subject}' was not stored in stream '{stream}': {reason}."
    if total > 1:
        what = f"{len(failed)} of {total} events were not stored. First: {what}"
    return PublishError(what, stream=stream, subject=subject, failed_ids=[e.get_id() for e, _s, _x in failed])
