"""`GET /events` (scope `read`): the CloudEvents the router received in a window and the dead letters it
took, newest first, for the dashboard's Events page. They are read from the broker's event log (NATS
JetStream, broker/event_log.py); a router without one (the in-memory broker, Knative's broker) says so
with `kept: false`. Each external event names the runs it started (their ids are derived from the event);
no dead letter carries its `knflowtoken`."""

from __future__ import annotations

import asyncio
from typing import Any, Final

from fastapi import APIRouter

from broker import events as ev
from broker import extensions as ext
import router.service.params as params
from router.service.auth import Reader
from router.service.context import Svc
from router.triggers import pipelines_for, run_id_for

routes = APIRouter()
MAX_EVENTS: Final = 1000  # read per kind and window; `truncated` says when the window held more
IDLE_S: Final = 0.3


@routes.get("/events")
async def list_events(svc: Svc, caller: Reader, since: str | None = None, limit: str | None = None) -> dict:
    """External events and dead letters of the last `since` (default 1h), newest first, at most `limit` of
    each (default 100)."""
    window = params.since_s(since or "1h") or 0.0
    most = params.limit(limit, default=100)
    log = svc.router.event_log
    if log is None:
        return {"kept": False, "since": None, "events": [], "dead_letters": [], "truncated": False}
    from broker.event_log import since_from_seconds  # nats-py, only where there is an event log

    start = since_from_seconds(window)
    received, dead = await asyncio.gather(
        log.read(start, None, MAX_EVENTS, kind="ext", idle_s=IDLE_S),
        log.read(start, None, MAX_EVENTS, kind="dead", idle_s=IDLE_S),
    )
    pipelines = await svc.catalog.all()
    shown = []
    for event in reversed(received[-most:]):
        attributes = ev.event_to_dict(event)
        runs = [run_id_for(p.name, event.get_source(), event.get_id()) for p in pipelines_for(pipelines, attributes)]
        shown.append({"attributes": _attributes(attributes), "data": attributes.get("data"), "runs": runs})
    letters = [_dead_letter(event) for event in reversed(dead[-most:])]
    return {
        "kept": True,
        "since": start.isoformat().replace("+00:00", "Z"),
        "events": shown,
        "dead_letters": letters,
        "truncated": len(received) >= MAX_EVENTS or len(dead) >= MAX_EVENTS,
    }


def _attributes(attributes: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in attributes.items() if k not in ("data", ext.TOKEN)}


def _dead_letter(event: Any) -> dict[str, Any]:
    from router.router import dead_letter_reason

    code, reason, error, _times = dead_letter_reason(event)
    attributes = _attributes(ev.event_to_dict(event))
    return {
        "attributes": attributes,
        "run": attributes.get(ext.RUN),
        "node": attributes.get(ext.NODE),
        "function": attributes.get(ext.FUNCTION),
        "code": code,
        "reason": reason,
        "error": error,
    }
