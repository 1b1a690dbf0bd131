"""`http-response` (functions/builtins/http_response.py) and the `respond: sync` trigger keys: pure tests; the
whole path across two routers is tests/test_sync_webhook_e2e.py."""

from __future__ import annotations

import pytest

from functions.builtins.http_response import check_response
from functions.errors import FunctionError
from functions.catalogue import catalogue
from functions.registry import REGISTRY
from router.loader import load_string
from router.pipeline import PipelineInvalid, Pipeline
from router.sync_reply import answer

HOOK = "metadata: {name: hook}\ntrigger: {type: webhook, TRIGGER}\nnodes: [{id: a, type: http-response}]\n"


def test_a_valid_answer_passes_whole():
    assert check_response({"status": 201, "headers": {"X-Id": "7", "Content-Type": "text/csv"}, "body": "a,b"}) == (
        201,
        {"X-Id": "7", "Content-Type": "text/csv"},
        "a,b",
    )


@pytest.mark.parametrize(
    "value,named",
    [
        ({"status": 99}, "field 'status'"),
        ({"status": 600}, "field 'status'"),
        ({"status": True}, "field 'status'"),
        ({"headers": {"Bad Name": "x"}}, "'Bad Name' is not an HTTP token"),
        ({"headers": {"X-Split": "a\r\nSet-Cookie: s=1"}}, "'X-Split' must be a string"),
        ({"headers": {"Connection": "close"}}, "'Connection' cannot be set by a node (hop-by-hop"),
        ({"headers": {"content-length": "3"}}, "'content-length' cannot be set"),
        ({"headers": ["X"]}, "field 'headers' must map"),
        ("text", "must be an object"),
    ],
)
def test_a_bad_answer_is_refused_naming_the_field(value, named):
    with pytest.raises(FunctionError) as err:
        check_response(value)
    assert named in str(err.value)


def test_it_is_in_the_catalogue_under_http():
    entry = next(f for f in catalogue(REGISTRY) if f["name"] == "http-response")
    assert entry["category"] == "HTTP" and entry["builtin"]
    assert set(entry["input_schema"]["properties"]) == {"status", "headers", "body"}


def test_respond_and_timeout_s_are_webhook_keys_checked():
    p = load_string(HOOK.replace("TRIGGER", "respond: sync, timeout_s: 5"), "hook.yaml")
    assert (p.triggers[0].respond, p.triggers[0].timeout_s) == ("sync", 5.0)
    assert p.to_dict()["trigger"] == {"type": "webhook", "respond": "sync", "timeout_s": 5.0}
    for bad, named in (
        ("respond: later", "field 'trigger.respond'"),
        ("respond: sync, timeout_s: 0", "field 'trigger.timeout_s'"),
        ("respond: sync, timeout_s: 301", "at most 300"),
        ("timeout_s: 5", "respond: sync only"),
    ):
        with pytest.raises(PipelineInvalid) as err:
            load_string(HOOK.replace("TRIGGER", bad), "hook.yaml")
        assert named in str(err.value), bad
    with pytest.raises(PipelineInvalid) as err:
        load_string(
            HOOK.replace("type: webhook, TRIGGER", "type: cron, schedule: '* * * * *', respond: sync"), "h.yaml"
        )
    assert "webhook triggers only" in str(err.value)


def run_doc(p: Pipeline, status: str, **nodes: dict) -> dict:
    states = {n: {"status": "pending", "output": None} for n in p.nodes}
    return {"id": "r1", "status": status, "nodes": {**states, **nodes}, "error": None}


def test_the_answer_is_the_http_response_node_else_the_end_of_the_run():
    p = load_string(HOOK.replace("TRIGGER", "respond: sync"), "hook.yaml")
    assert answer(p, run_doc(p, "running")) is None
    done = run_doc(p, "running", a={"status": "succeeded", "output": {"status": 202, "headers": {}, "body": [1]}})
    assert (answer(p, done).status, answer(p, done).body) == (202, [1])
    forged = run_doc(p, "running", a={"status": "succeeded", "output": {"status": 200, "headers": {"Upgrade": "h2c"}}})
    assert answer(p, forged).status == 500  # the router checks the stored answer again
    failed = {**run_doc(p, "failed"), "error": {"message": "boom", "node": "a"}}
    assert answer(p, failed).status == 500 and answer(p, failed).body["error"] == "boom"
