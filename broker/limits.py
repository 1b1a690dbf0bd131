"""Limits on what comes in over HTTP, shared by both services (the router's and a function's): a request
body read as a stream against its size limit, and JSON nested no deeper than `MAX_JSON_DEPTH`.

The depth check costs two `bytes.count` calls for ordinary bodies (a body with fewer brackets than the limit
cannot nest past it); only a body with more is scanned, once, outside its strings.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from itertools import accumulate
from typing import Any, Final

from broker.errors import InvalidEvent, PayloadTooLarge

MAX_JSON_DEPTH: Final = 64  # arrays and objects inside each other; deeper is refused (400)
_STRING: Final = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKETS: Final = bytes(range(256)).translate(None, b"[]{}")  # the bytes to delete: all but brackets
_STEP: Final = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}


def json_depth_exceeded(raw: bytes | str, max_depth: int = MAX_JSON_DEPTH) -> bool:
    """Whether the JSON text nests arrays/objects deeper than `max_depth` (the text need not be valid JSON)."""
    data = raw.encode() if isinstance(raw, str) else raw
    if data.count(b"[") + data.count(b"{") <= max_depth:
        return False
    brackets = _STRING.sub(b"", data).translate(None, _BRACKETS)
    return max(accumulate(_STEP[b] for b in brackets), default=0) > max_depth


def check_json_depth(raw: bytes | str, what: str, max_depth: int = MAX_JSON_DEPTH) -> None:
    """InvalidEvent (400) naming `what` when the JSON nests deeper than `max_depth`."""
    if json_depth_exceeded(raw, max_depth):
        raise InvalidEvent(
            f"{what} nests JSON arrays/objects deeper than {max_depth} levels (the limit, MAX_JSON_DEPTH)",
            max_depth=max_depth,
        )


def loads(raw: bytes | str, what: str, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """JSON, its depth checked first; InvalidEvent (400) naming `what` for bad JSON or too deep a nesting."""
    check_json_depth(raw, what, max_depth)
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InvalidEvent(f"{what} is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except ValueError as exc:  # bad UTF-8 in bytes
        raise InvalidEvent(f"{what} is not JSON: {exc}") from None


async def read_body(chunks: AsyncIterator[bytes], max_bytes: int, declared_bytes: str | None = None) -> bytes:
    """The body, read as it streams in, or PayloadTooLarge (413) past `max_bytes`: nothing past the limit is
    kept. A body up to 16 times the limit is read (and dropped) before answering, so that the client, still
    sending, reads the 413 instead of a broken pipe."""
    kept: list[bytes] = []
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size <= max_bytes:
            kept.append(chunk)
        elif size > 16 * max_bytes:
            break
    if size > max_bytes:
        declared = int(declared_bytes) if declared_bytes and declared_bytes.isdigit() else size
        raise PayloadTooLarge(
            f"request body is {declared:,} bytes; the limit is {max_bytes:,} bytes (KNFLOW_MAX_BODY_BYTES)",
            size_bytes=declared,
            max_bytes=max_bytes,
        )
    return b"".join(kept)
