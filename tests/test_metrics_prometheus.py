"""Metrics end to end (issue 13): Debian's real Prometheus scrapes a real `knflow dev --isolate` stack (the
router with its dispatchers over the session's nats-server, each function its own HTTP service) every second,
with a `read` token for the router and the scrape token for the functions, as a cluster's Prometheus would.

Two webhook runs: `metered-ok` (a node that fails its first try and succeeds on its retry) and `metered-fail`
(the same node, then one that fails every try and is dead-lettered). Prometheus' HTTP API must then give the
counts of what happened: runs by status, node durations, attempts, retries, the dead letter, queue times, the
router's events by outcome, webhooks by pipeline, and a cold start per function service.
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from tests.processes import Process, free_port
from tests.test_grafana_dashboard import DASHBOARD, expressions
from tests.test_fabric_e2e import http, stream_env, wait_run
from tests.tokens import ADMIN_TOKEN, create_token

ROOT = Path(__file__).resolve().parent.parent
PROMETHEUS = "/usr/bin/prometheus"
METERED = "functions: [tests.fixtures.metered]\ntrigger: {type: webhook}\n"
PIPELINES = {
    "metered-ok": METERED + "nodes: [{id: flaky, type: metered-flaky, inputs: {text: '{{ trigger.data.text }}'}}]\n",
    "metered-fail": METERED
    + "nodes:\n"
    + "  - {id: flaky, type: metered-flaky, inputs: {text: '{{ trigger.data.text }}'}}\n"
    + "  - {id: doomed, type: metered-doomed, inputs: '{{ flaky.output }}'}\n"
    + "edges: [{from: flaky, to: doomed}]\n",
}
# PromQL -> the value Prometheus must report once both runs ended and every target was scraped after that
EXPECTED = {
    'knflow_runs_started_total{pipeline="metered-ok",trigger="webhook"}': 1,
    'knflow_runs_finished_total{pipeline="metered-ok",status="succeeded"}': 1,
    'knflow_runs_finished_total{pipeline="metered-fail",status="failed"}': 1,
    'knflow_run_duration_seconds_count{pipeline="metered-fail",status="failed"}': 1,
    'sum(knflow_runs_in_flight{pipeline=~"metered-.*"})': 0,  # read from the store at each scrape
    'sum(knflow_node_duration_seconds_count{function="metered-flaky",status="succeeded"})': 2,
    'knflow_node_duration_seconds_count{pipeline="metered-fail",node="doomed",status="failed"}': 1,
    'sum(knflow_node_attempts_total{function="metered-flaky"})': 4,
    'knflow_node_attempts_total{pipeline="metered-fail",node="doomed",function="metered-doomed"}': 2,
    'sum(knflow_node_retries_total{function="metered-flaky"})': 2,
    'knflow_node_retries_total{pipeline="metered-fail",node="doomed"}': 1,
    'knflow_dead_letters_total{pipeline="metered-fail",node="doomed",function="metered-doomed"}': 1,
    'sum(knflow_node_queue_seconds_count{function="metered-flaky"})': 2,  # first deliveries only
    'knflow_node_queue_seconds_count{pipeline="metered-fail",node="doomed"}': 1,
    'knflow_router_events_total{type="result",outcome="applied"}': 2,
    'knflow_router_events_total{type="dead_letter",outcome="applied"}': 1,
    'knflow_webhook_requests_total{pipeline="metered-ok",code="202"}': 1,
    'knflow_http_requests_total{route="/hooks/{name}",code="202"}': 2,
    'knflow_function_invocations_total{function="metered-flaky",status="retryable"}': 2,
    'knflow_function_invocations_total{function="metered-flaky",status="succeeded"}': 2,
    'knflow_function_invocations_total{function="metered-doomed",status="retryable"}': 2,
    "count(knflow_function_cold_start_seconds > 0)": 2,
    "sum(knflow_function_in_flight)": 0,
    "count(up == 1)": 3,  # the router and both function services, every scrape authorized
}


@pytest.fixture
def dev_stack(tmp_path, nats_server):
    files = []
    for name, text in PIPELINES.items():
        (tmp_path / f"{name}.yaml").write_text(f"metadata: {{name: {name}}}\n" + text)
        files.append(str(tmp_path / f"{name}.yaml"))
    port = free_port()
    scrape_token = "kf_scrape-" + secrets.token_urlsafe(24)
    env = {
        **stream_env(),
        "KNFLOW_ADMIN_TOKEN": ADMIN_TOKEN,  # tokens required: Prometheus must send one
        "KNFLOW_METRICS_TOKEN": scrape_token,  # the function services' (their processes inherit it)
        "KNFLOW_STORE_URL": "",
    }
    args = ["dev", *files, "--port", str(port), "--nats", nats_server.url, "--isolate"]
    dev = Process([*args, "--store", f"sqlite:///{tmp_path}/runs.db"], tmp_path / "dev.log", port, env, cwd=tmp_path)
    dev.start(timeout_s=60)
    try:
        yield dev, scrape_token
    finally:
        dev.stop()


def metrics_urls(output: str) -> dict[str, str]:
    """What `knflow dev` printed: `knflow dev: metrics: router and dispatchers URL, function NAME URL, ...`."""
    line = next(line for line in output.splitlines() if line.startswith("knflow dev: metrics: "))
    found = re.findall(r"(router and dispatchers|function [a-z0-9-]+) (http://\S+?/metrics)", line)
    return dict(found)


class Prometheus:
    def __init__(self, tmp: Path, jobs: dict[str, tuple[list[str], Path]]) -> None:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [
                {
                    "job_name": job,
                    "metrics_path": "/metrics",
                    "authorization": {"type": "Bearer", "credentials_file": str(credentials)},
                    "static_configs": [{"targets": targets}],
                }
                for job, (targets, credentials) in jobs.items()
            ],
        }
        (tmp / "prometheus.yml").write_text(json.dumps(config))  # JSON is YAML
        self.log = tmp / "prometheus.log"
        args = [
            PROMETHEUS,
            f"--config.file={tmp / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ]
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(self.url + "/-/ready", timeout=1) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"prometheus did not start:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.1)

    def query(self, promql: str) -> float | None:
        """The instant value of `promql` (one series), or None when it has none."""
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(url, timeout=5) as resp:
            body = json.loads(resp.read())
        assert body["status"] == "success", body
        result = body["data"]["result"]
        assert len(result) <= 1, (promql, result)
        return float(result[0]["value"][1]) if result else None

    def series(self, promql: str) -> int:
        """How many series `promql` gives (a query Prometheus cannot parse fails the test)."""
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(url, timeout=5) as resp:
            body = json.loads(resp.read())
        assert body["status"] == "success", (promql, body)
        return len(body["data"]["result"])

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def test_prometheus_scrapes_knflow_dev_and_counts_what_the_runs_did(dev_stack, tmp_path):
    assert shutil.which(PROMETHEUS), "install Debian's prometheus package (the Makefile's APT_NEEDS)"
    dev, scrape_token = dev_stack
    urls = metrics_urls(dev.output())
    assert set(urls) == {"router and dispatchers", "function metered-flaky", "function metered-doomed"}, urls
    read_token = create_token(dev.url, "prometheus", "read")
    (tmp_path / "read.token").write_text(read_token)
    (tmp_path / "scrape.token").write_text(scrape_token)
    target = {name: urllib.parse.urlsplit(url).netloc for name, url in urls.items()}
    functions = [t for name, t in target.items() if name.startswith("function ")]
    prometheus = Prometheus(
        tmp_path,
        {
            "router": ([target["router and dispatchers"]], tmp_path / "read.token"),
            "functions": (functions, tmp_path / "scrape.token"),
        },
    )
    try:
        runs = {}
        for name in PIPELINES:
            status, body = http("POST", f"{dev.url}/hooks/{name}", b'{"text": "count me"}', {}, token=ADMIN_TOKEN)
            assert status == 202, body
            runs[name] = body["run"]
        assert wait_run(dev.url, runs["metered-ok"])["status"] == "succeeded"
        failed = wait_run(dev.url, runs["metered-fail"])
        assert failed["status"] == "failed" and failed["nodes"]["doomed"]["status"] == "failed", failed

        deadline = time.monotonic() + 60
        while True:
            got = {q: prometheus.query(q) for q in EXPECTED}
            if got == {q: float(v) for q, v in EXPECTED.items()}:
                break
            if time.monotonic() > deadline:
                wrong = {q: (v, EXPECTED[q]) for q, v in got.items() if v != EXPECTED[q]}
                raise AssertionError(f"Prometheus (got, expected): {wrong}\n{dev.output()[-3000:]}")
            time.sleep(0.5)
        # histograms carry their buckets, and the time spent is in their sums
        assert prometheus.query('knflow_node_queue_seconds_bucket{node="doomed",le="+Inf"}') == 1
        assert prometheus.query('knflow_node_duration_seconds_bucket{node="doomed",le="+Inf"}') == 1
        assert (prometheus.query('knflow_node_duration_seconds_sum{node="doomed"}') or 0) > 0.05  # its retry's backoff
        # every query of the Grafana dashboard is PromQL this Prometheus evaluates, each with data once rates
        # have two samples
        dashboard = [
            e for e in expressions(json.loads(DASHBOARD.read_text(encoding="utf-8"))) if "label_values" not in e
        ]
        deadline = time.monotonic() + 30
        while True:
            empty = [
                e
                for e in dashboard
                if not prometheus.series(e.replace("$__rate_interval", "1m").replace("$pipeline", ".*"))
            ]
            if not empty:
                break
            assert time.monotonic() < deadline, f"dashboard queries without data: {empty}"
            time.sleep(0.5)
    finally:
        prometheus.stop()
