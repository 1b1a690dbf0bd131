"""The metrics module's hooks (pure, on this process' registry) and `GET /metrics` of each service, as real
processes: the router and its broker ingress (a `read` token or the scrape token), a function service and a
dispatcher (the scrape token when one is set, else open). Prometheus itself: tests/test_metrics_prometheus.py."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from broker import metrics
from broker.events import Address
from tests.processes import Process, free_port
from tests.test_fabric_e2e import http, stream_env
from tests.tokens import ADMIN_TOKEN, ROUTER_ENV, create_token

ROOT = Path(__file__).resolve().parent.parent
SCRAPE_TOKEN = "kf_scrape-test-" + uuid.uuid4().hex
HOOKED = "metadata: {name: hooked}\ntrigger: {type: webhook}\nnodes: [{id: say, type: log, inputs: {message: hi}}]\n"
LABELS = {"pipeline", "node", "function", "status", "trigger", "type", "outcome", "operation", "route", "code"}


def value(name: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


# ---- the hooks ----------------------------------------------------------------------------------------


def test_every_knflow_metric_follows_the_conventions_and_has_bounded_labels():
    families = [f for f in metrics.REGISTRY.collect() if f.name.startswith("knflow_")]
    assert len(families) >= 20
    for family in families:
        if family.type == "histogram":
            assert family.name.endswith(("_seconds", "_size")), family.name
        if family.type == "gauge":
            assert not family.name.endswith("_total"), family.name
    defined = [getattr(metrics, name) for name in dir(metrics) if name.isupper()]
    label_names = {
        label for metric in defined for label in getattr(metric, "labelnames", getattr(metric, "_labelnames", ()))
    }
    assert label_names <= LABELS, label_names - LABELS  # never a run id, an event id or a token
    names = metrics.metric_names()
    assert {"knflow_runs_started_total", "knflow_node_queue_seconds_bucket", "knflow_runs_in_flight"} <= names


def test_run_and_node_hooks_count_by_pipeline_with_items_folded_into_their_node():
    pipeline = f"p-{uuid.uuid4().hex[:6]}"
    metrics.run_started(pipeline, "webhook")
    metrics.run_finished(pipeline, "failed", "2020-01-01T00:00:00.000Z")
    metrics.node_finished(pipeline, "gen[7]", "fn", False, "2020-01-01T00:00:00.000Z")
    metrics.dead_letter(pipeline, "gen[7]", "fn")
    assert value("knflow_runs_started_total", pipeline=pipeline, trigger="webhook") == 1
    assert value("knflow_runs_finished_total", pipeline=pipeline, status="failed") == 1
    assert value("knflow_run_duration_seconds_sum", pipeline=pipeline, status="failed") > 3600 * 24 * 365
    labels = {"pipeline": pipeline, "node": "gen", "function": "fn"}
    assert value("knflow_node_duration_seconds_count", **labels, status="failed") == 1
    assert value("knflow_dead_letters_total", **labels) == 1


def test_queue_time_is_observed_on_first_deliveries_only():
    pipeline = f"q-{uuid.uuid4().hex[:6]}"
    published = datetime.fromtimestamp(time.time() - 2, UTC)
    metrics.invoke_started(Address("r", "n[1]", 1, pipeline, "fn", delivery=1), "fn", published)
    metrics.invoke_started(Address("r", "n[1]", 1, pipeline, "fn", delivery=2), "fn", published)
    assert value("knflow_node_queue_seconds_count", pipeline=pipeline, node="n", function="fn") == 1
    assert value("knflow_node_queue_seconds_sum", pipeline=pipeline, node="n", function="fn") >= 2


def test_runs_in_flight_drops_to_zero_for_a_pipeline_the_store_no_longer_counts():
    a, b = f"a-{uuid.uuid4().hex[:6]}", f"b-{uuid.uuid4().hex[:6]}"
    metrics.set_runs_in_flight({a: 3, b: 1})
    metrics.set_runs_in_flight({b: 2})
    assert (value("knflow_runs_in_flight", pipeline=a), value("knflow_runs_in_flight", pipeline=b)) == (0, 2)


def test_off_records_nothing_and_leaves_the_store_unwrapped():
    pipeline = f"off-{uuid.uuid4().hex[:6]}"
    store = object()
    metrics.set_enabled(False)
    try:
        metrics.run_started(pipeline, "cron")
        assert metrics.timed_store(store) is store
    finally:
        metrics.set_enabled(True)
    assert value("knflow_runs_started_total", pipeline=pipeline, trigger="cron") == 0


async def test_timed_store_times_the_run_calls_and_passes_the_rest():
    class Store:
        name = "inner"

        async def get_run(self, run_id: str) -> dict:
            return {"id": run_id}

    before = value("knflow_store_operation_seconds_count", operation="get_run")
    timed = metrics.timed_store(Store())
    assert await timed.get_run("r1") == {"id": "r1"} and timed.name == "inner"
    assert value("knflow_store_operation_seconds_count", operation="get_run") == before + 1
    assert metrics.timed_store(timed) is timed


def test_the_scrape_token_is_a_bearer_token_compared_whole():
    assert metrics.token_matches(f"Bearer {SCRAPE_TOKEN}", SCRAPE_TOKEN)
    assert metrics.token_matches(f"bearer  {SCRAPE_TOKEN} ", SCRAPE_TOKEN)
    assert not metrics.token_matches(f"Bearer {SCRAPE_TOKEN[:-1]}", SCRAPE_TOKEN)
    assert not metrics.token_matches(f"Basic {SCRAPE_TOKEN}", SCRAPE_TOKEN)
    assert not metrics.token_matches(None, SCRAPE_TOKEN) and not metrics.token_matches("Bearer x", None)


def test_the_process_start_is_read_from_proc_before_this_module_was_imported():
    started = metrics.process_started_at()
    assert started <= metrics._IMPORTED_AT <= time.time()


# ---- GET /metrics of each service ------------------------------------------------------------------------


def scrape(url: str, token: str | None) -> tuple[int, str]:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as resp:
            assert resp.headers["content-type"] == metrics.CONTENT_TYPE
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


@pytest.fixture(scope="module")
def routers(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("metrics-router")
    (tmp / "hooked.yaml").write_text(HOOKED)
    store = f"sqlite:///{tmp}/runs.db"
    env = {"PYTHONPATH": str(ROOT), "KNFLOW_NATS_URL": "", "KNFLOW_METRICS_TOKEN": SCRAPE_TOKEN}
    started = []
    try:
        for name, extra, flags in (
            ("public", ROUTER_ENV, []),
            ("ingress", {"KNFLOW_ADMIN_TOKEN": ""}, ["--broker-ingress"]),
        ):
            port = free_port()
            args = ["serve", "router", "--store", store, "--pipelines", str(tmp / "hooked.yaml"), "--port", str(port)]
            proc = Process([*args, "--host", "127.0.0.1", *flags], tmp / f"{name}.log", port, {**env, **extra})
            started.append(proc.start())
        yield started
    finally:
        for proc in started:
            proc.stop()


def test_router_metrics_need_a_read_token_or_the_scrape_token(routers):
    public, ingress = routers
    read = create_token(public.url, f"prom-{uuid.uuid4().hex[:6]}", "read")
    for router in (public, ingress):
        status, body = scrape(f"{router.url}/metrics", None)
        assert status == 401 and "Authorization: Bearer" in body, body
        assert scrape(f"{router.url}/metrics", "kf_not-a-token")[0] == 401
        assert scrape(f"{router.url}/metrics", SCRAPE_TOKEN)[0] == 200
        assert scrape(f"{router.url}/metrics", read)[0] == 200  # both routers share the store's tokens


def test_router_metrics_count_requests_by_route_template_and_webhooks_by_known_pipeline(routers):
    public, _ = routers
    secret_path = f"run-{uuid.uuid4().hex}"
    assert http("GET", f"{public.url}/runs/{secret_path}")[0] == 404
    assert http("POST", f"{public.url}/hooks/hooked", b"{}", {"content-type": "application/json"})[0] == 202
    assert http("POST", f"{public.url}/hooks/no-such-{uuid.uuid4().hex}", b"{}", {}, token=None)[0] == 401
    status, text = scrape(f"{public.url}/metrics", SCRAPE_TOKEN)
    assert status == 200
    assert 'knflow_http_requests_total{code="404",route="/runs/{run_id}"} 1.0' in text
    assert 'knflow_webhook_requests_total{code="202",pipeline="hooked"} 1.0' in text
    assert 'knflow_webhook_requests_total{code="401",pipeline=""} 1.0' in text  # an unknown name is no label
    assert 'knflow_runs_started_total{pipeline="hooked",trigger="webhook"} 1.0' in text
    assert "knflow_store_operation_seconds_count" in text and "process_cpu_seconds_total" in text
    assert secret_path not in text and "no-such-" not in text and ADMIN_TOKEN not in text


def function_service(tmp: Path, env: dict[str, str]) -> Process:
    port = free_port()
    args = ["serve", "function", "split-words", "--functions", "examples.hello", "--host", "127.0.0.1"]
    return Process([*args, "--port", str(port)], tmp / f"fn-{port}.log", port, {"PYTHONPATH": str(ROOT), **env})


def test_function_service_metrics_take_the_scrape_token_when_one_is_set(tmp_path):
    guarded = function_service(tmp_path, {"KNFLOW_METRICS_TOKEN": SCRAPE_TOKEN}).start()
    try:
        assert scrape(f"{guarded.url}/metrics", None)[0] == 401
        assert scrape(f"{guarded.url}/metrics", ADMIN_TOKEN)[0] == 401
        status, text = scrape(f"{guarded.url}/metrics", SCRAPE_TOKEN)
        assert status == 200 and "# TYPE knflow_function_invocations_total counter" in text
    finally:
        guarded.stop()
    open_ = function_service(tmp_path, {"KNFLOW_METRICS_TOKEN": ""}).start()
    try:
        assert scrape(f"{open_.url}/metrics", None)[0] == 200  # as its POST /: cluster-local on Knative
    finally:
        open_.stop()


def test_a_dispatcher_serves_metrics_on_its_own_port(tmp_path, nats_server):
    port = free_port()
    args = ["serve", "dispatcher", "--nats", nats_server.url, "--function", "split-words", "--functions"]
    args += ["examples.hello", "--dead-letter", "http://127.0.0.1:9/dead-letter", "--metrics-port", str(port)]
    env = {**stream_env(), "KNFLOW_METRICS_TOKEN": SCRAPE_TOKEN}
    dispatcher = Process([*args, "--metrics-host", "127.0.0.1"], tmp_path / "dispatcher.log", env=env).start()
    try:
        assert f"metrics on http://127.0.0.1:{port}/metrics" in dispatcher.output()
        assert scrape(f"http://127.0.0.1:{port}/metrics", None)[0] == 401
        status, text = scrape(f"http://127.0.0.1:{port}/metrics", SCRAPE_TOKEN)
        assert status == 200 and "# TYPE knflow_node_attempts_total counter" in text
    finally:
        dispatcher.stop()


def test_results_routes_keep_their_template_and_error_answers(routers):
    """POST /events and /dead-letter are served ahead of FastAPI's routing (ingress.FAST_ROUTES): still counted
    by their template, and a bad CloudEvent is still the JSON 400 of the app's exception handlers."""
    _, ingress = routers
    for path in ("/events", "/dead-letter"):
        status, body = http(
            "POST", f"{ingress.url}{path}", b"not json", {"content-type": "application/json"}, token=None
        )
        assert status == 400 and isinstance(body, dict) and "error" in body, body
    _, text = scrape(f"{ingress.url}/metrics", SCRAPE_TOKEN)
    assert 'knflow_http_requests_total{code="400",route="/events"} 1.0' in text
    assert 'knflow_http_requests_total{code="400",route="/dead-letter"} 1.0' in text
