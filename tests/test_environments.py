"""Variables per environment (router/environments.py): the rule, the merge, the errors, and each way to choose
one (--env, KNFLOW_ENV, the catalogue of a router, a Knative profile's `environment:`); FlowHub's my-workflow."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from functions.registry import load_module
from knative.errors import ProfileInvalid
from knative.manifests import build
from knative.profile import parse_profile
from knflow.local import EmbeddedStack
from knflow.settings import Settings, SettingsInvalid
from router.catalog import StorePipelines
from router.environments import UnknownEnvironment
from router.loader import load_string
from router.pipeline import PipelineInvalid
from router.store.sqlite import SqliteStore

ROOT = Path(__file__).resolve().parent.parent
LOG = "nodes: [{id: a, type: log, config: {message: hi}}]\n"

PIPELINE = """
metadata: {name: envs}
variables:
  default: {greeting: hello, who: local}
  prod: {who: cluster}
nodes:
  - id: say
    type: template
    config: {template: "{{ variables.greeting }} {{ variables.who }}"}
"""


def knflow(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "knflow.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )
    assert "Traceback (most recent call last)" not in proc.stderr, proc.stderr
    return proc


def test_the_default_section_then_an_environment_over_it_key_by_key():
    p = load_string(PIPELINE, "envs.yaml")
    assert p.variables == {"greeting": "hello", "who": "local"}
    prod = p.for_environment("prod")
    assert prod.variables == {"greeting": "hello", "who": "cluster"} and prod.environment == "prod"
    assert p.for_environment(None) is p and p.for_environment("default").variables == p.variables
    # the document keeps every environment, as written
    assert prod.to_dict()["variables"] == {"default": {"greeting": "hello", "who": "local"}, "prod": {"who": "cluster"}}


def test_plain_variables_are_the_same_in_every_environment():
    p = load_string("metadata: {name: plain}\nvariables: {default: x, db: {host: h}}\n" + LOG, "p")
    assert p.environments == {} and p.for_environment("prod") is p
    assert p.variables == {"default": "x", "db": {"host": "h"}}  # 'default' is no section: it is not a mapping


def test_an_unknown_environment_names_the_pipeline_the_environment_and_the_ones_it_has():
    p = load_string(PIPELINE, "envs.yaml")
    with pytest.raises(UnknownEnvironment) as err:
        p.for_environment("stage")
    assert str(err.value).startswith(
        "pipeline 'envs' (envs.yaml) has no environment 'stage'; its environments are default, prod."
    )
    assert err.value.fields == {"pipeline": "envs", "environment": "stage"}


def test_sections_mixed_with_plain_values_are_refused():
    doc = "metadata: {name: mixed}\nvariables:\n  default: {a: 1}\n  region: eu\n" + LOG
    with pytest.raises(PipelineInvalid) as err:
        load_string(doc, "mixed.yaml")
    [problem] = err.value.problems
    assert problem.line == 4 and problem.field == "variables.region"
    assert "variables has a 'default' section, so its top-level keys are environments, but 'region' holds 'eu'" in (
        str(problem)
    )
    bad_name = "metadata: {name: bad}\nvariables: {default: {}, 'pr od': {}}\n" + LOG
    with pytest.raises(PipelineInvalid, match="environment name 'pr od' must be 1 to 63 letters"):
        load_string(bad_name, "bad.yaml")


async def test_templates_read_the_chosen_environment(tmp_path):
    p = load_string(PIPELINE, "envs.yaml")
    async with EmbeddedStack(SqliteStore(tmp_path / "k.db")) as stack:
        local = await stack.execute(p, {})
        prod = await stack.execute(p.for_environment("prod"), {})
    assert local["nodes"]["say"]["output"] == "hello local"
    assert prod["nodes"]["say"]["output"] == "hello cluster"
    assert prod["variables"] == {"greeting": "hello", "who": "cluster"}


async def test_a_routers_catalogue_gives_its_environment_and_refuses_a_pipeline_without_it(tmp_path):
    store = SqliteStore(tmp_path / "k.db")
    try:
        prod = StorePipelines(store, environment="prod")
        await prod.put(load_string(PIPELINE, "envs.yaml"))
        assert (await StorePipelines(store, environment="prod").get("envs")).variables["who"] == "cluster"
        assert (await StorePipelines(store).get("envs")).variables["who"] == "local"
        assert (await store.get_pipeline("envs"))["variables"]["prod"] == {"who": "cluster"}
        with pytest.raises(UnknownEnvironment, match="has no environment 'stage'"):
            await StorePipelines(store, environment="stage").put(load_string(PIPELINE, "envs.yaml"))
    finally:
        await store.close()


def test_knflow_env_is_a_setting_with_a_checked_name(monkeypatch):
    monkeypatch.setenv("KNFLOW_ENV", "prod")
    assert Settings().env == "prod"
    monkeypatch.setenv("KNFLOW_ENV", "no good")
    with pytest.raises(SettingsInvalid, match="KNFLOW_ENV has value 'no good': the environment 'no good' must be"):
        Settings()


def test_a_profile_environment_becomes_the_routers_knflow_env_and_each_pipeline_must_have_it():
    p = load_string(PIPELINE, "envs.yaml")
    bundle = build([p], profile=parse_profile({"environment": "prod"}))
    routers = [m for m in bundle.manifests if m["kind"] == "Service" and "router" in m["metadata"]["name"]]
    assert len(routers) == 2
    for router in routers:
        env = router["spec"]["template"]["spec"]["containers"][0]["env"]
        assert {"name": "KNFLOW_ENV", "value": "prod"} in env
    no_env = build([p])  # no environment in the profile: the default one, no KNFLOW_ENV
    for m in no_env.manifests:
        if m["kind"] == "Service" and "router" in m["metadata"]["name"]:
            assert all(e["name"] != "KNFLOW_ENV" for e in m["spec"]["template"]["spec"]["containers"][0]["env"])
    with pytest.raises(UnknownEnvironment, match=r"pipeline 'envs' .* has no environment 'stage'"):
        build([p], profile=parse_profile({"environment": "stage"}))
    with pytest.raises(ProfileInvalid, match="'environment': Value error, environment 'a b' must be"):
        parse_profile({"environment": "a b"})


def test_my_workflow_runs_in_each_environment_and_its_failure_handler_gets_the_traceback(tmp_path):
    store = f"sqlite:///{tmp_path}/k.db"
    ok = knflow("run", "examples/my_workflow.py", "--env", "prod", "--data", '{"name": "demo"}', "--store", store)
    assert ok.returncode == 0, ok.stderr
    assert (
        "run " in ok.stdout and "succeeded (pipeline my-workflow)" in ok.stdout and '"bucket": "my-bucket"' in ok.stdout
    )
    args = ["run", "examples/my_workflow.py", "--data", '{"name": "demo", "fail": true}', "--store", store, "--json"]
    failed = knflow(*args)
    assert failed.returncode == 1
    rec = json.loads(failed.stdout)
    assert rec["status"] == "failed" and rec["error"]["node"] == "step2"
    assert rec["nodes"]["step1"]["output"]["workspace"] == "./tmp"  # the default environment
    handled = rec["nodes"]["on-failure"]["output"]
    assert handled["failed_node"] == "step2"
    assert handled["exception"] == "RuntimeError: step2 was asked to fail (bucket local-bucket)"
    unknown = knflow("run", "examples/my_workflow.py", "--data", "{}", "--store", store, env={"KNFLOW_ENV": "stage"})
    assert unknown.returncode == 1
    assert (
        "pipeline 'my-workflow'" in unknown.stderr
        and "has no environment 'stage'; its environments are default, prod" in (unknown.stderr)
    )
    bad = knflow("run", "examples/my_workflow.py", "--env", "a b")
    assert bad.returncode == 2 and "argument --env: environment 'a b' must be" in bad.stderr


def test_my_workflow_exports_valid_yaml(tmp_path):
    proc = knflow("export", "examples/my_workflow.py")
    assert proc.returncode == 0, proc.stderr
    doc = yaml.safe_load(proc.stdout)
    assert doc["on_failure"] == "fail-handler" and [n["id"] for n in doc["nodes"]] == ["step1", "step2"]
    assert doc["variables"]["prod"]["BUCKET"] == "my-bucket"
    out = tmp_path / "my-workflow.yaml"
    out.write_text(proc.stdout)
    check = knflow("validate", str(out))
    assert check.returncode == 0 and "pipeline 'my-workflow' is valid (2 nodes, 1 edge)" in check.stdout, check.stderr


def test_dsl_variables_per_environment():
    module = load_module(str(ROOT / "examples" / "my_workflow.py"))
    p = module.my_workflow
    assert p.variables["BUCKET"] == "local-bucket"
    assert p.for_environment("prod").variables == {
        "WORKSPACE": "/data",
        "DEBUG": False,
        "BUCKET": "my-bucket",
        "REGION_NAME": "ap-northeast-2",
    }
