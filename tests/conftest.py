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


from tests.nats_fixture import layout, nats_server, nats_server_each, nc  # noqa: E402,F401  (servers; a client, a stream)
from tests.mongo_fixture import mongo_server, mongo_url  # noqa: E402,F401  (a MongoDB wire server; a database per test)
from tests.store_fixture import backend, store  # noqa: E402,F401  (a run store on SQLite and on MongoDB)


CHROMIUM = "/usr/bin/chromium"  # Debian's, which make installs; Playwright's own download cannot run here


@pytest.fixture(scope="module")
def browser():
    """Playwright's Chromium: Debian's, for the browser tests (tests/test_ui_browser.py, test_editor_browser.py)."""
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"the browser tests drive Debian's chromium at {CHROMIUM}: apt-get install chromium (make does)")
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture
def otel_installed() -> None:
    """The tracing tests need the otel extra, which the dev extra installs: without it they fail, naming it."""
    from tests.otlp_receiver import OTEL_MISSING

    if OTEL_MISSING is not None:
        pytest.fail(f"{OTEL_MISSING} (pip install -e '.[dev]' installs it)")
