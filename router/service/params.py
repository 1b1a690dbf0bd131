"""Pure: the parameters of the router's routes, checked. Each helper reads one field of a JSON body (or takes a
query value) and gives it typed, or raises InvalidEvent (400) naming the field and what was expected: no route
passes an unchecked value on, so a bad `limit` or `since` is a 400, never a 500."""

from __future__ import annotations

from typing import Any, Final

from broker.errors import InvalidEvent
from router.replay import InvalidDuration, parse_duration_s
from router.runs import RUN_STATES

MAX_LIST: Final = 1000  # the most runs one request lists or replays; a larger `limit` is capped to it
MAX_SINCE_S: Final = 3650 * 86400.0  # `since` windows reach back at most ten years
MAX_TEXT_CHARS: Final = 1024
MAX_OFFSET: Final = 1_000_000


def bad(field: str, expected: str, value: Any) -> InvalidEvent:
    shown = repr(value)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    scalar = value if isinstance(value, (str, int, float)) and len(shown) <= 60 else None
    return InvalidEvent(f"parameter '{field}' is {shown}; expected {expected}", field=field, value=scalar)


def text(body: dict[str, Any], field: str, *, required: bool = False, example: str | None = None) -> str | None:
    """A non-empty string (at most MAX_TEXT_CHARS), or None when absent (null) and not required."""
    value = body.get(field)
    if value is None:
        if required:
            hint = f", e.g. {example}" if example else ""
            raise InvalidEvent(f"parameter '{field}' is required{hint}", field=field)
        return None
    if not isinstance(value, str) or not value or len(value) > MAX_TEXT_CHARS:
        raise bad(field, f"a non-empty string of at most {MAX_TEXT_CHARS} characters", value)
    return value


def flag(body: dict[str, Any], field: str) -> bool:
    """true or false (absent or null: false)."""
    value = body.get(field)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise bad(field, "true or false", value)
    return value


def limit(value: Any, field: str = "limit", default: int = MAX_LIST) -> int:
    """A count of at least 1 (an integer, or its decimal text in a query); above MAX_LIST it is capped to it."""
    if value is None:
        return default
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise bad(field, f"an integer of at least 1 (at most {MAX_LIST} are returned)", value)
    return min(value, MAX_LIST)


def count(value: Any, field: str, minimum: int = 0) -> int | None:
    """An integer of at least `minimum` (its decimal text in a query), at most 64 bits; None when absent."""
    if value is None:
        return None
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value < 2**63:
        raise bad(field, f"an integer of at least {minimum}", value)
    return value


def run_status(value: Any, field: str = "status") -> str | None:
    """One of the run states, or None."""
    if value is None:
        return None
    if value not in RUN_STATES:
        raise bad(field, "one of " + ", ".join(RUN_STATES), value)
    return str(value)


def since_s(value: Any, field: str = "since") -> float | None:
    """A window such as `2h` (90s, 30m, 2h, 7d), at most ten years, in seconds; None when absent."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise bad(field, "a duration such as 90s, 30m, 2h or 7d", value)
    try:
        seconds = parse_duration_s(value)
    except InvalidDuration:
        raise bad(field, "a duration such as 90s, 30m, 2h or 7d", value) from None
    if seconds > MAX_SINCE_S:
        raise bad(field, "a duration of at most 3650d", value)
    return seconds


def offset(value: Any, field: str = "offset") -> int:
    """How many to skip: an integer of at least 0 (or its decimal text in a query); absent: 0."""
    if value is None:
        return 0
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0 or value > MAX_OFFSET:
        raise bad(field, f"an integer from 0 to {MAX_OFFSET}", value)
    return value


def choice(value: Any, field: str, choices: tuple[str, ...], default: str) -> str:
    """One of `choices`; absent: `default`."""
    if value is None:
        return default
    if value not in choices:
        raise bad(field, "one of " + ", ".join(choices), value)
    return str(value)
