"""Node logs: what one try of an invoke writes, kept within bounds and sent to the router with its outcome.

`Lines` holds one try's lines: `ctx.log` calls (stream `log`, with a level and the bound key/values as
`fields`), and, where the function runs in its own process (functions/server.py), what it writes to
`sys.stdout` and `sys.stderr` during the invoke (streams `stdout`, `stderr`; `capture_streams()` puts a tee
on both that writes through to the real stream). Several invokes run at once in one process: each runs in a
context of its own, so `CURRENT` (a context variable, inherited by the tasks and threads it starts) says
which invoke a write belongs to.

Bounds: the last `MAX_LINES` lines or `MAX_BYTES` of text, whichever is reached first; older lines are
dropped and counted (`dropped`). A line longer than `MAX_LINE_CHARS` is cut, and says so. Recording a line
costs a tuple and a timestamp; the lines are masked (broker/redact.py) and shaped only once, by `batch()`,
when the try ends:

    {"batch": "3f9c1a2b7d4e", "dropped": 0,
     "lines": [{"at": "2026-01-01T00:00:00.000Z", "stream": "log", "level": "info", "message": "...",
                "fields": {...}}, ...]}

`batch` names the try (a redelivered result carries the same one; another try of the same attempt, which a
Knative broker does not number, another), so the router stores each try's lines once.
"""

from __future__ import annotations

import json
import secrets
import sys
import threading
import traceback
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Final, TextIO

from broker.events import now_iso
from broker.redact import MASK, SECRET_NAME, redact_credentials

MAX_LINES: Final = 1000
MAX_BYTES: Final = 256 * 1024
MAX_LINE_CHARS: Final = 16 * 1024
_LINE_OVERHEAD_BYTES: Final = 64  # what a line's time, stream and level weigh besides its text
_MAX_DEPTH: Final = 6  # fields nested deeper are written as text

CURRENT: ContextVar[Lines | None] = ContextVar("knflow_node_lines", default=None)
_QUIET: ContextVar[bool] = ContextVar("knflow_node_lines_quiet", default=False)  # ctx.log writing the process log


class Lines:
    """One try's lines, bounded. `streams`: whether stdout and stderr are taken too (a function's own process)."""

    __slots__ = ("_bytes", "_lines", "_lock", "_partial", "dropped", "streams")

    def __init__(self, streams: bool = False) -> None:
        self.streams = streams
        self.dropped = 0
        self._lock = threading.Lock()  # the threads an invoke starts write too
        self._lines: deque[tuple[str, str, str | None, str, dict[str, Any] | None, int]] = deque()
        self._bytes = 0
        self._partial: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self._lines)

    def log(self, level: str, event: Any, args: tuple[Any, ...], fields: dict[str, Any]) -> None:
        """A `ctx.log` call: `event` (formatted with `args`, %-style, as the logging module does)."""
        message = str(event) if event is not None else ""
        if args:
            try:
                message %= args
            except (TypeError, ValueError):
                message = " ".join([message, *map(str, args)])
        if level == "exception" or fields.get("exc_info"):
            fields.pop("exc_info", None)
            if sys.exc_info()[0] is not None:
                fields["exception"] = traceback.format_exc()
            level = "error" if level == "exception" else level
        self.add("log", level, message, _plain(fields, 0) if fields else None)

    def write(self, stream: str, text: str) -> None:
        """Text written to stdout or stderr: each complete line is a line; the rest waits for its end."""
        with self._lock:
            self._write(stream, text)

    def _write(self, stream: str, text: str) -> None:
        text = self._partial.pop(stream, "") + text
        if "\n" in text:
            *complete, text = text.split("\n")
            for line in complete:
                self._add(stream, None, line.removesuffix("\r"), None)
        if len(text) > MAX_LINE_CHARS:  # a line without an end: taken as it is, so that it stays bounded
            self._add(stream, None, text, None)
            text = ""
        if text:
            self._partial[stream] = text

    def add(self, stream: str, level: str | None, message: str, fields: dict[str, Any] | None) -> None:
        with self._lock:
            self._add(stream, level, message, fields)

    def _add(self, stream: str, level: str | None, message: str, fields: dict[str, Any] | None) -> None:
        if len(message) > MAX_LINE_CHARS:
            message = f"{message[:MAX_LINE_CHARS]}… [line cut: {len(message) - MAX_LINE_CHARS} more characters]"
        size = _LINE_OVERHEAD_BYTES + (len(message) if message.isascii() else len(message.encode("utf-8", "replace")))
        if fields:
            text = json.dumps(fields, ensure_ascii=False, default=str)
            if len(text) > MAX_LINE_CHARS:  # bound the fields as a line is bounded: kept as cut text
                fields = {"fields": f"{text[:MAX_LINE_CHARS]}… [cut: {len(text) - MAX_LINE_CHARS} more characters]"}
                text = fields["fields"]
            size += len(text)
        self._lines.append((now_iso(), stream, level, message, fields, size))
        self._bytes += size
        while len(self._lines) > MAX_LINES or self._bytes > MAX_BYTES:
            self._bytes -= self._lines.popleft()[5]
            self.dropped += 1

    def batch(self) -> dict[str, Any] | None:
        """The lines as they travel to the router (see the module's docstring), masked; None if there are none."""
        if self._partial:
            with self._lock:
                for stream in list(self._partial):
                    self._add(stream, None, self._partial.pop(stream), None)
        if not self._lines and not self.dropped:
            return None
        lines = []
        for at, stream, level, message, fields, _size in self._lines:
            line: dict[str, Any] = {"at": at, "stream": stream, "message": _clean(redact_credentials(message))}
            if level is not None:
                line["level"] = level
            if fields:
                line["fields"] = _masked(fields)
            lines.append(line)
        return {"batch": secrets.token_hex(6), "dropped": self.dropped, "lines": lines}


def _plain(value: Any, depth: int) -> Any:
    """`value` as JSON can carry it, now (a mutable object may change after the call): what JSON cannot
    hold is written as text."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return value if -(2**63) <= value < 2**63 else str(value)
    if isinstance(value, float):
        return value if value == value and value not in (float("inf"), float("-inf")) else str(value)
    if depth < _MAX_DEPTH and isinstance(value, dict):
        return {str(k): _plain(v, depth + 1) for k, v in value.items()}
    if depth < _MAX_DEPTH and isinstance(value, (list, tuple, set, frozenset)):
        return [_plain(v, depth + 1) for v in value]
    text = repr(value)
    return text if len(text) <= MAX_LINE_CHARS else text[:MAX_LINE_CHARS] + "…"


def _masked(value: Any) -> Any:
    """Fields with secrets masked: the value of a key that names one (password, token, api_key ...), and
    credentials inside any text (broker.redact.redact_credentials)."""
    if isinstance(value, str):
        return _clean(redact_credentials(value))
    if isinstance(value, dict):
        return {k: MASK if SECRET_NAME.search(k) and v is not None else _masked(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_masked(v) for v in value]
    return value


def _clean(text: str) -> str:
    """Text that every store can hold: lone surrogates (from bytes decoded with surrogateescape) replaced."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")
    return text


class _Tee:
    """`sys.stdout` or `sys.stderr` while a function service runs: every write goes to the real stream, and
    also to the lines of the invoke whose context it happens in, if any."""

    def __init__(self, real: TextIO, stream: str) -> None:
        self._real = real
        self._stream = stream

    def write(self, text: str) -> int:
        written = self._real.write(text)
        lines = CURRENT.get()
        if lines is not None and lines.streams and not _QUIET.get() and isinstance(text, str):
            lines.write(self._stream, text)
        return written

    def writelines(self, texts: Any) -> None:
        for text in texts:
            self.write(text)

    def flush(self) -> None:
        self._real.flush()

    def __getattr__(self, name: str) -> Any:  # fileno, isatty, encoding, buffer ...: the real stream's
        return getattr(self._real, name)


@contextmanager
def capture_streams() -> Iterator[None]:
    """While inside, writes to sys.stdout and sys.stderr during an invoke are also that invoke's lines."""
    saved = sys.stdout, sys.stderr
    tees = _Tee(saved[0], "stdout"), _Tee(saved[1], "stderr")
    sys.stdout, sys.stderr = tees  # type: ignore[assignment]  # a TextIO in all that is used
    try:
        yield
    finally:
        if sys.stdout is tees[0]:
            sys.stdout = saved[0]
        if sys.stderr is tees[1]:
            sys.stderr = saved[1]


@contextmanager
def quiet() -> Iterator[None]:
    """While inside (ctx.log writing the process's own log line), the tee does not take the writes again."""
    token = _QUIET.set(True)
    try:
        yield
    finally:
        _QUIET.reset(token)
