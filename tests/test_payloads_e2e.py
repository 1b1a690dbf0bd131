"""Odd payloads cross the whole fabric unchanged: a property test. Hypothesis draws JSON values (characters
outside the BMP, empty strings and keys, keys with `$` and `.`, 64-bit integers at their limits, floats),
sends each as a webhook body, a binary-mode CloudEvent and a structured-mode CloudEvent to `knflow dev
--isolate` (its own nats-server, function services over HTTP), on SQLite and on the MongoDB wire server;
two nodes echo it through templates, the broker and the store, and both nodes' outputs must be the value
sent, exactly (kinds included: 1 is not 1.0, 0.0 is not -0.0).

    POST -> router -> store -> NATS -> function service (HTTP) -> NATS -> router -> store -> ... -> GET /runs/{id}
"""

from __future__ import annotations

import json
import math
import uuid
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from broker.limits import INT64_MAX, INT64_MIN
from functions.sdk import function
from tests.processes import Process, free_port
from tests.test_fabric_e2e import http, wait_run

ROOT = Path(__file__).resolve().parent.parent
EVENT_TYPE = "com.example.payload.sent"

PIPELINE = f"""
apiVersion: knflow.dev/v1
kind: Pipeline
metadata: {{name: payloads}}
triggers:
  - {{type: webhook}}
  - {{type: cloudevent, filter: {{type: {EVENT_TYPE}}}}}
nodes:
  - {{id: first, type: echo-payload, inputs: {{value: "{{{{ trigger.data.value }}}}"}}}}
  - {{id: second, type: echo-payload, inputs: "{{{{ first.output }}}}"}}
edges:
  - {{from: first, to: second}}
"""
ODD_PIPELINE = """
apiVersion: knflow.dev/v1
kind: Pipeline
metadata: {name: odd-output}
triggers: [{type: webhook}]
nodes:
  - {id: odd, type: odd-output, inputs: {kind: "{{ trigger.data.kind }}"}}
"""
ODD = {"nul-key": {"k\x00": 1}, "big-int": [1, {"n": 2**70}]}  # what a function may return but no store holds


class Payload(BaseModel):
    value: Any = None


@function(name="echo-payload", description="returns its input as it came (tests/test_payloads_e2e.py)")
async def echo_payload(inp: Payload) -> Payload:
    return inp


class Odd(BaseModel):
    kind: str


@function(name="odd-output", description="returns a value knflow cannot carry (tests/test_payloads_e2e.py)")
async def odd_output(inp: Odd) -> Payload:
    return Payload(value=ODD[inp.kind])


TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=12)  # any code point but a lone surrogate
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(INT64_MIN, INT64_MAX)
    | st.sampled_from([INT64_MIN, INT64_MAX, 0, -1, 2**53 + 1])
    | st.floats(allow_nan=False, allow_infinity=False)
    | TEXT
    | st.sampled_from(["", "\U0001f600\U00010348", "\x00", "é" * 50, "$set", "a.b"])
)
KEYS = TEXT.filter(lambda k: "\x00" not in k) | st.sampled_from(["", "$", "$inc", "a.b", ".", "\U0001f600", "_id"])
VALUES = st.recursive(
    SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=4), max_leaves=10
)
MODES = st.sampled_from(["webhook", "binary", "structured"])


@pytest.fixture(scope="module", params=["sqlite", "mongo"])
def dev(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp(f"payloads-{request.param}")
    (folder / "payloads.yaml").write_text(PIPELINE)
    (folder / "odd.yaml").write_text(ODD_PIPELINE)
    if request.param == "sqlite":
        store = f"sqlite:///{folder}/runs.db"
    else:
        store = request.getfixturevalue("mongo_server").database_url(f"knflow_test_payloads_{uuid.uuid4().hex[:8]}")
    port = free_port()
    args = [
        "dev",
        str(folder / "payloads.yaml"),
        str(folder / "odd.yaml"),
        "--isolate",
        "--port",
        str(port),
        "--store",
        store,
    ]
    env = {"KNFLOW_FUNCTIONS": "tests.test_payloads_e2e", "PYTHONPATH": str(ROOT), "KNFLOW_NATS_URL": ""}
    proc = Process(args, folder / "dev.log", port, env, cwd=folder).start(timeout_s=90)
    yield proc
    proc.stop()
    assert "Traceback" not in proc.output(), proc.output()[-3000:]


def send(url: str, mode: str, value: Any) -> str:
    data = json.dumps({"value": value}, ensure_ascii=False).encode()
    if mode == "webhook":
        status, body = http("POST", f"{url}/hooks/payloads", data, {"content-type": "application/json"}, token=None)
    elif mode == "binary":
        headers = {
            "ce-specversion": "1.0",
            "ce-id": uuid.uuid4().hex,
            "ce-source": "/tests/payloads",
            "ce-type": EVENT_TYPE,
            "content-type": "application/json; charset=utf-8",
        }
        status, body = http("POST", f"{url}/events", data, headers, token=None)
    else:
        event = {"specversion": "1.0", "id": uuid.uuid4().hex, "source": "/tests/payloads", "type": EVENT_TYPE}
        raw = json.dumps({**event, "data": {"value": value}}, ensure_ascii=False).encode()
        status, body = http("POST", f"{url}/events", raw, {"content-type": "application/cloudevents+json"}, token=None)
    assert status == 202, (mode, status, body)
    assert isinstance(body, dict)
    runs = body.get("runs") or [body["run"]]
    assert len(runs) == 1, body
    return runs[0]


def same(a: Any, b: Any) -> bool:
    """Equal, and of the same JSON kind all the way down (1 and 1.0, and 0.0 and -0.0, are told apart)."""
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, float) and isinstance(b, float) and a == b and math.copysign(1, a) == math.copysign(1, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=VALUES, mode=MODES)
def test_any_json_value_crosses_the_fabric_unchanged(dev, value, mode):
    run = wait_run(dev.url, send(dev.url, mode, value), timeout_s=60)
    assert run["status"] == "succeeded", run
    assert same(run["nodes"]["first"]["output"], {"value": value}), (run["nodes"]["first"]["output"], value)
    assert same(run["nodes"]["second"]["output"], {"value": value}), (run["nodes"]["second"]["output"], value)


@pytest.mark.parametrize(("kind", "field", "why"), [("nul-key", "value", "NUL"), ("big-int", "value[1].n", "64-bit")])
def test_an_output_no_store_can_hold_fails_its_node_naming_the_field(dev, kind, field, why):
    data = json.dumps({"kind": kind}).encode()
    status, body = http("POST", f"{dev.url}/hooks/odd-output", data, {"content-type": "application/json"}, token=None)
    assert status == 202, body
    run = wait_run(dev.url, body["run"], timeout_s=60)
    assert run["status"] == "failed", run
    error = run["nodes"]["odd"]["error"]
    assert error["type"] == "InvalidOutput" and f"field {field!r}" in error["message"] and why in error["message"], (
        error
    )
