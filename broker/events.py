"""knflow's CloudEvents: types, extension attributes, deterministic ids, and reading them back.

Invoke ids are `{run}:{node}:{attempt}` so that JetStream (Nats-Msg-Id) and the router recognise a
duplicate; a result's id is derived from its invoke's id.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, UTC
from typing import Any, NotRequired, TypedDict

from cloudevents.core.exceptions import CloudEventValidationError
from cloudevents.core.v1.event import CloudEvent

from broker import extensions as ext
from broker.codec import trusted_event
from broker.errors import InvalidEvent
from broker.retry import Retry

INVOKE = "dev.knflow.invoke"
NODE_SUCCEEDED = "dev.knflow.node.succeeded"
NODE_FAILED = "dev.knflow.node.failed"
NODE_LOGS = "dev.knflow.node.logs"  # a failed try's node log lines, which no reply carries (functions/node_logs.py)
RESULT_TYPES = (NODE_SUCCEEDED, NODE_FAILED, NODE_LOGS)  # what the functions' side sends the router
RUN_PREFIX = "dev.knflow.run."
RUN_STARTED, RUN_SUCCEEDED, RUN_FAILED, RUN_CANCELLED = (
    RUN_PREFIX + s for s in ("started", "succeeded", "failed", "cancelled")
)
ROUTER_SOURCE = "/knflow/router"
JSON = "application/json"


class ErrorDoc(TypedDict):
    """Why a node, an item or a run failed: the `error` of a `node.failed` reply (`error_doc`), as the run
    document keeps it. A function's reply is stored as it came: knflow's functions send `type`, `message`
    and `detail`."""

    type: str
    message: str
    detail: NotRequired[Any]  # absent from some replies (a dead-letter body needs only `type` and `message`)
    node: NotRequired[str]  # on a run's error: the node that failed first
    http_status: NotRequired[int]  # from a dead letter: the HTTP status of the last delivery


def error_doc(type_: str, message: str, detail: Any = None) -> ErrorDoc:
    """An error document: `{"type", "message", "detail"}`."""
    return {"type": type_, "message": message, "detail": detail}


_now_ms, _now_text = -1, ""  # the last millisecond formatted: a busy router asks many times in one


def now_iso() -> str:
    """UTC now as ISO-8601 with milliseconds and a Z: the one time format of run records and events."""
    global _now_ms, _now_text
    ms = time.time_ns() // 1_000_000
    if ms != _now_ms:
        then = datetime.fromtimestamp(ms // 1000, UTC).replace(microsecond=ms % 1000 * 1000)
        _now_ms, _now_text = ms, then.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return _now_text


def invoke_id(run_id: str, node: str, attempt: int) -> str:
    return f"{run_id}:{node}:{attempt}"


def make_event(attributes: dict[str, Any], data: Any = None) -> CloudEvent:
    """A CloudEvent from a copy of `attributes` (the SDK's constructor mutates the dict it gets)."""
    try:
        return CloudEvent(dict(attributes), data)
    except CloudEventValidationError as exc:
        raise InvalidEvent(
            f"cannot build CloudEvent '{attributes.get('id')}': {exc}", event_id=attributes.get("id")
        ) from None


def _own(attributes: dict[str, Any], data: Any) -> CloudEvent:
    """One of knflow's own events, valid by construction (its type, source, id and subject are non-empty
    strings, its extension names fixed): built without the SDK's checks, which cost as much as sending it."""
    if not attributes["id"] or not attributes["source"] or attributes.get("subject") == "":
        return make_event(attributes, data)  # let the SDK name the problem
    return trusted_event(attributes, data)


def with_delivery(event: CloudEvent, delivery: int) -> CloudEvent:
    """`event` as delivered for the `delivery`-th time (the same id: a retry, not a new event). A result
    (`dev.knflow.node.*`) is returned as it is: its knflowdelivery counts its invoke's deliveries, which the
    router counts the node's tries by, not the result's own redeliveries (a store that was down)."""
    if delivery <= 1 or event.get_type() in RESULT_TYPES:
        return event
    return trusted_event({**event.get_attributes(), ext.DELIVERY: str(delivery)}, event.get_data())


def invoke_event(
    *,
    run_id: str,
    pipeline: str,
    node: str,
    attempt: int,
    function: str,
    inputs: Any,
    config: Any,
    traceparent: str | None = None,
    retry: Retry | None = None,
    timeout_s: float | None = None,
    token: str | None = None,
) -> CloudEvent:
    """`retry` and `timeout_s` are the node's own overrides of its function's (knflowretry, knflowtimeout);
    `token` is the invoke's result secret (knflowtoken, router/result_keys.py), which its result carries back."""
    attrs = {
        "type": INVOKE,
        "source": ROUTER_SOURCE,
        "id": invoke_id(run_id, node, attempt),
        "subject": node,
        "datacontenttype": JSON,
        ext.FUNCTION: function,
        ext.RUN: run_id,
        ext.NODE: node,
        ext.ATTEMPT: str(attempt),
        ext.PIPELINE: pipeline,
    }
    if traceparent:
        attrs[ext.TRACEPARENT] = traceparent
    if retry is not None:
        attrs[ext.RETRY] = retry.extension_value()
    if timeout_s:
        attrs[ext.TIMEOUT] = f"{timeout_s:g}"
    if token:
        attrs[ext.TOKEN] = token
    return _own(attrs, {"inputs": inputs, "config": config})


_RESULT_CARRIES = (
    ext.RUN,
    ext.NODE,
    ext.ATTEMPT,
    ext.PIPELINE,
    ext.FUNCTION,
    ext.DELIVERY,
    ext.TOKEN,
    *ext.TRACE_CONTEXT,
)


def result_event(invoke: CloudEvent, *, succeeded: bool, data: dict[str, Any], source: str) -> CloudEvent:
    """The function's reply to `invoke`: `node.succeeded` with `{"output"...}` or `node.failed` with `{"error"...}`;
    it carries the invoke's address and its `knflowtoken` back, so the router knows who sent it."""
    kind = NODE_SUCCEEDED if succeeded else NODE_FAILED
    return _own(_reply_attributes(invoke, kind, f"{invoke.get_id()}:{'ok' if succeeded else 'failed'}", source), data)


def logs_event(invoke: CloudEvent, logs: dict[str, Any], source: str) -> CloudEvent:
    """`node.logs`: the node log lines of a try of `invoke` that failed with no reply (a retry follows, or a
    dead letter), data `{"logs": ...}`; like a reply it carries the invoke's address and `knflowtoken`."""
    return _own(
        _reply_attributes(invoke, NODE_LOGS, f"{invoke.get_id()}:logs:{logs.get('batch')}", source), {"logs": logs}
    )


def _reply_attributes(invoke: CloudEvent, kind: str, event_id: str, source: str) -> dict[str, Any]:
    attrs = {"type": kind, "source": source, "id": event_id, "datacontenttype": JSON}
    if subject := invoke.get_subject():
        attrs["subject"] = subject
    for key in _RESULT_CARRIES:
        value = invoke.get_extension(key)
        if value is not None:
            attrs[key] = value
    return attrs


def run_event(
    kind_type: str, run_id: str, pipeline: str, data: dict[str, Any], generation: int = 0, hops: int = 1
) -> CloudEvent:
    """`generation` counts the run's replays, so a redriven run's second ending is not a duplicate;
    `hops` (knflowhops) lets a router refuse pipelines that start each other in a loop."""
    suffix = f":{generation}" if generation else ""
    return _own(
        {
            "type": kind_type,
            "source": ROUTER_SOURCE,
            "id": f"{run_id}:{kind_type.removeprefix(RUN_PREFIX)}{suffix}",
            "subject": run_id,
            "datacontenttype": JSON,
            ext.RUN: run_id,
            ext.PIPELINE: pipeline,
            ext.HOPS: str(hops),
        },
        data,
    )


@dataclass(frozen=True)
class Address:
    """Where an invoke or a result belongs: run, node, attempt, pipeline, function; `delivery` counts
    the broker's deliveries of this attempt's invoke (retries), so the try is `attempt + delivery - 1`."""

    run_id: str
    node: str
    attempt: int
    pipeline: str
    function: str | None
    delivery: int = 1

    @property
    def tries(self) -> int:
        return self.attempt + self.delivery - 1


def address(event: CloudEvent) -> Address:
    """Read knflow's extension attributes, naming the one that is missing or malformed."""
    missing = [k for k in (ext.RUN, ext.NODE, ext.ATTEMPT) if not event.get_extension(k)]
    if missing:
        raise InvalidEvent(
            f"event '{event.get_id()}' of type '{event.get_type()}' lacks extension attribute(s) "
            f"{', '.join(missing)} (headers ce-{', ce-'.join(missing)})",
            event_id=event.get_id(),
        )
    raw_attempt = event.get_extension(ext.ATTEMPT)
    try:
        attempt = int(raw_attempt)
    except (TypeError, ValueError):
        raise InvalidEvent(
            f"event '{event.get_id()}': {ext.ATTEMPT} has value {raw_attempt!r}. Not a valid int.",
            event_id=event.get_id(),
        ) from None
    raw_delivery = str(event.get_extension(ext.DELIVERY) or "1")
    return Address(
        delivery=int(raw_delivery) if raw_delivery.isdigit() and int(raw_delivery) > 0 else 1,
        run_id=str(event.get_extension(ext.RUN)),
        node=str(event.get_extension(ext.NODE)),
        attempt=attempt,
        pipeline=str(event.get_extension(ext.PIPELINE) or ""),
        function=event.get_extension(ext.FUNCTION),
    )


def event_to_dict(event: CloudEvent) -> dict[str, Any]:
    """The trigger event as templates and the store see it: attributes (time as ISO text) plus `data`."""
    out: dict[str, Any] = {}
    for key, value in event.get_attributes().items():
        out[key] = value.isoformat() if hasattr(value, "isoformat") else value
    out["data"] = event.get_data()
    return out
