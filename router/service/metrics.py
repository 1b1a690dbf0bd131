"""`GET /metrics` (Prometheus' text format) and the middleware that counts every request by route and code.

Who may scrape: a token with scope `read`, or the scrape token (`KNFLOW_METRICS_TOKEN`, the one a function
service and a dispatcher take too, so that one Prometheus credentials file serves them all). A broker-ingress
router serves /metrics as well (it applies the results on Knative), with the same check.

`knflow_runs_in_flight` is read from the store at each scrape (runs `running`, by pipeline; 0 for a pipeline of
the catalog with none), so it is right however many routers started and finished the runs, and restarts do not
skew it; every router reports the same number (aggregate with `max`, not `sum`).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from broker import metrics
from router.service.context import Svc

routes = APIRouter()
WEBHOOK_ROUTE = "/hooks/{name}"
OPENAPI = {"responses": {"200": {"description": "Prometheus text format", "content": {"text/plain": {"schema": {}}}}}}


@routes.get("/metrics", openapi_extra=OPENAPI, response_class=Response)
async def scrape(request: Request, svc: Svc) -> Response:
    if not metrics.token_matches(request.headers.get("authorization"), svc.metrics_token):
        await svc.auth.caller(request, "read")
    if metrics.enabled():  # every pipeline the catalog knows, 0 when none of its runs is running
        known = dict.fromkeys((p.name for p in await svc.catalog.all()), 0)
        running = await svc.router.store.count_runs(status="running")
        metrics.set_runs_in_flight(known | {c["pipeline"]: c["count"] for c in running})
    return Response(metrics.exposition_text(), media_type=metrics.CONTENT_TYPE)


class RequestMetrics:
    """ASGI middleware: knflow_http_requests_total{route,code} by the route's template (`/runs/{run_id}`,
    never the path), `unmatched` when no route took it; webhooks also by pipeline (the handler names it in
    `request.state.pipeline` once it knows the pipeline exists)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not metrics.enabled():
            await self.app(scope, receive, send)
            return
        code = 500  # an exception that escapes every handler answers 500

        async def send_status(message: dict[str, Any]) -> None:
            nonlocal code
            if message["type"] == "http.response.start":
                code = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            pipeline = (scope.get("state") or {}).get("pipeline", "") if route == WEBHOOK_ROUTE else None
            metrics.http_request(route, code, pipeline)
