"""Limits everywhere (issue 12, part 5), played as an attacker against a real `knflow serve router` and a real
`knflow serve function`: YAML bombs, deep JSON, costly CEL, bad route parameters, stored pipelines naming code,
blob references of another run, bodies over the limit without a Content-Length."""

from __future__ import annotations

import asyncio
import http.client as http_client
import json
import time
from pathlib import Path

import pytest

from broker import codec, events
from broker.limits import MAX_JSON_DEPTH, json_depth_exceeded
from functions.blobs import BlobStore
from functions.cel import CelEvaluationError, CelTooComplex, compile_program, execute
from router.conditions import ConditionError, compile_condition
from router.pipeline import PipelineInvalid
from router.pipeline_yaml import parse_yaml
from tests.processes import Process, free_port
from tests.test_fabric_e2e import http, wait_run
from tests.tokens import ROUTER_ENV

ROOT = Path(__file__).resolve().parent.parent
BOMB = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + "".join(
    f"{n}: &{n} [{', '.join([f'*{p}'] * 9)}]\n" for p, n in zip("abcdefgh", "bcdefghi", strict=True)
)
HOOKED = (
    "metadata: {name: hooked}\ntrigger: {type: webhook}\n"
    "nodes: [{id: say, type: log, inputs: {message: '{{ trigger.data.m }}'}}]\n"
)


@pytest.fixture(scope="module")
def router(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("limits")
    (tmp / "hooked.yaml").write_text(HOOKED)
    port = free_port()
    env = {"PYTHONPATH": str(ROOT), "KNFLOW_BLOB_URL": (tmp / "blobs").as_uri(), **ROUTER_ENV}
    args = ["serve", "router", "--store", f"sqlite:///{tmp}/runs.db", "--pipelines", str(tmp / "hooked.yaml")]
    proc = Process([*args, "--port", str(port), "--host", "127.0.0.1"], tmp / "router.log", port, env).start()
    yield proc
    proc.stop()


def put(router, name: str, text: str | bytes) -> tuple[int, dict]:
    body = text.encode() if isinstance(text, str) else text
    return http("PUT", f"{router.url}/pipelines/{name}", body, {"content-type": "application/yaml"})


# ---- YAML and pipeline caps -----------------------------------------------------------------------


def test_a_yaml_bomb_is_refused_fast():
    assert len(BOMB) < 600
    started = time.perf_counter()
    with pytest.raises(PipelineInvalid) as err:
        parse_yaml(BOMB, "bomb.yaml")
    elapsed_ms = (time.perf_counter() - started) * 1000
    assert elapsed_ms < 100, elapsed_ms  # measured ~2 ms
    assert "expands to more than 50,000 values (YAML aliases expanded)" in str(err.value.problems[0])
    assert "bomb.yaml:" in str(err.value.problems[0])


def test_recursive_and_deep_yaml_are_refused():
    for text in ("a: &a [*a]", "[" * 100_000 + "]" * 100_000, "a: &a {b: *a}"):
        with pytest.raises(PipelineInvalid):
            parse_yaml(text, "x.yaml")


def test_put_refuses_the_bomb_and_the_router_stays_responsive(router):
    started = time.perf_counter()
    status, body = put(router, "bomb", BOMB)
    assert status == 422 and "YAML aliases expanded" in body["problems"][0]
    assert time.perf_counter() - started < 2
    assert http("GET", f"{router.url}/healthz")[0] == 200


def test_pipeline_caps_name_the_limit(router):
    nodes = ", ".join(f"{{id: n{i}, type: log, inputs: {{message: x}}}}" for i in range(501))
    status, body = put(router, "big", f"metadata: {{name: big}}\nnodes: [{nodes}]\n")
    assert status == 422 and "501 nodes; the limit is 500 nodes per pipeline" in body["problems"][0]
    status, body = put(router, "huge", "metadata: {name: huge}\n#" + "x" * 600_000 + "\n")
    assert status == 422 and "the limit is 524,288 bytes" in body["problems"][0]


def test_a_pipeline_stored_through_the_api_cannot_name_code(router):
    text = "metadata: {name: coded}\nfunctions: [os]\nnodes: [{id: a, type: log, inputs: {message: x}}]\n"
    status, body = put(router, "coded", text)
    assert status == 400 and body["field"] == "functions" and "cannot name code" in body["error"]
    assert http("GET", f"{router.url}/pipelines/coded")[0] == 404


# ---- JSON depth ------------------------------------------------------------------------------------


def test_json_depth_check():
    assert not json_depth_exceeded(b'{"a": "[[[[[[[[[[' + b"[" * 200 + b'"}')  # brackets in strings do not count
    assert json_depth_exceeded(b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (MAX_JSON_DEPTH + 1))
    assert not json_depth_exceeded(b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH)
    big = json.dumps([{"a": [1, 2]} for _ in range(50_000)]).encode()  # ~700 KB, 100,000 brackets
    started = time.perf_counter()
    assert not json_depth_exceeded(big)
    assert time.perf_counter() - started < 0.5  # measured ~30 ms


def test_deep_json_is_a_400_everywhere(router):
    deep = b"[" * 100_000 + b"]" * 100_000
    ce = {"ce-id": "d1", "ce-source": "/x", "ce-type": "com.example.deep", "ce-specversion": "1.0"}
    for path, headers in (
        ("/hooks/hooked", {"content-type": "application/json"}),
        ("/events", {**ce, "content-type": "application/json"}),
        ("/replay", {}),
        ("/events", {"content-type": "application/cloudevents+json"}),
    ):
        status, body = http("POST", f"{router.url}{path}", deep, headers)
        assert status == 400, (path, status, body)
        assert f"deeper than {MAX_JSON_DEPTH} levels" in body["error"], body


# ---- route parameters ------------------------------------------------------------------------------

BAD = [
    ("GET", "/runs?limit=x", None, "limit"),
    ("GET", "/runs?limit=-1", None, "limit"),
    ("GET", "/runs?limit=0", None, "limit"),
    ("GET", "/runs?status=banana", None, "status"),
    ("POST", "/replay", {"limit": "x"}, "limit"),
    ("POST", "/replay", {"limit": -5}, "limit"),
    ("POST", "/replay", {"limit": 1.5}, "limit"),
    ("POST", "/replay", {"since": 5}, "since"),
    ("POST", "/replay", {"since": "99999999999999999d"}, "since"),
    ("POST", "/replay", {"status": ["failed"]}, "status"),
    ("POST", "/replay", {"new_run": "yes"}, "new_run"),
    ("POST", "/replay", {"pipeline": {"$ne": 1}}, "pipeline"),
    ("POST", "/events/replay", {"since": "1e400d"}, "since"),
    ("POST", "/events/replay", {}, "since"),
    ("POST", "/events/replay", {"since": "2h", "type": 3}, "type"),
    ("POST", "/runs/nope/replay", {"from": 3}, "from"),
    ("POST", "/runs/nope/replay", {"new_run": 1}, "new_run"),
    # `by` is not read from the body when a token names the caller (the history records the token's name)
]


@pytest.mark.parametrize(("method", "path", "body", "field"), BAD)
def test_every_route_refuses_bad_parameters_with_a_400_naming_the_field(router, method, path, body, field):
    raw = json.dumps(body).encode() if body is not None else None
    status, answer = http(method, f"{router.url}{path}", raw, {"content-type": "application/json"})
    assert status == 400, (path, body, status, answer)
    assert answer["field"] == field and f"'{field}'" in answer["error"]


def test_every_json_route_refuses_a_body_that_is_not_an_object(router):
    routes = [r for r in json.loads(urlget(router, "/openapi.json"))["paths"].items()]
    assert routes
    for path, ops in routes:
        for method in ops:
            if method != "post" or path in ("/events", "/dead-letter"):
                continue
            url = router.url + path.replace("{run_id}", "nope").replace("{name}", "hooked")
            webhook = path.startswith("/hooks/")  # any JSON value is a webhook's data; too deep is not
            for bad in (b"[" * 1000 + b"]" * 1000,) if webhook else (b"[1]", b'"x"', b"{", b"[" * 1000 + b"]" * 1000):
                status, answer = http("POST", url, bad, {"content-type": "application/json"})
                if path == "/pipelines/validate":  # a draft's problems are its answer, not an error
                    assert status == 200 and answer["valid"] is False and answer["problems"], (bad[:10], answer)
                    continue
                assert status == 400, (path, bad[:10], status, answer)


def urlget(router, path: str) -> str:
    import urllib.request

    with urllib.request.urlopen(router.url + path, timeout=10) as resp:
        return resp.read().decode()


def test_huge_limits_are_capped(router):
    status, runs = http("GET", f"{router.url}/runs?limit=99999999999999999999")
    assert status == 200 and isinstance(runs, list)


# ---- blob references from outside --------------------------------------------------------------


def test_external_input_cannot_carry_blob_references(router):
    ref = {"$blob": "file:///etc/passwd", "size_bytes": 1, "sha256": "00"}
    status, body = http(
        "POST",
        f"{router.url}/hooks/hooked",
        json.dumps({"m": [1, {"x": ref}]}).encode(),
        {"content-type": "application/json"},
    )
    assert status == 400 and body["field"] == "m[1].x" and "$blob" in body["error"]
    ce = {"ce-id": "b1", "ce-source": "/x", "ce-type": "com.example.b", "ce-specversion": "1.0"}
    status, body = http(
        "POST", f"{router.url}/events", json.dumps({"a": ref}).encode(), {**ce, "content-type": "application/json"}
    )
    assert status == 400 and body["field"] == "a"
    status, body = http(
        "POST", f"{router.url}/hooks/hooked", json.dumps({"m": "ok"}).encode(), {"content-type": "application/json"}
    )
    assert status == 202 and wait_run(router.url, body["run"])["status"] == "succeeded"


@pytest.fixture(scope="module")
def function_server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fn")
    port = free_port()
    env = {"PYTHONPATH": str(ROOT), "KNFLOW_BLOB_URL": (tmp / "blobs").as_uri(), "KNFLOW_MAX_BODY_BYTES": "300000"}
    args = ["serve", "function", "template", "--port", str(port), "--host", "127.0.0.1"]
    proc = Process(args, tmp / "fn.log", port, env).start()
    yield proc, BlobStore((tmp / "blobs").as_uri())
    proc.stop()


def invoke(run_id: str, inputs: dict, function: str = "template") -> tuple[dict, bytes]:
    """An invoke of `function` for `run_id`, as binary-mode headers and body."""
    event = events.invoke_event(
        run_id=run_id, pipeline="p", node="t", attempt=1, function=function, inputs=inputs, config={}
    )
    return codec.encode_binary(event)


def test_a_function_refuses_another_runs_blob_and_nothing_leaks(function_server):
    proc, store = function_server
    secret = "the other run's secret value"
    ref = asyncio.run(store.offload({"text": secret}, "runs/other-run/n/1", "output", threshold_bytes=0))
    headers, body = invoke("my-run", {"template": ref, "format": "json"})
    status, reply = http("POST", f"{proc.url}/", body, headers)
    text = json.dumps(reply)
    assert status == 200 and secret not in text
    assert "does not belong to run 'my-run'" in reply["error"]["message"] and ref["$blob"] in reply["error"]["message"]
    own = asyncio.run(store.offload({"text": "mine"}, "runs/my-run/a/1", "output", threshold_bytes=0))
    headers, body = invoke("my-run", {"template": own, "format": "json"})
    status, reply = http("POST", f"{proc.url}/", body, headers)
    assert status == 200 and "mine" in json.dumps(reply)


def post_chunked(port: int, headers: dict[str, str], chunks: int, chunk_bytes: int = 65536) -> tuple[int, dict]:
    """POST `chunks` chunks of `chunk_bytes` to 127.0.0.1:`port` with no Content-Length; (status, JSON answer)."""
    conn = http_client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.putrequest("POST", "/")
    for k, v in {**headers, "transfer-encoding": "chunked"}.items():
        conn.putheader(k, v)
    conn.endheaders()
    chunk = b"x" * chunk_bytes
    for _ in range(chunks):
        conn.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
    conn.send(b"0\r\n\r\n")
    resp = conn.getresponse()
    answer = json.loads(resp.read())
    conn.close()
    return resp.status, answer


def test_the_function_server_streams_bodies_against_its_limit(function_server):
    proc, _ = function_server
    headers, _ = invoke("r", {})
    status, answer = post_chunked(proc.port, headers, 8)  # 512 KiB, no Content-Length: the limit is 300,000 bytes
    assert status == 413 and "the limit is 300,000 bytes" in answer["error"]


# ---- CEL ------------------------------------------------------------------------------------------


def test_cel_nesting_is_refused_when_compiled():
    with pytest.raises(CelTooComplex):
        compile_program("l.map(x, l.map(y, l.map(z, x + y + z)))")
    with pytest.raises(ConditionError, match=r"too costly.*nest 3 deep; the limit is 2"):
        compile_condition("trigger.data.l.map(x, trigger.data.l.map(y, trigger.data.l.exists(z, z == x))).size() > 0")


def test_cel_cost_is_refused_before_it_runs():
    program = compile_program("l.map(x, l.map(y, x + y)).size() > 0")  # 400 items: 4.5-7 s if it ran
    started = time.perf_counter()
    with pytest.raises(CelEvaluationError, match=r"over the budget of 1,000,000"):
        execute(program, {"l": list(range(400))})
    assert time.perf_counter() - started < 0.05
    assert execute(program, {"l": list(range(20))}) is True
    assert execute(compile_program("l.exists(x, x == 99999)"), {"l": list(range(100_000))}) is True


def test_a_costly_when_fails_its_run_naming_the_edge(router):
    text = (
        "metadata: {name: costly}\ntrigger: {type: webhook}\nnodes: [{id: a, type: log, inputs: {message: x}}, "
        "{id: b, type: log, inputs: {message: y}}]\n"
        "edges: [{from: a, to: b, when: 'trigger.data.l.map(x, trigger.data.l.map(y, x + y)).size() > 0'}]\n"
    )
    assert put(router, "costly", text)[0] == 200
    started = time.perf_counter()
    status, body = http(
        "POST",
        f"{router.url}/hooks/costly",
        json.dumps({"l": list(range(400))}).encode(),
        {"content-type": "application/json"},
    )
    assert status == 202
    run = wait_run(router.url, body["run"])
    assert time.perf_counter() - started < 5
    assert run["status"] == "failed" and "edge a -> b" in json.dumps(run) and "MAX_CEL_COST" in json.dumps(run)


# ---- stored pipelines never name code -----------------------------------------------------------


def test_replay_on_a_store_never_imports_the_stored_pipelines_functions(tmp_path):
    from broker.errors import KnflowError
    from knflow.replay import _load_functions
    from router.catalog import StorePipelines
    from router.store import open_store

    marker = tmp_path / "imported"
    module = tmp_path / "evil.py"
    module.write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    doc = {"metadata": {"name": "p"}, "functions": [str(module)], "nodes": [{"id": "a", "type": "evil-fn"}]}

    async def main() -> None:
        store = open_store(f"sqlite:///{tmp_path}/runs.db")
        await store.put_pipeline("p", doc)
        try:
            with pytest.raises(KnflowError, match=r"evil-fn.*not imported\).*--functions"):
                await _load_functions(StorePipelines(store), [{"pipeline": "p"}])  # type: ignore[list-item]
        finally:
            await store.close()

    asyncio.run(main())
    assert not marker.exists()
