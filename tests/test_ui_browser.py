"""The dashboard in a real browser (Playwright driving Debian's chromium) against a real `knflow dev` stack:
its own nats-server, each function an isolated HTTP service, tokens required (KNFLOW_ADMIN_TOKEN). The page is
never reloaded while a run moves: the states arrive over the router's event streams.

Screenshots go to docs/screenshots/ (the README shows two of them) with KNFLOW_UPDATE_SCREENSHOTS=1, else to a
temporary folder, so that a run leaves the tree as it was."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from tests.processes import Process, free_port
from tests.test_fabric_e2e import http, wait_run
from tests.tokens import ADMIN_TOKEN, ROUTER_ENV, create_token

ROOT = Path(__file__).resolve().parent.parent
PIPELINES = ROOT / "tests" / "fixtures" / "ui"
SHOTS = (
    ROOT / "docs" / "screenshots"
    if os.environ.get("KNFLOW_UPDATE_SCREENSHOTS") == "1"
    else Path(tempfile.gettempdir()) / "knflow-ui-screenshots"
)
VIEWPORT = {"width": 1366, "height": 768}  # a laptop screen
WAIT_MS = 20_000

pytestmark = pytest.mark.timeout(180)


def start_dev(tmp: Path, pipeline_files: list[Path]) -> Process:
    """`knflow dev --isolate` on the pipelines, with the UI's test functions and the bootstrap admin token."""
    env = {
        **ROUTER_ENV,
        "PYTHONPATH": str(ROOT),
        "KNFLOW_TEST_STATE": str(tmp / "state"),
        "KNFLOW_HTTP_ALLOW_NETS": "127.0.0.0/8",
        "KNFLOW_NATS_URL": "",
        "KNFLOW_STORE": "",
        "KNFLOW_BLOB_URL": (tmp / "blobs").as_uri(),
    }
    port = free_port()
    args = ["dev", *map(str, pipeline_files), "--functions", "tests.fixtures.ui_functions"]
    args += ["--isolate", "--port", str(port), "--store", f"sqlite:///{tmp}/runs.db"]
    return Process(args, tmp / "dev.log", port, env, cwd=tmp).start(timeout_s=90)


@pytest.fixture(scope="module")
def dev(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ui")
    proc = start_dev(tmp, sorted(PIPELINES.glob("*.yaml")))
    proc.state = tmp / "state"  # type: ignore[attr-defined]
    yield proc
    proc.stop()


def signed_in(browser, dev, token: str = ADMIN_TOKEN):
    page = browser.new_page(viewport=VIEWPORT)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.errors = errors
    page.set_default_timeout(WAIT_MS)
    page.goto(f"{dev.url}/ui/")
    page.get_by_test_id("token").fill(token)
    page.get_by_test_id("sign-in").click()
    page.get_by_test_id("runs").wait_for()
    return page


def start(dev, pipeline: str, data: dict) -> str:
    status, body = http(
        "POST", f"{dev.url}/hooks/{pipeline}", json.dumps(data).encode(), {"content-type": "application/json"}
    )
    assert status == 202, body
    return body["run"]


def shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"))


def states_shown(page, test_ids: list[str], until: str, timeout_s: float = 20.0) -> dict[str, list[str]]:
    """The states each DAG node showed (its label, `data-shown`: each once, in order) until all showed `until`."""
    seen: dict[str, list[str]] = {t: [] for t in test_ids}
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for test_id, states in seen.items():
            value = page.get_by_test_id(test_id).get_attribute("data-shown", timeout=WAIT_MS)
            if value and (not states or states[-1] != value):
                states.append(value)
                if value == "running" and test_id == test_ids[0]:
                    shot(page, "run-live")
        if all(states and states[-1] == until for states in seen.values()):
            return seen
        time.sleep(0.05)
    raise AssertionError(f"{test_ids} did not all show {until}: they went through {seen}")


def test_the_files_need_no_token_and_the_api_does(dev):
    with urllib.request.urlopen(f"{dev.url}/ui/runs/anything", timeout=10) as resp:  # a route of the dashboard
        assert resp.status == 200 and b'<div id="root">' in resp.read()
        assert "frame-ancestors 'none'" in resp.headers["content-security-policy"]
    assert http("GET", f"{dev.url}/runs", token=None)[0] == 401
    assert http("GET", f"{dev.url}/runs/stream", token=None)[0] == 401
    assert "dashboard on http://127.0.0.1:" in dev.output(max_chars=10**6)


def test_a_webhook_run_turns_from_pending_to_running_to_succeeded_without_a_reload(dev, browser):
    page = signed_in(browser, dev)
    page.evaluate("window.__sameDocument = true")
    run = start(dev, "ui-slow", {"text": "hello dashboard"})
    row = page.locator(f'[data-testid="run-row"][data-run="{run}"]')
    row.wait_for()  # the runs list is live too
    row.get_by_role("link", name=run).click()
    page.get_by_test_id("node-second").wait_for()
    seen = states_shown(page, ["node-first", "node-second"], "succeeded")
    first, second = seen["node-first"], seen["node-second"]
    assert "running" in first and first[-1] == "succeeded", first
    assert second[0] == "pending" and "running" in second and second[-1] == "succeeded", second
    page.get_by_test_id("run-status").locator('[data-status="succeeded"]').wait_for()
    assert page.evaluate("window.__sameDocument") is True  # never reloaded
    page.get_by_test_id("waterfall").wait_for()
    page.get_by_test_id("node-second").click()
    page.get_by_test_id("node-panel").get_by_text('"HELLO DASHBOARD"').first.wait_for()
    page.get_by_role("link", name="Runs", exact=True).click()
    page.locator(f'[data-testid="run-row"][data-run="{run}"][data-status="succeeded"]').wait_for()
    shot(page, "runs-list")
    assert page.errors == []


def test_a_failing_node_shows_its_log_lines(dev, browser):
    page = signed_in(browser, dev)
    run = start(dev, "ui-flaky", {"text": "log it"})
    page.goto(f"{dev.url}/ui/runs/{run}/nodes/check")
    page.get_by_test_id("run-status").locator('[data-status="failed"]').wait_for()
    panel = page.get_by_test_id("node-panel")
    panel.get_by_role("tab", name="Logs").click()
    panel.get_by_test_id("log-line").filter(has_text="the marker file is missing").wait_for()
    assert panel.get_by_test_id("log-line").filter(has_text="checking the input").count() == 1
    shot(page, "node-logs")
    assert page.errors == []


def test_the_logs_tab_follows_a_node_until_its_lines_come_and_its_attempt_shows_its_times(dev, browser):
    page = signed_in(browser, dev)
    run = start(dev, "ui-slow", {"text": "follow me"})
    page.goto(f"{dev.url}/ui/runs/{run}/nodes/second")  # second waits for first (3 s), then runs for 2 s
    page.evaluate("window.__sameDocument = true")
    panel = page.get_by_test_id("node-panel")
    panel.get_by_role("tab", name="Logs").click()
    panel.get_by_text("waiting for log lines").wait_for()  # not run yet: the tab follows GET /runs/{id}/logs
    line = panel.get_by_test_id("log-line").filter(has_text="working slowly")
    line.wait_for()  # a try's lines come with its outcome
    assert '"delay_s":2' in line.inner_text()
    assert page.evaluate("window.__sameDocument") is True  # followed, never reloaded
    panel.get_by_role("tab", name="Attempts").click()
    row = panel.get_by_test_id("attempts").locator("tbody tr")
    row.locator('[data-status="succeeded"]').wait_for()
    cells = row.locator("td").all_inner_texts()  # #, status, queued, queue, started, run, error
    assert cells[0] == "1" and all(cells[i] != "–" for i in (2, 3, 4, 5)), cells
    assert cells[5].endswith(" s") and float(cells[5].split()[0]) >= 2.0, cells  # it slept 2 s
    recorded = wait_run(dev.url, run)["nodes"]["second"]
    assert {"queued_at", "started_at", "finished_at", "duration_ms", "queue_ms"} <= set(recorded), recorded
    assert page.errors == []


def test_a_failing_node_shows_its_error_and_traceback_and_a_redrive_turns_the_run_green(dev, browser):
    page = signed_in(browser, dev)
    run = start(dev, "ui-flaky", {"text": "ship it"})
    page.goto(f"{dev.url}/ui/runs/{run}")
    page.get_by_test_id("run-status").locator('[data-status="failed"]').wait_for()
    page.get_by_test_id("node-check").click()
    panel = page.get_by_test_id("node-panel")
    assert "not ready: ui-fixed is missing" in panel.get_by_test_id("error-message").inner_text()
    traceback = panel.get_by_test_id("traceback").inner_text()
    assert "Traceback (most recent call last)" in traceback and "LookupError" in traceback, traceback
    shot(page, "run-failed")

    dev.state.mkdir(parents=True, exist_ok=True)
    (dev.state / "ui-fixed").touch()  # the cause, fixed
    page.get_by_test_id("redrive").click()
    page.get_by_test_id("confirm").click()
    page.get_by_test_id("action-result").wait_for()
    page.get_by_role("button", name="Close").click()
    page.get_by_test_id("run-status").locator('[data-status="succeeded"]').wait_for()
    page.locator('[data-testid="node-publish"][data-status="succeeded"]').wait_for()
    page.get_by_role("tab", name="Replay history (1)").click()
    history = page.get_by_test_id("history-row")
    assert history.count() == 1 and "redrive" in history.inner_text() and "KNFLOW_ADMIN_TOKEN" in history.inner_text()
    assert wait_run(dev.url, run)["replays"][0]["previous_status"] == "failed"
    shot(page, "run-redriven")
    assert page.errors == []


def test_a_read_only_token_sees_no_action_buttons(dev, browser):
    run = start(dev, "ui-slow", {"text": "look, do not touch"})
    wait_run(dev.url, run)
    reader = create_token(dev.url, f"ui-reader-{free_port()}", "read")
    page = signed_in(browser, dev, reader)
    assert page.get_by_test_id("who").inner_text().endswith("read")
    page.locator(f'[data-testid="run-row"][data-run="{run}"]').wait_for()
    assert page.get_by_role("checkbox").count() == 0  # no selection, no bulk actions
    page.goto(f"{dev.url}/ui/runs/{run}")
    page.get_by_test_id("run-status").locator('[data-status="succeeded"]').wait_for()
    assert page.get_by_test_id("run-actions").count() == 0
    assert page.get_by_role("button", name="Redrive").count() == 0
    page.goto(f"{dev.url}/ui/pipelines/ui-slow")
    page.get_by_test_id("trigger-webhook").wait_for()
    assert page.get_by_test_id("run-form").count() == 0
    assert page.errors == []


def test_the_webhook_curl_the_pipeline_page_shows_starts_a_run(dev, browser):
    if shutil.which("bash") is None or shutil.which("curl") is None:
        pytest.fail("this test runs the page's curl example: it needs bash and curl")
    page = signed_in(browser, dev)
    page.goto(f"{dev.url}/ui/pipelines/ui-slow")
    curl = page.get_by_test_id("curl").inner_text()
    shot(page, "pipeline")
    done = subprocess.run(
        ["bash", "-c", curl],
        capture_output=True,
        text=True,
        timeout=20,
        env={**os.environ, "KNFLOW_TOKEN": ADMIN_TOKEN},
    )
    assert done.returncode == 0, done.stderr
    assert wait_run(dev.url, json.loads(done.stdout)["run"])["pipeline"] == "ui-slow"


def test_a_foreach_of_500_items_renders_and_updates(dev, browser):
    page = signed_in(browser, dev)
    run = start(dev, "ui-fan", {"n": 500})
    page.goto(f"{dev.url}/ui/runs/{run}")
    progress = page.get_by_test_id("progress-double")
    seen: list[str] = []
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        text = progress.inner_text() if progress.count() else ""
        if text and (not seen or seen[-1] != text):
            seen.append(text)
        if text.startswith("500 done"):
            break
        time.sleep(0.05)
    assert seen and seen[-1] == "500 done of 500", seen
    partial = [t for t in seen if t.endswith("of 500") and not t.startswith(("0 done", "500 done"))]
    assert len(partial) >= 2, f"the items' progress did not move on the page: {seen}"
    page.get_by_test_id("node-double").click()
    page.get_by_role("tab", name="Items (500)").click()
    rows = page.get_by_test_id("item-row")
    assert 10 < rows.count() < 60  # a window of the 500, not all of them
    page.get_by_test_id("item-list").evaluate("el => { el.scrollTop = el.scrollHeight; }")
    page.get_by_test_id("item-row").filter(has_text="[499]").wait_for()
    shot(page, "run-foreach")
    assert page.errors == []
