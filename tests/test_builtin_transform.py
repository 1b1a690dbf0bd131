"""`json-transform` and `template`, called through the handler as the broker would."""

from __future__ import annotations

import pytest

from functions.handler import call
from functions.registry import REGISTRY
from functions.sdk import Context

DATA = {"items": [{"name": "a", "n": 1}, {"name": "b", "n": 2.5}, {"name": "c", "n": 3}], "meta": {"page": 1}}


async def run(name: str, doc: dict) -> dict:
    ctx = Context(run_id="run-1", node_id="shape", attempt=1, pipeline="test", function=name)
    return await call(REGISTRY.get(name), doc, ctx)


def fields(result: dict) -> set[str]:
    return {problem["field"] for problem in result["error"]["detail"]}


@pytest.mark.parametrize(
    "expression, expected",
    [
        ("meta.page", 1),
        ("items[?n > `1`].name", ["b", "c"]),
        ("{first: items[0].name, total: sum(items[].n)}", {"first": "a", "total": 6.5}),
        ("missing.key", None),
    ],
)
async def test_jmespath_output_is_the_bare_value(expression, expected):
    assert (await run("json-transform", {"data": DATA, "expression": expression}))["output"] == expected


@pytest.mark.parametrize(
    "expression, expected",
    [
        ("data.items.filter(i, i.n > 1).map(i, i.name)", ["b", "c"]),
        ("{'count': size(data.items), 'first': data.items[0]}", {"count": 3, "first": {"name": "a", "n": 1}}),
        ("timestamp('2026-01-02T03:04:05Z')", "2026-01-02T03:04:05Z"),
        ("duration('90s')", "90s"),
    ],
)
async def test_cel_output_is_json(expression, expected):
    doc = {"data": DATA, "expression": expression, "language": "cel"}
    assert (await run("json-transform", doc))["output"] == expected


async def test_bad_jmespath_names_the_expression_and_the_parser_message():
    error = (await run("json-transform", {"data": DATA, "expression": "items[?"}))["error"]
    assert error["type"] == "InvalidExpression"
    assert "expression 'items[?' is not valid JMESPath: " in error["message"]
    assert error["detail"]["field"] == "expression" and error["detail"]["reason"]


async def test_jmespath_runtime_error_fails_without_retry():
    error = (await run("json-transform", {"data": DATA, "expression": "abs(meta)"}))["error"]
    assert error["type"] == "ExpressionFailed"
    assert "In function abs(), invalid type for value" in error["message"]


async def test_bad_cel_names_the_expression_and_the_parser_message():
    doc = {"data": DATA, "expression": "data.items[", "language": "cel"}
    error = (await run("json-transform", doc))["error"]
    assert error["type"] == "InvalidExpression"
    assert "expression 'data.items[' is not valid CEL: at column 12" in error["message"]
    assert "is not valid CEL: at column 12: mismatched input '<EOF>'" in error["message"]


@pytest.mark.parametrize(
    "doc, field",
    [
        ({"expression": "a"}, "data"),
        ({"data": {}}, "expression"),
        ({"data": {}, "expression": ["a"]}, "expression"),
        ({"data": {}, "expression": "a", "language": "xpath"}, "language"),
        ({"data": {}, "expression": "a", "lang": "cel"}, "lang"),
    ],
)
async def test_json_transform_bad_input_names_the_field(doc, field):
    result = await run("json-transform", doc)
    assert result["error"]["type"] == "InvalidInput"
    assert field in fields(result)


async def test_template_text_and_json():
    assert (await run("template", {"template": "Hello, Ada"}))["output"] == "Hello, Ada"
    doc = {"template": '{"title": "Cats", "tags": ["a"], "n": 2}', "format": "json"}
    assert (await run("template", doc))["output"] == {"title": "Cats", "tags": ["a"], "n": 2}


@pytest.mark.parametrize(
    "value, text", [({"a": [1, "é"]}, '{"a":[1,"é"]}'), (True, "true"), (None, ""), (2.5, "2.5"), ([1], "[1]")]
)
async def test_template_that_was_one_lookup_is_written_as_text(value, text):
    assert (await run("template", {"template": value}))["output"] == text
    assert (await run("template", {"template": value, "format": "json"}))["output"] == value


async def test_template_that_is_not_json_fails_clearly():
    error = (await run("template", {"template": '{"title": Cats}', "format": "json"}))["error"]
    assert error["type"] == "InvalidJson"
    assert "template is not JSON (Expecting value at line 1 column 11" in error["message"]
    assert error["detail"] == {"field": "template", "line": 1, "column": 11, "near": '{"title": Cats}'}


@pytest.mark.parametrize(
    "doc, field",
    [
        ({}, "template"),
        ({"template": "x", "format": "yaml"}, "format"),
        ({"template": "x", "fromat": "json"}, "fromat"),
    ],
)
async def test_template_bad_input_names_the_field(doc, field):
    result = await run("template", doc)
    assert result["error"]["type"] == "InvalidInput"
    assert field in fields(result)
