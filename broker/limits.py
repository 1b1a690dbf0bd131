"""Limits on what comes in over HTTP, shared by both services (the router's and a function's): a request
body read as a stream against its size limit, JSON nested no deeper than `MAX_JSON_DEPTH`, and JSON values that
knflow can carry on (`check_values`: no lone surrogate, no integer past 64 bits, no NaN).

The depth check costs two `bytes.count` calls for ordinary bodies (a body with fewer brackets than the limit
cannot nest past it); only a body with more is scanned, once, outside its strings.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import AsyncIterator
from itertools import accumulate
from typing import Any, Final

from broker.errors import InvalidEvent, PayloadTooLarge

MAX_JSON_DEPTH: Final = 64  # arrays and objects inside each other; deeper is refused (400)
_STRING: Final = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKETS: Final = bytes(range(256)).translate(None, b"[]{}")  # the bytes to delete: all but brackets
_STEP: Final = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}
INT64_MIN: Final = -(2**63)  # JSON integers knflow carries: BSON's and orjson's signed 64 bits
INT64_MAX: Final = 2**63 - 1
_SUSPECT_ESCAPE: Final = re.compile(rb"\\u[dD][89a-fA-F]|\\u0000")  # a surrogate or a NUL, escaped
_DIGITS_AS_ZERO: Final = bytes.maketrans(b"123456789", b"000000000")
_LONG_NUMBER: Final = b"0" * 19  # 19 digits in a row: maybe an integer past 64 bits


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


def may_hold_bad_values(raw: bytes) -> bool:
    """Whether JSON text could hold what check_values refuses: orjson reads an integer past 64 bits as a float
    and keeps lone surrogates, so such text goes the `json` way, and is checked. What one regex over the
    whole text finds, at a fifth of its cost (`in` and `translate` are C loops; the regex runs only where
    an escape is): it runs on every message a dispatcher decodes (bench/PROFILE.md)."""
    return (
        b"NaN" in raw
        or b"Infinity" in raw
        or (b"\\u" in raw and _SUSPECT_ESCAPE.search(raw) is not None)
        or _LONG_NUMBER in raw.translate(_DIGITS_AS_ZERO)
    )


def check_values(value: Any, raw: bytes | str, what: str) -> Any:
    """`value` (decoded from the JSON `raw`), or InvalidEvent (400) naming `what` and the field when a value is
    one that `json` reads but knflow cannot carry on (store as JSON or BSON, publish, answer as UTF-8): a lone
    surrogate (`"\\ud800"`), an integer outside 64 bits, NaN or Infinity (not JSON, RFC 8259), a key with a NUL
    (`"\\u0000"`: BSON's keys cannot hold one). Otherwise each would be a 500 far from its cause, or a value
    silently changed. Only text that could hold one (`may_hold_bad_values`) is walked; a valid pair
    (`"\\ud83d\\ude00"`) is one character once read, and passes."""
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    if not may_hold_bad_values(data):
        return value
    problem = bad_value(value)
    if problem is not None:
        where, why = problem
        field = field_path(where)
        raise InvalidEvent(f"{what}{f' field {field!r}' if field else ''}: {why}", field=field)
    return value


def field_path(where: tuple[str | int, ...]) -> str | None:
    """A value's path as users write it (`a[1].n`); None for the whole value."""
    return "".join(f"[{k}]" if isinstance(k, int) else f".{k}" for k in where).lstrip(".") or None


def bad_value(value: Any, where: tuple[str | int, ...] = ()) -> tuple[tuple[str | int, ...], str] | None:
    """The first value knflow cannot carry (see check_values), as (its path, the reason); None when there is
    none. Types JSON has not (a YAML date) are left to whoever reads them."""
    if isinstance(value, str):
        return None if _encodable(value) else (where, "a string holds a lone UTF-16 surrogate (\\ud800-\\udfff)")
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        ok = INT64_MIN <= value <= INT64_MAX
        return None if ok else (where, f"the integer {str(value)[:30]} is outside the 64-bit range")
    if isinstance(value, float):
        return None if math.isfinite(value) else (where, f"{value} is not a JSON number")
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str) and not _encodable(key):
                return (where, "a key holds a lone UTF-16 surrogate (\\ud800-\\udfff)")
            if isinstance(key, str) and "\x00" in key:
                return (where, "a key holds a NUL character (\\u0000), which MongoDB's BSON cannot hold in a key")
            found = bad_value(item, (*where, key))
            if found is not None:
                return found
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found = bad_value(item, (*where, i))
            if found is not None:
                return found
    return None


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def loads(raw: bytes | str, what: str, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """JSON, its depth checked first; InvalidEvent (400) naming `what` for bad JSON, too deep a nesting or a
    value knflow cannot carry (`check_values`)."""
    check_json_depth(raw, what, max_depth)
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InvalidEvent(f"{what} is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except ValueError as exc:  # bad UTF-8 in bytes
        raise InvalidEvent(f"{what} is not JSON: {exc}") from None
    return check_values(value, raw, what)


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
