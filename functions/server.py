"""One function as an HTTP service on Knative's contract (`knflow serve function NAME`).

`POST /` takes a `dev.knflow.invoke` CloudEvent (binary or structured mode) and answers 200 with the
reply event in binary mode: `dev.knflow.node.succeeded`, or `dev.knflow.node.failed` for what a retry
cannot fix. A failure a retry may fix answers 503 with the error as JSON, and the broker retries.
A request that is not a valid invoke answers 400 naming the problem. `GET /healthz` answers 200.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from collections.abc import AsyncIterator

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from broker import codec, events, limits, metrics
from broker import extensions as ext
from broker.codec import MAX_BODY_BYTES
from broker.errors import InvalidEvent, KnflowError
from broker.http_errors import BROKER_STATUSES, Statuses, error_body, http_status
from functions.blobs import BlobError, BlobStore
from functions.errors import UnknownFunction
from functions.handler import Retryable, handle_invoke
from functions.registry import close_builtin_clients
from functions.sdk import FunctionSpec

# the HTTP status of each error a function service answers with (the router's map extends this one)
FUNCTION_STATUSES: Statuses = {**BROKER_STATUSES, UnknownFunction: 404, BlobError: 502, Retryable: 503}


def metrics_response(authorization: str | None, token: str | None) -> Response:
    """`GET /metrics` of a service without a token store: the scrape token, when one is set, else open."""
    if token and not metrics.token_matches(authorization, token):
        return JSONResponse({"error": metrics.SCRAPE_REFUSED}, status_code=401)
    return Response(metrics.exposition_text(), media_type=metrics.CONTENT_TYPE)


def error_response(exc: KnflowError) -> JSONResponse:
    return JSONResponse(error_body(exc), status_code=http_status(exc, FUNCTION_STATUSES))


def create_app(
    spec: FunctionSpec,
    max_body_bytes: int = MAX_BODY_BYTES,
    store: BlobStore | None = None,
    metrics_token: str | None = None,
) -> FastAPI:
    """The service; `store` is where large payloads go (default: KNFLOW_BLOB_URL, as the router reads it).
    `GET /metrics` takes `metrics_token` (KNFLOW_METRICS_TOKEN) as a bearer token; without one it is open,
    as `POST /` is (on Knative a function is cluster-local)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await close_builtin_clients()

    app = FastAPI(
        title=f"knflow function {spec.name}", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan
    )
    source = f"/knflow/functions/{spec.name}"

    @app.exception_handler(KnflowError)
    async def knflow_error(request: Request, exc: KnflowError) -> JSONResponse:
        return error_response(exc)

    @app.get("/healthz")
    async def healthz() -> dict:
        return {"status": "ok", "function": spec.name}

    @app.get("/metrics")
    async def metrics_text(request: Request) -> Response:
        return metrics_response(request.headers.get("authorization"), metrics_token)

    @app.post("/")
    async def invoke(request: Request) -> Response:
        body = await limits.read_body(request.stream(), max_body_bytes, request.headers.get("content-length"))
        event = codec.decode(request.headers, body, max_body_bytes)
        if event.get_type() != events.INVOKE:
            raise InvalidEvent(
                f"expected a CloudEvent of type '{events.INVOKE}', got '{event.get_type()}' (header ce-type)"
            )
        fn = event.get_extension(ext.FUNCTION)
        if fn is not None and fn != spec.name:
            raise InvalidEvent(
                f"this service runs function '{spec.name}', but the event asks for '{fn}' (header ce-{ext.FUNCTION})"
            )
        with metrics.Invocation(spec.name) as call:  # knflow_function_*: status retryable unless set
            try:
                reply = await handle_invoke(spec, event, source, store)
            except Retryable as exc:
                return JSONResponse({"error": exc.error}, status_code=exc.code)
            call.status = "succeeded" if reply.get_type() == events.NODE_SUCCEEDED else "failed"
        headers, body = codec.encode_binary(reply)
        return Response(body, status_code=200, headers=headers)

    return app
