"""Every manifest generated for every example validates against the real Knative CRDs
(tests/fixtures/knative-crds/, copied from shared/knative/crds/).

Strict, as the API server's strict field validation: where a CRD schema is closed (no
`x-kubernetes-preserve-unknown-fields`), an unknown field is an error. Core objects (ConfigMap,
Namespace) are checked by hand; a channel template inside a ConfigMap is checked against the
NatsJetStreamChannel CRD.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import pytest
import yaml

from functions.registry import REGISTRY
from knative.cli import load_pipelines
from knative.manifests import build
from knative.profile import parse_profile
from router.pipeline import Pipeline

import jsonschema

from test_knative_manifests import ARTICLE_REGISTRY, ROOT, article_pipeline

CRDS = (
    ROOT / "tests" / "fixtures" / "knative-crds"
)  # the real CRDs, byte for byte from the Knative releases (SOURCES.md)
OPEN = "x-kubernetes-preserve-unknown-fields"
EXAMPLES = sorted(
    p.name
    for p in (ROOT / "examples").iterdir()
    if p.suffix in (".yaml", ".py")
    and not p.name.startswith("__")
    and (p.suffix == ".yaml" or "@pipeline" in p.read_text())
)
PROFILES = {
    "default": {},
    "native-broker": {"broker": {"class": "NatsJetStreamBroker"}, "namespace": "pipelines"},
    "gpu-pool": {
        "image": "registry.example.com/knflow@sha256:" + "0" * 64,
        "image_pull_policy": "IfNotPresent",
        "service_account": "knflow",
        "labels": {"team": "data"},
        "gpu": {"node_selector": {"karpenter.sh/nodepool": "gpu-nodepool"}, "runtime_class_name": "nvidia"},
        "router": {"cpu": "500m", "memory": "512Mi", "webhook_secret": None},
        "serving": {"features_patch": True},
        "monitoring": "prometheus-operator",
        "broker": {
            "channel_spec": {
                "stream": {"config": {"maxAge": "72h", "replicas": 3, "duplicateWindow": "2m"}},
                "consumerConfigTemplate": {"maxAckPending": 100},
            }
        },
    },
}


# networking.k8s.io/v1 NetworkPolicy is core Kubernetes (no CRD): its schema by hand, from the API reference
# (io.k8s.api.networking.v1.NetworkPolicySpec and the types under it), closed as the API server's strict
# field validation is; `podSelector` is required, a peer's `ipBlock` needs `cidr` and is exclusive with the
# selectors.
_SELECTOR = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "matchLabels": {"type": "object", "additionalProperties": {"type": "string"}},
        "matchExpressions": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["key", "operator"],
                "properties": {
                    "key": {"type": "string"},
                    "operator": {"enum": ["In", "NotIn", "Exists", "DoesNotExist"]},
                    "values": {"type": "array", "items": {"type": "string"}},
                },
            },
        },
    },
}
_CIDR = {"type": "string", "pattern": r"^([0-9.]+|[0-9a-fA-F:]+)/[0-9]{1,3}$"}
_PEER = {
    "type": "object",
    "additionalProperties": False,
    "minProperties": 1,
    "properties": {
        "ipBlock": {
            "type": "object",
            "additionalProperties": False,
            "required": ["cidr"],
            "properties": {"cidr": _CIDR, "except": {"type": "array", "items": _CIDR}},
        },
        "namespaceSelector": _SELECTOR,
        "podSelector": _SELECTOR,
    },
    "not": {"anyOf": [{"required": ["ipBlock", "namespaceSelector"]}, {"required": ["ipBlock", "podSelector"]}]},
}
_PORT = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "port": {"anyOf": [{"type": "integer"}, {"type": "string"}]},
        "endPort": {"type": "integer"},
        "protocol": {"enum": ["TCP", "UDP", "SCTP"]},
    },
}
_RULE = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "to": {"type": "array", "items": _PEER},
        "from": {"type": "array", "items": _PEER},
        "ports": {"type": "array", "items": _PORT},
    },
}
NETWORK_POLICY = {
    "type": "object",
    "additionalProperties": False,
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "networking.k8s.io/v1"},
        "kind": {"const": "NetworkPolicy"},
        "metadata": {"type": "object"},
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "required": ["podSelector"],
            "properties": {
                "podSelector": _SELECTOR,
                "policyTypes": {"type": "array", "items": {"enum": ["Ingress", "Egress"]}},
                "ingress": {"type": "array", "items": _RULE},
                "egress": {"type": "array", "items": _RULE},
            },
        },
    },
}


# monitoring.coreos.com/v1 PodMonitor (the Prometheus Operator's CRD, not among Knative's): the fields knflow sets,
# as its openAPIV3Schema has them (prometheus-operator example/prometheus-operator-crd/
# monitoring.coreos.com_podmonitors.yaml), closed here so that a typo fails; `selector` is required.
_SECRET_KEY = {
    "type": "object",
    "additionalProperties": False,
    "required": ["key"],
    "properties": {"name": {"type": "string"}, "key": {"type": "string"}, "optional": {"type": "boolean"}},
}
POD_MONITOR = {
    "type": "object",
    "additionalProperties": False,
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "PodMonitor"},
        "metadata": {"type": "object"},
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "required": ["selector"],
            "properties": {
                "selector": _SELECTOR,
                "podMetricsEndpoints": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "port": {"type": "string"},
                            "path": {"type": "string"},
                            "interval": {"type": "string", "pattern": r"^(0|(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?)$"},
                            "scheme": {"enum": ["http", "https", "HTTP", "HTTPS"]},
                            "authorization": {
                                "type": "object",
                                "additionalProperties": False,
                                "properties": {"type": {"type": "string"}, "credentials": _SECRET_KEY},
                            },
                        },
                    },
                },
            },
        },
    },
}


def strict(schema: Any, root: bool = False) -> Any:
    """An openAPIV3Schema as a JSON schema that refuses unknown fields where Kubernetes would."""
    if not isinstance(schema, dict):
        return schema
    out = {
        k: v
        for k, v in schema.items()
        if not k.startswith("x-kubernetes-") and k not in ("nullable", "format", "description")
    }
    for key in ("properties", "patternProperties"):
        if key in schema:
            out[key] = {name: strict(sub) for name, sub in schema[key].items()}
    for key in ("items", "not"):
        if key in schema:
            out[key] = strict(schema[key])
    for key in ("anyOf", "allOf", "oneOf"):
        if key in schema:
            out[key] = [strict(s) for s in schema[key]]
    if isinstance(schema.get("additionalProperties"), dict):
        out["additionalProperties"] = strict(schema["additionalProperties"])
    if schema.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out.setdefault("anyOf", [{"type": "integer"}, {"type": "string"}])
    if schema.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    if root:
        props = out.setdefault("properties", {})
        props.setdefault("apiVersion", {"type": "string"})
        props.setdefault("kind", {"type": "string"})
        props["metadata"] = {"type": "object"}  # checked by check_metadata
    if schema.get("type") == "object" and not schema.get(OPEN) and "additionalProperties" not in schema:
        out["additionalProperties"] = False
    return out


@cache
def validators() -> dict[tuple[str, str], Any]:
    out = {
        ("networking.k8s.io/v1", "NetworkPolicy"): jsonschema.Draft7Validator(NETWORK_POLICY),
        ("monitoring.coreos.com/v1", "PodMonitor"): jsonschema.Draft7Validator(POD_MONITOR),
    }
    for path in sorted(CRDS.glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            schema = strict(version["schema"]["openAPIV3Schema"], root=True)
            jsonschema.Draft7Validator.check_schema(schema)
            out[(f"{group}/{version['name']}", kind)] = jsonschema.Draft7Validator(schema)
    return out


def check_metadata(m: dict[str, Any]) -> list[str]:
    meta = m.get("metadata", {})
    out = [
        f"metadata.{k} is not something knflow should set"
        for k in meta
        if k not in ("name", "namespace", "labels", "annotations")
    ]
    for part in ("labels", "annotations"):
        out += [
            f"metadata.{part}[{k}] is not a string" for k, v in (meta.get(part) or {}).items() if not isinstance(v, str)
        ]
    return out


def schema_errors(m: dict[str, Any]) -> list[str]:
    errors = check_metadata(m)
    if m["apiVersion"] == "v1":
        allowed = {
            "ConfigMap": {"apiVersion", "kind", "metadata", "data"},
            "Namespace": {"apiVersion", "kind", "metadata"},
        }[m["kind"]]
        errors += [f"unknown field {k}" for k in m if k not in allowed]
        errors += [f"data[{k}] is not a string" for k, v in (m.get("data") or {}).items() if not isinstance(v, str)]
        template = (m.get("data") or {}).get("channel-template-spec")
        if template:  # the channel the broker will create from it
            channel = yaml.safe_load(template)
            channel["metadata"] = {"name": "probe"}
            errors += schema_errors(channel)
        return errors
    validator = validators().get((m["apiVersion"], m["kind"]))
    assert validator is not None, f"no CRD in {CRDS} for {m['apiVersion']} {m['kind']}"
    return errors + [
        f"{'.'.join(str(p) for p in e.absolute_path) or '(root)'}: {e.message}" for e in validator.iter_errors(m)
    ]


def profile_for(example: str, name: str) -> dict[str, Any]:
    """One of PROFILES, with the GPU pools of the example's own profile (examples/profiles/NAME) over it."""
    doc = dict(PROFILES[name])
    own = ROOT / "examples" / "profiles" / example.replace(".py", ".yaml")
    if own.exists():
        pools = {k: v for k, v in yaml.safe_load(own.read_text()).items() if k in ("gpu_pools", "default_gpu_pool")}
        if pools:
            doc.pop("gpu", None)
        doc |= pools
    return doc


def pipelines_of(example: str) -> list[Pipeline]:
    if example == "article-generator.yaml":
        return [article_pipeline()]
    return load_pipelines([str(ROOT / "examples" / example)], [])


@pytest.mark.parametrize("profile", sorted(PROFILES))
@pytest.mark.parametrize("example", EXAMPLES)
def test_every_manifest_of_every_example_validates_against_the_crds(example, profile):
    registry = ARTICLE_REGISTRY if example == "article-generator.yaml" else REGISTRY
    bundle = build(pipelines_of(example), registry, parse_profile(profile_for(example, profile)), ROOT)
    kinds = {m["kind"] for m in bundle.manifests}
    assert {"Service", "Trigger", "Broker", "ConfigMap"} <= kinds
    problems = {f"{m['kind']}/{m['metadata']['name']}": schema_errors(m) for m in bundle.manifests}
    assert {k: v for k, v in problems.items() if v} == {}


def test_all_examples_together_validate():
    pipelines = [p for e in EXAMPLES for p in pipelines_of(e)]
    bundle = build(pipelines, ARTICLE_REGISTRY, parse_profile(profile_for("media-gpu.yaml", "gpu-pool")), ROOT)
    assert {m["kind"] for m in bundle.manifests} == {
        "Namespace",
        "ConfigMap",
        "Broker",
        "Service",
        "Trigger",
        "PingSource",
        "NetworkPolicy",
        "PodMonitor",
    }
    assert [f"{m['kind']}/{m['metadata']['name']}: {e}" for m in bundle.manifests for e in schema_errors(m)] == []


def test_the_examples_cover_cpu_gpu_cron_python_and_the_seed():
    assert {"hello.yaml", "gpu-summarize.yaml", "cron-digest.yaml", "studio.py", "article-generator.yaml"} <= set(
        EXAMPLES
    )


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda m: m["spec"]["template"]["spec"].update(containerConcurency=1), "'containerConcurency' was unexpected"),
        (
            lambda m: m["spec"]["template"]["spec"]["containers"][0].update(imagePolicy="Always"),
            "'imagePolicy' was unexpected",
        ),
        (lambda m: m["spec"]["template"]["spec"].update(timeoutSeconds="60"), "'60' is not of type 'integer'"),
        (lambda m: m["spec"]["template"]["metadata"]["annotations"].update({"x": 1}), "1 is not of type 'string'"),
    ],
)
def test_the_strict_check_catches_typos_and_wrong_types(mutate, expected):
    bundle = build(pipelines_of("hello.yaml"), REGISTRY, root=ROOT)
    service = next(m for m in bundle.manifests if m["kind"] == "Service")
    mutate(service)
    assert any(expected in e for e in schema_errors(service)), schema_errors(service)


def test_open_parts_of_a_schema_stay_open():
    trigger = {
        "apiVersion": "eventing.knative.dev/v1",
        "kind": "Trigger",
        "metadata": {"name": "t"},
        "spec": {"broker": "b", "delivery": {"timeout": "PT1S", "anything": 1}, "subscriber": {"uri": "http://x"}},
    }
    assert schema_errors(trigger) == []  # Trigger.spec is preserve-unknown-fields
    source = {
        "apiVersion": "sources.knative.dev/v1",
        "kind": "PingSource",
        "metadata": {"name": "p"},
        "spec": {"schedul": "* * * * *"},
    }
    assert any("'schedul' was unexpected" in e for e in schema_errors(source))


def test_the_pod_monitor_selects_every_knflow_pod_on_its_user_port():
    bundle = build(pipelines_of("hello.yaml"), REGISTRY, parse_profile({"monitoring": "prometheus-operator"}), ROOT)
    (monitor,) = [m for m in bundle.manifests if m["kind"] == "PodMonitor"]
    selector = monitor["spec"]["selector"]["matchLabels"]
    services = [m for m in bundle.manifests if m["kind"] == "Service"]
    assert len(services) >= 3  # the router, its broker ingress, the functions
    for service in services:
        template = service["spec"]["template"]["metadata"]
        assert selector.items() <= template["labels"].items(), service["metadata"]["name"]
        assert template["annotations"]["prometheus.io/path"] == "/metrics"
        env = {e["name"]: e for e in service["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert env["KNFLOW_METRICS_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "knflow-metrics"
    endpoint = monitor["spec"]["podMetricsEndpoints"][0]
    assert endpoint["port"] == "user-port"  # Knative's name for the user container's port on every pod
    assert endpoint["authorization"]["credentials"] == {"name": "knflow-metrics", "key": "token"}
    broken = {**monitor, "spec": {**monitor["spec"], "podMetricsEndpoints": [{**endpoint, "bearerToken": "x"}]}}
    assert any("'bearerToken' was unexpected" in e for e in schema_errors(broken))
    none = build(pipelines_of("hello.yaml"), REGISTRY, parse_profile({"monitoring": "none"}), ROOT)
    assert not any(m["kind"] == "PodMonitor" for m in none.manifests)
    assert all(
        "prometheus.io/scrape" not in m["spec"]["template"]["metadata"]["annotations"]
        for m in none.manifests
        if m["kind"] == "Service"
    )
