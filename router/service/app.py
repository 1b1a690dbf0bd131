"""The app factory: the routes of ingress.py, events.py, hooks.py, streams.py, runs.py, logs.py, pipelines.py,
functions.py and tokens.py over one `Service`, and the dashboard at /ui (ui.py);
or, for a broker-ingress router, only /events, /dead-letter and /healthz (ingress.py's `broker_routes`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from broker.codec import MAX_BODY_BYTES
from broker.errors import KnflowError
from router.catalog import StorePipelines
from router.router import Router
from router.service.hooks import routes as hook_routes
from router.service.ingress import FAST_ROUTES, broker_routes
from router.service.ingress import routes as ingress_routes
from router.service.logs import routes as log_routes
from router.service.metrics import RequestMetrics
from router.service.metrics import routes as metrics_routes
from router.service.pipelines import routes as pipeline_routes
from router.service.functions import routes as function_routes
from router.service.events import routes as event_routes
from router.service.runs import routes as run_routes
from router.service.streams import routes as stream_routes
from router.service.ui import mount_ui
from router.service.tokens import routes as token_routes
from router.service.auth import Auth
from router.service.context import Service
from router.service.errors import RETRY_AFTER, STORE_UNREACHABLE, knflow_error, store_unreachable
from router.service.openapi import ERROR_RESPONSES

NOT_SERVED = (
    "not served by the router's broker ingress, which takes only POST /events and POST /dead-letter from "
    "Knative's broker (and GET /metrics); the API and webhooks are on the public router Service"
)


async def not_served(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"error": NOT_SERVED}, status_code=404)


def create_app(
    router: Router,
    catalog: StorePipelines,
    max_body_bytes: int = MAX_BODY_BYTES,
    webhook_secret: str | None = None,
    *,
    admin_token: str | None = None,
    open_api: bool = False,
    broker_ingress: bool = False,
    metrics_token: str | None = None,
    not_ready: Callable[[], str | None] | None = None,
) -> FastAPI:
    """The router's API. Every route but /healthz needs a bearer token (auth.py), unless `open_api`.

    `broker_ingress`: the cluster-local Service Knative's broker delivers to. It serves only POST /events,
    POST /dead-letter, /healthz and /metrics (every other path, the OpenAPI document included, is a 404), takes
    external events without a token, and still checks each result's and dead letter's `knflowtoken`; it
    knows no API token (`admin_token` and `open_api` must be left unset). `GET /metrics` (both kinds) takes a
    `read` token or `metrics_token` (KNFLOW_METRICS_TOKEN). `not_ready` (a NatsStack's) says why the broker
    is not usable yet: /healthz then answers 503 with that reason and a Retry-After."""
    if broker_ingress and (admin_token or open_api):
        raise ValueError("a broker-ingress router serves no API: it takes no admin token and cannot be open")
    app = FastAPI(
        title="knflow router" + (" (broker ingress)" if broker_ingress else ""),
        docs_url=None,
        redoc_url=None,
        openapi_url=None if broker_ingress else "/openapi.json",
        responses=ERROR_RESPONSES,
    )
    auth = Auth(router.store, admin_token, open_api)
    app.state.service = Service(router, catalog, auth, max_body_bytes, webhook_secret, broker_ingress, metrics_token)
    app.state.stop_streams = app.state.service.closing.set  # knflow.serve.serve_app calls it at shutdown
    app.add_exception_handler(KnflowError, knflow_error)
    for store_error in STORE_UNREACHABLE:
        app.add_exception_handler(store_error, store_unreachable)
    app.add_middleware(RequestMetrics)  # knflow_http_requests_total, knflow_webhook_requests_total

    @app.get("/healthz")
    async def healthz() -> Any:
        reason = not_ready() if not_ready is not None else None
        if reason:
            return JSONResponse({"status": "not ready", "reason": reason}, status_code=503, headers=RETRY_AFTER)
        return {"status": "ok"}

    app.include_router(broker_routes)
    app.include_router(metrics_routes)
    if broker_ingress:
        app.add_exception_handler(404, not_served)
        app.add_exception_handler(405, not_served)  # GET /events: the API's, not served here
    else:
        # streams before runs: /runs/stream is not a run id
        routes_ = (ingress_routes, event_routes, hook_routes, stream_routes, run_routes, log_routes, pipeline_routes)
        for routes in (*routes_, function_routes):
            app.include_router(routes)
        app.include_router(token_routes)
        mount_ui(app)
    app.router.routes[:0] = FAST_ROUTES  # matched first: POST /events and /dead-letter skip FastAPI's routing
    return app
