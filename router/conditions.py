"""Pure: edge `when:` conditions, written in CEL (the Common Expression Language) and evaluated with the
`cel` package (PyPI `common-expression-language`, a binding of the Rust `cel` interpreter).

An expression sees `trigger` (the trigger CloudEvent as a dict), `variables`, `nodes` (node id ->
`{"output": ..., "status": ...}`) and, for each node id that is a CEL identifier (no `-`) other than
those three names, the same object as a top-level variable:

    a.output.score > 0.5 && nodes['fetch-topic'].output.ok

Numbers keep their JSON type: an integer is a CEL int, a number with a fraction or exponent a double.
CEL compares ints and doubles with each other (`1 > 0.5`, `1 == 1.0` are true), so comparisons just
work; arithmetic does not mix them (`a.output.n * 0.5` fails when n is an int: write `double(a.output.n)`).
A missing key is an error; test for it with `has(a.output.key)` or `'key' in a.output`.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any

from broker.errors import KnflowError
from functions.cel import CelEvaluationError, CelSyntaxError, CelTooComplex, compile_program, execute, short

_ROOTS = frozenset({"trigger", "variables", "nodes"})
_NODES_ACCESS = re.compile(
    r"""(?<![\w.])nodes\s*(?:\[\s*(?:'([^']*)'|"([^"]*)")\s*\]|\.\s*([A-Za-z_]\w*)(?!\w|\s*\())"""
)
_NODES_NAME = re.compile(r"(?<![\w.])nodes(?!\w)")


class ConditionError(KnflowError):
    """A `when:` expression (`expr`) that does not parse, fails to evaluate, or gives something other than a
    bool; `reason` is CEL's own word for what went wrong, where it has one."""

    def __init__(self, message: str, *, expr: str | None = None, reason: str | None = None) -> None:
        super().__init__(message, expr=expr, reason=reason)
        self.expr = expr
        self.reason = reason


@dataclass(frozen=True, slots=True, eq=False)
class Condition:
    """A compiled `when:` expression; build it with `compile_condition`."""

    expr: str
    program: Any  # cel.Program
    names: tuple[str, ...]  # the top-level names the expression reads
    node_keys: frozenset[str] | None  # the only `nodes` entries it reads, when all are literal; else None

    def evaluate(self, trigger: dict[str, Any], variables: dict[str, Any], nodes: dict[str, dict[str, Any]]) -> bool:
        """True when the edge is taken. Raises ConditionError on an evaluation error or a non-bool result."""
        context: dict[str, Any] = {}
        for name in self.names:
            if name == "trigger":
                context[name] = trigger
            elif name == "variables":
                context[name] = variables
            elif name == "nodes":
                keys = self.node_keys
                context[name] = nodes if keys is None else {k: nodes[k] for k in keys if k in nodes}
            elif name in nodes:
                context[name] = nodes[name]
        try:
            result = execute(self.program, context)
        except CelEvaluationError as exc:
            raise ConditionError(
                f"condition {self.expr!r} failed: {exc.reason}", expr=self.expr, reason=exc.reason
            ) from None
        if not isinstance(result, bool):
            raise ConditionError(
                f"condition {self.expr!r} gave {type(result).__name__} {short(result)}, not a bool;"
                " write a comparison such as `a.output.n > 0`",
                expr=self.expr,
            )
        return result


@functools.lru_cache(maxsize=1024)
def compile_condition(expr: str) -> Condition:
    """Parse and compile once (cached by text). Raises ConditionError on a syntax error."""
    try:
        program = compile_program(expr)
    except CelTooComplex as exc:
        raise ConditionError(f"condition {expr!r} is too costly: {exc.reason}", expr=expr, reason=exc.reason) from None
    except CelSyntaxError as exc:
        raise ConditionError(f"condition {expr!r} does not parse: {exc.reason}", expr=expr, reason=exc.reason) from None
    # Converting every node's output costs ~15 us per node per evaluation: pass only the entries that
    # `nodes['x']` / `nodes.x` read, unless some use of `nodes` is not such a literal read.
    literal = _literal_node_reads(expr)
    node_keys = frozenset(literal) if len(literal) == len(_NODES_NAME.findall(expr)) else None
    return Condition(expr=expr, program=program, names=tuple(program.variables()), node_keys=node_keys)


def referenced_nodes(expr: str, node_ids: set[str]) -> set[str]:
    """The node ids `expr` reads: top-level names that are node ids, and `nodes['x']` / `nodes["x"]` / `nodes.x`.

    A read through a computed key (`nodes[variables.which]`) cannot be seen and is not reported.
    """
    condition = compile_condition(expr)
    found = {name for name in condition.names if name in node_ids and name not in _ROOTS}
    if "nodes" in condition.names:
        found.update(node_ids.intersection(_literal_node_reads(expr)))
    return found


def _literal_node_reads(expr: str) -> list[str]:
    """The keys of every `nodes['x']`, `nodes["x"]` and `nodes.x` in the text (`nodes.size()` is not one)."""
    return [next(g for g in m.groups() if g is not None) for m in _NODES_ACCESS.finditer(expr)]
