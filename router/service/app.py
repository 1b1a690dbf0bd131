"""The app factory: the routes of ingress.py, hooks.py, runs.py, pipelines.py and tokens.py over one `Service`."""

from __future__ import annotations

from fastapi import FastAPI

from broker.codec import MAX_BODY_BYTES
from broker.errors import KnflowError
from router.catalog import StorePipelines
from router.router import Router
from router.service.hooks import routes as hook_routes
from router.service.ingress import routes as ingress_routes
from router.service.pipelines import routes as pipeline_routes
from router.service.runs import routes as run_routes
from router.service.tokens import routes as token_routes
from router.service.auth import Auth
from router.service.context import Service
from router.service.errors import knflow_error
from router.service.openapi import ERROR_RESPONSES


def create_app(
    router: Router,
    catalog: StorePipelines,
    max_body_bytes: int = MAX_BODY_BYTES,
    webhook_secret: str | None = None,
    *,
    admin_token: str | None = None,
    open_api: bool = False,
) -> FastAPI:
    """The router's API. Every route but /healthz needs a bearer token (auth.py), unless `open_api`."""
    app = FastAPI(title="knflow router", docs_url=None, redoc_url=None, responses=ERROR_RESPONSES)
    auth = Auth(router.store, admin_token, open_api)
    app.state.service = Service(router, catalog, auth, max_body_bytes, webhook_secret)
    app.add_exception_handler(KnflowError, knflow_error)

    @app.get("/healthz")
    async def healthz() -> dict:
        return {"status": "ok"}

    for routes in (ingress_routes, hook_routes, run_routes, pipeline_routes, token_routes):
        app.include_router(routes)
    return app
