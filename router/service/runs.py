"""Runs: `GET /runs`, `GET /runs/counts`, `GET /runs/{id}`, `GET /runs/{id}/nodes/{node}`, and what changes
them: `POST /runs/{id}/replay` (redrive in place, or re-run as a new run, with the trigger's `data` edited if
the body gives one), `POST /runs/{id}/cancel`, and the bulk `POST /replay`.

A run record (`router.runs.record`) goes out as it is: `response_model=None`, so that FastAPI does not
validate the `RunRecord` type, which describes it for the type checker only.

Reading needs scope `read`; replay and cancel `operate`, and their history records the token's name as
`by` (a `by` in the body counts only on an open router, where no token names the caller)."""

from __future__ import annotations

from fastapi import APIRouter, Request

from functions.blobs import refuse_blob_refs
from router.router import iso_before
from router.runs import RunDoc, RunRecord, fan_nodes, record
from router.views import RunSummary, counts_by_status, run_summary
from router.service.nodes import node_view
import router.service.params as params
import router.service.openapi as openapi
from router.service.auth import Caller, Operator, Reader
from router.service.context import Svc
from router.store.base import RunNotFound

routes = APIRouter()


@routes.get("/runs", response_model=None)
async def list_runs(
    svc: Svc,
    caller: Reader,
    pipeline: str | None = None,
    status: str | None = None,
    limit: str | None = None,
    since: str | None = None,
    trigger: str | None = None,
    offset: str | None = None,
    view: str | None = None,
) -> list[RunRecord] | list[RunSummary]:
    """Newest first. `since` (90s, 30m, 2h, 7d): created in that window; `trigger`: started by an event of
    that type (dev.knflow.webhook, ...); `offset`: skip that many (paging); `view=summary`: the short view
    of router/views.py (no outputs), as the dashboard lists them."""
    window = params.since_s(since)
    found = await svc.router.store.list_runs(
        pipeline=pipeline,
        status=params.run_status(status),
        limit=params.limit(limit, default=50),
        since=iso_before(window) if window is not None else None,
        trigger=params.text({"trigger": trigger}, "trigger"),
        offset=params.offset(offset),
    )
    if params.choice(view, "view", ("record", "summary"), "record") == "summary":
        return [run_summary(r) for r in found]
    return [record(r) for r in found]


@routes.get("/runs/counts")
async def count_runs(svc: Svc, caller: Reader, since: str | None = None) -> dict:
    """How many runs were created in the last `since` (default 1h), by status and by pipeline and status."""
    window = params.since_s(since or "1h") or 0.0
    cutoff = iso_before(window)
    return {"since": cutoff, **counts_by_status(await svc.router.store.count_runs(since=cutoff))}


@routes.get("/runs/{run_id}", response_model=None)
async def get_run(run_id: str, svc: Svc, caller: Reader) -> RunRecord:
    run = await svc.router.store.get_run(run_id)
    if run is None:
        raise RunNotFound(f"run '{run_id}' not found", run_id=run_id)
    return record(run)


@routes.get("/runs/{run_id}/nodes/{node}")
async def get_node(run_id: str, node: str, svc: Svc, caller: Reader) -> dict:
    """One node's (or fan-out item's, `gen[2]`) whole state, and the inputs its invoke renders to from the run
    as it is now (None while what they read is not there yet, with the reason in `inputs_error`)."""
    run = await svc.router.store.get_run(run_id)
    if run is None:
        raise RunNotFound(f"run '{run_id}' not found", run_id=run_id)
    return await node_view(svc, run, node)


@routes.post("/runs/{run_id}/replay", status_code=202, response_model=None, openapi_extra=openapi.RUN_REPLAY)
async def replay_run(run_id: str, request: Request, svc: Svc, caller: Operator) -> RunRecord:
    body = await svc.json_body(request)
    if params.flag(body, "new_run"):
        run = await svc.router.rerun(run_id, by(caller, body), **edited_data(body))
    else:
        run = await svc.router.redrive(run_id, params.text(body, "from"), by(caller, body))
    return await full_record(svc, run)


@routes.post("/runs/{run_id}/cancel", response_model=None, openapi_extra=openapi.RUN_CANCEL)
async def cancel_run(run_id: str, request: Request, svc: Svc, caller: Operator) -> RunRecord:
    body = await svc.json_body(request)
    return await full_record(svc, await svc.router.cancel(run_id, by(caller, body)))


async def full_record(svc: Svc, run: RunDoc) -> RunRecord:
    """The record of a run the router just changed, with its fan-out nodes' items (the router's own copy of
    it has their counters only: router/runs.py `light`)."""
    if not fan_nodes(run):
        return record(run)
    return record(await svc.router.store.get_run(run["id"]) or run)


@routes.post("/replay", status_code=202, openapi_extra=openapi.BULK_REPLAY)
async def replay_many(request: Request, svc: Svc, caller: Operator) -> dict:
    body = await svc.json_body(request)
    report = await svc.router.replay_many(
        params.text(body, "pipeline"),
        params.run_status(body.get("status", "failed")),
        params.since_s(body.get("since")),
        params.flag(body, "new_run"),
        by(caller, body),
        params.limit(body.get("limit")),
    )
    return {"runs": report}


def edited_data(body: dict) -> dict:
    """A re-run's `data`, when the body gives one: the trigger event's data, edited (no blob references)."""
    if "data" not in body:
        return {}
    refuse_blob_refs(body["data"], "parameter 'data'")
    return {"data": body["data"]}


def by(caller: Caller, body: dict) -> str | None:
    """Who acts, for the run's history: the token's name; the body's `by` only when no token named anyone."""
    return caller.name if caller.identified else params.text(body, "by")
