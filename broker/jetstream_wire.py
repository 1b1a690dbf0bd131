"""JetStream frames on nats-py's connection, without nats-py's per-message machinery.

knflow moves every event through the stream: a diamond run is 36 client messages (publishes, their acks,
deliveries, their acks). nats-py spends more Python per message than the rest of a hop together
(bench/PROFILE.md): a regex per header and a header block built per call in `publish`, a random token, a
future and two callbacks per `JetStreamContext.publish_async`, a queue and a task hop per delivered message
(`Subscription._wait_for_msgs`), a generator per header when parsing one, a generic `publish` per `Msg.ack`.
Here, the same bytes for less:

- `header_block`: the header block, byte for byte what nats-py's `publish` sends, built in one string;
- `hpub_frame` / `send`: whole HPUB and PUB frames, queued on the connection's outgoing buffer and flushed
  by its own flusher, as `publish` does;
- `subscribe_raw`: a subscription whose messages go to a plain function as raw bytes (subject, reply,
  payload, header block), bypassing `Msg`, header parsing and the subscription's queue;
- `JsMsg`: a delivered JetStream message with lazily parsed headers and pre-built ack frames;
- `parse_headers`: nats-py's header reading, without its per-character generator.

nats-py has no public API for any of these, so they use its private parts, all in this module and all
checked at import (`HOOKS`): `Client._send_command` and `Client._flush_pending` (queue and flush bytes, as
`_send_publish` does), `Client._max_pending_size`/`_pending_data_size`/`_flush_queue` (the buffer limits
that `publish` checks), `Client._process_msg` (the parser's call per MSG/HMSG: replaced on the instance by
`subscribe_raw`, which passes all other subscriptions' messages on untouched) and `Subscription._id`.
Written for nats-py `WRITTEN_FOR`; tests/test_jetstream_wire.py fails when the installed version differs,
so that an upgrade re-checks these hooks. Why not an upstream patch first: the hooks are what such a patch
would make public (a raw-message callback, a `publish_raw(bytes)`), and knflow needs the CPU now; this
module is the place to shrink once nats-py offers them.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Mapping
from typing import Final

import nats.errors
import structlog
from nats.aio.client import Client as NATS
from nats.aio.client import __version__ as NATS_PY_VERSION
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from broker.errors import KnflowError

__all__ = [
    "HOOKS",
    "NATS_PY_VERSION",
    "WRITTEN_FOR",
    "AnyJsMsg",
    "JsMsg",
    "RawHandler",
    "header_block",
    "hpub_frame",
    "parse_headers",
    "send",
    "subscribe_raw",
]

WRITTEN_FOR: Final = "2.16.0"

log = structlog.get_logger("knflow.broker")

# subject, reply, payload, header block (None without headers): the parser's bytes as they came
RawHandler = Callable[[bytes, bytes, bytes, bytes | None], None]

_HEADER_LINE: Final = "NATS/1.0\r\n"
_NEWLINES: Final = str.maketrans({"\r": " ", "\n": " "})  # as nats-py: a value stays on its line
_KEY_CHARS: Final = frozenset("!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
_ASCII_SPACE: Final = " \t\n\r\x0b\x0c"  # what bytes.strip() strips, as nats-py does
_good_keys: set[str] = set()  # header names already checked: knflow sends the same few dozen
_GOOD_KEYS_MAX: Final = 1024  # external events bring names of their own: the cache stays bounded
_RAW_HANDLERS: Final = "_knflow_raw_handlers"  # the attribute on a Client: sid -> RawHandler


def _hooks_present() -> bool:
    """Whether nats-py still has the private parts this module uses, with the signatures it expects."""
    try:
        client = NATS()
        process_msg = list(inspect.signature(NATS._process_msg).parameters)
        send_command = list(inspect.signature(NATS._send_command).parameters)
        return (
            process_msg == ["self", "sid", "subject", "reply", "data", "headers"]
            and send_command[:2] == ["self", "cmd"]
            and inspect.iscoroutinefunction(NATS._flush_pending)
            and isinstance(client._pending_data_size, int)
            and isinstance(client._max_pending_size, int)
            and hasattr(client, "_flush_queue")
            and "self._id = id" in inspect.getsource(Subscription.__init__)
            and "self.nc._process_msg(" in inspect.getsource(__import__("nats.protocol.parser").protocol.parser)
        )
    except (AttributeError, TypeError, OSError, ValueError):
        return False


HOOKS: Final = _hooks_present()


def check_hooks() -> None:
    """Raise, naming the fix, when the installed nats-py lacks the hooks (called by the lean paths' users)."""
    if not HOOKS:
        raise KnflowError(
            f"nats-py {NATS_PY_VERSION} changed the private parts that broker/jetstream_wire.py uses "
            f"(written for nats-py {WRITTEN_FOR}). Install nats-py=={WRITTEN_FOR}, or update that module.",
            nats_py=NATS_PY_VERSION,
        )


# ---- sending --------------------------------------------------------------------------------------


def header_block(headers: Mapping[str, str]) -> bytes:
    """The NATS header block of `headers`, byte for byte what nats-py's `publish(headers=...)` sends:
    names and values stripped, empty names skipped, CR and LF in a value become spaces, a name outside
    RFC 7230's token characters raises nats-py's `BadHeaderError`."""
    parts = [_HEADER_LINE]
    for name, value in headers.items():
        if name not in _good_keys:
            key = name.strip()
            if not key:
                continue
            if not _KEY_CHARS.issuperset(key):
                raise nats.errors.BadHeaderError(key)
            if key == name and len(_good_keys) < _GOOD_KEYS_MAX:
                _good_keys.add(name)
            name = key
        value = value.strip()
        if "\r" in value or "\n" in value:  # rare: `translate` with a table is slow
            value = value.translate(_NEWLINES)
        parts.append(f"{name}: {value}\r\n")
    parts.append("\r\n")
    return "".join(parts).encode()


def hpub_frame(subject: str, reply: str, header: bytes, payload: bytes) -> bytes:
    """One HPUB frame: `subject` (and `reply`, if any) with the header block `header` and `payload`."""
    size = len(header)
    if reply:
        line = f"HPUB {subject} {reply} {size} {size + len(payload)}\r\n"
    else:
        line = f"HPUB {subject} {size} {size + len(payload)}\r\n"
    return b"".join((line.encode(), header, payload, b"\r\n"))


async def send(nc: NATS, frame: bytes, messages: int = 1) -> None:
    """Queue `frame` (whole PUB/HPUB frames, `messages` of them) on `nc` and flush it as `publish` does:
    the same errors when closed or draining, and during a reconnect the same buffering (the frames go out
    once reconnected) up to the same limit."""
    if nc.is_closed:
        raise nats.errors.ConnectionClosedError
    if nc.is_draining_pubs:
        raise nats.errors.ConnectionDrainingError
    if not nc.is_connected and (nc._max_pending_size <= 0 or len(frame) + nc._pending_data_size > nc._max_pending_size):
        raise nats.errors.OutboundBufferLimitError
    nc.stats["out_msgs"] += messages
    await nc._send_command(frame)
    if nc._flush_queue is not None and nc._flush_queue.empty():
        await nc._flush_pending()


# ---- receiving ------------------------------------------------------------------------------------


async def subscribe_raw(nc: NATS, subject: str, handler: RawHandler) -> Subscription:
    """Subscribe `handler` to `subject`: it gets each message's raw bytes, synchronously, from the read
    loop. The subscription is nats-py's own (resubscribed on reconnect, `unsubscribe()` ends it); only its
    messages take the short way. `handler` must not block; what it raises is logged."""
    check_hooks()
    handlers: dict[int, RawHandler] | None = getattr(nc, _RAW_HANDLERS, None)
    if handlers is None:
        handlers = {}
        setattr(nc, _RAW_HANDLERS, handlers)
        _install(nc, handlers)
    sub = await nc.subscribe(subject)
    handlers[sub._id] = handler
    return sub


def unsubscribed(nc: NATS, sub: Subscription) -> None:
    """Forget the handler of `sub` (after `await sub.unsubscribe()`)."""
    getattr(nc, _RAW_HANDLERS, {}).pop(sub._id, None)


def _install(nc: NATS, handlers: dict[int, RawHandler]) -> None:
    general = nc._process_msg
    stats = nc.stats

    async def process_msg(sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes | None) -> None:
        handler = handlers.get(sid)
        if handler is None:
            return await general(sid, subject, reply, data, headers)  # type: ignore[arg-type]
        stats["in_msgs"] += 1
        stats["in_bytes"] += len(data)
        try:
            handler(subject, reply, data, headers)
        except Exception:  # a handler's bug must not end the connection's read loop
            log.exception("raw message handler failed", nats_subject=subject.decode("utf-8", "replace"))

    nc._process_msg = process_msg  # type: ignore[method-assign]


def parse_headers(block: bytes | None) -> dict[str, str] | None:
    """The headers of a header block as nats-py's `Msg.headers` has them: an inline status (`NATS/1.0 503
    No Responders`) as `Status` and `Description`, then `Name: Value` lines (values stripped, UTF-8 with
    replacement, lines without a colon or names with whitespace or non-ASCII skipped). One decode of the
    whole block and string operations, where nats-py decodes and checks line by line, char by char."""
    if not block:
        return None
    out: dict[str, str] = {}
    lines = block.decode("utf-8", "replace").split("\r\n")
    first = lines[0]
    if len(first) > 8:  # an inline status: `NATS/1.0 503 No Responders`
        status, _, description = first[9:].partition(" ")
        status = status.strip(_ASCII_SPACE)
        if status.isdigit():
            out["Status"] = status
        description = description.strip(_ASCII_SPACE)
        if description:
            out["Description"] = description
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep:
            continue
        name = name.strip(_ASCII_SPACE)
        if name.isascii() and (name.isalnum() or len(name.split()) == 1 or not name):
            out[name] = value.strip(_ASCII_SPACE)
    return out or None


class JsMsg:
    """A message a pull consumer delivered: headers parsed when first read, acks as pre-built frames.

    The same surface as nats-py's `Msg` for what a dispatcher uses (`subject`, `reply`, `data`, `headers`,
    `metadata`, `ack`, `nak`, `term`, `in_progress`), and the same rule: one final ack per message."""

    __slots__ = ("_ackd", "_headers", "_metadata", "_nc", "_raw_headers", "data", "reply", "subject")

    def __init__(self, nc: NATS, subject: str, reply: str, data: bytes, raw_headers: bytes | None) -> None:
        self._nc = nc
        self.subject = subject
        self.reply = reply
        self.data = data
        self._raw_headers = raw_headers
        self._headers: dict[str, str] | bool | None = False  # False: not parsed yet
        self._metadata: Msg.Metadata | None = None
        self._ackd = False

    @property
    def headers(self) -> dict[str, str] | None:
        if self._headers is False:
            self._headers = parse_headers(self._raw_headers)
        return self._headers  # type: ignore[return-value]

    @property
    def metadata(self) -> Msg.Metadata:
        if self._metadata is None:
            self._metadata = Msg.Metadata._from_reply(self.reply)
        return self._metadata

    async def ack(self) -> None:
        await self._final(b" 0\r\n\r\n")

    async def nak(self, delay: float | None = None) -> None:
        payload = b"-NAK"
        if delay:
            payload += b" " + json.dumps({"delay": int(delay * 10**9)}).encode()
        await self._final(b" %d\r\n%b\r\n" % (len(payload), payload))

    async def term(self) -> None:
        await self._final(b" 5\r\n+TERM\r\n")

    async def in_progress(self) -> None:
        """More time for this message (a full `ack_wait`); may be sent many times."""
        if not self.reply:
            raise nats.errors.NotJSMessageError
        await send(self._nc, b"PUB " + self.reply.encode() + b" 4\r\n+WPI\r\n")

    async def _final(self, tail: bytes) -> None:
        if not self.reply:
            raise nats.errors.NotJSMessageError
        if self._ackd:
            raise nats.errors.MsgAlreadyAckdError(self)
        await send(self._nc, b"PUB " + self.reply.encode() + tail)
        self._ackd = True

    def __repr__(self) -> str:
        return f"<JsMsg subject={self.subject!r} reply={self.reply!r} {len(self.data)} bytes>"


AnyJsMsg = JsMsg | Msg  # what a dispatcher settles: its own raw deliveries, or nats-py's (`fetch()`)


def status_of(block: bytes | None) -> str:
    """The inline status of a reply's header block (`503` for no responders), or '' if it has none."""
    if not block or not block.startswith(b"NATS/1.0 "):
        return ""
    return block[9:12].decode("ascii", "replace")
