"""The routes the dashboard adds to the router's API, against a real `knflow serve router` (SQLite, the embedded
broker): the event streams (what they send, when they end, that they need a token and end at shutdown),
/whoami, the runs list's filters and counts, a node's view, pipeline details and runs, a re-run with edited
data, and the static files at /ui."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest

from tests.processes import Process, free_port
from tests.test_fabric_e2e import http, wait_run
from tests.tokens import ADMIN_TOKEN, ROUTER_ENV, bearer, create_token

ROOT = Path(__file__).resolve().parent.parent
PIPELINES = {
    "quick": "metadata: {name: quick}\ntrigger: {type: webhook}\n"
    "nodes: [{id: say, type: log, inputs: {message: '{{ trigger.data.m }}'}}]\n",
    "steps": "metadata: {name: steps}\ntrigger: {type: webhook}\nnodes:\n"
    "  - {id: wait, type: delay, inputs: {seconds: 0.6}}\n"
    "  - {id: say, type: log, inputs: {message: '{{ trigger.data.m }}'}}\n"
    "edges: [{from: wait, to: say}]\n",
    "fan": "metadata: {name: fan}\ntrigger: {type: webhook}\nnodes:\n"
    "  - {id: each, type: log, foreach: '{{ trigger.data.items }}', inputs: {message: '{{ item }}'}}\n",
    "ticking": "metadata: {name: ticking}\ntrigger: {type: cron, schedule: '*/5 * * * *'}\n"
    "nodes: [{id: say, type: log, inputs: {message: tick}}]\n",
}


def start_router(tmp: Path) -> Process:
    files = []
    for name, text in PIPELINES.items():
        (tmp / f"{name}.yaml").write_text(text)
        files.append(str(tmp / f"{name}.yaml"))
    port = free_port()
    args = ["serve", "router", "--store", f"sqlite:///{tmp}/runs.db", "--pipelines", *files, "--port", str(port)]
    return Process([*args, "--host", "127.0.0.1"], tmp / "router.log", port, ROUTER_ENV).start()


@pytest.fixture(scope="module")
def router(tmp_path_factory):
    proc = start_router(tmp_path_factory.mktemp("dash"))
    yield proc
    proc.stop()


def hook(router: Process, pipeline: str, data: dict) -> str:
    status, body = http("POST", f"{router.url}/hooks/{pipeline}", json.dumps(data).encode())
    assert status == 202, body
    return body["run"]


def events(response: httpx.Response, until: str | None = None, most: int = 50) -> list[tuple[str, dict]]:
    """The events of a stream, as (name, data), until one named `until` (or the stream's end)."""
    out: list[tuple[str, dict]] = []
    name = "message"
    for line in response.iter_lines():
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            out.append((name, json.loads(line[6:])))
            if name == until or len(out) >= most:
                break
    return out


def test_a_run_stream_sends_each_change_then_the_end_and_closes(router):
    run = hook(router, "steps", {"m": "hi"})
    with httpx.stream("GET", f"{router.url}/runs/{run}/stream", headers=bearer(), timeout=10) as response:
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
        got = events(response)  # read to the stream's end: the server closes it
    names = [name for name, _ in got]
    assert names[-1] == "end" and got[-1][1] == {"run": run, "status": "succeeded"}, got
    states = [data["nodes"]["wait"]["status"] for name, data in got if name == "run"]
    assert states[0] == "scheduled" and states[-1] == "succeeded", states
    assert got[-2][1]["trigger"]["data"] == {"m": "hi"}  # the record carries its trigger event
    with httpx.stream("GET", f"{router.url}/runs/{run}/stream", headers=bearer(), timeout=10) as response:
        assert [name for name, _ in events(response)] == ["run", "end"]  # a finished run: its state, the end


def test_a_fan_out_node_streams_its_counters_and_its_node_view_lists_its_items(router):
    run = hook(router, "fan", {"items": list(range(7))})
    with httpx.stream("GET", f"{router.url}/runs/{run}/stream", headers=bearer(), timeout=10) as response:
        got = [data for name, data in events(response) if name == "run"]
    done = {"total": 7, "done": 7, "failed": 0, "running": 0, "pending": 0}
    assert got[-1]["nodes"]["each"]["progress"] == done and "items" not in got[-1]["nodes"]["each"]  # a light poll
    full = http("GET", f"{router.url}/runs/{run}")[1]
    assert full["nodes"]["each"]["progress"] == done and len(full["nodes"]["each"]["items"]) == 7
    view = http("GET", f"{router.url}/runs/{run}/nodes/each")[1]
    assert [item["status"] for item in view["items"]] == ["succeeded"] * 7
    assert http("GET", f"{router.url}/runs/{run}/nodes/each%5B3%5D")[1]["state"]["status"] == "succeeded"
    summary = http("GET", f"{router.url}/runs?pipeline=fan&view=summary")[1]
    assert summary[0]["items"] == {"succeeded": 7}


def test_the_runs_stream_sends_new_runs_and_counts(router):
    with httpx.stream("GET", f"{router.url}/runs/stream?pipeline=quick", headers=bearer(), timeout=10) as response:
        lines = response.iter_lines()
        first = events_from(lines, 2)
        assert {name for name, _ in first} == {"runs", "counts"}
        run = hook(router, "quick", {"m": "new"})
        while True:
            name, data = events_from(lines, 1)[0]
            if name == "runs" and run in data["order"]:
                break
        assert data["order"][0] == run and all(r["pipeline"] == "quick" for r in data["runs"])
        assert {r["id"] for r in data["runs"]} <= set(data["order"])  # only what changed, and the order


def events_from(lines, count: int) -> list[tuple[str, dict]]:
    out, name = [], "message"
    for line in lines:
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            out.append((name, json.loads(line[6:])))
            if len(out) == count:
                return out
    raise AssertionError(f"the stream ended after {out}")


def test_streams_need_a_token_and_refuse_bad_parameters(router):
    assert http("GET", f"{router.url}/runs/stream", token=None)[0] == 401
    assert http("GET", f"{router.url}/runs/nope/stream")[0] == 404
    status, body = http("GET", f"{router.url}/runs/stream?status=exploded")
    assert status == 400 and body["field"] == "status", body
    for query, field in (("limit=%C2%B9", "limit"), ("offset=%D9%A1", "offset")):  # digits, not decimal ones
        status, body = http(
            "GET", f"{router.url}/runs/stream?{query}" if field == "limit" else f"{router.url}/runs?{query}"
        )
        assert status == 400 and body["field"] == field, body
    reader = create_token(router.url, "dash-reader", "read")
    with httpx.stream("GET", f"{router.url}/runs/stream", headers=bearer(reader), timeout=10) as response:
        assert response.status_code == 200


def test_whoami_names_the_token_and_the_scopes_it_holds(router):
    assert http("GET", f"{router.url}/whoami")[1] == {
        "name": "KNFLOW_ADMIN_TOKEN",
        "scope": "admin",
        "scopes": ["read", "run", "operate", "admin"],
        "open": False,
    }
    operator = create_token(router.url, "dash-operator", "operate")
    assert http("GET", f"{router.url}/whoami", token=operator)[1]["scopes"] == ["read", "run", "operate"]
    assert http("GET", f"{router.url}/whoami", token=None)[0] == 401


def test_the_runs_list_filters_pages_and_counts(router):
    runs = [hook(router, "quick", {"m": str(i)}) for i in range(3)]
    for run in runs:
        wait_run(router.url, run)
    status, found = http("GET", f"{router.url}/runs?pipeline=quick&view=summary&limit=2&since=1h")
    assert status == 200 and [r["id"] for r in found] == runs[:0:-1], found
    assert found[0]["trigger"]["type"] == "dev.knflow.webhook" and found[0]["nodes"] == {"succeeded": 1}
    assert "output" not in json.dumps(found)
    page2 = http("GET", f"{router.url}/runs?pipeline=quick&view=summary&limit=2&offset=1")[1]
    assert page2[0]["id"] == runs[1]
    assert http("GET", f"{router.url}/runs?trigger=dev.knative.sources.ping")[1] == []
    counts = http("GET", f"{router.url}/runs/counts?since=1h")[1]
    assert counts["pipelines"]["quick"]["succeeded"] >= 3 and counts["statuses"]["succeeded"] >= 3
    for query, field in (("offset=-1", "offset"), ("view=all", "view"), ("since=soon", "since")):
        status, body = http("GET", f"{router.url}/runs?{query}")
        assert status == 400 and body["field"] == field, body


def test_a_node_view_has_its_rendered_inputs_and_state(router):
    run = hook(router, "quick", {"m": "rendered"})
    wait_run(router.url, run)
    view = http("GET", f"{router.url}/runs/{run}/nodes/say")[1]
    assert view["inputs"] == {"message": "rendered"} and view["function"] == "log" and view["inputs_error"] is None
    assert view["state"]["status"] == "succeeded"
    status, body = http("GET", f"{router.url}/runs/{run}/nodes/nope")
    assert status == 400 and "Its nodes: say" in body["error"], body


def test_pipeline_details_and_a_run_started_from_the_form(router):
    details = http("GET", f"{router.url}/pipelines/steps/details")[1]
    assert details["inputs"] == [{"name": "m", "nodes": ["say"]}]
    assert details["triggers"] == [{"type": "webhook", "path": "/hooks/steps"}]
    assert details["yaml"].startswith("metadata: {name: steps}") and "id: wait" in details["yaml"]  # its file's text
    assert details["yaml_source"] == "stored"
    cron = http("GET", f"{router.url}/pipelines/ticking/details")[1]["triggers"][0]
    assert cron["schedule"] == "*/5 * * * *" and int(cron["next_at"][14:16]) % 5 == 0, cron
    reader = create_token(router.url, "dash-form-reader", "read")
    assert http("POST", f"{router.url}/pipelines/ticking/runs", b"{}", token=reader)[0] == 403
    status, body = http("POST", f"{router.url}/pipelines/ticking/runs", b'{"m": "by hand"}')
    assert status == 202, body
    run = wait_run(router.url, body["run"])
    assert run["status"] == "succeeded" and run["trigger"]["type"] == "dev.knflow.manual"
    assert run["trigger"]["data"] == {"m": "by hand"}


def test_a_re_run_can_carry_edited_data(router):
    old = hook(router, "quick", {"m": "before"})
    wait_run(router.url, old)
    body = json.dumps({"new_run": True, "data": {"m": "after"}}).encode()
    status, new = http("POST", f"{router.url}/runs/{old}/replay", body, {"content-type": "application/json"})
    assert status == 202, new
    done = wait_run(router.url, new["id"])
    assert done["replay_of"] == old and done["replays"][0]["edited"] is True
    assert done["nodes"]["say"]["output"]["message"] == "after"
    blob = json.dumps({"new_run": True, "data": {"$blob": "file:///etc/passwd", "sha256": "x", "size_bytes": 1}})
    assert http("POST", f"{router.url}/runs/{old}/replay", blob.encode())[0] == 400


def test_the_ui_files_need_no_token_and_stay_inside_their_folder(router):
    index = httpx.get(f"{router.url}/ui/", timeout=10)
    assert index.status_code == 200 and '<div id="root">' in index.text
    assert (
        index.headers["cache-control"] == "no-cache"
        and "default-src 'self'" in index.headers["content-security-policy"]
    )
    asset = index.text.split('src="/ui/')[1].split('"')[0]
    js = httpx.get(f"{router.url}/ui/{asset}", timeout=10)
    assert js.status_code == 200 and "immutable" in js.headers["cache-control"]
    assert js.headers["content-type"].startswith(("text/javascript", "application/javascript"))
    assert httpx.get(f"{router.url}/ui/runs/abc", timeout=10).text == index.text  # a route of the dashboard
    escaped = httpx.get(f"{router.url}/ui/..%2f..%2fpyproject.toml", timeout=10)
    assert "[project]" not in escaped.text
    assert httpx.get(f"{router.url}/ui", timeout=10, follow_redirects=False).status_code == 308


def test_an_open_stream_does_not_hold_the_server_at_shutdown(tmp_path):
    proc = start_router(tmp_path)
    try:
        with httpx.stream("GET", f"{proc.url}/runs/stream", headers=bearer(ADMIN_TOKEN), timeout=30) as response:
            lines = response.iter_lines()
            events_from(lines, 1)
            started = time.monotonic()
            proc.proc.terminate()
            proc.proc.wait(timeout=15)
            assert time.monotonic() - started < 10
    finally:
        proc.kill()
