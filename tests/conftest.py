"""Shared fixtures. Servers (nats-server, the MongoDB wire server, uvicorn) are started once per session."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/knflow.db"


from tests.nats_fixture import nats_server, nats_server_each  # noqa: E402,F401  (session-scoped servers)
from tests.mongo_fixture import mongo_server, mongo_url  # noqa: E402,F401  (a MongoDB wire server; a database per test)
from tests.store_fixture import backend, store  # noqa: E402,F401  (a run store on SQLite and on MongoDB)
