"""An OTLP/HTTP trace receiver for tests: a real HTTP server on a random port that decodes the protobuf
payloads exporters POST to `/v1/traces` (`ExportTraceServiceRequest`, gzip or not) into plain `Span`s.

    with OtlpReceiver() as receiver:
        env = receiver.env("knflow-router")   # OTEL_* for a process that should export to it
        ...
        spans = receiver.wait_for(lambda spans: len(spans) >= 3)
"""

from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

try:
    import opentelemetry.exporter.otlp.proto.http.trace_exporter
    import opentelemetry.sdk.trace  # noqa: F401
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
        ExportTraceServiceResponse,
    )
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue
except ImportError as exc:  # the test then skips, saying so: CI installs it with the dev extra
    OTEL_MISSING: str | None = (
        f"needs the otel extra (no module {exc.name!r}): pip install -e '.[dev]' installs opentelemetry-sdk, "
        "opentelemetry-exporter-otlp-proto-http and opentelemetry-proto"
    )
else:
    OTEL_MISSING = None

KINDS = {0: "unspecified", 1: "internal", 2: "server", 3: "client", 4: "producer", 5: "consumer"}


@dataclass
class Link:
    trace_id: str
    span_id: str
    attributes: dict[str, Any]


@dataclass
class Span:
    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    kind: str
    service: str
    start_ns: int
    end_ns: int
    attributes: dict[str, Any]
    links: list[Link] = field(default_factory=list)
    error: str | None = None  # the status description, when the status is ERROR


def _value(v: AnyValue) -> Any:
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [_value(x) for x in v.array_value.values]
    return getattr(v, kind) if kind else None


def _attributes(items: Any) -> dict[str, Any]:
    return {a.key: _value(a.value) for a in items}


def decode(body: bytes) -> list[Span]:
    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    out = []
    for resource_spans in request.resource_spans:
        service = str(_attributes(resource_spans.resource.attributes).get("service.name", ""))
        for scope_spans in resource_spans.scope_spans:
            for s in scope_spans.spans:
                out.append(
                    Span(
                        trace_id=s.trace_id.hex(),
                        span_id=s.span_id.hex(),
                        parent_span_id=s.parent_span_id.hex(),
                        name=s.name,
                        kind=KINDS.get(s.kind, str(s.kind)),
                        service=service,
                        start_ns=s.start_time_unix_nano,
                        end_ns=s.end_time_unix_nano,
                        attributes=_attributes(s.attributes),
                        links=[Link(x.trace_id.hex(), x.span_id.hex(), _attributes(x.attributes)) for x in s.links],
                        error=s.status.message if s.status.code == 2 else None,
                    )
                )
    return out


class OtlpReceiver:
    """`/v1/traces` on 127.0.0.1 and a free port; `spans` holds every span received, in order."""

    def __init__(self) -> None:
        self.spans: list[Span] = []
        self.requests = 0
        self._changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                if self.headers.get("content-encoding") == "gzip":
                    body = gzip.decompress(body)
                if self.path != "/v1/traces" or self.headers.get("content-type") != "application/x-protobuf":
                    self.send_error(404 if self.path != "/v1/traces" else 415)
                    return
                spans = decode(body)
                with receiver._changed:
                    receiver.spans += spans
                    receiver.requests += 1
                    receiver._changed.notify_all()
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True, name="otlp-receiver")

    def __enter__(self) -> OtlpReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def env(self, service: str | None = None) -> dict[str, str]:
        """OTEL_* for a process that exports its spans here, quickly (50 ms batches)."""
        env = {
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"{self.url}/v1/traces",
            "OTEL_BSP_SCHEDULE_DELAY": "50",
        }
        if service:
            env["OTEL_SERVICE_NAME"] = service
        return env

    def wait_for(self, done: Callable[[list[Span]], bool], timeout_s: float = 20.0) -> list[Span]:
        """The spans received, once `done(spans)` holds; an AssertionError naming what came after `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while not done(list(self.spans)):
                left = deadline - time.monotonic()
                if left <= 0:
                    names = sorted({f"{s.service}: {s.name}" for s in self.spans})
                    raise AssertionError(f"spans not received within {timeout_s} s; got {len(self.spans)}: {names}")
                self._changed.wait(left)
            return list(self.spans)
