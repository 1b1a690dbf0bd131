"""Fan-out across real processes: a router and a dispatcher (functions in-process) on a real nats-server,
and on the embedded default (`knflow run`)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.processes import Process, free_port
from tests.test_failures_e2e import knflow
from tests.test_fabric_e2e import http, stream_env, wait_run
from tests.tokens import ROUTER_ENV

ROOT = Path(__file__).resolve().parent.parent
FUNCS = str(ROOT / "tests/fixtures/fanout.py")

SQUARES = """
metadata: {name: squares}
trigger: {type: webhook}
functions: [FUNCS]
nodes:
  - {id: gen, type: fo-square, foreach: "{{ trigger.data.items }}", inputs: {key: "{{ $run }}", n: "{{ item }}"}}
  - {id: total, type: fo-sum, inputs: {values: "{{ gen.output }}"}}
edges: [{from: gen, to: total}]
""".replace("FUNCS", FUNCS)

PICKY = """
metadata: {name: picky}
trigger: {type: webhook}
functions: [FUNCS]
nodes:
  - {id: each, type: fo-picky, replicas: 10, concurrency: 4, inputs: {key: "{{ $run }}", n: "{{ index }}"}}
  - {id: total, type: fo-sum, inputs: {values: "{{ each.output }}"}}
edges: [{from: each, to: total}]
""".replace("FUNCS", FUNCS)


@pytest.fixture(scope="module")
def stack(nats_server, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fanout")
    files = []
    for name, text in (("squares", SQUARES), ("picky", PICKY)):
        (tmp / f"{name}.yaml").write_text(text)
        files.append(str(tmp / f"{name}.yaml"))
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
    functions = [a for f in ("fo-square", "fo-sum", "fo-picky") for a in ("--function", f)]
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
    yield router
    dispatcher.stop()
    router.stop()


def start(stack, pipeline: str, data: dict) -> str:
    status, body = http("POST", f"{stack.url}/hooks/{pipeline}", json.dumps(data).encode())
    assert status == 202, body
    return body["run"]


def test_foreach_over_1000_items_through_nats(stack):
    began = time.perf_counter()
    run = wait_run(stack.url, start(stack, "squares", {"items": list(range(1000))}), timeout_s=60)
    took_s = time.perf_counter() - began
    assert run["status"] == "succeeded", run["error"]
    assert run["nodes"]["gen"]["output"] == [n * n for n in range(1000)]
    assert run["nodes"]["total"]["output"] == sum(n * n for n in range(1000))
    assert {item["attempt"] for item in run["nodes"]["gen"]["items"]} == {1}
    print(f"\n1,000 foreach items through nats-server: {took_s:.2f} s")  # reported, not asserted


def test_two_failed_items_redriven_after_the_fix_reinvoke_only_those_two(stack):
    (stack.state / "picky-fixed").unlink(missing_ok=True)
    run_id = start(stack, "picky", {})
    run = wait_run(stack.url, run_id)
    assert run["status"] == "failed" and run["nodes"]["total"]["status"] == "cancelled"
    assert run["nodes"]["each"]["error"]["detail"]["failed_items"] == [3, 7]
    assert "2 of 10 items failed (item 3, 7)" in run["error"]["message"]
    (stack.state / "picky-fixed").touch()
    proc = knflow("replay", run_id, "--router", stack.url, "--by", "ops")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run = wait_run(stack.url, run_id)
    assert run["status"] == "succeeded", run["error"]
    assert run["nodes"]["each"]["output"] == [n * 10 for n in range(10)] and run["nodes"]["total"]["output"] == 450
    calls = (stack.state / "fo-picky.calls").read_text().split()
    per_item = {n: calls.count(f"{run_id}:{n}") for n in range(10)}
    assert per_item == {n: 2 if n in (3, 7) else 1 for n in range(10)}
    assert [item["attempt"] for item in run["nodes"]["each"]["items"]] == [2 if n in (3, 7) else 1 for n in range(10)]
    assert run["replays"][0]["items"] == ["each[3]", "each[7]"]


def test_the_embedded_default_runs_a_foreach(tmp_path):
    (tmp_path / "squares.yaml").write_text(SQUARES)
    began = time.perf_counter()
    proc = knflow(
        "run",
        str(tmp_path / "squares.yaml"),
        "--data",
        json.dumps({"items": list(range(1000))}),
        "--json",
        "--store",
        f"sqlite:///{tmp_path}/runs.db",
    )
    took_s = time.perf_counter() - began
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run = json.loads(proc.stdout)
    assert run["status"] == "succeeded" and run["nodes"]["total"]["output"] == sum(n * n for n in range(1000))
    print(f"\n1,000 foreach items on the embedded default (one process, start included): {took_s:.2f} s")


async def test_a_foreach_with_a_concurrency_limit_on_the_mongodb_store(mongo_url):
    from knflow.local import EmbeddedStack
    from router.store.mongo import MongoStore
    from router.loader import load_string

    p = load_string(SQUARES.replace("foreach:", "concurrency: 8, foreach:"), "squares.yaml")
    async with EmbeddedStack(MongoStore.from_url(mongo_url)) as stack:
        run = await stack.execute(p, {"items": list(range(100))})
    assert run["status"] == "succeeded", run["error"]
    assert run["nodes"]["gen"]["output"] == [n * n for n in range(100)]
    assert run["nodes"]["total"]["output"] == sum(n * n for n in range(100))
