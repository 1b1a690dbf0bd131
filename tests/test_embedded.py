"""The embedded default end to end: in-memory broker, SQLite store, in-process functions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

import knflow
from knflow import FunctionError, Retry, function
from knflow.local import EmbeddedStack
from router.store.base import RunNotFound, RunUnreadable
from router.store.sqlite import SqliteStore
from router.loader import load, load_string

ROOT = Path(__file__).resolve().parent.parent
CALLS: dict[str, int] = {}


class Key(BaseModel):
    key: str


class Done(BaseModel):
    calls: int


@function(name="emb-flaky", retries=Retry(retries=3, delay_s=0.001))
async def flaky(inp: Key) -> Done:
    CALLS[inp.key] = CALLS.get(inp.key, 0) + 1
    if CALLS[inp.key] < 3:
        raise RuntimeError("not yet")
    return Done(calls=CALLS[inp.key])


@function(name="emb-reject", retries=3)
async def reject(inp: Key) -> Done:
    CALLS[inp.key] = CALLS.get(inp.key, 0) + 1
    raise FunctionError("this input can never work", type="Rejected")


def one_node(name: str, function: str, retry: str = "") -> str:
    return f"""
metadata: {{name: {name}}}
functions: [{__name__}]
nodes:
  - id: only
    type: {function}
    inputs: {{key: "{{{{ $run }}}}"}}
{retry}
"""


async def test_hello_through_the_public_api(tmp_path):
    record = await knflow.execute_run(
        knflow.load_pipeline(str(ROOT / "examples/hello.yaml")), {"text": "one two"}, store=f"sqlite:///{tmp_path}/k.db"
    )
    assert record["status"] == "succeeded"
    assert record["nodes"]["summary"]["output"] == {"count": 2, "shout": "hello: ONE TWO!"}


async def test_start_run_returns_a_handle_whose_result_is_the_record(tmp_path):
    hello = knflow.load_pipeline(str(ROOT / "examples/hello.yaml"))
    async with EmbeddedStack(SqliteStore(tmp_path / "k.db")) as stack:
        handle = await knflow.start_run(stack, hello, {"text": "one two three"})
        assert isinstance(handle, knflow.RunHandle) and handle.id
        record = await handle.result()
        assert record["id"] == handle.id and record["status"] == "succeeded"
        assert record["nodes"]["summary"]["output"]["count"] == 3
        assert await handle.result() == record  # a run that has ended: its record at once


async def test_transient_failures_are_retried_by_the_broker(tmp_path):
    p = load_string(one_node("emb-retry", "emb-flaky"), "t.yaml")
    async with EmbeddedStack(SqliteStore(tmp_path / "k.db")) as stack:
        run = await stack.execute(p)
    assert run["status"] == "succeeded"
    assert run["nodes"]["only"]["output"] == {"calls": 3} and CALLS[run["id"]] == 3
    assert run["nodes"]["only"]["attempt"] == 3  # the broker's retries count as attempts


async def test_retries_run_out_then_the_dead_letter_fails_the_node(tmp_path):
    p = load_string(one_node("emb-dead", "emb-flaky", "    retry: {retries: 1, delay_s: 0.001}"), "t.yaml")
    async with EmbeddedStack(SqliteStore(tmp_path / "k.db")) as stack:
        run = await stack.execute(p)
    assert run["status"] == "failed" and CALLS[run["id"]] == 2 and run["nodes"]["only"]["attempt"] == 2
    err = run["nodes"]["only"]["error"]
    assert err["type"] == "RuntimeError" and err["http_status"] == 503
    assert "node 'only' (function 'emb-flaky') raised RuntimeError: not yet" in err["message"]
    assert "Traceback" in err["detail"]["traceback"]
    assert run["error"]["node"] == "only"


async def test_a_failure_a_retry_cannot_fix_is_not_retried(tmp_path):
    p = load_string(one_node("emb-reject", "emb-reject"), "t.yaml")
    async with EmbeddedStack(SqliteStore(tmp_path / "k.db")) as stack:
        run = await stack.execute(p)
    assert run["status"] == "failed" and CALLS[run["id"]] == 1
    assert run["nodes"]["only"]["error"]["type"] == "Rejected"


async def test_many_runs_at_once_each_node_once(tmp_path):
    p = load(ROOT / "examples/hello.yaml")
    async with EmbeddedStack(SqliteStore(tmp_path / "k.db")) as stack:
        ids = [await stack.start(p, {"text": f"w{i} x"}) for i in range(200)]
        runs = [await stack.wait(i) for i in ids]
    assert all(r["status"] == "succeeded" for r in runs)
    assert all(n["attempt"] == 1 for r in runs for n in r["nodes"].values())
    assert runs[7]["nodes"]["shout"]["output"] == {"text": "W7 X!"}
    assert not [e for e in stack.broker.unrouted if e.get_type() == "dev.knflow.invoke"]


async def test_a_run_the_store_cannot_read_back_is_an_error_not_a_crash(tmp_path):
    class Unreadable(SqliteStore):  # stores runs, reads none back (a deleted run, a lagging replica)
        async def get_run(self, run_id):
            return None

    p = load(ROOT / "examples/hello.yaml")
    async with EmbeddedStack(Unreadable(tmp_path / "k.db")) as stack:
        run_id = await stack.start(p, {"text": "a b"})
        with pytest.raises(RunNotFound, match=run_id):
            await stack.wait(run_id)
        with pytest.raises(RunUnreadable, match=f"run '{run_id}' of pipeline 'hello' exists but cannot be read back"):
            await stack.start(p, {"text": "a b"}, run_id=run_id)  # the trigger delivered again


class Doc(BaseModel):
    doc: Any  # what pydantic hands over as it is: a function can mutate it in place


@function(name="emb-make")
async def make(inp: Doc) -> Doc:
    return Doc(doc={"items": [1, 2]})


@function(name="emb-mutate")
async def mutate(inp: Doc) -> Doc:
    inp.doc["items"].append(99)  # the input, changed in place
    return Doc(doc=inp.doc)


@function(name="emb-read")
async def read(inp: Doc) -> Doc:
    return Doc(doc=inp.doc)


async def test_a_function_that_mutates_its_input_changes_nobody_else_s(tmp_path):
    """Invokes are handed over as objects in process (no JSON between router and function): what a node
    reads is still its own copy, so a mutation neither reaches the upstream node's stored output nor a
    sibling that reads the same value."""
    p = load_string(
        f"""
metadata: {{name: emb-isolation}}
functions: [{__name__}]
nodes:
  - {{id: make, type: emb-make, inputs: {{doc: 1}}}}
  - {{id: mutate, type: emb-mutate, inputs: {{doc: "{{{{ make.output.doc }}}}"}}}}
  - {{id: read, type: emb-read, inputs: {{doc: "{{{{ make.output.doc }}}}"}}}}
edges: [{{from: make, to: mutate}}, {{from: mutate, to: read}}]
""",
        "t.yaml",
    )
    async with EmbeddedStack(SqliteStore(tmp_path / "k.db")) as stack:
        run = await stack.execute(p)
    assert run["status"] == "succeeded"
    assert run["nodes"]["mutate"]["output"] == {"doc": {"items": [1, 2, 99]}}
    assert run["nodes"]["make"]["output"] == {"doc": {"items": [1, 2]}}
    assert run["nodes"]["read"]["output"] == {"doc": {"items": [1, 2]}}
