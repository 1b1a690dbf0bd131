"""Node logs: `GET /runs/{id}/logs?node=&attempt=&after=&limit=` (scope `read`), the lines the run's nodes
wrote (router/node_logs.py), oldest first, from `after` on; follow a run by asking again with `next_after`."""

from __future__ import annotations

from fastapi import APIRouter

import router.service.openapi as openapi
import router.service.params as params
from router.node_logs import LogPage, page
from router.service.auth import Reader
from router.service.context import Svc
from router.store.base import RunNotFound

routes = APIRouter()


@routes.get("/runs/{run_id}/logs", response_model=None, openapi_extra=openapi.RUN_LOGS)
async def run_logs(
    run_id: str,
    svc: Svc,
    caller: Reader,
    node: str | None = None,
    attempt: str | None = None,
    after: str | None = None,
    limit: str | None = None,
) -> LogPage:
    node = params.text({"node": node}, "node")
    wanted_attempt = params.count(attempt, "attempt", minimum=1)
    since = params.count(after, "after") or 0
    most = params.limit(limit, default=params.MAX_LIST)
    if await svc.router.store.get_run(run_id) is None:
        raise RunNotFound(f"run '{run_id}' not found", run_id=run_id)
    lines, truncated = await svc.router.store.read_logs(run_id, node, wanted_attempt, since, most)
    return page(run_id, lines, truncated, since)
