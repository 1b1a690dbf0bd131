"""One function as an HTTP service on Knative's contract (`knflow serve function NAME`).

`POST /` takes a `dev.knflow.invoke` CloudEvent (binary or structured mode) and answers 200 with the
reply event in binary mode: `dev.knflow.node.succeeded`, or `dev.knflow.node.failed` for what a retry
cannot fix. A failure a retry may fix answers 503 with the error as JSON, and the broker retries.
A request that is not a valid invoke answers 400 naming the problem. `GET /healthz` answers 200.

Node logs (functions/node_logs.py): what the function writes with `ctx.log`, and to stdout and stderr, during
an invoke is that try's lines; the reply's data carries them (`logs`), and so does the 503 body, for the
dispatcher to pass on. With `logs_sink` (Knative's broker, `K_SINK`: there the broker retries, and the body
of a failed try reaches nobody), a failed try's lines are published there as `dev.knflow.node.logs` instead.
With tracing on (broker/tracing.py), an invoke is handled under a span whose parent is the event's
`traceparent` extension, else the W3C `traceparent` header (Knative sends both).
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import TYPE_CHECKING
from collections.abc import AsyncIterator

import structlog
from cloudevents.core.v1.event import CloudEvent
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from broker import codec, events, limits, metrics
from broker import extensions as ext
from broker import tracing
from broker.codec import MAX_BODY_BYTES
from broker.errors import InvalidEvent, KnflowError
from broker.http_errors import BROKER_STATUSES, Statuses, error_body, http_status
from functions import node_logs
from functions.blobs import BlobError, BlobStore
from functions.errors import UnknownFunction
from functions.handler import Retryable, handle_invoke
from functions.registry import close_builtin_clients
from functions.sdk import FunctionSpec

if TYPE_CHECKING:
    from broker.http_publisher import HttpPublisher

log = structlog.get_logger("knflow.function")

# the HTTP status of each error a function service answers with (the router's map extends this one)
FUNCTION_STATUSES: Statuses = {**BROKER_STATUSES, UnknownFunction: 404, BlobError: 502, Retryable: 503}


def metrics_response(authorization: str | None, token: str | None) -> Response:
    """`GET /metrics` of a service without a token store: the scrape token, when one is set, else open."""
    if token and not metrics.token_matches(authorization, token):
        return JSONResponse({"error": metrics.SCRAPE_REFUSED}, status_code=401)
    return Response(metrics.exposition_text(), media_type=metrics.CONTENT_TYPE)


def error_response(exc: KnflowError) -> JSONResponse:
    return JSONResponse(error_body(exc), status_code=http_status(exc, FUNCTION_STATUSES))


async def _knflow_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, KnflowError)  # registered for KnflowError only
    return error_response(exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    """An unknown path or method: `{"detail": ...}`, as FastAPI answers it."""
    assert isinstance(exc, HTTPException)  # registered for HTTPException only
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)


def create_app(
    spec: FunctionSpec,
    max_body_bytes: int = MAX_BODY_BYTES,
    store: BlobStore | None = None,
    logs_sink: str | None = None,
    metrics_token: str | None = None,
) -> Starlette:
    """The service; `store` is where large payloads go (default: KNFLOW_BLOB_URL, as the router reads it);
    `logs_sink` where a failed try's node log lines go (None: in the 503 body).
    `GET /metrics` takes `metrics_token` (KNFLOW_METRICS_TOKEN) as a bearer token; without one it is open,
    as `POST /` is (on Knative a function is cluster-local).

    A Starlette app, not a FastAPI one: three routes need no request models or OpenAPI, and FastAPI's import
    was a third of a cold start (scale from zero pays it on every new pod). An unknown path or method
    answers as FastAPI did, `{"detail": ...}` with 404 or 405."""
    sink: HttpPublisher | None = None
    if logs_sink:
        from broker.http_publisher import HttpPublisher  # aiohttp: only a service with a K_SINK loads it

        sink = HttpPublisher(logs_sink, timeout_s=5.0, max_connections=4)
    source = f"/knflow/functions/{spec.name}"

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        with node_logs.capture_streams():
            yield
        await close_builtin_clients()
        if sink is not None:
            await sink.close()

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok", "function": spec.name})

    async def metrics_text(request: Request) -> Response:
        return metrics_response(request.headers.get("authorization"), metrics_token)

    async def invoke(request: Request) -> Response:
        body = await limits.read_body(request.stream(), max_body_bytes, request.headers.get("content-length"))
        event = _invoke_for(spec, codec.decode(request.headers, body, max_body_bytes))
        if tracing.ON:  # a consumer span: the event's traceparent, else the W3C header's, is its parent
            with tracing.process(event, spec.name, "knative", headers=request.headers) as event:
                return await answer(event)
        return await answer(event)

    async def answer(event: CloudEvent) -> Response:
        with metrics.Invocation(spec.name) as call:  # knflow_function_*: status retryable unless set
            try:
                reply = await handle_invoke(spec, event, source, store, streams=True)
            except Retryable as exc:
                if tracing.ON:
                    tracing.set_outcome(exc.code, exc.message.encode())
                if sink is not None and exc.logs is not None:
                    await publish_logs(sink, events.logs_event(event, exc.logs, source))
                    return JSONResponse(exc.body(with_logs=False), status_code=exc.code)
                return JSONResponse(exc.body(), status_code=exc.code)
            call.status = "succeeded" if reply.get_type() == events.NODE_SUCCEEDED else "failed"
        headers, body = codec.encode_binary(reply)
        return Response(body, status_code=200, headers=headers)

    routes = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/metrics", metrics_text, methods=["GET"]),
        Route("/", invoke, methods=["POST"]),
    ]
    return Starlette(
        routes=routes, lifespan=lifespan, exception_handlers={KnflowError: _knflow_error, HTTPException: _http_error}
    )


def _invoke_for(spec: FunctionSpec, event: CloudEvent) -> CloudEvent:
    """`event`, if it is an invoke of this service's function; else InvalidEvent (400) naming the header."""
    if event.get_type() != events.INVOKE:
        raise InvalidEvent(
            f"expected a CloudEvent of type '{events.INVOKE}', got '{event.get_type()}' (header ce-type)"
        )
    fn = event.get_extension(ext.FUNCTION)
    if fn is not None and fn != spec.name:
        raise InvalidEvent(
            f"this service runs function '{spec.name}', but the event asks for '{fn}' (header ce-{ext.FUNCTION})"
        )
    return event


async def publish_logs(sink: HttpPublisher, event: CloudEvent) -> None:
    """A failed try's lines to the broker; when it does not take them, the service's own log says so."""
    try:
        await sink.publish(event)
    except KnflowError as exc:
        log.error("node log lines of a failed try not published", event_id=event.get_id(), error=str(exc))
