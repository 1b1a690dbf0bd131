"""OpenTelemetry traces: the one module that touches OpenTelemetry, off unless `OTEL_*` says where spans go.

On when `OTEL_TRACES_EXPORTER` names an exporter (`otlp`, `console`; `none` is off) or an OTLP endpoint is
set (`OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`: then `otlp`), unless
`OTEL_SDK_DISABLED=true`. The SDK reads the rest of the standard variables itself: `OTEL_SERVICE_NAME`,
`OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER(_ARG)`, `OTEL_BSP_*`, `OTEL_EXPORTER_OTLP_(TRACES_)HEADERS` ...
OTLP goes over HTTP (`http/protobuf`, the `knflow[otel]` extra). Off, this module imports nothing of
OpenTelemetry and every call site costs one check of `ON`; on, OpenTelemetry is imported at the first span
(or at `configure`, which a service calls at start). Set but not installed: one warning, then off.

Context travels in the CloudEvents Distributed Tracing extension (`traceparent`, `tracestate`), so in the
`ce-traceparent` header of binary mode on JetStream and over HTTP, where the W3C `traceparent` header goes
beside it (`http_headers`); a receiver prefers the event's. Spans (`publishing`, `process`, `function_span`)
follow the messaging and CloudEvents semantic conventions (`messaging.system`, `messaging.destination.name`,
`messaging.operation.type`, `cloudevents.event_id` ...), and each hands the event on with its own context.

Spans that outlive the process that began them (a run, a node attempt: the router keeps nothing between
events) are emitted whole when they end (`emit`), with ids chosen when they began (`new_root`,
`derived_span_id`) and a start time kept elsewhere (router/run_traces.py).

The pure helpers (`exporter_names`, `parse_traceparent`, `format_traceparent`, `derived_span_id`,
`iso_to_ns`) need no OpenTelemetry.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Callable, Iterator, Mapping, MutableMapping, Sequence
from contextvars import ContextVar
from datetime import datetime, timedelta, UTC
from typing import Any, Final

from cloudevents.core.v1.event import CloudEvent

from broker import extensions as ext
from broker.codec import trusted_event

__all__ = [
    "ON",
    "add_trace_ids",
    "configure",
    "derived_span_id",
    "emit",
    "exporter_names",
    "format_traceparent",
    "function_span",
    "http_headers",
    "iso_to_ns",
    "new_root",
    "parse_traceparent",
    "process",
    "published",
    "publishing",
    "reply",
    "set_outcome",
]

INSTALL_HINT: Final = "pip install 'knflow[otel]'"
_ENDPOINTS: Final = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
_HEX: Final = frozenset("0123456789abcdef")
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_NS_PER_US: Final = 1000


# ---- pure helpers ---------------------------------------------------------------------------------


def exporter_names(environ: Mapping[str, str]) -> list[str]:
    """The exporters the environment asks for: `OTEL_TRACES_EXPORTER` (comma-separated, `none` dropped), or
    `otlp` when only an OTLP endpoint is set; [] (tracing off) when neither is, or `OTEL_SDK_DISABLED=true`."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return []
    raw = environ.get("OTEL_TRACES_EXPORTER", "").strip()
    if not raw:
        return ["otlp"] if any(environ.get(name, "").strip() for name in _ENDPOINTS) else []
    return [n for n in (part.strip().lower() for part in raw.split(",")) if n and n != "none"]


def parse_traceparent(value: object) -> tuple[int, int, int] | None:
    """(trace id, parent span id, flags) of a W3C `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`); None for
    anything else, which W3C Trace Context says to ignore: all-zero ids, version `ff`, upper case, a
    version-00 value with more fields. A later version may append fields; its first four are read."""
    if not isinstance(value, str):
        return None
    parts = value.strip().split("-")
    if len(parts) < 4:
        return None
    version, trace_hex, span_hex, flags_hex = parts[:4]
    if len(version) != 2 or version == "ff" or (version == "00" and len(parts) != 4):
        return None
    if len(trace_hex) != 32 or len(span_hex) != 16 or len(flags_hex) != 2:
        return None
    if not _HEX.issuperset(version + trace_hex + span_hex + flags_hex):
        return None
    trace_id, span_id = int(trace_hex, 16), int(span_hex, 16)
    if not trace_id or not span_id:
        return None
    return trace_id, span_id, int(flags_hex, 16)


def format_traceparent(trace_id: int, span_id: int, flags: int) -> str:
    return f"00-{trace_id:032x}-{span_id:016x}-{flags & 0xFF:02x}"


def derived_span_id(trace_id: int, key: str) -> int:
    """A span id that any process computes alike from the trace and a key (an invoke id): the id of a span
    emitted where it ends, known where it began."""
    digest = hashlib.blake2b(f"{trace_id:032x}/{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") or 1


def iso_to_ns(text: object) -> int | None:
    """Nanoseconds since the epoch of an ISO-8601 time with an offset (`2026-05-01T12:00:00.123Z`); None if not one."""
    if not isinstance(text, str):
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    if when.tzinfo is None:
        return None
    return (when - _EPOCH) // timedelta(microseconds=1) * _NS_PER_US


def event_attributes(event: CloudEvent, address: Sequence[tuple[str, str]] | None = None) -> dict[str, str]:
    """A span's attributes for an event: the CloudEvents semantic conventions, and knflow's address (all of
    it, or the extensions `address` names: each attribute costs the SDK some microseconds)."""
    attrs = event.get_attributes()
    out = {
        "cloudevents.event_id": str(attrs.get("id")),
        "cloudevents.event_source": str(attrs.get("source")),
        "cloudevents.event_type": str(attrs.get("type")),
        "cloudevents.event_spec_version": str(attrs.get("specversion", "1.0")),
    }
    if subject := attrs.get("subject"):
        out["cloudevents.event_subject"] = str(subject)
    for name, key in _ADDRESS if address is None else address:
        if (value := attrs.get(name)) is not None:
            out[key] = str(value)
    return out


_ADDRESS: Final = (
    (ext.RUN, "knflow.run.id"),
    (ext.PIPELINE, "knflow.pipeline"),
    (ext.NODE, "knflow.node"),
    (ext.ATTEMPT, "knflow.attempt"),
    (ext.FUNCTION, "knflow.function"),
    (ext.DELIVERY, "knflow.delivery"),
)
_HOP: Final = _ADDRESS[2:3] + _ADDRESS[5:]  # on the messaging spans: the node and the delivery; the rest is the trace's


def _unsampled(traceparent: object) -> bool:
    """A context that says "not sampled": a run traced whole or not at all, so no span is made under it."""
    ids = parse_traceparent(traceparent)
    return ids is not None and not ids[2] & 1


# ---- setup ------------------------------------------------------------------------------------------

ON: bool = bool(exporter_names(os.environ))
_otel: _Otel | None = None
_FORCED: ContextVar[tuple[int, int] | None] = ContextVar("knflow_tracing_forced_ids", default=None)


def configure(service: str | None = None) -> bool:
    """Read `OTEL_*` now and set up tracing (or turn it off); `service` is the `service.name` unless
    `OTEL_SERVICE_NAME` or `OTEL_RESOURCE_ATTRIBUTES` names one. Returns whether tracing is on."""
    global ON, _otel
    if _otel is not None:
        _otel.provider.shutdown()  # flushes what it holds
        _otel = None
    names = exporter_names(os.environ)
    ON = False
    if names:
        try:
            _otel = _Otel(names, service or "knflow")
        except ImportError as exc:
            _warn(
                f"{_why_on()} is set, but OpenTelemetry is not installed (no module {exc.name!r}): tracing is off. "
                f"Install it with: {INSTALL_HINT}"
            )
        else:
            ON = _otel.exporting
            if not ON:
                _otel = None
    return ON


def _why_on() -> str:
    named = [n for n in ("OTEL_TRACES_EXPORTER", *_ENDPOINTS) if os.environ.get(n, "").strip()]
    return " and ".join(named) or "OTEL_*"


def _warn(message: str) -> None:
    import structlog

    structlog.get_logger("knflow.tracing").warning(message)


def _ready() -> _Otel | None:
    """What spans are made with; set up on first use (a library user who never called `configure`)."""
    if _otel is None and ON:
        configure()
    return _otel


class _Otel:
    """OpenTelemetry, loaded: a tracer provider of knflow's own with the exporters asked for."""

    def __init__(self, names: list[str], service: str) -> None:
        from opentelemetry import context, trace
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

        class Ids(RandomIdGenerator):
            """Random ids, except where `emit` names the ids of the span it makes."""

            def generate_trace_id(self) -> int:
                forced = _FORCED.get()
                return forced[0] if forced else super().generate_trace_id()

            def generate_span_id(self) -> int:
                forced = _FORCED.get()
                return forced[1] if forced else super().generate_span_id()

        resource = Resource.create()
        if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
            resource = resource.merge(Resource({SERVICE_NAME: service}))
        self.random = RandomIdGenerator()
        self.provider = TracerProvider(resource=resource, id_generator=Ids())
        exporters = [e for e in (_exporter(n) for n in names) if e is not None]
        for exporter in exporters:
            self.provider.add_span_processor(BatchSpanProcessor(exporter))
        self.exporting = bool(exporters)
        # knflow's own provider, not the global one: instrumentation a user sets up (and FastAPI's native
        # telemetry, which the global provider turns on) stays theirs, and nests under the current span
        self.tracer = self.provider.get_tracer("knflow")
        self.trace = trace
        self.context = context
        kind = trace.SpanKind
        self.kinds = {"internal": kind.INTERNAL, "producer": kind.PRODUCER, "consumer": kind.CONSUMER}

    def parent(self, traceparent: object, tracestate: object = None) -> Any:
        """An OpenTelemetry context whose span is the remote one `traceparent` names; None if it names none."""
        ids = parse_traceparent(traceparent)
        if ids is None:
            return None
        from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, TraceState

        state = TraceState.from_header([tracestate]) if isinstance(tracestate, str) and tracestate else None
        remote = SpanContext(ids[0], ids[1], is_remote=True, trace_flags=TraceFlags(ids[2]), trace_state=state)
        return self.trace.set_span_in_context(NonRecordingSpan(remote), self.context.Context())

    def event_parent(self, event: CloudEvent) -> Any:
        return self.parent(event.get_extension(ext.TRACEPARENT), event.get_extension(ext.TRACESTATE))

    def link(self, traceparent: str, kind: str) -> Any:
        ids = parse_traceparent(traceparent)
        if ids is None:
            return None
        from opentelemetry.trace import Link, SpanContext, TraceFlags

        remote = SpanContext(ids[0], ids[1], is_remote=True, trace_flags=TraceFlags(ids[2]))
        return Link(remote, {"knflow.link": kind})


def _exporter(name: str) -> Any:
    if name == "otlp":
        protocol = os.environ.get(
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
        )
        if protocol.strip() != "http/protobuf":
            _warn(
                f"OTEL_EXPORTER_OTLP_PROTOCOL {protocol!r} is not supported: knflow exports OTLP over HTTP. "
                "Set it to 'http/protobuf' and point OTEL_EXPORTER_OTLP_ENDPOINT at the collector's OTLP/HTTP "
                "port (4318); no spans are exported to 'otlp' until then"
            )
            return None
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    _warn(f"OTEL_TRACES_EXPORTER names {name!r}, which knflow does not have: use otlp, console or none")
    return None


# ---- spans ------------------------------------------------------------------------------------------


def new_root(name: str, links: Sequence[tuple[str, str]] = ()) -> str | None:
    """The `traceparent` of the root span of a new trace, to be emitted later (`emit`): ids chosen and
    the sampler asked now, so that children can be made meanwhile. `links`: (traceparent, kind) pairs."""
    o = _ready()
    if o is None:
        return None
    trace_id, span_id = o.random.generate_trace_id(), o.random.generate_span_id()
    found = [x for x in (o.link(tp, kind) for tp, kind in links) if x is not None]
    result = o.provider.sampler.should_sample(None, trace_id, name, o.kinds["internal"], None, found)
    return format_traceparent(trace_id, span_id, 1 if result.decision.is_sampled() else 0)


def emit(
    name: str,
    own: str,
    parent: str | None,
    start_ns: int | None,
    attributes: Mapping[str, str | int],
    *,
    links: Sequence[tuple[str, str]] = (),
    error: str | None = None,
) -> None:
    """Make and end, now, the span whose trace and span ids `own` (a traceparent) gives, child of `parent`
    (a traceparent; None: a root), begun at `start_ns`. Nothing when `own` is not sampled."""
    o = _ready()
    ids = parse_traceparent(own)
    if o is None or ids is None or not ids[2] & 1:
        return
    context = o.parent(parent) if parent is not None else None
    token = _FORCED.set((ids[0], ids[1]))
    try:
        span = o.tracer.start_span(
            name,
            context=context if context is not None else o.context.Context(),  # an empty context: a root
            attributes=dict(attributes),
            links=[x for x in (o.link(tp, kind) for tp, kind in links) if x is not None],
            start_time=start_ns,
        )
    finally:
        _FORCED.reset(token)
    if error is not None:
        _error(span, error)
    span.end()


def _error(span: Any, description: str) -> None:
    from opentelemetry.trace import Status, StatusCode

    span.set_status(Status(StatusCode.ERROR, description[:500]))


def _stamp(event: CloudEvent, span: Any) -> CloudEvent:
    """`event` carrying the context of `span` in its `traceparent` (and `tracestate`) extension."""
    ctx = span.get_span_context()
    if not ctx.is_valid:
        return event
    attrs = {**event.get_attributes(), ext.TRACEPARENT: format_traceparent(ctx.trace_id, ctx.span_id, ctx.trace_flags)}
    state = ctx.trace_state.to_header() if ctx.trace_state else ""
    if state:
        attrs[ext.TRACESTATE] = state
    else:
        attrs.pop(ext.TRACESTATE, None)
    return trusted_event(attrs, event.get_data())


def _messaging(system: str, operation: str, destination: str, event: CloudEvent) -> dict[str, str]:
    return {
        "messaging.system": system,
        "messaging.operation.type": operation,
        "messaging.operation.name": operation,
        "messaging.destination.name": destination,
        "messaging.message.id": str(event.get_id()),
        **event_attributes(event, _HOP),
    }


def publishing(
    events: Sequence[CloudEvent], destination: Callable[[CloudEvent], str], system: str
) -> tuple[list[CloudEvent], list[Any]]:
    """A PRODUCER span `publish DESTINATION` for each event, child of the context it carries (else of the
    current span); returns the events carrying their spans' contexts, and the spans, for `published`."""
    o = _ready()
    if o is None:
        return list(events), []
    out: list[CloudEvent] = []
    spans: list[Any] = []
    for event in events:
        if _unsampled(event.get_extension(ext.TRACEPARENT)):
            out.append(event)
            spans.append(None)
            continue
        where = destination(event)
        span = o.tracer.start_span(
            f"publish {where}",
            context=o.event_parent(event),
            kind=o.kinds["producer"],
            attributes=_messaging(system, "publish", where, event),
        )
        out.append(_stamp(event, span))
        spans.append(span)
    return out, spans


def published(spans: Sequence[Any], results: Sequence[object]) -> None:
    """End the spans of `publishing`; a result that is an exception or an error text marks its span failed."""
    for span, result in zip(spans, results, strict=False):
        if span is None:  # an event of a run that is not sampled
            continue
        if isinstance(result, BaseException):
            _error(span, f"{type(result).__name__}: {result}")
        elif isinstance(result, str):
            _error(span, result)
        span.end()


@contextlib.contextmanager
def process(
    event: CloudEvent,
    destination: str,
    system: str,
    *,
    consumer: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> Iterator[CloudEvent]:
    """A CONSUMER span `process DESTINATION`, current while `event` is handled: child of the context the
    event carries, else of the W3C `traceparent` header among `headers`; yields the event carrying this
    span's context, so that what it is delivered to continues the trace under it."""
    o = _ready()
    if o is None:
        yield event
        return
    traceparent, tracestate = event.get_extension(ext.TRACEPARENT), event.get_extension(ext.TRACESTATE)
    if parse_traceparent(traceparent) is None and headers is not None:
        traceparent, tracestate = headers.get("traceparent"), headers.get("tracestate")
    if _unsampled(traceparent):
        yield event
        return
    parent = o.parent(traceparent, tracestate)
    attributes = _messaging(system, "process", destination, event)
    if consumer:
        attributes["messaging.consumer.group.name"] = consumer
    with o.tracer.start_as_current_span(
        f"process {destination}",
        context=parent if parent is not None else o.context.Context(),
        kind=o.kinds["consumer"],
        attributes=attributes,
    ) as span:
        yield _stamp(event, span)


def set_outcome(status: int, error: bytes = b"") -> None:
    """On the current span: the delivery's HTTP-like status; an error status when it is not 2xx."""
    o = _ready()
    if o is None:
        return
    span = o.trace.get_current_span()
    span.set_attribute("knflow.delivery.status", status)
    if not 200 <= status < 300:
        _error(span, f"delivery failed with {status}: {error[:200].decode('utf-8', 'replace')}")


@contextlib.contextmanager
def function_span(invoke: CloudEvent, function: str) -> Iterator[None]:
    """The span `function NAME` around running an invoke: child of the current span (the dispatcher's or
    the function service's `process`), else of the context the invoke carries (the embedded broker)."""
    o = _ready()
    if o is None:
        yield
        return
    current = o.trace.get_current_span().get_span_context()
    if (current.is_valid and not current.trace_flags.sampled) or (
        not current.is_valid and _unsampled(invoke.get_extension(ext.TRACEPARENT))
    ):
        yield
        return
    parent = None if current.is_valid else o.event_parent(invoke)
    attributes = {**event_attributes(invoke), "knflow.function": function}
    with o.tracer.start_as_current_span(f"function {function}", context=parent, attributes=attributes):
        yield


def reply(event: CloudEvent) -> CloudEvent:
    """A function's reply carrying the current span's context back to the router; a `node.failed` reply
    marks that span failed with the reply's error message."""
    o = _ready()
    if o is None:
        return event
    span = o.trace.get_current_span()
    if event.get_type().endswith(".failed"):
        data = event.get_data()
        error = data.get("error") if isinstance(data, dict) else None
        _error(span, str(error.get("message")) if isinstance(error, dict) else "node failed")
    return _stamp(event, span)


def http_headers(headers: MutableMapping[str, str]) -> None:
    """Binary-mode headers with the W3C `traceparent` (and `tracestate`) beside `ce-traceparent`, as Knative
    sends them: an HTTP receiver that reads only the W3C header joins the trace too."""
    if (traceparent := headers.get("ce-" + ext.TRACEPARENT)) is not None:
        headers["traceparent"] = traceparent
        if (state := headers.get("ce-" + ext.TRACESTATE)) is not None:
            headers["tracestate"] = state


def add_trace_ids(logger: Any, method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """A structlog processor: `trace_id` and `span_id` on every line logged while a span is current."""
    if ON and _otel is not None:
        ctx = _otel.trace.get_current_span().get_span_context()
        if ctx.is_valid:
            event["trace_id"] = f"{ctx.trace_id:032x}"
            event["span_id"] = f"{ctx.span_id:016x}"
    return event
