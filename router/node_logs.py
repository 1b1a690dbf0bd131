"""Node logs as the router keeps them (pure): a try's lines checked as they arrive (`batch_of`), and a page of
stored lines as `GET /runs/{id}/logs` answers it (`page`).

A function sends each try's lines (functions/node_logs.py) in its reply's data, with a failed try's 503
body, or in a `dev.knflow.node.logs` event. The stores keep them in a table (collection) of their own,
`node_logs`, never in the run document: one row per line, keyed by run and `seq`, which counts the run's
lines as they are stored (so it increases within every attempt, and one cursor follows a whole run);
each row also has its `node` (an item's key, `gen[3]`, for a fan-out item), `attempt`, `at`, `stream`,
`level`, `message` and `fields`. A try's lines are stored once: a redelivered result brings the same
`batch` id, and a store that has it already stores nothing. How many older lines a try dropped (its
bounds: the last 1,000 lines or 256 KiB) is kept per try and answered as `truncated`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final, TypedDict

from router.runs import split_key

STREAMS: Final = ("log", "stdout", "stderr")
MAX_LINES: Final = 1000  # per try, as functions/node_logs.py keeps them; a longer batch keeps its last lines
MAX_MESSAGE_CHARS: Final = 32 * 1024
_BATCH_ID: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")
_SHORT: Final = 64  # the longest `at` and `level` taken as they are


class LogLine(TypedDict):
    """One stored line, as the API answers it."""

    node: str
    attempt: int
    seq: int
    at: str
    stream: str
    level: str | None
    message: str
    fields: dict[str, Any] | None


class LogPage(TypedDict):
    """`GET /runs/{id}/logs`: lines after the cursor, how many lines each try dropped, the next cursor."""

    run_id: str
    lines: list[LogLine]
    truncated: dict[str, int]  # "NODE:ATTEMPT" -> lines dropped (only tries that dropped some)
    next_after: int  # the seq to ask after next (`after`), the last line's or the one asked with


@dataclass(frozen=True)
class LogBatch:
    """One try's lines, checked: each line a dict of `at`, `stream`, `level`, `message`, `fields`."""

    batch: str
    dropped: int
    lines: list[dict[str, Any]]


class InvalidLogs(ValueError):
    """A `logs` value that is not a batch of lines."""


def batch_of(raw: Any) -> LogBatch:
    """The batch in a result's `logs`; a line that is not one is dropped and counted. InvalidLogs when
    `raw` is not a batch at all."""
    if not isinstance(raw, dict):
        raise InvalidLogs(f"logs must be an object with 'batch', 'dropped' and 'lines', got {type(raw).__name__}")
    batch, dropped, lines = raw.get("batch"), raw.get("dropped", 0), raw.get("lines")
    if not isinstance(batch, str) or not _BATCH_ID.fullmatch(batch):
        raise InvalidLogs(f"logs.batch must be 1 to 64 letters, digits, '-' or '_', got {batch!r:.80}")
    if not isinstance(dropped, int) or isinstance(dropped, bool) or dropped < 0:
        raise InvalidLogs(f"logs.dropped must be an integer >= 0, got {dropped!r:.80}")
    if not isinstance(lines, list):
        raise InvalidLogs(f"logs.lines must be a list, got {type(lines).__name__}")
    if len(lines) > MAX_LINES:
        dropped += len(lines) - MAX_LINES
        lines = lines[-MAX_LINES:]
    kept = [line for raw_line in lines if (line := _line(raw_line)) is not None]
    return LogBatch(batch, dropped + len(lines) - len(kept), kept)


def _line(raw: Any) -> dict[str, Any] | None:
    if not isinstance(raw, dict):
        return None
    at, stream, level, message, fields = (raw.get(k) for k in ("at", "stream", "level", "message", "fields"))
    if not isinstance(at, str) or len(at) > _SHORT or stream not in STREAMS or not isinstance(message, str):
        return None
    if level is not None and (not isinstance(level, str) or len(level) > _SHORT):
        return None
    if fields is not None and not isinstance(fields, dict):
        return None
    if len(message) > MAX_MESSAGE_CHARS:
        message = message[:MAX_MESSAGE_CHARS] + "… [line cut]"
    return {"at": at, "stream": stream, "level": level, "message": message, "fields": fields or None}


def base_node(node: str) -> str:
    """The pipeline node a line's `node` belongs to: `gen` for an item `gen[3]`."""
    return split_key(node)[0]


def node_filter(node: str) -> tuple[str, str]:
    """How a `node=` filter reads: ("node", key) for an item's key (`gen[3]`), else ("base", node): the node
    and, for a fan-out node, every item of it."""
    return ("node", node) if split_key(node)[1] is not None else ("base", node)


def truncation_key(node: str, attempt: int) -> str:
    return f"{node}:{attempt}"


def page(run_id: str, lines: list[LogLine], truncated: dict[str, int], after: int) -> LogPage:
    return {
        "run_id": run_id,
        "lines": lines,
        "truncated": truncated,
        "next_after": lines[-1]["seq"] if lines else after,
    }
