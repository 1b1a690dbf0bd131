"""`condition` and `switch`: branch on CEL expressions (the Common Expression Language;
PyPI `common-expression-language`, imported as `cel`).

Edges downstream read the decision: `when: check.output.result` or `when: route.output.branch == 'big'`.

Numbers keep their JSON type (an integer is a CEL int, a number with a fraction a double), as in
`router/conditions.py` (both on `functions.cel`). CEL compares ints and doubles with each other, so `value > 0.5`
holds for 1 and for 0.7 alike; arithmetic does not mix them (write `double(value) * 0.5`). A missing key is an
error: test with `has(value.key)` or `'key' in value`. `cel_program`, `cel_evaluate` and `cel_bool` turn the
shared CEL core's errors into node failures (`json-transform` uses them too).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from functions.cel import CelEvaluationError, CelSyntaxError, CelTooComplex, compile_program, execute, short, to_json
from functions.errors import FunctionError
from functions.sdk import function


def cel_program(expr: str, field: str = "expression") -> Any:
    """Compile `expr` once (cached by text). A syntax error fails the node, naming `field` and the parser's reason."""
    try:
        return compile_program(expr)
    except CelTooComplex as exc:
        raise FunctionError(
            f"{field} {expr!r} is too costly: {exc.reason}",
            type="InvalidExpression",
            detail={"field": field, "expression": expr, "reason": exc.reason},
        ) from None
    except CelSyntaxError as exc:
        raise FunctionError(
            f"{field} {expr!r} is not valid CEL: {exc.reason}",
            type="InvalidExpression",
            detail={"field": field, "expression": expr, "reason": exc.reason},
        ) from None


def cel_evaluate(expr: str, variables: dict[str, Any], field: str = "expression") -> Any:
    """The value of `expr` over `variables` (JSON values), as JSON. An evaluation error fails the node."""
    try:
        return to_json(execute(cel_program(expr, field), variables))
    except CelEvaluationError as exc:
        raise FunctionError(
            f"{field} {expr!r} failed: {exc.reason}",
            type="ExpressionFailed",
            detail={"field": field, "expression": expr, "reason": exc.reason},
        ) from None


def cel_bool(expr: str, variables: dict[str, Any], field: str = "expression") -> bool:
    """`cel_evaluate` for a decision: anything but a bool fails the node."""
    result = cel_evaluate(expr, variables, field)
    if not isinstance(result, bool):
        raise FunctionError(
            f"{field} {expr!r} gave {type(result).__name__} {short(result)}, not a bool; "
            "write a comparison such as `value > 0`",
            type="ExpressionNotBool",
            detail={"field": field, "expression": expr},
        )
    return result


class ConditionInput(BaseModel):
    """Input of `condition`: a CEL `expression` over `input`, which is the node's `data` (or `value`)."""

    model_config = ConfigDict(extra="forbid")

    expression: str = Field(min_length=1)
    data: Any = None
    value: Any = None

    @model_validator(mode="after")
    def _one_input(self) -> ConditionInput:
        if {"data", "value"} <= self.model_fields_set:
            raise ValueError("give the value to test as 'data' or as 'value', not both")
        return self


class ConditionOutput(BaseModel):
    result: bool
    branch: Literal["true", "false"]


@function(name="condition", timeout_s=10)
async def condition(inp: ConditionInput) -> ConditionOutput:
    """Decide with a CEL expression: `{"result": true, "branch": "true"}` or the false pair.

    The expression reads `input`, which is the node's `data` or `value` (also readable by that name).
    """
    subject = inp.value if "value" in inp.model_fields_set else inp.data
    name = "value" if "value" in inp.model_fields_set else "data"
    result = cel_bool(inp.expression, {"input": subject, name: subject})
    return ConditionOutput(result=result, branch="true" if result else "false")


class Case(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    when: str = Field(min_length=1)


class SwitchInput(BaseModel):
    """Input of `switch`: `value`, then `cases` in order, each a `name` and a CEL `when` over `value`."""

    model_config = ConfigDict(extra="forbid")

    value: Any
    cases: list[Case]
    default: str = Field("default", min_length=1)

    @field_validator("cases")
    @classmethod
    def _unique_names(cls, cases: list[Case]) -> list[Case]:
        names = [case.name for case in cases]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"case names must be unique; {', '.join(map(repr, twice))} appears more than once")
        return cases


class SwitchOutput(BaseModel):
    branch: str
    index: int | None


@function(name="switch", timeout_s=10)
async def switch(inp: SwitchInput) -> SwitchOutput:
    """Pick the first case whose CEL `when` holds: `{"branch": name, "index": i}`.

    When no case holds: `{"branch": default, "index": null}`.
    """
    for index, case in enumerate(inp.cases):
        if cel_bool(case.when, {"value": inp.value}, field=f"cases.{index}.when (case '{case.name}')"):
            return SwitchOutput(branch=case.name, index=index)
    return SwitchOutput(branch=inp.default, index=None)
