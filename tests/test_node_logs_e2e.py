"""Node logs across real processes: a router, function services in their own processes and a dispatcher on a
real nats-server, the lines read back with the API and `knflow logs`, from SQLite and from MongoDB.

    function service (ctx.log, print, stderr) -> 503 body / reply -> dispatcher -> NATS or /dead-letter
        -> router -> node_logs -> GET /runs/{id}/logs, knflow logs
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from broker import codec, events
from tests.processes import Process, free_port
from tests.test_fabric_e2e import http, stream_env, wait_run
from tests.test_trusted_results import served, until
from tests.tokens import CLI_ENV, ROUTER_ENV

ROOT = Path(__file__).resolve().parent.parent
FUNCS = str(ROOT / "tests/fixtures/noisy.py")
NOISY = """
metadata: {name: noisy}
trigger: {type: webhook}
nodes:
  - {id: fails, type: nl-fail}
  - {id: big, type: nl-say, inputs: {key: big, lines: 1200}}
  - {id: gen, type: nl-say, foreach: "{{ trigger.data.items }}", inputs: {key: "item-{{ item }}"}}
"""
SLOW = """
metadata: {name: slow}
trigger: {type: webhook}
nodes:
  - {id: slow, type: nl-say, inputs: {key: slow, sleep_s: 1.5}}
"""


@pytest.fixture(scope="module", params=["sqlite", "mongo"])
def stack(request, nats_server, tmp_path_factory):
    tmp = tmp_path_factory.mktemp(f"node-logs-{request.param}")
    if request.param == "sqlite":
        store = f"sqlite:///{tmp}/runs.db"
    else:
        store = request.getfixturevalue("mongo_server").database_url(f"knflow_logs_{uuid.uuid4().hex[:8]}")
    (tmp / "noisy.yaml").write_text(NOISY)
    (tmp / "slow.yaml").write_text(SLOW)
    env = {**stream_env(), "KNFLOW_BLOB_URL": (tmp / "blobs").as_uri()}
    procs: list[Process] = []
    try:
        port = free_port()
        router = Process(
            [
                *("serve", "router", "--nats", nats_server.url, "--store", store, "--functions", FUNCS),
                *("--pipelines", str(tmp / "noisy.yaml"), str(tmp / "slow.yaml")),
                *("--port", str(port), "--host", "127.0.0.1"),
            ],
            tmp / "router.log",
            port,
            {**env, **ROUTER_ENV},
        )
        procs.append(router)
        functions = {}
        for name in ("nl-say", "nl-fail"):
            fport = free_port()
            procs.append(
                Process(
                    ["serve", "function", name, "--functions", FUNCS, "--port", str(fport), "--host", "127.0.0.1"],
                    tmp / f"{name}.log",
                    fport,
                    env,
                )
            )
            functions[name] = f"http://127.0.0.1:{fport}/"
        for p in procs:
            p.launch()
        for p in procs:
            p.wait_ready()
        routes = [a for name, url in functions.items() for a in ("--function", f"{name}={url}")]
        procs.append(
            Process(
                [
                    *("serve", "dispatcher", "--nats", nats_server.url, *routes, "--functions", FUNCS),
                    *("--dead-letter", f"{router.url}/dead-letter"),
                ],
                tmp / "dispatcher.log",
                None,
                env,
            ).start()
        )
        router.store_url = store
        router.tmp = tmp
        yield router
    finally:
        for p in reversed(procs):
            p.stop()


def start(stack, pipeline: str, data: dict | None = None) -> str:
    status, body = http("POST", f"{stack.url}/hooks/{pipeline}", json.dumps(data or {}).encode())
    assert status == 202, body
    return body["run"]


def logs(stack, run_id: str, query: str = "") -> dict:
    status, body = http("GET", f"{stack.url}/runs/{run_id}/logs{query}")
    assert status == 200, body
    return body


def knflow(*args: str, timeout_s: float = 30) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), **CLI_ENV}
    return subprocess.run(
        [sys.executable, "-m", "knflow.cli", *args], capture_output=True, text=True, timeout=timeout_s, env=env
    )


@pytest.fixture(scope="module")
def noisy_run(stack) -> dict:
    return wait_run(stack.url, start(stack, "noisy", {"items": [1, 2]}), timeout_s=60)


def test_a_failing_nodes_lines_of_each_try_are_read_through_the_api(stack, noisy_run):
    assert noisy_run["status"] == "failed" and noisy_run["nodes"]["fails"]["attempt"] == 2
    got = logs(stack, noisy_run["id"], "?node=fails")
    shown = [(line["attempt"], line["stream"], line["level"], line["message"], line["fields"]) for line in got["lines"]]
    assert shown == [
        (1, "log", "info", "trying", {"attempt": 1}),  # the 503 body's lines, forwarded by the dispatcher
        (1, "stdout", None, "attempt 1 printed", None),
        (1, "stderr", None, "attempt 1 to stderr", None),
        (2, "log", "info", "trying", {"attempt": 2}),  # the last try's, in the dead letter
        (2, "stdout", None, "attempt 2 printed", None),
        (2, "stderr", None, "attempt 2 to stderr", None),
    ]  # the function service's own log line of each ctx.log call is not taken a second time, as stderr
    seqs = [line["seq"] for line in got["lines"]]
    assert seqs == sorted(seqs) and got["next_after"] == seqs[-1] and got["truncated"] == {}
    assert all(line["node"] == "fails" and line["at"].endswith("Z") for line in got["lines"])
    assert logs(stack, noisy_run["id"], "?node=fails&attempt=2")["lines"] == got["lines"][3:]
    assert logs(stack, noisy_run["id"], f"?node=fails&after={seqs[4]}")["lines"] == got["lines"][5:]
    assert logs(stack, noisy_run["id"], f"?node=fails&after={seqs[-1]}")["lines"] == []


def test_a_tries_lines_past_1000_are_cut_with_a_count_and_items_have_their_keys(stack, noisy_run):
    timed = noisy_run["nodes"]["big"]  # the run record's times: the router's queued_at, the function's others
    assert timed["queued_at"] <= timed["started_at"] <= timed["finished_at"] and timed["duration_ms"] >= 0
    assert isinstance(timed["queue_ms"], float) and all(
        "queued_at" in item for item in noisy_run["nodes"]["gen"]["items"]
    )
    big = logs(stack, noisy_run["id"], "?node=big")
    assert big["truncated"] == {"big:1": 206}  # 1,206 lines written, the last 1,000 kept
    assert len(big["lines"]) == 1000 and big["lines"][-1]["message"] == "end"
    assert big["lines"][-1]["fields"] == {"key": "big", "password": "****", "url": "https://u:****@example.com/x"}
    assert big["lines"][0]["message"] == "big: line 202"  # 4 lines before the 1,200, 2 after
    items = logs(stack, noisy_run["id"], "?node=gen")["lines"]
    assert {line["node"] for line in items} == {"gen[0]", "gen[1]"}
    for i in (0, 1):
        mine = [line["message"] for line in items if line["node"] == f"gen[{i}]"]
        assert f"item-{i + 1}: printed in parts then ended" in mine and f"item-{i + 1}: to stderr" in mine
        assert all(m.startswith(f"item-{i + 1}") for m in mine if m not in ("begin", "end"))
    whole = logs(stack, noisy_run["id"], "?limit=5")
    assert len(whole["lines"]) == 5 and whole["next_after"] == whole["lines"][-1]["seq"]


def test_knflow_logs_reads_them_from_the_router_and_from_the_store(stack, noisy_run):
    for source in (["--router", stack.url], ["--store", stack.store_url]):
        done = knflow("logs", noisy_run["id"], "fails", *source)
        assert done.returncode == 0, done.stderr
        out = done.stdout.splitlines()
        assert len(out) == 6
        assert out[0].endswith("Z  fails#1  info    trying  attempt=1")
        assert out[5].endswith("Z  fails#2  stderr  attempt 2 to stderr")
        two = knflow("logs", noisy_run["id"], "fails", "--attempt", "2", *source).stdout.splitlines()
        assert two == out[3:]
    cut = knflow("logs", noisy_run["id"], "big", "--router", stack.url)
    assert "big#1 dropped its 206 oldest line(s)" in cut.stderr and len(cut.stdout.splitlines()) == 1000


def test_unknown_runs_and_bad_parameters_are_named(stack, noisy_run):
    status, body = http("GET", f"{stack.url}/runs/no-such-run/logs")
    assert (status, body["error"]) == (404, "run 'no-such-run' not found")
    for query, field in [
        ("attempt=0", "attempt"),
        ("after=-1", "after"),
        ("limit=lots", "limit"),
        ("after=1.5", "after"),
    ]:
        status, body = http("GET", f"{stack.url}/runs/{noisy_run['id']}/logs?{query}")
        assert status == 400 and f"parameter '{field}'" in body["error"], (query, body)
    status, _ = http("GET", f"{stack.url}/runs/{noisy_run['id']}/logs", token=None)
    assert status == 401
    missing = knflow("logs", "no-such-run", "--router", stack.url)
    assert missing.returncode == 1 and "404" in missing.stderr and "Traceback" not in missing.stderr


def test_follow_prints_lines_as_they_come_and_ends_when_the_run_ends(stack):
    run_id = start(stack, "slow")
    done = knflow("logs", run_id, "--follow", "--interval-s", "0.1", "--router", stack.url, timeout_s=60)
    assert done.returncode == 0, done.stderr  # the run succeeded
    assert done.stderr.strip().endswith(f"run {run_id} succeeded")
    out = done.stdout.splitlines()
    assert out[0].endswith('slow#1  info    begin  key="slow" api_key="****"')
    assert out[-1].endswith('slow#1  warning end  key="slow" password="****" url="https://u:****@example.com/x"')
    again = knflow("logs", run_id, "--follow", "--store", stack.store_url)  # a run that ended: at once
    assert again.returncode == 0 and again.stdout == done.stdout


# ---- the Knative path: the broker retries, and a failed try's answer reaches nobody -------------------------


async def test_on_knative_a_failed_try_publishes_its_lines_itself(tmp_path):
    """No Knative here: the test plays the broker's part (it takes the router's invokes, as the broker ingress
    would, and delivers one twice to the function service, as a Trigger retries: no knflowdelivery), then sends
    the dead letter. The function service has K_SINK, as the generated manifests give it, here the router's
    /events (on Knative: the broker, whose Trigger delivers node.logs to the router's broker ingress)."""
    taken: list = []

    async def ingress(request: Request) -> Response:
        taken.append(codec.decode(request.headers, await request.body()))
        return Response(status_code=202)

    broker = Starlette(routes=[Route("/", ingress, methods=["POST"])])

    (tmp_path / "p.yaml").write_text(
        "metadata: {name: kn}\ntrigger: {type: webhook}\nnodes: [{id: f, type: nl-fail}]\n"
    )
    async with served(broker) as broker_url:
        port, fport = free_port(), free_port()
        router = Process(
            [
                *("serve", "router", "--store", f"sqlite:///{tmp_path}/runs.db", "--functions", FUNCS),
                *("--pipelines", str(tmp_path / "p.yaml"), "--port", str(port), "--host", "127.0.0.1"),
            ],
            tmp_path / "router.log",
            port,
            {"PYTHONPATH": str(ROOT), "K_SINK": broker_url, **ROUTER_ENV},
        )
        function = Process(
            ["serve", "function", "nl-fail", "--functions", FUNCS, "--port", str(fport), "--host", "127.0.0.1"],
            tmp_path / "function.log",
            fport,
            {"PYTHONPATH": str(ROOT), "K_SINK": f"{router.url}/events"},
        )
        try:
            for p in (router, function):
                p.launch()
            for p in (router, function):
                await asyncio.to_thread(p.wait_ready)
            run_id = await asyncio.to_thread(start, router, "kn")
            invoke = await until(lambda: next((e for e in taken if e.get_type() == events.INVOKE), None), "the invoke")
            headers, body = codec.encode_binary(invoke)
            async with httpx.AsyncClient(timeout=10) as client:
                answers = [await client.post(function.url + "/", content=body, headers=headers) for _ in range(2)]
                assert [a.status_code for a in answers] == [503, 503]
                assert all("logs" not in a.json() and a.json()["error"]["type"] == "RuntimeError" for a in answers)
                dead = {**headers, "ce-knativeerrorcode": "503"}
                dead["ce-knativeerrordata"] = base64.b64encode(answers[-1].content).decode()
                assert (await client.post(router.url + "/dead-letter", content=body, headers=dead)).status_code == 202
            run = await asyncio.to_thread(wait_run, router.url, run_id)
            assert run["status"] == "failed" and run["nodes"]["f"]["attempt"] == 1  # Knative numbers no retries
            assert run["nodes"]["f"]["started_at"] <= run["nodes"]["f"]["finished_at"]  # the last try's, from its body
            got = logs(router, run_id)
            assert [(line["attempt"], line["message"]) for line in got["lines"]] == [
                (1, "trying"),
                (1, "attempt 1 printed"),
                (1, "attempt 1 to stderr"),
            ] * 2  # both tries, under the one attempt Knative delivered twice, each once, in order
            assert [line["seq"] for line in got["lines"]] == [1, 2, 3, 4, 5, 6]
        finally:
            function.stop()
            router.stop()
