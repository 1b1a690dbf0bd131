"""The router service as Knative meets it, in a real process (in-memory broker, functions in-process):
empty replies to `Prefer: reply`, PingSource ticks, the hop limit on chained pipelines, webhook secrets."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path

import pytest

from tests.processes import Process, free_port
from tests.test_fabric_e2e import http, wait_run
from tests.tokens import ROUTER_ENV, create_token
from datetime import UTC

ROOT = Path(__file__).resolve().parent.parent
PIPELINES = {
    "ticker": "metadata: {name: ticker}\ntrigger: {type: cron, schedule: '*/5 * * * *', data: {text: tick tock}}\n"
    "functions: [examples.hello]\nnodes: [{id: split, type: split-words, inputs: {text: '{{ trigger.data.text }}'}}]\n",
    "hooked": "metadata: {name: hooked}\ntrigger: {type: webhook}\n"
    "nodes: [{id: say, type: log, inputs: {message: '{{ trigger.data.m }}'}}]\n",
    "chained": "metadata: {name: chained}\ntriggers: [{type: cloudevent, filter: {type: dev.knflow.run.succeeded}}]\n"
    "nodes: [{id: say, type: log, inputs: {message: again}}]\n",
}


@pytest.fixture(scope="module")
def router(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("router")
    files = []
    for name, text in PIPELINES.items():
        (tmp / f"{name}.yaml").write_text(text)
        files.append(str(tmp / f"{name}.yaml"))
    port = free_port()
    env = {"KNFLOW_WEBHOOK_SECRET": "s3cret", "KNFLOW_MAX_HOPS": "3", "PYTHONPATH": str(ROOT), **ROUTER_ENV}
    proc = Process(
        [
            "serve",
            "router",
            "--store",
            f"sqlite:///{tmp}/runs.db",
            "--pipelines",
            *files,
            "--port",
            str(port),
            "--host",
            "127.0.0.1",
        ],
        tmp / "router.log",
        port,
        env,
    ).start()
    yield proc
    proc.stop()


def test_knative_deliveries_get_an_empty_202(router):
    headers = {
        "ce-id": "p1",
        "ce-source": "/x",
        "ce-type": "com.example.none",
        "ce-specversion": "1.0",
        "prefer": "reply",
    }
    status, body = http("POST", f"{router.url}/events", b"", headers)
    assert status == 202 and body is None


def test_a_pingsource_tick_starts_its_pipeline(router):
    headers = {
        "ce-id": "tick-1",
        "ce-source": "/apis/v1/namespaces/knflow/pingsources/ticker",
        "ce-type": "dev.knative.sources.ping",
        "ce-specversion": "1.0",
        "ce-knflowpipeline": "ticker",
        "content-type": "application/json",
    }
    status, body = http("POST", f"{router.url}/events", json.dumps({"text": "tick tock"}).encode(), headers)
    assert status == 202 and len(body["runs"]) == 1
    run = wait_run(router.url, body["runs"][0])
    assert run["status"] == "succeeded" and run["nodes"]["split"]["output"] == {"words": ["tick", "tock"]}
    other = {
        **headers,
        "ce-id": "tick-2",
        "ce-knflowpipeline": "hooked",
    }  # a tick for a pipeline without a cron trigger
    assert http("POST", f"{router.url}/events", b"{}", other)[1]["runs"] == []


def test_run_events_chain_pipelines_until_the_hop_limit(router):
    event = {
        "ce-id": "chain-1",
        "ce-source": "/knflow/router",
        "ce-type": "dev.knflow.run.succeeded",
        "ce-specversion": "1.0",
        "ce-knflowrun": "upstream",
        "ce-knflowpipeline": "other",
        "content-type": "application/json",
    }
    status, body = http("POST", f"{router.url}/events", b"{}", {**event, "ce-knflowhops": "2"})
    assert status == 202 and len(body["runs"]) == 1
    status, body = http("POST", f"{router.url}/events", b"{}", {**event, "ce-id": "chain-2", "ce-knflowhops": "3"})
    assert status == 422 and "3 pipeline hops deep; the limit is 3 (KNFLOW_MAX_HOPS)" in body["error"]


def test_webhooks_need_the_secret_or_a_run_token(router):
    body = json.dumps({"m": "hi"}).encode()
    status, answer = http("POST", f"{router.url}/hooks/hooked", body, token=None)
    assert status == 401 and "X-Knflow-Webhook-Secret" in answer["error"] and answer["scope"] == "run"
    assert http("POST", f"{router.url}/hooks/nope", body, token=None)[0] == 401  # no hint whether it exists
    wrong = {"x-knflow-webhook-secret": "nope"}
    assert http("POST", f"{router.url}/hooks/hooked", body, wrong, token=None)[0] == 401
    right = {"x-knflow-webhook-secret": "s3cret"}
    status, answer = http("POST", f"{router.url}/hooks/hooked", body, right, token=None)
    assert status == 202 and wait_run(router.url, answer["run"])["status"] == "succeeded"
    signature = "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert http("POST", f"{router.url}/hooks/hooked", body, {"x-hub-signature-256": signature}, token=None)[0] == 202
    reader = create_token(router.url, "hook-reader", "read")
    assert http("POST", f"{router.url}/hooks/hooked", body, token=reader)[0] == 401
    runner = create_token(router.url, "hook-runner", "run")
    assert http("POST", f"{router.url}/hooks/hooked", body, token=runner)[0] == 202


def test_a_bad_since_is_a_400_naming_the_value(router):
    for path in ("/replay", "/events/replay"):
        status, answer = http("POST", f"{router.url}{path}", json.dumps({"since": "banana"}).encode())
        assert status == 400 and "parameter 'since' is 'banana'; expected a duration such as 90s" in answer["error"]
        assert answer["value"] == "banana"


def test_a_json_body_that_is_no_cloudevent_gets_a_400_saying_what_is_missing(router):
    before = http("GET", f"{router.url}/runs?limit=1000")[1]
    status, answer = http("POST", f"{router.url}/events", b'{"hello": "world"}', {"content-type": "application/json"})
    assert status == 400 and answer["error"].startswith("Not a CloudEvent: no ce- headers (binary mode)")
    assert answer["content_type"] == "application/json"
    assert http("GET", f"{router.url}/runs?limit=1000")[1] == before


async def test_knflow_dev_fires_cron_schedules_like_a_pingsource(tmp_path):
    """The local stand-in for PingSource: a tick is a `dev.knative.sources.ping` event through the router."""
    import asyncio
    from datetime import datetime

    from knflow.dev import fire_schedules
    from knflow.local import EmbeddedStack
    from router.catalog import StorePipelines
    from router.store.sqlite import SqliteStore
    from router.loader import load_string

    store = SqliteStore(tmp_path / "k.db")
    catalog = StorePipelines(store)
    await catalog.put(load_string(PIPELINES["ticker"].replace("*/5 * * * *", "* * * * *"), "ticker.yaml"))
    just_before_a_minute = datetime(2026, 1, 1, 8, 59, 59, 990000, tzinfo=UTC)
    async with EmbeddedStack(store, pipelines=catalog) as stack:
        ticker = asyncio.create_task(fire_schedules(stack.router, catalog, clock=lambda: just_before_a_minute))
        try:
            for _ in range(500):
                runs = await store.list_runs(pipeline="ticker")
                if runs and runs[0]["status"] == "succeeded":
                    break
                await asyncio.sleep(0.01)
        finally:
            ticker.cancel()
        runs = await store.list_runs(pipeline="ticker")
    assert len(runs) == 1  # the same tick again is the same run
    assert (
        runs[0]["trigger"]["type"] == "dev.knative.sources.ping"
        and runs[0]["trigger"]["id"] == "ticker@2026-01-01T09:00:00+00:00"
    )
    assert runs[0]["nodes"]["split"]["output"] == {"words": ["tick", "tock"]}
