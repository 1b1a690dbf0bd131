"""API tokens against a real `knflow serve router`: every route's scope (read from the router's own
OpenAPI document, so that a new route without a check fails here), 401 and 403 with the scope needed,
tokens made, listed and revoked through the API and the CLI on SQLite and MongoDB, the bootstrap token,
and the router refusing to start open unless told to."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from broker.errors import KnflowError

from router.tokens import InvalidToken, check_name, check_scope, covers, new_record, token_hash
from tests.processes import Process, free_port
from tests.test_fabric_e2e import http
from tests.tokens import ADMIN_TOKEN, ROUTER_ENV, create_token

ROOT = Path(__file__).resolve().parent.parent
HOOKED = "metadata: {name: hooked}\ntrigger: {type: webhook}\nnodes: [{id: say, type: log, inputs: {message: hi}}]\n"
SLOW = "metadata: {name: slow}\ntrigger: {type: webhook}\nnodes: [{id: wait, type: delay, inputs: {seconds: 60}}]\n"
EXTERNAL_EVENT = {"ce-id": "", "ce-source": "/tests", "ce-type": "com.example.none", "ce-specversion": "1.0"}

NEEDS = {  # every route and the scope it needs
    ("GET", "/runs"): "read",
    ("GET", "/runs/{run_id}"): "read",
    ("GET", "/runs/{run_id}/logs"): "read",
    ("GET", "/pipelines"): "read",
    ("GET", "/pipelines/{name}"): "read",
    ("POST", "/pipelines/validate"): "read",  # a draft, never stored
    ("GET", "/functions"): "read",
    ("GET", "/functions/{name}"): "read",
    ("GET", "/metrics"): "read",  # or KNFLOW_METRICS_TOKEN (tests/test_metrics.py)
    ("POST", "/events"): "run",  # an external event; node results have their own check
    ("POST", "/hooks/{name}"): "run",  # a pipeline without trigger.auth
    ("POST", "/runs/{run_id}/replay"): "operate",
    ("POST", "/runs/{run_id}/cancel"): "operate",
    ("POST", "/replay"): "operate",
    ("POST", "/events/replay"): "operate",
    ("PUT", "/pipelines/{name}"): "admin",
    ("DELETE", "/pipelines/{name}"): "admin",
    ("POST", "/tokens"): "admin",
    ("GET", "/tokens"): "admin",
    ("DELETE", "/tokens/{name}"): "admin",
    ("GET", "/whoami"): "read",  # the dashboard's: what a token may do, its streams and views
    ("GET", "/runs/stream"): "read",
    ("GET", "/runs/{run_id}/stream"): "read",
    ("GET", "/runs/counts"): "read",
    ("GET", "/runs/{run_id}/nodes/{node}"): "read",
    ("GET", "/pipelines/{name}/details"): "read",
    ("POST", "/pipelines/{name}/runs"): "run",
    ("GET", "/events"): "read",
    ("POST", "/pipelines/{name}/pause"): "operate",  # resume comes next: 'hooked' ends active
    ("POST", "/pipelines/{name}/resume"): "operate",
}
OWN_CHECKS = {("POST", "/dead-letter")}  # dead letters: checked by the per-invoke secret
OPEN = {("GET", "/healthz")}
SCOPES = ("read", "run", "operate", "admin")


def knflow(*args: str, env: dict | None = None, timeout_s: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "knflow.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
    )


def serve_router(tmp: Path, store_url: str, env: dict | None = None, *flags: str) -> Process:
    (tmp / "hooked.yaml").write_text(HOOKED)
    (tmp / "slow.yaml").write_text(SLOW)
    port = free_port()
    files = [str(tmp / "hooked.yaml"), str(tmp / "slow.yaml")]
    args = ["serve", "router", "--store", store_url, "--pipelines", *files, "--port", str(port)]
    return Process(
        [*args, "--host", "127.0.0.1", *flags],
        tmp / f"router-{port}.log",
        port,
        {"PYTHONPATH": str(ROOT), "KNFLOW_NATS_URL": "", **(env if env is not None else ROUTER_ENV)},
    ).start()


@pytest.fixture(scope="module", params=["sqlite", "mongo"])
def router(request, tmp_path_factory):
    tmp = tmp_path_factory.mktemp(f"tokens-{request.param}")
    if request.param == "sqlite":
        url = f"sqlite:///{tmp}/runs.db"
    else:
        url = request.getfixturevalue("mongo_server").database_url(f"knflow_tokens_{uuid.uuid4().hex[:8]}")
    proc = serve_router(tmp, url)
    proc.store_url = url
    proc.tokens = {scope: create_token(proc.url, f"{scope}-{uuid.uuid4().hex[:6]}", scope) for scope in SCOPES}
    yield proc
    proc.stop()


def call(router: Process, method: str, path: str, token: str | None) -> tuple[int, dict | list | None]:
    url = router.url + path.replace("{run_id}", "no-such-run").replace("{name}", "hooked")
    if path == "/events":
        headers = {**EXTERNAL_EVENT, "ce-id": uuid.uuid4().hex, "content-type": "application/json"}
        return http(method, url, b"{}", headers, token=token)
    if path == "/hooks/{name}":
        return http(method, url, b"{}", {"content-type": "application/json"}, token=token)
    if path == "/metrics":  # a 200 is Prometheus' text format, not JSON
        req = urllib.request.Request(url, headers={"authorization": f"Bearer {token}"} if token else {})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, None
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read())
    if path == "/runs/stream":  # a stream that never ends: a bad parameter answers once its caller is let in
        url += "?status=not-a-status"
    if method == "DELETE":  # nothing the other tests use
        url = url.replace("/hooked", "/not-there")
    return http(method, url, b"{}" if method in ("POST", "PUT") else None, {"content-type": "application/json"}, token)


def test_every_route_needs_its_scope_401_without_a_token_403_below_it(router):
    status, doc = http("GET", f"{router.url}/openapi.json", token=None)
    assert status == 200
    routes = {(m.upper(), path) for path, ops in doc["paths"].items() for m in ops}
    assert routes == set(NEEDS) | OWN_CHECKS | OPEN, "a route without an entry in NEEDS: give it a scope"
    for (method, path), need in NEEDS.items():
        status, body = call(router, method, path, None)
        assert status == 401 and body["scope"] == need and "Authorization: Bearer" in body["error"], (path, body)
        status, body = call(router, method, path, "kf_not-a-token")
        assert status == 401 and body["scope"] == need, (method, path, body)
        for scope in SCOPES:
            status, body = call(router, method, path, router.tokens[scope])
            if covers(scope, need):
                assert status not in (401, 403), (method, path, scope, body)
            else:
                assert status == 403 and body["scope"] == need, (method, path, scope, body)
                assert f"has scope '{scope}'; this route needs scope '{need}'" in body["error"]
    assert http("GET", f"{router.url}/healthz", token=None)[0] == 200


def test_tokens_created_listed_and_revoked_through_the_api(router):
    name = f"ci-{uuid.uuid4().hex[:6]}"
    status, created = http("POST", f"{router.url}/tokens", json.dumps({"name": name, "scope": "operate"}).encode())
    assert status == 201 and created["token"].startswith("kf_") and created["scope"] == "operate"
    status, listed = http("GET", f"{router.url}/tokens")
    mine = [t for t in listed if t["name"] == name]
    assert mine == [{"name": name, "scope": "operate", "created_at": created["created_at"], "revoked": False,
                     "revoked_at": None}]  # fmt: skip
    assert created["token"] not in json.dumps(listed) and token_hash(created["token"]) not in json.dumps(listed)
    assert http("GET", f"{router.url}/runs", token=created["token"])[0] == 200
    again = http("POST", f"{router.url}/tokens", json.dumps({"name": name, "scope": "read"}).encode())
    assert again[0] == 409 and "revoke it first" in again[1]["error"]
    bad = http("POST", f"{router.url}/tokens", json.dumps({"name": "x", "scope": "root"}).encode())
    assert bad[0] == 400 and "scope 'root' is not valid. Expected one of read, run, operate, admin" in bad[1]["error"]
    assert http("DELETE", f"{router.url}/tokens/{name}")[0] == 200
    status, body = http("GET", f"{router.url}/runs", token=created["token"])  # revoked here: refused at once
    assert status == 401 and "not valid (unknown or revoked)" in body["error"]
    assert [t["revoked"] for t in http("GET", f"{router.url}/tokens")[1] if t["name"] == name] == [True]
    assert http("DELETE", f"{router.url}/tokens/nobody")[0] == 404


def test_replay_history_records_the_token_name_not_the_callers_by(router):
    status, answer = http("POST", f"{router.url}/hooks/hooked", b"{}")
    run_id = answer["run"]
    deadline = time.monotonic() + 30
    while http("GET", f"{router.url}/runs/{run_id}")[1]["status"] == "running":
        assert time.monotonic() < deadline, "run did not finish"
        time.sleep(0.05)
    body = json.dumps({"new_run": True, "by": "somebody-else"}).encode()
    status, run = http("POST", f"{router.url}/runs/{run_id}/replay", body, token=router.tokens["operate"])
    assert status == 202 and run["replays"][0]["by"].startswith("operate-"), run
    status, answer = http("POST", f"{router.url}/hooks/slow", b"{}")
    status, run = http("POST", f"{router.url}/runs/{answer['run']}/cancel", body)  # the bootstrap token
    assert status == 200 and run["status"] == "cancelled", run
    logged = router.output(max_chars=10**8)  # the record has no field for it: the router's log line
    assert '"event": "run cancelled"' in logged and '"by": "KNFLOW_ADMIN_TOKEN"' in logged
    assert "somebody-else" not in logged


def test_the_cli_creates_lists_and_revokes_tokens_via_the_router_and_in_the_store(router):
    admin = {"KNFLOW_TOKEN": ADMIN_TOKEN}
    made = knflow("token", "create", "--scope", "operate", "--name", "cli-ci", "--router", router.url, env=admin)
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert token.startswith("kf_") and "shown only this once" in made.stderr and token not in made.stderr
    listed = knflow("token", "list", "--router", router.url, env=admin)
    assert "cli-ci" in listed.stdout and "operate" in listed.stdout and token not in listed.stdout
    runs = knflow("runs", "list", "--router", router.url, "--token", token)
    assert runs.returncode == 0, runs.stderr
    refused = knflow("token", "list", "--router", router.url, "--token", token)
    assert refused.returncode == 1 and "answered 403" in refused.stderr and "needs scope 'admin'" in refused.stderr
    anonymous = knflow("runs", "list", "--router", router.url, env={"KNFLOW_TOKEN": ""})
    assert anonymous.returncode == 1 and "answered 401" in anonymous.stderr and "KNFLOW_TOKEN" in anonymous.stderr
    assert knflow("token", "revoke", "cli-ci", "--router", router.url, env=admin).returncode == 0
    assert knflow("runs", "list", "--router", router.url, "--token", token).returncode == 1

    # in the store directly (an operator with the store's URL): the router sees it within its cache time
    made = knflow("token", "create", "--scope", "read", "--name", "from-store", "--store", router.store_url)
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert http("GET", f"{router.url}/runs", token=token)[0] == 200
    assert "from-store" in knflow("token", "list", "--store", router.store_url).stdout
    assert knflow("token", "revoke", "from-store", "--store", router.store_url).returncode == 0
    deadline = time.monotonic() + 10  # the router caches a lookup for 5 s
    while http("GET", f"{router.url}/runs", token=token)[0] != 401:
        assert time.monotonic() < deadline, "a token revoked in the store was still taken after 10 s"
        time.sleep(0.1)
    gone = knflow("token", "revoke", "nobody", "--store", router.store_url)
    assert gone.returncode == 1 and "no token named 'nobody'" in gone.stderr


def test_serve_router_refuses_to_start_without_an_admin_token(tmp_path):
    args = ["serve", "router", "--store", f"sqlite:///{tmp_path}/r.db", "--port", str(free_port())]
    refused = knflow(*args, env={"KNFLOW_ADMIN_TOKEN": ""})
    assert refused.returncode == 1 and "needs KNFLOW_ADMIN_TOKEN" in refused.stderr and "--insecure" in refused.stderr
    assert "Traceback" not in refused.stderr
    short = knflow(*args, env={"KNFLOW_ADMIN_TOKEN": "abc"})
    assert short.returncode == 1 and "use at least 16 random" in short.stderr and "abc" not in short.stderr


def test_insecure_serves_the_api_open_and_warns_on_every_start(tmp_path):
    for _ in range(2):  # each start its own log
        router = serve_router(tmp_path, f"sqlite:///{tmp_path}/r.db", {"KNFLOW_ADMIN_TOKEN": ""}, "--insecure")
        try:
            assert router.output().count("WARNING: --insecure: the router API") == 1
            assert http("GET", f"{router.url}/runs", token=None)[0] == 200
        finally:
            router.stop()


def test_knflow_dev_needs_a_token_off_loopback(tmp_path):
    off = knflow("dev", "--host", "0.0.0.0", "--port", str(free_port()), "--memory", env={"KNFLOW_ADMIN_TOKEN": ""})
    assert off.returncode == 1 and "set KNFLOW_ADMIN_TOKEN to require tokens" in off.stderr


def test_scopes_are_ordered_and_names_checked():
    assert covers("admin", "read") and covers("operate", "run") and not covers("run", "operate")
    assert check_scope("run") == "run" and check_name("ci.deploy-2") == "ci.deploy-2"
    for bad in ("", "-x", "a b", "x" * 65, "KNFLOW_ADMIN_TOKEN"):
        with pytest.raises(InvalidToken):
            check_name(bad)
    token, record = new_record("ci", "read", "now")
    assert token.startswith("kf_") and len(token) == 46 and record["hash"] == token_hash(token) != token


def test_a_router_whose_store_is_still_named_by_knflow_mongodb_url_refuses_to_start():
    """KNFLOW_MONGODB_URL is the builtins' database: a router must not fall back to a local SQLite file."""
    from knflow.serve import router_store_url
    from knflow.settings import Settings

    env = {"KNFLOW_MONGODB_URL": "mongodb://db/app"}
    with pytest.raises(KnflowError, match="KNFLOW_STORE_URL is not"):
        router_store_url(Settings(), None, env)
    assert router_store_url(Settings(), "sqlite:///x.db", env) == "sqlite:///x.db"  # --store wins
    assert router_store_url(Settings(), None, {**env, "KNFLOW_STORE_URL": "mongodb://db/r"}) == Settings().store
