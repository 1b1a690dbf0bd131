"""Knative Serving's webhook rules for a `serving.knative.dev/v1 Service`: names, autoscaling annotations
(serving `pkg/apis/autoscaling/annotation_validation.go`, `metadata_validation.go`), revision timeouts and
concurrency (`v1/revision_validation.go`), feature-flagged pod fields (`fieldmask.go`), and the container
contract (`k8s_validation.go`: reserved env, ports and paths); and the names of every resource. Pure.
"""

from __future__ import annotations

import re
from typing import Any

from knative.durations import parse_go_duration_s
from functions import deployment
from knative.features import ADD_CAPABILITIES, FLAG_FIELDS, PVC_WRITE, VOLUME_FLAGS
from knative.rules import Cluster, rule, template_of
from knative.scaling import PREFIX

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
RESERVED_ENV = {"PORT", "K_SERVICE", "K_CONFIGURATION", "K_REVISION"}
RESERVED_PORTS = {8008, 8012, 8013, 8022, 9090, 9091}
RESERVED_PATHS = {"/", "/dev", "/dev/log", "/tmp", "/var", "/var/log"}
PORT_NAMES = {"http1", "h2c"}
WINDOW_MAX_S = 3600
KPA, HPA = "kpa.autoscaling.knative.dev", "hpa.autoscaling.knative.dev"


# ---- every resource ------------------------------------------------------------------------------


@rule("*")
def object_name(m: dict, c: Cluster) -> list[tuple[str, str]]:
    name = m.get("metadata", {}).get("name", "")
    pattern, what = (
        (DNS_1035, "a DNS-1035 label (a lowercase letter first)")
        if m.get("kind") == "Service" and "knative" in m.get("apiVersion", "")
        else (DNS_LABEL, "a DNS label")
    )
    if not isinstance(name, str) or not pattern.match(name) or len(name) > 63:
        return [
            ("metadata.name", f"name {name!r} must be {what}: lowercase letters, digits and '-', at most 63 characters")
        ]
    return []


# ---- Serving Service ------------------------------------------------------------------------------


@rule("Service")
def autoscaling_on_service_metadata(m: dict, c: Cluster) -> list[tuple[str, str]]:
    keys = [k for k in (m.get("metadata", {}).get("annotations") or {}) if k.startswith(PREFIX)]
    return [
        (
            f"metadata.annotations[{k}]",
            'autoscaling annotations must be put under "spec.template.metadata.annotations" to work',
        )
        for k in keys
    ]


def _ann(m: dict) -> dict[str, Any]:
    return template_of(m)[0].get("annotations") or {}


def _get(anns: dict, *names: str) -> tuple[str, Any] | None:
    for name in names:
        if PREFIX + name in anns:
            return PREFIX + name, anns[PREFIX + name]
    return None


def _path(key: str) -> str:
    return f"spec.template.metadata.annotations[{key}]"


@rule("Service")
def annotation_values_are_strings(m: dict, c: Cluster) -> list[tuple[str, str]]:
    meta = template_of(m)[0]
    return [
        (f"spec.template.metadata.{part}[{k}]", f"value {v!r} must be a string")
        for part in ("annotations", "labels")
        for k, v in (meta.get(part) or {}).items()
        if not isinstance(v, str)
    ]


@rule("Service")
def autoscaling_class_and_metric(m: dict, c: Cluster) -> list[tuple[str, str]]:
    anns, out = _ann(m), []
    cls = anns.get(PREFIX + "class", KPA)
    if isinstance(cls, str) and cls.endswith(".knative.dev") and cls not in (KPA, HPA):
        out.append((_path(PREFIX + "class"), f"class {cls!r} is not {KPA} or {HPA}"))
    metric = anns.get(PREFIX + "metric")
    if metric is not None and ((cls == KPA and metric not in ("concurrency", "rps")) or (cls == HPA and not metric)):
        out.append((_path(PREFIX + "metric"), f"metric {metric!r} is not valid for class {cls}"))
    algorithm = anns.get(PREFIX + "metric-aggregation-algorithm")
    if cls == KPA and algorithm and algorithm not in ("linear", "weighted-exponential", "weightedExponential"):
        out.append(
            (
                _path(PREFIX + "metric-aggregation-algorithm"),
                f"value {algorithm!r} is not linear or weighted-exponential",
            )
        )
    return out


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, str) and re.fullmatch(r"[+-]?[0-9]+", value) else None


@rule("Service")
def scale_bounds(m: dict, c: Cluster) -> list[tuple[str, str]]:
    anns, out, got = _ann(m), [], {}
    for name, aliases in (("min-scale", ("min-scale", "minScale")), ("max-scale", ("max-scale", "maxScale"))):
        found = _get(anns, *aliases)
        if found:
            n = _int(found[1])
            if n is None or not 0 <= n <= 2**31 - 1:
                out.append((_path(found[0]), f"{name} {found[1]!r} is not an integer >= 0"))
            else:
                got[name] = (found[0], n)
    low = got.get("min-scale", ("", 0))[1]
    key, high = got.get("max-scale", (PREFIX + "max-scale", 0))
    if high and high < low:
        out.append((_path(key), f"max-scale={high} is less than min-scale={low}"))
    if c.max_scale_limit and "max-scale" in got:
        if high == 0:
            out.append(
                (
                    _path(key),
                    f"max-scale=0 (unlimited) must be less than the cluster's max-scale-limit {c.max_scale_limit}",
                )
            )
        elif high > c.max_scale_limit:
            out.append((_path(key), f"max-scale={high} is above the cluster's max-scale-limit {c.max_scale_limit}"))
    found = _get(anns, "activation-scale", "min-activate-scale")
    if found:
        n = _int(found[1])
        if n is None or n < 2 or n < low or (high and n > high):
            out.append(
                (
                    _path(found[0]),
                    f"activation-scale {found[1]!r} must be an integer >= 2, >= min-scale and <= max-scale",
                )
            )
    found = _get(anns, "initial-scale", "initialScale")
    if found:
        n = _int(found[1])
        if n is None or n < 0:
            out.append((_path(found[0]), f"initial-scale {found[1]!r} is not an integer >= 0"))
        elif n == 0 and not c.allow_zero_initial_scale:
            out.append(
                (
                    _path(found[0]),
                    "initial-scale=0 is not allowed by the cluster "
                    '(config-autoscaler allow-zero-initial-scale: "false")',
                )
            )
    return out


def _float(value: Any) -> float | None:
    try:
        return float(value) if isinstance(value, str) else None
    except ValueError:
        return None


@rule("Service")
def autoscaling_numbers(m: dict, c: Cluster) -> list[tuple[str, str]]:
    anns, out = _ann(m), []
    checks = (
        (("target",), lambda v: v >= 0.01, "a number >= 0.01"),
        (
            ("target-utilization-percentage", "targetUtilizationPercentage"),
            lambda v: 1 <= v <= 100,
            "a number from 1 to 100",
        ),
        (("panic-window-percentage", "panicWindowPercentage"), lambda v: 1 <= v <= 100, "a number from 1 to 100"),
        (
            ("panic-threshold-percentage", "panicThresholdPercentage"),
            lambda v: 110 <= v <= 1000,
            "a number from 110 to 1000",
        ),
        (("target-burst-capacity", "targetBurstCapacity"), lambda v: v >= 0 or v == -1, "a number >= 0, or -1"),
    )
    for names, ok, expected in checks:
        found = _get(anns, *names)
        if found:
            v = _float(found[1])
            if v is None or not ok(v):
                out.append((_path(found[0]), f"{names[0]} {found[1]!r} must be {expected}"))
    return out


@rule("Service")
def autoscaling_durations(m: dict, c: Cluster) -> list[tuple[str, str]]:
    anns, out = _ann(m), []
    checks = (
        (("scale-down-delay", "scaleDownDelay"), 0, True),
        (("scale-to-zero-pod-retention-period", "scaleToZeroPodRetentionPeriod"), 0, False),
        (("window",), 6, True),
    )
    for names, low_s, whole in checks:
        found = _get(anns, *names)
        if not found:
            continue
        try:
            d = parse_go_duration_s(found[1])
        except ValueError as exc:
            out.append((_path(found[0]), str(exc)))
            continue
        if not low_s <= d <= WINDOW_MAX_S:
            out.append((_path(found[0]), f"{names[0]} {found[1]!r} must be from {low_s}s to 1h"))
        elif whole and d != d.to_integral_value():
            out.append((_path(found[0]), f"{names[0]} {found[1]!r} must be given with at most second precision"))
    return out


@rule("Service")
def progress_deadline(m: dict, c: Cluster) -> list[tuple[str, str]]:
    key = "serving.knative.dev/progress-deadline"
    value = _ann(m).get(key)
    if value is None:
        return []
    try:
        d = parse_go_duration_s(value)
    except ValueError as exc:
        return [(_path(key), str(exc))]
    if d <= 0 or d != d.to_integral_value():
        return [(_path(key), f"progress-deadline {value!r} must be a positive duration in whole seconds")]
    return []


@rule("Service")
def revision_timeouts(m: dict, c: Cluster) -> list[tuple[str, str]]:
    spec, out = template_of(m)[1], []
    for fld in ("timeoutSeconds", "responseStartTimeoutSeconds", "idleTimeoutSeconds"):
        v = spec.get(fld)
        if v is not None and (not isinstance(v, int) or not 0 <= v <= c.max_revision_timeout_s):
            out.append(
                (
                    f"spec.template.spec.{fld}",
                    f"{fld} {v!r} must be from 0 to max-revision-timeout-seconds ({c.max_revision_timeout_s})",
                )
            )
    start, total = spec.get("responseStartTimeoutSeconds"), spec.get("timeoutSeconds")
    if isinstance(start, int) and isinstance(total, int) and total and start > total:
        out.append(
            (
                "spec.template.spec.responseStartTimeoutSeconds",
                f"responseStartTimeoutSeconds {start} must not exceed timeoutSeconds {total}",
            )
        )
    return out


@rule("Service")
def container_concurrency(m: dict, c: Cluster) -> list[tuple[str, str]]:
    v = template_of(m)[1].get("containerConcurrency")
    if v is not None and (not isinstance(v, int) or not 0 <= v <= c.container_concurrency_max):
        return [
            (
                "spec.template.spec.containerConcurrency",
                f"containerConcurrency {v!r} must be from 0 to "
                f"container-concurrency-max-limit ({c.container_concurrency_max})",
            )
        ]
    return []


@rule("Service", warning=True)
def feature_flags(m: dict, c: Cluster) -> list[tuple[str, str]]:
    spec = template_of(m)[1]
    return [
        (
            f"spec.template.spec.{fld}",
            f"{fld} needs the Serving feature flag {flag} (config-features in knative-serving)",
        )
        for fld, flag in FLAG_FIELDS.items()
        if spec.get(fld) and flag not in c.features
    ]


@rule("Service")
def volume_types(m: dict, c: Cluster) -> list[tuple[str, str]]:
    """Serving's VolumeSourceMask: secret, configMap and projected always; a few more behind flags."""
    out = []
    for i, vol in enumerate(template_of(m)[1].get("volumes") or []):
        for source in (k for k in vol if k != "name"):
            if source not in VOLUME_FLAGS:
                allowed = ", ".join(VOLUME_FLAGS)
                out.append(
                    (f"spec.template.spec.volumes[{i}].{source}", f"Knative allows no {source} volume ({allowed})")
                )
    return out


@rule("Service", warning=True)
def volume_flags(m: dict, c: Cluster) -> list[tuple[str, str]]:
    out = []
    for i, vol in enumerate(template_of(m)[1].get("volumes") or []):
        for source in (k for k in vol if k != "name"):
            flag = VOLUME_FLAGS.get(source)
            if flag and not c.has(flag):
                out.append(
                    (
                        f"spec.template.spec.volumes[{i}].{source}",
                        f"a {source} volume needs the Serving feature flag {flag} (config-features in knative-serving)",
                    )
                )
    return out


@rule("Service")
def volumes_and_mounts(m: dict, c: Cluster) -> list[tuple[str, str]]:
    """Serving's validateVolume / validateVolumeMounts (k8s_validation.go): one source per volume, unique
    DNS-label names, every volume mounted and every mount a volume's, absolute and unique mount paths,
    read-only mounts but for emptyDir and PVC, an emptyDir's medium and sizeLimit."""
    spec, out = template_of(m)[1], []
    volumes: dict[str, dict] = {}
    for i, vol in enumerate(spec.get("volumes") or []):
        out += _volume_problems(f"spec.template.spec.volumes[{i}]", vol, volumes)
        volumes[str(vol.get("name"))] = vol
    mounted: set[str] = set()
    for ci, ctr in enumerate(spec.get("containers") or []):
        seen: set[str] = set()
        for i, vm in enumerate(ctr.get("volumeMounts") or []):
            mounted.add(vm.get("name", ""))
            out += _mount_problems(f"spec.template.spec.containers[{ci}].volumeMounts[{i}]", vm, volumes, seen)
    out += [("spec.template.spec.volumes", f"volume with name {n!r} not mounted") for n in volumes if n not in mounted]
    return out


def _volume_problems(at: str, vol: dict, before: dict[str, dict]) -> list[tuple[str, str]]:
    out, name = [], vol.get("name")
    sources = [k for k in vol if k != "name"]
    if len(sources) != 1:
        out.append((at, f"volume {name!r} must have exactly one source, got {sources or 'none'}"))
    if not isinstance(name, str) or not DNS_LABEL.match(name) or len(name) > 63:
        out.append((f"{at}.name", f"volume name {name!r} must be a DNS label"))
    elif name in before:
        out.append((f"{at}.name", f"volume name {name!r} is used twice"))
    ed = vol.get("emptyDir")
    if isinstance(ed, dict):
        if ed.get("medium") not in (None, "", "Memory"):
            out.append((f"{at}.emptyDir.medium", f"medium {ed['medium']!r} must be Memory or empty"))
        if ed.get("sizeLimit") is not None:
            try:
                if deployment.quantity(ed["sizeLimit"]) <= 0:
                    out.append((f"{at}.emptyDir.sizeLimit", "sizeLimit must be greater than zero"))
            except ValueError as exc:
                out.append((f"{at}.emptyDir.sizeLimit", str(exc)))
    return out


def _mount_problems(at: str, vm: dict, volumes: dict[str, dict], seen: set[str]) -> list[tuple[str, str]]:
    vol, path = volumes.get(vm.get("name", "")), str(vm.get("mountPath", ""))
    if vol is None:
        return [(f"{at}.name", f"volumeMount {vm.get('name')!r} has no matching volume")]
    out = []
    if not path.startswith("/"):
        out.append((f"{at}.mountPath", f"mountPath {path!r} must be an absolute path"))
    clean = path.rstrip("/") or "/"
    if clean in seen:
        out.append((f"{at}.mountPath", f"mountPath {path!r} must be unique"))
    seen.add(clean)
    writable = "emptyDir" in vol or "persistentVolumeClaim" in vol
    if not vm.get("readOnly") and (not writable or (vol.get("persistentVolumeClaim") or {}).get("readOnly")):
        out.append((f"{at}.readOnly", "volume mount should be readOnly for this type of volume"))
    return out


@rule("Service", warning=True)
def pvc_write(m: dict, c: Cluster) -> list[tuple[str, str]]:
    spec = template_of(m)[1]
    claims = {v.get("name") for v in spec.get("volumes") or [] if "persistentVolumeClaim" in v}
    if c.has(PVC_WRITE):
        return []
    return [
        (
            f"spec.template.spec.containers[{ci}].volumeMounts[{i}]",
            f"persistentVolumeClaim {vm['name']!r} mounted read-write needs the Serving feature flag {PVC_WRITE}",
        )
        for ci, ctr in enumerate(spec.get("containers") or [])
        for i, vm in enumerate(ctr.get("volumeMounts") or [])
        if vm.get("name") in claims and not vm.get("readOnly")
    ]


@rule("Service")
def scheduling_fields(m: dict, c: Cluster) -> list[tuple[str, str]]:
    """What the API server checks in nodeSelector (label keys and values) and tolerations (operator,
    effect, value with Exists, tolerationSeconds with NoExecute), and serviceAccountName's form."""
    spec, out = template_of(m)[1], []
    selector = spec.get("nodeSelector") or {}
    out += [
        (f"spec.template.spec.nodeSelector[{key}]", msg)
        for key, msg in deployment.parse({"node_selector": selector})[1]
    ]
    problems: deployment.Problems = []
    deployment.tolerations(spec.get("tolerations") or [], "spec.template.spec.tolerations", problems)
    out += problems
    account = spec.get("serviceAccountName")
    if account is not None and (not isinstance(account, str) or not deployment.DNS_SUBDOMAIN.match(account)):
        out.append(("spec.template.spec.serviceAccountName", f"serviceAccountName {account!r} must be a DNS-1123 name"))
    return out


@rule("Service")
def container_security(m: dict, c: Cluster) -> list[tuple[str, str]]:
    """A container's securityContext as Serving's SecurityContextMask takes it: no privileged mode, no
    SELinux options or procMount (capabilities.add beyond NET_BIND_SERVICE: `add_capabilities`)."""
    out = []
    for i, ctr in enumerate(template_of(m)[1].get("containers") or []):
        sc, at = ctr.get("securityContext") or {}, f"spec.template.spec.containers[{i}].securityContext"
        if sc.get("privileged"):
            out.append((f"{at}.privileged", "privileged can only be set to false"))
        out += [(f"{at}.{k}", f"Knative does not allow {k}") for k in ("seLinuxOptions", "procMount") if k in sc]
    return out


@rule("Service", warning=True)
def add_capabilities(m: dict, c: Cluster) -> list[tuple[str, str]]:
    out = []
    for i, ctr in enumerate(template_of(m)[1].get("containers") or []):
        caps = (ctr.get("securityContext") or {}).get("capabilities") or {}
        added = [x for x in caps.get("add") or [] if x != "NET_BIND_SERVICE"]
        if added and not c.has(ADD_CAPABILITIES):
            out.append(
                (
                    f"spec.template.spec.containers[{i}].securityContext.capabilities.add",
                    f"adding {', '.join(added)} needs the Serving feature flag {ADD_CAPABILITIES}",
                )
            )
    return out


@rule("Service")
def containers(m: dict, c: Cluster) -> list[tuple[str, str]]:
    out = []
    listed = template_of(m)[1].get("containers") or []
    if not listed:
        out.append(("spec.template.spec.containers", "a Service needs one container"))
    serving = [i for i, ctr in enumerate(listed) if ctr.get("ports")]
    if len(listed) > 1 and len(serving) != 1:
        out.append(("spec.template.spec.containers", "with several containers exactly one must give a port"))
    for i, ctr in enumerate(listed):
        out += _container_problems(f"spec.template.spec.containers[{i}]", ctr)
    return out


def _container_problems(at: str, ctr: dict) -> list[tuple[str, str]]:
    out = []
    if ctr.get("name") == "queue-proxy":
        out.append((f"{at}.name", "the name queue-proxy is reserved for Knative's sidecar"))
    ports = ctr.get("ports") or []
    if len(ports) > 1:
        out.append((f"{at}.ports", "a container may give at most one port"))
    for p in ports:
        if p.get("containerPort") in RESERVED_PORTS:
            out.append(
                (
                    f"{at}.ports",
                    f"containerPort {p['containerPort']} is reserved by Knative "
                    f"({', '.join(map(str, sorted(RESERVED_PORTS)))})",
                )
            )
        if p.get("name") and p["name"] not in PORT_NAMES:
            out.append((f"{at}.ports", f"port name {p['name']!r} must be http1 or h2c"))
    for e in ctr.get("env") or []:
        if e.get("name") in RESERVED_ENV:
            out.append((f"{at}.env", f"{e['name']} is set by Knative and must not be given"))
    for v in ctr.get("volumeMounts") or []:
        if v.get("mountPath", "").rstrip("/") in RESERVED_PATHS or v.get("mountPath") == "/":
            out.append((f"{at}.volumeMounts", f"mountPath {v['mountPath']!r} is reserved"))
    probe = (ctr.get("readinessProbe") or {}).get("httpGet") or {}
    port = ports[0].get("containerPort") if ports else None
    if probe.get("port") not in (None, port):
        out.append(
            (
                f"{at}.readinessProbe.httpGet.port",
                f"probe port {probe['port']!r} must be the container's port {port!r} or left out",
            )
        )
    return out
