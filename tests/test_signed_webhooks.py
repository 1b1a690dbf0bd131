"""Signed webhooks against a real `knflow serve router` over HTTP, as senders sign them: Standard Webhooks
(signed by the standardwebhooks library, with a key being rotated), GitHub's X-Hub-Signature-256 and a
bearer secret. Refused when unsigned, badly signed, too old or replayed with another body, always with the
one 401 that an unknown pipeline gets too; a redelivery finds its run."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from standardwebhooks.webhooks import Webhook

from router.triggers import run_id_for
from router.webhook_auth import sign_github
from tests.processes import Process, free_port
from tests.tokens import ROUTER_ENV
from tests.test_fabric_e2e import http, wait_run

ROOT = Path(__file__).resolve().parent.parent
OLD_KEY = "whsec_" + "b2xkLWtleS1mb3Itc2lnbmVkLXdlYmhvb2stdGVzdHM="
NEW_KEY = "whsec_" + "bmV3LWtleS1mb3Itc2lnbmVkLXdlYmhvb2stdGVzdHM="
GH_SECRET = "gh-hook-secret-7f3a"
BEARER_SECRET = "bearer-hook-secret-91c2"
LEGACY_SECRET = "legacy-s3cret"

NODES = "nodes: [{id: say, type: log, inputs: {message: '{{ trigger.data.m }}'}}]\n"
PIPELINES = {
    "orders": "metadata: {name: orders}\n"
    "trigger: {type: webhook, auth: {scheme: standard-webhooks, secret_env: ORDERS_WEBHOOK_SECRET}}\n" + NODES,
    "pushes": "metadata: {name: pushes}\n"
    "trigger: {type: webhook, auth: {scheme: github, secret_env: GITHUB_WEBHOOK_SECRET}}\n" + NODES,
    "alerts": "metadata: {name: alerts}\n"
    "trigger: {type: webhook, auth: {scheme: bearer, secret_env: ALERTS_TOKEN}}\n" + NODES,
    "unset": "metadata: {name: unset}\ntrigger: {type: webhook, auth: {scheme: bearer, secret_env: NOT_SET}}\n" + NODES,
    "plain": "metadata: {name: plain}\ntrigger: {type: webhook}\n" + NODES,
}


@pytest.fixture(scope="module")
def router(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("signed")
    files = []
    for name, text in PIPELINES.items():
        (tmp / f"{name}.yaml").write_text(text)
        files.append(str(tmp / f"{name}.yaml"))
    port = free_port()
    env = {
        "PYTHONPATH": str(ROOT),
        "ORDERS_WEBHOOK_SECRET": f"{OLD_KEY} {NEW_KEY}",  # mid-rotation: both keys verify
        "GITHUB_WEBHOOK_SECRET": GH_SECRET,
        "ALERTS_TOKEN": BEARER_SECRET,
        "KNFLOW_WEBHOOK_SECRET": LEGACY_SECRET,
        **ROUTER_ENV,
    }
    args = ["serve", "router", "--store", f"sqlite:///{tmp}/runs.db", "--pipelines", *files]
    proc = Process([*args, "--port", str(port), "--host", "127.0.0.1"], tmp / "router.log", port, env).start()
    yield proc
    proc.stop()


def standard_headers(key: str, msg_id: str, body: bytes, timestamp_s: int | None = None) -> dict[str, str]:
    """What a Standard Webhooks sender puts on a delivery, signed by the reference library."""
    stamp = int(time.time()) if timestamp_s is None else timestamp_s
    signature = Webhook(key).sign(msg_id, datetime.fromtimestamp(stamp, UTC), body.decode())
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(stamp),
        "webhook-signature": signature,
        "content-type": "application/json",
    }


def post(router, pipeline: str, body: bytes, headers: dict[str, str] | None = None):
    return http("POST", f"{router.url}/hooks/{pipeline}", body, headers or {}, token=None)  # a sender has no token


def refused_body(router) -> dict:
    """The one answer to a caller who proves nothing: what an unknown pipeline gets."""
    status, answer = post(router, "no-such-pipeline", b"{}")
    assert status == 401, answer
    return answer


def test_standard_webhooks_signed_with_either_key_start_runs(router):
    for key, msg_id in ((OLD_KEY, "msg_old_key"), (NEW_KEY, "msg_new_key")):
        body = json.dumps({"m": f"signed as {msg_id}"}).encode()
        status, answer = post(router, "orders", body, standard_headers(key, msg_id, body))
        assert status == 202, answer
        run = wait_run(router.url, answer["run"])
        assert run["status"] == "succeeded" and f"signed as {msg_id}" in json.dumps(run["nodes"]["say"]["output"])
        assert answer["run"] == run_id_for("orders", "/hooks/orders", msg_id)  # the id is the idempotency key
        assert "webhook-signature" not in json.dumps(run) and OLD_KEY[6:] not in json.dumps(run)


def test_a_redelivery_with_the_same_webhook_id_finds_its_run(router):
    body = b'{"m": "once"}'
    first = post(router, "orders", body, standard_headers(NEW_KEY, "msg_dedupe", body))
    again = post(router, "orders", body, standard_headers(NEW_KEY, "msg_dedupe", body, int(time.time()) - 60))
    assert first[0] == again[0] == 202 and first[1]["run"] == again[1]["run"]
    runs = http("GET", f"{router.url}/runs?pipeline=orders&limit=1000")[1]
    assert sum(1 for r in runs if r["id"] == first[1]["run"]) == 1


def test_unsigned_badly_signed_old_and_tampered_deliveries_are_one_401(router):
    same = refused_body(router)
    assert "webhook-signature" in same["error"] and "X-Hub-Signature-256" in same["error"]
    assert "Authorization: Bearer" in same["error"]
    body = b'{"m": "hi"}'
    signed = standard_headers(NEW_KEY, "msg_refused", body)
    cases = {
        "unsigned": ({"content-type": "application/json"}, body),
        "other key": (standard_headers("whsec_" + "d3Jvbmcta2V5LWZvci10ZXN0cw==", "msg_x", body), body),
        "too old": (standard_headers(NEW_KEY, "msg_old", body, int(time.time()) - 301), body),
        "from the future": (standard_headers(NEW_KEY, "msg_future", body, int(time.time()) + 400), body),
        "replayed with another body": (signed, b'{"m": "evil"}'),
        "another id on the signature": ({**signed, "webhook-id": "msg_other"}, body),
        "malformed signature": ({**signed, "webhook-signature": "v1"}, body),
        "the legacy secret": ({"x-knflow-webhook-secret": LEGACY_SECRET}, body),
    }
    for case, (headers, data) in cases.items():
        status, answer = post(router, "orders", data, headers)
        assert (status, answer) == (401, same), case
    # the signed delivery itself still goes through, once
    assert post(router, "orders", body, signed)[0] == 202


def test_a_refusal_is_logged_with_its_reason_and_no_secret(router):
    body = b'{"m": "late"}'
    post(router, "orders", body, standard_headers(NEW_KEY, "msg_logged", body, int(time.time()) - 900))
    deadline = time.monotonic() + 10
    while "webhook-timestamp is 9" not in router.output(10**6):
        assert time.monotonic() < deadline, router.output()
        time.sleep(0.05)
    log = router.output(10**6)
    line = next(line for line in log.splitlines() if "webhook-timestamp is 9" in line)
    assert "webhook refused" in line and "orders" in line and "standard-webhooks" in line
    for secret in (OLD_KEY[6:], NEW_KEY[6:], GH_SECRET, BEARER_SECRET, LEGACY_SECRET):
        assert secret not in log


def test_github_signatures_and_delivery_ids(router):
    body = b'{"m": "pushed"}'
    headers = {"x-hub-signature-256": sign_github(GH_SECRET, body), "x-github-delivery": "d-1234"}
    status, answer = post(router, "pushes", body, headers)
    assert status == 202 and wait_run(router.url, answer["run"])["status"] == "succeeded"
    assert post(router, "pushes", body, headers)[1]["run"] == answer["run"]  # GitHub's "redeliver"
    same = refused_body(router)
    assert post(router, "pushes", body)[1] == same
    assert post(router, "pushes", body + b" ", headers) == (401, same)
    assert post(router, "pushes", body, {"x-hub-signature-256": sign_github("guess", body)}) == (401, same)


def test_bearer_secrets(router):
    status, answer = post(router, "alerts", b'{"m": "alert"}', {"authorization": f"Bearer {BEARER_SECRET}"})
    assert status == 202 and wait_run(router.url, answer["run"])["status"] == "succeeded"
    same = refused_body(router)
    for value in ("", f"Bearer {BEARER_SECRET}x", f"Basic {BEARER_SECRET}", "Bearer"):
        assert post(router, "alerts", b"{}", {"authorization": value}) == (401, same), value


def test_a_pipeline_whose_secret_is_not_set_refuses_and_says_so_in_the_log(router):
    assert post(router, "unset", b"{}", {"authorization": "Bearer anything"}) == (401, refused_body(router))
    deadline = time.monotonic() + 10
    while "no secret in NOT_SET" not in router.output(10**6):
        assert time.monotonic() < deadline, router.output()
        time.sleep(0.05)


def test_pipelines_without_auth_keep_the_router_wide_secret(router):
    """KNFLOW_WEBHOOK_SECRET still guards pipelines without `auth` (until run tokens replace it)."""
    assert post(router, "plain", b'{"m": "x"}') == (401, refused_body(router))
    status, answer = post(router, "plain", b'{"m": "x"}', {"x-knflow-webhook-secret": LEGACY_SECRET})
    assert status == 202 and wait_run(router.url, answer["run"])["status"] == "succeeded"
    # with the router-wide secret, a caller may learn that a pipeline does not exist
    status, answer = post(router, "no-such-pipeline", b"{}", {"x-knflow-webhook-secret": LEGACY_SECRET})
    assert status == 404 and "unknown pipeline 'no-such-pipeline'" in answer["error"]
