"""The event fabric with real processes: a nats-server, the router, function services over HTTP, and a
dispatcher that delivers invokes from JetStream to them as a Knative Trigger would.

    webhook / CloudEvent -> router -> NATS -> dispatcher -> function service -> NATS -> router -> store
"""

from __future__ import annotations

import json
import os
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from tests.processes import Process, free_port
from tests.tokens import ADMIN_TOKEN, CLI_ENV, ROUTER_ENV
from tests.signing import RESULT_KEY, sign

ROOT = Path(__file__).resolve().parent.parent
FUNCTIONS = ["split-words", "count-words", "shout-words", "summarize"]
PIPELINE = """
apiVersion: knflow.dev/v1
kind: Pipeline
metadata: {name: fabric}
functions: [examples.hello]
triggers:
  - {type: webhook}
  - {type: cloudevent, filter: {type: com.example.text.submitted, source: /tests}}
nodes:
  - {id: split, type: split-words, inputs: {text: "{{ trigger.data.text }}"}}
  - {id: count, type: count-words, inputs: "{{ split.output }}"}
  - {id: shout, type: shout-words, inputs: "{{ split.output }}"}
  - id: summary
    type: summarize
    inputs: {count: "{{ count.output.count }}", shout: "{{ shout.output.text }}"}
edges:
  - {from: split, to: count}
  - {from: split, to: shout}
  - {from: count, to: summary}
  - {from: shout, to: summary}
"""


def http(
    method: str, url: str, body: bytes | None = None, headers: dict | None = None, token: str | None = ADMIN_TOKEN
) -> tuple[int, dict | list | None]:
    """One request; with `token` (default: the routers' bootstrap admin token) as `Authorization: Bearer`,
    unless `headers` carry their own (token=None: none)."""
    headers = dict(headers or {})
    if token and not any(k.lower() == "authorization" for k in headers):
        headers["authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            raw = resp.read()
            return resp.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as err:
        raw = err.read()
        return err.code, json.loads(raw) if raw else None


def wait_run(router: str, run_id: str, timeout_s: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        status, run = http("GET", f"{router}/runs/{run_id}")
        if status == 200 and run["status"] != "running":
            return run
        if time.monotonic() > deadline:
            raise AssertionError(f"run {run_id} not finished in {timeout_s} s: {run}")
        time.sleep(0.05)


def start_fabric(nats_url: str, tmp: Path, store_url: str, extra_env: dict[str, str] | None = None):
    """Router + four function services + a dispatcher, on a stream of their own, with `extra_env` (OTEL_* ...)
    for all of them; returns (router, processes)."""
    (tmp / "fabric.yaml").write_text(PIPELINE)
    env = {**stream_env(), **(extra_env or {})}
    procs = []
    try:
        router_port = free_port()
        router = Process(
            [
                "serve",
                "router",
                "--nats",
                nats_url,
                "--store",
                store_url,
                "--pipelines",
                str(tmp / "fabric.yaml"),
                "--port",
                str(router_port),
                "--host",
                "127.0.0.1",
            ],
            tmp / "router.log",
            router_port,
            {**env, **ROUTER_ENV, "KNFLOW_RESULT_KEY": RESULT_KEY},
        ).start()
        procs.append(router)
        routes = []
        router.functions = {}
        for name in FUNCTIONS:
            port = free_port()
            procs.append(
                Process(
                    [
                        "serve",
                        "function",
                        name,
                        "--functions",
                        "examples.hello",
                        "--port",
                        str(port),
                        "--host",
                        "127.0.0.1",
                    ],
                    tmp / f"{name}.log",
                    port,
                    env,
                ).start()
            )
            routes += ["--function", f"{name}=http://127.0.0.1:{port}/"]
            router.functions[name] = f"http://127.0.0.1:{port}/"
        procs.append(
            Process(
                [
                    "serve",
                    "dispatcher",
                    "--nats",
                    nats_url,
                    *routes,
                    "--functions",
                    "examples.hello",
                    "--dead-letter",
                    f"{router.url}/dead-letter",
                ],
                tmp / "dispatcher.log",
                None,
                env,
            ).start()
        )
        return router, procs
    except BaseException:
        for p in procs:
            p.stop()
        raise


@pytest.fixture(scope="module")
def fabric(nats_server, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fabric")
    router, procs = start_fabric(nats_server.url, tmp, f"sqlite:///{tmp}/runs.db")
    yield router
    for p in procs:
        p.stop()


@pytest.fixture(scope="module")
def fabric_on_mongo(nats_server, mongo_server, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fabric-mongo")
    router, procs = start_fabric(nats_server.url, tmp, mongo_server.database_url(f"knflow_e2e_{uuid.uuid4().hex[:8]}"))
    yield router
    for p in procs:
        p.stop()


def stream_env() -> dict[str, str]:
    """A stream (and subject prefix) of the test's own on the shared server."""
    name = f"t{uuid.uuid4().hex[:8]}"
    return {"KNFLOW_STREAM": name.upper(), "KNFLOW_SUBJECT_PREFIX": name, "PYTHONPATH": str(ROOT)}


def check_succeeded(run: dict, text: str) -> None:
    assert run["status"] == "succeeded", run
    words = text.split()
    assert run["nodes"]["split"]["output"] == {"words": words}
    assert run["nodes"]["summary"]["output"] == {"count": len(words), "shout": " ".join(w.upper() for w in words) + "!"}
    assert all(n["attempt"] == 1 and n["status"] == "succeeded" for n in run["nodes"].values())


def test_webhook_run_crosses_nats_and_function_services(fabric):
    status, body = http(
        "POST",
        f"{fabric.url}/hooks/fabric",
        b'{"text": "through real processes"}',
        {"content-type": "application/json"},
    )
    assert status == 202, body
    check_succeeded(wait_run(fabric.url, body["run"]), "through real processes")


def test_on_mongodb_webhook_and_cloudevents_fan_out_join_and_store_every_output(fabric_on_mongo):
    status, body = http("POST", f"{fabric_on_mongo.url}/hooks/fabric", b'{"text": "stored in mongo"}')
    assert status == 202
    check_succeeded(wait_run(fabric_on_mongo.url, body["run"]), "stored in mongo")
    binary = {
        "ce-id": uuid.uuid4().hex,
        "ce-source": "/tests",
        "ce-type": "com.example.text.submitted",
        "ce-specversion": "1.0",
        "content-type": "application/json",
    }
    status, body = http("POST", f"{fabric_on_mongo.url}/events", b'{"text": "binary on mongo"}', binary)
    check_succeeded(wait_run(fabric_on_mongo.url, body["runs"][0]), "binary on mongo")
    structured = {
        "specversion": "1.0",
        "id": uuid.uuid4().hex,
        "source": "/tests",
        "type": "com.example.text.submitted",
        "datacontenttype": "application/json",
        "data": {"text": "structured on mongo"},
    }
    status, body = http(
        "POST",
        f"{fabric_on_mongo.url}/events",
        json.dumps(structured).encode(),
        {"content-type": "application/cloudevents+json"},
    )
    check_succeeded(wait_run(fabric_on_mongo.url, body["runs"][0]), "structured on mongo")


def test_binary_cloudevent_starts_a_run(fabric):
    headers = {
        "ce-id": uuid.uuid4().hex,
        "ce-source": "/tests",
        "ce-type": "com.example.text.submitted",
        "ce-specversion": "1.0",
        "content-type": "application/json",
    }
    status, body = http("POST", f"{fabric.url}/events", b'{"text": "binary mode"}', headers)
    assert status == 202 and body["id"] == headers["ce-id"] and len(body["runs"]) == 1
    check_succeeded(wait_run(fabric.url, body["runs"][0]), "binary mode")
    again_status, again = http("POST", f"{fabric.url}/events", b'{"text": "binary mode"}', headers)
    assert again_status == 202 and again["runs"] == body["runs"]  # a redelivered event finds its run


def test_structured_cloudevent_starts_a_run(fabric):
    event = {
        "specversion": "1.0",
        "id": uuid.uuid4().hex,
        "source": "/tests",
        "type": "com.example.text.submitted",
        "datacontenttype": "application/json",
        "data": {"text": "structured mode"},
    }
    status, body = http(
        "POST", f"{fabric.url}/events", json.dumps(event).encode(), {"content-type": "application/cloudevents+json"}
    )
    assert status == 202, body
    check_succeeded(wait_run(fabric.url, body["runs"][0]), "structured mode")


def test_an_event_no_trigger_matches_starts_nothing(fabric):
    headers = {
        "ce-id": "x1",
        "ce-source": "/elsewhere",
        "ce-type": "com.example.text.submitted",
        "ce-specversion": "1.0",
    }
    status, body = http("POST", f"{fabric.url}/events", b"{}", {**headers, "content-type": "application/json"})
    assert status == 202 and body == {"id": "x1", "runs": []}


def test_duplicate_and_unknown_results_change_nothing(fabric):
    status, body = http("POST", f"{fabric.url}/hooks/fabric", b'{"text": "once only"}')
    run = wait_run(fabric.url, body["run"])
    result = {
        "ce-id": f"{run['id']}:split:1:ok",
        "ce-source": "/knflow/functions/split-words",
        "ce-type": "dev.knflow.node.succeeded",
        "ce-specversion": "1.0",
        "ce-knflowrun": run["id"],
        "ce-knflownode": "split",
        "ce-knflowattempt": "1",
        "ce-knflowpipeline": "fabric",
        "content-type": "application/json",
    }
    status, _ = http("POST", f"{fabric.url}/events", b'{"output": {"words": ["changed"]}}', sign(result))
    assert status == 202
    unknown = {**result, "ce-knflowrun": "no-such-run", "ce-id": "no-such-run:split:1:ok"}
    assert http("POST", f"{fabric.url}/events", b'{"output": {}}', sign(unknown))[0] == 202
    assert http("GET", f"{fabric.url}/runs/{run['id']}")[1] == run


def test_a_forged_result_is_refused_by_a_real_router(fabric):
    """Posted to the router as an attacker would, without the invoke's knflowtoken (or with another key's)."""
    status, body = http("POST", f"{fabric.url}/hooks/fabric", b'{"text": "not yours"}')
    run = wait_run(fabric.url, body["run"])
    forged = {
        "ce-id": f"{run['id']}:split:1:ok",
        "ce-source": "/knflow/functions/split-words",
        "ce-type": "dev.knflow.node.succeeded",
        "ce-specversion": "1.0",
        "ce-knflowrun": run["id"],
        "ce-knflownode": "split",
        "ce-knflowattempt": "1",
        "ce-knflowpipeline": "fabric",
        "content-type": "application/json",
    }
    for headers in (forged, sign(forged, "another-key-" + "x" * 32)):
        status, answer = http("POST", f"{fabric.url}/events", b'{"output": {"words": ["forged"]}}', headers)
        assert status == 403 and "knflowtoken (header ce-knflowtoken)" in answer["error"], answer
    dead = {**forged, "ce-id": f"{run['id']}:split:1", "ce-type": "dev.knflow.invoke", "ce-knativeerrorcode": "500"}
    status, answer = http("POST", f"{fabric.url}/dead-letter", b"{}", dead)
    assert status == 403 and "dead letter" in answer["error"], answer
    assert http("GET", f"{fabric.url}/runs/{run['id']}")[1] == run
    logs = fabric.output(max_chars=10**8)
    assert "result refused: knflowtoken missing" in logs and "dead letter refused: knflowtoken missing" in logs
    assert sign(forged)["ce-knflowtoken"] not in logs


def test_a_replayed_invoke_changes_nothing(fabric):
    """A Trigger may deliver an invoke again: the function answers again, the router ignores the reply."""
    _, body = http("POST", f"{fabric.url}/hooks/fabric", b'{"text": "replayed invoke"}')
    run = wait_run(fabric.url, body["run"])
    invoke = {
        "ce-id": f"{run['id']}:split:1",
        "ce-source": "/knflow/router",
        "ce-type": "dev.knflow.invoke",
        "ce-specversion": "1.0",
        "ce-knflowrun": run["id"],
        "ce-knflownode": "split",
        "ce-knflowattempt": "1",
        "ce-knflowpipeline": "fabric",
        "ce-knflowfunction": "split-words",
        "content-type": "application/json",
    }
    req = urllib.request.Request(
        fabric.functions["split-words"],
        data=b'{"inputs": {"text": "something else"}, "config": {}}',
        headers=sign(invoke),  # a redelivered invoke carries its token, and the function returns it
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        reply_headers = {
            k.lower(): v for k, v in resp.headers.items() if k.lower().startswith("ce-") or k.lower() == "content-type"
        }
        reply_body = resp.read()
    assert (
        reply_headers["ce-type"] == "dev.knflow.node.succeeded" and reply_headers["ce-id"] == f"{run['id']}:split:1:ok"
    )
    assert http("POST", f"{fabric.url}/events", reply_body, reply_headers)[0] == 202
    assert http("GET", f"{fabric.url}/runs/{run['id']}")[1] == run
    assert "duplicate or late result ignored" in fabric.output(max_chars=10**8)


BAD_EVENTS = [
    ({"ce-source": "/t", "ce-type": "t", "ce-specversion": "1.0"}, b"{}", 400, "'id'"),
    ({"ce-id": "1", "ce-type": "t", "ce-specversion": "1.0"}, b"{}", 400, "'source'"),
    ({"ce-id": "1", "ce-source": "/t", "ce-specversion": "1.0"}, b"{}", 400, "'type'"),
    ({"ce-id": "1", "ce-source": "/t", "ce-type": "t"}, b"{}", 400, "specversion"),
    (
        {"ce-id": "1", "ce-source": "/t", "ce-type": "t", "ce-specversion": "1.0", "content-type": "application/json"},
        b"{not json",
        400,
        "JSON",
    ),
    ({"content-type": "text/plain"}, b"hello", 400, "content"),
    ({"content-type": "application/cloudevents+json"}, b'{"id": "1"}', 400, "'source'"),
]


@pytest.mark.parametrize("headers,body,status,needle", BAD_EVENTS)
def test_malformed_events_get_400_naming_the_problem_and_store_nothing(fabric, headers, body, status, needle):
    before = http("GET", f"{fabric.url}/runs?limit=1000")[1]
    got, answer = http("POST", f"{fabric.url}/events", body, headers)
    assert got == status and needle.lower() in answer["error"].lower(), answer
    assert http("GET", f"{fabric.url}/runs?limit=1000")[1] == before


def test_oversized_bodies_get_413(fabric):
    big = b'{"text": "' + b"x" * (1024 * 1024 + 10) + b'"}'
    status, answer = http("POST", f"{fabric.url}/hooks/fabric", big, {"content-type": "application/json"})
    assert status == 413 and "limit is 1,048,576 bytes" in answer["error"]
    headers = {
        "ce-id": "big",
        "ce-source": "/tests",
        "ce-type": "com.example.text.submitted",
        "ce-specversion": "1.0",
        "content-type": "application/json",
    }
    assert http("POST", f"{fabric.url}/events", big, headers)[0] == 413


def test_webhook_errors(fabric):
    assert http("POST", f"{fabric.url}/hooks/nope", b"{}")[0] == 404
    status, answer = http("POST", f"{fabric.url}/hooks/fabric", b"{oops")
    assert status == 400 and "webhook body is not JSON" in answer["error"]


def test_pipelines_api(fabric):
    status, listed = http("GET", f"{fabric.url}/pipelines")
    assert status == 200 and [p["metadata"]["name"] for p in listed] == ["fabric"]
    doc = "metadata: {name: other}\nnodes: [{id: a, type: log, inputs: {message: hi}}]\n"
    assert http("PUT", f"{fabric.url}/pipelines/other", doc.encode(), {"content-type": "application/yaml"})[0] == 200
    assert http("GET", f"{fabric.url}/pipelines/other")[1]["nodes"][0]["function"] == "log"
    status, answer = http(
        "PUT", f"{fabric.url}/pipelines/bad", b"metadata: {name: bad}\nnodes: [{id: a, type: nope}]\n"
    )
    assert status == 422 and "unknown function 'nope'" in answer["problems"][0]
    assert http("PUT", f"{fabric.url}/pipelines/x", b"metadata: {name: y}\nnodes: [{id: a, type: log}]\n")[0] == 400
    assert http("DELETE", f"{fabric.url}/pipelines/other")[0] == 200
    assert http("GET", f"{fabric.url}/pipelines/other")[0] == 404


def test_two_routers_on_one_stream_finish_200_concurrent_runs_each_node_applied_once(nats_server, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    (tmp_path / "fabric.yaml").write_text(PIPELINE)
    env = stream_env()
    store = f"sqlite:///{tmp_path}/runs.db"
    procs = []
    try:
        routers = []
        for i in range(2):
            port = free_port()
            routers.append(
                Process(
                    [
                        "serve",
                        "router",
                        "--nats",
                        nats_server.url,
                        "--store",
                        store,
                        "--pipelines",
                        str(tmp_path / "fabric.yaml"),
                        "--port",
                        str(port),
                        "--host",
                        "127.0.0.1",
                    ],
                    tmp_path / f"router{i}.log",
                    port,
                    {**env, **ROUTER_ENV},
                ).start()
            )
        procs += routers
        workers = [a for name in FUNCTIONS for a in ("--function", name)]
        procs.append(
            Process(
                [
                    "serve",
                    "dispatcher",
                    "--nats",
                    nats_server.url,
                    *workers,
                    "--functions",
                    "examples.hello",
                    "--dead-letter",
                    f"{routers[0].url}/dead-letter",
                ],
                tmp_path / "dispatcher.log",
                None,
                env,
            ).start()
        )

        def submit(i: int) -> str:
            status, body = http("POST", f"{routers[i % 2].url}/hooks/fabric", json.dumps({"text": f"run {i}"}).encode())
            assert status == 202, body
            return body["run"]

        with ThreadPoolExecutor(16) as pool:
            run_ids = list(pool.map(submit, range(200)))
        runs = [wait_run(routers[i % 2].url, r, timeout_s=60) for i, r in enumerate(run_ids)]
        for i, run in enumerate(runs):
            check_succeeded(run, f"run {i}")
        logs = [p.output(max_chars=10**8) for p in routers]
        finished = sum(log.count('"event": "run succeeded"') for log in logs)
        applied = sum(log.count('"event": "node succeeded"') for log in logs)
        assert finished == 200 and applied == 800, (finished, applied)
        assert all(log.count('"event": "node succeeded"') > 0 for log in logs)  # both routers took results
    finally:
        for p in procs:
            p.stop()


def test_publish_and_watch_from_the_command_line(fabric):
    import subprocess
    import sys

    def knflow(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "knflow.cli", *args],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
            env={**os.environ, **CLI_ENV},
        )

    sent = knflow(
        "publish",
        "com.example.text.submitted",
        "--source",
        "/tests",
        "--data",
        '{"text": "from the cli"}',
        "--to",
        f"{fabric.url}/events",
    )
    assert sent.returncode == 0, sent.stderr
    run_id = json.loads(sent.stdout)["runs"][0]
    watched = knflow("runs", "watch", run_id, "--router", fabric.url)
    assert watched.returncode == 0 and f"run {run_id} succeeded" in watched.stdout
    assert "summary" in watched.stderr and "succeeded" in watched.stderr
    listed = knflow("runs", "list", "--router", fabric.url, "--pipeline", "fabric")
    assert run_id in listed.stdout
    shown = knflow("runs", "show", run_id, "--router", fabric.url)
    check_succeeded(json.loads(shown.stdout), "from the cli")
    structured = knflow(
        "publish",
        "com.example.text.submitted",
        "--source",
        "/tests",
        "--structured",
        "--to",
        f"{fabric.url}/events",
        "--data",
        '{"text": "s"}',
    )
    assert structured.returncode == 0 and len(json.loads(structured.stdout)["runs"]) == 1
    down = knflow("runs", "list", "--router", "http://127.0.0.1:9")
    assert (
        down.returncode == 1
        and "cannot reach the router at http://127.0.0.1:9" in down.stderr
        and "Traceback" not in down.stderr
    )
