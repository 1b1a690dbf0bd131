"""CloudEvents in: `POST /events` (results advance runs, other events start the runs their triggers
match), `POST /dead-letter` (invokes whose retries ran out) and `POST /events/replay`."""

from __future__ import annotations

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import Response

from broker import codec, events
from broker import extensions as ext
from broker.errors import InvalidEvent
from router.replay import parse_duration_s
from router.service.context import Svc, accepted
from router.triggers import pipelines_for

log = structlog.get_logger("knflow.router")
routes = APIRouter()


@routes.post("/events", status_code=202)
async def post_event(request: Request, svc: Svc) -> Response:
    event = codec.decode(request.headers, await svc.read_body(request), svc.max_body_bytes)
    if event.get_type() in events.RESULT_TYPES:
        if refusal := await svc.router.take_result(event):
            raise refusal  # 403, logged and counted: a forged result is not retried by a Knative broker
        return accepted(request, {"id": event.get_id(), "runs": [str(event.get_extension(ext.RUN))]})
    if event.get_type() == events.INVOKE:
        raise InvalidEvent("the router does not take dev.knflow.invoke events; send them to the function's service")
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


@routes.post("/events/replay", status_code=202)
async def replay_events(request: Request, svc: Svc) -> dict:
    body = await svc.json_body(request)
    if not body.get("since"):
        raise InvalidEvent('event replay needs \'since\', e.g. {"since": "2h"}')
    report = await svc.router.replay_events(await svc.catalog.all(), parse_duration_s(body["since"]), body.get("type"))
    return {"events": report}


@routes.post("/dead-letter", status_code=202)
async def dead_letter(request: Request, svc: Svc) -> Response:
    event = codec.decode(request.headers, await svc.read_body(request), svc.max_body_bytes)
    if refusal := await svc.router.take_dead_letter(event):
        raise refusal
    return accepted(request, {"id": event.get_id(), "runs": [str(event.get_extension(ext.RUN))]})
