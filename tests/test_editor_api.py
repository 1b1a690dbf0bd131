"""What the pipeline editor asks the router (issue 15): the function catalogue (`GET /functions`) and the
validator on a draft (`POST /pipelines/validate`), on a real router process, with real tokens."""

from __future__ import annotations

import json
from pathlib import Path

from tests.test_fabric_e2e import http
from tests.test_router_service import PIPELINES, router  # noqa: F401 (the module's router process)
from tests.tokens import create_token

ROOT = Path(__file__).resolve().parent.parent


def test_the_catalogue_lists_builtins_by_category_and_the_routers_own_functions(router):  # noqa: F811
    status, listed = http("GET", f"{router.url}/functions")
    assert status == 200 and isinstance(listed, list)
    by_name = {f["name"]: f for f in listed}
    assert {"http-request", "llm-generate", "mongodb-insert", "log", "switch"} <= set(by_name)
    assert by_name["http-request"]["category"] == "HTTP" and by_name["mongodb-insert"]["category"] == "database"
    assert by_name["llm-generate"]["category"] == "AI" and by_name["llm-generate"]["builtin"] is True
    custom = by_name["split-words"]  # examples.hello, which a served pipeline imports
    assert custom["category"] == "custom" and custom["builtin"] is False
    http_in = by_name["http-request"]["input_schema"]
    assert http_in["type"] == "object" and "url" in http_in["properties"] and "url" in http_in["required"]
    assert by_name["log"]["output_schema"]["type"] == "object"
    traits = by_name["http-request"]["traits"]
    assert traits["timeout_s"] > 0 and "retries" in traits["retry"]
    status, one = http("GET", f"{router.url}/functions/http-request")
    assert status == 200 and one == by_name["http-request"]
    status, missing = http("GET", f"{router.url}/functions/nope")
    assert status == 404 and "unknown function 'nope'" in missing["error"] and "http-request" in missing["error"]


def test_the_catalogue_needs_a_token(router):  # noqa: F811
    assert http("GET", f"{router.url}/functions", token=None)[0] == 401
    reader = create_token(router.url, "catalogue-reader", "read")
    assert http("GET", f"{router.url}/functions", token=reader)[0] == 200


def test_a_valid_draft_is_valid_and_not_stored(router):  # noqa: F811
    text = (ROOT / "examples/article-generator.yaml").read_text()
    status, body = http("POST", f"{router.url}/pipelines/validate", text.encode(), {"content-type": "application/yaml"})
    assert status == 200 and body == {"valid": True, "pipeline": "article-generator", "problems": []}
    assert http("GET", f"{router.url}/pipelines/article-generator")[0] == 404


def test_every_problem_of_a_yaml_draft_names_its_line_node_field_and_edge(router):  # noqa: F811
    draft = (
        "metadata: {name: draft}\n"  # 1
        "functions: [examples.hello]\n"  # 2
        "nodes:\n"  # 3
        "  - {id: a, type: log, inputs: {message: hi}}\n"  # 4
        "  - {id: b, type: nope}\n"  # 5
        "edges:\n"  # 6
        "  - {from: a, to: b}\n"  # 7
        "  - {from: a, to: c, when: 'a.output.'}\n"  # 8
    )
    yaml = {"content-type": "application/yaml"}
    status, body = http("POST", f"{router.url}/pipelines/validate", draft.encode(), yaml)
    assert status == 200 and body["valid"] is False and body["pipeline"] == "draft"
    problems = body["problems"]
    code = next(p for p in problems if p["field"] == "functions")
    assert code["line"] == 2 and "cannot name code" in code["message"]
    unknown = next(p for p in problems if p["node"] == "b")
    assert unknown["line"] == 5 and unknown["field"] == "type" and "unknown function 'nope'" in unknown["message"]
    edge = next(p for p in problems if p.get("edge", {}).get("index") == 1 and "unknown node 'c'" in p["message"])
    assert edge["line"] == 8 and edge["edge"] == {"index": 1, "from": "a", "to": "c"}
    assert all(p["text"].startswith("pipeline 'draft' (draft:") for p in problems), problems


def test_a_draft_that_is_no_pipeline_gets_its_problem_not_an_error(router):  # noqa: F811
    for body, expect in ((b"nodes: [", "YAML syntax error"), (b"[1, 2]", "mapping"), (b"", "")):
        status, answer = http("POST", f"{router.url}/pipelines/validate", body)
        assert status == 200 and answer["valid"] is False and answer["problems"], (body, answer)
        assert expect in json.dumps(answer["problems"])
    status, answer = http("POST", f"{router.url}/pipelines/validate", b"\xff\xfe")
    assert status == 400 and "not UTF-8" in answer["error"]


def test_validating_needs_a_token_and_put_gives_the_same_problems(router):  # noqa: F811
    draft = b"metadata: {name: draft2}\nnodes: [{id: a, type: nope}]\n"
    assert http("POST", f"{router.url}/pipelines/validate", draft, token=None)[0] == 401
    reader = create_token(router.url, "draft-reader", "read")
    status, checked = http("POST", f"{router.url}/pipelines/validate", draft, token=reader)
    assert status == 200 and [p["text"] for p in checked["problems"]] == [
        "pipeline 'draft2' (draft:2): node 'a' field 'type': " + checked["problems"][0]["message"]
    ]
    status, put = http("PUT", f"{router.url}/pipelines/draft2", draft)
    assert status == 422 and "unknown function 'nope'" in put["error"] and "PUT /pipelines/draft2:2" in put["error"]


def test_details_answer_the_yaml_text_a_pipeline_was_put_as_and_generate_it_for_json(router):  # noqa: F811
    text = (
        "# greets whoever asks (a comment the editor keeps)\n"
        "metadata: {name: kept-text}\n"
        "nodes:\n"
        "  - id: say  # the only node\n"
        "    type: log\n"
        "    inputs: {message: hi}\n"
    )
    yaml = {"content-type": "application/yaml"}
    assert http("PUT", f"{router.url}/pipelines/kept-text", text.encode(), yaml)[0] == 200
    status, details = http("GET", f"{router.url}/pipelines/kept-text/details")
    assert status == 200 and details["yaml"] == text and details["yaml_source"] == "stored"
    status, doc = http("GET", f"{router.url}/pipelines/kept-text")
    assert status == 200 and doc["metadata"]["name"] == "kept-text" and doc["nodes"][0]["id"] == "say"

    body = json.dumps(doc).encode()  # the same pipeline as JSON: no text to keep, the old one replaced
    assert http("PUT", f"{router.url}/pipelines/kept-text", body, {"content-type": "application/json"})[0] == 200
    status, details = http("GET", f"{router.url}/pipelines/kept-text/details")
    assert status == 200 and details["yaml_source"] == "generated" and "#" not in details["yaml"]
    assert "kept-text" in details["yaml"]
    assert http("DELETE", f"{router.url}/pipelines/kept-text")[0] in (200, 204)


def test_a_pipeline_file_the_router_loads_keeps_its_text(router):  # noqa: F811
    name = sorted(PIPELINES)[0]
    status, details = http("GET", f"{router.url}/pipelines/{name}/details")
    assert status == 200
    assert details == {**details, "yaml": PIPELINES[name], "yaml_source": "stored"}


def test_pause_and_resume_keep_the_stored_text_saying_its_status(router):  # noqa: F811
    text = "# a comment that stays\nmetadata: {name: kept-status}\n"
    text += "nodes:\n  - {id: say, type: log, inputs: {message: hi}}\n"
    assert (
        http("PUT", f"{router.url}/pipelines/kept-status", text.encode(), {"content-type": "application/yaml"})[0]
        == 200
    )
    assert http("POST", f"{router.url}/pipelines/kept-status/pause")[0] == 200
    details = http("GET", f"{router.url}/pipelines/kept-status/details")[1]
    assert details["yaml"] == text + "status: paused\n" and details["pipeline"]["status"] == "paused"
    assert http("POST", f"{router.url}/pipelines/kept-status/resume")[0] == 200
    details = http("GET", f"{router.url}/pipelines/kept-status/details")[1]
    assert details["yaml"] == text + "status: active\n" and "status" not in details["pipeline"]
    assert http("DELETE", f"{router.url}/pipelines/kept-status")[0] in (200, 204)
