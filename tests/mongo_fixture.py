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
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from pymongo import MongoClient

from tests.processes import ServerProcess


def nx_27017_binary() -> str | None:
    """The `nx-27017` script next to this venv's python, else one on PATH."""
    candidate = Path(sys.executable).parent / "nx-27017"
    return str(candidate) if candidate.is_file() else shutil.which("nx-27017")


class MongoWireServer(ServerProcess):
    """One `nx-27017` process with in-memory databases on a free port; ready when a `ping` succeeds."""

    name = "nx-27017"

    @property
    def url(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/?directConnection=true"

    @property
    def argv(self) -> list[str]:
        return [
            self.binary,
            "-p",
            str(self.port),
            "--db",
            "memory",
            "--log-file",
            str(self.workdir / "nx-27017.log"),
            "--pid-file",
            str(self.workdir / "nx-27017.pid"),
        ]

    def ping(self) -> bool:
        client: MongoClient[dict[str, Any]]
        with MongoClient(self.url, serverSelectionTimeoutMS=100, connectTimeoutMS=100) as client:
            client.admin.command("ping")
        return True

    def database_url(self, name: str) -> str:
        return f"mongodb://127.0.0.1:{self.port}/{name}?directConnection=true"


class ExternalMongo:
    """A MongoDB that someone else runs (`KNFLOW_TEST_MONGODB_URL`): no lifecycle; it drops the test databases."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.databases: list[str] = []

    def database_url(self, name: str) -> str:
        self.databases.append(name)
        return urlsplit(self.url)._replace(path=f"/{name}").geturl()

    def drop_databases(self) -> None:
        client: MongoClient[dict[str, Any]]
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
        pytest.fail(
            "no nx-27017 next to this Python or on PATH: "
            "`pip install -e '.[dev]'` installs it (or set KNFLOW_TEST_MONGODB_URL)"
        )
    with tempfile.TemporaryDirectory(prefix="knflow-mongo-") as workdir:
        server = MongoWireServer(binary, workdir).start()
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture
def mongo_url(mongo_server: MongoWireServer | ExternalMongo) -> str:
    return mongo_server.database_url(f"knflow_test_{uuid.uuid4().hex[:12]}")
