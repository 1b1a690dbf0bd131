"""`delay`, `log` and `error`, called through the handler as the broker would."""

from __future__ import annotations

import time

import pytest
from structlog.testing import capture_logs

from functions.builtins.utility import MAX_DELAY_S
from functions.handler import Retryable, call
from functions.registry import REGISTRY
from functions.sdk import Context


async def run(name: str, doc: dict, ctx: Context | None = None) -> dict:
    ctx = ctx or Context(run_id="run-1", node_id="step", attempt=1, pipeline="test", function=name)
    return await call(REGISTRY.get(name), doc, ctx)


def fields(result: dict) -> set[str]:
    return {problem["field"] for problem in result["error"]["detail"]}


async def test_delay_waits_then_succeeds():
    started = time.perf_counter()
    result = await run("delay", {"seconds": 0.05})
    assert time.perf_counter() - started >= 0.05
    assert result["output"] == {"delayed_s": 0.05}
    assert (await run("delay", {"seconds": "0"}))["output"] == {"delayed_s": 0.0}


def test_delay_bound_is_within_the_function_timeout():
    assert REGISTRY.get("delay").traits.timeout_s > MAX_DELAY_S


@pytest.mark.parametrize(
    "doc, field",
    [
        ({}, "seconds"),
        ({"seconds": -1}, "seconds"),
        ({"seconds": 301}, "seconds"),
        ({"seconds": "soon"}, "seconds"),
        ({"seconds": 1, "until": "x"}, "until"),
    ],
)
async def test_delay_bad_input_names_the_field(doc, field):
    result = await run("delay", doc)
    assert result["error"]["type"] == "InvalidInput"
    assert field in fields(result)


@pytest.mark.parametrize("level", ["debug", "info", "warning", "error"])
async def test_log_writes_to_the_run_log_and_passes_data_on(level):
    data = {"id": 7, "tags": ["a"]}
    with capture_logs() as logs:
        ctx = Context(run_id="run-9", node_id="note", attempt=2, pipeline="article", function="log")
        result = await run("log", {"message": "saved", "level": level, "data": data}, ctx)
    assert result["output"] == {"message": "saved", "level": level, "data": data}
    assert logs == [
        {
            "event": "saved",
            "data": data,
            "log_level": level,
            "run": "run-9",
            "pipeline": "article",
            "node": "note",
            "attempt": 2,
        }
    ]


async def test_log_defaults_to_info_without_data():
    assert (await run("log", {"message": "hi"}))["output"] == {"message": "hi", "level": "info", "data": None}


@pytest.mark.parametrize(
    "doc, field",
    [
        ({}, "message"),
        ({"message": "x", "level": "loud"}, "level"),
        ({"message": ["x"]}, "message"),
        ({"message": "x", "msg": "y"}, "msg"),
    ],
)
async def test_log_bad_input_names_the_field(doc, field):
    result = await run("log", doc)
    assert result["error"]["type"] == "InvalidInput"
    assert field in fields(result)


async def test_error_fails_the_node_without_retry():
    result = await run("error", {"message": "no topic today", "type": "NoTopic", "detail": {"day": "sun"}})
    assert result["error"] == {
        "type": "NoTopic",
        "message": "node 'step' (function 'error'): no topic today",
        "detail": {"day": "sun"},
    }
    assert set(result) == {"error", "started_at", "finished_at", "duration_ms"}  # a failed try has its times too
    assert (await run("error", {"message": "stop"}))["error"]["type"] == "FunctionError"


async def test_error_retryable_raises_retryable():
    with pytest.raises(Retryable) as info:
        await run("error", {"message": "try later", "retryable": True})
    assert info.value.error == {
        "type": "FunctionError",
        "message": "node 'step' (function 'error'): try later",
        "detail": None,
    }


@pytest.mark.parametrize(
    "doc, field",
    [
        ({}, "message"),
        ({"message": "x", "retryable": "perhaps"}, "retryable"),
        ({"message": "x", "kind": "Y"}, "kind"),
        ({"message": ""}, "message"),
    ],
)
async def test_error_bad_input_names_the_field(doc, field):
    result = await run("error", doc)
    assert result["error"]["type"] == "InvalidInput"
    assert field in fields(result)
