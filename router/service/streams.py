"""Live updates for the dashboard, as Server-Sent Events: `GET /runs/{id}/stream` (one run) and
`GET /runs/stream` (the newest runs, filtered as `GET /runs` is). Scope `read`, sent as every route's
`Authorization: Bearer` (the dashboard reads the stream with fetch(), not EventSource, so that the token
stays in a header).

The router keeps no state, and several may serve one store: each stream polls the store every
`POLL_INTERVAL_S` and sends only what changed, by the run's `version`. A run's stream sends `run` (the run
record, as `GET /runs/{id}`, but a fan-out node's `progress` without its `items`: a poll reads the light run,
never 10,000 items; the node view `GET /runs/{id}/nodes/{node}` lists them) at once and after each change,
then `end` once the run is final, and closes. The runs stream sends `runs` (`{"runs": [summaries that
changed], "order": [the ids, newest first]}`) and, every `COUNTS_INTERVAL_S` when they changed, `counts` (as
`GET /runs/counts`). Both send a comment every `HEARTBEAT_S`, and close after `MAX_STREAM_S`, when the client
goes away, or when the server shuts down (`Service.closing`), so that uvicorn never waits on them; the client
reconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

import router.service.openapi as openapi
import router.service.params as params
from router.router import iso_before
from router.runs import RUN_FINAL, record
import router.service.sse as sse
from router.service.auth import Reader
from router.service.context import Service, Svc
from router.store.base import RunNotFound
from router.views import counts_by_status, run_summary

POLL_INTERVAL_S = 0.3
HEARTBEAT_S = 15.0
COUNTS_INTERVAL_S = 2.0
MAX_STREAM_S = 600.0
RECONNECT_MS = 1000
COUNTS_WINDOW_S = 3600.0

routes = APIRouter()


def stream(events: AsyncIterator[bytes]) -> StreamingResponse:
    return StreamingResponse(events, media_type=sse.MEDIA_TYPE, headers=sse.HEADERS)


@routes.get("/runs/stream", response_class=StreamingResponse, responses=openapi.EVENT_STREAM)
async def runs_stream(
    request: Request,
    svc: Svc,
    caller: Reader,
    pipeline: str | None = None,
    status: str | None = None,
    limit: str | None = None,
) -> StreamingResponse:
    wanted = {
        "pipeline": params.text({"pipeline": pipeline}, "pipeline"),
        "status": params.run_status(status),
        "limit": params.limit(limit, default=50),
    }
    return stream(_runs_events(svc, request, wanted))


@routes.get("/runs/{run_id}/stream", response_class=StreamingResponse, responses=openapi.EVENT_STREAM)
async def run_stream(run_id: str, request: Request, svc: Svc, caller: Reader) -> StreamingResponse:
    if await svc.router.store.get_run(run_id, light=True) is None:
        raise RunNotFound(f"run '{run_id}' not found", run_id=run_id)
    return stream(_run_events(svc, request, run_id))


async def _run_events(svc: Service, request: Request, run_id: str) -> AsyncIterator[bytes]:
    yield sse.retry(RECONNECT_MS)
    version = None
    async for beat in _ticks(svc, request):
        run = await svc.router.store.get_run(run_id, light=True)  # fan-out nodes' counters, not their items
        if run is None:
            yield sse.event("end", {"run": run_id, "status": None, "error": f"run '{run_id}' not found"})
            return
        if run.get("version") != version:
            version = run.get("version")
            yield sse.event("run", record(run), version)
            if run["status"] in RUN_FINAL:
                yield sse.event("end", {"run": run_id, "status": run["status"]})
                return
        elif beat:
            yield sse.comment("keep-alive")


async def _runs_events(svc: Service, request: Request, wanted: dict) -> AsyncIterator[bytes]:
    yield sse.retry(RECONNECT_MS)
    seen: dict[str, int] = {}
    order: list[str] | None = None
    counts, counted_at = None, 0.0
    async for beat in _ticks(svc, request):
        sent = False
        runs = [run_summary(r) for r in await svc.router.store.list_runs(**wanted)]
        fresh = sse.changed(seen, runs)  # type: ignore[arg-type]
        ids = [r["id"] for r in runs]
        if fresh or ids != order:
            order = ids
            for gone in set(seen) - set(ids):
                del seen[gone]
            yield sse.event("runs", {"runs": fresh, "order": ids})
            sent = True
        if time.monotonic() - counted_at >= COUNTS_INTERVAL_S:
            counted_at = time.monotonic()
            now = counts_by_status(await svc.router.store.count_runs(since=iso_before(COUNTS_WINDOW_S)))
            if now != counts:
                counts = now
                yield sse.event("counts", now)
                sent = True
        if beat and not sent:
            yield sse.comment("keep-alive")


async def _ticks(svc: Service, request: Request) -> AsyncIterator[bool]:
    """One tick per poll (True when a heartbeat is due), until the stream should close."""
    started = last_beat = time.monotonic()
    first = True
    while not svc.closing.is_set():
        now = time.monotonic()
        if now - started > MAX_STREAM_S or (not first and await request.is_disconnected()):
            return
        beat = now - last_beat >= HEARTBEAT_S
        if beat:
            last_beat = now
        yield beat
        first = False
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(svc.closing.wait(), POLL_INTERVAL_S)
