"""The Celery baseline: Redis (broker and result backend) started here on a random port, one worker with
concurrency 2 (prefork), the diamond as chain(A, chord([B, C], D)); timed like knflow's modes.
"""

from __future__ import annotations

import collections
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.drive import percentile
from bench.functions import diamond_expected

ROOT = Path(__file__).resolve().parent.parent
REDIS_SERVER = "/usr/bin/redis-server"
START_TIMEOUT_S = 30.0
RUN_TIMEOUT_S = 120.0  # one diamond; a machine whose cores are all busy can take long over one


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Redis:
    """A redis-server on a random port, no persistence; ready when it answers PING."""

    def __init__(self, workdir: Path) -> None:
        self.binary = shutil.which("redis-server") or REDIS_SERVER
        self.workdir = workdir
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None

    def start(self) -> Redis:
        import redis

        if not Path(self.binary).is_file():
            raise RuntimeError(
                f"no redis-server on PATH nor at {REDIS_SERVER}: install it (Debian: apt-get install redis-server)"
            )

        argv = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.workdir),
            "--logfile",
            str(self.workdir / "redis.log"),
        ]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}: {self.log()}")
            try:
                client.ping()
                return self
            except redis.exceptions.ConnectionError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(
                        f"redis-server did not answer PING within {START_TIMEOUT_S} s: {self.log()}"
                    ) from None
                time.sleep(0.02)

    def log(self) -> str:
        path = self.workdir / "redis.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else "(no log)"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


class Worker:
    """`celery -A bench.celery_app worker --concurrency 2`; ready when it answers a ping."""

    def __init__(self, redis_url: str, workdir: Path, concurrency: int = 2) -> None:
        self.env = {**os.environ, "KNFLOW_BENCH_REDIS": redis_url, "PYTHONPATH": str(ROOT)}
        self.log_path = workdir / "celery-worker.log"
        self.argv = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "bench.celery_app",
            "worker",
            "--concurrency",
            str(concurrency),
            "--pool",
            "prefork",
            "--loglevel",
            "WARNING",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ]
        self.proc: subprocess.Popen | None = None

    def start(self, app: Any) -> Worker:
        with open(self.log_path, "wb") as log:  # the worker writes to its own copy of the descriptor
            self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=ROOT)
        deadline = time.monotonic() + START_TIMEOUT_S
        while not app.control.ping(timeout=0.5):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"celery worker did not start: {self.log_path.read_text(errors='replace')[-2000:]}")
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def run(sequential_runs: int, throughput_runs: int, in_flight: int) -> dict[str, float]:
    """Sequential p50/p99 and capped throughput of the diamond on Celery + Redis."""
    with tempfile.TemporaryDirectory(prefix="knflow-bench-celery-") as tmp:
        redis = Redis(Path(tmp)).start()
        os.environ["KNFLOW_BENCH_REDIS"] = redis.url
        from bench import celery_app

        celery_app.app.conf.broker_url = celery_app.app.conf.result_backend = redis.url
        worker = None
        try:
            worker = Worker(redis.url, Path(tmp)).start(celery_app.app)
            return {**_sequential(celery_app, sequential_runs), **_throughput(celery_app, throughput_runs, in_flight)}
        finally:
            import gc

            gc.collect()  # results still subscribed would otherwise reach for the stopped Redis at exit
            if worker is not None:
                worker.stop()
            redis.stop()


def _sequential(celery_app: Any, n: int, warmup: int = 10) -> dict[str, float]:
    for i in range(warmup):
        celery_app.diamond(i).apply_async().get(timeout=RUN_TIMEOUT_S)
    times = []
    for i in range(n):
        t = time.perf_counter()
        out = celery_app.diamond(i).apply_async().get(timeout=RUN_TIMEOUT_S)
        times.append((time.perf_counter() - t) * 1000)
        if out != {"n": diamond_expected(i)}:
            raise RuntimeError(f"celery diamond({i}) answered {out}")
    return {"p50_ms": percentile(times, 50), "p99_ms": percentile(times, 99)}


def _throughput(celery_app: Any, n: int, in_flight: int) -> dict[str, float]:
    """At most `in_flight` runs outstanding: the oldest is waited for before the next is submitted. CPU per
    run as knflow's is counted: this process (the client), the worker and its pool; redis-server beside."""
    from bench import cpu

    before = cpu.snapshot()
    pending: collections.deque = collections.deque()
    times = []
    started = time.perf_counter()

    def finish_oldest() -> None:
        t, i, result = pending.popleft()
        out = result.get(timeout=RUN_TIMEOUT_S)
        times.append((time.perf_counter() - t) * 1000)
        if out != {"n": diamond_expected(i)}:
            raise RuntimeError(f"celery diamond({i}) answered {out}")

    for i in range(n):
        if len(pending) >= in_flight:
            finish_oldest()
        pending.append((time.perf_counter(), i, celery_app.diamond(i).apply_async()))
    while pending:
        finish_oldest()
    elapsed = time.perf_counter() - started
    return {
        "runs_per_s": n / elapsed,
        "runs": n,
        "in_flight": in_flight,
        "loaded_p50_ms": percentile(times, 50),
        "loaded_p99_ms": percentile(times, 99),
        **cpu.per_run(before, cpu.snapshot(), n),
    }
