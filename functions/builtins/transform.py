"""`json-transform` (select and reshape JSON with JMESPath or CEL) and `template` (rendered text, or JSON).

Both output a bare value (a `RootModel`), so a downstream node reads `{{ shape.output.name }}`.
"""

from __future__ import annotations

import functools
import json
from typing import Any, Literal

import jmespath
from jmespath.exceptions import JMESPathError, ParseError
from pydantic import BaseModel, ConfigDict, Field, RootModel

from functions.builtins.logic import cel_evaluate
from functions.errors import FunctionError
from functions.sdk import function
from functions.values import as_text

EXCERPT_CHARS = 80

_jmespath = functools.lru_cache(maxsize=1024)(jmespath.compile)


class JsonTransformInput(BaseModel):
    """Input of `json-transform`: `data` and an `expression` over it (JMESPath `a.b[0]`, or CEL `data.a.b[0]`)."""

    model_config = ConfigDict(extra="forbid")

    data: Any
    expression: str = Field(min_length=1)
    language: Literal["jmespath", "cel"] = "jmespath"


class Value(RootModel[Any]):
    """Any JSON value."""


@function(name="json-transform", timeout_s=10)
async def json_transform(inp: JsonTransformInput) -> Value:
    """Select and reshape JSON; the output is the expression's value.

    JMESPath by default (`items[?n > \\`1\\`].name`); with `language: cel`, a CEL expression over the
    variable `data` (`data.items.filter(i, i.n > 1)`).
    """
    if inp.language == "cel":
        return Value(cel_evaluate(inp.expression, {"data": inp.data}))
    try:
        return Value(_jmespath(inp.expression).search(inp.data))
    except ParseError as exc:
        reason = str(exc).splitlines()[0].removeprefix("Invalid jmespath expression: ")
        reason = reason.removeprefix("Bad jmespath expression: ").rstrip(": ")
        raise _expression_error(inp.expression, "is not valid JMESPath", reason, "InvalidExpression") from None
    except JMESPathError as exc:  # an unknown function, a function given the wrong type
        raise _expression_error(inp.expression, "failed", str(exc).splitlines()[0], "ExpressionFailed") from None


def _expression_error(expr: str, what: str, reason: str, type_: str) -> FunctionError:
    return FunctionError(
        f"expression {expr!r} {what}: {reason}",
        type=type_,
        detail={"field": "expression", "expression": expr, "reason": reason},
    )


class TemplateInput(BaseModel):
    """Input of `template`: the `template` the router has rendered, and the `format` to give it out in."""

    model_config = ConfigDict(extra="forbid")

    template: Any
    format: Literal["text", "json"] = "text"


@function(name="template", timeout_s=10)
async def template(inp: TemplateInput) -> Value:
    """Give out the rendered template, as text or (`format: json`) parsed.

    `format: json` fails when the text is not JSON. A template that is one `{{ lookup }}` arrives as that
    value: `text` writes it as the router writes values into text (JSON for objects and lists,
    `true`/`false`, `""` for null), `json` gives it unchanged.
    """
    if inp.format == "json":
        return Value(_parse_json(inp.template) if isinstance(inp.template, str) else inp.template)
    return Value(as_text(inp.template))


def _parse_json(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        start = max(exc.pos - EXCERPT_CHARS // 2, 0)
        near = text[start : start + EXCERPT_CHARS]
        raise FunctionError(
            f"template is not JSON ({exc.msg} at line {exc.lineno} column {exc.colno}, near {near!r}); "
            "check the quotes around text values: a lookup inside text is not quoted for you",
            type="InvalidJson",
            detail={"field": "template", "line": exc.lineno, "column": exc.colno, "near": near},
        ) from None
