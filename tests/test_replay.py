"""Replay: redrive in place, --from, re-run, bulk, cancel — the pure decisions and the embedded path."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from knflow import FunctionError, function
from knflow.local import EmbeddedStack
from router import replay
from router.loader import load_string
from router.pipeline_doc import from_dict
from router.replay import InvalidDuration, ReplayRefused, parse_duration_s
from router.store.sqlite import SqliteStore

CALLS: list[str] = []
GATE = {"open": False}


class N(BaseModel):
    n: int


@function(name="rp-inc")
async def inc(inp: N) -> N:
    CALLS.append("inc")
    return N(n=inp.n + 1)


@function(name="rp-gate")
async def gate(inp: N) -> N:
    CALLS.append("gate")
    if not GATE["open"]:
        raise FunctionError("the gate is closed")
    return inp


PIPELINE = f"""
metadata: {{name: rp}}
functions: [{__name__}]
nodes:
  - {{id: a, type: rp-inc, inputs: {{n: "{{{{ trigger.data.n }}}}"}}}}
  - {{id: side, type: rp-inc, inputs: {{n: 100}}}}
  - {{id: b, type: rp-gate, inputs: "{{{{ a.output }}}}"}}
  - {{id: c, type: rp-inc, inputs: "{{{{ b.output }}}}"}}
edges: [{{from: a, to: b}}, {{from: b, to: c}}]
"""


@pytest.fixture
def stack(tmp_path):
    CALLS.clear()
    GATE["open"] = False
    return EmbeddedStack(SqliteStore(tmp_path / "k.db"))


async def test_redrive_after_a_fix_runs_only_what_failed_and_keeps_every_attempt(stack):
    p = load_string(PIPELINE, "rp.yaml")
    async with stack:
        run = await stack.execute(p, {"n": 1})
        assert run["status"] == "failed" and run["nodes"]["c"]["status"] == "cancelled"
        assert sorted(CALLS) == ["gate", "inc", "inc"]
        GATE["open"] = True
        run = await stack.wait(await stack.redrive(run["id"], by="alice"))
    assert run["status"] == "succeeded" and run["nodes"]["c"]["output"] == {"n": 3}
    assert sorted(CALLS) == ["gate", "gate", "inc", "inc", "inc"]  # a and side were not invoked again
    b = run["nodes"]["b"]
    assert b["attempt"] == 2 and b["attempts"][0]["status"] == "failed"
    assert "the gate is closed" in b["attempts"][0]["error"]["message"]
    assert run["nodes"]["a"]["attempt"] == 1 and "attempts" not in run["nodes"]["a"]
    [entry] = run["replays"]
    assert (
        entry["kind"] == "redrive"
        and entry["by"] == "alice"
        and entry["reset"] == ["b", "c"]
        and entry["previous_status"] == "failed"
    )


async def test_from_node_reruns_it_and_what_is_downstream_even_if_succeeded(stack):
    GATE["open"] = True
    p = load_string(PIPELINE, "rp.yaml")
    async with stack:
        run = await stack.execute(p, {"n": 1})
        CALLS.clear()
        run = await stack.wait(await stack.redrive(run["id"], from_node="b"))
    assert run["status"] == "succeeded" and sorted(CALLS) == ["gate", "inc"]
    assert run["nodes"]["b"]["attempt"] == 2 and run["nodes"]["a"]["attempt"] == 1


async def test_rerun_is_a_new_linked_run_from_the_stored_trigger(stack):
    GATE["open"] = True
    p = load_string(PIPELINE, "rp.yaml")
    async with stack:
        old = await stack.execute(p, {"n": 41})
        new = await stack.wait(await stack.redrive(old["id"], new_run=True, by="bob"))
    assert new["id"] != old["id"] and new["replay_of"] == old["id"]
    assert new["nodes"]["a"]["output"] == {"n": 42} and new["trigger"]["data"] == {"n": 41}


async def test_bulk_redrive_of_many_failed_runs(stack):
    p = load_string(PIPELINE, "rp.yaml")
    async with stack:
        ids = [await stack.start(p, {"n": i}) for i in range(50)]
        assert [(await stack.wait(i))["status"] for i in ids] == ["failed"] * 50
        GATE["open"] = True
        report = await stack.router.replay_many("rp", "failed", parse_duration_s("1h"), False, "ops")
        assert len(report) == 50 and [r for r in report if "error" in r] == []
        runs = [await stack.wait(r["replay"]) for r in report]
    assert all(r["status"] == "succeeded" for r in runs)
    assert CALLS.count("gate") == 100


def test_redrive_refuses_what_makes_no_sense():
    p, _ = from_dict({"metadata": {"name": "x"}, "nodes": [{"id": "a", "type": "f"}]})
    run = {"id": "r", "status": "running", "nodes": {"a": {"status": "scheduled", "attempt": 1}}}
    with pytest.raises(ReplayRefused, match="is still running; cancel it first"):
        replay.plan_redrive(p, run, "t")
    run = {"id": "r", "status": "succeeded", "nodes": {"a": {"status": "succeeded", "attempt": 1}}}
    with pytest.raises(ReplayRefused, match="nothing to redrive"):
        replay.plan_redrive(p, run, "t")
    with pytest.raises(ReplayRefused, match="--from names unknown node 'zz'"):
        replay.plan_redrive(p, run, "t", from_node="zz")
    with pytest.raises(ReplayRefused, match="already ended succeeded"):
        replay.plan_cancel(run, "t")
    with pytest.raises(InvalidDuration, match="duration '2 weeks' is not valid"):
        parse_duration_s("2 weeks")
    assert parse_duration_s("90s") == 90 and parse_duration_s("2h") == 7200


def test_cancel_stops_pending_nodes_and_keeps_in_flight_ones():
    run = {
        "id": "r",
        "status": "running",
        "nodes": {"a": {"status": "scheduled", "attempt": 1}, "b": {"status": "pending", "attempt": 0}},
    }
    transitions, change = replay.plan_cancel(run, "t", by="carol")
    assert [t.node for t in transitions] == ["b"] and transitions[0].fields["status"] == "cancelled"
    assert change.fields["status"] == "cancelled" and change.fields["cancelled_by"] == "carol"


class Report(BaseModel):
    run_id: str
    pipeline: str
    failed_node: str
    error: dict
    traceback: str | None = None
    trigger: dict | None = None


REPORTS: list[Report] = []


@function(name="rp-on-failure")
async def on_failure(inp: Report) -> Report:
    REPORTS.append(inp)
    return inp


async def test_on_failure_handler_gets_the_failed_run_then_the_run_fails(stack):
    REPORTS.clear()
    p = load_string(PIPELINE + "on_failure: rp-on-failure\n", "rp.yaml")
    assert p.run_nodes[-1] == "on-failure"
    async with stack:
        run = await stack.execute(p, {"n": 5})
        assert run["status"] == "failed" and run["error"]["node"] == "b"
        assert run["nodes"]["on-failure"]["status"] == "succeeded"
        [report] = REPORTS
        assert report.failed_node == "b" and report.run_id == run["id"] and report.trigger == {"n": 5}
        assert "the gate is closed" in report.error["message"]
        GATE["open"] = True
        run = await stack.wait(await stack.redrive(run["id"]))
    assert run["status"] == "succeeded" and run["nodes"]["on-failure"]["status"] == "skipped"
    assert len(REPORTS) == 1


async def test_on_failure_handler_is_skipped_when_the_run_succeeds(stack):
    GATE["open"] = True
    p = load_string(PIPELINE + "on_failure: rp-on-failure\n", "rp.yaml")
    async with stack:
        run = await stack.execute(p, {"n": 5})
    assert run["status"] == "succeeded" and run["nodes"]["on-failure"]["status"] == "skipped"


def test_unknown_on_failure_function_is_reported():
    from router.pipeline import PipelineInvalid

    with pytest.raises(PipelineInvalid, match="on_failure names unknown function 'nope'"):
        load_string(PIPELINE + "on_failure: nope\n", "rp.yaml")
