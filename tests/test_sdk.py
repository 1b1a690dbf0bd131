"""The function SDK: the decorator's checks, the registry, module loading, and running one invoke."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from pydantic import BaseModel

from functions.errors import InvalidFunction, ModuleLoadError, UnknownFunction
from functions.handler import Retryable, call, function_input
from functions.registry import REGISTRY, Registry, load_module
from functions.sdk import Context, Retry, function
from knflow import FunctionError


class In(BaseModel):
    x: int


class Out(BaseModel):
    y: int


def ctx(node: str = "n") -> Context:
    return Context(run_id="r1", node_id=node, attempt=1, pipeline="p", function="f")


@function(
    name="sdk-double",
    timeout_s=2,
    retries=3,
    cpu="500m",
    memory="256Mi",
    gpu=1,
    max_scale=5,
    concurrency=4,
    register=False,
)
async def double(inp: In, ctx: Context) -> Out:
    return Out(y=inp.x * 2)


async def test_decorated_function_keeps_traits_and_runs_outside_a_pipeline():
    assert double.name == "sdk-double"
    assert double.traits.retry == Retry(retries=3)
    assert (double.traits.cpu, double.traits.memory, double.traits.gpu, double.traits.max_scale) == (
        "500m",
        "256Mi",
        1,
        5,
    )
    assert double.input_model is In and double.output_model is Out and double.takes_context
    assert await double(In(x=4), ctx()) == Out(y=8)


def test_every_problem_is_reported_at_once():
    with pytest.raises(InvalidFunction) as err:

        @function(
            name="Bad_Name", timeout_s=0, retries=-1, cpu="lots", gpu=-1, min_scale=3, max_scale=2, register=False
        )
        def bad(inp: dict) -> dict:  # not async, not models
            return {}

    text = str(err.value)
    assert text.startswith("function 'Bad_Name' is invalid for 9 reasons: ")
    for part in (
        "must be defined with 'async def'",
        "first parameter 'inp' must be annotated with a pydantic model, got dict",
        "the return type must be a pydantic model, got dict",
        "the name 'Bad_Name' must be lowercase",
        "timeout_s must be a number > 0, got 0",
        "retries must be an integer >= 0, got -1",
        "cpu must be a Kubernetes quantity",
        "gpu must be an integer >= 0, got -1",
        "max_scale (2) must be >= min_scale (3)",
    ):
        assert part in text


def test_second_parameter_must_be_context_and_one_reason_reads_singular():
    with pytest.raises(
        InvalidFunction,
        match=r"invalid for 1 reason: the second parameter 'c' must be annotated with knflow.Context, got str",
    ):

        @function(register=False)
        async def f(inp: In, c: str) -> Out: ...


def test_unresolvable_annotations_are_reported():
    with pytest.raises(InvalidFunction, match="type annotations cannot be resolved"):

        @function(register=False)
        async def f(inp: Missing) -> Out: ...  # noqa: F821


def test_default_name_and_registry_lookup():
    registry = Registry()

    @function(register=False)
    async def make_thing(inp: In) -> Out:
        return Out(y=inp.x)

    assert make_thing.name == "make-thing" and not make_thing.takes_context
    registry.add(make_thing)
    assert registry.get("make-thing") is make_thing
    with pytest.raises(
        UnknownFunction,
        match=re.escape("unknown function 'nope'. Functions defined by loaded modules: make-thing; builtins: "),
    ):
        registry.get("nope")


def test_one_name_for_two_functions_is_an_error():
    registry = Registry()

    @function(name="same", register=False)
    async def one(inp: In) -> Out: ...

    @function(name="same", register=False)
    async def two(inp: In) -> Out: ...

    registry.add(one)
    registry.add(one)  # the same function again (a module loaded twice) is fine
    with pytest.raises(InvalidFunction, match="function name 'same' is defined twice"):
        registry.add(two)


def test_builtins_load_lazily_by_name():
    assert REGISTRY.find("log").name == "log"
    assert "http-request" in REGISTRY.names()


def test_load_module_by_path_and_by_dotted_name(tmp_path):
    mod = tmp_path / "my_funcs.py"
    mod.write_text(
        textwrap.dedent("""
        from pydantic import BaseModel
        from knflow import function
        class A(BaseModel):
            v: int
        @function(name="sdk-from-file")
        async def f(inp: A) -> A:
            return inp
    """)
    )
    load_module(str(mod))
    load_module(str(mod))  # idempotent
    assert REGISTRY.get("sdk-from-file").input_model.__name__ == "A"
    load_module("examples.hello")
    assert REGISTRY.get("split-words").name == "split-words"


def test_load_module_errors_name_the_module_and_the_line(tmp_path):
    broken = tmp_path / "broken.py"
    broken.write_text("x = 1\nraise ValueError('boom')\n")
    with pytest.raises(
        ModuleLoadError, match=r"functions module '.*broken.py' failed to import: ValueError: boom \(.*broken.py:2\)"
    ):
        load_module(str(broken))
    with pytest.raises(ModuleLoadError, match="not found"):
        load_module("missing/file.py")
    with pytest.raises(ModuleLoadError, match="No module named 'no_such_module'"):
        load_module("no_such_module")
    syntax = tmp_path / "syntax.py"
    syntax.write_text("def f(:\n")
    with pytest.raises(ModuleLoadError, match=r"SyntaxError.*syntax.py:1"):
        load_module(str(syntax))


def test_function_input_lays_inputs_over_config():
    assert function_input(double, {"x": 1}, {"x": 0, "z": 2}) == {"x": 1, "z": 2}
    assert function_input(double, {}, {"x": 3}) == {"x": 3}
    assert function_input(double, [1, 2], {"x": 3}) == [1, 2]


async def test_call_success_reports_output_and_timing():
    result = await call(double, {"x": 21}, ctx())
    assert result["output"] == {"y": 42}
    assert result["duration_ms"] >= 0 and result["started_at"].endswith("Z")


async def test_call_bad_input_is_a_failure_naming_the_field_not_a_retry():
    result = await call(double, {"x": "many"}, ctx("count"))
    err = result["error"]
    assert err["type"] == "InvalidInput"
    assert "input of node 'count' (function 'sdk-double') is invalid: field 'x'" in err["message"]
    assert err["detail"][0]["field"] == "x"


def _spec(body, timeout_s=5.0, name="sdk-tmp"):
    @function(name=name, timeout_s=timeout_s, register=False)
    async def f(inp: In, ctx: Context) -> Out:
        return await body(inp)

    return f


async def test_function_error_retryable_or_not():
    async def no(inp):
        raise FunctionError("the input is wrong", type="Rejected", detail={"x": inp.x})

    result = await call(_spec(no), {"x": 1}, ctx())
    assert result["error"] == {
        "type": "Rejected",
        "message": "node 'n' (function 'sdk-tmp'): the input is wrong",
        "detail": {"x": 1},
    }

    async def later(inp):
        raise FunctionError("try later", retryable=True)

    with pytest.raises(Retryable, match="try later"):
        await call(_spec(later), {"x": 1}, ctx())


async def test_timeout_and_unexpected_exception_are_retryable():
    async def slow(inp):
        await asyncio.Event().wait()

    with pytest.raises(Retryable, match=r"timed out after 0.05 s") as err:
        await call(_spec(slow, timeout_s=0.05), {"x": 1}, ctx())
    assert err.value.retryable and err.value.code == 503

    async def crash(inp):
        raise KeyError("k")

    with pytest.raises(Retryable, match="raised KeyError") as err:
        await call(_spec(crash), {"x": 1}, ctx())
    assert "Traceback" in err.value.error["detail"]["traceback"]


async def test_output_that_breaks_the_output_model_fails():
    async def wrong(inp):
        return {"y": "not a number"}

    result = await call(_spec(wrong), {"x": 1}, ctx())
    assert result["error"]["type"] == "InvalidOutput"
    assert "output of function 'sdk-tmp' is invalid: field 'y'" in result["error"]["message"]

    async def none(inp):
        return None

    result = await call(_spec(none), {"x": 1}, ctx())
    assert result["error"]["message"] == "node 'n' (function 'sdk-tmp') returned NoneType; expected Out"


def test_retry_is_the_brokers_one_policy():
    import broker.retry

    assert Retry is broker.retry.Retry  # what @function takes is what the brokers apply (tests/test_retry.py)
    assert Retry() == Retry(retries=0, backoff="exponential", delay_s=1.0, max_delay_s=60.0)  # the README's


def test_context_has_a_bound_logger():
    c = ctx()
    assert c.log is not None
    c.log.info("hello")  # must not raise


TYPED_USE = """
from typing import Any, assert_type
from pydantic import BaseModel
import knflow
from knflow import Context, function
from router.runs import RunRecord

class A(BaseModel):
    x: int

class B(BaseModel):
    y: int

@function
async def bare(inp: A, ctx: Context) -> B:
    return B(y=inp.x)

@function(timeout_s=5, retries=2, register=False)
async def called(inp: A) -> B:
    return B(y=inp.x)

async def use(ctx: Context, stack: Any, p: knflow.Pipeline) -> None:
    assert_type(await bare(A(x=1), ctx), B)
    assert_type(await called(A(x=1)), B)
    assert_type(called.traits.timeout_s, float)
    handle = await knflow.start_run(stack, p)
    assert_type(handle.id, str)
    assert_type(await handle.result(), RunRecord)
    wrong: str = (await called(A(x=1))).y
"""


def test_type_checkers_see_a_decorated_function_as_the_function_it_decorates(tmp_path):
    """mypy: `@function` and `@function(...)` keep the signature and the result type; `start_run` a handle."""
    (tmp_path / "typed_use.py").write_text(TYPED_USE)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--cache-dir",
            "/dev/null",
            "--no-error-summary",
            "--follow-imports=silent",
            "typed_use.py",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "MYPYPATH": str(Path(__file__).resolve().parent.parent)},
        timeout=110,
    )
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1 and 'expression has type "int", variable has type "str"' in lines[0], proc.stdout


@pytest.mark.parametrize("raw", ["abc", "0", "-1", "inf", "nan"])
async def test_an_invoke_with_a_bad_timeout_fails_naming_the_extension(raw):
    from cloudevents.core.v1.event import CloudEvent

    from broker import events
    from functions.handler import handle_invoke

    good = events.invoke_event(
        run_id="r1", pipeline="p", node="a", attempt=1, function="log", inputs={"message": "x"}, config={}
    )
    bad = CloudEvent({**good.get_attributes(), "knflowtimeout": raw}, good.get_data())
    reply = await handle_invoke(REGISTRY.get("log"), bad, "/t")
    assert reply.get_type() == events.NODE_FAILED
    error = reply.get_data()["error"]
    assert error["type"] == "InvalidEvent" and "extension 'knflowtimeout' must be a positive number" in error["message"]


def test_deployment_settings_are_traits_of_the_function():
    @function(
        name="sdk-deployed",
        gpu={"count": 2, "pool": "a100-80gb"},
        image="ghcr.io/acme/heavy:1",
        env={"MODEL": "large", "TOKEN": {"secret": "hf", "key": "token"}},
        volumes=[{"name": "models", "claim": "models", "mount": "/models"}],
        node_selector={"zone": "a"},
        tolerations=[{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}],
        service_account="heavy",
        annotations={"acme.dev/owner": "ml"},
        labels={"team": "ml"},
        register=False,
    )
    async def deployed(inp: In) -> Out:
        return Out(y=inp.x)

    t = deployed.traits
    assert t.gpu == 2 and t.deploy.gpu_pool == "a100-80gb" and t.deploy.gpu_count is None
    assert t.deploy.image == "ghcr.io/acme/heavy:1" and t.deploy.volumes[0].source == "models"
    assert t.deploy.service_account == "heavy" and t.deploy.labels == {"team": "ml"}


def test_deployment_settings_are_checked_when_the_decorator_is_applied():
    with pytest.raises(InvalidFunction) as err:

        @function(
            name="sdk-bad-deploy",
            image="Has Spaces",
            volumes=[{"name": "m", "claim": "m", "mount": "relative"}],
            tolerations=[{"key": "k", "operator": "Maybe"}],
            gpu_memory="lots",
            register=False,
        )
        async def bad(inp: In) -> Out:
            return Out(y=1)

    text = str(err.value)
    assert "is invalid for 4 reasons" in text
    assert "not an image reference" in text and "absolute path" in text and "Exists or Equal" in text
    assert "gpu_memory" in text
