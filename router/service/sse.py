"""Pure: Server-Sent Events as the dashboard's streams write them (the WHATWG `text/event-stream` format),
and what changed in a list of runs between two polls."""

from __future__ import annotations

from typing import Any

import orjson

MEDIA_TYPE = "text/event-stream"
HEADERS = {"cache-control": "no-store", "x-accel-buffering": "no"}  # no proxy may hold the events back


def event(name: str, data: Any, event_id: int | str | None = None) -> bytes:
    """One event: its name, its id (when given) and its data as one line of JSON."""
    head = f"event: {name}\n" + (f"id: {event_id}\n" if event_id is not None else "")
    return head.encode() + b"data: " + orjson.dumps(data) + b"\n\n"


def comment(text: str) -> bytes:
    """A comment line: a heartbeat that keeps proxies and the client from closing an idle stream."""
    return f": {text}\n\n".encode()


def retry(ms: int) -> bytes:
    """How long a client waits before it reconnects."""
    return f"retry: {ms}\n\n".encode()


def changed(seen: dict[str, int], runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The runs whose version is not the one `seen` holds for them; `seen` is updated to the new versions."""
    out = []
    for run in runs:
        if seen.get(run["id"]) != run.get("version", 0):
            seen[run["id"]] = run.get("version", 0)
            out.append(run)
    return out
