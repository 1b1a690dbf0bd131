"""The `knative` mode: the path a Knative deployment takes, without a cluster.

    bench process --POST /hooks/NAME (a token of scope run)--> `knflow serve router` (K_SINK, SQLite)
    router --invokes, run events: POST K_SINK--> knative broker STAND-IN (bench/knative_standin.py)
    stand-in: JetStream --POST binary mode--> `knflow serve function` (one process per function)
    function's HTTP response = its reply --> stand-in --POST /events--> router

Every part is its own process, so each one's CPU per run is read apart (bench/cpu.py): the router's is
the figure knflow owns on a cluster; the stand-in's and nats-server's stand for the broker's, which on a
cluster is Knative's (and not knflow's code). A run's end is reported by the stand-in once the router
accepted its last node's result (see knative_standin.py): no polling of the router's API, which would
cost the router CPU that a cluster's clients need not spend.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from bench.celery_baseline import free_port
from bench.functions import ALL_FUNCTIONS
from bench.pipelines import FUNCTIONS_MODULE

CONNECTIONS = 32
TRIES = 3


class HttpDriver:
    """Starts runs by the router's webhook and waits for the stand-in to report their ends on NATS."""

    def __init__(self, router_url: str, nats_url: str, report_subject: str, admin_token: str) -> None:
        self.url = router_url
        self.nats_url = nats_url
        self.subject = report_subject
        self.admin_token = admin_token
        self.token = ""
        self.waiting: dict[str, asyncio.Future[str]] = {}
        self.ended: dict[str, str] = {}  # ends reported before the webhook's answer came back
        self._session: Any = None
        self._nc: Any = None

    async def __aenter__(self) -> HttpDriver:
        import aiohttp
        import nats

        # runs in flight wait for their ends, not on a connection: a few connections carry all the webhooks
        self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=CONNECTIONS))
        self._nc = await nats.connect(self.nats_url)
        await self._nc.subscribe(self.subject, cb=self._on_end)
        async with self._session.post(
            f"{self.url}/tokens",
            json={"name": f"bench-{uuid.uuid4().hex[:6]}", "scope": "run"},
            headers={"authorization": f"Bearer {self.admin_token}"},
        ) as resp:
            answer = await resp.json()
            if resp.status != 201:
                raise RuntimeError(f"POST /tokens answered {resp.status}: {answer}")
        self.token = answer["token"]
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._nc.close()
        await self._session.close()

    async def _on_end(self, msg: Any) -> None:
        run_id, status = msg.data.decode().split()
        fut = self.waiting.pop(run_id, None)
        if fut is None:
            self.ended[run_id] = status
        elif not fut.done():
            fut.set_result(status)

    async def run(self, pipeline: Any, data: Any) -> str:
        """One run, started by POST /hooks/NAME; returns how it ended."""
        import aiohttp

        headers = {"authorization": f"Bearer {self.token}", "idempotency-key": uuid.uuid4().hex}
        for attempt in range(1, TRIES + 1):  # the Idempotency-Key makes a second POST find the first's run
            try:
                async with self._session.post(f"{self.url}/hooks/{pipeline.name}", json=data, headers=headers) as resp:
                    answer = await resp.json()
                    if resp.status != 202:
                        raise RuntimeError(f"POST /hooks/{pipeline.name} answered {resp.status}: {answer}")
                break
            except aiohttp.ClientConnectionError:  # a kept-alive connection the server closed meanwhile
                if attempt == TRIES:
                    raise
        run_id = answer["run"]
        status = self.ended.pop(run_id, None)
        if status is not None:
            return status
        fut = self.waiting[run_id] = asyncio.get_running_loop().create_future()
        return await fut


def last_nodes(pipeline: Any) -> list[str]:
    return [n for n in pipeline.nodes if not pipeline.successors[n]]


@contextlib.asynccontextmanager
async def stack(nats_url: str, workdir: Path, pipelines: list[Any]) -> AsyncIterator[HttpDriver]:
    """Function services, the broker stand-in and `knflow serve router` with K_SINK; yields the driver."""
    from bench.stacks import function_services, started

    tag = uuid.uuid4().hex[:8]
    stream, prefix = f"BENCH{tag.upper()}", f"bench{tag}"
    report = f"knflowbench.{tag}.ends"  # outside the stream's subjects
    files = []
    for p in pipelines:
        path = workdir / f"{p.name}.json"
        path.write_text(json.dumps(p.to_dict()))
        files.append(str(path))
    router_port, standin_port = free_port(), free_port()
    router_url = f"http://127.0.0.1:{router_port}"
    admin_token = secrets.token_urlsafe(32)
    with function_services(ALL_FUNCTIONS) as urls:
        standin = [sys.executable, "-m", "bench.knative_standin", "--nats", nats_url, "--stream", stream]
        standin += ["--prefix", prefix, "--port", str(standin_port), "--router", router_url, "--report", report]
        standin += [x for name, url in urls.items() for x in ("--function", f"{name}={url}")]
        standin += [x for p in pipelines for n in last_nodes(p) for x in ("--end", f"{p.name}:{n}")]
        router = [sys.executable, "-m", "knflow.cli", "serve", "router", "--store", f"sqlite:///{workdir}/runs.db"]
        router += ["--functions", FUNCTIONS_MODULE, "--host", "127.0.0.1", "--port", str(router_port)]
        router += ["--pipelines", *files]
        router_env = {
            **os.environ,
            "K_SINK": f"http://127.0.0.1:{standin_port}/",
            "KNFLOW_ADMIN_TOKEN": admin_token,
            "KNFLOW_NATS_URL": "",
        }
        with (
            started(standin, dict(os.environ), "knative broker stand-in: ingress", "the knative broker stand-in"),
            started(router, router_env, "knflow: serving on", "knflow serve router"),
        ):
            async with HttpDriver(router_url, nats_url, report, admin_token) as driver:
                yield driver
