"""`condition` and `switch`: CEL decisions, called through the handler as the broker would."""

from __future__ import annotations

import pytest

from functions.handler import call
from functions.registry import REGISTRY
from functions.sdk import Context


async def run(name: str, doc: dict) -> dict:
    ctx = Context(run_id="run-1", node_id="decide", attempt=1, pipeline="test", function=name)
    return await call(REGISTRY.get(name), doc, ctx)


def fields(result: dict) -> set[str]:
    return {problem["field"] for problem in result["error"]["detail"]}


@pytest.mark.parametrize("value, expected", [(1, True), (0.7, True), (0, False), (0.2, False), (2**70, True)])
async def test_condition_compares_ints_and_floats(value, expected):
    result = await run("condition", {"expression": "value > 0.5", "value": value})
    assert result["output"] == {"result": expected, "branch": "true" if expected else "false"}


async def test_condition_reads_input_and_data():
    doc = {"expression": "input.status == 'ok' && size(data.items) >= 2", "data": {"status": "ok", "items": [1, 2]}}
    assert (await run("condition", doc))["output"] == {"result": True, "branch": "true"}
    doc = {"expression": "has(input.missing)", "data": {"status": "ok"}}
    assert (await run("condition", doc))["output"] == {"result": False, "branch": "false"}


async def test_condition_that_is_not_a_bool_fails_without_retry():
    error = (await run("condition", {"expression": "value + 1", "value": 1}))["error"]
    assert error["type"] == "ExpressionNotBool"
    assert "expression 'value + 1' gave int 2, not a bool" in error["message"]


async def test_condition_syntax_error_names_the_expression_and_the_parser_message():
    error = (await run("condition", {"expression": "value >", "value": 1}))["error"]
    assert error["type"] == "InvalidExpression"
    assert "expression 'value >' is not valid CEL: at column 8: mismatched input '<EOF>'" in error["message"]
    assert error["detail"]["field"] == "expression"


async def test_condition_missing_key_fails_without_retry():
    error = (await run("condition", {"expression": "input.score > 1", "data": {"points": 3}}))["error"]
    assert error["type"] == "ExpressionFailed"
    assert "expression 'input.score > 1' failed: no such key 'score'" in error["message"]


@pytest.mark.parametrize(
    "doc, field",
    [
        ({"value": 1}, "expression"),
        ({"expression": 5, "value": 1}, "expression"),
        ({"expression": "", "value": 1}, "expression"),
        ({"expression": "true", "valeu": 1}, "valeu"),
        ({"expression": "true", "value": 1, "data": 2}, "(root)"),
    ],
)
async def test_condition_bad_input_names_the_field(doc, field):
    result = await run("condition", doc)
    assert result["error"]["type"] == "InvalidInput"
    assert field in fields(result)


CASES = [
    {"name": "big", "when": "value.n > 100"},
    {"name": "some", "when": "value.n > 0"},
    {"name": "also", "when": "true"},
]


@pytest.mark.parametrize("n, branch, index", [(500, "big", 0), (7.5, "some", 1), (-1, "also", 2)])
async def test_switch_first_true_case_wins(n, branch, index):
    result = await run("switch", {"value": {"n": n}, "cases": CASES})
    assert result["output"] == {"branch": branch, "index": index}


async def test_switch_default_when_no_case_holds():
    cases = CASES[:2]
    assert (await run("switch", {"value": {"n": 0}, "cases": cases}))["output"] == {"branch": "default", "index": None}
    doc = {"value": {"n": 0}, "cases": cases, "default": "none"}
    assert (await run("switch", doc))["output"] == {"branch": "none", "index": None}
    assert (await run("switch", {"value": None, "cases": []}))["output"] == {"branch": "default", "index": None}


async def test_switch_bad_case_expression_names_the_case():
    cases = [{"name": "ok", "when": "value == 2"}, {"name": "broken", "when": "value >"}]
    error = (await run("switch", {"value": 1, "cases": cases}))["error"]
    assert error["type"] == "InvalidExpression"
    assert "cases.1.when (case 'broken') 'value >' is not valid CEL" in error["message"]


async def test_switch_case_that_is_not_a_bool_fails():
    error = (await run("switch", {"value": "a", "cases": [{"name": "x", "when": "value"}]}))["error"]
    assert error["type"] == "ExpressionNotBool" and "gave str 'a'" in error["message"]


@pytest.mark.parametrize(
    "doc, field",
    [
        ({"cases": []}, "value"),
        ({"value": 1}, "cases"),
        ({"value": 1, "cases": {"name": "a", "when": "true"}}, "cases"),
        ({"value": 1, "cases": [{"name": "a", "if": "true"}]}, "cases.0.if"),
        ({"value": 1, "cases": [{"name": "a"}]}, "cases.0.when"),
        ({"value": 1, "cases": [{"name": "a", "when": "true"}, {"name": "a", "when": "false"}]}, "cases"),
        ({"value": 1, "cases": [], "otherwise": "x"}, "otherwise"),
    ],
)
async def test_switch_bad_input_names_the_field(doc, field):
    result = await run("switch", doc)
    assert result["error"]["type"] == "InvalidInput"
    assert field in fields(result)
