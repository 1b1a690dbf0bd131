"""Serving feature flags: which ones the generated Services need, the note that says so, and an optional
`config-features` patch that enables them. Every flag of FLAG_FIELDS is off in a fresh Knative install, and
Knative warns that none can safely be disabled once enabled, so knflow never turns one on unasked. Pure.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from knative import naming
from knative.profile import Profile

SERVING_NS = "knative-serving"
# spec.template.spec field -> the config-features flag that lets the Serving webhook accept it
FLAG_FIELDS = {
    "nodeSelector": "kubernetes.podspec-nodeselector",
    "tolerations": "kubernetes.podspec-tolerations",
    "affinity": "kubernetes.podspec-affinity",
    "runtimeClassName": "kubernetes.podspec-runtimeclassname",
    "priorityClassName": "kubernetes.podspec-priorityclassname",
    "schedulerName": "kubernetes.podspec-schedulername",
    "topologySpreadConstraints": "kubernetes.podspec-topologyspreadconstraints",
    "initContainers": "kubernetes.podspec-init-containers",
    "securityContext": "kubernetes.podspec-securitycontext",  # the pod's; a container's needs no flag
    "hostNetwork": "kubernetes.podspec-hostnetwork",
    "hostPID": "kubernetes.podspec-hostpid",
    "hostIPC": "kubernetes.podspec-hostipc",
    "hostAliases": "kubernetes.podspec-hostaliases",
    "shareProcessNamespace": "kubernetes.podspec-shareprocessnamespace",
    "dnsPolicy": "kubernetes.podspec-dnspolicy",
    "dnsConfig": "kubernetes.podspec-dnsconfig",
}
# volume source -> the flag that allows it (None: always allowed); a type not listed is never allowed
VOLUME_FLAGS: dict[str, str | None] = {
    "secret": None,
    "configMap": None,
    "projected": None,
    "emptyDir": "kubernetes.podspec-volumes-emptydir",
    "persistentVolumeClaim": "kubernetes.podspec-persistent-volume-claim",
    "hostPath": "kubernetes.podspec-volumes-hostpath",
    "csi": "kubernetes.podspec-volumes-csi",
    "ephemeral": "kubernetes.podspec-volumes-ephemeral",
    "image": "kubernetes.podspec-volumes-image",
}
PVC_WRITE = "kubernetes.podspec-persistent-volume-write"  # a PVC mounted without readOnly
ADD_CAPABILITIES = "kubernetes.containerspec-addcapabilities"  # capabilities.add beyond NET_BIND_SERVICE
# flags a fresh install has on (serving config-features' defaults)
ON_BY_DEFAULT = frozenset({"kubernetes.podspec-volumes-emptydir", "multi-container"})


def flags_needed(manifests: Iterable[dict[str, Any]]) -> dict[str, list[str]]:
    """flag -> names of the Services that need it, in a stable order."""
    out: dict[str, list[str]] = {}
    for m in manifests:
        if m.get("kind") != "Service" or not m.get("apiVersion", "").startswith("serving.knative.dev/"):
            continue
        pod = m.get("spec", {}).get("template", {}).get("spec", {})
        flags = [flag for fld, flag in FLAG_FIELDS.items() if pod.get(fld)]
        flags += volume_flags(pod)
        for flag in dict.fromkeys(flags):
            out.setdefault(flag, []).append(m["metadata"]["name"])
    return dict(sorted(out.items()))


def volume_flags(pod: dict[str, Any]) -> list[str]:
    """The flags a pod's volumes need: their types', and PVC write for a claim mounted read-write."""
    out = [flag for vol in pod.get("volumes") or [] for src in vol if (flag := VOLUME_FLAGS.get(src))]
    claims = {v["name"] for v in pod.get("volumes") or [] if "persistentVolumeClaim" in v}
    for ctr in pod.get("containers") or []:
        if any(vm.get("name") in claims and not vm.get("readOnly") for vm in ctr.get("volumeMounts") or []):
            out.append(PVC_WRITE)
    return out


def enabled_flags(profile: Profile) -> set[str]:
    """The flags on in the profile's cluster: Serving's defaults, with the profile's own settings over them."""
    states = {flag: "enabled" for flag in ON_BY_DEFAULT} | dict(profile.serving.features)
    return {flag for flag, state in states.items() if state in ("enabled", "allowed")}


def features_patch(flags: Iterable[str], profile: Profile) -> dict[str, Any]:
    """`config-features` with just these flags enabled; applied (client- or server-side) it leaves the
    ConfigMap's other keys as they are."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": naming.metadata("config-features", SERVING_NS, profile, "serving-config"),
        "data": {flag: "enabled" for flag in sorted(flags)},
    }


def feature_notes(needed: dict[str, list[str]], profile: Profile, patched: bool) -> list[str]:
    missing = {f: s for f, s in needed.items() if f not in enabled_flags(profile)}
    if not missing:
        return []
    lines = [f"    {flag}  (for {', '.join(services)})" for flag, services in missing.items()]
    if patched:
        head = (
            "Function Services need these Knative Serving feature flags; "
            "the output enables them with a config-features patch (knative-serving):"
        )
        tail = "Knative warns that these flags cannot safely be disabled once enabled."
    else:
        head = (
            "Function Services need these Knative Serving feature flags, off in a fresh install; "
            "the Serving webhook rejects the Services until they are enabled:"
        )
        flags = ",".join(f'"{f}":"enabled"' for f in missing)
        tail = (
            f"Enable them with: kubectl patch configmap config-features -n {SERVING_NS} "
            f"--type merge -p '{{\"data\":{{{flags}}}}}'\n"
            "  or rerun with --features-patch to add the patch to the output; "
            "then declare them in the profile (serving.features)."
        )
    return [head + "\n" + "\n".join(lines) + "\n  " + tail]
