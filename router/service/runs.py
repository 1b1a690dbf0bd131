"""Runs: `GET /runs`, `GET /runs/{id}`, and what changes them: `POST /runs/{id}/replay` (redrive in place,
or re-run as a new run), `POST /runs/{id}/cancel`, and the bulk `POST /replay`.

A run record (`router.runs.record`) goes out as it is: `response_model=None`, so that FastAPI does not
validate the `RunRecord` type, which describes it for the type checker only.

Reading needs scope `read`; replay and cancel `operate`, and their history records the token's name as
`by` (a `by` in the body counts only on an open router, where no token names the caller)."""

from __future__ import annotations

from fastapi import APIRouter, Request

from router.replay import parse_duration_s
from router.runs import RunRecord, record
from router.service.auth import Caller, Operator, Reader
from router.service.context import Svc
from router.store.base import RunNotFound

routes = APIRouter()


@routes.get("/runs", response_model=None)
async def list_runs(
    svc: Svc, caller: Reader, pipeline: str | None = None, status: str | None = None, limit: int = 50
) -> list[RunRecord]:
    found = await svc.router.store.list_runs(pipeline=pipeline, status=status, limit=max(1, min(limit, 1000)))
    return [record(r) for r in found]


@routes.get("/runs/{run_id}", response_model=None)
async def get_run(run_id: str, svc: Svc, caller: Reader) -> RunRecord:
    run = await svc.router.store.get_run(run_id)
    if run is None:
        raise RunNotFound(f"run '{run_id}' not found", run_id=run_id)
    return record(run)


@routes.post("/runs/{run_id}/replay", status_code=202, response_model=None)
async def replay_run(run_id: str, request: Request, svc: Svc, caller: Operator) -> RunRecord:
    body = await svc.json_body(request)
    if body.get("new_run"):
        run = await svc.router.rerun(run_id, by(caller, body))
    else:
        run = await svc.router.redrive(run_id, body.get("from"), by(caller, body))
    return record(run)


@routes.post("/runs/{run_id}/cancel", response_model=None)
async def cancel_run(run_id: str, request: Request, svc: Svc, caller: Operator) -> RunRecord:
    body = await svc.json_body(request)
    return record(await svc.router.cancel(run_id, by(caller, body)))


@routes.post("/replay", status_code=202)
async def replay_many(request: Request, svc: Svc, caller: Operator) -> dict:
    body = await svc.json_body(request)
    since = body.get("since")
    report = await svc.router.replay_many(
        body.get("pipeline"),
        body.get("status", "failed"),
        parse_duration_s(since) if since else None,
        bool(body.get("new_run")),
        by(caller, body),
        int(body.get("limit", 1000)),
    )
    return {"runs": report}


def by(caller: Caller, body: dict) -> str | None:
    """Who acts, for the run's history: the token's name; the body's `by` only when no token named anyone."""
    return caller.name if caller.identified else body.get("by")
