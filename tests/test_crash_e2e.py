"""Crash safety under load, on SQLite with one router and on MongoDB (the wire server, or a real MongoDB with
KNFLOW_TEST_MONGODB_URL) with two and with three routers: 500 runs in flight while a router is killed (-9), the function
service is killed (-9), and nats-server (file storage) is killed (-9) and started again on its store.

Every accepted run ends `succeeded` with the right output. What "applied once" means is checked on the
outputs, not on log lines: every function call appends `INVOKE_ID NONCE` to a file and puts the nonce in its
output; each stored output's nonce is one its node's invokes made, and the last node's input carries the
nonces of the outputs it was built from, which must be the ones stored (a result applied twice would have
replaced an output after its successor read it). Invokes that ran more than once (at-least-once delivery)
are counted and reported, with the sweeper's republishes."""

from __future__ import annotations

import collections
import itertools
import json
import threading
import time
import urllib.error
from concurrent.futures import ThreadPoolExecutor
from http.client import HTTPException
from pathlib import Path

import pytest

from broker.natsserver import NatsServer, current_nats_server
from tests.processes import Process, free_port
from tests.test_fabric_e2e import http, stream_env
from tests.tokens import ROUTER_ENV

ROOT = Path(__file__).resolve().parent.parent
FUNCS = str(ROOT / "tests/fixtures/failing.py")
RUNS = 500
NODES = ("a", "b", "c", "d")
PIPELINE = """
metadata: {name: crash}
trigger: {type: webhook}
nodes:
  - {id: a, type: ff-counted, inputs: {key: "{{ $run }}", n: "{{ trigger.data.n }}"}}
  - {id: b, type: ff-counted, inputs: "{{ a.output }}"}
  - {id: c, type: ff-counted, inputs: "{{ a.output }}"}
  - id: d
    type: ff-counted
    inputs: {key: "{{ b.output.key }}", n: "{{ c.output.n }}", seen: ["{{ b.output.nonce }}", "{{ c.output.nonce }}"]}
edges: [{from: a, to: b}, {from: a, to: c}, {from: b, to: d}, {from: c, to: d}]
"""
RESCUE = ('"event": "run stored, publishing deferred to the sweeper"', '"event": "invokes published again"')


@pytest.mark.parametrize(
    "backend,routers",
    [("sqlite", 1), ("mongo", 2), ("mongo", 3)],
    ids=["sqlite-1-router", "mongo-2-routers", "mongo-3-routers"],
)
def test_kill_a_router_the_function_and_nats_under_load(tmp_path, request, capsys, backend, routers):
    (tmp_path / "crash.yaml").write_text(PIPELINE)
    store_url = f"sqlite:///{tmp_path}/runs.db" if backend == "sqlite" else request.getfixturevalue("mongo_url")
    nats = NatsServer(current_nats_server(), tmp_path / "nats").start()
    env = {
        **stream_env(),
        "KNFLOW_TEST_STATE": str(tmp_path / "state"),
        "KNFLOW_SWEEP_INTERVAL_S": "1",
        "KNFLOW_SWEEP_AFTER_S": "3",
    }
    router_ports, fn_port = [free_port() for _ in range(routers)], free_port()

    def router_args(port: int) -> list[str]:
        return [
            *("serve", "router", "--nats", nats.url, "--store", store_url, "--pipelines", str(tmp_path / "crash.yaml")),
            *("--functions", FUNCS, "--port", str(port), "--host", "127.0.0.1"),
        ]

    fn_args = ["serve", "function", "ff-counted", "--functions", FUNCS, "--port", str(fn_port), "--host", "127.0.0.1"]
    router_env = {**env, **ROUTER_ENV}
    logs = itertools.count(1)
    live = [
        Process(router_args(port), tmp_path / f"router-{next(logs)}.log", port, router_env).launch()
        for port in router_ports
    ]
    for r in live:
        r.wait_ready()
    every_router = list(live)
    functions = [Process(fn_args, tmp_path / "function-1.log", fn_port, env).start()]
    dispatcher = Process(
        [
            *("serve", "dispatcher", "--nats", nats.url, "--function", f"ff-counted=http://127.0.0.1:{fn_port}/"),
            *("--functions", FUNCS, "--dead-letter", f"http://127.0.0.1:{router_ports[-1]}/dead-letter"),
        ],
        tmp_path / "dispatcher.log",
        None,
        env,
    ).start()
    accepted: dict[int, str] = {}
    stop = threading.Event()

    def submit(i: int) -> None:
        deadline = time.monotonic() + 120
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                status, body = http(
                    "POST",
                    f"{live[i % len(live)].url}/hooks/crash",  # the runs are spread over the routers
                    json.dumps({"n": i}).encode(),
                    {"idempotency-key": f"order-{i}"},
                )
                if status == 202:
                    accepted[i] = body["run"]
                    return
            except (urllib.error.URLError, HTTPException, ConnectionError, TimeoutError):
                pass  # a router killed mid-answer; the idempotency key makes a retry safe
            time.sleep(0.1)

    def results_applied() -> int:
        return sum(r.output(10**9).count('"event": "node succeeded"') for r in every_router)

    try:
        with ThreadPoolExecutor(8) as pool:
            futures = [pool.submit(submit, i) for i in range(RUNS)]
            wait_for(lambda: len(accepted) >= 150 and results_applied() >= 100, 90, "150 runs accepted, 100 applied")
            victim = live[0]
            victim.kill()  # kill -9 a router while it applies results
            live[0] = Process(router_args(victim.port), tmp_path / f"router-{next(logs)}.log", victim.port, router_env)
            every_router.append(live[0].start())
            wait_for(lambda: len(accepted) >= 300, 90, "300 runs accepted")
            functions[-1].kill()  # kill -9 the function service
            functions.append(Process(fn_args, tmp_path / "function-2.log", fn_port, env).start())
            wait_for(lambda: len(accepted) >= 400, 90, "400 runs accepted")
            nats.restart(crash=True)  # kill -9 nats-server; it starts again on the same store and port
            for f in futures:
                f.result()
        assert len(accepted) == RUNS and len(set(accepted.values())) == RUNS

        def finished() -> bool:
            _, runs = http("GET", f"{live[-1].url}/runs?pipeline=crash&limit=1000")
            return len(runs) == RUNS and all(r["status"] == "succeeded" for r in runs)

        wait_for(finished, 180, "every run succeeded")
        _, runs = http("GET", f"{live[-1].url}/runs?pipeline=crash&limit=1000")
        by_id = {r["id"]: r for r in runs}
        invokes = invoke_log(tmp_path / "state")
        applied_once = check_applied_once(accepted, by_id, invokes)
        router_logs = "".join(r.output(max_chars=10**9) for r in every_router)
        assert router_logs.count('"event": "run succeeded"') <= RUNS
        again = {invoke: calls for invoke, calls in invokes.items() if len(calls) > 1}
        # by cause: calls of one invoke in two function processes were in flight when the first was killed
        across = sum(1 for calls in again.values() if len({c.partition(":")[0] for c in calls}) > 1)
        rescued = {event: router_logs.count(event) for event in RESCUE}
        with capsys.disabled():  # the figures belong in CI's output
            print(
                f"\ncrash [{backend}, {routers} router(s)]: runs accepted {len(accepted)}, finished {len(by_id)}; "
                f"node results applied once {applied_once} of {RUNS * len(NODES)}; invokes {len(invokes)}, "
                f"run more than once {len(again)} ({sum(map(len, again.values())) - len(again)} extra calls; "
                f"{across} of them across the function service's kill, {len(again) - across} redelivered "
                "to the same process); "
                f"runs whose publishing the sweeper took over {rescued[RESCUE[0]]}, "
                f"sweeps that published invokes again {rescued[RESCUE[1]]}"
            )
        assert len(invokes) == RUNS * len(NODES)  # every node ran, under the one invoke id the router gave it
    finally:
        stop.set()
        for p in [dispatcher, *functions, *every_router]:
            p.stop()
        nats.stop()


def check_applied_once(accepted: dict[int, str], by_id: dict[str, dict], invokes: dict[str, list[str]]) -> int:
    """Each run's outputs right, each made by an invoke of its node, and d built from the outputs stored."""
    made_by = {call.partition(":")[2]: invoke for invoke, calls in invokes.items() for call in calls}
    applied_once = 0
    for i, run_id in accepted.items():
        nodes = by_id[run_id]["nodes"]
        assert nodes["d"]["output"]["n"] == i + 3  # a, then c, then d added one each
        for node in NODES:  # each stored output was made by an invoke of its own node
            assert made_by[nodes[node]["output"]["nonce"]].startswith(f"{run_id}:{node}:"), (run_id, node)
        # d was scheduled from the outputs that are stored: none was replaced after d read it
        assert nodes["d"]["output"]["seen"] == [nodes["b"]["output"]["nonce"], nodes["c"]["output"]["nonce"]]
        applied_once += len(NODES)
    return applied_once


def invoke_log(folder: Path) -> dict[str, list[str]]:
    """Each invoke id, with `PID:NONCE` of every call that ran it (from every function process's file)."""
    calls: dict[str, list[str]] = collections.defaultdict(list)
    for path in folder.glob("invokes-*.log"):
        pid = path.stem.removeprefix("invokes-")
        for line in path.read_text().splitlines():
            invoke, _, nonce = line.partition(" ")
            calls[invoke].append(f"{pid}:{nonce}")
    return calls


def wait_for(condition, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached in {timeout_s} s: {what}")
        time.sleep(0.1)
