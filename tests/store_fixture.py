"""The run-store fixtures shared by the store tests: `backend` (SQLite on a temporary file, or MongoDB on
the wire server) and `store`, a store opened on it. Wired into conftest.py by name."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from router.store.mongo import MongoStore
from router.store.sqlite import SqliteStore


class Backend:
    """Opens stores on one database (a SQLite file, a MongoDB database) of one test."""

    def __init__(self, name: str, open_store: Callable[[], Any]) -> None:
        self.name = name
        self.open = open_store


@pytest.fixture(params=["sqlite", "mongo"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "sqlite":
        return Backend("sqlite", lambda: SqliteStore(tmp_path / "knflow.db"))
    url = request.getfixturevalue("mongo_url")
    return Backend("mongo", lambda: MongoStore.from_url(url))


@pytest.fixture
async def store(backend: Backend):
    s = backend.open()
    yield s
    await s.close()
