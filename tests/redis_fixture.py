"""Redis for tests: a real `redis-server` (Debian's) on a free port, or `KNFLOW_TEST_REDIS_URL`.

Fixtures (import them into a test module or conftest.py by name):

- `redis_server`  session-scoped: a `RedisServer` (started once, nothing saved to disk, stopped at session
                  end), or an `ExternalRedis` for `KNFLOW_TEST_REDIS_URL`. Both have `.url`.
- `redis_url`     the server's URL. Tests isolate themselves by unique key names (see `unique_key`), never
                  by FLUSHALL.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.processes import free_port

STARTUP_TIMEOUT_S = 10.0
POLL_INTERVAL_S = 0.02


def redis_server_binary() -> str | None:
    return shutil.which("redis-server") or ("/usr/bin/redis-server" if Path("/usr/bin/redis-server").is_file() else None)


class RedisServerError(RuntimeError):
    pass


class RedisServer:
    """One `redis-server` with persistence off, on a free port; ready when PING answers PONG."""

    def __init__(self, binary: str, workdir: str | Path) -> None:
        self.binary = binary
        self.workdir = Path(workdir)
        self.port = 0
        self.url = ""
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def argv(self) -> list[str]:
        return [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--dir", str(self.workdir), "--daemonize", "no", "--loglevel", "notice"]

    def start(self, timeout_s: float = STARTUP_TIMEOUT_S) -> RedisServer:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        with open(self.workdir / "output.txt", "wb") as out:
            self._proc = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        with redis.Redis(port=self.port, socket_connect_timeout=0.2, socket_timeout=0.5, retry=Retry(NoBackoff(), 0)) as client:
            while True:
                if self._proc.poll() is not None:
                    self._fail(f"exited during startup (exit status {self._proc.returncode})")
                try:
                    if client.ping():
                        return self
                except redis.RedisError as e:
                    if time.monotonic() > deadline:
                        self._fail(f"did not answer PING within {timeout_s} s ({type(e).__name__}: {e})")
                time.sleep(POLL_INTERVAL_S)

    def output(self, max_chars: int = 4000) -> str:
        path = self.workdir / "output.txt"
        text = path.read_text(errors="replace") if path.exists() else ""
        return text[-max_chars:] or "(no output)"

    def _fail(self, what: str) -> None:
        self.stop()
        log = "\n".join(f"    {line}" for line in self.output().splitlines())
        raise RedisServerError(f"redis-server `{' '.join(self.argv)}` {what}. Its output:\n{log}")

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after `timeout_s`."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class ExternalRedis:
    """A Redis that someone else runs (`KNFLOW_TEST_REDIS_URL`): no lifecycle."""

    def __init__(self, url: str) -> None:
        self.url = url


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer | ExternalRedis]:
    if url := os.environ.get("KNFLOW_TEST_REDIS_URL"):
        yield ExternalRedis(url)
        return
    binary = redis_server_binary()
    if binary is None:
        pytest.skip("no redis-server: `apt-get install redis-server` or set KNFLOW_TEST_REDIS_URL")
    with tempfile.TemporaryDirectory(prefix="knflow-redis-") as workdir:
        server = RedisServer(binary, workdir).start()
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer | ExternalRedis) -> str:
    return redis_server.url


def unique_key(name: str) -> str:
    return f"knflow-test:{uuid.uuid4().hex[:12]}:{name}"
