"""Manifests from pipelines: one Service per function, scaling and its conflicts, GPU pinning, Triggers
and their delivery, the router, cron sources, the loop guard. Pure: no cluster, no server.

Also home of the stand-in functions for the seed's article-generator (its AI and database functions are
not written yet): `ARTICLE_REGISTRY` has `llm-generate` (gpu=1) and `mongodb-insert`, builtins beside.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict

from functions.registry import REGISTRY, Registry, load_module
from functions.sdk import Retry, function
from knative import chains
from knative.errors import (
    KnativeError,
    LoopRisk,
    ManifestsRejected,
    NodesDisagree,
    ScalingInvalid,
)
from knative.manifests import build, files, to_yaml
from knative.profile import Profile, parse_profile
from router.loader import load
from router.pipeline_doc import from_dict
from router.pipeline_yaml import parse_yaml

ROOT = Path(__file__).resolve().parent.parent
# what every generated container gets for its read-only root filesystem (knative/services.py)
SCRATCH_ENV = {  # what every pod gets (the scrape token from a Secret: no value)
    "KNFLOW_BLOB_URL": "file:///knflow/blobs",
    "KNFLOW_METRICS_TOKEN": None,
    "TMPDIR": "/knflow/tmp",
    "HOME": "/knflow/tmp",
}
# every function's: where a failed try's node log lines go (the broker)
FUNCTION_ENV = {**SCRATCH_ENV, "K_SINK": "http://broker-ingress.knative-eventing.svc.cluster.local/knflow/knflow"}
EXAMPLES = ROOT / "examples"


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class _Text(BaseModel):
    text: str = ""


class _Inserted(BaseModel):
    id: str = ""


@function(name="llm-generate", gpu=1, timeout_s=120, memory="24Gi", retries=2, register=False)
async def _llm_generate(inp: _Open) -> _Text:
    return _Text(text="stand-in")


@function(name="mongodb-insert", timeout_s=10, register=False)
async def _mongodb_insert(inp: _Open) -> _Inserted:
    return _Inserted(id="stand-in")


class StandIns(Registry):
    """Stand-ins first, then the real registry (builtins and example functions)."""

    def find(self, name: str):
        return self._specs.get(name) or REGISTRY.find(name)


ARTICLE_REGISTRY = StandIns()
ARTICLE_REGISTRY.add(_llm_generate)
ARTICLE_REGISTRY.add(_mongodb_insert)


def article_pipeline():
    return load(EXAMPLES / "article-generator.yaml", registry=ARTICLE_REGISTRY)


def pipeline(text: str, name: str = "inline.yaml"):
    doc, lines = parse_yaml(text, name)
    p, problems = from_dict(doc, name, lines)
    assert not problems, problems
    return p


def by_kind(bundle, kind: str) -> dict[str, dict[str, Any]]:
    return {m["metadata"]["name"]: m for m in bundle.manifests if m["kind"] == kind}


def template(service: dict[str, Any]) -> tuple[dict, dict]:
    t = service["spec"]["template"]
    return t["metadata"].get("annotations", {}), t["spec"]


@function(name="kn-echo", timeout_s=20, max_scale=3, concurrency=2, register=False)
async def _echo(inp: _Text) -> _Text:
    return inp


@function(name="kn-embed", gpu=2, timeout_s=30, register=False)
async def _embed(inp: _Text) -> _Text:
    return inp


LOCAL = StandIns()
LOCAL.add(_echo)
LOCAL.add(_embed)

TWO_NODES = """
metadata: {name: two}
nodes:
  - {id: a, type: kn-echo, inputs: {text: x}%s}
  - {id: b, type: kn-echo, inputs: {text: y}%s}
edges: [{from: a, to: b}]
"""


def two_nodes(a: str = "", b: str = ""):
    return pipeline(TWO_NODES % (a, b))


def test_one_service_per_function_not_per_node():
    bundle = build([two_nodes()], LOCAL, root=ROOT)
    assert list(by_kind(bundle, "Service")) == ["knflow-kn-echo", "knflow-router", "knflow-router-events"]
    assert "knflow-kn-echo" in by_kind(bundle, "Trigger")


def test_function_services_are_cluster_local_and_the_router_signs_results_with_its_secret():
    services = by_kind(build([two_nodes()], LOCAL, root=ROOT), "Service")
    visibility = {
        name: svc["metadata"]["labels"].get("networking.knative.dev/visibility") for name, svc in services.items()
    }
    # the router has the public URL; its broker ingress, as the functions, none
    assert visibility == {
        "knflow-kn-echo": "cluster-local",
        "knflow-router": None,
        "knflow-router-events": "cluster-local",
    }
    for name in ("knflow-router", "knflow-router-events"):  # one key for both: results go to the events Service
        env = {e["name"]: e for e in template(services[name])[1]["containers"][0]["env"]}
        assert env["KNFLOW_RESULT_KEY"]["valueFrom"] == {
            "secretKeyRef": {"name": "knflow-router", "key": "result_key", "optional": True}
        }
    notes = build([two_nodes()], LOCAL, root=ROOT).notes
    assert '--from-literal=result_key="$(openssl rand -hex 32)"' in "\n".join(notes)


def test_traits_become_autoscaling_annotations_and_spec_fields():
    svc = by_kind(build([two_nodes()], LOCAL, root=ROOT), "Service")["knflow-kn-echo"]
    annotations, spec = template(svc)
    assert annotations["autoscaling.knative.dev/min-scale"] == "0"  # scale to zero by default
    assert annotations["autoscaling.knative.dev/max-scale"] == "3"
    assert annotations["autoscaling.knative.dev/class"] == "kpa.autoscaling.knative.dev"
    assert spec["containerConcurrency"] == 2 and spec["timeoutSeconds"] == 20
    assert "autoscaling.knative.dev/min-scale" not in svc["metadata"].get("annotations", {})
    env = {e["name"]: e.get("value") for e in spec["containers"][0]["env"]}
    assert env == {"KNFLOW_FUNCTION": "kn-echo", "KNFLOW_FUNCTIONS": "tests/test_knative_manifests.py", **FUNCTION_ENV}
    assert spec["containers"][0]["readinessProbe"] == {"httpGet": {"path": "/healthz"}}


def test_node_scaling_overrides_the_traits():
    scaling = (
        ", scaling: {minScale: 1, maxScale: 5, target: 2.5, metric: rps, scaleDownDelay: 90, retentionPeriod: 10m, "
        "initialScale: 2, containerConcurrency: 8, timeoutSeconds: 120}"
    )
    svc = by_kind(build([two_nodes(a=scaling)], LOCAL, root=ROOT), "Service")["knflow-kn-echo"]
    annotations, spec = template(svc)
    assert {k.split("/")[1]: v for k, v in annotations.items() if k.startswith("autoscaling.")} == {
        "class": "kpa.autoscaling.knative.dev",
        "metric": "rps",
        "target": "2.5",
        "min-scale": "1",
        "max-scale": "5",
        "initial-scale": "2",
        "scale-down-delay": "90s",
        "scale-to-zero-pod-retention-period": "10m",
    }
    assert spec["containerConcurrency"] == 8 and spec["timeoutSeconds"] == 120


def test_two_nodes_with_different_scaling_are_an_error_naming_both():
    with pytest.raises(NodesDisagree) as err:
        build([two_nodes(a=", scaling: {maxScale: 2}", b=", scaling: {maxScale: 4}")], LOCAL, root=ROOT)
    msg = str(err.value)
    assert "function 'kn-echo'" in msg and "node 'a' of pipeline 'two' (inline.yaml:4)" in msg
    assert "node 'b' of pipeline 'two' (inline.yaml:5)" in msg and "{maxScale: 2}" in msg and "{maxScale: 4}" in msg


def test_same_scaling_twice_or_once_is_fine():
    build([two_nodes(a=", scaling: {maxScale: 2}", b=", scaling: {maxScale: 2}")], LOCAL, root=ROOT)
    svc = by_kind(build([two_nodes(a=", scaling: {maxScale: 2}")], LOCAL, root=ROOT), "Service")["knflow-kn-echo"]
    assert template(svc)[0]["autoscaling.knative.dev/max-scale"] == "2"


def test_nodes_in_two_pipelines_must_agree_on_retry_and_placement():
    other = pipeline(
        "metadata: {name: other}\nnodes:\n  - {id: c, type: kn-echo, inputs: {text: z}, retry: 3}\n", "other.yaml"
    )
    with pytest.raises(
        NodesDisagree,
        match=r"different retry policy: node 'a' of pipeline 'two'.*node 'c' of pipeline 'other' \(other.yaml:3\)",
    ):
        build([two_nodes(), other], LOCAL, root=ROOT)
    with pytest.raises(NodesDisagree, match="different placement"):
        build([two_nodes(a=", runOn: gpu")], LOCAL, root=ROOT)


@pytest.mark.parametrize(
    "scaling, expected",
    [
        ("{minScale: -1}", "minScale has value -1. Expected an integer >= 0."),
        ("{maxScale: 2, minScale: 3}", "maxScale (2) is less than minScale (3)"),
        ("{metric: cpu}", "metric has value 'cpu'"),
        ("{target: 0}", "target has value 0"),
        ("{scaleDownDelay: 2h}", "scaleDownDelay has value '2h'. Expected a duration from 0s to 1h."),
        ("{scaleDownDelay: 1.5s}", "whole seconds"),
        ("{retentionPeriod: soon}", "'soon' is not a Go duration"),
        ("{initialScale: 0}", "allow-zero-initial-scale"),
        ("{containerConcurrency: 5000}", "container-concurrency-max-limit (1000)"),
        ("{timeoutSeconds: 900}", "max-revision-timeout-seconds (600 s)"),
        ("{maxscale: 3}", "unknown scaling key 'maxscale'; expected one of minScale, maxScale"),
    ],
)
def test_bad_scaling_names_the_node_key_and_value(scaling, expected):
    with pytest.raises(ScalingInvalid) as err:
        build([two_nodes(a=f", scaling: {scaling}")], LOCAL, root=ROOT)
    assert expected in str(err.value)
    assert "pipeline 'two' (inline.yaml:4): node 'a' field 'scaling." in str(err.value)


def test_cluster_limits_from_the_profile():
    profile = parse_profile({"serving": {"max_scale_limit": 10, "allow_zero_initial_scale": True}})
    with pytest.raises(
        ScalingInvalid, match=r"maxScale 0 \(unlimited\) is not allowed: the cluster's max-scale-limit is 10"
    ):
        build([two_nodes(a=", scaling: {maxScale: 0}")], LOCAL, profile, ROOT)
    limited = by_kind(
        build(
            [pipeline("metadata: {name: p}\nnodes: [{id: a, type: kn-embed, inputs: {text: x}}]\n")],
            LOCAL,
            profile,
            ROOT,
        ),
        "Service",
    )
    assert (
        template(limited["knflow-kn-embed"])[0]["autoscaling.knative.dev/max-scale"] == "10"
    )  # no limit = the cluster's
    assert template(limited["knflow-router"])[0]["autoscaling.knative.dev/max-scale"] == "10"
    svc = by_kind(build([two_nodes(a=", scaling: {initialScale: 0}")], LOCAL, profile, ROOT), "Service")[
        "knflow-kn-echo"
    ]
    assert template(svc)[0]["autoscaling.knative.dev/initial-scale"] == "0"


def test_a_timeout_beyond_the_revision_maximum_says_how_to_fix_it():
    slow = pipeline("metadata: {name: slow}\nnodes: [{id: a, type: kn-echo, inputs: {text: x}, timeout_s: 1200}]\n")
    with pytest.raises(ScalingInvalid, match="raise max-revision-timeout-seconds in config-defaults"):
        build([slow], LOCAL, root=ROOT)
    roomy = parse_profile({"serving": {"max_revision_timeout_s": 1800}})
    svc = by_kind(build([slow], LOCAL, roomy, ROOT), "Service")["knflow-kn-echo"]
    assert template(svc)[1]["timeoutSeconds"] == 1200


def test_gpu_function_is_pinned_to_the_gpu_pool():
    gpu = pipeline("metadata: {name: g}\nnodes: [{id: a, type: kn-embed, inputs: {text: x}}]\n")
    bundle = build([gpu], LOCAL, root=ROOT)
    annotations, spec = template(by_kind(bundle, "Service")["knflow-kn-embed"])
    assert spec["containers"][0]["resources"] == {"limits": {"nvidia.com/gpu": "2"}}
    assert spec["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert spec["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert "runtimeClassName" not in spec
    assert annotations["serving.knative.dev/progress-deadline"] == "1800s"
    assert annotations["autoscaling.knative.dev/scale-to-zero-pod-retention-period"] == "10m"
    trigger = by_kind(bundle, "Trigger")["knflow-kn-embed"]
    assert trigger["spec"]["delivery"]["timeout"] == "PT930S"  # 30 s of work + 900 s of cold GPU start
    assert any("kubernetes.podspec-nodeselector" in n and "--features-patch" in n for n in bundle.notes)
    assert {w.rule for w in bundle.warnings} == {"feature_flags"}
    assert not any(m["kind"] == "ConfigMap" and m["metadata"]["name"] == "config-features" for m in bundle.manifests)


def test_a_profile_names_the_gpu_pool_runtime_class_and_the_flags_patch():
    profile = parse_profile(
        {
            "gpu": {
                "node_selector": {"karpenter.sh/nodepool": "gpu-nodepool"},
                "runtime_class_name": "nvidia",
                "tolerations": [],
            },
            "serving": {"features_patch": True},
        }
    )
    bundle = build(
        [pipeline("metadata: {name: g}\nnodes: [{id: a, type: kn-echo, runOn: gpu, inputs: {text: x}}]\n")],
        LOCAL,
        profile,
        ROOT,
    )
    spec = template(by_kind(bundle, "Service")["knflow-kn-echo"])[1]
    assert spec["nodeSelector"] == {"karpenter.sh/nodepool": "gpu-nodepool"} and spec["runtimeClassName"] == "nvidia"
    assert "tolerations" not in spec and spec["containers"][0]["resources"]["limits"] == {"nvidia.com/gpu": "1"}
    patch = by_kind(bundle, "ConfigMap")["config-features"]
    assert patch["metadata"]["namespace"] == "knative-serving"
    assert patch["data"] == {
        "kubernetes.podspec-nodeselector": "enabled",
        "kubernetes.podspec-runtimeclassname": "enabled",
    }
    assert bundle.warnings == []
    assert files(bundle)["05-serving-config-features.yaml"].count("kind: ConfigMap") == 1


def test_flags_already_enabled_in_the_cluster_need_no_note():
    profile = parse_profile(
        {
            "serving": {
                "features": {"kubernetes.podspec-nodeselector": "enabled", "kubernetes.podspec-tolerations": "enabled"}
            }
        }
    )
    bundle = build(
        [pipeline("metadata: {name: g}\nnodes: [{id: a, type: kn-embed, inputs: {text: x}}]\n")], LOCAL, profile, ROOT
    )
    assert bundle.warnings == [] and not any("feature flags" in n for n in bundle.notes)


def test_run_on_cpu_takes_a_gpu_function_off_the_gpu():
    p = pipeline("metadata: {name: g}\nnodes: [{id: a, type: kn-embed, runOn: cpu, inputs: {text: x}}]\n")
    spec = template(by_kind(build([p], LOCAL, root=ROOT), "Service")["knflow-kn-embed"])[1]
    assert "nodeSelector" not in spec and "resources" not in spec["containers"][0]


def test_function_trigger_filters_and_delivery():
    p = pipeline(
        TWO_NODES
        % (
            ", retry: {retries: 4, backoff: linear, delay_s: 0.25}",
            ", retry: {retries: 4, backoff: linear, delay_s: 0.25}",
        )
    )
    trigger = by_kind(build([p], LOCAL, root=ROOT), "Trigger")["knflow-kn-echo"]
    assert trigger["spec"]["broker"] == "knflow"
    assert trigger["spec"]["filter"] == {"attributes": {"type": "dev.knflow.invoke", "knflowfunction": "kn-echo"}}
    assert trigger["spec"]["subscriber"] == {
        "ref": {"apiVersion": "serving.knative.dev/v1", "kind": "Service", "name": "knflow-kn-echo"}
    }
    assert trigger["spec"]["delivery"] == {
        "retry": 4,
        "backoffPolicy": "linear",
        "backoffDelay": "PT0.25S",
        "timeout": "PT80S",
        "deadLetterSink": {
            "ref": {"apiVersion": "serving.knative.dev/v1", "kind": "Service", "name": "knflow-router-events"},
            "uri": "/dead-letter",
        },
    }


def test_router_service_secrets_sink_pipelines_and_triggers():
    bundle = build([two_nodes(), load(EXAMPLES / "gpu-summarize.yaml")], LOCAL, root=ROOT)
    router = by_kind(bundle, "Service")["knflow-router"]
    annotations, spec = template(router)
    assert annotations["autoscaling.knative.dev/min-scale"] == "1"
    container = spec["containers"][0]
    assert container["command"] == ["knflow"] and container["args"] == ["serve", "router"]
    env = {e["name"]: e for e in container["env"]}
    assert env["KNFLOW_STORE_URL"] == {
        "name": "KNFLOW_STORE_URL",
        "valueFrom": {"secretKeyRef": {"name": "knflow-mongodb", "key": "url"}},
    }
    assert "KNFLOW_MONGODB_URL" not in env  # the builtins' database, never the router's store
    assert env["KNFLOW_WEBHOOK_SECRET"]["valueFrom"]["secretKeyRef"]["optional"] is True
    assert env["K_SINK"]["value"] == "http://broker-ingress.knative-eventing.svc.cluster.local/knflow/knflow"
    assert env["KNFLOW_FUNCTIONS"]["value"] == "examples/gpu-summarize.py,tests/test_knative_manifests.py"
    assert env["KNFLOW_PIPELINES"]["value"] == "/etc/knflow/pipelines/gpu-summarize.yaml,/etc/knflow/pipelines/two.yaml"
    assert env["KNFLOW_MAX_HOPS"]["value"] == "16"
    assert not any("value" in e and "mongodb://" in str(e["value"]) for e in env.values())
    pipelines = by_kind(bundle, "ConfigMap")["knflow-router-pipelines"]["data"]
    assert set(pipelines) == {"gpu-summarize.yaml", "two.yaml"} and "functions:" not in pipelines["gpu-summarize.yaml"]
    triggers = by_kind(bundle, "Trigger")
    router_triggers = {
        n: t["spec"]["filter"]["attributes"]
        for n, t in triggers.items()
        if t["spec"]["subscriber"]["ref"]["name"] == "knflow-router-events"  # the broker ingress, no token needed
    }
    assert router_triggers["knflow-router-succeeded"] == {"type": "dev.knflow.node.succeeded"}
    assert router_triggers["knflow-router-failed"] == {"type": "dev.knflow.node.failed"}
    external = [a for n, a in router_triggers.items() if n.startswith("knflow-router-on-")]
    assert external == [{"type": "com.example.document.uploaded"}]
    assert all(
        t["spec"]["subscriber"]["uri"] == "/events" and "timeout" in t["spec"]["delivery"]
        for n, t in triggers.items()
        if n.startswith("knflow-router-")
    )
    assert not [t for t in triggers.values() if t["spec"]["subscriber"]["ref"]["name"] == "knflow-router"]


def test_native_nats_broker_by_option():
    profile = parse_profile({"broker": {"class": "NatsJetStreamBroker", "name": "events"}, "namespace": "pipelines"})
    bundle = build([two_nodes()], LOCAL, profile, ROOT)
    broker = by_kind(bundle, "Broker")["events"]
    assert broker["metadata"]["annotations"] == {"eventing.knative.dev/broker.class": "NatsJetStreamBroker"}
    assert "config" not in broker["spec"]
    assert list(by_kind(bundle, "ConfigMap")) == ["config-nats-broker", "knflow-router-pipelines"]
    env = {
        e["name"]: e.get("value")
        for e in template(by_kind(bundle, "Service")["knflow-router"])[1]["containers"][0]["env"]
    }
    assert env["K_SINK"] == "http://nats-broker-ingress.knative-eventing.svc.cluster.local/pipelines/events"
    assert all(t["spec"]["broker"] == "events" for t in by_kind(bundle, "Trigger").values())
    assert any("knativebrokerttl" in n for n in bundle.notes)


def test_channel_based_broker_gets_its_nats_channel_template():
    bundle = build(
        [two_nodes()],
        LOCAL,
        parse_profile({"broker": {"channel_spec": {"stream": {"config": {"maxAge": "72h"}}}}}),
        ROOT,
    )
    broker = by_kind(bundle, "Broker")["knflow"]
    assert broker["spec"]["config"] == {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "name": "knflow-channel",
        "namespace": "knflow",
    }
    channel = by_kind(bundle, "ConfigMap")["knflow-channel"]["data"]["channel-template-spec"]
    assert "kind: NatsJetStreamChannel" in channel and "maxAge: 72h" in channel
    assert (
        "url: nats://nats.nats-io.svc.cluster.local:4222"
        in by_kind(bundle, "ConfigMap")["config-nats"]["data"]["eventing-nats"]
    )


def test_cron_trigger_becomes_a_ping_source_into_the_router():
    bundle = build([load(EXAMPLES / "cron-digest.yaml")], REGISTRY, root=ROOT)
    (source,) = by_kind(bundle, "PingSource").values()
    assert source["metadata"]["name"] == "knflow-cron-cron-digest"
    assert source["spec"] == {
        "schedule": "0 7 * * 1-5",
        "timezone": "Europe/Berlin",
        "contentType": "application/json",
        "data": '{"lines": ["rain in the north", "sun in the south"], "topic": "weather"}',
        "ceOverrides": {"extensions": {"knflowpipeline": "cron-digest"}},
        "sink": {
            "ref": {"apiVersion": "serving.knative.dev/v1", "kind": "Service", "name": "knflow-router-events"},
            "uri": "/events",
        },
    }


def test_cron_data_that_is_not_a_mapping_is_refused():
    p = pipeline(
        "metadata: {name: c}\ntrigger: {type: cron, schedule: '0 1 * * *', data: [1, 2]}\n"
        "nodes: [{id: a, type: kn-echo, inputs: {text: x}}]\n"
    )
    with pytest.raises(KnativeError, match="cron trigger data must be a mapping"):
        build([p], LOCAL, root=ROOT)


def test_a_schedule_knative_rejects_is_caught_before_deploying():
    # The loader already refuses it; the manifest builder checks again for pipelines built in code.
    text = (
        "metadata: {name: c}\ntrigger: {type: cron, schedule: '@every 5m'}\n"
        "nodes: [{id: a, type: kn-echo, inputs: {text: x}}]\n"
    )
    doc, lines = parse_yaml(text, "c.yaml")
    p, problems = from_dict(doc, "c.yaml", lines)
    assert "is not a cron expression of 5 fields" in str(problems[0])
    with pytest.raises(
        ManifestsRejected, match=r"PingSource/knflow-cron-c: spec.schedule: schedule '@every 5m' uses @every"
    ):
        build([p], LOCAL, root=ROOT)


CHAIN = (
    "metadata: {name: %s}\ntrigger: {type: cloudevent, filter: %s}\n"
    "nodes: [{id: a, type: kn-echo, inputs: {text: x}}]\n"
)


def test_loops_through_run_events_are_refused():
    loop_text = "every dev.knflow.run.succeeded event, those of its own runs included"
    with pytest.raises(LoopRisk, match=re.escape(loop_text)):
        build([pipeline(CHAIN % ("self", "{type: dev.knflow.run.succeeded}"))], LOCAL, root=ROOT)
    a = pipeline(CHAIN % ("a", "{type: dev.knflow.run.succeeded, knflowpipeline: b}"))
    b = pipeline(CHAIN % ("b", "{type: dev.knflow.run.failed, knflowpipeline: a}"))
    with pytest.raises(LoopRisk, match=re.escape("in a circle through dev.knflow.run.* events: a -> b -> a")):
        build([a, b], LOCAL, root=ROOT)
    with pytest.raises(LoopRisk, match="knflow's own traffic"):
        build([pipeline(CHAIN % ("x", "{type: dev.knflow.node.succeeded}"))], LOCAL, root=ROOT)


def test_a_chain_without_a_circle_is_fine_and_the_router_hears_it():
    a = pipeline(CHAIN % ("a", "{type: com.example.start}"))
    b = pipeline(CHAIN % ("b", "{type: dev.knflow.run.succeeded, knflowpipeline: a}"))
    triggers = by_kind(build([a, b], LOCAL, root=ROOT), "Trigger")
    heard = [t["spec"]["filter"]["attributes"] for n, t in triggers.items() if n.startswith("knflow-router-on-")]
    assert {"type": "dev.knflow.run.succeeded", "knflowpipeline": "a"} in heard and {
        "type": "com.example.start"
    } in heard


def test_external_filters_drop_what_a_broader_filter_covers():
    ps = [
        pipeline(CHAIN % (n, f))
        for n, f in (
            ("a", "{type: t1}"),
            ("b", "{type: t1, source: s}"),
            ("c", "{type: t2, source: s}"),
            ("d", "{type: t1}"),
        )
    ]
    assert chains.external_filters(ps) == [{"type": "t1"}, {"type": "t2", "source": "s"}]


def test_function_names_that_collide_with_the_router_are_refused():
    @function(name="router", register=False)
    async def router(inp: _Text) -> _Text:
        return inp

    reg = StandIns()
    reg.add(router)
    with pytest.raises(KnativeError, match=r"Service 'knflow-router'.*Function 'router' takes a name the router uses"):
        build([pipeline("metadata: {name: r}\nnodes: [{id: a, type: router, inputs: {text: x}}]\n")], reg, root=ROOT)


def test_two_different_pipelines_with_one_name_are_refused():
    with pytest.raises(KnativeError, match="two different pipelines are named 'two'"):
        build([two_nodes(), two_nodes(a=", timeout_s: 3")], LOCAL, root=ROOT)


def test_builtins_need_no_module_and_a_module_outside_the_project_is_refused(tmp_path):
    bundle = build([article_pipeline()], ARTICLE_REGISTRY, root=ROOT)
    env = {
        e["name"]: e.get("value")
        for e in template(by_kind(bundle, "Service")["knflow-http-request"])[1]["containers"][0]["env"]
    }
    assert env == {"KNFLOW_FUNCTION": "http-request", **FUNCTION_ENV}
    elsewhere = tmp_path / "elsewhere.py"
    elsewhere.write_text(
        "from pydantic import BaseModel\nfrom knflow import function\n\nclass T(BaseModel):\n    text: str\n\n"
        "@function(name='kn-elsewhere')\nasync def f(inp: T) -> T:\n    return inp\n"
    )
    p = pipeline(
        f"metadata: {{name: e}}\nfunctions: ['{elsewhere}']\n"
        "nodes: [{id: a, type: kn-elsewhere, inputs: {text: x}}]\n"
    )
    load_module(str(elsewhere))
    with pytest.raises(
        KnativeError, match=f"function 'kn-elsewhere' is defined in {elsewhere}, outside the project directory"
    ):
        build([p], REGISTRY, root=ROOT)


def test_article_generator_seed_runs_llm_generate_on_a_gpu():
    bundle = build([article_pipeline()], ARTICLE_REGISTRY, root=ROOT)
    services = by_kind(bundle, "Service")
    assert set(services) == {
        "knflow-http-request",
        "knflow-llm-generate",
        "knflow-mongodb-insert",
        "knflow-router",
        "knflow-router-events",
    }
    spec = template(services["knflow-llm-generate"])[1]
    assert spec["containers"][0]["resources"]["limits"] == {"memory": "24Gi", "nvidia.com/gpu": "1"}
    assert "nodeSelector" not in template(services["knflow-mongodb-insert"])[1]


def test_output_is_yaml_that_reads_back_and_files_in_apply_order():
    import yaml

    bundle = build([two_nodes()], LOCAL, root=ROOT)
    assert list(yaml.safe_load_all(to_yaml(bundle.manifests))) == bundle.manifests
    assert list(files(bundle)) == [
        "00-namespace.yaml",
        "08-network-policy.yaml",
        "10-broker-config.yaml",
        "20-broker.yaml",
        "30-functions.yaml",
        "40-router.yaml",
        "50-triggers.yaml",
    ]


def test_default_namespace_gets_no_namespace_manifest():
    bundle = build([two_nodes()], LOCAL, Profile(namespace="default"), ROOT)
    assert not by_kind(bundle, "Namespace")
    assert all(m["metadata"].get("namespace") in ("default", "knative-eventing") for m in bundle.manifests)


def test_retry_fields_reach_the_trigger_and_the_missing_backoff_cap_is_noted():
    @function(name="kn-flaky", retries=Retry(retries=6, delay_s=2, max_delay_s=10), register=False)
    async def flaky(inp: _Text) -> _Text:
        return inp

    reg = StandIns()
    reg.add(flaky)
    bundle = build(
        [pipeline("metadata: {name: f}\nnodes: [{id: a, type: kn-flaky, inputs: {text: x}}]\n")], reg, root=ROOT
    )
    assert by_kind(bundle, "Trigger")["knflow-kn-flaky"]["spec"]["delivery"]["retry"] == 6
    assert any("last retry waits 128 s, beyond max_delay_s 10 s" in n for n in bundle.notes)


def test_builtins_read_their_servers_from_secrets_never_inline():
    bundle = build([load(EXAMPLES / "article-generator.yaml")], REGISTRY, root=ROOT)
    services = by_kind(bundle, "Service")
    env = {
        name: [
            e for e in template(services[f"knflow-{name}"])[1]["containers"][0]["env"] if e["name"] not in FUNCTION_ENV
        ]
        for name in ("llm-generate", "mongodb-insert", "http-request")
    }
    assert env["llm-generate"][1:] == [
        {"name": "KNFLOW_OPENAI_BASE_URL", "valueFrom": {"secretKeyRef": {"name": "knflow-openai", "key": "base_url"}}},
        {
            "name": "KNFLOW_OPENAI_API_KEY",
            "valueFrom": {"secretKeyRef": {"name": "knflow-openai", "key": "api_key", "optional": True}},
        },
    ]
    assert env["mongodb-insert"][1:] == [
        {
            "name": "KNFLOW_MONGODB_URL",
            "valueFrom": {"secretKeyRef": {"name": "knflow-builtins-mongodb", "key": "url"}},
        }
    ]  # their own Secret by default: a pipeline's queries never reach the router's store
    assert [e["name"] for e in env["http-request"]] == ["KNFLOW_FUNCTION"]
    assert (
        "Secret 'knflow-openai' key 'api_key' (optional) is read by llm-generate, never written here: "
        "kubectl create secret generic knflow-openai -n knflow --from-literal=api_key=..." in bundle.notes
    )
    read_by = "Secret 'knflow-builtins-mongodb' key 'url' is read by mongodb-insert"
    assert any(n.startswith(read_by) for n in bundle.notes)
    assert any("blob_url" in n for n in bundle.notes)


def test_profile_names_the_secrets_and_a_shared_blob_store():
    profile = parse_profile({"secrets": {"mongodb": {"name": "team-db", "key": "uri"}}, "blob_url": "s3://acme/knflow"})
    bundle = build([load(EXAMPLES / "article-generator.yaml")], REGISTRY, profile, root=ROOT)
    services = by_kind(bundle, "Service")
    insert_env = template(services["knflow-mongodb-insert"])[1]["containers"][0]["env"]
    assert {
        "name": "KNFLOW_MONGODB_URL",
        "valueFrom": {"secretKeyRef": {"name": "team-db", "key": "uri"}},
    } in insert_env
    for name, service in services.items():
        assert {"name": "KNFLOW_BLOB_URL", "value": "s3://acme/knflow"} in template(service)[1]["containers"][0][
            "env"
        ], name
    assert not any("blob_url" in n for n in bundle.notes)


SIGNED_HOOK = """
metadata: {name: %s}
trigger: {type: webhook, auth: {scheme: %s, secret_env: %s}}
nodes: [{id: a, type: kn-echo, inputs: {text: x}}]
"""


def test_signed_webhooks_read_their_secrets_from_the_webhooks_secret():
    pipelines = [
        pipeline(SIGNED_HOOK % ("orders", "standard-webhooks", "ORDERS_WEBHOOK_SECRET")),
        pipeline(SIGNED_HOOK % ("refunds", "standard-webhooks", "ORDERS_WEBHOOK_SECRET")),
        pipeline(SIGNED_HOOK % ("pushes", "github", "GITHUB_WEBHOOK_SECRET")),
        two_nodes(),
    ]
    bundle = build(pipelines, LOCAL, root=ROOT)
    env = template(by_kind(bundle, "Service")["knflow-router"])[1]["containers"][0]["env"]
    hooks = [e for e in env if e["name"] in ("ORDERS_WEBHOOK_SECRET", "GITHUB_WEBHOOK_SECRET")]
    assert hooks == [
        {
            "name": "GITHUB_WEBHOOK_SECRET",
            "valueFrom": {"secretKeyRef": {"name": "knflow-webhooks", "key": "GITHUB_WEBHOOK_SECRET"}},
        },
        {
            "name": "ORDERS_WEBHOOK_SECRET",
            "valueFrom": {"secretKeyRef": {"name": "knflow-webhooks", "key": "ORDERS_WEBHOOK_SECRET"}},
        },
    ]
    note = next(n for n in bundle.notes if "hold the webhook secrets" in n)
    assert "'GITHUB_WEBHOOK_SECRET' (pushes), 'ORDERS_WEBHOOK_SECRET' (orders, refunds)" in note
    assert note.endswith(
        "kubectl create secret generic knflow-webhooks -n knflow --from-literal=GITHUB_WEBHOOK_SECRET=... "
        "--from-literal=ORDERS_WEBHOOK_SECRET=... [--from-literal=token=...]"
    )
    configmap = by_kind(bundle, "ConfigMap")["knflow-router-pipelines"]["data"]["orders.yaml"]
    assert "secret_env: ORDERS_WEBHOOK_SECRET" in configmap  # the name travels; the secret never does

    profile = parse_profile({"secrets": {"webhooks": "team-hooks"}, "router": {"webhook_secret": None}})
    bundle = build(pipelines[:1], LOCAL, profile, root=ROOT)
    env = template(by_kind(bundle, "Service")["knflow-router"])[1]["containers"][0]["env"]
    refs = [e["valueFrom"]["secretKeyRef"] for e in env if "valueFrom" in e]
    assert {"name": "team-hooks", "key": "ORDERS_WEBHOOK_SECRET"} in refs
    assert any(
        n.endswith("create secret generic team-hooks -n knflow --from-literal=ORDERS_WEBHOOK_SECRET=...")
        for n in bundle.notes
    )


def test_no_signed_webhook_no_webhooks_secret_note():
    bundle = build([two_nodes()], LOCAL, root=ROOT)
    assert not any("hold the webhook secrets" in n for n in bundle.notes)
