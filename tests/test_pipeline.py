"""The pipeline model: loading YAML, the DAG, validation that names file, line, node and field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from router.pipeline import Pipeline, PipelineInvalid
from router.loader import load, load_string
from router.pipeline_doc import from_dict
from router.pipeline_yaml import parse_yaml

ROOT = Path(__file__).resolve().parent.parent
HEAD = "apiVersion: knflow.dev/v1\nkind: Pipeline\nmetadata: {name: t}\nfunctions: [examples.hello]\n"


def problems_of(text: str) -> list[str]:
    with pytest.raises(PipelineInvalid) as err:
        load_string(text, "p.yaml")
    return [str(p) for p in err.value.problems]


def test_hello_loads_and_orders_its_dag():
    p = load(ROOT / "examples/hello.yaml")
    assert p.name == "hello" and list(p.nodes) == ["split", "count", "shout", "summary"]
    assert p.order == ["split", "count", "shout", "summary"]
    assert p.predecessors["summary"] == ["count", "shout"]
    assert p.ancestors["summary"] == {"split", "count", "shout"}
    assert p.downstream("count") == {"count", "summary"}
    assert p.triggers[0].type == "webhook" and p.variables == {"greeting": "hello"}


def test_the_seed_article_generator_loads_unchanged_and_validates():
    text = (ROOT / "examples/article-generator.yaml").read_text()
    seed = ROOT.parent / "shared/seeds/000_49ef2dde0b813bb8.txt"
    if seed.exists():
        assert text.strip() in seed.read_text()
    p = load(ROOT / "examples/article-generator.yaml")
    assert sorted(n.function for n in p.nodes.values()) == ["http-request", "llm-generate", "mongodb-insert"]
    assert p.nodes["generate-article"].run_on == "gpu"
    assert p.nodes["fetch-topic"].config["url"] == "https://api.example.com/topics"


def test_yaml_syntax_error_names_the_line():
    msgs = problems_of(HEAD + "nodes:\n  - id: a\n    type: [unclosed\n")
    assert len(msgs) == 1 and msgs[0].startswith("pipeline (p.yaml:") and "YAML syntax error" in msgs[0]


def test_every_problem_is_collected_with_its_line():
    text = (
        HEAD
        + """nodes:
  - id: a
    type: split-words
    inputs: {text: 3}
  - id: a
    type: count-words
  - id: b
    type: nope
  - id: c
    type: shout-words
    inputs: {words: "{{ d.output.words }}"}
  - id: d
    type: count-words
    inputs: {words: "{{ ghost.output }}"}
    colour: red
edges:
  - {from: a, to: zz}
  - {from: c, to: d, when: "c.output.x >"}
  - {from: a, to: c, when: "d.output.count > 1"}
"""
    )
    msgs = problems_of(text)
    joined = "\n".join(msgs)
    assert "(p.yaml:9): node 'a' field 'id': duplicate node id 'a'" in joined
    assert "(p.yaml:19): node 'd' field 'colour': unknown field 'colour'" in joined
    assert "(p.yaml:21): field 'edges[0].to': edge a -> zz: 'to' names unknown node 'zz'" in joined
    assert "(p.yaml:12): node 'b' field 'type': unknown function 'nope'" in joined
    assert (
        "(p.yaml:8): node 'a' field 'inputs.text': "
        "Input should be a valid string (function 'split-words' expects Sentence)" in joined
    )
    assert "node 'd': inputs.words: {{ ghost.output }}: unknown name 'ghost'" in joined
    assert (
        "node 'c' field 'inputs': reads {{ d.output.words }} but 'd' is not upstream of 'c'. Add an edge d -> c."
        in joined
    )
    assert "field 'edges[1].when': edge c -> d: condition 'c.output.x >' does not parse" in joined
    assert "field 'edges[2].when': edge a -> c: condition reads node 'd', which is not upstream of 'c'" in joined


def test_cycles_and_self_loops():
    text = (
        HEAD
        + """nodes:
  - {id: a, type: count-words, inputs: {words: []}}
  - {id: b, type: count-words, inputs: {words: []}}
edges:
  - {from: a, to: b}
  - {from: b, to: a}
  - {from: b, to: b}
"""
    )
    joined = "\n".join(problems_of(text))
    assert "the edges form a cycle: a -> b -> a. A pipeline must be a DAG." in joined
    assert "edge b -> b points a node at itself" in joined


def test_missing_required_input_and_structure_errors():
    joined = "\n".join(problems_of(HEAD + "nodes:\n  - id: a\n    type: split-words\n"))
    assert "node 'a' field 'inputs.text': Field required (function 'split-words' expects Sentence)" in joined
    joined = "\n".join(problems_of("kind: Job\nmetadata: {name: Bad Name}\nnodes: []\nextra: 1\n"))
    assert "kind must be 'Pipeline', got 'Job'" in joined
    assert "metadata.name must be lowercase letters, digits and '-', got 'Bad Name'" in joined
    assert "nodes must be a non-empty list" in joined
    assert "unknown top-level field 'extra'" in joined
    assert problems_of("- just\n- a list\n")[0].endswith(
        "the document must be a mapping with apiVersion, kind, metadata, nodes; got list"
    )


def test_triggers_and_node_options_are_checked():
    text = (
        HEAD
        + """triggers:
  - {type: cloudevent}
  - {type: cron}
  - {type: sometimes}
nodes:
  - id: a
    type: count-words
    runOn: tpu
    retry: {retries: -1, colour: 1}
    timeout_s: -5
    inputs: {words: []}
"""
    )
    joined = "\n".join(problems_of(text))
    assert "a cloudevent trigger needs filter.type" in joined
    assert "a cron trigger needs schedule" in joined
    assert "trigger type 'sometimes' is not one of webhook, cloudevent, cron, manual" in joined
    assert "node 'a' field 'runOn': runOn 'tpu' is not one of engine, cpu, gpu" in joined
    assert "unknown retry field(s) colour" in joined
    assert "node 'a' field 'timeout_s': timeout_s has value -5. Expected a number > 0." in joined
    cron = "\n".join(
        problems_of(
            HEAD + "trigger: {type: cron, schedule: '61 * * * *', timezone: Mars/Olympus}\n"
            "nodes: [{id: a, type: count-words, inputs: {words: []}}]\n"
        )
    )
    assert "schedule '61 * * * *' is not a cron expression of 5 fields" in cron
    assert "timezone 'Mars/Olympus' is not an IANA time zone" in cron


def test_a_missing_file_is_a_clear_error():
    with pytest.raises(
        PipelineInvalid, match=r"pipeline \(nope.yaml\): cannot read the file: No such file or directory"
    ):
        load("nope.yaml")


def test_functions_module_that_fails_is_reported_as_a_problem(tmp_path):
    (tmp_path / "p.yaml").write_text(
        "metadata: {name: x}\nfunctions: [missing.py]\nnodes: [{id: a, type: log, inputs: {message: hi}}]\n"
    )
    with pytest.raises(PipelineInvalid, match=r"field 'functions': functions module 'missing.py' not found"):
        load(tmp_path / "p.yaml")


def test_yaml_export_round_trips():
    p = load(ROOT / "examples/hello.yaml")
    again = load_string(p.to_yaml(), "again.yaml", base_dir=ROOT / "examples")
    assert again.to_dict() == p.to_dict()
    doc = yaml.safe_load(p.to_yaml())
    assert doc["nodes"][1] == {"id": "count", "function": "count-words", "inputs": "{{ split.output }}"}


def test_parse_yaml_maps_paths_to_lines():
    doc, lines = parse_yaml("a:\n  b:\n    - x\n    - y\n", "f")
    assert doc == {"a": {"b": ["x", "y"]}}
    assert lines[("a", "b", 1)] == 4 and lines[("a",)] == 1


def test_from_dict_builds_the_model_without_a_file():
    p, problems = from_dict({"metadata": {"name": "m"}, "nodes": [{"id": "a", "function": "log"}]})
    assert problems == [] and isinstance(p, Pipeline) and p.nodes["a"].function == "log"
    assert p.triggers[0].type == "manual"


def test_a_near_miss_key_gets_a_did_you_mean():
    text = """metadata: {name: t}
name: t
triger: {type: cron, schedule: "0 9 * * *", tz: UTC}
nodes:
  - id: a
    type: log
    inputs: {message: hi}
    retries: 3
    timeout: 5
    run_on: cpu
    retry: {delay: 2}
  - {id: b, type: log, input: {message: hi}, depends_on: [a]}
edges:
  - {source: a, target: b}
  - {from: a, to: b, condtion: "true"}
"""
    joined = "\n".join(problems_of(text))
    assert "(p.yaml:2): field 'name': unknown top-level field 'name' (did you mean metadata: {name: t}?)" in joined
    assert "(p.yaml:3): field 'triger': unknown top-level field 'triger' (did you mean 'trigger'?)" in joined
    assert (
        "(p.yaml:8): node 'a' field 'retries': unknown field 'retries' (did you mean retry: {retries: 3}?); "
        "expected one of concurrency, config," in joined
    )
    assert (
        "(p.yaml:9): node 'a' field 'timeout': unknown field 'timeout' (did you mean timeout_s: 5 (seconds)?)" in joined
    )
    assert "(p.yaml:10): node 'a' field 'run_on': unknown field 'run_on' (did you mean 'runOn'?)" in joined
    assert "(p.yaml:11): node 'a' field 'retry': unknown retry field(s) delay (did you mean 'delay_s'?)" in joined
    assert "node 'b' field 'input': unknown field 'input' (did you mean 'inputs'?)" in joined
    assert (
        "node 'b' field 'depends_on': unknown field 'depends_on' (did you mean an edge {from: a, to: b} in 'edges'?)"
        in joined
    )
    assert "(p.yaml:14): field 'edges[0].source': edge #1: unknown field 'source' (did you mean 'from'?)" in joined
    assert "field 'edges[0].target': edge #1: unknown field 'target' (did you mean 'to'?)" in joined
    assert (
        "(p.yaml:15): field 'edges[1].condtion': edge a -> b: unknown field 'condtion' (did you mean 'when'?)" in joined
    )
    trigger = "\n".join(
        problems_of(HEAD + "trigger: {type: cron, shedule: '0 9 * * *'}\nnodes: [{id: a, type: log}]\n")
    )
    assert "field 'trigger.shedule': unknown trigger field 'shedule' (did you mean 'schedule'?)" in trigger


def test_an_unknown_key_far_from_any_known_one_lists_what_is_expected():
    joined = "\n".join(problems_of(HEAD + "nodes: [{id: a, type: log, inputs: {message: hi}, colour: red}]\n"))
    assert (
        "node 'a' field 'colour': unknown field 'colour'; expected one of concurrency, config, deploy, description"
        in joined
    )


SIGNED = HEAD + "nodes: [{id: a, type: split-words, inputs: {text: x}}]\n"


def test_a_webhook_trigger_takes_an_auth_block_and_keeps_it():
    p = load_string(SIGNED + "trigger: {type: webhook, auth: {scheme: github, secret_env: GH_HOOK}}\n", "p.yaml")
    auth = p.triggers[0].auth
    assert auth is not None and (auth.scheme, auth.secret_env) == ("github", "GH_HOOK")
    assert p.to_dict()["trigger"]["auth"] == {"scheme": "github", "secret_env": "GH_HOOK"}
    again = load_string(yaml.safe_dump(p.to_dict()), "again.yaml")
    assert again.triggers[0].auth == auth


@pytest.mark.parametrize(
    ("auth", "expected"),
    [
        (
            "{scheme: standard-webhook, secret_env: X}",
            "(p.yaml:6): field 'trigger.auth.scheme': auth scheme 'standard-webhook' is not known "
            "(did you mean 'standard-webhooks'?); expected one of standard-webhooks, github, bearer",
        ),
        ("{scheme: svix, secret_env: X}", "(did you mean 'standard-webhooks'?)"),
        ("{secret_env: X}", "field 'trigger.auth.scheme': auth needs a scheme; expected one of"),
        (
            "{scheme: bearer, secret: hunter2}",
            "field 'trigger.auth.secret': unknown trigger auth field 'secret' (did you mean secret_env: NAME "
            "(the router's environment variable that holds the secret, never the secret)?)",
        ),
        ("{scheme: bearer, secret_env: 'hunter2 is my pw'}", "never the secret itself"),
        ("{scheme: bearer, secret_env: KNFLOW_ADMIN_TOKEN}", "'KNFLOW_ADMIN_TOKEN' is a variable knflow, Knative"),
        ("{scheme: bearer, secret_env: PATH}", "'PATH' is a variable knflow, Knative or the process uses"),
        ("bearer", "field 'trigger.auth': auth must be a mapping, e.g. auth: {scheme: standard-webhooks"),
        ("{scheme: bearer, secret_env: X, tolerance: 5}", "unknown trigger auth field 'tolerance'"),
    ],
)
def test_a_bad_auth_block_is_named_with_its_line(auth, expected):
    found = problems_of(SIGNED + f"trigger: {{type: webhook, auth: {auth}}}\n")
    assert any(expected in p for p in found), found
    assert not any("hunter2" in p for p in found)


def test_auth_belongs_to_one_webhook_trigger():
    cron = "trigger: {type: cron, schedule: '0 9 * * *', auth: {scheme: bearer, secret_env: X}}\n"
    assert any(
        "auth applies to webhook triggers only, not to a 'cron' trigger" in p for p in problems_of(SIGNED + cron)
    )
    two = "triggers: [{type: webhook}, {type: webhook, auth: {scheme: bearer, secret_env: X}}]\n"
    assert any("at most one webhook trigger" in p for p in problems_of(SIGNED + two))


def test_the_python_dsl_takes_the_same_auth_and_the_same_rules():
    from knflow import pipeline
    from examples.hello import split_words

    @pipeline(name="signed-dsl", trigger={"type": "webhook", "auth": {"scheme": "bearer", "secret_env": "DSL_HOOK"}})
    def signed(trigger):
        split_words(trigger)

    assert signed.triggers[0].auth is not None and signed.triggers[0].auth.secret_env == "DSL_HOOK"
    with pytest.raises(PipelineInvalid) as err:

        @pipeline(name="bad-dsl", trigger={"type": "webhook", "auth": {"scheme": "hmac", "secret_env": "X"}})
        def bad(trigger):
            split_words(trigger)

    assert "auth scheme 'hmac' is not known (did you mean 'github'?)" in str(err.value)


def test_a_nodes_deploy_settings_are_checked_and_kept():
    text = HEAD + (
        "nodes:\n  - id: a\n    type: log\n    inputs: {message: hi}\n"
        "    deploy:\n      image: ghcr.io/acme/log:1\n      gpu: {count: 1, pool: l4}\n"
        "      volumes: [{name: models, claim: models-l4, mount: /models}]\n"
    )
    p = load_string(text, "p.yaml")
    node = p.nodes["a"]
    assert node.deploy.image == "ghcr.io/acme/log:1" and node.deploy.gpu_pool == "l4"
    assert node.to_dict()["deploy"]["volumes"] == [{"name": "models", "claim": "models-l4", "mount": "/models"}]
    bad = HEAD + (
        "nodes:\n  - id: a\n    type: log\n    inputs: {message: hi}\n"
        "    deploy:\n      volumes: [{name: m, claim: m, mount: models}]\n      colour: red\n"
    )
    problems = problems_of(bad)
    assert any(
        "p.yaml:10" in x and "field 'deploy.volumes[0].mount'" in x and "absolute path" in x for x in problems
    ), problems
    assert any("'colour' is not a deployment setting" in x for x in problems), problems
