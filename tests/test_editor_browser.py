"""The pipeline editor in a real browser (Playwright driving Debian's chromium) against a real `knflow dev`
stack (tokens required): build the seed's article-generator from an empty canvas by dragging and connecting,
change an existing pipeline on the canvas and read the YAML diff, see an invalid edit on its node, try a draft.

Screenshots go to docs/screenshots/ (the README shows editor.png)."""

from __future__ import annotations

import difflib
import json
import re
from pathlib import Path

import pytest
import yaml

from tests.test_fabric_e2e import http, wait_run
from tests.test_ui_browser import PIPELINES, SHOTS, start_dev
from tests.test_ui_browser import signed_in as ui_signed_in

ROOT = Path(__file__).resolve().parent.parent
SEED = ROOT / "examples" / "article-generator.yaml"

pytestmark = pytest.mark.timeout(180)

# an existing pipeline (stored through the API): a retry and an edge condition to change on the canvas
EXISTING = {
    "apiVersion": "flume/v1",
    "kind": "Pipeline",
    "metadata": {"name": "ed-change", "description": "two steps"},
    "trigger": {"type": "webhook"},
    "nodes": [
        {
            "id": "first",
            "type": "ui-slow",
            "inputs": {"text": "{{ trigger.data.text }}", "delay_s": 0},
            "retry": {"retries": 1},
        },
        {"id": "second", "type": "ui-slow", "inputs": {"text": "{{ first.output.text }}", "delay_s": 0}},
    ],
    "edges": [{"from": "first", "to": "second", "when": 'first.output.text != ""'}],
}


@pytest.fixture(scope="module")
def dev(tmp_path_factory):
    proc = start_dev(tmp_path_factory.mktemp("editor"), [PIPELINES / "slow.yaml"])
    yield proc
    proc.stop()


def signed_in(browser, dev, path: str | None):
    page = ui_signed_in(browser, dev)
    if path is None:  # through the pages' own links
        page.get_by_role("link", name="Pipelines", exact=True).click()
        page.get_by_role("link", name="New pipeline").click()
    else:
        page.evaluate(f"window.history.pushState(null, '', '/ui{path}'); dispatchEvent(new PopStateEvent('popstate'))")
    page.get_by_test_id("editor").wait_for()
    return page


def valid(page) -> None:
    page.locator('[data-testid="validity"][data-state="valid"]').wait_for()


def yaml_text(page) -> str:
    page.get_by_test_id("view-yaml").click()
    text = page.get_by_test_id("yaml-editor").input_value()
    page.get_by_test_id("view-canvas").click()
    page.get_by_test_id("canvas").wait_for()
    return text


def changed_lines(before: str, after: str) -> list[str]:
    diff = difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0)
    return [line for line in diff if line[:1] in "+-" and not line.startswith(("+++", "---"))]


def drop(page, fn: str, x: int, y: int) -> None:
    page.get_by_test_id(f"palette-{fn}").drag_to(page.get_by_test_id("canvas"), target_position={"x": x, "y": y})
    page.get_by_test_id("node-form").wait_for()


def rename(page, node_id: str) -> None:
    box = page.get_by_test_id("field-id")
    box.fill(node_id)
    box.press("Enter")
    page.get_by_test_id(f"node-{node_id}").wait_for()


def connect(page, source: str, target: str) -> None:
    page.get_by_test_id(f"out-{source}").drag_to(page.get_by_test_id(f"in-{target}"))


def test_build_the_seeds_article_generator_from_an_empty_canvas(dev, browser):
    page = signed_in(browser, dev, None)
    page.get_by_test_id("palette-http-request").wait_for()
    assert "Send one HTTP request" in page.get_by_test_id("palette-http-request").inner_text()
    assert page.get_by_test_id("save").is_disabled()

    page.get_by_test_id("pipeline-name").fill("article-generator")
    page.get_by_test_id("pipeline-description").fill("기사 생성 파이프라인")
    page.get_by_test_id("pipeline-variables").fill("model: llama3.1-70b")

    drop(page, "http-request", 130, 90)
    rename(page, "fetch-topic")
    page.get_by_test_id("field-method").select_option("GET")
    page.get_by_test_id("field-url").fill("https://api.example.com/topics")

    drop(page, "llm-generate", 380, 220)
    rename(page, "generate-article")
    page.get_by_test_id("field-runOn").select_option("gpu")
    model = page.get_by_test_id("field-model")
    model.click()
    model.press_sequentially("{{var")  # the completion offers the pipeline's variables
    page.get_by_test_id("suggestion").filter(has_text="variables.model").click()
    assert model.input_value() == "{{variables.model}}"
    page.get_by_test_id("field-maxTokens").fill("4096")
    page.get_by_test_id("where-prompt").select_option("inputs")
    page.get_by_test_id("field-prompt").fill("주제: {{fetch-topic.output.topic}}\n위 주제로 뉴스 기사를 작성하세요.\n")

    drop(page, "mongodb-insert", 630, 340)
    rename(page, "save-article")
    page.get_by_test_id("field-database").fill("flume")
    page.get_by_test_id("field-collection").fill("articles")
    page.get_by_test_id("where-document").select_option("inputs")
    page.get_by_test_id("field-document").fill(
        'title: "{{fetch-topic.output.topic}}"\ncontent: "{{generate-article.output}}"\ncreatedAt: "{{$now}}"'
    )

    connect(page, "fetch-topic", "generate-article")
    connect(page, "generate-article", "save-article")
    page.locator(".react-flow__edge").nth(1).wait_for()
    valid(page)
    text = yaml_text(page)
    page.get_by_test_id("relayout").click()  # as the run view lays it out
    page.locator('[data-testid="canvas"][data-fits="1"]').wait_for()
    page.get_by_test_id("node-save-article").click()
    page.get_by_test_id("node-form").get_by_text("save-article").first.wait_for()
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "editor.png"))

    seed = SEED.read_text()
    assert yaml.safe_load(text) == yaml.safe_load(seed), text  # equivalent: the same document
    status, checked = http("POST", f"{dev.url}/pipelines/validate", text.encode(), {"content-type": "application/yaml"})
    assert status == 200 and checked["valid"] is True, checked

    page.get_by_test_id("save").click()
    page.get_by_test_id("saved").wait_for()
    assert page.url.endswith("/ui/pipelines/article-generator/edit")
    status, stored = http("GET", f"{dev.url}/pipelines/article-generator")
    assert status == 200
    status, seed_checked = http("POST", f"{dev.url}/pipelines/validate", seed.encode())
    assert seed_checked["valid"] is True
    status, again = http(
        "PUT",
        f"{dev.url}/pipelines/article-generator-seed",
        seed.replace("name: article-generator", "name: article-generator-seed").encode(),
    )
    assert status == 200, again
    _, seed_stored = http("GET", f"{dev.url}/pipelines/article-generator-seed")
    seed_stored["metadata"]["name"] = "article-generator"
    assert stored == seed_stored  # the router reads the same pipeline from both
    assert page.errors == []


def test_change_a_retry_and_an_edge_condition_on_the_canvas_and_the_diff_is_those_lines(dev, browser):
    status, body = http(
        "PUT", f"{dev.url}/pipelines/ed-change", json.dumps(EXISTING).encode(), {"content-type": "application/json"}
    )
    assert status == 200, body
    _, details = http("GET", f"{dev.url}/pipelines/ed-change/details")
    before = details["yaml"]

    page = signed_in(browser, dev, "/pipelines/ed-change/edit")
    page.get_by_test_id("node-second").wait_for()
    valid(page)
    assert yaml_text(page) == before  # loaded, not reformatted
    assert page.get_by_test_id("save").is_disabled()  # nothing to save

    page.get_by_test_id("node-first").click()
    page.get_by_test_id("field-retry.retries").fill("4")
    page.get_by_test_id("rf__edge-e0").click()
    page.get_by_test_id("edge-form").wait_for()
    when = page.get_by_test_id("edge-when")
    when.fill("")
    when.press_sequentially("fir")  # CEL names complete too
    page.get_by_test_id("suggestion").filter(has_text="first.output.text").click()
    assert when.input_value() == "first.output.text"
    when.fill('first.output.text == "go"')
    page.get_by_test_id("dirty").wait_for()
    valid(page)

    edited = yaml_text(page)
    expected = [
        "-    retries: 1",
        '-  when: first.output.text != ""',
        "+    retries: 4",
        '+  when: first.output.text == "go"',
    ]
    assert sorted(changed_lines(before, edited)) == sorted(expected), changed_lines(before, edited)

    page.get_by_test_id("save").click()
    page.get_by_test_id("saved").wait_for()
    _, details = http("GET", f"{dev.url}/pipelines/ed-change/details")
    assert sorted(changed_lines(before, details["yaml"])) == sorted(changed_lines(before, edited))

    # a YAML edit (with a comment) shows up on the canvas, and the canvas keeps the comment
    page.get_by_test_id("view-yaml").click()
    box = page.get_by_test_id("yaml-editor")
    box.fill("# kept by the editor\n" + box.input_value() + "- from: second\n  to: third\n")
    box.fill(box.input_value().replace("nodes:\n", "nodes:\n- id: third\n  type: ui-slow\n  inputs: {text: hi}\n", 1))
    page.get_by_test_id("view-canvas").click()
    page.get_by_test_id("node-third").wait_for()
    page.get_by_test_id("node-third").click()
    page.get_by_test_id("field-timeout_s").fill("5")
    valid(page)
    text = yaml_text(page)
    assert text.startswith("# kept by the editor\n") and "  timeout_s: 5\n" in text and "inputs: {text: hi}" in text

    page.get_by_test_id("node-third").click()
    page.keyboard.press("Delete")  # the node goes, and the edge into it
    page.get_by_test_id("node-third").wait_for(state="detached")
    text = yaml_text(page)
    assert "third" not in text and text.startswith("# kept by the editor\n")
    assert page.errors == []


COMMENTED = """# kept: the comments a user wrote stay where they are (issue 15)
apiVersion: flume/v1
kind: Pipeline
metadata: {name: ed-comments}
trigger: {type: webhook}
nodes:
  # the one step
  - id: only
    type: ui-slow
    inputs: {text: "{{ trigger.data.text }}", delay_s: 0}
    retry:
      retries: 2  # flaky upstream
"""


def test_a_stored_pipelines_comments_survive_a_canvas_edit_a_save_and_a_reopen(dev, browser):
    status, body = http(
        "PUT", f"{dev.url}/pipelines/ed-comments", COMMENTED.encode(), {"content-type": "application/yaml"}
    )
    assert status == 200, body

    page = signed_in(browser, dev, "/pipelines/ed-comments/edit")
    page.get_by_test_id("node-only").wait_for()
    valid(page)
    assert yaml_text(page) == COMMENTED  # the stored text, not one regenerated from the document
    page.get_by_test_id("node-only").click()
    page.get_by_test_id("field-retry.retries").fill("5")
    page.get_by_test_id("dirty").wait_for()
    valid(page)
    page.get_by_test_id("save").click()
    page.get_by_test_id("saved").wait_for()
    page.close()

    page = signed_in(browser, dev, "/pipelines/ed-comments/edit")  # opened again, from what the router stored
    page.get_by_test_id("node-only").wait_for()
    reopened = yaml_text(page)
    assert reopened.startswith("# kept: the comments") and "  # the one step\n" in reopened
    assert changed_lines(COMMENTED, reopened) == [
        "-      retries: 2  # flaky upstream",
        "+      retries: 5  # flaky upstream",
    ]
    _, details = http("GET", f"{dev.url}/pipelines/ed-comments/details")
    assert details["yaml"] == reopened and details["yaml_source"] == "stored"
    assert page.errors == []


def test_an_invalid_edit_shows_the_validators_message_on_its_node_and_blocks_saving(dev, browser):
    status, body = http(
        "PUT", f"{dev.url}/pipelines/ed-invalid", json.dumps({**EXISTING, "metadata": {"name": "ed-invalid"}}).encode()
    )
    assert status == 200, body
    page = signed_in(browser, dev, "/pipelines/ed-invalid/edit")
    page.get_by_test_id("node-first").click()
    valid(page)
    page.get_by_test_id("field-retry.retries").fill("-1")
    page.locator('[data-testid="validity"][data-state="invalid"]').wait_for()
    message = page.get_by_test_id("node-problem-first").inner_text()
    assert "retries must be an integer >= 0, got -1" in message
    assert page.get_by_test_id("node-problem-second").count() == 0
    assert page.get_by_test_id("node-first").get_attribute("data-invalid") == "true"
    assert page.get_by_test_id("save").is_disabled()
    assert "retries must be an integer >= 0" in page.get_by_test_id("form-problems").inner_text()
    page.screenshot(path=str(SHOTS / "editor-invalid.png"))

    page.get_by_test_id("rf__edge-e0").click()
    page.get_by_test_id("edge-when").fill("first.output.(")  # not CEL: the edge shows it
    page.get_by_test_id("form-problems").get_by_text("does not parse").wait_for()
    assert page.get_by_test_id("save").is_disabled()
    page.get_by_test_id("edge-when").fill("true")
    page.get_by_test_id("node-first").click()
    page.get_by_test_id("field-retry.retries").fill("2")
    valid(page)
    assert page.get_by_test_id("save").is_enabled()
    assert page.errors == []


def test_try_it_saves_the_draft_runs_it_and_opens_the_run(dev, browser):
    status, body = http(
        "PUT", f"{dev.url}/pipelines/ed-try", json.dumps({**EXISTING, "metadata": {"name": "ed-try"}}).encode()
    )
    assert status == 200, body
    page = signed_in(browser, dev, "/pipelines/ed-try/edit")
    page.get_by_test_id("rf__edge-e0").click()
    page.get_by_test_id("edge-when").fill('first.output.text == "TRY"')
    valid(page)
    page.get_by_test_id("try").click()
    page.get_by_test_id("try-data").fill('{"text": "try"}')
    page.get_by_test_id("try-run").click()
    page.wait_for_url(re.compile(r".*/ui/runs/[^/]+$"))
    run = page.url.rsplit("/", 1)[1]
    page.get_by_test_id("run-status").locator('[data-status="succeeded"]').wait_for()
    assert wait_run(dev.url, run)["status"] == "succeeded"
    _, stored = http("GET", f"{dev.url}/pipelines/ed-try")
    assert stored["edges"][0]["when"] == 'first.output.text == "TRY"'
    assert page.errors == []
