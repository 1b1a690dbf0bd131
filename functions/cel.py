"""The CEL core (Common Expression Language, PyPI `common-expression-language`, imported as `cel`) that
edge conditions (`router.conditions`) and the `condition`, `switch` and `json-transform` builtins share:
compile once, evaluate over JSON values, and say what went wrong in one line.

Numbers keep their JSON type: an integer is a CEL int, a number with a fraction a double. CEL compares ints
and doubles with each other (`1 > 0.5` holds), but arithmetic does not mix them (`double(n) * 0.5`). A
missing key is an error: test with `has(x.key)` or `'key' in x`.
"""

from __future__ import annotations

import base64
import functools
import re
from datetime import datetime, timedelta
from typing import Any

import cel

EVALUATION_ERRORS = (ValueError, TypeError, RuntimeError, LookupError, ArithmeticError)
_SYNTAX_ERROR = re.compile(r"<input>:(\d+):(\d+): Syntax error: ([^\n]*)")


class CelSyntaxError(ValueError):
    """`reason` is the parser's first error on one line."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class CelEvaluationError(ValueError):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@functools.lru_cache(maxsize=2048)
def compile_program(expr: str) -> Any:
    """A compiled program (cached by text); CelSyntaxError says where the parser stopped."""
    try:
        return cel.compile(expr)
    except ValueError as exc:
        raise CelSyntaxError(syntax_reason(str(exc))) from None


def execute(program: Any, variables: dict[str, Any]) -> Any:
    """Run `program` over `variables`; CelEvaluationError says why it failed, in one line."""
    try:
        return program.execute(variables)
    except EVALUATION_ERRORS as exc:
        raise CelEvaluationError(evaluation_reason(exc)) from None


def to_json(value: Any) -> Any:
    """A CEL result as JSON: a timestamp gives RFC 3339 text, a duration `'1.5s'`, bytes base64."""
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, timedelta):
        return f"{value.total_seconds():g}s"
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, cel.OptionalValue):
        return to_json(value.value()) if value.has_value() else None
    return value


def syntax_reason(message: str) -> str:
    """The parser's first error, one line: `at column 4: mismatched input '<EOF>' expecting {...}`."""
    m = _SYNTAX_ERROR.search(message)
    if not m:
        return " ".join(message.split())
    line, column, text = m.groups()
    return f"at column {column}: {text}" if line == "1" else f"at line {line}, column {column}: {text}"


def evaluation_reason(exc: Exception) -> str:
    """The interpreter's message, one line, first sentence only (the rest is generic advice), plus ours."""
    if isinstance(exc, KeyError):
        key = exc.args[0] if exc.args else "?"
        return f"no such key {key!r} (test for an optional key with has(x.{key}) or '{key}' in x)"
    text = " ".join(str(exc).split())
    head, dot, _ = text.partition(". ")
    if isinstance(exc, TypeError):
        return (
            f"{head}{dot.strip()} CEL does not convert between types (use int(), double(), string()) "
            "nor read a field of null"
        )
    return head + dot.strip()


def short(value: Any, max_chars: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= max_chars else text[: max_chars - 3] + "..."
