"""Prometheus metrics: every metric knflow exports is defined here, with the hooks that record it.

Names follow Prometheus' conventions: `knflow_`, counters end in `_total`, durations are `_seconds`. Labels
are bounded: pipeline, node (a fan-out item `gen[2]` counts as its node `gen`), function, status, trigger
kind, event kind, outcome, route template, HTTP code. Never a run id, an event id or a token.

Who records what:
- the router (router/router.py): runs started and finished, run and node durations, dead letters, the
  router's events by outcome, sweeper republishes, store latency (its store wrapped by `timed_store`);
- deliveries (broker/nats_dispatcher.py, broker/memory.py): node attempts and retries;
- wherever a function runs (functions/handler.py): queue time, from the invoke's CloudEvent `time` (set when
  the router built it, just before publishing) to the function starting it;
- a function's own service (functions/server.py): invocations, in flight, duration, cold start;
- publishers (broker/nats.py, broker/http_publisher.py): publish latency and batch size;
- the router's HTTP service (router/service/metrics.py): requests by route and code, webhooks by pipeline
  and code, runs in flight (counted by the store at each scrape).

Counters and histograms are kept in plain dicts by label values (`_Counter`, `_Histogram`) and exported
through the registry as prometheus_client's metric families: the hot path records a few per node, and
prometheus_client's own metric objects cost five times as much per call (a lock, the label check, a walk over
the buckets in Python). Recording happens on the process' event loop thread, as the scrape does. Gauges,
set rarely, are prometheus_client's. `KNFLOW_METRICS=off` (also a setting in knflow/settings.py) turns
recording off for a bench baseline: every hook returns at its first line and `timed_store` wraps nothing;
`/metrics` still answers.
"""

from __future__ import annotations

import hmac
import os
import time
from bisect import bisect_left
from itertools import accumulate
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, Final

from prometheus_client import CollectorRegistry, Gauge, disable_created_metrics, generate_latest
from prometheus_client import exposition
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.utils import floatToGoString
from prometheus_client.gc_collector import GCCollector
from prometheus_client.process_collector import ProcessCollector

from broker import extensions as ext
from broker.events import INVOKE

if TYPE_CHECKING:
    from cloudevents.core.v1.event import CloudEvent

    from broker.events import Address

OFF_VALUES: Final = frozenset({"off", "0", "false", "no", "n", "f"})  # what pydantic reads as False, too
CONTENT_TYPE: Final = exposition.CONTENT_TYPE_LATEST

# seconds: milliseconds on the hot path up to an hour-long node; queue time up to a GPU node's cold start
# fmt: off
DURATION_BUCKETS: Final = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600,
)
QUEUE_BUCKETS: Final = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 900,
)
# fmt: on
IO_BUCKETS: Final = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
BATCH_BUCKETS: Final = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)

disable_created_metrics()  # no `_created` series beside every counter and histogram: half the exposition
REGISTRY: Final = CollectorRegistry()
ProcessCollector(registry=REGISTRY)  # process_cpu_seconds_total, process_resident_memory_bytes, ...
GCCollector(registry=REGISTRY)

_on = os.environ.get("KNFLOW_METRICS", "on").strip().lower() not in OFF_VALUES


class _Counter:
    """A counter kept in a plain dict by label values: what the hot path records (see `_Histogram`)."""

    def __init__(self, name: str, doc: str, labelnames: tuple[str, ...] = ()) -> None:
        self.name, self.doc, self.labelnames = name, doc, labelnames
        self.values: dict[tuple[str, ...], float] = {}
        REGISTRY.register(self)

    def inc(self, *labels: str, amount: float = 1) -> None:
        self.values[labels] = self.values.get(labels, 0) + amount

    def describe(self) -> list[CounterMetricFamily]:
        return [CounterMetricFamily(self.name, self.doc, labels=self.labelnames)]

    def collect(self) -> list[CounterMetricFamily]:
        family = CounterMetricFamily(self.name, self.doc, labels=self.labelnames)
        for labels, value in list(self.values.items()):
            family.add_metric(labels, value)
        return [family]


class _Histogram:
    """A histogram kept in plain lists by label values: a count per bucket (Prometheus' `le`, upper bounds
    included) and the sum. prometheus_client's own takes a lock twice and walks the buckets in Python on each
    observation, five times this cost; what is recorded here is read only by a scrape on the same event loop."""

    def __init__(self, name: str, doc: str, labelnames: tuple[str, ...], buckets: tuple[float, ...]) -> None:
        self.name, self.doc, self.labelnames = name, doc, labelnames
        self.bounds = tuple(float(b) for b in buckets)
        self.values: dict[tuple[str, ...], list[float]] = {}  # counts per bucket, then +Inf's, then the sum
        REGISTRY.register(self)

    def observe(self, value: float, *labels: str) -> None:
        counts = self.values.get(labels)
        if counts is None:
            counts = self.values[labels] = [0] * (len(self.bounds) + 2)
        counts[bisect_left(self.bounds, value)] += 1
        counts[-1] += value

    def describe(self) -> list[HistogramMetricFamily]:
        return [HistogramMetricFamily(self.name, self.doc, labels=self.labelnames)]

    def collect(self) -> list[HistogramMetricFamily]:
        family = HistogramMetricFamily(self.name, self.doc, labels=self.labelnames)
        bounds = [*map(floatToGoString, self.bounds), "+Inf"]
        for labels, counts in list(self.values.items()):
            cumulative = list(zip(bounds, accumulate(counts[:-1]), strict=True))
            family.add_metric(list(labels), cumulative, sum_value=counts[-1])
        return [family]


def _counter(name: str, doc: str, labels: tuple[str, ...] = ()) -> _Counter:
    return _Counter(name, doc, labels)


def _histogram(name: str, doc: str, labels: tuple[str, ...], buckets: tuple[float, ...]) -> _Histogram:
    return _Histogram(name, doc, labels, buckets)


def _gauge(name: str, doc: str, labels: tuple[str, ...]) -> Gauge:
    return Gauge(name, doc, labels, registry=REGISTRY)


RUNS_STARTED = _counter("knflow_runs_started_total", "Runs started.", ("pipeline", "trigger"))
RUNS_FINISHED = _counter("knflow_runs_finished_total", "Runs that ended.", ("pipeline", "status"))
RUNS_IN_FLIGHT = _gauge(
    "knflow_runs_in_flight", "Runs the store holds as running (every router reports the same: take max).", ("pipeline",)
)
RUN_DURATION = _histogram(
    "knflow_run_duration_seconds", "From a run's creation to its end.", ("pipeline", "status"), DURATION_BUCKETS
)
NODE_DURATION = _histogram(
    "knflow_node_duration_seconds",
    "From a node being scheduled to its result applied by the router (queue time and retries included).",
    ("pipeline", "node", "function", "status"),
    DURATION_BUCKETS,
)
NODE_ATTEMPTS = _counter(
    "knflow_node_attempts_total", "Deliveries of invokes to their function.", ("pipeline", "node", "function")
)
NODE_RETRIES = _counter(
    "knflow_node_retries_total", "Failed deliveries retried after a backoff.", ("pipeline", "node", "function")
)
DEAD_LETTERS = _counter(
    "knflow_dead_letters_total",
    "Invokes whose retries ran out, applied by the router.",
    ("pipeline", "node", "function"),
)
NODE_QUEUE = _histogram(
    "knflow_node_queue_seconds",
    "From an invoke's publish to its function starting it (on Knative: scale from zero included); first deliveries.",
    ("pipeline", "node", "function"),
    QUEUE_BUCKETS,
)
ROUTER_EVENTS = _counter(
    "knflow_router_events_total",
    "Events the router took: type result|dead_letter|external, "
    "outcome applied|duplicate|late|refused|unknown|unmatched.",
    ("type", "outcome"),
)
TRIGGERS_SKIPPED = _counter(
    "knflow_triggers_skipped_total",
    "Trigger events (cron ticks, CloudEvents) not started as runs because the pipeline is paused or a draft.",
    ("pipeline", "trigger", "status"),
)
STORE_SECONDS = _histogram(
    "knflow_store_operation_seconds", "Run store calls of the router.", ("operation",), IO_BUCKETS
)
PUBLISH_SECONDS = _histogram(
    "knflow_publish_seconds", "From sending a batch of events to the broker to its acknowledgement.", (), IO_BUCKETS
)
PUBLISH_BATCH = _histogram("knflow_publish_batch_size", "Events sent to the broker together.", (), BATCH_BUCKETS)
SWEEPER_REPUBLISHED = _counter("knflow_sweeper_republished_total", "Invokes the sweeper published again.")
HTTP_REQUESTS = _counter("knflow_http_requests_total", "Requests to the router by route template.", ("route", "code"))
WEBHOOK_REQUESTS = _counter(
    "knflow_webhook_requests_total", "Webhook requests (pipeline empty when it does not exist).", ("pipeline", "code")
)
FUNCTION_INVOCATIONS = _counter(
    "knflow_function_invocations_total",
    "Invokes a function service answered: status succeeded|failed|retryable.",
    ("function", "status"),
)
FUNCTION_IN_FLIGHT = _gauge("knflow_function_in_flight", "Invokes a function service is running.", ("function",))
FUNCTION_DURATION = _histogram(
    "knflow_function_duration_seconds",
    "A function service's time per invoke.",
    ("function", "status"),
    DURATION_BUCKETS,
)
FUNCTION_COLD_START = _gauge(
    "knflow_function_cold_start_seconds", "From the process' start to its first invoke answered.", ("function",)
)

_children: dict[tuple[Any, ...], Any] = {}  # (gauge, *label values) -> its child


def _child(metric: Any, *values: str) -> Any:
    key = (metric, *values)
    child = _children.get(key)
    if child is None:
        child = _children[key] = metric.labels(*values) if values else metric
    return child


def enabled() -> bool:
    return _on


def set_enabled(on: bool) -> None:
    """Turn recording on or off in this process (KNFLOW_METRICS sets it at import); for a bench baseline."""
    global _on
    _on = on


def node_of(key: str) -> str:
    """The node of an item key (`gen[2]` -> `gen`): a label per node, not per item."""
    return key.partition("[")[0]


def since_iso(stamp: str | None, now_s: float) -> float | None:
    """Seconds from an ISO-8601 time (a run document's `created_at`, `queued_at`) to `now_s`; None without one."""
    if not stamp:
        return None
    try:
        return max(0.0, now_s - datetime.fromisoformat(stamp).timestamp())
    except ValueError:
        return None


# ---- runs and nodes (the router) -------------------------------------------------------------------


def run_started(pipeline: str, trigger: str) -> None:
    if _on:
        RUNS_STARTED.inc(pipeline, trigger)


def run_finished(pipeline: str, status: str, created_at: str | None) -> None:
    if not _on:
        return
    RUNS_FINISHED.inc(pipeline, status)
    if (seconds := since_iso(created_at, time.time())) is not None:
        RUN_DURATION.observe(seconds, pipeline, status)


def set_runs_in_flight(counts: dict[str, int]) -> None:
    """The running runs by pipeline, as the store counts them; a pipeline seen before and absent now is 0."""
    for (metric, *labels), child in list(_children.items()):
        if metric is RUNS_IN_FLIGHT and labels[0] not in counts:
            child.set(0)
    for pipeline, n in counts.items():
        _child(RUNS_IN_FLIGHT, pipeline).set(n)


def node_finished(pipeline: str, node: str, function: str | None, succeeded: bool, queued_at: str | None) -> None:
    """A node's (or an item's) result or dead letter, applied by the router: the time since the router queued
    it, its queue time, every try and the backoffs between them included (as a user waits for it)."""
    if not _on:
        return
    if (seconds := since_iso(queued_at, time.time())) is not None:
        status = "succeeded" if succeeded else "failed"
        NODE_DURATION.observe(seconds, pipeline, node_of(node), function or "", status)


def dead_letter(pipeline: str, node: str, function: str | None) -> None:
    if _on:
        DEAD_LETTERS.inc(pipeline, node_of(node), function or "")


def router_event(kind: str, outcome: str) -> None:
    if _on:
        ROUTER_EVENTS.inc(kind, outcome)


def trigger_skipped(pipeline: str, trigger: str, status: str) -> None:
    if _on:
        TRIGGERS_SKIPPED.inc(pipeline, trigger, status)


def sweeper_republished(count: int) -> None:
    if _on and count:
        SWEEPER_REPUBLISHED.inc(amount=count)


# ---- deliveries (dispatchers, the in-memory broker) -------------------------------------------------


def _invoke_labels(event: CloudEvent) -> tuple[str, str, str]:
    return (
        str(event.get_extension(ext.PIPELINE) or ""),
        node_of(str(event.get_extension(ext.NODE) or "")),
        str(event.get_extension(ext.FUNCTION) or ""),
    )


def delivery(event: CloudEvent) -> None:
    """One delivery attempt of `event`; counted for invokes only (a dispatcher also delivers results)."""
    if _on and event.get_type() == INVOKE:
        NODE_ATTEMPTS.inc(*_invoke_labels(event))


def retried(event: CloudEvent) -> None:
    """A failed delivery of `event` that will be tried again after its backoff."""
    if _on and event.get_type() == INVOKE:
        NODE_RETRIES.inc(*_invoke_labels(event))


# ---- functions ---------------------------------------------------------------------------------------


def invoke_started(addr: Address, function: str, published: datetime | None) -> None:
    """Queue time: from the invoke's `time` to now, on its first delivery (a retry's wait is its backoff)."""
    if _on and published is not None and addr.delivery == 1:
        seconds = max(0.0, time.time() - published.timestamp())
        NODE_QUEUE.observe(seconds, addr.pipeline, node_of(addr.node), function)


class Invocation:
    """`with metrics.Invocation(name) as call: ...; call.status = "succeeded"`: one invoke a function service
    answers (in flight while inside; `status` stays `retryable` unless set, as an exception leaves it). The first
    one a process answers sets its cold start."""

    _cold_start_done: ClassVar[dict[str, bool]] = {}

    def __init__(self, function: str) -> None:
        self.function = function
        self.status = "retryable"
        self._started = 0.0

    def __enter__(self) -> Invocation:
        if _on:
            _child(FUNCTION_IN_FLIGHT, self.function).inc()
            self._started = time.perf_counter()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if not _on or not self._started:
            return
        _child(FUNCTION_IN_FLIGHT, self.function).dec()
        FUNCTION_INVOCATIONS.inc(self.function, self.status)
        FUNCTION_DURATION.observe(time.perf_counter() - self._started, self.function, self.status)
        if not Invocation._cold_start_done.get(self.function):
            Invocation._cold_start_done[self.function] = True
            _child(FUNCTION_COLD_START, self.function).set(max(0.0, time.time() - process_started_at()))


_IMPORTED_AT: Final = time.time()


def process_started_at() -> float:
    """When this process started (epoch seconds): from /proc/self/stat (field 22, clock ticks after boot) and
    /proc/stat's `btime`, so that a cold start counts the interpreter's start and every import, which are most
    of it; where there is no /proc, the time this module was imported."""
    try:
        with open("/proc/self/stat", "rb") as f:
            fields = f.read().rpartition(b")")[2].split()
        with open("/proc/stat", "rb") as f:
            btime = next(int(line.split()[1]) for line in f if line.startswith(b"btime "))
        return btime + int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return _IMPORTED_AT


# ---- publishing and the store ----------------------------------------------------------------------------


def published(batch_size: int, seconds: float) -> None:
    if _on:
        PUBLISH_SECONDS.observe(seconds)
        PUBLISH_BATCH.observe(batch_size)


TIMED_OPERATIONS: Final = ("create_run", "get_run", "commit", "list_runs", "get_token")


class _TimedStore:
    """A store whose calls in TIMED_OPERATIONS are timed into knflow_store_operation_seconds; the rest pass."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        for op in TIMED_OPERATIONS:
            if hasattr(inner, op):
                setattr(self, op, _timed(getattr(inner, op), op))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def _timed(call: Any, operation: str) -> Any:
    async def timed(*args: Any, **kwargs: Any) -> Any:
        if not _on:
            return await call(*args, **kwargs)
        started = time.perf_counter()
        try:
            return await call(*args, **kwargs)
        finally:
            STORE_SECONDS.observe(time.perf_counter() - started, operation)

    return timed


def timed_store(store: Any) -> Any:
    """`store`, its calls timed (or `store` itself while recording is off)."""
    if not _on or isinstance(store, _TimedStore):
        return store
    return _TimedStore(store)


# ---- HTTP ----------------------------------------------------------------------------------------------


def http_request(route: str, code: int, webhook_pipeline: str | None = None) -> None:
    """A request the router answered; `webhook_pipeline` for `/hooks/{name}` (None: not a webhook; "": the
    pipeline does not exist)."""
    if not _on:
        return
    HTTP_REQUESTS.inc(route, str(code))
    if webhook_pipeline is not None:
        WEBHOOK_REQUESTS.inc(webhook_pipeline, str(code))


def exposition_text() -> bytes:
    """Every metric of this process in Prometheus' text format (CONTENT_TYPE)."""
    return generate_latest(REGISTRY)


def token_matches(authorization: str | None, token: str | None) -> bool:
    """Whether `Authorization: Bearer X` carries the scrape token (KNFLOW_METRICS_TOKEN), compared in constant time."""
    if not token or not authorization:
        return False
    scheme, _, given = authorization.strip().partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


def metric_names() -> set[str]:
    """Every sample name this process exports (`_bucket`, `_sum`, `_count` and `_total` included)."""
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "summary": ("_sum", "_count")}
    return {family.name + s for family in REGISTRY.collect() for s in suffixes.get(family.type, ("",))}


SCRAPE_REFUSED: Final = "GET /metrics needs 'Authorization: Bearer TOKEN' with the scrape token (KNFLOW_METRICS_TOKEN)"


async def serve(host: str, port: int, token: str | None) -> tuple[Any, int]:
    """`GET /metrics` on its own port (a dispatcher's: `knflow serve dispatcher --metrics-port`), with aiohttp;
    `token` as in `token_matches` (None: open). Returns (the runner, to `cleanup()`, the port bound)."""
    from aiohttp import web

    async def scrape(request: web.Request) -> web.Response:
        if token and not token_matches(request.headers.get("Authorization"), token):
            return web.json_response({"error": SCRAPE_REFUSED}, status=401)
        return web.Response(body=exposition_text(), headers={"Content-Type": CONTENT_TYPE})

    app = web.Application()
    app.router.add_get("/metrics", scrape)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner, runner.addresses[0][1]
