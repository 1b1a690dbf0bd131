"""Fuzzing the router's API (issue 12): schemathesis against a real `knflow serve router` (SQLite, a few
pipelines loaded, runs made), every route and method of its own OpenAPI document, with the bootstrap admin
token. Every case: no 5xx, the response as the document says (body schema, content type), and an answer
within `MAX_RESPONSE_S`. Path parameters are drawn both from what schemathesis makes up and from the real
pipelines, runs and tokens, so that the handlers behind a found target are fuzzed too.

Derandomized (a fixed seed per operation, no example database) so that CI runs the same cases each time;
`MAX_EXAMPLES` per operation keeps the whole module near 60 s on two cores.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
)

from tests.processes import Process, free_port
from tests.test_fabric_e2e import http
from tests.tokens import ROUTER_ENV, bearer, create_token

ROOT = Path(__file__).resolve().parent.parent
MAX_RESPONSE_S = 10.0  # a hang, not a speed: two cores shared with the rest of the suite (3 s was seen once)
MAX_EXAMPLES = 200  # per operation: about 3,000 cases in all, ~60 s on two cores
NODES = "nodes: [{id: say, type: log, inputs: {message: '{{ trigger.data.m }}'}}]\n"
PIPELINES = {
    "hooked": "metadata: {name: hooked}\ntrigger: {type: webhook}\n" + NODES,
    "signed": "metadata: {name: signed}\n"
    "trigger: {type: webhook, auth: {scheme: standard-webhooks, secret_env: FUZZ_WEBHOOK_SECRET}}\n" + NODES,
    "slow": "metadata: {name: slow}\ntrigger: {type: webhook}\n"
    "nodes: [{id: wait, type: delay, inputs: {seconds: 60}}]\n",
    "evented": "metadata: {name: evented}\ntrigger: {type: cloudevent, filter: {type: com.example.fuzz}}\n" + NODES,
}
BINARY_EVENT = {"ce-id": "x1", "ce-source": "/fuzz", "ce-type": "com.example.fuzz", "ce-specversion": "1.0"}
CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance, response_headers_conformance]
CASES: list[float] = []  # each case's response time, for the module's last test


@pytest.fixture(scope="module")
def router(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fuzz")
    files = []
    for name, text in PIPELINES.items():
        (tmp / f"{name}.yaml").write_text(text)
        files.append(str(tmp / f"{name}.yaml"))
    env = {
        "PYTHONPATH": str(ROOT),
        "KNFLOW_BLOB_URL": (tmp / "blobs").as_uri(),
        "FUZZ_WEBHOOK_SECRET": "whsec_" + "ZnV6ei13ZWJob29rLXNlY3JldC1mb3ItdGVzdHM=",
        **ROUTER_ENV,
    }
    port = free_port()
    args = [
        "serve",
        "router",
        "--store",
        f"sqlite:///{tmp}/runs.db",
        "--pipelines",
        *files,
        "--port",
        str(port),
        "--host",
        "127.0.0.1",
    ]
    proc = Process(args, tmp / "router.log", port, env).start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def targets(router) -> dict[str, list[str]]:
    """Real values for each path parameter: the pipelines, runs (finished and running) and tokens."""
    runs = []
    for name in ("hooked", "hooked", "slow"):
        status, body = http("POST", f"{router.url}/hooks/{name}", json.dumps({"m": "fuzz"}).encode())
        assert status == 202, body
        runs.append(body["run"])
    create_token(router.url, "fuzz-reader", "read")
    return {"name": [*PIPELINES, "fuzz-reader"], "run_id": runs}


@pytest.fixture(scope="module")
def api(router):
    """The served router's own OpenAPI document, as schemathesis reads it."""
    schema = schemathesis.openapi.from_url(f"{router.url}/openapi.json", timeout=10)
    # the dashboard's event streams (GET /runs/stream, /runs/{id}/stream) end only with their run, or never:
    # a case reads the first event, the answer to check, then closes the stream
    schema.config.max_stream_events = 1
    return schema


# ---- what the fuzzer found (each was a 500); these run before the fuzzing, which deletes pipelines ---------


@pytest.mark.parametrize(
    ("body", "field", "why"),
    [
        (b'{"m": "\\ud800"}', "m", "lone UTF-16 surrogate"),  # json reads it; no UTF-8 answer or store holds it
        (b'{"a": [1, {"n": -22431732344821686272}]}', "a[1].n", "outside the 64-bit range"),  # orjson, BSON: 64 bits
        (b'{"m": NaN}', "m", "not a JSON number"),  # orjson would store null: changed silently
        (b'{"a": {"k\\u0000": 1}}', "a", "NUL character"),  # BSON's keys are C strings: a 500 on MongoDB
    ],
)
def test_json_values_knflow_cannot_carry_are_a_400_naming_the_field(router, body, field, why):
    status, answer = http("POST", f"{router.url}/hooks/hooked", body, {"content-type": "application/json"})
    assert status == 400 and answer["field"] == field and why in answer["error"], answer
    headers = {**BINARY_EVENT, "content-type": "application/json"}  # binary mode: the body is the data
    status, answer = http("POST", f"{router.url}/events", body, headers)
    assert status == 400 and why in answer["error"], answer
    structured = b'{"specversion": "1.0", "id": "x2", "source": "/fuzz", "type": "com.example.fuzz", "data": %s}' % body
    status, answer = http("POST", f"{router.url}/events", structured, {"content-type": "application/cloudevents+json"})
    assert status == 400 and why in answer["error"], answer


def test_an_event_with_binary_data_is_a_400_not_a_run_the_store_cannot_hold(router):
    headers = {**BINARY_EVENT, "content-type": "application/octet-stream"}
    status, answer = http("POST", f"{router.url}/events", b"\x00\xff", headers)
    assert status == 400 and answer["field"] == "data" and "'application/octet-stream'" in answer["error"], answer


def test_a_pipeline_the_store_cannot_hold_is_a_422(router):
    status, answer = http(
        "PUT",
        f"{router.url}/pipelines/big",
        b"metadata: {name: big}\nvariables: {n: 99999999999999999999999}\n"
        b"nodes: [{id: a, type: log, inputs: {message: hi}}]\n",
        {"content-type": "application/yaml"},
    )
    assert status == 422 and "outside the 64-bit range" in answer["problems"][0], answer
    body = b'{"metadata": {"name": "u"}, "nodes": [{"id": "a", "type": "log", "inputs": {"message": "\\ud800"}}]}'
    status, answer = http("PUT", f"{router.url}/pipelines/u", body, {"content-type": "application/json"})
    assert status == 422 and "lone UTF-16 surrogate" in answer["problems"][0], answer


def cases(operation: Any, targets: dict[str, list[str]]) -> st.SearchStrategy:
    """Valid and invalid requests (schemathesis' positive and negative modes), with made-up path parameters
    and with real ones."""
    params = re.findall(r"{(\w+)}", operation.path)
    real = [{p: value for p in params} for p in params[:1] for value in targets[p]] if params else []
    return st.one_of(
        *(
            operation.as_strategy(generation_mode=mode, path_parameters=fixed)
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
            for fixed in [None, *real]
        )
    )


def fuzz(operation: Any, url: str, targets: dict[str, list[str]]) -> None:
    @settings(
        max_examples=MAX_EXAMPLES,
        derandomize=True,  # the same cases on every run
        database=None,
        deadline=None,  # the response time is measured below, on the wire
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
    )
    @given(case=cases(operation, targets))
    def one(case: Any) -> None:
        started = time.perf_counter()
        response = case.call(base_url=url, headers=bearer(), timeout=5 * MAX_RESPONSE_S)
        elapsed_s = time.perf_counter() - started
        CASES.append(elapsed_s)
        case.validate_response(response, checks=CHECKS)
        assert elapsed_s < MAX_RESPONSE_S, f"{case.method} {case.formatted_path} took {elapsed_s:.2f} s"

    one()


def test_every_route_survives_fuzzing(router, api, targets, subtests):
    operations = [result.ok() for result in api.get_all_operations()]
    assert len(operations) >= 25, [op.label for op in operations]
    for operation in operations:
        with subtests.test(operation.label):
            fuzz(operation, router.url, targets)


def test_the_fuzzed_router_logged_no_traceback(router):
    """Runs after the fuzzing (file order): thousands of cases, and not one traceback in the router's log."""
    assert len(CASES) >= 2000, len(CASES)
    print(f"{len(CASES)} cases, slowest {max(CASES) * 1000:.0f} ms")
    log = router.output(max_chars=10**8)
    assert "Traceback" not in log, log[log.index("Traceback") - 2000 :][:6000]
    assert http("GET", f"{router.url}/healthz")[0] == 200
