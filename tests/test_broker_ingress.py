"""The router's broker ingress (`knflow serve router --broker-ingress`, on Knative the cluster-local Service
`knflow-router-events` that Triggers, PingSources and dead-letter sinks deliver to): two real routers over one
SQLite store, as the manifests deploy them, the public one with its admin token, the ingress with none.

An external CloudEvent without a token starts its run at the ingress (the public router shows it); the same
event at the public router is a 401; a forged result or dead letter is still a 403 at the ingress and a signed
one applies; every API route of the public router is a 404 there, even with the admin token."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import pytest

from broker import events
from router.result_keys import ResultKey
from router.service.app import NOT_SERVED
from tests.processes import Process, free_port
from tests.signing import RESULT_KEY, sign
from tests.test_fabric_e2e import http, wait_run
from tests.test_tokens import knflow
from tests.tokens import ADMIN_TOKEN

ROOT = Path(__file__).resolve().parent.parent
PLACED = "com.example.order.placed"
SLOW = "com.example.order.slow"
PIPELINES = {
    "placed.yaml": f"metadata: {{name: placed}}\ntrigger: {{type: cloudevent, filter: {{type: {PLACED}}}}}\n"
    "nodes: [{id: say, type: log, inputs: {message: '{{ trigger.data.order }}'}}]\n",
    "slow.yaml": f"metadata: {{name: slow}}\ntrigger: {{type: cloudevent, filter: {{type: {SLOW}}}}}\n"
    "nodes: [{id: wait, type: delay, inputs: {seconds: 30}}]\n",
}
BROKER_ONLY = {("POST", "/events"), ("POST", "/dead-letter"), ("GET", "/healthz"), ("GET", "/metrics")}


def start(tmp: Path, name: str, env: dict[str, str], *flags: str) -> Process:
    port = free_port()
    files = [str(tmp / f) for f in PIPELINES]
    args = ["serve", "router", "--store", f"sqlite:///{tmp}/runs.db", "--pipelines", *files, "--port", str(port)]
    return Process(
        [*args, "--host", "127.0.0.1", *flags],
        tmp / f"{name}.log",
        port,
        {"PYTHONPATH": str(ROOT), "KNFLOW_NATS_URL": "", "KNFLOW_RESULT_KEY": RESULT_KEY, **env},
    ).start()


@pytest.fixture(scope="module")
def routers(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("broker-ingress")
    for file, text in PIPELINES.items():
        (tmp / file).write_text(text)
    public = start(tmp, "public", {"KNFLOW_ADMIN_TOKEN": ADMIN_TOKEN})
    try:
        ingress = start(tmp, "ingress", {"KNFLOW_ADMIN_TOKEN": ""}, "--broker-ingress")  # it needs no admin token
    except BaseException:
        public.stop()
        raise
    yield public, ingress
    ingress.stop()
    public.stop()


def external(event_type: str, data: dict, **headers: str) -> tuple[bytes, dict[str, str]]:
    """A CloudEvent in binary mode, as Knative's broker delivers one (no Authorization header)."""
    attrs = {"ce-id": uuid.uuid4().hex, "ce-source": "/shop", "ce-type": event_type, "ce-specversion": "1.0"}
    return json.dumps(data).encode(), {**attrs, "content-type": "application/json", **headers}


def test_an_external_event_without_a_token_starts_its_run_at_the_broker_ingress(routers):
    public, ingress = routers
    body, headers = external(PLACED, {"order": "o-1"})
    status, answer = http("POST", f"{ingress.url}/events", body, headers, token=None)
    assert status == 202, answer
    (run_id,) = answer["runs"]
    run = wait_run(public.url, run_id)  # one store: the public router's API shows the run the ingress started
    assert run["status"] == "succeeded" and run["pipeline"] == "placed", run
    # Knative's broker asks for a reply: an empty 202 (a JSON body would be a failed delivery to it)
    body, headers = external(PLACED, {"order": "o-2"}, prefer="reply")
    assert http("POST", f"{ingress.url}/events", body, headers, token=None) == (202, None)
    assert "broker ingress on http://127.0.0.1" in ingress.output(max_chars=10**6)


def test_the_same_event_at_the_public_router_needs_a_run_token(routers):
    public, _ = routers
    body, headers = external(PLACED, {"order": "o-3"})
    status, answer = http("POST", f"{public.url}/events", body, headers, token=None)
    assert status == 401 and answer["scope"] == "run" and "Authorization: Bearer" in answer["error"], answer
    status, answer = http("POST", f"{public.url}/events", body, headers)  # the admin token holds `run`
    assert status == 202 and len(answer["runs"]) == 1, answer


def test_a_forged_result_is_still_refused_at_the_broker_ingress_and_a_signed_one_applies(routers):
    public, ingress = routers
    body, headers = external(SLOW, {})
    status, answer = http("POST", f"{ingress.url}/events", body, headers, token=None)
    assert status == 202, answer
    (run_id,) = answer["runs"]
    deadline = time.monotonic() + 20
    while (run := http("GET", f"{public.url}/runs/{run_id}")[1])["nodes"]["wait"]["status"] != "scheduled":
        assert time.monotonic() < deadline, run
        time.sleep(0.05)
    attempt = str(run["nodes"]["wait"]["attempt"])
    result = {
        "ce-id": f"{run_id}:wait:{attempt}:ok",
        "ce-source": "/knflow/functions/delay",
        "ce-type": events.NODE_SUCCEEDED,
        "ce-specversion": "1.0",
        "ce-knflowrun": run_id,
        "ce-knflownode": "wait",
        "ce-knflowattempt": attempt,
        "ce-knflowpipeline": "slow",
        "content-type": "application/json",
    }
    forged = b'{"output": {"seconds": -1}}'
    for headers in (result, sign(result, ResultKey("x" * 32)), {**result, "prefer": "reply"}):
        status, answer = http("POST", f"{ingress.url}/events", forged, headers, token=None)
        assert status == 403 and "knflowtoken (header ce-knflowtoken)" in answer["error"], answer
    dead = {**result, "ce-id": f"{run_id}:wait:{attempt}", "ce-type": events.INVOKE, "ce-knativeerrorcode": "500"}
    status, answer = http("POST", f"{ingress.url}/dead-letter", b"{}", dead, token=None)
    assert status == 403 and "dead letter" in answer["error"], answer
    assert http("GET", f"{public.url}/runs/{run_id}")[1]["nodes"]["wait"] == run["nodes"]["wait"]  # unchanged

    # signed as the function signs it (the invoke's knflowtoken under the router's result key): it applies
    status, answer = http("POST", f"{ingress.url}/events", b'{"output": {"seconds": 0}}', sign(result), token=None)
    assert status == 202, answer
    done = wait_run(public.url, run_id)
    assert done["status"] == "succeeded" and done["nodes"]["wait"]["output"] == {"seconds": 0}, done


def test_every_api_route_is_a_404_at_the_broker_ingress(routers):
    public, ingress = routers
    status, doc = http("GET", f"{public.url}/openapi.json")
    assert status == 200
    routes = {(m.upper(), path) for path, ops in doc["paths"].items() for m in ops}
    api = routes - BROKER_ONLY
    assert len(api) >= 14 and routes >= BROKER_ONLY  # the public router serves them all
    for method, path in [*sorted(api), ("GET", "/openapi.json"), ("GET", "/docs")]:
        url = ingress.url + path.replace("{run_id}", "r1").replace("{name}", "placed")
        body = b"{}" if method in ("POST", "PUT") else None
        for token in (None, ADMIN_TOKEN):  # not even the admin token opens the API there
            status, answer = http(method, url, body, {"content-type": "application/json"}, token=token)
            assert (status, answer) == (404, {"error": NOT_SERVED}), (method, path, status, answer)
    assert http("GET", f"{ingress.url}/healthz", token=None) == (200, {"status": "ok"})


def test_the_broker_ingress_refuses_the_admin_token_and_insecure(tmp_path):
    env = {"KNFLOW_RESULT_KEY": RESULT_KEY, "KNFLOW_NATS_URL": ""}
    store = f"sqlite:///{tmp_path}/r.db"
    refused = knflow(
        "serve", "router", "--broker-ingress", "--store", store, env={**env, "KNFLOW_ADMIN_TOKEN": ADMIN_TOKEN}
    )
    assert refused.returncode == 1 and "unset KNFLOW_ADMIN_TOKEN" in refused.stderr, refused.stderr
    assert ADMIN_TOKEN not in refused.stderr + refused.stdout
    refused = knflow(
        "serve", "router", "--broker-ingress", "--insecure", "--store", store, env={**env, "KNFLOW_ADMIN_TOKEN": ""}
    )
    assert refused.returncode == 1 and "--insecure means nothing there" in refused.stderr, refused.stderr
    assert "Traceback" not in refused.stderr
