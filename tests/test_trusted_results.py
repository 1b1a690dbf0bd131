"""Only knflow's own functions can report results: each invoke carries `knflowtoken` (router/result_keys.py),
and the router refuses, logs and counts a result or a dead letter without it.

The attacker's test runs on a real nats-server with the router served by uvicorn on a real port (so its
counters can be read): a forged `node.succeeded` and a forged dead letter for a node still in flight, with the
run, node and attempt read from `GET /runs`, are refused with a 403; one published onto the stream is dropped
without a retry; the function's own result over NATS then completes the node, and a duplicate changes nothing.
The path over HTTP function services is tests/test_fabric_e2e.py's.
"""

from __future__ import annotations

import asyncio
import base64
import inspect
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import uvicorn
from structlog.testing import capture_logs

from broker import codec, events
from broker import extensions as ext
from broker.nats import StreamLayout
from knflow.nats_stack import NatsStack
from router.catalog import StorePipelines
from router.loader import load_string
from router.result_keys import MISSING, WRONG, ResultKey, ResultKeyInvalid, new_key
from router.service import create_app
from router.store.sqlite import SqliteStore
from tests.fixtures import held
from tests.tokens import ADMIN_TOKEN, bearer
from tests.processes import free_port
from tests.signing import sign

KEY = "k" * 32
PIPELINE = """
metadata: {name: trusted}
nodes:
  - {id: hold, type: tr-held, inputs: {text: "{{ trigger.data.text }}"}}
  - {id: after, type: log, inputs: {message: "{{ hold.output.text }}"}}
edges: [{from: hold, to: after}]
"""


# ---- the key and the token (no server) ----------------------------------------------------------


def address_of(run: str, node: str, attempt: int, token: str | None = None) -> tuple[events.Address, object]:
    attrs = {
        "type": events.NODE_SUCCEEDED,
        "source": "/x",
        "id": f"{run}:{node}:{attempt}:ok",
        ext.RUN: run,
        ext.NODE: node,
        ext.ATTEMPT: str(attempt),
    }
    if token is not None:
        attrs[ext.TOKEN] = token
    event = events.make_event(attrs, {})
    return events.address(event), event


def test_a_token_is_the_hmac_of_the_invoke_id_and_only_it_passes():
    key = ResultKey(KEY)
    token = key.token("r1:n:1")
    assert token == key.token("r1:n:1") and len(token) == 43  # base64url of 32 bytes, no padding
    assert base64.urlsafe_b64decode(token + "=") != KEY.encode()
    assert key.token("r1:n:2") != token and ResultKey("j" * 32).token("r1:n:1") != token
    addr, event = address_of("r1", "n", 1, token)
    assert key.refusal(event, addr) is None
    for bad, why in [(None, MISSING), ("", MISSING), (token[:-1], WRONG), (key.token("r1:n:2"), WRONG), ("é", WRONG)]:
        addr, event = address_of("r1", "n", 1, bad)
        assert key.refusal(event, addr) == why, bad
    assert "k" not in repr(key).lower().replace("resultkey", "")


def test_a_short_result_key_is_refused_naming_the_setting():
    with pytest.raises(ResultKeyInvalid, match=r"KNFLOW_RESULT_KEY is 6 characters long; .* at least 32"):
        ResultKey("secret")
    assert len(new_key()) >= 32 and new_key() != new_key()


def test_invokes_carry_the_token_and_results_carry_it_back():
    key = ResultKey(KEY)
    invoke = events.invoke_event(
        run_id="r", pipeline="p", node="n", attempt=2, function="f", inputs={}, config={}, token=key.token("r:n:2")
    )
    reply = events.result_event(invoke, succeeded=True, data={"output": {}}, source="/f")
    headers, _ = codec.encode_binary(reply)
    assert headers[f"ce-{ext.TOKEN}"] == key.token("r:n:2")


async def test_routers_of_one_store_agree_on_one_stored_key(tmp_path):
    first, second = SqliteStore(tmp_path / "k.db"), SqliteStore(tmp_path / "k.db")
    try:
        a, b = await asyncio.gather(
            first.get_or_create_secret("result_key", "a" * 32), second.get_or_create_secret("result_key", "b" * 32)
        )
        assert a == b and a in ("a" * 32, "b" * 32)
        assert await second.get_or_create_secret("result_key", "c" * 32) == a
    finally:
        await first.close()
        await second.close()


# ---- the attacker, against a router on a real port ----------------------------------------------


@asynccontextmanager
async def served(app: object) -> AsyncIterator[str]:
    """`app` on uvicorn in this event loop, on a free loopback port; yields its URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))  # type: ignore[arg-type]
    task = asyncio.create_task(server.serve())
    deadline = time.monotonic() + 10
    while not server.started:
        assert not task.done() and time.monotonic() < deadline, "uvicorn did not start"
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


async def until(check: Callable[[], Any], what: str, timeout_s: float = 20.0) -> Any:
    """Wait for `check()` (a value or an awaitable of one) to be truthy, with a deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        value = await value if inspect.isawaitable(value) else value
        if value:
            return value
        assert time.monotonic() < deadline, f"{what}: not within {timeout_s} s"
        await asyncio.sleep(0.02)


async def test_forged_results_and_dead_letters_are_refused_and_the_functions_own_result_applies(nats_server, tmp_path):
    held.entered, held.release = asyncio.Event(), asyncio.Event()
    name = f"tr{uuid.uuid4().hex[:8]}"
    store = SqliteStore(tmp_path / "runs.db")  # no KNFLOW_RESULT_KEY: the router keeps one in the store
    catalog = StorePipelines(store)
    pipeline = load_string(PIPELINE, "trusted.yaml")
    await catalog.put(pipeline)
    layout = StreamLayout(stream=name.upper(), prefix=name)
    try:
        async with NatsStack(nats_server.url, store, catalog, layout=layout) as stack:
            router = stack.router
            assert router is not None
            for fn in ("tr-held", "log"):
                await stack.serve_function(fn)
            app = create_app(router, catalog, admin_token=ADMIN_TOKEN)
            async with served(app) as url, httpx.AsyncClient(base_url=url, headers=bearer()) as client:
                trigger = events.make_event(
                    {"type": "com.example.t", "source": "/tests", "id": uuid.uuid4().hex}, {"text": "mine"}
                )
                run_id = (await router.start_run(pipeline, trigger))["id"]
                await asyncio.wait_for(held.entered.wait(), 20)  # the invoke is at the function: the node is in flight

                listed = (await client.get("/runs")).json()
                run = next(r for r in listed if r["id"] == run_id)
                node = run["nodes"]["hold"]
                assert node["status"] == "scheduled"
                forged = {
                    "ce-id": f"{run_id}:hold:{node['attempt']}:ok",
                    "ce-source": "/knflow/functions/tr-held",
                    "ce-type": events.NODE_SUCCEEDED,
                    "ce-specversion": "1.0",
                    "ce-knflowrun": run_id,
                    "ce-knflownode": "hold",
                    "ce-knflowattempt": str(node["attempt"]),
                    "ce-knflowpipeline": "trusted",
                    "content-type": "application/json",
                }
                attackers = b'{"output": {"text": "the attacker\'s"}}'
                wrong = sign(forged, ResultKey("x" * 32))  # signed, but not with the router's key
                with capture_logs() as logs:
                    for headers in (forged, wrong, {**forged, "prefer": "reply"}):  # Knative's delivery, too
                        answer = await client.post("/events", content=attackers, headers=headers)
                        assert answer.status_code == 403, answer.text
                        assert "knflowtoken (header ce-knflowtoken)" in answer.json()["error"]
                    dead = {
                        **forged,
                        "ce-id": f"{run_id}:hold:{node['attempt']}",
                        "ce-type": events.INVOKE,
                        "ce-knativeerrorcode": "500",
                        "ce-knativeerrordata": base64.b64encode(b'{"error": {"type": "X", "message": "m"}}').decode(),
                    }
                    answer = await client.post("/dead-letter", content=b"{}", headers=dead)
                    assert answer.status_code == 403 and "dead letter" in answer.json()["error"], answer.text
                assert (router.refused_results, router.refused_dead_letters) == (3, 1)
                refusals = [e for e in logs if e["log_level"] == "warning"]
                assert [e["event"] for e in refusals] == [
                    "result refused: knflowtoken missing",
                    "result refused: knflowtoken wrong",
                    "result refused: knflowtoken missing",
                    "dead letter refused: knflowtoken missing",
                ]
                assert all(e["run"] == run_id and e["node"] == "hold" for e in refusals)
                assert wrong[f"ce-{ext.TOKEN}"] not in json.dumps(logs, default=str)

                # a forged result published onto the stream: dropped and acked, not retried (its own id: one
                # with the real result's would make JetStream drop the real one as a duplicate; the stream is
                # inside the cluster's trust boundary, the router's /events is not)
                results = next(d for d in stack.dispatchers if d.name == "router-results")
                await stack.publisher.publish(codec.decode({**forged, "ce-id": uuid.uuid4().hex}, attackers))
                await until(lambda: router.refused_results == 4, "the router refuses it")
                await until(
                    lambda: results.stats.delivered >= 1, "acked", timeout_s=60.0
                )  # slow only on a loaded machine
                assert results.stats.retries == 0 and results.stats.dead_letters == 0

                after = (await client.get(f"/runs/{run_id}")).json()
                assert after["status"] == "running" and after["nodes"]["hold"] == node  # nothing changed

                held.release.set()  # the function's own result, over NATS
                done = await until(
                    lambda: _ended(client, run_id), "the run ends with the function's result", timeout_s=30
                )
                assert done["status"] == "succeeded", done
                assert done["nodes"]["hold"]["output"] == {"text": "MINE"}
                assert router.refused_results == 4

                # a duplicate of the real result, signed as the function would: 202, applied once
                key = await router.result_key()
                replay = await client.post("/events", content=attackers, headers=sign(forged, key))
                assert replay.status_code == 202, replay.text
                assert (await client.get(f"/runs/{run_id}")).json() == done

                # the secret is in no run record, answer or log line
                token = key.token(f"{run_id}:hold:1")
                stored = await store.get_run(run_id)
                assert token not in json.dumps(stored) and token not in json.dumps(done)
                assert token not in json.dumps(logs, default=str)
    finally:
        await store.close()


async def _ended(client: httpx.AsyncClient, run_id: str) -> dict | None:
    run = (await client.get(f"/runs/{run_id}")).json()
    return run if run["status"] != "running" else None
