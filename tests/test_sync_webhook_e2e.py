"""Synchronous webhooks (`trigger: {type: webhook, respond: sync}`) across two routers on a real nats-server
and the MongoDB wire server: the request goes to router A, which takes no results (`--no-results`); router B
applies them; A answers with the `http-response` node's status, headers and body, read from the store. Also:
the run's final output without an http-response node, a failed run's 500, and a 504 with the run id past
`timeout_s`."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from tests.processes import Process, free_port
from tests.test_fabric_e2e import stream_env, wait_run
from tests.tokens import ADMIN_TOKEN, ROUTER_ENV

ROOT = Path(__file__).resolve().parent.parent
PIPELINES = {
    "greet": """
metadata: {name: greet}
trigger: {type: webhook, respond: sync, timeout_s: 20}
nodes:
  - {id: hello, type: log, inputs: {message: "hello {{ trigger.data.name }}"}}
  - id: answer
    type: http-response
    inputs:
      status: 201
      headers: {X-Greeting: "{{ hello.output.message }}"}
      body: {greeting: "{{ hello.output.message }}"}
  - {id: after, type: delay, inputs: {seconds: 3}}
edges: [{from: hello, to: answer}, {from: answer, to: after}]
""",
    "plain": """
metadata: {name: plain}
trigger: {type: webhook, respond: sync}
nodes: [{id: say, type: log, inputs: {message: "{{ trigger.data.name }}"}}]
""",
    "broken": """
metadata: {name: broken}
trigger: {type: webhook, respond: sync}
nodes: [{id: answer, type: http-response, inputs: {headers: {Transfer-Encoding: chunked}, body: x}}]
""",
    "slow": """
metadata: {name: slow}
trigger: {type: webhook, respond: sync, timeout_s: 1}
nodes: [{id: wait, type: delay, inputs: {seconds: 30}}]
""",
}
FUNCTIONS = ("log", "delay", "http-response")


@pytest.fixture(scope="module")
def routers(nats_server, mongo_server, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sync")
    files = []
    for name, text in PIPELINES.items():
        (tmp / f"{name}.yaml").write_text(text)
        files.append(str(tmp / f"{name}.yaml"))
    store = mongo_server.database_url(f"knflow_sync_{uuid.uuid4().hex[:8]}")
    env = {**stream_env(), **ROUTER_ENV}
    procs = []

    def router(label: str, *flags: str) -> Process:
        port = free_port()
        args = ["serve", "router", "--nats", nats_server.url, "--store", store, "--pipelines", *files]
        proc = Process([*args, "--port", str(port), "--host", "127.0.0.1", *flags], tmp / f"{label}.log", port, env)
        procs.append(proc.start())
        return proc

    a = router("router-a", "--no-results")
    b = router("router-b")
    dispatcher = [f"--function={f}" for f in FUNCTIONS]
    procs.append(
        Process(
            ["serve", "dispatcher", "--nats", nats_server.url, *dispatcher, "--dead-letter", f"{b.url}/dead-letter"],
            tmp / "dispatcher.log",
            None,
            env,
        ).start()
    )
    yield a, b
    for p in reversed(procs):
        p.stop()


def post(url: str, body: dict, key: str | None = None, timeout_s: float = 30) -> tuple[int, dict[str, str], bytes]:
    headers = {"content-type": "application/json", "authorization": f"Bearer {ADMIN_TOKEN}"}
    req = urllib.request.Request(url, json.dumps(body).encode(), headers | ({"idempotency-key": key} if key else {}))
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, {k.lower(): v for k, v in err.headers.items()}, err.read()


def test_router_a_answers_with_the_http_response_node_that_router_b_applied(routers):
    a, b = routers
    status, headers, body = post(f"{a.url}/hooks/greet", {"name": "Ada"})
    assert status == 201, body
    assert json.loads(body) == {"greeting": "hello Ada"}
    assert headers["x-greeting"] == "hello Ada"
    run_id = headers["knflow-run"]
    run = wait_run(b.url, run_id)  # the answer came before the run's last node ran
    assert run["status"] == "succeeded" and run["nodes"]["after"]["started_at"] > run["nodes"]["answer"]["finished_at"]
    assert '"event": "node succeeded"' not in a.output(10**7)  # A took no result: B applied them all
    applied = [line for line in b.output(10**7).splitlines() if '"event": "node succeeded"' in line and run_id in line]
    assert len(applied) == 3, applied


def test_without_an_http_response_node_the_answer_is_the_runs_output(routers):
    a, _ = routers
    status, headers, body = post(f"{a.url}/hooks/plain", {"name": "just this"})
    assert status == 200 and json.loads(body)["message"] == "just this" and headers["knflow-run"]


def test_an_http_response_with_a_hop_by_hop_header_fails_the_run_and_answers_500(routers):
    a, _ = routers
    status, _, body = post(f"{a.url}/hooks/broken", {})
    doc = json.loads(body)
    assert status == 500 and doc["status"] == "failed" and doc["node"] == "answer"
    assert "Transfer-Encoding" in doc["error"] and "hop-by-hop" in doc["error"]


def test_past_its_timeout_a_sync_webhook_answers_504_with_the_run_to_poll(routers):
    a, _ = routers
    status, headers, body = post(f"{a.url}/hooks/slow", {})
    doc = json.loads(body)
    assert status == 504 and doc["status"] == "running" and doc["poll"] == f"/runs/{doc['run']}"
    assert "timeout_s" in doc["error"] and headers["knflow-run"] == doc["run"]


def test_a_sync_webhook_sent_twice_with_one_idempotency_key_answers_from_the_same_run(routers):
    a, b = routers
    key = f"order-{uuid.uuid4().hex[:6]}"
    first = post(f"{a.url}/hooks/plain", {"name": "once"}, key)
    second = post(f"{b.url}/hooks/plain", {"name": "twice"}, key)  # the other router: the same run, its answer
    assert first[0] == second[0] == 200 and first[1]["knflow-run"] == second[1]["knflow-run"]
    assert json.loads(first[2]) == json.loads(second[2]) and json.loads(second[2])["message"] == "once"
