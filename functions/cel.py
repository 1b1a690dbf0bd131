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

EVALUATION_ERRORS = (ValueError, TypeError, RuntimeError, LookupError, ArithmeticError)
# The CEL interpreter holds the GIL while it runs: a slow expression would block the event loop, and a thread
# cannot stop it. So expressions are bounded before they run, as Kubernetes bounds its CEL rules: comprehensions
# nest at most MAX_COMPREHENSION_NESTING deep (refused when compiled, i.e. when a pipeline is validated), and
# an evaluation whose estimated cost is over MAX_CEL_COST is refused before it starts (`estimated_cost`).
# Measured on this interpreter (common-expression-language 0.10): `map`/`filter` copy their growing result on
# every step, so they are quadratic (4,000 items: 0.9 s); a collection read inside a comprehension is copied
# on every iteration (two nested maps over 400 items: 4.5-7 s); `exists`/`all` alone are linear. One cost
# unit is 60-170 ns (measured, on a loaded machine): the budget is 0.1-0.2 s of interpreter time, and the same
# number as Kubernetes' per-call cost limit.
MAX_COMPREHENSION_NESTING = 2
MAX_CEL_COST = 1_000_000
MACROS = ("all", "exists", "exists_one", "map", "filter", "transformList", "transformMap")
_TOKEN = re.compile(
    r"""(?P<str>[rRbB]{0,2}(?:'\'\'(?:.|\n)*?'\'\'|\"\"\"(?:.|\n)*?\"\"\"|'(?:[^'\\\n]|\\.)*'|"(?:[^"\\\n]|\\.)*"))"""
    r"|(?P<macro>\.\s*(?:" + "|".join(MACROS) + r")\s*\()|(?P<open>[(\[{])|(?P<close>[)\]}])",
    re.DOTALL,
)
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


class CelTooComplex(CelSyntaxError):
    """An expression whose comprehensions nest deeper than MAX_COMPREHENSION_NESTING."""


@functools.lru_cache(maxsize=2048)
def compile_program(expr: str) -> Any:
    """A compiled program (cached by text); CelSyntaxError says where the parser stopped, CelTooComplex
    that comprehensions nest too deep."""
    import cel  # the interpreter loads with the first expression: importing the router's engine does not pay it

    try:
        program = cel.compile(expr)
    except ValueError as exc:
        raise CelSyntaxError(syntax_reason(str(exc))) from None
    depth = nesting(expr)
    if depth > MAX_COMPREHENSION_NESTING:
        raise CelTooComplex(
            f"comprehensions ({', '.join(MACROS[:5])}) nest {depth} deep; the limit is "
            f"{MAX_COMPREHENSION_NESTING} (MAX_COMPREHENSION_NESTING), as each level multiplies the cost "
            "by the size of a list"
        )
    return program


@functools.lru_cache(maxsize=2048)
def comprehensions(expr: str) -> tuple[tuple[int, str], ...]:
    """Pure: each comprehension macro in the text (`.map(`, `.filter(`, ...) as (nesting depth from 0, name):
    `l.map(x, m.exists(y, y > x))` gives ((0, 'map'), (1, 'exists')). A lexical scan (string literals
    skipped), as the `cel` package exposes no syntax tree; an unbalanced text does not compile anyway."""
    found: list[tuple[int, str]] = []
    stack: list[bool] = []  # for each open bracket: is it a macro's argument list
    for m in _TOKEN.finditer(expr):
        kind = m.lastgroup
        if kind == "macro":
            found.append((sum(stack), m.group("macro")[1:-1].strip()))
            stack.append(True)
        elif kind == "open":
            stack.append(False)
        elif kind == "close" and stack:
            stack.pop()
    return tuple(found)


def nesting(expr: str) -> int:
    """How deep comprehensions nest in `expr` (0: none)."""
    return max((d + 1 for d, _ in comprehensions(expr)), default=0)


_LINEAR = frozenset({"all", "exists", "exists_one"})


def estimated_cost(found: tuple[tuple[int, str], ...], largest: int) -> int:
    """The cost units of comprehensions `found` over collections of at most `largest` items: a comprehension
    at depth d runs largest**(d+1) iterations, each costing `largest` more when it builds a list (map, filter)
    or sits inside another comprehension (where the collections it reads are copied)."""
    return sum(largest ** (d + 1) * (1 if d == 0 and name in _LINEAR else largest) for d, name in found)


def largest_collection(value: Any) -> int:
    """The size of the largest list or map anywhere in `value`."""
    largest, stack = 0, [value]
    while stack:
        here = stack.pop()
        if isinstance(here, dict):
            largest = max(largest, len(here))
            stack.extend(v for v in here.values() if isinstance(v, (dict, list)))
        elif isinstance(here, (list, tuple)):
            largest = max(largest, len(here))
            stack.extend(v for v in here if isinstance(v, (dict, list)))
    return largest


def check_cost(expr: str, variables: dict[str, Any]) -> None:
    """CelEvaluationError when evaluating `expr` over `variables` could cost more than MAX_CEL_COST. An
    expression without comprehensions (the common case) costs a cached lookup; one with them walks the
    variables once to find their largest collection."""
    found = comprehensions(expr)
    if not found:
        return
    largest = largest_collection(variables)
    cost = estimated_cost(found, largest)
    if cost > MAX_CEL_COST:
        raise CelEvaluationError(
            f"the expression's estimated cost is {cost:,} units (comprehensions over a list or map of "
            f"{largest:,} items), over the budget of {MAX_CEL_COST:,} (MAX_CEL_COST); it was not run"
        )


def execute(program: Any, variables: dict[str, Any]) -> Any:
    """Run `program` over `variables` within the cost budget; CelEvaluationError says why it failed, in one line."""
    check_cost(program.source, variables)
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
    import cel  # loaded already: a value to convert comes from an evaluation

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
