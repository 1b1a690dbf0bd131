"""broker/tracing.py: the pure traceparent helpers, what turns tracing on, that off it imports nothing of
OpenTelemetry, the warning without the extra, and an embedded run's spans (run, node, foreach items,
function) exported over OTLP/HTTP to a real receiver in this process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from broker import tracing
from broker.tracing import derived_span_id, exporter_names, format_traceparent, iso_to_ns, parse_traceparent
from tests.otlp_receiver import OTEL_MISSING, OtlpReceiver

needs_otel = pytest.mark.usefixtures("otel_installed")  # tests/conftest.py: fails, naming the extra, without it

ROOT = Path(__file__).resolve().parent.parent
W3C_EXAMPLE = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def test_traceparent_parses_and_formats_back():
    ids = parse_traceparent(W3C_EXAMPLE)
    assert ids == (0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331, 1)
    assert format_traceparent(*ids) == W3C_EXAMPLE
    assert format_traceparent(1, 2, 0) == "00-00000000000000000000000000000001-0000000000000002-00"


@pytest.mark.parametrize(
    "bad",
    [
        None,
        "",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",  # no flags
        "00-00000000000000000000000000000000-b7ad6b7169203331-01",  # all-zero trace id
        "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",  # all-zero span id
        "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",  # version ff is invalid
        "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",  # upper case
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",  # version 00 has four fields
        "00-0af7651916cd43dd8448eb211c8031-b7ad6b7169203331-01",  # short trace id
        "00-0af7651916cd43dd8448eb211c80319g-b7ad6b7169203331-01",  # not hex
    ],
)
def test_a_malformed_traceparent_is_ignored(bad):
    assert parse_traceparent(bad) is None


def test_a_later_version_is_read_by_its_first_four_fields():
    later = "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-what-comes-next"
    assert parse_traceparent(later) == parse_traceparent(W3C_EXAMPLE)


def test_derived_span_ids_are_stable_and_distinct():
    trace_id = parse_traceparent(W3C_EXAMPLE)[0]  # type: ignore[index]
    first = derived_span_id(trace_id, "run1:split:1")
    assert first == derived_span_id(trace_id, "run1:split:1") and 0 < first < 2**64
    assert len({derived_span_id(trace_id, f"run1:gen[{i}]:1") for i in range(1000)}) == 1000
    assert derived_span_id(trace_id + 1, "run1:split:1") != first


def test_iso_times_to_nanoseconds():
    assert iso_to_ns("1970-01-01T00:00:01.500Z") == 1_500_000_000
    assert iso_to_ns("2026-05-01T12:00:00+02:00") == iso_to_ns("2026-05-01T10:00:00Z")
    assert iso_to_ns("2026-05-01T12:00:00") is None and iso_to_ns(None) is None and iso_to_ns("soon") is None


@pytest.mark.parametrize(
    "environ,names",
    [
        ({}, []),
        ({"OTEL_SERVICE_NAME": "x", "OTEL_TRACES_SAMPLER": "always_on"}, []),  # shapes tracing, does not start it
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, ["otlp"]),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, ["otlp"]),
        ({"OTEL_TRACES_EXPORTER": "console"}, ["console"]),
        ({"OTEL_TRACES_EXPORTER": "otlp, Console"}, ["otlp", "console"]),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, []),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"}, []),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "TRUE"}, []),
    ],
)
def test_what_turns_tracing_on(environ, names):
    assert exporter_names(environ) == names


def _python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    return subprocess.run(
        [sys.executable, "-c", code],
        env={**clean, "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_off_nothing_of_opentelemetry_is_imported():
    """`import knflow` (as -X importtime shows it), the NATS broker, the router and a run on the embedded
    default, with no OTEL_* set."""
    code = """
import asyncio, sys
import broker.nats, broker.nats_dispatcher, broker.http_publisher, router.router, knflow.cli
from broker import tracing
import knflow
assert not tracing.ON
record = asyncio.run(knflow.execute_run(knflow.load_pipeline('examples/hello.yaml'), {'text': 'a b'}))
assert record['status'] == 'succeeded' and 'trace_id' not in record, record
print('loaded:', sorted(m for m in sys.modules if m.startswith('opentelemetry')))
"""
    done = _python(code, {})
    assert done.returncode == 0, done.stderr
    assert "loaded: []" in done.stdout, done.stdout
    timed = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import knflow"],
        env={k: v for k, v in os.environ.items() if not k.startswith("OTEL_")} | {"PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "| knflow\n" in timed.stderr and "opentelemetry" not in timed.stderr


def test_off_the_services_load_no_tracing_sdk():
    """FastAPI (0.165 and later) imports the OpenTelemetry API itself when it is installed, for its own
    telemetry; knflow's services add neither the SDK nor an exporter."""
    done = _python(
        "import sys, functions.server, router.service.app; "
        "print(sorted(m for m in sys.modules if m.startswith(('opentelemetry.sdk', 'opentelemetry.exporter'))))",
        {},
    )
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stdout + done.stderr


def test_on_import_knflow_still_imports_nothing_of_opentelemetry():
    done = _python(
        "import sys, knflow; print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))",
        {"OTEL_TRACES_EXPORTER": "console"},
    )
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stderr


def test_set_without_the_extra_warns_once_and_stays_off():
    code = """
import sys
sys.modules['opentelemetry'] = None  # as if knflow[otel] were not installed
from broker import tracing
assert tracing.ON
assert tracing.new_root('run x') is None
assert tracing.new_root('run y') is None
assert not tracing.ON
"""
    done = _python(code, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"})
    assert done.returncode == 0, done.stderr
    out = done.stdout + done.stderr
    assert out.count("OpenTelemetry is not installed") == 1, out
    assert "OTEL_EXPORTER_OTLP_ENDPOINT is set" in out and "pip install 'knflow[otel]'" in out


@needs_otel
def test_an_unknown_exporter_or_grpc_is_named_and_tracing_stays_off():
    code = "from broker import tracing; print('on' if tracing.configure() else 'off')"
    done = _python(code, {"OTEL_TRACES_EXPORTER": "zipkin"})
    assert "'zipkin', which knflow does not have" in done.stdout + done.stderr and "off" in done.stdout
    done = _python(code, {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"})
    assert "'grpc' is not supported" in done.stdout + done.stderr and "off" in done.stdout


@pytest.fixture
def receiver(monkeypatch):
    """Tracing on in this process, to a receiver; off again afterwards."""
    if OTEL_MISSING is not None:
        pytest.fail(f"{OTEL_MISSING} (pip install -e '.[dev]' installs it)")
    with OtlpReceiver() as r:
        for name, value in r.env("knflow-test").items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "10")
        assert tracing.configure()
        try:
            yield r
        finally:
            monkeypatch.delenv("OTEL_TRACES_EXPORTER")
            monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            assert not tracing.configure()  # flushes and shuts the provider down


FOREACH = """
metadata: {name: traced-squares}
functions: [tests.fixtures.fanout]
nodes:
  - {id: gen, type: fo-square, foreach: "{{ trigger.data.items }}", inputs: {key: "{{ $run }}", n: "{{ item }}"}}
  - {id: total, type: fo-sum, inputs: {values: "{{ gen.output }}"}}
edges: [{from: gen, to: total}]
"""


async def test_an_embedded_foreach_run_is_one_trace_of_run_node_item_and_function_spans(receiver, tmp_path):
    from knflow.local import EmbeddedStack
    from router.loader import load_string
    from router.runs import record
    from router.store.sqlite import SqliteStore

    pipeline = load_string(FOREACH, "traced-squares.yaml")
    async with EmbeddedStack(SqliteStore(tmp_path / "runs.db")) as stack:
        run = await stack.execute(pipeline, {"items": [1, 2, 3]})
    assert run["status"] == "succeeded"
    trace_id = record(run)["trace_id"]
    spans = receiver.wait_for(lambda got: any(s.name == "run traced-squares" for s in got))
    mine = [s for s in spans if s.trace_id == trace_id]
    by_name = {s.name: s for s in mine}
    root = by_name["run traced-squares"]
    assert root.parent_span_id == "" and root.attributes["knflow.run.id"] == run["id"]
    assert root.attributes["knflow.run.status"] == "succeeded" and root.service == "knflow-test"
    gen, total = by_name["node gen"], by_name["node total"]
    assert gen.parent_span_id == root.span_id and total.parent_span_id == root.span_id
    items = [by_name[f"node gen[{i}]"] for i in range(3)]
    assert all(i.parent_span_id == gen.span_id and i.attributes["knflow.attempt"] == 1 for i in items)
    functions = [s for s in mine if s.name == "function fo-square"]
    assert sorted(f.parent_span_id for f in functions) == sorted(i.span_id for i in items)
    assert by_name["function fo-sum"].parent_span_id == total.span_id
    assert root.start_ns <= gen.start_ns <= items[0].start_ns and items[0].end_ns <= gen.end_ns <= root.end_ns
    assert functions[0].attributes["cloudevents.event_type"] == "dev.knflow.invoke"
    assert len(mine) == 1 + 2 + 3 + 4  # nothing else in the run's trace: no span left over or duplicated


async def test_a_failed_node_marks_its_spans_failed(receiver, tmp_path):
    from knflow.local import EmbeddedStack
    from router.loader import load_string
    from router.runs import record
    from router.store.sqlite import SqliteStore

    failing = """
metadata: {name: traced-fail}
functions: [tests.fixtures.fanout]
nodes:
  - {id: bad, type: fo-square, inputs: {key: k, n: "{{ trigger.data.n }}"}}
"""
    async with EmbeddedStack(SqliteStore(tmp_path / "runs.db")) as stack:
        run = await stack.execute(load_string(failing, "traced-fail.yaml"), {"n": "not a number"})
    assert run["status"] == "failed"
    trace_id = record(run)["trace_id"]
    spans = receiver.wait_for(lambda got: any(s.name == "run traced-fail" and s.trace_id == trace_id for s in got))
    by_name = {s.name: s for s in spans if s.trace_id == trace_id}
    assert "InvalidInput" in (by_name["run traced-fail"].error or "")
    assert "InvalidInput" in (by_name["node bad"].error or "")
    assert "is invalid" in (by_name["function fo-square"].error or "")


def _invoke(traceparent: str | None = None):
    from broker.events import invoke_event

    return invoke_event(
        run_id="r1",
        pipeline="p",
        node="n",
        attempt=1,
        function="f",
        inputs={},
        config={},
        traceparent=traceparent,
        token="secret-token-value",
    )


def test_a_receiver_prefers_the_events_traceparent_to_the_w3c_header(receiver):
    header = "00-11111111111111111111111111111111-2222222222222222-01"
    with tracing.process(_invoke(W3C_EXAMPLE), "f", "knative", headers={"traceparent": header}) as passed:
        pass
    with tracing.process(_invoke(), "g", "knative", headers={"traceparent": header}) as from_header:
        pass
    spans = receiver.wait_for(lambda got: {"process f", "process g"} <= {s.name for s in got})
    f, g = (next(s for s in spans if s.name == name) for name in ("process f", "process g"))
    assert (f.trace_id, f.parent_span_id) == ("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331")
    assert (g.trace_id, g.parent_span_id) == ("1" * 32, "2" * 16)
    assert passed.get_extension("traceparent") == f"00-{f.trace_id}-{f.span_id}-01"  # the span's own, handed on
    assert from_header.get_extension("traceparent") == f"00-{g.trace_id}-{g.span_id}-01"
    assert all("secret-token-value" not in str(s.attributes) for s in spans)  # knflowtoken never on a span


def test_nothing_is_made_under_a_context_that_is_not_sampled(receiver):
    unsampled = _invoke(W3C_EXAMPLE[:-2] + "00")
    with tracing.process(unsampled, "u", "nats") as handed, tracing.function_span(handed, "u"):
        pass
    events, spans = tracing.publishing([unsampled, _invoke(W3C_EXAMPLE)], lambda e: "s", "nats")
    tracing.published(spans, [None, None])
    assert handed is unsampled and events[0] is unsampled and spans[0] is None and spans[1] is not None
    got = receiver.wait_for(lambda got: any(s.name == "publish s" for s in got))
    assert [s.name for s in got] == ["publish s"]


def test_http_headers_carry_the_w3c_traceparent_beside_the_cloudevents_one():
    headers = {"ce-traceparent": W3C_EXAMPLE, "ce-tracestate": "k=v", "ce-id": "1"}
    tracing.http_headers(headers)
    assert headers["traceparent"] == W3C_EXAMPLE and headers["tracestate"] == "k=v"
    bare = {"ce-id": "1"}
    tracing.http_headers(bare)
    assert bare == {"ce-id": "1"}


RETRIED_ON_NATS = """
metadata: {name: traced-retried}
functions: [tests.fixtures.noisy]
nodes: [{id: f, type: nl-fail}]
"""


async def test_on_nats_each_delivery_of_a_retried_node_is_a_failed_span_and_its_lines_stay_node_logs(
    receiver, nats_server, tmp_path
):
    """nl-fail logs a line and fails each of its two tries: one node span, and under its invoke's publish a
    failed consumer span per delivery, whose error is the function's, not its log lines; the first try's lines
    go to the router as a `node.logs` event (a publish span of their own), and both tries' lines are stored."""
    import asyncio
    import time
    import uuid

    from broker import events
    from broker.nats import StreamLayout
    from knflow.nats_stack import NatsStack
    from router.loader import load_string
    from router.router import StaticPipelines
    from router.runs import record
    from router.store.sqlite import SqliteStore

    pipeline = load_string(RETRIED_ON_NATS, "traced-retried.yaml")
    name = f"t{uuid.uuid4().hex[:8]}"
    store = SqliteStore(tmp_path / "runs.db")
    try:
        layout = StreamLayout(stream=name.upper(), prefix=name)
        async with NatsStack(nats_server.url, store, StaticPipelines([pipeline]), layout=layout) as stack:
            await stack.serve_function("nl-fail")
            trigger = events.make_event(
                {"type": "com.example.t", "source": "/tests", "id": uuid.uuid4().hex, "datacontenttype": events.JSON},
                {},
            )
            run = await stack.router.start_run(pipeline, trigger)
            deadline = time.monotonic() + 60
            while (run := await store.get_run(run["id"])) is not None and run["status"] == "running":
                assert time.monotonic() < deadline, run
                await asyncio.sleep(0.02)
        assert run is not None and run["status"] == "failed"
        lines, _ = await store.read_logs(run["id"], "f")
    finally:
        await store.close()
    assert [line["attempt"] for line in lines if line["message"] == "trying"] == [1, 2], lines
    trace_id = record(run)["trace_id"]
    delivered = f"process {name}.invoke.nl-fail"
    spans = receiver.wait_for(  # the run's span, and both deliveries' (the dispatcher exports them on its own)
        lambda got: (
            any(s.name == "run traced-retried" and s.trace_id == trace_id for s in got)
            and sum(s.name == delivered and s.trace_id == trace_id for s in got) >= 2
        )
    )
    mine = [s for s in spans if s.trace_id == trace_id]
    node = next(s for s in mine if s.name == "node f")
    publish = next(s for s in mine if s.name == f"publish {name}.invoke.nl-fail")
    assert publish.parent_span_id == node.span_id
    deliveries = sorted((s for s in mine if s.name == f"process {name}.invoke.nl-fail"), key=lambda s: s.start_ns)
    assert [s.attributes.get("knflow.delivery") for s in deliveries] == [None, "2"]  # a retry says which it is
    assert all(s.parent_span_id == publish.span_id for s in deliveries)
    assert all(s.attributes["knflow.delivery.status"] == 503 for s in deliveries)
    assert all("attempt" in (s.error or "") and "failed" in (s.error or "") for s in deliveries), deliveries
    assert all("trying" not in (s.error or "") and "printed" not in (s.error or "") for s in deliveries)
    logs_published = [s for s in mine if s.attributes.get("cloudevents.event_type") == "dev.knflow.node.logs"]
    assert logs_published and logs_published[0].parent_span_id == deliveries[0].span_id
