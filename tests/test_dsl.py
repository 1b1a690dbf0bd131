"""Python pipelines: calling @functions inside @pipeline records the same model as YAML."""

from __future__ import annotations

import sys

import pytest
from pydantic import BaseModel

from functions.errors import InvalidFunction
from knflow import PipelineInvalid, Retry, execute_run, function, pipeline
from router.loader import load_string


class N(BaseModel):
    n: int


class Pair(BaseModel):
    left: int
    right: int


@function(name="dsl-inc")
async def inc(inp: N) -> N:
    return N(n=inp.n + 1)


@function(name="dsl-add")
async def add(inp: Pair) -> N:
    return N(n=inp.left + inp.right)


def test_calls_record_nodes_edges_and_templates():
    @pipeline(name="dsl-diamond", variables={"k": 1})
    def diamond(trigger, variables):
        a = inc(trigger)
        b = inc(n=a.n, _id="b")
        c = inc(a, _when="a.output.n > 0")
        return add(b.n, right=c.n)

    assert list(diamond.nodes) == ["dsl-inc", "b", "dsl-inc-2", "dsl-add"]
    assert diamond.nodes["dsl-inc"].inputs == "{{ trigger.data }}"
    assert diamond.nodes["b"].inputs == {"n": "{{ dsl-inc.output.n }}"}
    assert diamond.nodes["dsl-add"].inputs == {"left": "{{ b.output.n }}", "right": "{{ dsl-inc-2.output.n }}"}
    assert [(e.source, e.target, e.when) for e in diamond.edges] == [
        ("dsl-inc", "b", None),
        ("dsl-inc", "dsl-inc-2", "a.output.n > 0"),
        ("b", "dsl-add", None),
        ("dsl-inc-2", "dsl-add", None),
    ]
    assert diamond.variables == {"k": 1}


def test_condition_reading_a_node_by_its_id_validates_and_runs():
    @pipeline(name="dsl-cond")
    def cond(trigger):
        a = inc(trigger, _id="a")
        return inc(a, _id="b", _when="a.output.n > 5")

    record = __import__("asyncio").run(execute_run(cond, {"n": 1}))
    assert record["status"] == "succeeded"
    assert record["nodes"]["b"]["status"] == "skipped"


async def test_export_to_yaml_and_back_gives_the_same_model():
    @pipeline(name="dsl-export")
    def chain(trigger):
        return inc(inc(trigger, _id="first"), _id="second")

    again = load_string(chain.to_yaml(), "exported.yaml")
    assert again.to_dict() == chain.to_dict()
    record = await execute_run(again, {"n": 40})
    assert record["nodes"]["second"]["output"] == {"n": 42}


def test_retry_option_is_a_count_or_a_retry():
    @pipeline(name="dsl-retry")
    def retried(trigger):
        return inc(inc(trigger, _id="a", _retry=2), _id="b", _retry=Retry(retries=1, backoff="linear"))

    assert retried.nodes["a"].retry == Retry(retries=2)
    assert retried.nodes["b"].retry == Retry(retries=1, backoff="linear")


def test_mistakes_in_a_pipeline_body_are_reported():
    with pytest.raises(
        InvalidFunction, match=r"dsl-add\(\) takes at most 2 positional argument\(s\) \(left, right\), got 3"
    ):

        @pipeline(name="dsl-bad-args")
        def bad(trigger):
            add(trigger, trigger, trigger)

    with pytest.raises(InvalidFunction, match="is only known when the pipeline runs"):

        @pipeline(name="dsl-bad-if")
        def branch(trigger):
            a = inc(trigger)
            if a.n:
                inc(a)

    with pytest.raises(InvalidFunction, match="node id 'x' is used twice"):

        @pipeline(name="dsl-dup")
        def dup(trigger):
            inc(trigger, _id="x")
            inc(trigger, _id="x")

    with pytest.raises(
        InvalidFunction,
        match=r"pipeline 'dsl-bad-retry': dsl-inc\(\) _retry must be a count or a valid Retry: "
        r"retries must be an integer >= 0, got -1",
    ):

        @pipeline(name="dsl-bad-retry")
        def bad_retry(trigger):
            inc(trigger, _retry=-1)

    with pytest.raises(PipelineInvalid, match="called no @function"):

        @pipeline(name="dsl-empty")
        def empty(trigger):
            pass

    with pytest.raises(PipelineInvalid, match="does not parse"):

        @pipeline(name="dsl-bad-when")
        def when(trigger):
            a = inc(trigger, _id="a")
            inc(a, _when="a.output.n >")


def test_a_python_pipeline_goes_through_the_yaml_rules_with_the_line_of_each_call():
    calls: list[int] = []
    with pytest.raises(PipelineInvalid) as err:

        @pipeline(name="dsl-rules")
        def rules(trigger):
            calls.append(sys._getframe().f_lineno + 1)
            a = inc(trigger, _id="a", _run_on="tpu")
            calls.append(sys._getframe().f_lineno + 1)
            inc(a, _id="b", _foreach=[1, 2], _replicas=2)

    found = [str(p) for p in err.value.problems]
    assert found == [
        f"pipeline 'dsl-rules' ({__file__}:{calls[0]}): node 'a' field 'runOn': runOn 'tpu' is not one of "
        "engine, cpu, gpu",
        f"pipeline 'dsl-rules' ({__file__}:{calls[1]}): node 'b' field 'replicas': give one of foreach, replicas, "
        "not several: each fans the node out",
    ]


def test_an_unknown_option_gets_a_did_you_mean():
    with pytest.raises(InvalidFunction, match=r"unknown option\(s\) _retries \(did you mean _retry=3\?\)"):

        @pipeline(name="dsl-retries")
        def retries(trigger):
            inc(trigger, _retries=3)


def test_deploy_option_sets_a_nodes_deployment_settings():
    @pipeline(name="dsl-deploy")
    def deployed(trigger):
        inc(trigger, _id="a", _deploy={"gpu": {"pool": "l4"}, "labels": {"team": "ml"}})

    node = deployed.nodes["a"]
    assert node.deploy.gpu_pool == "l4" and node.deploy.labels == {"team": "ml"}
    with pytest.raises(PipelineInvalid, match=r"field 'deploy.image'.*not an image reference"):

        @pipeline(name="dsl-deploy-bad")
        def bad(trigger):
            inc(trigger, _id="a", _deploy={"image": "Not An Image"})
