"""Failures and replay across real processes: a router and a dispatcher (functions in-process) on a real
nats-server. Retries happen in the dispatcher; dead letters reach the router over HTTP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.processes import Process, free_port
from tests.test_fabric_e2e import http, stream_env, wait_run
from tests.tokens import CLI_ENV, ROUTER_ENV, create_token

ROOT = Path(__file__).resolve().parent.parent
FUNCS = str(ROOT / "tests/fixtures/failing.py")


def one(name: str, function: str) -> str:
    return f"""
metadata: {{name: {name}}}
trigger: {{type: webhook}}
nodes:
  - {{id: only, type: {function}, inputs: {{key: "{{{{ $run }}}}"}}}}
"""


CHAIN = """
metadata: {name: chain}
triggers: [{type: webhook}, {type: cloudevent, filter: {type: com.example.order.placed}}]
nodes:
  - {id: a, type: ff-step, inputs: {key: "{{ $run }}", n: "{{ trigger.data.n }}"}}
  - {id: b, type: ff-gate, inputs: "{{ a.output }}"}
  - {id: c, type: ff-step, inputs: "{{ b.output }}"}
  - {id: side, type: ff-step, inputs: {key: "{{ $run }}-side"}}
edges: [{from: a, to: b}, {from: b, to: c}]
"""


@pytest.fixture(scope="module")
def stack(nats_server, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("failures")
    files = []
    for name, fn in [("flaky", "ff-flaky"), ("always", "ff-always"), ("reject", "ff-reject"), ("slow", "ff-slow")]:
        (tmp / f"{name}.yaml").write_text(one(name, fn))
        files.append(str(tmp / f"{name}.yaml"))
    (tmp / "strict.yaml").write_text(one("strict", "ff-flaky").replace('"}}', '"}, retry: {retries: 0}}'))
    files.append(str(tmp / "strict.yaml"))
    (tmp / "chain.yaml").write_text(CHAIN)
    files.append(str(tmp / "chain.yaml"))
    env = {**stream_env(), "KNFLOW_TEST_STATE": str(tmp / "state")}
    port = free_port()
    router = Process(
        [
            "serve",
            "router",
            "--nats",
            nats_server.url,
            "--store",
            f"sqlite:///{tmp}/runs.db",
            "--functions",
            FUNCS,
            "--pipelines",
            *files,
            "--port",
            str(port),
            "--host",
            "127.0.0.1",
        ],
        tmp / "router.log",
        port,
        {**env, **ROUTER_ENV},
    ).start()
    functions = [
        a for f in ("ff-step", "ff-flaky", "ff-always", "ff-reject", "ff-slow", "ff-gate") for a in ("--function", f)
    ]
    dispatcher = Process(
        [
            "serve",
            "dispatcher",
            "--nats",
            nats_server.url,
            *functions,
            "--functions",
            FUNCS,
            "--dead-letter",
            f"{router.url}/dead-letter",
        ],
        tmp / "dispatcher.log",
        None,
        env,
    ).start()
    router.state = tmp / "state"
    router.env = env
    yield router
    dispatcher.stop()
    router.stop()


def start(stack, pipeline: str, data: dict | None = None) -> str:
    status, body = http("POST", f"{stack.url}/hooks/{pipeline}", json.dumps(data or {}).encode())
    assert status == 202, body
    return body["run"]


def calls(stack, function: str) -> list[str]:
    path = stack.state / f"{function}.calls"
    return path.read_text().split() if path.exists() else []


def test_fails_twice_then_succeeds_at_attempt_3(stack):
    run = wait_run(stack.url, start(stack, "flaky"))
    assert run["status"] == "succeeded" and run["nodes"]["only"]["attempt"] == 3
    assert calls(stack, "ff-flaky").count(run["id"]) == 3


def test_always_failing_goes_to_the_dead_letter_and_fails_the_run(stack):
    run = wait_run(stack.url, start(stack, "always"))
    assert run["status"] == "failed" and calls(stack, "ff-always").count(run["id"]) == 3
    err = run["nodes"]["only"]["error"]
    assert err["type"] == "RuntimeError" and err["http_status"] == 503 and run["nodes"]["only"]["attempt"] == 3
    assert "always: the database is down" in err["message"] and run["error"]["node"] == "only"


def test_a_failure_a_retry_cannot_fix_is_not_retried(stack):
    run = wait_run(stack.url, start(stack, "reject"))
    assert run["status"] == "failed" and calls(stack, "ff-reject").count(run["id"]) == 1
    assert run["nodes"]["only"]["error"]["type"] == "Rejected"


def test_a_nodes_own_retry_policy_overrides_its_functions(stack):
    run = wait_run(stack.url, start(stack, "strict"))  # ff-flaky retries 3 times, this node not at all
    assert run["status"] == "failed" and calls(stack, "ff-flaky").count(run["id"]) == 1


def test_a_timeout_is_retried(stack):
    run = wait_run(stack.url, start(stack, "slow"))
    assert run["status"] == "succeeded" and run["nodes"]["only"]["attempt"] == 2


def knflow(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """The CLI; with the routers' admin token in KNFLOW_TOKEN unless `env` is given."""
    return subprocess.run(
        [sys.executable, "-m", "knflow.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env=env if env is not None else {**os.environ, **CLI_ENV},
    )


def test_redrive_after_the_fix_invokes_succeeded_nodes_exactly_once(stack):
    (stack.state / "gate-open").unlink(missing_ok=True)
    run_id = start(stack, "chain", {"n": 1})
    run = wait_run(stack.url, run_id)
    assert run["status"] == "failed" and run["nodes"]["c"]["status"] == "cancelled"
    (stack.state / "gate-open").touch()
    ops = create_token(stack.url, f"ops-{uuid.uuid4().hex[:6]}", "operate")
    proc = knflow("replay", run_id, "--router", stack.url, "--by", "typed-by-the-caller", "--token", ops)
    assert proc.returncode == 0, proc.stderr
    run = wait_run(stack.url, run_id)
    assert run["status"] == "succeeded" and run["nodes"]["c"]["output"]["n"] == 13
    steps = calls(stack, "ff-step")
    assert steps.count(run_id) == 2 and steps.count(f"{run_id}-side") == 1  # a once, c once, side once
    assert calls(stack, "ff-gate").count(run_id) == 2
    assert run["replays"][0]["by"].startswith("ops-")  # the token's name, not what the caller typed
    assert run["nodes"]["b"]["attempts"][0]["status"] == "failed"

    proc = knflow("replay", run_id, "--from", "c", "--router", stack.url)
    assert proc.returncode == 0, proc.stderr
    run = wait_run(stack.url, run_id)
    assert run["status"] == "succeeded" and run["nodes"]["c"]["attempt"] == 2 and run["nodes"]["a"]["attempt"] == 1
    assert calls(stack, "ff-step").count(run_id) == 3 and calls(stack, "ff-gate").count(run_id) == 2


def test_bulk_replay_of_50_failed_runs(stack):
    (stack.state / "gate-open").unlink(missing_ok=True)
    ids = [start(stack, "chain", {"n": i}) for i in range(50)]
    assert {wait_run(stack.url, i, timeout_s=60)["status"] for i in ids} == {"failed"}
    (stack.state / "gate-open").touch()
    proc = knflow("replay", "--pipeline", "chain", "--status", "failed", "--since", "10m", "--router", stack.url)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "run(s) matched" in proc.stdout
    runs = [wait_run(stack.url, i, timeout_s=60) for i in ids]
    assert {r["status"] for r in runs} == {"succeeded"}
    steps = calls(stack, "ff-step")
    assert all(steps.count(i) == 2 and steps.count(f"{i}-side") == 1 for i in ids)


def test_event_replay_of_a_window(stack):
    (stack.state / "gate-open").touch()
    kind = "com.example.order.placed"
    sent = []
    for i in range(3):
        headers = {
            "ce-id": uuid.uuid4().hex,
            "ce-source": "/shop",
            "ce-type": kind,
            "ce-specversion": "1.0",
            "content-type": "application/json",
        }
        status, body = http("POST", f"{stack.url}/events", json.dumps({"n": i}).encode(), headers)
        assert status == 202 and len(body["runs"]) == 1
        sent.append((headers["ce-id"], body["runs"][0]))
    for _, run_id in sent:
        assert wait_run(stack.url, run_id)["status"] == "succeeded"
    proc = knflow("events", "replay", "--since", "10m", "--type", kind, "--router", stack.url)
    assert proc.returncode == 0, proc.stderr
    lines = [ln for ln in proc.stdout.splitlines() if kind in ln]
    assert [ln.split()[0] for ln in lines] == [s[0] for s in sent]  # each kept event once, in order
    new_runs = [ln.split("-> ")[1] for ln in lines]
    assert not set(new_runs) & {s[1] for s in sent}
    assert all(wait_run(stack.url, r)["status"] == "succeeded" for r in new_runs)
    assert http("POST", f"{stack.url}/events/replay", b"{}")[0] == 400
