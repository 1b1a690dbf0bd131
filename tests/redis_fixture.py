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
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.processes import ServerProcess


def redis_server_binary() -> str | None:
    return shutil.which("redis-server") or (
        "/usr/bin/redis-server" if Path("/usr/bin/redis-server").is_file() else None
    )


class RedisServer(ServerProcess):
    """One `redis-server` with persistence off, on a free port; ready when PING answers PONG."""

    name = "redis-server"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def argv(self) -> list[str]:
        return [
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
            "--daemonize",
            "no",
            "--loglevel",
            "notice",
        ]

    def ping(self) -> bool:
        with redis.Redis(
            port=self.port, socket_connect_timeout=0.2, socket_timeout=0.5, retry=Retry(NoBackoff(), 0)
        ) as client:
            return bool(client.ping())


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
        pytest.fail(
            "no redis-server on PATH: `make test` installs Debian's (apt-get install redis-server), "
            "or set KNFLOW_TEST_REDIS_URL"
        )
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
