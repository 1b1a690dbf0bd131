"""Every pod knflow generates meets the Pod Security Standards' "restricted" profile, and the bundle holds a
NetworkPolicy that keeps the namespace's pods off the cloud metadata address.

The profile's rules are encoded here from the published standard (kubernetes.io/docs/concepts/security/
pod-security-standards, Kubernetes v1.30: the baseline controls plus the restricted ones). Knative's own
queue-proxy sidecar is Knative's business; the pod spec knflow writes is checked, at pod and container level.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from test_knative_crds import EXAMPLES, PROFILES, pipelines_of, profile_for, schema_errors
from test_knative_manifests import ARTICLE_REGISTRY

from functions.registry import REGISTRY
from knative import network, webhook_rules
from knative.manifests import build
from knative.profile import parse_profile

RESTRICTED_VOLUMES = {
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret",
}  # fmt: skip
SAFE_SYSCTLS = {
    "kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
}  # fmt: skip
SELINUX_TYPES = {None, "", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}


def restricted_violations(pod: dict[str, Any]) -> list[str]:
    """What in a PodSpec breaks the "restricted" Pod Security Standard (baseline included)."""
    containers = [*pod.get("initContainers", []), *pod.get("containers", []), *pod.get("ephemeralContainers", [])]
    out = _baseline_pod(pod)
    for c in containers:
        out += _baseline_container(c) + _restricted_container(c, pod.get("securityContext") or {})
    return out


def _baseline_pod(pod: dict[str, Any]) -> list[str]:
    """Host namespaces, HostProcess, sysctls, volume types (restricted's list), SELinux, AppArmor, root UID."""
    psc = pod.get("securityContext") or {}
    out = [f"{k} must not be true" for k in ("hostNetwork", "hostPID", "hostIPC") if pod.get(k)]
    if (psc.get("windowsOptions") or {}).get("hostProcess"):
        out.append("securityContext.windowsOptions.hostProcess must not be true")
    out += [f"sysctl {s.get('name')} is not safe" for s in psc.get("sysctls", []) if s.get("name") not in SAFE_SYSCTLS]
    for vol in pod.get("volumes", []):
        out += [
            f"volume {vol.get('name')}: {k} is not an allowed volume type"
            for k in vol
            if k != "name" and k not in RESTRICTED_VOLUMES
        ]
    return out + _context_rules("pod", psc)


def _context_rules(where: str, sc: dict[str, Any]) -> list[str]:
    """The rules that hold for the pod's securityContext and each container's alike."""
    out = []
    se = sc.get("seLinuxOptions") or {}
    if se.get("type") not in SELINUX_TYPES or se.get("user") or se.get("role"):
        out.append(f"{where}: seLinuxOptions {se} are not allowed")
    if (sc.get("appArmorProfile") or {}).get("type") not in (None, "RuntimeDefault", "Localhost"):
        out.append(f"{where}: appArmorProfile must be RuntimeDefault or Localhost")
    if sc.get("runAsUser") == 0:
        out.append(f"{where}: runAsUser must not be 0")
    return out


def _baseline_container(c: dict[str, Any]) -> list[str]:
    sc, name = c.get("securityContext") or {}, f"container {c.get('name')}"
    out = _context_rules(name, sc)
    if sc.get("privileged"):
        out.append(f"{name}: privileged must not be true")
    if sc.get("procMount") not in (None, "Default"):
        out.append(f"{name}: procMount must be Default")
    if (sc.get("windowsOptions") or {}).get("hostProcess"):
        out.append(f"{name}: windowsOptions.hostProcess must not be true")
    return out + [f"{name}: hostPort {p['hostPort']} is not allowed" for p in c.get("ports", []) if p.get("hostPort")]


def _restricted_container(c: dict[str, Any], psc: dict[str, Any]) -> list[str]:
    """No privilege escalation, non-root, seccomp RuntimeDefault/Localhost, drop ALL and add only NET_BIND_SERVICE."""
    sc, name = c.get("securityContext") or {}, f"container {c.get('name')}"
    out = []
    if sc.get("allowPrivilegeEscalation") is not False:
        out.append(f"{name}: allowPrivilegeEscalation must be false")
    if sc.get("runAsNonRoot", psc.get("runAsNonRoot")) is not True:
        out.append(f"{name}: runAsNonRoot must be true (container or pod)")
    seccomp = (sc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type")
    if seccomp not in ("RuntimeDefault", "Localhost"):
        out.append(f"{name}: seccompProfile.type must be RuntimeDefault or Localhost, not {seccomp}")
    caps = sc.get("capabilities") or {}
    if "ALL" not in (caps.get("drop") or []):
        out.append(f"{name}: capabilities.drop must include ALL")
    return out + [f"{name}: capability {a} may not be added" for a in caps.get("add") or [] if a != "NET_BIND_SERVICE"]


def bundles() -> list[tuple[str, Any]]:
    out = []
    for profile in sorted(PROFILES):
        for example in EXAMPLES:
            registry = ARTICLE_REGISTRY if example == "article-generator.yaml" else REGISTRY
            out.append(
                (
                    f"{example}/{profile}",
                    build(pipelines_of(example), registry, parse_profile(profile_for(example, profile))),
                )
            )
    return out


def pods(bundle: Any) -> list[tuple[str, dict[str, Any]]]:
    return [
        (m["metadata"]["name"], m["spec"]["template"]["spec"])
        for m in bundle.manifests
        if m["kind"] == "Service" and m["apiVersion"].startswith("serving.knative.dev/")
    ]


@pytest.mark.parametrize("name, bundle", bundles(), ids=lambda x: x if isinstance(x, str) else "")
def test_every_generated_pod_meets_the_restricted_profile(name, bundle):
    found = pods(bundle)
    assert found
    for service, pod in found:
        assert restricted_violations(pod) == [], service
        # and no token for the Kubernetes API: nothing knflow runs calls it
        assert pod["automountServiceAccountToken"] is False, service
        # read-only root: every path written to is an emptyDir
        mounts = {v["mountPath"]: v["name"] for c in pod["containers"] for v in c.get("volumeMounts", [])}
        env = {e["name"]: e.get("value") for c in pod["containers"] for e in c["env"]}
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert "emptyDir" in volumes[mounts[env["TMPDIR"]]] and env["HOME"] == env["TMPDIR"]
        if env["KNFLOW_BLOB_URL"].startswith("file://"):
            assert "emptyDir" in volumes[mounts[env["KNFLOW_BLOB_URL"].removeprefix("file://")]]
    # the hardening breaks neither the CRD schemas nor Knative's webhook rules (build() raises on errors)
    assert [e for m in bundle.manifests for e in schema_errors(m)] == []
    security = {"container_security", "volume_types", "volume_flags", "add_capabilities", "feature_flags"}
    assert [str(w) for w in bundle.warnings if w.rule in security and "securityContext" in w.path] == []


@pytest.mark.parametrize(
    "change, expected",
    [
        (lambda p: p["containers"][0]["securityContext"].pop("runAsNonRoot"), "runAsNonRoot must be true"),
        (
            lambda p: p["containers"][0]["securityContext"].update(allowPrivilegeEscalation=True),
            "allowPrivilegeEscalation",
        ),
        (
            lambda p: p["containers"][0]["securityContext"].update(capabilities={"drop": ["NET_RAW"]}),
            "drop must include ALL",
        ),
        (
            lambda p: p["containers"][0]["securityContext"]["capabilities"].update(add=["SYS_ADMIN"]),
            "SYS_ADMIN may not",
        ),
        (lambda p: p["containers"][0]["securityContext"].update(seccompProfile={"type": "Unconfined"}), "Unconfined"),
        (lambda p: p["containers"][0]["securityContext"].update(privileged=True), "privileged must not"),
        (lambda p: p["volumes"].append({"name": "h", "hostPath": {"path": "/"}}), "hostPath is not an allowed"),
        (lambda p: p.update(hostNetwork=True), "hostNetwork must not"),
        (lambda p: p["containers"][0]["ports"][0].update(hostPort=80), "hostPort 80"),
        (lambda p: p["containers"][0]["securityContext"].update(runAsUser=0), "runAsUser must not be 0"),
    ],
)
def test_the_restricted_check_catches_each_breach(change, expected):
    bundle = build(pipelines_of("hello.yaml"), REGISTRY)
    pod = copy.deepcopy(pods(bundle)[0][1])
    change(pod)
    assert any(expected in v for v in restricted_violations(pod)), restricted_violations(pod)


def test_a_pod_level_security_context_would_need_its_serving_flag():
    bundle = build(pipelines_of("hello.yaml"), REGISTRY)
    svc = copy.deepcopy(next(m for m in bundle.manifests if m["kind"] == "Service"))
    svc["spec"]["template"]["spec"]["securityContext"] = {"runAsNonRoot": True}
    problems = webhook_rules.check([svc], webhook_rules.Cluster())
    assert [p.message for p in problems] == [
        "securityContext needs the Serving feature flag kubernetes.podspec-securitycontext "
        "(config-features in knative-serving)"
    ]


def test_function_services_are_cluster_local_and_the_router_is_not():
    bundle = build(pipelines_of("hello.yaml"), REGISTRY)
    services = {m["metadata"]["name"]: m for m in bundle.manifests if m["kind"] == "Service"}
    visibility = {n: m["metadata"]["labels"].get("networking.knative.dev/visibility") for n, m in services.items()}
    assert visibility.pop("knflow-router") is None
    assert visibility.pop("knflow-router-events") == "cluster-local"  # the broker ingress takes events untokened
    assert set(visibility.values()) == {"cluster-local"}


@pytest.mark.parametrize("example", ["hello.yaml", "cron-digest.yaml", "gpu-summarize.yaml"])
def test_every_delivery_to_the_router_goes_to_its_cluster_local_broker_ingress(example):
    """Triggers, dead-letter sinks and PingSources cannot send a token: they deliver to knflow-router-events,
    which serves only /events and /dead-letter (`--broker-ingress`); the public router keeps the API."""
    bundle = build(pipelines_of(example), REGISTRY)
    sinks = [m["spec"]["subscriber"] for m in bundle.manifests if m["kind"] == "Trigger"]
    sinks += [m["spec"]["delivery"]["deadLetterSink"] for m in bundle.manifests if m["kind"] == "Trigger"
              if "deadLetterSink" in m["spec"]["delivery"]]  # fmt: skip
    sinks += [m["spec"]["sink"] for m in bundle.manifests if m["kind"] == "PingSource"]
    to_router = [s for s in sinks if s["ref"]["name"].startswith("knflow-router")]
    assert to_router and {s["ref"]["name"] for s in to_router} == {"knflow-router-events"}
    assert {s["uri"] for s in to_router} <= {"/events", "/dead-letter"}
    if example == "cron-digest.yaml":
        assert any(m["kind"] == "PingSource" for m in bundle.manifests)
    services = {m["metadata"]["name"]: m for m in bundle.manifests if m["kind"] == "Service"}
    main, ingress = services["knflow-router"], services["knflow-router-events"]
    pod, main_pod = ingress["spec"]["template"]["spec"], main["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"] == ["knflow"] and container["args"] == ["serve", "router", "--broker-ingress"]
    assert restricted_violations(pod) == [] and pod["automountServiceAccountToken"] is False
    assert container["securityContext"] == main_pod["containers"][0]["securityContext"]
    env = {e["name"]: e.get("valueFrom") for e in container["env"]}
    main_env = {e["name"]: e.get("valueFrom") for e in main_pod["containers"][0]["env"]}
    # the same store and result key as the public router; never its admin token or webhook secrets
    assert env["KNFLOW_STORE_URL"] == main_env["KNFLOW_STORE_URL"]
    assert env["KNFLOW_RESULT_KEY"] == main_env["KNFLOW_RESULT_KEY"]
    assert not set(env) & {"KNFLOW_ADMIN_TOKEN", "KNFLOW_WEBHOOK_SECRET"}
    assert {k: v for k, v in env.items() if k != "KNFLOW_WEBHOOK_SECRET"} == {
        k: v for k, v in main_env.items() if k not in ("KNFLOW_ADMIN_TOKEN", "KNFLOW_WEBHOOK_SECRET")
    }
    assert pod["volumes"] == main_pod["volumes"]
    assert ingress["spec"]["template"]["metadata"] == main["spec"]["template"]["metadata"]  # scale, pipelines digest


def test_the_network_policy_denies_the_metadata_address_and_allows_the_rest():
    bundle = build(pipelines_of("hello.yaml"), REGISTRY)
    (policy,) = [m for m in bundle.manifests if m["kind"] == "NetworkPolicy"]
    assert schema_errors(policy) == []
    assert policy["metadata"]["namespace"] == "knflow" and policy["spec"]["podSelector"] == {}
    assert policy["spec"]["policyTypes"] == ["Egress"]
    blocks = [peer["ipBlock"] for rule in policy["spec"]["egress"] for peer in rule["to"] if "ipBlock" in peer]
    assert blocks == [
        {"cidr": "0.0.0.0/0", "except": ["169.254.169.254/32"]},
        {"cidr": "::/0", "except": ["fd00:ec2::254/128"]},
    ]
    # pods of the cluster stay reachable where a plugin does not match pod addresses with ipBlocks
    assert {"to": [{"namespaceSelector": {}}]} in policy["spec"]["egress"]
    # a profile can leave it out (pods that get cloud credentials from the metadata server)
    off = build(pipelines_of("hello.yaml"), REGISTRY, parse_profile({"network_policy": False}))
    assert not [m for m in off.manifests if m["kind"] == "NetworkPolicy"]


@pytest.mark.parametrize(
    "change, expected",
    [
        (lambda s: s.pop("podSelector"), "'podSelector' is a required property"),
        (lambda s: s["egress"][0]["to"][0]["ipBlock"].pop("cidr"), "'cidr' is a required property"),
        (lambda s: s["egress"][0]["to"][0].update(namespaceSelector={}), "should not be valid"),
        (lambda s: s.update(policyTypes=["Outbound"]), "'Outbound' is not one of"),
        (lambda s: s["egress"][0]["to"][0]["ipBlock"].update(cidr="169.254.169.254"), "does not match"),
    ],
)
def test_the_network_policy_shape_check_catches_mistakes(change, expected):
    from knative.profile import Profile

    policy = network.deny_metadata_policy(Profile())
    change(policy["spec"])
    assert any(expected in e for e in schema_errors(policy)), schema_errors(policy)


def test_router_secrets_come_from_the_knflow_router_secret_and_the_notes_say_how_to_make_it():
    bundle = build(pipelines_of("hello.yaml"), REGISTRY)
    router = next(m for m in bundle.manifests if m["kind"] == "Service" and m["metadata"]["name"] == "knflow-router")
    env = {e["name"]: e.get("valueFrom") for e in router["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["KNFLOW_ADMIN_TOKEN"] == {"secretKeyRef": {"name": "knflow-router", "key": "admin_token"}}
    # optional: without it the router replicas share a key kept in their store (router/result_keys.py)
    assert env["KNFLOW_RESULT_KEY"] == {
        "secretKeyRef": {"name": "knflow-router", "key": "result_key", "optional": True}
    }
    assert (
        "kubectl create secret generic knflow-router -n knflow "
        '--from-literal=admin_token="$(openssl rand -hex 32)" --from-literal=result_key="$(openssl rand -hex 32)"'
    ) in "\n".join(bundle.notes)
    # functions never see the router's secrets; its broker ingress sees only the result key
    for m in bundle.manifests:
        if m["kind"] == "Service" and m["metadata"]["name"] != "knflow-router":
            names = {e["name"] for e in m["spec"]["template"]["spec"]["containers"][0]["env"]}
            allowed = {"KNFLOW_RESULT_KEY"} if m["metadata"]["name"] == "knflow-router-events" else set()
            assert not names & {"KNFLOW_ADMIN_TOKEN", "KNFLOW_RESULT_KEY", "KNFLOW_WEBHOOK_SECRET"} - allowed


def test_the_profile_names_other_router_secrets():
    profile = parse_profile(
        {
            "router": {
                "admin_token_secret": {"name": "ops", "key": "tok"},
                "result_key_secret": {"name": "ops", "key": "k"},
            }
        }
    )
    bundle = build(pipelines_of("hello.yaml"), REGISTRY, profile)
    assert any(
        n.startswith("Secret 'ops' keys 'tok', 'k' are read by the router") and "kubectl get secret ops" not in n
        for n in bundle.notes
    )
    assert any("kubectl get secret ops -n knflow -o jsonpath='{.data.tok}'" in n for n in bundle.notes)


def test_the_image_runs_as_a_numeric_non_root_user():
    """runAsNonRoot holds only for an image whose USER the kubelet can check: a number, not 0."""
    from test_knative_manifests import ROOT

    users = [line.split()[1] for line in (ROOT / "Dockerfile").read_text().splitlines() if line.startswith("USER ")]
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0
