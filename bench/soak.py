"""A soak (not CI): steady webhook load for `--minutes` while routers and function services are killed at
random (SIGKILL) and started again; every 30 s a line of figures, at the end the totals. Nothing may be lost:
every run a router accepted (202) must end `succeeded`, or the soak exits 1.

    python -m bench.soak --minutes 30 --rate 20 --routers 2 --store mongo --kill-every-s 45

Processes, as on a cluster: nats-server (file storage), the store (a SQLite file, or MongoDB on the nx-27017
wire server), N routers on one store and stream, each bench function as its own `knflow serve function`
service, and one dispatcher. Load: `--rate` diamond runs per second, each POSTed to a random live router
with an Idempotency-Key (a run whose 202 was lost in a kill is sent again under the same key). Figures:
runs accepted and finished, end-to-end latency p50/p99 of the runs finished in the window (the router's
`created_at` to `finished_at`), kills so far, and each process' RSS."""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime
from http.client import HTTPException
from pathlib import Path
from typing import Any

from bench.functions import DIAMOND_FUNCTIONS
from bench.pipelines import FUNCTIONS_MODULE
from bench.stacks import mongo_server, nats_server

ADMIN_TOKEN = "soak-" + secrets.token_hex(16)
RETRY = {"retries": 20, "delay_s": 0.2, "max_delay_s": 2}  # rides out a function service's restart (about 2 s)
PIPELINE = {
    "apiVersion": "knflow.dev/v1",
    "kind": "Pipeline",
    "metadata": {"name": "soak"},
    "functions": [FUNCTIONS_MODULE],
    "trigger": {"type": "webhook"},
    "nodes": [
        {"id": "a", "type": "bench-a", "retry": RETRY, "inputs": {"n": "{{ trigger.data.n }}"}},
        {"id": "b", "type": "bench-b", "retry": RETRY, "inputs": {"n": "{{ a.output.n }}"}},
        {"id": "c", "type": "bench-c", "retry": RETRY, "inputs": {"n": "{{ a.output.n }}"}},
        {"id": "d", "type": "bench-d", "retry": RETRY, "inputs": {"b": "{{ b.output.n }}", "c": "{{ c.output.n }}"}},
    ],
    "edges": [{"from": "a", "to": "b"}, {"from": "a", "to": "c"}, {"from": "b", "to": "d"}, {"from": "c", "to": "d"}],
}
PRINT_EVERY_S = 30.0


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Service:
    """A knflow process that can be killed and started again on the same port."""

    name: str
    args: list[str]
    env: dict[str, str]
    log_dir: Path
    port: int | None = None
    proc: subprocess.Popen | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, ready_s: float = 60.0) -> Service:
        self.starts += 1
        log = open(self.log_dir / f"{self.name}-{self.starts}.log", "wb")  # noqa: SIM115 (the child keeps it)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "knflow.cli", *self.args], stdout=log, stderr=subprocess.STDOUT, env=self.env
        )
        deadline = time.monotonic() + ready_s
        while not self.ready():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not start; see {log.name}")
            time.sleep(0.1)
        return self

    def ready(self) -> bool:
        if self.port is None:
            return "knflow: dispatching" in (self.log_dir / f"{self.name}-{self.starts}.log").read_text(
                errors="replace"
            )
        try:
            with urllib.request.urlopen(f"{self.url}/healthz", timeout=1) as resp:
                return bool(resp.status == 200)
        except (OSError, HTTPException):
            return False

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.kill()
            self.proc.wait()

    def stop(self) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def rss_mb(self) -> float:
        if not self.alive():
            return 0.0
        assert self.proc is not None
        try:
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        except OSError:
            pass
        return 0.0


@dataclass
class Tally:
    accepted: dict[int, str] = field(default_factory=dict)  # n -> run id
    finished: dict[str, float] = field(default_factory=dict)  # run id -> latency in ms
    failed: dict[str, Any] = field(default_factory=dict)
    window_ms: list[float] = field(default_factory=list)
    kills: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def request(method: str, url: str, body: dict | None = None, headers: dict | None = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    hdrs = {"authorization": f"Bearer {ADMIN_TOKEN}", "content-type": "application/json", **(headers or {})}
    req = urllib.request.Request(url, data=data, method=method, headers=hdrs)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            raw = resp.read()
            return resp.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as err:
        raw = err.read()
        return err.code, json.loads(raw) if raw else None


def latency_ms(run: dict) -> float:
    start = datetime.fromisoformat(run["created_at"].replace("Z", "+00:00"))
    end = datetime.fromisoformat(run["finished_at"].replace("Z", "+00:00"))
    return (end - start).total_seconds() * 1000


def load(routers: list[Service], rate: float, until: float, tally: Tally, stop: threading.Event) -> None:
    """`rate` runs per second to random live routers; a run not answered is sent again under its key."""
    n, backlog = 0, []
    next_at = time.monotonic()
    while not stop.is_set() and time.monotonic() < until:
        next_at += 1 / rate
        time.sleep(max(0.0, next_at - time.monotonic()))
        backlog.append(n)
        n += 1
        for i in list(backlog):
            live = [r for r in routers if r.alive()]
            if not live:
                break
            try:
                status, body = request(
                    "POST", f"{random.choice(live).url}/hooks/soak", {"n": i}, {"idempotency-key": f"soak-{i}"}
                )
            except (OSError, HTTPException):
                break  # a router died mid-answer: the next tick sends it again, same key
            if status == 202:
                backlog.remove(i)
                with tally.lock:
                    tally.accepted[i] = body["run"]
            else:
                break


def check(routers: list[Service], tally: Tally, stop: threading.Event) -> None:
    """Reads each accepted run until it ends."""
    while not stop.is_set():
        with tally.lock:
            pending = [r for r in tally.accepted.values() if r not in tally.finished and r not in tally.failed]
        live = [r for r in routers if r.alive()]
        for run_id in pending[:200]:
            if not live:
                break
            try:
                status, run = request("GET", f"{random.choice(live).url}/runs/{run_id}")
            except (OSError, HTTPException):
                continue
            if status == 200 and run["status"] == "succeeded":
                ms = latency_ms(run)
                with tally.lock:
                    tally.finished[run_id] = ms
                    tally.window_ms.append(ms)
            elif status == 200 and run["status"] in ("failed", "cancelled"):
                with tally.lock:
                    tally.failed[run_id] = run.get("error")
        time.sleep(0.2)


def chaos(victims: list[Service], every_s: float, until: float, tally: Tally, stop: threading.Event) -> None:
    """Kill -9 a random router or function service every `every_s` (± half), start it again after 1 s."""
    while not stop.wait(every_s * random.uniform(0.5, 1.5)) and time.monotonic() < until:
        victim = random.choice(victims)
        victim.kill()
        tally.kills += 1
        time.sleep(1.0)
        try:
            victim.start()
        except RuntimeError as exc:
            print(f"soak: {victim.name} did not come back: {exc}", flush=True)


def report(elapsed_s: float, tally: Tally, services: list[Service]) -> None:
    with tally.lock:
        window, tally.window_ms = tally.window_ms, []
        accepted, finished, failed = len(tally.accepted), len(tally.finished), len(tally.failed)
    if len(window) >= 2:
        cuts = statistics.quantiles(window, n=100)
        lat = f"p50 {cuts[49]:.0f} ms, p99 {cuts[98]:.0f} ms"
    else:
        lat = "p50 -, p99 -"
    rss = ", ".join(f"{s.name} {s.rss_mb():.0f}" for s in services)
    print(
        f"{elapsed_s / 60:5.1f} min  accepted {accepted:6}  finished {finished:6}  failed {failed}  "
        f"{lat} (last {PRINT_EVERY_S:.0f} s)  kills {tally.kills}  RSS MB: {rss}",
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=30.0)
    p.add_argument("--rate", type=float, default=20.0, help="diamond runs started per second")
    p.add_argument("--routers", type=int, default=2)
    p.add_argument("--store", choices=("sqlite", "mongo"), default="sqlite")
    p.add_argument("--kill-every-s", type=float, default=45.0)
    p.add_argument("--drain-s", type=float, default=180.0, help="after the load: how long the runs may take")
    args = p.parse_args(argv)
    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="knflow-soak-")))
        nats = stack.enter_context(nats_server(work))
        if args.store == "mongo":
            store_url = stack.enter_context(mongo_server(work)).database_url("soak")
        else:
            store_url = f"sqlite:///{work}/runs.db"
        (work / "soak.yaml").write_text(json.dumps(PIPELINE))
        env = {
            **os.environ,
            "KNFLOW_STREAM": "SOAK",
            "KNFLOW_SUBJECT_PREFIX": "soak",
            "KNFLOW_ADMIN_TOKEN": ADMIN_TOKEN,
            "KNFLOW_RESULT_KEY": secrets.token_hex(32),
            "KNFLOW_SWEEP_INTERVAL_S": "2",
            "KNFLOW_SWEEP_AFTER_S": "10",
        }
        functions = [
            Service(
                name, ["serve", "function", name, "--functions", FUNCTIONS_MODULE, "--port", str(port)], env, work, port
            )
            for name, port in ((name, free_port()) for name in DIAMOND_FUNCTIONS)
        ]
        routers = [
            Service(
                f"router{i + 1}",
                [
                    *("serve", "router", "--nats", nats.url, "--store", store_url),
                    *("--pipelines", str(work / "soak.yaml"), "--port", str(port), "--host", "127.0.0.1"),
                ],
                env,
                work,
                port,
            )
            for i, port in enumerate(free_port() for _ in range(args.routers))
        ]
        routes = [x for f in functions for x in ("--function", f"{f.name}={f.url}/")]
        dispatcher = Service(
            "dispatcher",
            [
                *("serve", "dispatcher", "--nats", nats.url, *routes, "--functions", FUNCTIONS_MODULE),
                *("--dead-letter", f"{routers[0].url}/dead-letter"),
            ],
            env,
            work,
        )
        services = [*routers, *functions, dispatcher]
        for s in services:
            s.start()
            stack.callback(s.stop)
        print(
            f"soak: {args.minutes:g} min at {args.rate:g} runs/s, {args.routers} router(s) on {args.store}, "
            f"a kill every ~{args.kill_every_s:g} s (routers and function services); logs in {work}",
            flush=True,
        )
        tally, stop = Tally(), threading.Event()
        began = time.monotonic()
        until = began + args.minutes * 60
        threads = [
            threading.Thread(target=load, args=(routers, args.rate, until, tally, stop), daemon=True),
            threading.Thread(target=check, args=(routers, tally, stop), daemon=True),
            threading.Thread(
                target=chaos, args=([*routers, *functions], args.kill_every_s, until, tally, stop), daemon=True
            ),
        ]
        for t in threads:
            t.start()
        while time.monotonic() < until:
            time.sleep(min(PRINT_EVERY_S, max(0.0, until - time.monotonic())))
            report(time.monotonic() - began, tally, services)
        threads[0].join()
        threads[2].join()
        for s in [*routers, *functions]:  # whatever the last kill left down comes back for the drain
            if not s.alive():
                s.start()
        drain_until = time.monotonic() + args.drain_s
        while time.monotonic() < drain_until:
            with tally.lock:
                left = len(tally.accepted) - len(tally.finished) - len(tally.failed)
            if left == 0:
                break
            time.sleep(1.0)
        stop.set()
        report(time.monotonic() - began, tally, services)
        lost = sorted(set(tally.accepted.values()) - set(tally.finished) - set(tally.failed))
        print(
            f"soak: accepted {len(tally.accepted)}, succeeded {len(tally.finished)}, failed {len(tally.failed)}, "
            f"not finished {len(lost)}{' (first: ' + ', '.join(lost[:5]) + ')' if lost else ''}; "
            f"kills {tally.kills}",
            flush=True,
        )
        return 0 if not lost and not tally.failed else 1


if __name__ == "__main__":
    sys.exit(main())
