"""Golden files: the whole output for a CPU pipeline, a GPU pipeline, a cron pipeline and the media pipeline on
two named GPU pools (own images, volumes, model caches), each with its
profile (tests/golden/knative/NAME.profile.yaml). A change to the manifests shows up here as a diff.

Regenerate after an intended change, then read the diff:

    KNFLOW_UPDATE_GOLDEN=1 .venv/bin/pytest tests/test_knative_golden.py
"""

from __future__ import annotations

import os

import pytest
from test_knative_manifests import ROOT

from functions.registry import REGISTRY
from knative.manifests import build, to_yaml
from knative.profile import load_profile
from router.loader import load

GOLDEN = ROOT / "tests" / "golden" / "knative"
UPDATE = os.environ.get("KNFLOW_UPDATE_GOLDEN") == "1"


def compare(path, text: str) -> None:
    if UPDATE or not path.exists():
        path.write_text(text, encoding="utf-8")
        if not UPDATE:
            pytest.fail(f"{path} did not exist and was written; check it and commit it")
    assert text == path.read_text(encoding="utf-8"), (
        f"{path} differs; if the change is intended: KNFLOW_UPDATE_GOLDEN=1 pytest {__file__}"
    )


@pytest.mark.parametrize("name", ["hello", "gpu-summarize", "cron-digest", "media-gpu"])
def test_golden(name):
    bundle = build(
        [load(ROOT / "examples" / f"{name}.yaml")], REGISTRY, load_profile(GOLDEN / f"{name}.profile.yaml"), ROOT
    )
    compare(GOLDEN / f"{name}.yaml", to_yaml(bundle.manifests))
    compare(GOLDEN / f"{name}.notes.txt", "".join(f"note: {n}\n" for n in bundle.notes))


def test_goldens_show_what_each_case_is_for():
    gpu = (GOLDEN / "gpu-summarize.yaml").read_text()
    assert (
        "nvidia.com/gpu: '1'" in gpu
        and "karpenter.sh/nodepool: gpu-nodepool" in gpu
        and "runtimeClassName: nvidia" in gpu
    )
    assert "kubernetes.podspec-nodeselector: enabled" in gpu and "serving.knative.dev/progress-deadline: 1800s" in gpu
    cron = (GOLDEN / "cron-digest.yaml").read_text()
    assert "kind: PingSource" in cron and "eventing.knative.dev/broker.class: NatsJetStreamBroker" in cron
    cpu = (GOLDEN / "hello.yaml").read_text()
    assert "nvidia" not in cpu and "kind: NatsJetStreamChannel" in cpu and "PingSource" not in cpu
    media = (GOLDEN / "media-gpu.yaml").read_text()
    assert "image: ghcr.io/acme/knflow-whisper:0.1.0" in media and "claimName: models-l4" in media
    assert "cloud.google.com/gke-accelerator: nvidia-a100-80gb" in media and "sizeLimit: 20Gi" in media
    notes = (GOLDEN / "media-gpu.notes.txt").read_text()
    assert (
        "kubernetes.podspec-persistent-volume-claim" in notes and "kubernetes.podspec-persistent-volume-write" in notes
    )
