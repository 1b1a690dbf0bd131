"""functions/deployment.py: per-function deployment settings, checked as the API server checks them."""

from __future__ import annotations

from decimal import Decimal

import pytest

from functions.deployment import Deployment, SecretEnv, Volume, parse, quantity

FULL = {
    "image": "ghcr.io/acme/whisper:1",
    "env": {"MODEL": "large-v3", "THREADS": 4, "HF_TOKEN": {"secret": "hf", "key": "token", "optional": True}},
    "volumes": [
        {"name": "models", "claim": "models-l4", "mount": "/models"},
        {"name": "scratch", "empty_dir": {"size_limit": "10Gi", "medium": "Memory"}, "mount": "/scratch"},
        {"name": "prompts", "config_map": "media-prompts", "mount": "/etc/prompts"},
        {"name": "creds", "secret": "media-creds", "mount": "/etc/creds", "sub_path": "key.json"},
    ],
    "node_selector": {"topology.kubernetes.io/zone": "eu-west-1a"},
    "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "media", "effect": "NoSchedule"}],
    "service_account": "media",
    "annotations": {"team.acme.dev/owner": "media desk"},
    "labels": {"team": "media"},
    "gpu": {"count": 2, "pool": "a100-80gb"},
    "gpu_memory": "30Gi",
}


def test_every_setting_parses_and_reads_back():
    d, problems = parse(FULL)
    assert problems == []
    assert d.env["HF_TOKEN"] == SecretEnv("hf", "token", True) and d.env["THREADS"] == "4"
    assert [v.kind for v in d.volumes] == ["claim", "empty_dir", "config_map", "secret"]
    assert d.volumes[2].read_only and d.volumes[3].read_only and not d.volumes[0].read_only  # configMap/secret: ro
    assert (d.gpu_count, d.gpu_pool, d.gpu_memory) == (2, "a100-80gb", "30Gi")
    assert parse(d.to_dict()) == (d, [])


def test_volumes_as_the_pod_spec_has_them():
    d, _ = parse(FULL)
    assert [v.volume() for v in d.volumes] == [
        {"name": "models", "persistentVolumeClaim": {"claimName": "models-l4"}},
        {"name": "scratch", "emptyDir": {"medium": "Memory", "sizeLimit": "10Gi"}},
        {"name": "prompts", "configMap": {"name": "media-prompts"}},
        {"name": "creds", "secret": {"secretName": "media-creds"}},
    ]
    assert d.volumes[3].volume_mount() == {
        "name": "creds",
        "mountPath": "/etc/creds",
        "readOnly": True,
        "subPath": "key.json",
    }


@pytest.mark.parametrize(
    "raw, where, text",
    [
        ({"image": "Not An Image"}, "image", "not an image reference"),
        ({"env": {"KNFLOW_X": "1"}}, "env.KNFLOW_X", "set by knflow or Knative"),
        ({"env": {"HOME": "/root"}}, "env.HOME", "set by knflow or Knative"),
        ({"env": {"A": True}}, "env.A", "must be a string"),
        ({"env": {"A": {"secret": "Bad_Name", "key": "k"}}}, "env.A.secret", "DNS-1123"),
        ({"volumes": [{"name": "Models", "claim": "m", "mount": "/m"}]}, "volumes[0].name", "DNS-1123 label"),
        ({"volumes": [{"name": "m", "claim": "m", "mount": "models"}]}, "volumes[0].mount", "absolute path"),
        ({"volumes": [{"name": "m", "claim": "m", "mount": "/a/../b"}]}, "volumes[0].mount", "'..'"),
        ({"volumes": [{"name": "m", "mount": "/m"}]}, "volumes[0]", "exactly one of"),
        ({"volumes": [{"name": "m", "claim": "a", "secret": "b", "mount": "/m"}]}, "volumes[0]", "exactly one of"),
        (
            {"volumes": [{"name": "m", "empty_dir": {"size_limit": "lots"}, "mount": "/m"}]},
            "volumes[0].empty_dir.size_limit",
            "not a Kubernetes quantity",
        ),
        (
            {"volumes": [{"name": "m", "empty_dir": {"size_limit": "0"}, "mount": "/m"}]},
            "volumes[0].empty_dir.size_limit",
            "greater than zero",
        ),
        (
            {"volumes": [{"name": "c", "config_map": "c", "mount": "/c", "read_only": False}]},
            "volumes[0].read_only",
            "read-only only",
        ),
        (
            {"volumes": [{"name": "a", "claim": "a", "mount": "/m"}, {"name": "a", "claim": "b", "mount": "/n"}]},
            "volumes[1].name",
            "used twice",
        ),
        (
            {"volumes": [{"name": "a", "claim": "a", "mount": "/m"}, {"name": "b", "claim": "b", "mount": "/m/"}]},
            "volumes[1].mount",
            "used by another volume",
        ),
        ({"tolerations": [{"key": "k", "operator": "In"}]}, "tolerations[0].operator", "Exists or Equal"),
        ({"tolerations": [{"operator": "Exists", "value": "v"}]}, "tolerations[0].value", "must be empty"),
        ({"tolerations": [{"operator": "Equal", "value": "v"}]}, "tolerations[0].key", "needs a key"),
        ({"tolerations": [{"key": "k", "effect": "NoRun"}]}, "tolerations[0].effect", "NoSchedule"),
        (
            {"tolerations": [{"key": "k", "effect": "NoSchedule", "tolerationSeconds": 30}]},
            "tolerations[0].tolerationSeconds",
            "NoExecute only",
        ),
        ({"node_selector": {"bad key!": "x"}}, "node_selector.bad key!", "at most 63"),
        ({"labels": {"team": "has space"}}, "labels.team", "value"),
        ({"labels": {"knflow.dev/function": "x"}}, "labels.knflow.dev/function", "reserved"),
        (
            {"annotations": {"autoscaling.knative.dev/min-scale": "1"}},
            "annotations.autoscaling.knative.dev/min-scale",
            "scaling",
        ),
        ({"annotations": {"a": 1}}, "annotations.a", "must be a string"),
        ({"service_account": "Media_SA"}, "service_account", "DNS-1123"),
        ({"gpu": {"count": -1}}, "gpu.count", "integer >= 0"),
        ({"gpu": {"pool": "A100"}}, "gpu.pool", "must name a pool"),
        ({"gpu_memory": "30 GB"}, "gpu_memory", "not a Kubernetes quantity"),
        ({"colour": "red"}, "colour", "not a deployment setting"),
    ],
)
def test_each_problem_names_its_field(raw, where, text):
    _, problems = parse(raw)
    assert any(w == where and text in msg for w, msg in problems), problems


def test_every_problem_is_reported_at_once():
    _, problems = parse({"image": "X Y", "service_account": "_", "gpu_memory": "x"})
    assert [w for w, _ in problems] == ["image", "service_account", "gpu_memory"]


def test_a_nodes_settings_go_over_the_functions():
    base, _ = parse(FULL)
    node, _ = parse(
        {
            "env": {"MODEL": "medium"},
            "volumes": [{"name": "models", "claim": "models-a100", "mount": "/models"}],
            "labels": {"stage": "prod"},
            "tolerations": [],
            "gpu": {"pool": "l4"},
        }
    )
    d = node.over(base)
    assert d.image == base.image and d.env["MODEL"] == "medium" and "HF_TOKEN" in d.env
    assert [v.source for v in d.volumes if v.kind == "claim"] == ["models-a100"] and len(d.volumes) == 4
    assert d.labels == {"team": "media", "stage": "prod"} and d.tolerations == ()
    assert (d.gpu_pool, d.gpu_count, d.gpu_memory) == ("l4", 1, "30Gi")
    assert Deployment().over(base) == base and not Deployment()


def test_quantities():
    assert (
        quantity("24Gi") == 24 * 2**30 and quantity("1.5G") == Decimal("1.5e9") and quantity("500m") == Decimal("0.5")
    )
    with pytest.raises(ValueError, match="not a Kubernetes quantity"):
        quantity("24 GiB")


def test_a_volume_is_plain_data():
    v = Volume("m", "/m", "claim", "models", read_only=True)
    assert v.volume() == {"name": "m", "persistentVolumeClaim": {"claimName": "models", "readOnly": True}}
