"""Runs: `GET /runs`, `GET /runs/{id}`, and what changes them: `POST /runs/{id}/replay` (redrive in place,
or re-run as a new run), `POST /runs/{id}/cancel`, and the bulk `POST /replay`.

A run record (`router.runs.record`) goes out as it is: `response_model=None`, so that FastAPI does not
validate the `RunRecord` type, which describes it for the type checker only.

Reading needs scope `read`; replay and cancel `operate`, and their history records the token's name as
`by` (a `by` in the body counts only on an open router, where no token names the caller)."""

from __future__ import annotations

from fastapi import APIRouter, Request

from router.runs import RunDoc, RunRecord, fan_nodes, record
import router.service.params as params
import router.service.openapi as openapi
from router.service.auth import Caller, Operator, Reader
from router.service.context import Svc
from router.store.base import RunNotFound

routes = APIRouter()


@routes.get("/runs", response_model=None)
async def list_runs(
    svc: Svc, caller: Reader, pipeline: str | None = None, status: str | None = None, limit: str | None = None
) -> list[RunRecord]:
    found = await svc.router.store.list_runs(
        pipeline=pipeline, status=params.run_status(status), limit=params.limit(limit, default=50)
    )
    return [record(r) for r in found]


@routes.get("/runs/{run_id}", response_model=None)
async def get_run(run_id: str, svc: Svc, caller: Reader) -> RunRecord:
    run = await svc.router.store.get_run(run_id)
    if run is None:
        raise RunNotFound(f"run '{run_id}' not found", run_id=run_id)
    return record(run)


@routes.post("/runs/{run_id}/replay", status_code=202, response_model=None, openapi_extra=openapi.RUN_REPLAY)
async def replay_run(run_id: str, request: Request, svc: Svc, caller: Operator) -> RunRecord:
    body = await svc.json_body(request)
    if params.flag(body, "new_run"):
        run = await svc.router.rerun(run_id, by(caller, body))
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


def by(caller: Caller, body: dict) -> str | None:
    """Who acts, for the run's history: the token's name; the body's `by` only when no token named anyone."""
    return caller.name if caller.identified else params.text(body, "by")
