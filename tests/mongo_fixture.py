"""MongoDB for tests: the `nx-27017` wire-protocol server on a free port, or `KNFLOW_TEST_MONGODB_URL`.

Fixtures (wire them into conftest.py by name):

- `mongo_server`  session-scoped: a `MongoWireServer` (started once, in-memory databases, stopped at session
                  end), or an `ExternalMongo` for `KNFLOW_TEST_MONGODB_URL` (then tests run on a real MongoDB).
                  Both have `.url` and `.database_url(name)`.
- `mongo_url`     per test: the server's URL with a database of its own (`knflow_test_<hex>`). Tests isolate
                  themselves by that name, never by resets. On an external server the session drops them at its end.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from pymongo import MongoClient
from pymongo.errors import PyMongoError

from tests.processes import free_port

STARTUP_TIMEOUT_S = 20.0


def nx_27017_binary() -> str | None:
    """The `nx-27017` script next to this venv's python, else one on PATH."""
    candidate = Path(sys.executable).parent / "nx-27017"
    return str(candidate) if candidate.is_file() else shutil.which("nx-27017")


class MongoWireServerError(RuntimeError):
    pass


class MongoWireServer:
    """One `nx-27017` process with in-memory databases on a free port; ready when a `ping` succeeds."""

    def __init__(self, binary: str, workdir: str | Path) -> None:
        self.binary = binary
        self.workdir = Path(workdir)
        self.port = 0
        self.url = ""
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def argv(self) -> list[str]:
        return [self.binary, "-p", str(self.port), "--db", "memory",
                "--log-file", str(self.workdir / "nx-27017.log"), "--pid-file", str(self.workdir / "nx-27017.pid")]

    def start(self, timeout_s: float = STARTUP_TIMEOUT_S) -> MongoWireServer:
        self.port = free_port()
        self.url = f"mongodb://127.0.0.1:{self.port}/?directConnection=true"
        with open(self.workdir / "output.txt", "wb") as out:
            self._proc = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        with MongoClient(self.url, serverSelectionTimeoutMS=100, connectTimeoutMS=100) as client:
            while True:
                if self._proc.poll() is not None:
                    self._fail(f"exited during startup (exit status {self._proc.returncode})")
                try:
                    client.admin.command("ping")  # waits up to serverSelectionTimeoutMS for the port to open
                    return self
                except PyMongoError as e:
                    if time.monotonic() > deadline:
                        self._fail(f"did not answer ping within {timeout_s} s ({e.__class__.__name__})")

    def database_url(self, name: str) -> str:
        return f"mongodb://127.0.0.1:{self.port}/{name}?directConnection=true"

    def output(self, max_chars: int = 4000) -> str:
        path = self.workdir / "output.txt"
        text = path.read_text(errors="replace") if path.exists() else ""
        return text[-max_chars:] or "(no output)"

    def _fail(self, what: str) -> None:
        self.stop()
        log = "\n".join(f"    {line}" for line in self.output().splitlines())
        raise MongoWireServerError(f"nx-27017 `{' '.join(self.argv)}` {what}. Its output:\n{log}")

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


class ExternalMongo:
    """A MongoDB that someone else runs (`KNFLOW_TEST_MONGODB_URL`): no lifecycle; it drops the test databases."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.databases: list[str] = []

    def database_url(self, name: str) -> str:
        self.databases.append(name)
        return urlsplit(self.url)._replace(path=f"/{name}").geturl()

    def drop_databases(self) -> None:
        with MongoClient(self.url) as client:
            for name in self.databases:
                client.drop_database(name)


@pytest.fixture(scope="session")
def mongo_server() -> Iterator[MongoWireServer | ExternalMongo]:
    if url := os.environ.get("KNFLOW_TEST_MONGODB_URL"):
        external = ExternalMongo(url)
        yield external
        external.drop_databases()
        return
    binary = nx_27017_binary()
    if binary is None:
        pytest.skip("no nx-27017: `pip install nx-27017` or set KNFLOW_TEST_MONGODB_URL")
    with tempfile.TemporaryDirectory(prefix="knflow-mongo-") as workdir:
        server = MongoWireServer(binary, workdir).start()
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture
def mongo_url(mongo_server: MongoWireServer | ExternalMongo) -> str:
    return mongo_server.database_url(f"knflow_test_{uuid.uuid4().hex[:12]}")
