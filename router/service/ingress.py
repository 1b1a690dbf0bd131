"""CloudEvents in: `POST /events` (results advance runs, other events start the runs their triggers
match), `POST /dead-letter` (invokes whose retries ran out) and `POST /events/replay`.

An event that starts runs needs a token with scope `run`, an event replay `operate`. Node results and
dead letters come from knflow's own functions and dispatchers, and are checked by their own means.

`broker_routes` (/events and /dead-letter) are also all that a broker-ingress router serves
(`knflow serve router --broker-ingress`, `Service.broker_ingress`): the cluster-local Service that Knative's
Triggers and PingSources deliver to, which cannot send a token. There an external event is taken without
one, its trust resting on the cluster network; results and dead letters still need their `knflowtoken`.

`FAST_ROUTES` serve POST /events and /dead-letter ahead of FastAPI's routes (app.py puts them first): the
same handlers, called as plain Starlette endpoints, without FastAPI's dependency solving per request, on
the path every node result takes (bench/PROFILE.md, the `knative` mode). The FastAPI routes stay for the
OpenAPI document; the app's exception handlers and middleware apply to both alike."""

from __future__ import annotations

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.routing import Match, Route
from starlette.types import Scope

from broker import codec, events
from broker import extensions as ext
from broker import tracing
from broker.errors import InvalidEvent
import router.service.params as params
import router.service.openapi as openapi
from functions.blobs import refuse_blob_refs
from router.service.auth import Operator
from router.service.context import Svc, accepted
from router.triggers import pipelines_for

log = structlog.get_logger("knflow.router")
routes = APIRouter()
broker_routes = APIRouter()


@broker_routes.post("/events", status_code=202, openapi_extra=openapi.EVENT)
async def post_event(request: Request, svc: Svc) -> Response:
    event = codec.decode(request.headers, await svc.read_body(request), svc.max_body_bytes)
    if event.get_type() in events.RESULT_TYPES:
        if tracing.ON:  # a consumer span: the event's traceparent, else the W3C header's, is its parent
            with tracing.process(event, "router", "knative", headers=request.headers):
                refusal = await svc.router.take_result(event)
        else:
            refusal = await svc.router.take_result(event)
        if refusal:
            raise refusal  # 403, logged and counted: a forged result is not retried by a Knative broker
        return accepted(request, {"id": event.get_id(), "runs": [str(event.get_extension(ext.RUN))]})
    if not svc.broker_ingress:
        await svc.auth.caller(request, "run")  # an external event: it starts runs
    if event.get_type() == events.INVOKE:
        raise InvalidEvent("the router does not take dev.knflow.invoke events; send them to the function's service")
    if isinstance(event.get_data(), (bytes, bytearray)):  # a run's trigger is stored as JSON
        media = event.get_attributes().get("datacontenttype")
        raise InvalidEvent(
            f"event '{event.get_id()}' data is binary (Content-Type {media!r}); a run's trigger takes JSON or "
            "text data: send JSON, text/*, or the bytes base64-encoded in JSON",
            field="data",
        )
    refuse_blob_refs(event.get_data(), f"event '{event.get_id()}' data")
    matched = pipelines_for(await svc.catalog.all(), events.event_to_dict(event))
    runs = await svc.router.ingest(event, matched)
    if not matched:
        log.info(
            "event matched no pipeline trigger",
            event_id=event.get_id(),
            type=event.get_type(),
            source=event.get_source(),
        )
    return accepted(request, {"id": event.get_id(), "runs": runs})


@routes.post("/events/replay", status_code=202, openapi_extra=openapi.EVENT_REPLAY)
async def replay_events(request: Request, svc: Svc, caller: Operator) -> dict:
    body = await svc.json_body(request)
    since = params.since_s(params.text(body, "since", required=True, example='{"since": "2h"}'))
    event_type = params.text(body, "type")
    report = await svc.router.replay_events(await svc.catalog.all(), since or 0.0, event_type)
    return {"events": report}


@broker_routes.post("/dead-letter", status_code=202, openapi_extra=openapi.EVENT)
async def dead_letter(request: Request, svc: Svc) -> Response:
    event = codec.decode(request.headers, await svc.read_body(request), svc.max_body_bytes)
    if tracing.ON:
        with tracing.process(event, "router", "knative", headers=request.headers):
            refusal = await svc.router.take_dead_letter(event)
    else:
        refusal = await svc.router.take_dead_letter(event)
    if refusal:
        raise refusal
    return accepted(request, {"id": event.get_id(), "runs": [str(event.get_extension(ext.RUN))]})


async def _post_event(request: Request) -> Response:
    return await post_event(request, request.app.state.service)


async def _dead_letter(request: Request) -> Response:
    return await dead_letter(request, request.app.state.service)


class _FastRoute(Route):
    """A Starlette route that names itself in `scope["route"]`, as FastAPI's do: FastAPI's router sets it for
    its own routes only, and the request metrics label a request by it (metrics.py, else `unmatched`)."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child_scope = super().matches(scope)
        if match != Match.NONE:
            child_scope["route"] = self
        return match, child_scope


FAST_ROUTES = (
    _FastRoute("/events", _post_event, methods=["POST"]),
    _FastRoute("/dead-letter", _dead_letter, methods=["POST"]),
)
