"""Crash safety under load: 500 runs in flight while the router is killed (-9), the function service is
killed (-9), and nats-server (file storage) restarts. Every run ends `succeeded`, none is lost, and no
node is applied twice."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
from concurrent.futures import ThreadPoolExecutor
from http.client import HTTPException
from pathlib import Path

from broker.natsserver import NatsServer, current_nats_server
from tests.processes import Process, free_port
from tests.test_fabric_e2e import http, stream_env
from tests.tokens import ROUTER_ENV

ROOT = Path(__file__).resolve().parent.parent
FUNCS = str(ROOT / "tests/fixtures/failing.py")
RUNS = 500
PIPELINE = """
metadata: {name: crash}
trigger: {type: webhook}
nodes:
  - {id: a, type: ff-durable, inputs: {key: "{{ $run }}", n: "{{ trigger.data.n }}"}}
  - {id: b, type: ff-durable, inputs: "{{ a.output }}"}
  - {id: c, type: ff-durable, inputs: "{{ a.output }}"}
  - {id: d, type: ff-durable, inputs: {key: "{{ b.output.key }}", n: "{{ c.output.n }}"}}
edges: [{from: a, to: b}, {from: a, to: c}, {from: b, to: d}, {from: c, to: d}]
"""


def test_kill_router_function_and_restart_nats_under_load(tmp_path):
    (tmp_path / "crash.yaml").write_text(PIPELINE)
    nats = NatsServer(current_nats_server(), tmp_path / "nats").start()
    env = {
        **stream_env(),
        "KNFLOW_TEST_STATE": str(tmp_path / "state"),
        "KNFLOW_SWEEP_INTERVAL_S": "1",
        "KNFLOW_SWEEP_AFTER_S": "3",
    }
    router_port, fn_port = free_port(), free_port()
    router_args = [
        "serve",
        "router",
        "--nats",
        nats.url,
        "--store",
        f"sqlite:///{tmp_path}/runs.db",
        "--pipelines",
        str(tmp_path / "crash.yaml"),
        "--functions",
        FUNCS,
        "--port",
        str(router_port),
        "--host",
        "127.0.0.1",
    ]
    fn_args = ["serve", "function", "ff-durable", "--functions", FUNCS, "--port", str(fn_port), "--host", "127.0.0.1"]
    router_env = {**env, **ROUTER_ENV}
    routers = [Process(router_args, tmp_path / "router-1.log", router_port, router_env).start()]
    functions = [Process(fn_args, tmp_path / "function-1.log", fn_port, env).start()]
    dispatcher = Process(
        [
            "serve",
            "dispatcher",
            "--nats",
            nats.url,
            "--function",
            f"ff-durable=http://127.0.0.1:{fn_port}/",
            "--functions",
            FUNCS,
            "--dead-letter",
            f"http://127.0.0.1:{router_port}/dead-letter",
        ],
        tmp_path / "dispatcher.log",
        None,
        env,
    ).start()
    accepted: dict[int, str] = {}
    stop = threading.Event()

    def submit(i: int) -> None:
        deadline = time.monotonic() + 90
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                status, body = http(
                    "POST",
                    f"{routers[-1].url}/hooks/crash",
                    json.dumps({"n": i}).encode(),
                    {"idempotency-key": f"order-{i}"},
                )
                if status == 202:
                    accepted[i] = body["run"]
                    return
            except (
                urllib.error.URLError,
                HTTPException,
                ConnectionError,
                TimeoutError,
            ):  # a router killed mid-answer; the key makes a retry safe
                pass
            time.sleep(0.1)

    try:
        with ThreadPoolExecutor(8) as pool:
            futures = [pool.submit(submit, i) for i in range(RUNS)]
            wait_for(
                lambda: len(accepted) >= 150 and routers[-1].output(10**8).count("node succeeded") >= 100,
                60,
                "150 runs accepted, 100 results applied",
            )
            routers[-1].kill()  # kill -9 the router while it applies results
            routers.append(Process(router_args, tmp_path / "router-2.log", router_port, router_env).start())
            wait_for(lambda: len(accepted) >= 300, 60, "300 runs accepted")
            functions[-1].kill()  # kill -9 the function service
            functions.append(Process(fn_args, tmp_path / "function-2.log", fn_port, env).start())
            wait_for(lambda: len(accepted) >= 400, 60, "400 runs accepted")
            nats.restart()  # nats-server restarts on the same store and port
            for f in futures:
                f.result()
        assert len(accepted) == RUNS and len(set(accepted.values())) == RUNS

        def finished() -> bool:
            _, runs = http("GET", f"{routers[-1].url}/runs?pipeline=crash&limit=1000")
            return len(runs) == RUNS and all(r["status"] == "succeeded" for r in runs)

        wait_for(finished, 120, "every run succeeded")
        _, runs = http("GET", f"{routers[-1].url}/runs?pipeline=crash&limit=1000")
        by_id = {r["id"]: r for r in runs}
        for i, run_id in accepted.items():
            assert by_id[run_id]["nodes"]["d"]["output"]["n"] == i + 3  # a, then c, then d added one each
        logs = "".join(r.output(max_chars=10**9) for r in routers)
        assert logs.count('"event": "node succeeded"') <= RUNS * 4  # never applied twice
        assert logs.count('"event": "run succeeded"') <= RUNS
    finally:
        stop.set()
        for p in [dispatcher, *functions, *routers]:
            p.stop()
        nats.stop()


def wait_for(condition, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached in {timeout_s} s: {what}")
        time.sleep(0.1)
