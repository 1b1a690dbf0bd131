"""Named GPU pools and per-function deployment settings in the manifests: the smallest pool that fits, the
pool's cache, a node's `deploy:` over its function's, and the errors that name the node."""

from __future__ import annotations

import pytest
from pydantic import BaseModel
from test_knative_manifests import ROOT, StandIns, by_kind, pipeline, template

from functions.sdk import function
from knative import features
from knative.errors import DeploymentInvalid, NodesDisagree, ProfileInvalid
from knative.manifests import build
from knative.profile import parse_profile


class _T(BaseModel):
    text: str


@function(name="kp-whisper", gpu_memory="10Gi", image="ghcr.io/acme/whisper:1", register=False)
async def _whisper(inp: _T) -> _T:
    return inp


@function(
    name="kp-gen",
    gpu={"count": 1, "pool": "a100-80gb"},
    env={"HF_TOKEN": {"secret": "hf", "key": "token"}},
    volumes=[{"name": "scratch", "empty_dir": {"size_limit": "20Gi"}, "mount": "/scratch"}],
    service_account="media",
    register=False,
)
async def _gen(inp: _T) -> _T:
    return inp


@function(name="kp-cpu", labels={"team": "media"}, annotations={"acme.dev/owner": "media"}, register=False)
async def _cpu(inp: _T) -> _T:
    return inp


REG = StandIns()
for _spec in (_whisper, _gen, _cpu):
    REG.add(_spec)

POOLS = {
    "gpu_pools": {
        "l4": {"node_selector": {"gpu": "l4"}, "memory": "24Gi", "cache": {"claim": "models-l4", "mount": "/models"}},
        "a100-80gb": {"node_selector": {"gpu": "a100"}, "memory": "80Gi", "runtime_class_name": "nvidia"},
        "t4": {"node_selector": {"gpu": "t4"}, "memory": "16Gi"},
    }
}


def one(function_name: str, node_extra: str = "") -> str:
    return f"metadata: {{name: p}}\nnodes:\n  - {{id: n, type: {function_name}, inputs: {{text: x}}{node_extra}}}\n"


def spec_of(bundle, name: str) -> dict:
    return template(by_kind(bundle, "Service")[f"knflow-{name}"])[1]


def test_gpu_memory_gets_the_smallest_pool_that_fits_with_its_cache():
    bundle = build([pipeline(one("kp-whisper"))], REG, parse_profile(POOLS), ROOT)
    spec = spec_of(bundle, "kp-whisper")  # 10Gi: t4 (16Gi) is the smallest that fits
    assert spec["nodeSelector"] == {"gpu": "t4"} and "runtimeClassName" not in spec
    assert spec["containers"][0]["image"] == "ghcr.io/acme/whisper:1"
    bundle = build([pipeline(one("kp-whisper", ", deploy: {gpu_memory: 20Gi}"))], REG, parse_profile(POOLS), ROOT)
    spec = spec_of(bundle, "kp-whisper")
    assert spec["nodeSelector"] == {"gpu": "l4"}
    assert {"name": "model-cache", "persistentVolumeClaim": {"claimName": "models-l4"}} in spec["volumes"]
    ctr = spec["containers"][0]
    assert {"name": "model-cache", "mountPath": "/models"} in ctr["volumeMounts"]
    assert {"name": "XDG_CACHE_HOME", "value": "/models"} in ctr["env"]
    needed = features.flags_needed(bundle.manifests)
    assert {"kubernetes.podspec-persistent-volume-claim", "kubernetes.podspec-persistent-volume-write"} <= set(needed)
    assert any("kubernetes.podspec-persistent-volume-write" in n for n in bundle.notes)
    assert any("PersistentVolumeClaim 'models-l4'" in n for n in bundle.notes)


def test_a_named_pool_its_env_volumes_and_service_account():
    bundle = build([pipeline(one("kp-gen"))], REG, parse_profile(POOLS), ROOT)
    spec = spec_of(bundle, "kp-gen")
    assert spec["nodeSelector"] == {"gpu": "a100"} and spec["runtimeClassName"] == "nvidia"
    assert spec["serviceAccountName"] == "media"
    ctr = spec["containers"][0]
    assert {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "token"}}} in ctr["env"]
    assert {"name": "scratch", "emptyDir": {"sizeLimit": "20Gi"}} in spec["volumes"]
    assert any("Secret 'hf' key 'token' is read by kp-gen" in n for n in bundle.notes)


def test_run_on_gpu_takes_the_default_pool_or_the_smallest():
    text = one("kp-cpu", ", runOn: gpu")
    assert spec_of(build([pipeline(text)], REG, parse_profile(POOLS), ROOT), "kp-cpu")["nodeSelector"] == {"gpu": "t4"}
    chosen = parse_profile({**POOLS, "default_gpu_pool": "l4"})
    assert spec_of(build([pipeline(text)], REG, chosen, ROOT), "kp-cpu")["nodeSelector"] == {"gpu": "l4"}
    # without gpu_pools, the profile's one `gpu` pool, as before
    spec = spec_of(build([pipeline(text)], REG, parse_profile({}), ROOT), "kp-cpu")
    assert spec["nodeSelector"] == {"nvidia.com/gpu.present": "true"}


def test_labels_and_annotations_reach_the_revision_template():
    bundle = build([pipeline(one("kp-cpu", ", deploy: {labels: {stage: prod}}"))], REG, parse_profile({}), ROOT)
    t = by_kind(bundle, "Service")["knflow-kp-cpu"]["spec"]["template"]["metadata"]
    assert t["labels"]["team"] == "media" and t["labels"]["stage"] == "prod"
    assert t["annotations"]["acme.dev/owner"] == "media"
    assert "nodeSelector" not in spec_of(bundle, "kp-cpu")


@pytest.mark.parametrize(
    "text, profile, expected",
    [
        (one("kp-gen"), {}, "asks for GPU pool 'a100-80gb', which the profile's gpu_pools does not list"),
        (one("kp-whisper", ", deploy: {gpu_memory: 90Gi}"), POOLS, "no GPU pool of the profile has that much"),
        (one("kp-gen", ", deploy: {gpu_memory: 90Gi}"), POOLS, "but that pool's GPUs have 80Gi"),
        (one("kp-gen", ", runOn: cpu"), POOLS, "runs on CPU"),
        (one("kp-cpu", ", runOn: gpu, deploy: {node_selector: {gpu: h100}}"), POOLS, "contradicts its GPU pool"),
        (
            one("kp-cpu", ", deploy: {volumes: [{name: tmp, empty_dir: {}, mount: /t}]}"),
            POOLS,
            "volume name 'tmp' is knflow's own",
        ),
        (
            one("kp-cpu", ", deploy: {volumes: [{name: t, empty_dir: {}, mount: /knflow/tmp}]}"),
            POOLS,
            "where knflow mounts 'tmp'",
        ),
    ],
)
def test_what_does_not_fit_names_the_node(text, profile, expected):
    with pytest.raises(DeploymentInvalid) as err:
        build([pipeline(text)], REG, parse_profile(profile), ROOT)
    assert "node 'n' of pipeline 'p'" in str(err.value) or "node 'n'" in str(err.value)
    assert expected in str(err.value)


def test_nodes_of_one_function_must_agree_on_its_deployment():
    text = (
        "metadata: {name: p}\nnodes:\n"
        "  - {id: a, type: kp-cpu, inputs: {text: x}, deploy: {image: 'ghcr.io/acme/a:1'}}\n"
        "  - {id: b, type: kp-cpu, inputs: {text: y}}\nedges: [{from: a, to: b}]\n"
    )
    with pytest.raises(NodesDisagree, match="different deployment"):
        build([pipeline(text)], REG, parse_profile({}), ROOT)


@pytest.mark.parametrize(
    "doc, expected",
    [
        ({"gpu": {"runtime_class_name": "nvidia"}, **POOLS}, "not both"),
        ({"gpu_pools": {"A100": {}}}, "DNS label"),
        ({"gpu_pools": {"l4": {"memory": "24 GB"}}}, "not a Kubernetes quantity"),
        ({"gpu_pools": {"l4": {"cache": {"claim": "m", "mount": "models"}}}}, "absolute path"),
        ({"gpu_pools": {"l4": {"tolerations": [{"operator": "Exists", "value": "x"}]}}}, "must be empty"),
        ({**POOLS, "default_gpu_pool": "h100"}, "not a pool of gpu_pools"),
    ],
)
def test_profile_pools_are_checked(doc, expected):
    with pytest.raises(ProfileInvalid, match=expected):
        parse_profile(doc)
