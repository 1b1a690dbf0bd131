"""Durations in the two formats Knative reads: Go's `time.ParseDuration` ("90s", "1h30m") for Serving
annotations, and ISO-8601 periods ("PT0.5S", "PT10M") for Eventing's `delivery`. Pure."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

_GO_UNITS_S = {
    "ns": Decimal("1e-9"),
    "us": Decimal("1e-6"),
    "µs": Decimal("1e-6"),
    "μs": Decimal("1e-6"),
    "ms": Decimal("1e-3"),
    "s": Decimal(1),
    "m": Decimal(60),
    "h": Decimal(3600),
}
_GO_PART = re.compile(r"([0-9]+\.?[0-9]*|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h)")

_NUM = r"([0-9]+(?:[.,][0-9]+)?)"
_ISO = re.compile(
    rf"^[-+]?P(?:{_NUM}Y)?(?:{_NUM}M)?(?:{_NUM}W)?(?:{_NUM}D)?(?:T(?:{_NUM}H)?(?:{_NUM}M)?(?:{_NUM}S)?)?$"
)
_ISO_UNITS_S = (365.2425 * 86400, 30.436875 * 86400, 7 * 86400, 86400, 3600, 60, 1)


def parse_go_duration_s(text: str) -> Decimal:
    """Seconds in a Go duration string; ValueError naming the text when Go would refuse it."""
    if not isinstance(text, str):
        raise ValueError(f"{text!r} is not a Go duration string such as '90s' or '5m'")
    s, sign = text, 1
    if s[:1] in ("+", "-"):
        sign, s = (-1 if s[0] == "-" else 1), s[1:]
    if s == "0":
        return Decimal(0)
    if not s:
        raise ValueError(f"{text!r} is not a Go duration such as '90s' or '5m'")
    total, pos = Decimal(0), 0
    while pos < len(s):
        m = _GO_PART.match(s, pos)
        if m is None:
            raise ValueError(
                f"{text!r} is not a Go duration such as '90s' or '5m' (a number and a unit: ns, us, ms, s, m, h)"
            )
        total += Decimal(m[1]) * _GO_UNITS_S[m[2]]
        pos = m.end()
    return sign * total


def parse_iso_duration_s(text: str) -> float:
    """Approximate seconds in an ISO-8601 period (years and months at their mean length)."""
    m = _ISO.match(text) if isinstance(text, str) else None
    if m is None or not any(m.groups()) or ("T" in text and not any(m.groups()[4:])):
        raise ValueError(f"{text!r} is not an ISO-8601 duration such as 'PT0.5S' or 'PT10M'")
    try:
        total = sum(
            float(Decimal(v.replace(",", "."))) * unit for v, unit in zip(m.groups(), _ISO_UNITS_S, strict=True) if v
        )
    except InvalidOperation:  # pragma: no cover - the regex admits only numbers
        raise ValueError(f"{text!r} is not an ISO-8601 duration") from None
    return -total if text.startswith("-") else total


def iso_seconds(seconds: float) -> str:
    """`PT{n}S` with at most millisecond precision: 1.0 -> 'PT1S', 0.25 -> 'PT0.25S', 600 -> 'PT600S'."""
    text = f"{Decimal(str(round(float(seconds), 3))):f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return f"PT{text}S"
