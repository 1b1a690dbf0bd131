"""Each admission-webhook rule of shared/knative/README.md §8, checked in knative/webhook_rules.py, catches a
manifest that breaks it: a good generated manifest is changed in one place and the rule must name it."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
from test_knative_manifests import ROOT

from functions.registry import REGISTRY
from knative import webhook_rules
from knative.manifests import build
from knative.profile import parse_profile
from knative.webhook_rules import Cluster, check
from router.loader import load

GPU_FLAGS = frozenset(
    {"kubernetes.podspec-nodeselector", "kubernetes.podspec-tolerations", "kubernetes.podspec-runtimeclassname"}
)


@pytest.fixture(scope="module")
def good() -> dict[str, dict[str, Any]]:
    pipelines = [load(ROOT / "examples" / name) for name in ("gpu-summarize.yaml", "cron-digest.yaml")]
    bundle = build(pipelines, REGISTRY, parse_profile({"gpu": {"runtime_class_name": "nvidia"}}), ROOT)
    pick = {
        "service": next(
            m for m in bundle.manifests if m["kind"] == "Service" and "nodeSelector" in m["spec"]["template"]["spec"]
        ),
        "router": next(
            m for m in bundle.manifests if m["metadata"]["name"] == "knflow-router" and m["kind"] == "Service"
        ),
        "trigger": next(
            m for m in bundle.manifests if m["kind"] == "Trigger" and "deadLetterSink" in m["spec"]["delivery"]
        ),
        "broker": next(m for m in bundle.manifests if m["kind"] == "Broker"),
        "ping": next(m for m in bundle.manifests if m["kind"] == "PingSource"),
    }
    for m in bundle.manifests:
        assert check([m], Cluster(features=GPU_FLAGS)) == [], m["metadata"]["name"]
    return pick


def annotations(m):
    return m["spec"]["template"]["metadata"]["annotations"]


def pod(m):
    return m["spec"]["template"]["spec"]


def container(m):
    return pod(m)["containers"][0]


A = "autoscaling.knative.dev/"
Case = tuple[str, str, Callable[[dict], Any], str, str]
CASES: list[Case] = [
    # (which manifest, rule, change, text expected in the problem, why)
    (
        "service",
        "object_name",
        lambda m: m["metadata"].update(name="1-starts-with-a-digit"),
        "DNS-1035",
        "Service names are DNS-1035 labels",
    ),
    ("trigger", "object_name", lambda m: m["metadata"].update(name="x" * 64), "at most 63", "names are DNS labels"),
    (
        "service",
        "autoscaling_on_service_metadata",
        lambda m: m["metadata"].setdefault("annotations", {}).update({A + "min-scale": "1"}),
        "must be put under",
        "autoscaling annotations on the Service",
    ),
    (
        "service",
        "annotation_values_are_strings",
        lambda m: annotations(m).update({A + "min-scale": 1}),
        "must be a string",
        "annotations are map[string]string",
    ),
    (
        "service",
        "autoscaling_class_and_metric",
        lambda m: annotations(m).update({A + "class": "foo.autoscaling.knative.dev"}),
        "is not kpa",
        "class",
    ),
    (
        "service",
        "autoscaling_class_and_metric",
        lambda m: annotations(m).update({A + "metric": "cpu"}),
        "not valid for class kpa",
        "KPA metric",
    ),
    (
        "service",
        "autoscaling_class_and_metric",
        lambda m: annotations(m).update({A + "metric-aggregation-algorithm": "median"}),
        "linear or weighted-exponential",
        "algorithm",
    ),
    (
        "service",
        "scale_bounds",
        lambda m: annotations(m).update({A + "min-scale": "-1"}),
        "not an integer >= 0",
        "min-scale >= 0",
    ),
    (
        "service",
        "scale_bounds",
        lambda m: annotations(m).update({A + "min-scale": "3", A + "max-scale": "2"}),
        "max-scale=2 is less than min-scale=3",
        "max >= min",
    ),
    (
        "service",
        "scale_bounds",
        lambda m: annotations(m).update({A + "initial-scale": "0"}),
        "initial-scale=0 is not allowed",
        "zero initial scale",
    ),
    (
        "service",
        "scale_bounds",
        lambda m: annotations(m).update({A + "activation-scale": "1"}),
        "activation-scale '1' must be an integer >= 2",
        "activation scale",
    ),
    (
        "service",
        "autoscaling_numbers",
        lambda m: annotations(m).update({A + "target": "0.001"}),
        "target '0.001' must be a number >= 0.01",
        "target",
    ),
    (
        "service",
        "autoscaling_numbers",
        lambda m: annotations(m).update({A + "target-utilization-percentage": "150"}),
        "from 1 to 100",
        "utilisation",
    ),
    (
        "service",
        "autoscaling_numbers",
        lambda m: annotations(m).update({A + "panic-threshold-percentage": "100"}),
        "from 110 to 1000",
        "panic threshold",
    ),
    (
        "service",
        "autoscaling_numbers",
        lambda m: annotations(m).update({A + "target-burst-capacity": "-2"}),
        ">= 0, or -1",
        "burst capacity",
    ),
    (
        "service",
        "autoscaling_durations",
        lambda m: annotations(m).update({A + "scale-down-delay": "2h"}),
        "from 0s to 1h",
        "scale-down-delay range",
    ),
    (
        "service",
        "autoscaling_durations",
        lambda m: annotations(m).update({A + "scale-down-delay": "1500ms"}),
        "second precision",
        "whole seconds",
    ),
    (
        "service",
        "autoscaling_durations",
        lambda m: annotations(m).update({A + "scale-to-zero-pod-retention-period": "10 minutes"}),
        "not a Go duration",
        "retention format",
    ),
    (
        "service",
        "autoscaling_durations",
        lambda m: annotations(m).update({A + "window": "5s"}),
        "from 6s to 1h",
        "stable window",
    ),
    (
        "service",
        "progress_deadline",
        lambda m: annotations(m).update({"serving.knative.dev/progress-deadline": "1800"}),
        "not a Go duration",
        "progress deadline",
    ),
    (
        "service",
        "revision_timeouts",
        lambda m: pod(m).update(timeoutSeconds=601),
        "max-revision-timeout-seconds (600)",
        "timeout bound",
    ),
    (
        "service",
        "revision_timeouts",
        lambda m: pod(m).update(timeoutSeconds=30, responseStartTimeoutSeconds=60),
        "must not exceed timeoutSeconds",
        "response start",
    ),
    (
        "service",
        "container_concurrency",
        lambda m: pod(m).update(containerConcurrency=1001),
        "container-concurrency-max-limit (1000)",
        "CC bound",
    ),
    (
        "service",
        "containers",
        lambda m: container(m)["env"].append({"name": "PORT", "value": "9000"}),
        "PORT is set by Knative",
        "reserved env",
    ),
    (
        "service",
        "containers",
        lambda m: container(m)["ports"][0].update(containerPort=8012),
        "reserved by Knative",
        "reserved port",
    ),
    (
        "service",
        "containers",
        lambda m: container(m)["ports"][0].update(name="http"),
        "must be http1 or h2c",
        "port name",
    ),
    (
        "service",
        "containers",
        lambda m: container(m).update(name="queue-proxy"),
        "reserved for Knative's sidecar",
        "container name",
    ),
    (
        "service",
        "containers",
        lambda m: container(m)["readinessProbe"]["httpGet"].update(port=9999),
        "must be the container's port",
        "probe port",
    ),
    (
        "router",
        "containers",
        lambda m: container(m)["volumeMounts"][0].update(mountPath="/var/log"),
        "is reserved",
        "reserved mount path",
    ),
    (
        "trigger",
        "delivery",
        lambda m: m["spec"]["delivery"].update(retry=-1),
        "retry -1 must be an integer >= 0",
        "retry >= 0",
    ),
    (
        "trigger",
        "delivery",
        lambda m: m["spec"]["delivery"].update(backoffPolicy="fibonacci"),
        "linear or exponential",
        "backoffPolicy enum",
    ),
    (
        "trigger",
        "delivery",
        lambda m: m["spec"]["delivery"].update(backoffDelay="1s"),
        "not an ISO-8601 duration",
        "ISO-8601 backoffDelay",
    ),
    ("trigger", "delivery", lambda m: m["spec"]["delivery"].update(timeout="PT0S"), "greater than zero", "timeout > 0"),
    (
        "trigger",
        "delivery",
        lambda m: m["spec"]["delivery"].update(retryAfterMax="PT1M"),
        "delivery-retryafter",
        "alpha feature",
    ),
    ("trigger", "delivery", lambda m: m["spec"]["delivery"].update(format="xml"), "json or binary", "format enum"),
    (
        "trigger",
        "delivery",
        lambda m: m["spec"]["delivery"]["deadLetterSink"].update(uri="http://x.example/dl"),
        "absolute URI is not allowed together with ref",
        "destination",
    ),
    (
        "broker",
        "delivery",
        lambda m: m["spec"]["delivery"].update(backoffDelay="0.5s"),
        "not an ISO-8601 duration",
        "broker delivery",
    ),
    (
        "trigger",
        "trigger_broker",
        lambda m: m["spec"].update(brokerRef={"name": "knflow"}),
        "exactly one of broker and brokerRef",
        "one of",
    ),
    (
        "trigger",
        "trigger_broker",
        lambda m: m["spec"].update(broker=""),
        "exactly one of broker and brokerRef",
        "broker missing",
    ),
    (
        "trigger",
        "trigger_subscriber",
        lambda m: m["spec"].update(subscriber={"uri": "/relative"}),
        "relative URI '/relative' is not allowed without ref",
        "subscriber",
    ),
    (
        "trigger",
        "trigger_subscriber",
        lambda m: m["spec"]["subscriber"]["ref"].pop("kind"),
        "spec.subscriber.ref.kind: missing field",
        "ref fields",
    ),
    (
        "trigger",
        "trigger_filter_attributes",
        lambda m: m["spec"]["filter"]["attributes"].update({"knflow_function": "x"}),
        "invalid attribute name 'knflow_function'",
        "attribute regex",
    ),
    (
        "trigger",
        "trigger_filters",
        lambda m: m["spec"].update(filters=[{"exact": {"type": "a"}, "suffix": {"type": "b"}}]),
        "multiple dialects found",
        "one dialect",
    ),
    (
        "trigger",
        "trigger_filters",
        lambda m: m["spec"].update(filters=[{"exact": {"type": "a", "source": "b"}}]),
        "only one key-value",
        "single key",
    ),
    (
        "trigger",
        "trigger_filters",
        lambda m: m["spec"].update(filters=[{"any": [{"prefix": {"Type": "a"}}]}]),
        "invalid attribute name 'Type'",
        "nested names",
    ),
    (
        "trigger",
        "trigger_filters",
        lambda m: m["spec"].update(filters=[{"all": []}]),
        "at least one nested filter",
        "empty all",
    ),
    (
        "trigger",
        "trigger_filters",
        lambda m: m["spec"].update(filters=[{"cesql": "pipelinerun IS NOT NULL"}]),
        "does not parse",
        "CESQL parse",
    ),
    (
        "broker",
        "broker_class_and_config",
        lambda m: m["metadata"].pop("annotations"),
        "give the broker class",
        "broker class",
    ),
    (
        "broker",
        "broker_class_and_config",
        lambda m: m["spec"]["config"].pop("name"),
        "spec.config.name: missing field",
        "config ref",
    ),
    ("ping", "ping_schedule", lambda m: m["spec"].update(schedule="@every 1h"), "@every", "@every"),
    ("ping", "ping_schedule", lambda m: m["spec"].update(schedule="0 0 7 * * 1-5"), "has 6 fields", "five fields"),
    ("ping", "ping_schedule", lambda m: m["spec"].update(schedule="0 25 * * *"), "above maximum (23)", "field range"),
    ("ping", "ping_timezone", lambda m: m["spec"].update(timezone="Mars/Olympus_Mons"), "bad location", "IANA zone"),
    ("ping", "ping_data", lambda m: m["spec"].update(data="[1, 2]"), "must be a JSON object", "JSON object"),
    ("ping", "ping_data", lambda m: m["spec"].update(data="{nope"), "not valid JSON", "JSON data"),
    (
        "ping",
        "ping_data",
        lambda m: m["spec"].update(dataBase64="e30="),
        "exactly one of data, dataBase64",
        "data one-of",
    ),
    ("ping", "ping_sink", lambda m: m["spec"].pop("sink"), "expected at least one of ref, uri", "sink required"),
    (
        "service",
        "volume_types",
        lambda m: pod(m)["volumes"].append({"name": "share", "nfs": {"server": "nas", "path": "/"}}),
        "Knative allows no nfs volume",
        "nfs is not a volume Knative takes",
    ),
    (
        "router",
        "container_security",
        lambda m: container(m)["securityContext"].update(privileged=True),
        "privileged can only be set to false",
        "no privileged containers",
    ),
    (
        "router",
        "container_security",
        lambda m: container(m)["securityContext"].update(procMount="Unmasked"),
        "does not allow procMount",
        "no procMount",
    ),
    (
        "ping",
        "ce_overrides",
        lambda m: m["spec"]["ceOverrides"]["extensions"].update({"Knflow_Run": "x"}),
        "lowercase letters and digits",
        "extension names",
    ),
    (
        "ping",
        "ce_overrides",
        lambda m: m["spec"]["ceOverrides"]["extensions"].update({"type": "x"}),
        "is a CloudEvents attribute",
        "no core attributes",
    ),
    (
        "service",
        "volumes_and_mounts",
        lambda m: pod(m)["volumes"].append({"name": "unused", "emptyDir": {}}),
        "not mounted",
        "every volume is mounted",
    ),
    (
        "service",
        "volumes_and_mounts",
        lambda m: container(m)["volumeMounts"].append({"name": "nothing", "mountPath": "/x"}),
        "no matching volume",
        "every mount names a volume",
    ),
    (
        "service",
        "volumes_and_mounts",
        lambda m: (
            pod(m)["volumes"].append({"name": "cfg", "configMap": {"name": "cfg"}}),
            container(m)["volumeMounts"].append({"name": "cfg", "mountPath": "/etc/cfg"}),
        ),
        "should be readOnly",
        "configMap and secret mounts are read-only",
    ),
    (
        "service",
        "volumes_and_mounts",
        lambda m: (
            pod(m)["volumes"].append({"name": "cfg", "configMap": {"name": "cfg"}}),
            container(m)["volumeMounts"].append({"name": "cfg", "mountPath": "etc/cfg", "readOnly": True}),
        ),
        "absolute path",
        "mount paths are absolute",
    ),
    (
        "service",
        "volumes_and_mounts",
        lambda m: (
            pod(m)["volumes"].append({"name": "cfg", "configMap": {"name": "cfg"}}),
            container(m)["volumeMounts"].append({"name": "cfg", "mountPath": "/knflow/tmp/", "readOnly": True}),
        ),
        "must be unique",
        "mount paths are unique",
    ),
    (
        "service",
        "volumes_and_mounts",
        lambda m: pod(m)["volumes"][0]["emptyDir"].update(sizeLimit="0"),
        "greater than zero",
        "an emptyDir's sizeLimit",
    ),
    (
        "service",
        "volumes_and_mounts",
        lambda m: pod(m)["volumes"][0].update(configMap={"name": "x"}),
        "exactly one source",
        "one source per volume",
    ),
    (
        "service",
        "scheduling_fields",
        lambda m: pod(m)["tolerations"][0].update(operator="Exists", value="yes"),
        "must be empty when operator is Exists",
        "a toleration's value with Exists",
    ),
    (
        "service",
        "scheduling_fields",
        lambda m: pod(m)["tolerations"][0].update(effect="NoRun"),
        "must be one of NoSchedule",
        "a toleration's effect",
    ),
    (
        "service",
        "scheduling_fields",
        lambda m: pod(m)["nodeSelector"].update({"bad key!": "x"}),
        "node_selector key",
        "nodeSelector keys are label keys",
    ),
]


@pytest.mark.parametrize("which, rule, change, expected, why", CASES, ids=[f"{c[1]}:{c[4]}" for c in CASES])
def test_rule_catches_a_manifest_that_breaks_it(good, which, rule, change, expected, why):
    m = copy.deepcopy(good[which])
    change(m)
    problems = check([m], Cluster(features=GPU_FLAGS))
    assert any(p.rule == rule and expected in str(p) and p.severity == "error" for p in problems), [
        str(p) for p in problems
    ]


def test_feature_flags_rule_warns_until_the_flags_are_enabled(good):
    problems = check([good["service"]], Cluster())
    assert {(p.rule, p.severity) for p in problems} == {("feature_flags", "warning")}
    assert {p.path for p in problems} == {
        "spec.template.spec.nodeSelector",
        "spec.template.spec.tolerations",
        "spec.template.spec.runtimeClassName",
    }
    assert check([good["service"]], Cluster(features=GPU_FLAGS)) == []


def test_cluster_settings_from_the_profile_change_the_verdict(good):
    m = copy.deepcopy(good["service"])
    annotations(m)[A + "max-scale"] = "50"
    limited = Cluster.from_profile(parse_profile({"serving": {"max_scale_limit": 20}}), GPU_FLAGS)
    assert [p.rule for p in check([m], limited)] == ["scale_bounds"]
    annotations(m)[A + "initial-scale"] = "0"
    m2 = copy.deepcopy(m)
    annotations(m2)[A + "max-scale"] = "5"
    assert (
        check([m2], Cluster.from_profile(parse_profile({"serving": {"allow_zero_initial_scale": True}}), GPU_FLAGS))
        == []
    )


def test_flagged_volumes_and_capabilities_warn_until_their_flags_are_on(good):
    m = copy.deepcopy(good["router"])
    pod(m)["volumes"].append({"name": "data", "persistentVolumeClaim": {"claimName": "data"}})
    container(m)["volumeMounts"].append({"name": "data", "mountPath": "/data"})
    container(m)["securityContext"]["capabilities"]["add"] = ["NET_BIND_SERVICE", "NET_RAW"]
    problems = check([m], Cluster())
    assert {(p.rule, p.severity, p.message.split(" needs")[0]) for p in problems} == {
        ("volume_flags", "warning", "a persistentVolumeClaim volume"),
        ("pvc_write", "warning", "persistentVolumeClaim 'data' mounted read-write"),
        ("add_capabilities", "warning", "adding NET_RAW"),
    }
    on = frozenset({"kubernetes.podspec-persistent-volume-claim", "kubernetes.containerspec-addcapabilities"})
    assert [p.rule for p in check([m], Cluster(features=on))] == ["pvc_write"]
    assert check([m], Cluster(features=on | {"kubernetes.podspec-persistent-volume-write"})) == []
    container(m)["volumeMounts"][-1]["readOnly"] = True  # read-only: no write flag
    assert check([m], Cluster(features=on)) == []
    # emptyDir is on in a fresh install; a profile that turns it off is told
    off = Cluster.from_profile(
        parse_profile({"serving": {"features": {"kubernetes.podspec-volumes-emptydir": "disabled"}}})
    )
    assert {p.path for p in check([good["router"]], off)} == {
        "spec.template.spec.volumes[1].emptyDir",
        "spec.template.spec.volumes[2].emptyDir",
    }


def test_every_rule_has_a_test():
    tested = {c[1] for c in CASES} | {"feature_flags", "volume_flags", "pvc_write", "add_capabilities"}
    rules = {fn.__name__ for fns in webhook_rules.RULES.values() for fn in fns}
    assert rules - tested == set()
