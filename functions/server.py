"""One function as an HTTP service on Knative's contract (`knflow serve function NAME`).

`POST /` takes a `dev.knflow.invoke` CloudEvent (binary or structured mode) and answers 200 with the
reply event in binary mode: `dev.knflow.node.succeeded`, or `dev.knflow.node.failed` for what a retry
cannot fix. A failure a retry may fix answers 503 with the error as JSON, and the broker retries.
A request that is not a valid invoke answers 400 naming the problem. `GET /healthz` answers 200.
With tracing on (broker/tracing.py), an invoke is handled under a span whose parent is the event's
`traceparent` extension, else the W3C `traceparent` header (Knative sends both).
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from collections.abc import AsyncIterator

from cloudevents.core.v1.event import CloudEvent
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from broker import codec, events, limits
from broker import extensions as ext
from broker import tracing
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


def error_response(exc: KnflowError) -> JSONResponse:
    return JSONResponse(error_body(exc), status_code=http_status(exc, FUNCTION_STATUSES))


def create_app(spec: FunctionSpec, max_body_bytes: int = MAX_BODY_BYTES, store: BlobStore | None = None) -> FastAPI:
    """The service; `store` is where large payloads go (default: KNFLOW_BLOB_URL, as the router reads it)."""

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
        if tracing.ON:  # a consumer span: the event's traceparent, else the W3C header's, is its parent
            with tracing.process(event, spec.name, "knative", headers=request.headers) as event:
                return await answer(event)
        return await answer(event)

    async def answer(event: CloudEvent) -> Response:
        try:
            reply = await handle_invoke(spec, event, source, store)
        except Retryable as exc:
            if tracing.ON:
                tracing.set_outcome(exc.code, exc.message.encode())
            return JSONResponse({"error": exc.error}, status_code=exc.code)
        headers, body = codec.encode_binary(reply)
        return Response(body, status_code=200, headers=headers)

    return app
