"""Fault injection: the router is killed at each step of applying a result (broker/faults.py), on SQLite and on
MongoDB, and the runs still finish with every node's result applied once. For each point, a router started
with `KNFLOW_FAULT_CRASH_AT=POINT:3` ends itself (as kill -9 would) the third time it passes the point, while
runs are in flight; a router started again without it, on the same store and stream, finishes them (the
result event comes back unacknowledged; the sweeper publishes what was stored but not sent). The checks are
the crash suite's: outputs right, each made by an invoke of its node, the last node built from the outputs
stored, every node invoked under its one invoke id."""

from __future__ import annotations

import json
import time
import urllib.error
from http.client import HTTPException

import pytest

from broker.faults import POINTS
from tests.processes import Process, free_port
from tests.test_crash_e2e import FUNCS, NODES, PIPELINE, check_applied_once, invoke_log, wait_for
from tests.test_fabric_e2e import http, stream_env
from tests.tokens import ROUTER_ENV

RUNS_PER_POINT = 6


def submit(router: Process, numbers, accepted: dict[int, str]) -> list[int]:
    """Start a run for each number on `router`; the numbers it could not take (it ended meanwhile) are
    returned, to be sent again under the same idempotency key."""
    left = []
    for i in numbers:
        try:
            status, body = http(
                "POST", f"{router.url}/hooks/crash", json.dumps({"n": i}).encode(), {"idempotency-key": f"fault-{i}"}
            )
        except (urllib.error.URLError, HTTPException, ConnectionError, TimeoutError):
            left.append(i)  # the router ended mid-answer: the run may be stored, the key makes a retry safe
            continue
        assert status == 202, body
        accepted[i] = body["run"]
    return left


@pytest.mark.parametrize("backend", ["sqlite", "mongo"])
def test_a_router_killed_at_each_step_of_applying_a_result_loses_nothing(tmp_path, request, nats_server, backend):
    (tmp_path / "crash.yaml").write_text(PIPELINE)
    store_url = f"sqlite:///{tmp_path}/runs.db" if backend == "sqlite" else request.getfixturevalue("mongo_url")
    env = {
        **stream_env(),
        "KNFLOW_TEST_STATE": str(tmp_path / "state"),
        "KNFLOW_SWEEP_INTERVAL_S": "0.5",
        "KNFLOW_SWEEP_AFTER_S": "2",
    }
    port, fn_port = free_port(), free_port()
    router_args = [
        *("serve", "router", "--nats", nats_server.url, "--store", store_url),
        *("--pipelines", str(tmp_path / "crash.yaml"), "--functions", FUNCS, "--port", str(port)),
    ]
    fn_args = ["serve", "function", "ff-counted", "--functions", FUNCS, "--port", str(fn_port), "--host", "127.0.0.1"]
    function = Process(fn_args, tmp_path / "function.log", fn_port, env).start()
    dispatcher = Process(
        [
            *(
                "serve",
                "dispatcher",
                "--nats",
                nats_server.url,
                "--function",
                f"ff-counted=http://127.0.0.1:{fn_port}/",
            ),
            *("--functions", FUNCS, "--dead-letter", f"http://127.0.0.1:{port}/dead-letter"),
        ],
        tmp_path / "dispatcher.log",
        None,
        env,
    ).start()
    accepted: dict[int, str] = {}
    routers: list[Process] = []
    try:
        for p, point in enumerate(POINTS):
            faulty = Process(
                router_args,
                tmp_path / f"router-{point}.log",
                port,
                {**env, **ROUTER_ENV, "KNFLOW_FAULT_CRASH_AT": f"{point}:3"},
            ).start()
            routers.append(faulty)
            pending = submit(faulty, range(p * RUNS_PER_POINT, (p + 1) * RUNS_PER_POINT), accepted)
            wait_for(lambda r=faulty: r.proc.poll() is not None, 60, f"the router ended itself at {point}")
            assert faulty.proc.returncode == 137 and f"fault injected: KNFLOW_FAULT_CRASH_AT={point}" in faulty.output()
            routers.append(Process(router_args, tmp_path / f"router-after-{point}.log", port, {**env, **ROUTER_ENV}))
            routers[-1].start()
            assert submit(routers[-1], pending, accepted) == []
            expected = set(accepted.values())

            def finished(expected=expected) -> bool:
                _, runs = http("GET", f"{routers[-1].url}/runs?pipeline=crash&limit=1000")
                done = {r["id"] for r in runs if r["status"] == "succeeded"}
                return expected <= done

            wait_for(finished, 90, f"every run finished after a crash at {point}")
            routers[-1].stop()
        routers.append(Process(router_args, tmp_path / "router-last.log", port, {**env, **ROUTER_ENV}).start())
        time.sleep(1)  # a last sweep: nothing more may run
        _, runs = http("GET", f"{routers[-1].url}/runs?pipeline=crash&limit=1000")
        by_id = {r["id"]: r for r in runs}
        assert len(by_id) == len(accepted) == RUNS_PER_POINT * len(POINTS)
        invokes = invoke_log(tmp_path / "state")
        assert check_applied_once(accepted, by_id, invokes) == len(accepted) * len(NODES)
        assert len(invokes) == len(accepted) * len(NODES)
    finally:
        for proc in [dispatcher, function, *routers]:
            proc.stop()
