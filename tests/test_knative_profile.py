"""The cluster profile: defaults, a file, and errors that name the key."""

from __future__ import annotations

import pytest

from knative.errors import ProfileInvalid
from knative.profile import Profile, load_profile, parse_profile


def test_defaults_scale_to_zero_on_a_nats_channel_broker_with_the_common_gpu_pool():
    p = Profile()
    assert (p.namespace, p.broker.name, p.broker.class_) == ("knflow", "knflow", "MTChannelBasedBroker")
    assert p.gpu.node_selector == {"nvidia.com/gpu.present": "true"}
    assert p.gpu.tolerations == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert p.gpu.runtime_class_name is None and p.router.min_scale == 1
    assert p.broker_ingress_url() == "http://broker-ingress.knative-eventing.svc.cluster.local/knflow/knflow"


def test_a_profile_file(tmp_path):
    f = tmp_path / "cluster.yaml"
    f.write_text(
        "namespace: pipelines\nbroker: {class: NatsJetStreamBroker, name: events}\n"
        "gpu:\n  node_selector: {karpenter.sh/nodepool: gpu-nodepool}\n  runtime_class_name: nvidia\n"
        "router: {min_scale: 2, mongodb_secret: {name: db, key: uri}}\n"
    )
    p = load_profile(f)
    assert p.broker.class_ == "NatsJetStreamBroker" and p.router.mongodb_secret.name == "db"
    assert p.broker_ingress_url() == "http://nats-broker-ingress.knative-eventing.svc.cluster.local/pipelines/events"
    assert load_profile(None) == Profile()


def test_every_mistake_is_named(tmp_path):
    with pytest.raises(ProfileInvalid) as err:
        parse_profile(
            {
                "namespace": "Bad_NS",
                "gpu": {"nodeSelector": {}},
                "router": {"min_scale": -1},
                "broker": {"class": "Kafka"},
            },
            "p.yaml",
        )
    msg = str(err.value)
    assert msg.startswith("p.yaml: profile is invalid: ")
    assert "namespace 'Bad_NS' must be a DNS label" in msg
    assert "'gpu.nodeSelector' is not a profile key; expected one of node_selector, tolerations" in msg
    assert "'router.min_scale': Input should be greater than or equal to 0 (got -1)" in msg
    assert "'broker.class'" in msg and "'Kafka'" in msg


def test_unreadable_or_not_a_mapping(tmp_path):
    with pytest.raises(ProfileInvalid, match="cannot read the file"):
        load_profile(tmp_path / "missing.yaml")
    (tmp_path / "list.yaml").write_text("- a\n")
    with pytest.raises(ProfileInvalid, match="must be a mapping"):
        load_profile(tmp_path / "list.yaml")
    (tmp_path / "bad.yaml").write_text("a: [\n")
    with pytest.raises(ProfileInvalid, match="YAML syntax error"):
        load_profile(tmp_path / "bad.yaml")
