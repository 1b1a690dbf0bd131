"""Issue 12, played as the attacker: every attack at the top of the issue, run against one real deployed stack
(a nats-server, `knflow serve router` with `KNFLOW_ADMIN_TOKEN` on SQLite, function services as `knflow serve
function` processes, a `knflow serve dispatcher`), and an "internal" HTTP service on loopback standing for what
the attacker wants to reach. Each test asserts the refusal (status and the reason named) and that nothing
happened; the legitimate paths (a Standard Webhooks-signed webhook, a token per scope) still work.

Traffic goes to loopback only: the addresses of other classes are refused by the SSRF guard's own check before
any connection, which is what is asserted. The focused tests of each defence are in test_tokens.py,
test_trusted_results.py, test_builtin_http.py, test_netguard.py, test_limits.py, test_signed_webhooks.py,
test_redact.py and test_knative_hardening.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from pymongo import MongoClient
from standardwebhooks.webhooks import Webhook

from tests.doubles.openai_server import OpenAIServerDouble
from tests.processes import Process, free_port
from tests.signing import RESULT_KEY
from tests.test_fabric_e2e import http, stream_env, wait_run
from tests.test_knative_hardening import restricted_violations
from tests.test_limits import BOMB, invoke, post_chunked
from tests.test_signed_webhooks import standard_headers
from tests.test_webhook_auth import VECTOR_BODY, VECTOR_ID, VECTOR_KEY, VECTOR_SIG, VECTOR_TS
from tests.tokens import ADMIN_TOKEN, ROUTER_ENV, create_token

ROOT = Path(__file__).resolve().parent.parent
LLM_KEY = "sk-cluster-" + secrets.token_urlsafe(16)  # the cluster's key for its own LLM server
MAX_BODY_BYTES = 300_000  # the function services' KNFLOW_MAX_BODY_BYTES
MAX_RESPONSE_BYTES = 100_000  # http-request's KNFLOW_HTTP_MAX_RESPONSE_BYTES
BLOB_THRESHOLD_BYTES = 4096
FUNCTIONS = ("split-words", "http-request", "llm-generate", "mongodb-query")
PIPELINES = {
    "signed": "trigger: {type: webhook, auth: {scheme: standard-webhooks, secret_env: SIGNED_WEBHOOK_SECRET}}\n"
    "nodes: [{id: split, type: split-words, inputs: {text: '{{ trigger.data.text }}'}}]\n",
    "words": "trigger: {type: webhook}\n"
    "nodes: [{id: split, type: split-words, inputs: {text: '{{ trigger.data.text }}'}}]\n",
    # no dispatcher serves `delay`: the node stays running
    "parked": "trigger: {type: webhook}\nnodes: [{id: wait, type: delay, inputs: {seconds: 1}}]\n",
    "fetch": "trigger: {type: webhook}\n"
    "nodes: [{id: fetch, type: http-request, retry: {retries: 0}, inputs: {url: '{{ trigger.data.url }}'}}]\n",
    "chat": "trigger: {type: webhook}\nnodes: [{id: ask, type: llm-generate, inputs: {prompt: hello}}]\n",
    "users": "trigger: {type: webhook}\nnodes: [{id: find, type: mongodb-query, "
    "inputs: {collection: users, filter: {password: '{{ trigger.data.password }}'}}}]\n",
    "costly": "trigger: {type: webhook}\nnodes: [{id: a, type: split-words, inputs: {text: x}}, "
    "{id: b, type: split-words, inputs: {text: y}}]\n"
    "edges: [{from: a, to: b, when: 'trigger.data.l.map(x, trigger.data.l.map(y, x + y)).size() > 0'}]\n",
}


# ---- the stack ----------------------------------------------------------------------------------


class Internal(BaseHTTPRequestHandler):
    """A loopback HTTP service: `/secret` (what the attacker wants), `/big` (1 MiB), `/leak` (an error page
    with credentials), `/redirect?to=URL`, `/ok`. Every request is counted in the server's `hits`."""

    def do_GET(self) -> None:
        self.server.hits.append(self.path)  # type: ignore[attr-defined]
        if self.path.startswith("/redirect?to="):
            self.send_response(302)
            self.send_header("location", self.path.split("=", 1)[1])
            self.end_headers()
            return
        status, body = {
            "/secret": (200, b"internal secret: db password hunter2"),
            "/ok": (200, b"hello from the allowed server"),
            "/big": (200, b"x" * (1024 * 1024)),
            "/leak": (400, b"<h1>Internal error</h1> Authorization: Bearer tok-abcdef123456 " + b"z" * 2000),
        }.get(self.path, (404, b"no"))
        self.send_response(status)
        self.send_header("content-type", "text/plain")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        with contextlib.suppress(ConnectionError):  # a client that stopped reading at its cap
            self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def serve_http() -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Internal)
    server.hits = []  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


class LoopThread:
    """An event loop in a thread, for the aiohttp test doubles next to the synchronous tests."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


class Stack:
    def __init__(self, tmp: Path, router: Process, functions: dict[str, Process], store_url: str) -> None:
        self.tmp, self.router, self.functions, self.store_url = tmp, router, functions, store_url
        self.url = router.url
        self.internal: ThreadingHTTPServer
        self.allowed: ThreadingHTTPServer
        self.llm: OpenAIServerDouble
        self.attacker_llm: OpenAIServerDouble
        self.mongo_url = ""


@pytest.fixture(scope="module")
def stack(nats_server, mongo_server, tmp_path_factory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("attacker")
    loop = LoopThread()
    internal, allowed = serve_http(), serve_http()
    llm = loop.run(OpenAIServerDouble().start())
    attacker_llm = loop.run(OpenAIServerDouble().start())
    mongo_url = mongo_server.database_url(f"knflow_attack_{uuid.uuid4().hex[:8]}")
    with MongoClient(mongo_url) as client:
        client.get_default_database().users.insert_many(
            [{"name": "alice", "password": "alice-pw"}, {"name": "bob", "password": "bob-pw"}]
        )
    env = {
        **stream_env(),
        "KNFLOW_BLOB_URL": (tmp / "blobs").as_uri(),
        "KNFLOW_BLOB_THRESHOLD_BYTES": str(BLOB_THRESHOLD_BYTES),
        "KNFLOW_MAX_BODY_BYTES": str(MAX_BODY_BYTES),
    }
    function_env = {
        **env,
        "KNFLOW_HTTP_ALLOW_NETS": f"127.0.0.1:{allowed.server_address[1]}",  # the allowed server, nothing else
        "KNFLOW_HTTP_MAX_RESPONSE_BYTES": str(MAX_RESPONSE_BYTES),
        "KNFLOW_OPENAI_BASE_URL": llm.url,
        "KNFLOW_OPENAI_API_KEY": LLM_KEY,
        "KNFLOW_OPENAI_MODEL": "test-model",
        "KNFLOW_MONGODB_URL": mongo_url,
    }
    store_url = f"sqlite:///{tmp}/runs.db"
    router_port = free_port()
    router = Process(
        [
            *("serve", "router", "--nats", nats_server.url, "--store", store_url, "--functions", "examples.hello"),
            *("--port", str(router_port), "--host", "127.0.0.1"),
        ],
        tmp / "router.log",
        router_port,
        {**env, **ROUTER_ENV, "KNFLOW_RESULT_KEY": RESULT_KEY, "SIGNED_WEBHOOK_SECRET": VECTOR_KEY},
    )
    functions = {}
    for name in FUNCTIONS:
        port = free_port()
        args = ["serve", "function", name, "--functions", "examples.hello", "--port", str(port), "--host", "127.0.0.1"]
        functions[name] = Process(args, tmp / f"{name}.log", port, function_env)
    procs = [router, *functions.values()]
    try:
        for p in procs:  # start together, then wait for each: the stack is up in the time of its slowest part
            p.launch()
        for p in procs:
            p.wait_ready(60)
        routes = [a for name, p in functions.items() for a in ("--function", f"{name}={p.url}/")]
        dispatcher = Process(
            [
                *("serve", "dispatcher", "--nats", nats_server.url, *routes, "--functions", "examples.hello"),
                *("--dead-letter", f"{router.url}/dead-letter"),
            ],
            tmp / "dispatcher.log",
            None,
            env,
        )
        procs.append(dispatcher)
        dispatcher.start(60)
        for name, text in PIPELINES.items():  # stored by an admin, as a legitimate user would
            status, answer = http(
                "PUT", f"{router.url}/pipelines/{name}", f"metadata: {{name: {name}}}\n{text}".encode()
            )
            assert status == 200, (name, answer)
        s = Stack(tmp, router, functions, store_url)
        s.internal, s.allowed, s.llm, s.attacker_llm, s.mongo_url = internal, allowed, llm, attacker_llm, mongo_url
        yield s
    finally:
        for p in procs:
            p.stop()
        for server in (internal, allowed):
            server.shutdown()
            server.server_close()
        loop.run(llm.stop())
        loop.run(attacker_llm.stop())
        loop.close()


def hook(stack: Stack, pipeline: str, data: Any, token: str | None = ADMIN_TOKEN) -> tuple[int, Any]:
    body = data if isinstance(data, bytes) else json.dumps(data).encode()
    return http("POST", f"{stack.url}/hooks/{pipeline}", body, {"content-type": "application/json"}, token)


def run_of(stack: Stack, pipeline: str, data: Any) -> dict:
    status, answer = hook(stack, pipeline, data)
    assert status == 202, answer
    return wait_run(stack.url, answer["run"])


def runs(stack: Stack) -> list:
    status, listed = http("GET", f"{stack.url}/runs?limit=1000")
    assert status == 200
    return listed  # type: ignore[return-value]


def node_error(run: dict, node: str) -> dict:
    assert run["status"] == "failed", run
    return run["nodes"][node]["error"]


def wait_for(check: Any, what: str, timeout_s: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while not (value := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"not {what} in {timeout_s} s")
        time.sleep(0.05)
    return value


# ---- the legitimate paths -----------------------------------------------------------------------


def test_a_standard_webhooks_signed_delivery_runs_the_real_function(stack):
    assert Webhook(VECTOR_KEY).sign(VECTOR_ID, datetime.fromtimestamp(VECTOR_TS, UTC), VECTOR_BODY.decode()) == (
        VECTOR_SIG
    )  # the sender's library signs the spec's test vector as published
    old = {"webhook-id": VECTOR_ID, "webhook-timestamp": str(VECTOR_TS), "webhook-signature": VECTOR_SIG}
    status, answer = http("POST", f"{stack.url}/hooks/signed", VECTOR_BODY, old, token=None)
    assert status == 401 and answer["error"], answer  # the vector itself is from 2021: past the tolerance
    body = b'{"text": "signed by a sender"}'
    status, answer = http(
        "POST", f"{stack.url}/hooks/signed", body, standard_headers(VECTOR_KEY, "msg_attacker_1", body), token=None
    )
    assert status == 202, answer
    run = wait_run(stack.url, answer["run"])
    assert run["status"] == "succeeded" and run["nodes"]["split"]["output"] == {
        "words": ["signed", "by", "a", "sender"]
    }
    unsigned = http("POST", f"{stack.url}/hooks/signed", body, {"content-type": "application/json"}, token=None)
    assert unsigned[0] == 401


def test_a_token_per_scope_does_exactly_what_its_scope_allows(stack):
    tokens = {scope: create_token(stack.url, f"attacker-{scope}", scope) for scope in ("read", "run", "operate")}
    done = run_of(stack, "words", {"text": "a finished run"})
    doc = b"metadata: {name: by-token}\nnodes: [{id: a, type: split-words, inputs: {text: x}}]\n"
    put = ("PUT", f"{stack.url}/pipelines/by-token", doc, {"content-type": "application/yaml"})
    start = ("POST", f"{stack.url}/hooks/words", b'{"text": "by token"}', {"content-type": "application/json"})
    replay = (
        "POST",
        f"{stack.url}/runs/{done['id']}/replay",
        b'{"from": "split"}',
        {"content-type": "application/json"},
    )
    listing = ("GET", f"{stack.url}/runs", None, {})
    expected = {  # scope: (what it may do, the first thing it may not, the scope that needs)
        "read": (listing, start, "run"),
        "run": (start, replay, "operate"),
        "operate": (replay, put, "admin"),
    }
    for scope, (allowed, refused, needed) in expected.items():
        status, answer = http(*allowed, token=tokens[scope])
        assert status in (200, 202), (scope, answer)
        status, answer = http(*refused, token=tokens[scope])
        assert status == 403 and answer["scope"] == needed, (scope, answer)
    assert http(*put, token=ADMIN_TOKEN)[0] == 200
    status, answer = http("POST", f"{stack.url}/hooks/words", b'{"text": "by token"}', token=tokens["run"])
    assert wait_run(stack.url, answer["run"])["status"] == "succeeded"


# ---- 1. nothing asks who is calling -------------------------------------------------------------


def test_every_route_asks_who_is_calling(stack):
    before = runs(stack)
    doc = b"metadata: {name: x}\nnodes: [{id: a, type: http-request, inputs: {url: 'http://127.0.0.1/'}}]\n"
    external = {"ce-id": "e1", "ce-source": "/x", "ce-type": "com.example.x", "ce-specversion": "1.0"}
    for method, path, body, headers, scope in [
        ("PUT", "/pipelines/x", doc, {"content-type": "application/yaml"}, "admin"),
        ("DELETE", "/pipelines/fetch", None, {}, "admin"),
        ("POST", "/events", b"{}", {**external, "content-type": "application/json"}, "run"),
        ("POST", "/hooks/fetch", b'{"url": "http://127.0.0.1/"}', {"content-type": "application/json"}, None),
        ("GET", "/runs", None, {}, "read"),
    ]:
        status, answer = http(method, f"{stack.url}{path}", body, headers, token=None)
        assert status == 401, (path, answer)
        if scope:  # (a webhook's 401 says nothing of whether the pipeline exists)
            assert answer["scope"] == scope and f"needs a token with scope '{scope}'" in answer["error"], answer
    read = create_token(stack.url, "attacker-read-1", "read")
    status, answer = http("PUT", f"{stack.url}/pipelines/x", doc, {"content-type": "application/yaml"}, read)
    assert status == 403 and answer["scope"] == "admin", answer
    assert http("GET", f"{stack.url}/pipelines/x")[0] == 404 and http("GET", f"{stack.url}/pipelines/fetch")[0] == 200
    assert runs(stack) == before


# ---- 2. forged results --------------------------------------------------------------------------


def test_a_forged_result_for_a_running_node_is_refused(stack):
    status, answer = hook(stack, "parked", {})
    run_id = answer["run"]
    read = create_token(stack.url, "attacker-read-2", "read")
    node = wait_for(lambda: http("GET", f"{stack.url}/runs/{run_id}", token=read)[1]["nodes"]["wait"], "read")
    assert node["status"] in ("scheduled", "running"), node
    forged = {
        "ce-id": f"{run_id}:wait:{node['attempt']}:ok",
        "ce-source": "/knflow/functions/delay",
        "ce-type": "dev.knflow.node.succeeded",
        "ce-specversion": "1.0",
        "ce-knflowrun": run_id,
        "ce-knflownode": "wait",
        "ce-knflowattempt": str(node["attempt"]),
        "ce-knflowpipeline": "parked",
        "content-type": "application/json",
    }
    status, answer = http("POST", f"{stack.url}/events", b'{"output": {"forged": true}}', forged, token=None)
    assert status == 403 and "knflowtoken" in answer["error"], answer
    status, answer = http("POST", f"{stack.url}/events", b'{"output": {"forged": true}}', forged)  # even as admin
    assert status == 403 and "knflowtoken" in answer["error"], answer
    dead = {**forged, "ce-id": f"{run_id}:wait:1", "ce-type": "dev.knflow.invoke", "ce-knativeerrorcode": "500"}
    status, answer = http("POST", f"{stack.url}/dead-letter", b"{}", dead, token=None)
    assert status == 403 and "knflowtoken" in answer["error"], answer
    after = http("GET", f"{stack.url}/runs/{run_id}")[1]
    assert after["status"] == "running" and after["nodes"]["wait"]["status"] == node["status"]
    assert "forged" not in json.dumps(after)


# ---- 3. http-request SSRF -----------------------------------------------------------------------


def test_http_request_reaches_only_what_the_allow_list_opens(stack):
    internal, allowed = stack.internal.server_address[1], stack.allowed.server_address[1]
    ok = run_of(stack, "fetch", {"url": f"http://127.0.0.1:{allowed}/ok"})
    assert ok["status"] == "succeeded" and ok["nodes"]["fetch"]["output"] == "hello from the allowed server"
    for url, reason in [
        (f"http://127.0.0.1:{internal}/secret", "loopback"),
        (f"http://localhost:{internal}/secret", "internal name"),
        (f"http://[::ffff:127.0.0.1]:{internal}/secret", "loopback"),
        (f"http://[::ffff:127.0.0.1]:{allowed}/ok", "loopback"),  # the mapped form is not the allowed address
        ("http://169.254.169.254/latest/meta-data/iam/", "metadata"),  # refused by the guard's check, not dialled
        ("http://kubernetes.default.svc/api/v1/secrets", "internal name"),  # refused before any lookup
        (f"http://127.0.0.1:{allowed}/redirect?to=http://127.0.0.1:{internal}/secret", "loopback"),
        (f"http://127.0.0.1:{allowed}/redirect?to=http://169.254.169.254/latest/meta-data/", "metadata"),
    ]:
        error = node_error(run_of(stack, "fetch", {"url": url}), "fetch")
        assert error["type"] == "HttpAddressRefused" and reason in error["detail"]["reason"], (url, error)
        assert "SSRF guard" in error["message"] and "KNFLOW_HTTP_ALLOW_NETS" in error["message"], error
    assert stack.internal.hits == []  # nothing ever reached the internal service


def test_http_request_caps_bodies_and_excerpts_error_pages(stack):
    allowed = stack.allowed.server_address[1]
    error = node_error(run_of(stack, "fetch", {"url": f"http://127.0.0.1:{allowed}/big"}), "fetch")
    assert error["type"] == "HttpResponseTooLarge" and f"{MAX_RESPONSE_BYTES}" in error["message"], error
    run = run_of(stack, "fetch", {"url": f"http://127.0.0.1:{allowed}/leak"})
    error = node_error(run, "fetch")
    assert len(error["detail"]["body"]) <= 200 and "tok-abcdef123456" not in json.dumps(run), error
    assert "z" * 300 not in json.dumps(run)


# ---- 4. credentials stay with their hosts -------------------------------------------------------


def test_llm_generate_sends_the_clusters_key_only_to_the_clusters_server(stack):
    legit = run_of(stack, "chat", {})
    assert legit["status"] == "succeeded" and legit["nodes"]["ask"]["output"] == "echo: hello", legit
    assert stack.llm.requests[-1]["authorization"] == f"Bearer {LLM_KEY}"
    doc = (
        "metadata: {name: exfil}\ntrigger: {type: webhook}\n"
        "nodes: [{id: ask, type: llm-generate, inputs: {prompt: hi}, "
        f"config: {{base_url: '{stack.attacker_llm.url}'}}}}]\n"
    )
    assert http("PUT", f"{stack.url}/pipelines/exfil", doc.encode(), {"content-type": "application/yaml"})[0] == 200
    run_of(stack, "exfil", {})
    seen = json.dumps(stack.attacker_llm.requests)
    assert stack.attacker_llm.requests and LLM_KEY not in seen, seen
    stolen = doc.replace("'}}]", "', api_key_env: KNFLOW_OPENAI_API_KEY}}]").replace("exfil", "exfil-named")
    assert (
        http("PUT", f"{stack.url}/pipelines/exfil-named", stolen.encode(), {"content-type": "application/yaml"})[0]
        == 200
    )
    error = node_error(run_of(stack, "exfil-named", {}), "ask")
    assert "api_key_env" in error["message"] and "environment's server only" in error["message"], error
    assert LLM_KEY not in json.dumps(stack.attacker_llm.requests) and LLM_KEY not in json.dumps(runs(stack))


# ---- 5. MongoDB operator injection --------------------------------------------------------------


def test_a_template_cannot_inject_a_mongodb_operator(stack):
    legit = run_of(stack, "users", {"password": "alice-pw"})
    assert [d["name"] for d in legit["nodes"]["find"]["output"]["documents"]] == ["alice"]
    run = run_of(stack, "users", {"password": {"$ne": None}})
    error = node_error(run, "find")
    assert "$ne" in error["message"] and "inputs.filter.password" in error["message"], error
    assert "alice-pw" not in json.dumps(run) and "bob" not in json.dumps(run)


# ---- 6. stored data never names code ------------------------------------------------------------


def test_a_stored_pipeline_cannot_name_code_and_replay_imports_none(stack):
    marker, module = stack.tmp / "imported", stack.tmp / "evil.py"
    module.write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    doc = f"metadata: {{name: evil}}\nfunctions: ['{module}']\nnodes: [{{id: a, type: split-words}}]\n"
    status, answer = http("PUT", f"{stack.url}/pipelines/evil", doc.encode(), {"content-type": "application/yaml"})
    assert status == 400 and "functions" in json.dumps(answer), answer
    assert http("GET", f"{stack.url}/pipelines/evil")[0] == 404
    victim = run_of(stack, "words", {"text": "replay me"})

    async def plant() -> None:  # someone with write access to the store plants a list of modules
        from router.store import open_store

        store = open_store(stack.store_url)
        try:
            stored = await store.get_pipeline("words")
            await store.put_pipeline("planted", {**stored, "metadata": {"name": "planted"}, "functions": [str(module)]})
            await store.put_pipeline("words", {**stored, "functions": [str(module)]})
        finally:
            await store.close()

    asyncio.run(plant())
    try:
        out = subprocess.run(
            [sys.executable, "-m", "knflow.cli", "replay", victim["id"], "--store", stack.store_url],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=stack.tmp,
            env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "KNFLOW_RESULT_KEY": RESULT_KEY},
        )
    finally:
        asyncio.run(restore_words(stack))
    assert not marker.exists(), out
    assert out.returncode != 0 and "--functions" in out.stderr and "Traceback" not in out.stderr, out.stderr


async def restore_words(stack: Stack) -> None:
    from router.store import open_store

    store = open_store(stack.store_url)
    try:
        stored = await store.get_pipeline("words")
        stored.pop("functions", None)
        await store.put_pipeline("words", stored)
    finally:
        await store.close()


# ---- 7. limits ----------------------------------------------------------------------------------


def test_a_yaml_bomb_is_refused_fast_and_the_router_stays_responsive(stack):
    started = time.perf_counter()
    status, answer = http("PUT", f"{stack.url}/pipelines/bomb", BOMB.encode(), {"content-type": "application/yaml"})
    assert status == 422 and "YAML aliases expanded" in answer["error"] and "50,000" in answer["error"], answer
    assert time.perf_counter() - started < 1.0
    started = time.perf_counter()
    assert http("GET", f"{stack.url}/healthz")[0] == 200 and http("GET", f"{stack.url}/pipelines/bomb")[0] == 404
    assert time.perf_counter() - started < 0.5


def test_a_costly_when_is_refused_quickly(stack):
    started = time.perf_counter()
    run = run_of(stack, "costly", {"l": list(range(400))})
    assert time.perf_counter() - started < 5
    assert run["status"] == "failed" and "edge a -> b" in json.dumps(run) and "MAX_CEL_COST" in json.dumps(run)
    assert "b" not in run["nodes"] or run["nodes"]["b"]["status"] != "succeeded"


def test_a_chunked_body_over_the_function_servers_limit_is_a_413(stack):
    headers, _ = invoke("attacker-run", {}, function="split-words")
    status, answer = post_chunked(stack.functions["split-words"].port, headers, 8)  # 512 KiB, no Content-Length
    assert status == 413 and f"the limit is {MAX_BODY_BYTES:,} bytes" in answer["error"], answer


def test_json_nested_100000_deep_is_a_400(stack):
    deep = b"[" * 100_000 + b"]" * 100_000
    before = runs(stack)
    status, answer = hook(stack, "words", b'{"text": ' + deep + b"}")
    assert status == 400 and "deep" in answer["error"], answer
    headers, _ = invoke("attacker-run", {}, function="split-words")
    status, answer = http("POST", stack.functions["split-words"].url + "/", deep, headers, token=None)
    assert status == 400 and "deep" in answer["error"], answer
    assert runs(stack) == before


# ---- 8. blob references are bound to their run --------------------------------------------------


def test_another_runs_blob_reference_fed_in_is_refused_and_nothing_leaks(stack):
    words = [f"private{i}" for i in range(BLOB_THRESHOLD_BYTES // 8)]
    victim = run_of(stack, "words", {"text": " ".join(words)})
    ref = victim["nodes"]["split"]["output"]
    assert victim["status"] == "succeeded" and "$blob" in ref, victim  # what a read token shows of it
    status, answer = hook(stack, "words", {"text": ref})
    assert status == 400 and answer["field"] == "text" and "$blob" in answer["error"], answer
    headers, body = invoke("attacker-run", {"text": ref}, function="split-words")  # straight to the function
    status, answer = http("POST", stack.functions["split-words"].url + "/", body, headers, token=None)
    assert "does not belong to run 'attacker-run'" in json.dumps(answer), answer
    assert "private1" not in json.dumps(answer)


# ---- 9. hardened manifests ----------------------------------------------------------------------


def test_generated_services_are_restricted_and_function_services_cluster_local():
    out = subprocess.run(
        [sys.executable, "-m", "knflow.cli", "manifests", str(ROOT / "examples" / "hello.yaml")],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        cwd=ROOT,  # the project the image is built from
    )
    assert out.returncode == 0, out.stderr
    services = [m for m in yaml.safe_load_all(out.stdout) if m and m["kind"] == "Service"]
    assert len(services) > 1
    for service in services:
        pod = service["spec"]["template"]["spec"]
        assert restricted_violations(pod) == [], service["metadata"]["name"]
        visibility = service["metadata"].get("labels", {}).get("networking.knative.dev/visibility")
        assert visibility == (None if service["metadata"]["name"] == "knflow-router" else "cluster-local"), service


# ---- 10. knflow dev and bad parameters ----------------------------------------------------------


def test_knflow_dev_hides_the_store_password_and_a_bad_limit_is_a_400(stack, mongo_server, tmp_path):
    password = "dev-Pa55-" + secrets.token_hex(4)
    host = mongo_server.url.split("://", 1)[1].split("/", 1)[0]
    store = f"mongodb://app:{password}@{host}/knflow_dev_attack?directConnection=true&serverSelectionTimeoutMS=60000"
    port = free_port()
    env = {"KNFLOW_NATS_URL": "", "KNFLOW_MONGODB_URL": "", "KNFLOW_RESULT_KEY": secrets.token_hex(32)}
    dev = Process(
        ["dev", "--memory", "--port", str(port), "--store", store], tmp_path / "dev.log", port, env, cwd=tmp_path
    )
    dev.start(timeout_s=60)
    try:
        status, answer = http(
            "POST", f"{dev.url}/replay", b'{"limit": "x"}', {"content-type": "application/json"}, None
        )
        assert status == 400 and "limit" in json.dumps(answer), answer
    finally:
        dev.stop()
    assert password not in dev.output(max_chars=10**7) and "app:****@" in dev.output()
    status, answer = http("POST", f"{stack.url}/replay", b'{"limit": "x"}', {"content-type": "application/json"})
    assert status == 400 and "limit" in json.dumps(answer), answer
    assert password not in stack.router.output(max_chars=10**8)
