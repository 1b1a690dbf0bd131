"""Pipeline status (`active | paused | draft`) and callers' run keys, against a real `knflow serve router`:
a paused pipeline's webhook answers 409 and its cron ticks (a PingSource's event on /events) are skipped and
counted; a draft runs only by hand; `knflow pipelines pause|resume|list` through the router and the store;
`Idempotency-Key` on a webhook and `knflow run --id KEY` give the same run twice."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from router.loader import load_string
from router.pipeline import PipelineInvalid
from tests.processes import Process, free_port
from tests.test_fabric_e2e import http, wait_run
from tests.tokens import CLI_ENV, ROUTER_ENV

ROOT = Path(__file__).resolve().parent.parent
GATE = "metadata: {name: gate}\ntrigger: {type: webhook}\nnodes: [{id: say, type: log, inputs: {message: hi}}]\n"
TICK = (
    "metadata: {name: tick}\ntrigger: {type: cron, schedule: '*/5 * * * *'}\n"
    "nodes: [{id: say, type: log, inputs: {message: tick}}]\n"
)
DRAFT = (
    "metadata: {name: sketch}\nstatus: draft\ntrigger: {type: webhook}\n"
    "nodes: [{id: say, type: log, inputs: {message: draft}}]\n"
)


def knflow(*args: str, env: dict | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "knflow.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        env={**__import__("os").environ, "PYTHONPATH": str(ROOT), "KNFLOW_NATS_URL": "", **(env or {})},
    )


def test_status_is_a_top_level_key_default_active_and_checked():
    assert load_string(GATE, "gate.yaml").status == "active"
    paused = load_string(GATE.replace("trigger:", "status: paused\ntrigger:"), "gate.yaml")
    assert paused.status == "paused" and paused.to_dict()["status"] == "paused"
    assert "status" not in load_string(GATE, "gate.yaml").to_dict()
    with pytest.raises(PipelineInvalid) as err:
        load_string(GATE.replace("trigger:", "status: stopped\ntrigger:"), "gate.yaml")
    assert "field 'status'" in str(err.value) and "active, paused, draft" in str(err.value)


def test_status_in_the_python_dsl():
    from knflow import pipeline
    from functions.builtins.utility import log

    @pipeline(name="dsl-draft", status="draft")
    def dsl_draft(trigger):
        log(message="x")

    assert dsl_draft.status == "draft"


@pytest.fixture(scope="module")
def router(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("status")
    files = []
    for name, text in (("gate", GATE), ("tick", TICK), ("sketch", DRAFT)):
        (tmp / f"{name}.yaml").write_text(text)
        files.append(str(tmp / f"{name}.yaml"))
    port = free_port()
    store = f"sqlite:///{tmp}/runs.db"
    args = ["serve", "router", "--store", store, "--pipelines", *files, "--port", str(port), "--host", "127.0.0.1"]
    proc = Process(args, tmp / "router.log", port, {"PYTHONPATH": str(ROOT), "KNFLOW_NATS_URL": "", **ROUTER_ENV})
    proc.start()
    proc.store_url = store
    yield proc
    proc.stop()


def hook(router: Process, name: str, key: str | None = None) -> tuple[int, dict]:
    headers = {"content-type": "application/json", **({"idempotency-key": key} if key else {})}
    return http("POST", f"{router.url}/hooks/{name}", b'{"x": 1}', headers)


def ping(router: Process, pipeline: str) -> tuple[int, dict]:
    """A cron tick as Knative's PingSource sends it."""
    headers = {
        "ce-id": uuid.uuid4().hex,
        "ce-source": f"/apis/v1/namespaces/knflow/pingsources/{pipeline}",
        "ce-type": "dev.knative.sources.ping",
        "ce-specversion": "1.0",
        "ce-knflowpipeline": pipeline,
        "content-type": "application/json",
    }
    return http("POST", f"{router.url}/events", b"{}", headers)


def skipped(router: Process, pipeline: str, status: str) -> float:
    import urllib.request

    req = urllib.request.Request(
        f"{router.url}/metrics", headers={"authorization": f"Bearer {ROUTER_ENV['KNFLOW_ADMIN_TOKEN']}"}
    )
    text = urllib.request.urlopen(req, timeout=10).read().decode()
    want = f'knflow_triggers_skipped_total{{pipeline="{pipeline}",status="{status}",trigger="cron"}}'
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(want))


def test_a_paused_pipeline_refuses_webhooks_with_409_until_resumed_through_the_cli(router):
    paused = knflow("pipelines", "pause", "gate", "--router", router.url, env=CLI_ENV)
    assert paused.returncode == 0 and "pipeline 'gate' is paused" in paused.stdout, paused.stderr
    status, body = hook(router, "gate")
    assert status == 409, body
    assert body["status"] == "paused" and body["pipeline"] == "gate"
    assert "knflow pipelines resume gate" in body["error"]
    listed = knflow("pipelines", "list", "--router", router.url, env=CLI_ENV)
    assert any(line.split()[:3] == ["gate", "paused", "webhook"] for line in listed.stdout.splitlines()), listed
    resumed = knflow("pipelines", "resume", "gate", "--router", router.url, env=CLI_ENV)
    assert resumed.returncode == 0 and "is active" in resumed.stdout, resumed.stderr
    status, body = hook(router, "gate")
    assert status == 202 and wait_run(router.url, body["run"])["status"] == "succeeded"


def test_a_paused_pipeline_skips_its_cron_ticks_and_counts_them(router):
    before = skipped(router, "tick", "paused")
    assert http("POST", f"{router.url}/pipelines/tick/pause")[0] == 200
    status, body = ping(router, "tick")
    assert status == 202 and body["runs"] == []
    assert skipped(router, "tick", "paused") == before + 1
    assert "trigger skipped" in router.output(10**6)
    assert http("POST", f"{router.url}/pipelines/tick/resume") == (200, {"pipeline": "tick", "status": "active"})
    status, body = ping(router, "tick")
    assert status == 202 and len(body["runs"]) == 1


def test_a_draft_has_no_trigger_but_runs_by_hand(router):
    status, body = hook(router, "sketch")
    assert status == 409 and body["status"] == "draft" and "runs only by hand" in body["error"]
    status, body = http("POST", f"{router.url}/pipelines/sketch/runs", b"{}", {"content-type": "application/json"})
    assert status == 202 and wait_run(router.url, body["run"])["status"] == "succeeded"


def test_pause_of_an_unknown_pipeline_is_a_404(router):
    status, body = http("POST", f"{router.url}/pipelines/nope/pause")
    assert status == 404 and "unknown pipeline 'nope'" in body["error"]


def test_pause_and_list_in_the_store_directly(tmp_path):
    (tmp_path / "gate.yaml").write_text(GATE)
    store = f"sqlite:///{tmp_path}/runs.db"
    assert knflow("run", str(tmp_path / "gate.yaml"), "--store", store).returncode == 0  # stores the pipeline
    assert knflow("pipelines", "pause", "gate", "--store", store).stdout.strip() == "pipeline 'gate' is paused"
    assert knflow("pipelines", "list", "--store", store).stdout.split()[:2] == ["gate", "paused"]
    missing = knflow("pipelines", "resume", "nope", "--store", store)
    assert missing.returncode != 0 and "no pipeline named 'nope'" in missing.stderr


def test_an_idempotency_key_on_a_webhook_returns_the_same_run(router):
    key = f"order-{uuid.uuid4().hex[:6]}"
    first, second = hook(router, "gate", key), hook(router, "gate", key)
    assert first[0] == second[0] == 202 and first[1]["run"] == second[1]["run"]
    assert hook(router, "gate", key + "-other")[1]["run"] != first[1]["run"]
    assert wait_run(router.url, first[1]["run"])["trigger"]["id"] == key


def test_knflow_run_with_an_id_returns_the_same_run_twice(tmp_path):
    (tmp_path / "gate.yaml").write_text(GATE)
    store = f"sqlite:///{tmp_path}/runs.db"
    runs = [knflow("run", str(tmp_path / "gate.yaml"), "--store", store, "--id", "2026-12-03", "--json") for _ in "ab"]
    assert [r.returncode for r in runs] == [0, 0], runs[0].stderr
    first, second = (json.loads(r.stdout) for r in runs)
    assert first["id"] == second["id"] and first["trigger"]["id"] == "2026-12-03"
    other = json.loads(knflow("run", str(tmp_path / "gate.yaml"), "--store", store, "--json").stdout)
    assert other["id"] != first["id"]
    listed = knflow("runs", "list", "--store", store).stdout
    assert listed.count(first["id"]) == 1


async def test_knflow_devs_scheduler_skips_a_paused_interval_pipelines_ticks_and_counts_them(tmp_path):
    import asyncio
    from datetime import UTC, datetime

    from broker import metrics
    from knflow.dev import fire_schedules
    from knflow.local import EmbeddedStack
    from router.catalog import StorePipelines
    from router.store.sqlite import SqliteStore

    name = f"every-{uuid.uuid4().hex[:6]}"
    text = TICK.replace("name: tick", f"name: {name}").replace("schedule: '*/5 * * * *'", "every: 1m")
    store = SqliteStore(tmp_path / "k.db")
    catalog = StorePipelines(store)
    await catalog.put(load_string("status: paused\n" + text, "every.yaml"))
    just_before_a_minute = datetime(2026, 1, 1, 8, 59, 59, 990000, tzinfo=UTC)

    def count() -> float:
        labels = {"pipeline": name, "trigger": "cron", "status": "paused"}
        return metrics.REGISTRY.get_sample_value("knflow_triggers_skipped_total", labels) or 0.0

    async with EmbeddedStack(store, pipelines=catalog) as stack:
        ticker = asyncio.create_task(fire_schedules(stack.router, catalog, clock=lambda: just_before_a_minute))
        try:
            for _ in range(500):
                if count() >= 1:
                    break
                await asyncio.sleep(0.01)
        finally:
            ticker.cancel()
        assert count() >= 1
        assert await store.list_runs(pipeline=name) == []
    await store.close()
