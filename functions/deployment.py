"""Per-function deployment settings: the image, environment, volumes, placement and pod metadata of one
function's Knative Service, given in `@function(...)` and overridden by a node's `deploy:` in YAML. Both take
the same keys and are checked here the way the API server checks them (DNS names, absolute mount paths,
resource quantities, toleration operators and effects); the rules Knative's webhook adds for volumes are in
knative/serving_rules.py. Pure.

    image: ghcr.io/acme/whisper:1               # the function's own image (built FROM the project image)
    env: {HF_HOME: /models/hf, HF_TOKEN: {secret: hf, key: token, optional: true}}
    volumes:
      - {name: models, claim: models-l4, mount: /models}               # a PersistentVolumeClaim
      - {name: scratch, empty_dir: {size_limit: 10Gi}, mount: /scratch}
      - {name: prompts, config_map: media-prompts, mount: /etc/prompts} # config_map and secret: read-only
    node_selector: {topology.kubernetes.io/zone: eu-west-1a}
    tolerations: [{key: dedicated, operator: Equal, value: media, effect: NoSchedule}]
    service_account: media
    annotations: {team.acme.dev/owner: media}
    labels: {team: media}
    gpu: {count: 1, pool: a100-80gb}            # or a count; a pool of the profile's gpu_pools
    gpu_memory: 30Gi                            # or: the smallest pool whose GPUs have this much memory
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

KEYS = (
    "image",
    "env",
    "volumes",
    "node_selector",
    "tolerations",
    "service_account",
    "annotations",
    "labels",
    "gpu",
    "gpu_memory",
)
VOLUME_KINDS = ("claim", "empty_dir", "config_map", "secret")
VOLUME_KEYS = {"name", "mount", "read_only", "sub_path", *VOLUME_KINDS}
TOLERATION_KEYS = {"key", "operator", "value", "effect", "tolerationSeconds"}
OPERATORS = ("Exists", "Equal")
EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
LABEL_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
SECRET_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
IMAGE = re.compile(
    rf"^(?:[a-zA-Z0-9.-]+(?::[0-9]+)?/)?{_COMPONENT}(?:/{_COMPONENT})*(?::[\w][\w.-]{{0,127}})?(?:@sha256:[a-f0-9]{{64}})?$"
)
QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E)?$")
_FACTORS: dict[str | None, Decimal | int] = {
    None: 1,
    "m": Decimal("0.001"),
    **{s: 1000**i for i, s in enumerate("kMGTPE", 1)},
    **{s: 1024**i for i, s in enumerate(("Ki", "Mi", "Gi", "Ti", "Pi", "Ei"), 1)},
}
# set by knflow or Knative in every function pod
RESERVED_ENV = {"PORT", "HOME", "TMPDIR"}
RESERVED_ENV_PREFIXES = ("KNFLOW_", "K_")
# label and annotation prefixes knflow or Knative own; autoscaling annotations come from `scaling:`
RESERVED_PREFIXES = {
    "knflow.dev/": "knflow sets these",
    "serving.knative.dev/": "Knative Serving sets these",
    "autoscaling.knative.dev/": "give autoscaling in the node's scaling: or the function's min_scale/max_scale",
    "networking.knative.dev/": "knflow keeps functions cluster-local",
    "app.kubernetes.io/": "knflow sets these",
}


def quantity(text: str) -> Decimal:
    """A Kubernetes resource quantity ('24Gi', '500m', '1.5G') as a number (bytes, cores). ValueError if not one."""
    m = QUANTITY.match(str(text))
    if not m:
        raise ValueError(f"{text!r} is not a Kubernetes quantity such as '24Gi' or '512Mi'")
    return Decimal(m.group(1)) * _FACTORS[m.group(2)]


@dataclass(frozen=True)
class SecretEnv:
    """An environment variable from a key of a Kubernetes Secret (the value never enters a manifest)."""

    secret: str
    key: str
    optional: bool = False


@dataclass(frozen=True)
class Volume:
    name: str
    mount: str
    kind: str  # one of VOLUME_KINDS
    source: str = ""  # the claim, ConfigMap or Secret it mounts
    size_limit: str | None = None  # empty_dir
    medium: str | None = None  # empty_dir: "Memory" for tmpfs
    read_only: bool = False
    sub_path: str | None = None

    def volume(self) -> dict[str, Any]:
        """The pod's `volumes[]` entry."""
        if self.kind == "claim":
            src: dict[str, Any] = {"persistentVolumeClaim": {"claimName": self.source}}
            if self.read_only:
                src["persistentVolumeClaim"]["readOnly"] = True
        elif self.kind == "empty_dir":
            ed: dict[str, Any] = {}
            if self.medium:
                ed["medium"] = self.medium
            if self.size_limit:
                ed["sizeLimit"] = self.size_limit
            src = {"emptyDir": ed}
        elif self.kind == "config_map":
            src = {"configMap": {"name": self.source}}
        else:
            src = {"secret": {"secretName": self.source}}
        return {"name": self.name, **src}

    def volume_mount(self) -> dict[str, Any]:
        """The container's `volumeMounts[]` entry."""
        out: dict[str, Any] = {"name": self.name, "mountPath": self.mount}
        if self.read_only:
            out["readOnly"] = True
        if self.sub_path:
            out["subPath"] = self.sub_path
        return out


@dataclass(frozen=True)
class Deployment:
    """Every field None (or empty) when not given: a node's settings go over its function's with `over`."""

    image: str | None = None
    env: Mapping[str, str | SecretEnv] = field(default_factory=dict)
    volumes: tuple[Volume, ...] = ()
    node_selector: Mapping[str, str] = field(default_factory=dict)
    tolerations: tuple[Mapping[str, Any], ...] | None = None
    service_account: str | None = None
    annotations: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    gpu_count: int | None = None  # a node's deploy.gpu; a function's count is its `gpu` trait
    gpu_pool: str | None = None
    gpu_memory: str | None = None

    def over(self, base: Deployment) -> Deployment:
        """These settings over `base`'s: maps merge key by key, volumes by name, the rest replace."""
        volumes = {v.name: v for v in base.volumes} | {v.name: v for v in self.volumes}
        return Deployment(
            image=self.image or base.image,
            env={**base.env, **self.env},
            volumes=tuple(volumes.values()),
            node_selector={**base.node_selector, **self.node_selector},
            tolerations=self.tolerations if self.tolerations is not None else base.tolerations,
            service_account=self.service_account or base.service_account,
            annotations={**base.annotations, **self.annotations},
            labels={**base.labels, **self.labels},
            gpu_count=self.gpu_count if self.gpu_count is not None else base.gpu_count,
            gpu_pool=self.gpu_pool or base.gpu_pool,
            gpu_memory=self.gpu_memory or base.gpu_memory,
        )

    def with_pool(self, pool: str | None) -> Deployment:
        return replace(self, gpu_pool=pool)

    def to_dict(self) -> dict[str, Any]:
        """The YAML form (what `parse` reads back)."""
        out: dict[str, Any] = {}
        if self.image:
            out["image"] = self.image
        if self.env:
            out["env"] = {
                k: {"secret": v.secret, "key": v.key, **({"optional": True} if v.optional else {})}
                if isinstance(v, SecretEnv)
                else v
                for k, v in self.env.items()
            }
        if self.volumes:
            out["volumes"] = [_volume_dict(v) for v in self.volumes]
        for name in ("node_selector", "annotations", "labels"):
            if getattr(self, name):
                out[name] = dict(getattr(self, name))
        if self.tolerations is not None:
            out["tolerations"] = [dict(t) for t in self.tolerations]
        if self.service_account:
            out["service_account"] = self.service_account
        if self.gpu_count is not None or self.gpu_pool:
            gpu: dict[str, Any] = {}
            if self.gpu_count is not None:
                gpu["count"] = self.gpu_count
            if self.gpu_pool:
                gpu["pool"] = self.gpu_pool
            out["gpu"] = gpu
        if self.gpu_memory:
            out["gpu_memory"] = self.gpu_memory
        return out

    def __bool__(self) -> bool:
        return bool(self.to_dict())


def _volume_dict(v: Volume) -> dict[str, Any]:
    out: dict[str, Any] = {"name": v.name}
    if v.kind == "empty_dir":
        ed = {k: val for k, val in (("size_limit", v.size_limit), ("medium", v.medium)) if val}
        out["empty_dir"] = ed
    else:
        out[v.kind] = v.source
    out["mount"] = v.mount
    if v.read_only:
        out["read_only"] = True
    if v.sub_path:
        out["sub_path"] = v.sub_path
    return out


Problems = list[tuple[str, str]]  # (field, message): field is a dotted path under the settings


def parse(raw: Any, *, allow_gpu_count: bool = True) -> tuple[Deployment, Problems]:
    """Settings from their YAML (or keyword) form, and every problem found."""
    if raw is None:
        return Deployment(), []
    if not isinstance(raw, Mapping):
        return Deployment(), [("", f"must be a mapping of {', '.join(KEYS)}, got {type(raw).__name__}")]
    problems: Problems = [
        (str(key), f"'{key}' is not a deployment setting; expected one of {', '.join(KEYS)}")
        for key in raw
        if key not in KEYS
    ]
    out: dict[str, Any] = {
        "env": _env(raw.get("env"), problems),
        "volumes": _volumes(raw.get("volumes"), problems),
        "node_selector": _labels(raw.get("node_selector"), "node_selector", problems, reserved=False),
        "labels": _labels(raw.get("labels"), "labels", problems, reserved=True),
        "annotations": _annotations(raw.get("annotations"), problems),
    }
    image = raw.get("image")
    if image is not None:
        if not isinstance(image, str) or not IMAGE.match(image) or len(image) > 255:
            problems.append(("image", f"image {image!r} is not an image reference such as 'ghcr.io/acme/whisper:1'"))
        else:
            out["image"] = image
    if "tolerations" in raw:
        out["tolerations"] = tolerations(raw.get("tolerations"), "tolerations", problems)
    sa = raw.get("service_account")
    if sa is not None:
        if not isinstance(sa, str) or not DNS_SUBDOMAIN.match(sa) or len(sa) > 253:
            problems.append(("service_account", f"service_account {sa!r} must be a DNS-1123 name such as 'media'"))
        else:
            out["service_account"] = sa
    out |= _gpu(raw.get("gpu"), raw.get("gpu_memory"), allow_gpu_count, problems)
    return Deployment(**out), problems


def _gpu(gpu: Any, memory: Any, allow_count: bool, problems: Problems) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if gpu is not None:
        count, pool = gpu, None
        if isinstance(gpu, Mapping):
            extra = [k for k in gpu if k not in ("count", "pool")]
            if extra:
                problems.append(("gpu", f"gpu takes count and pool, not {', '.join(map(str, extra))}"))
            count, pool = gpu.get("count", 1), gpu.get("pool")
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            problems.append(("gpu.count", f"gpu count must be an integer >= 0, got {count!r}"))
        elif allow_count:
            out["gpu_count"] = count
        if pool is not None:
            if not isinstance(pool, str) or not DNS_LABEL.match(pool):
                problems.append(("gpu.pool", f"gpu pool {pool!r} must name a pool of the profile's gpu_pools"))
            else:
                out["gpu_pool"] = pool
    if memory is not None:
        try:
            if quantity(memory) <= 0:
                raise ValueError(f"{memory!r} must be more than 0")
            out["gpu_memory"] = str(memory)
        except ValueError as exc:
            problems.append(("gpu_memory", f"gpu_memory: {exc}"))
    return out


def _env(raw: Any, problems: Problems) -> dict[str, str | SecretEnv]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        problems.append(("env", f"env must be a mapping of NAME: value, got {type(raw).__name__}"))
        return {}
    out: dict[str, str | SecretEnv] = {}
    for name, value in raw.items():
        at = f"env.{name}"
        if not isinstance(name, str) or not ENV_NAME.match(name):
            problems.append((at, f"env name {name!r} must be letters, digits, '_', '-' and '.', not a digit first"))
            continue
        if name in RESERVED_ENV or name.startswith(RESERVED_ENV_PREFIXES):
            problems.append((at, f"env {name} is set by knflow or Knative in every function pod; choose another name"))
            continue
        if isinstance(value, Mapping):
            secret, key = value.get("secret"), value.get("key")
            extra = [k for k in value if k not in ("secret", "key", "optional")]
            if extra or not isinstance(secret, str) or not isinstance(key, str):
                problems.append((at, f"env {name} must be a string or {{secret: NAME, key: KEY, optional: false}}"))
            elif not DNS_SUBDOMAIN.match(secret) or len(secret) > 253:
                problems.append((f"{at}.secret", f"Secret name {secret!r} must be a DNS-1123 name"))
            elif not SECRET_KEY.match(key):
                problems.append((f"{at}.key", f"Secret key {key!r} must be letters, digits, '-', '_' and '.'"))
            else:
                out[name] = SecretEnv(secret, key, bool(value.get("optional", False)))
        elif isinstance(value, bool) or not isinstance(value, (str, int, float)):
            problems.append(
                (at, f"env {name} must be a string (quote it in YAML) or a Secret reference, got {value!r}")
            )
        else:
            out[name] = str(value)
    return out


def _volumes(raw: Any, problems: Problems) -> tuple[Volume, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        problems.append(("volumes", f"volumes must be a list, got {type(raw).__name__}"))
        return ()
    out: list[Volume] = []
    for i, v in enumerate(raw):
        vol = _volume(v, f"volumes[{i}]", out, problems)
        if vol is not None:
            out.append(vol)
    return tuple(out)


def _volume(v: Any, at: str, before: list[Volume], problems: Problems) -> Volume | None:
    if not isinstance(v, Mapping):
        problems.append((at, f"a volume must be a mapping with name, mount and one of {', '.join(VOLUME_KINDS)}"))
        return None
    bad = len(problems)
    problems += [
        (f"{at}.{key}", f"'{key}' is not a volume key; expected {', '.join(sorted(VOLUME_KEYS))}")
        for key in v
        if key not in VOLUME_KEYS
    ]
    name, mount = v.get("name"), v.get("mount")
    if not isinstance(name, str) or not DNS_LABEL.match(name) or len(name) > 63:
        problems.append((f"{at}.name", f"volume name {name!r} must be a DNS-1123 label such as 'models'"))
    elif any(b.name == name for b in before):
        problems.append((f"{at}.name", f"volume name '{name}' is used twice"))
    if not isinstance(mount, str) or not mount.startswith("/"):
        problems.append((f"{at}.mount", f"volume '{name}': mount {mount!r} must be an absolute path such as /models"))
    elif ".." in mount.split("/"):
        problems.append((f"{at}.mount", f"volume '{name}': mount {mount!r} must not contain '..'"))
    elif any(b.mount.rstrip("/") == mount.rstrip("/") for b in before):
        problems.append((f"{at}.mount", f"volume '{name}': mount {mount!r} is used by another volume"))
    kinds = [k for k in VOLUME_KINDS if k in v]
    if len(kinds) != 1:
        problems.append((at, f"volume '{name}' needs exactly one of {', '.join(VOLUME_KINDS)}, got {kinds or 'none'}"))
        return None
    fields = _volume_source(kinds[0], v.get(kinds[0]), f"{at}.{kinds[0]}", name, problems)
    read_only = v.get("read_only")
    if read_only is not None and not isinstance(read_only, bool):
        problems.append((f"{at}.read_only", f"read_only must be true or false, got {read_only!r}"))
    if kinds[0] in ("config_map", "secret"):
        if read_only is False:
            problems.append((f"{at}.read_only", f"volume '{name}': Knative mounts a {kinds[0]} read-only only"))
        read_only = True
    sub_path = v.get("sub_path")
    if sub_path is not None and (
        not isinstance(sub_path, str) or sub_path.startswith("/") or ".." in sub_path.split("/")
    ):
        problems.append((f"{at}.sub_path", f"sub_path {sub_path!r} must be a relative path without '..'"))
    if len(problems) > bad or not isinstance(name, str) or not isinstance(mount, str):
        return None
    return Volume(name, mount, kinds[0], read_only=bool(read_only), sub_path=sub_path, **fields)


def _volume_source(kind: str, src: Any, at: str, name: Any, problems: Problems) -> dict[str, Any]:
    if kind != "empty_dir":
        if not isinstance(src, str) or not DNS_SUBDOMAIN.match(src) or len(src) > 253:
            what = {"claim": "PersistentVolumeClaim", "config_map": "ConfigMap", "secret": "Secret"}[kind]
            problems.append((at, f"volume '{name}': {what} name {src!r} must be a DNS-1123 name"))
        return {"source": src}
    ed = src or {}
    if not isinstance(ed, Mapping) or any(k not in ("size_limit", "medium") for k in ed):
        problems.append((at, "empty_dir takes {size_limit: 10Gi, medium: Memory}"))
        return {}
    if ed.get("medium") not in (None, "", "Memory"):
        problems.append((f"{at}.medium", f"medium {ed['medium']!r} must be Memory or left out"))
    size = ed.get("size_limit")
    if size is not None:
        try:
            if quantity(size) <= 0:
                raise ValueError(f"{size!r}: sizeLimit must be greater than zero")
        except ValueError as exc:
            problems.append((f"{at}.size_limit", f"volume '{name}': size_limit {exc}"))
    return {"size_limit": None if size is None else str(size), "medium": ed.get("medium") or None}


def _qualified_key(key: Any) -> str | None:
    """Why `key` is not a Kubernetes qualified name (`prefix/name`), or None."""
    if not isinstance(key, str):
        return "must be a string"
    prefix, _, name = key.rpartition("/")
    if prefix and (not DNS_SUBDOMAIN.match(prefix) or len(prefix) > 253):
        return f"prefix {prefix!r} must be a DNS-1123 subdomain"
    if not LABEL_NAME.match(name) or len(name) > 63:
        return "must be at most 63 letters, digits, '-', '_' and '.', starting and ending with a letter or digit"
    return None


def _reserved(key: str) -> str | None:
    return next((why for prefix, why in RESERVED_PREFIXES.items() if key.startswith(prefix)), None)


def _labels(raw: Any, what: str, problems: Problems, reserved: bool) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        problems.append((what, f"{what} must be a mapping of key: value, got {type(raw).__name__}"))
        return {}
    out = {}
    for key, value in raw.items():
        at = f"{what}.{key}"
        why = _qualified_key(key)
        if why:
            problems.append((at, f"{what} key {key!r} {why}"))
        elif reserved and _reserved(key):
            problems.append((at, f"{what} key {key!r} is reserved: {_reserved(key)}"))
        elif not isinstance(value, str) or (value and not LABEL_NAME.match(value)) or len(value) > 63:
            problems.append(
                (at, f"{what} {key}: value {value!r} must be a string of at most 63 letters, digits, '-', '_' and '.'")
            )
        else:
            out[key] = value
    return out


def _annotations(raw: Any, problems: Problems) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        problems.append(("annotations", f"annotations must be a mapping of key: value, got {type(raw).__name__}"))
        return {}
    out = {}
    for key, value in raw.items():
        at = f"annotations.{key}"
        why = _qualified_key(key)
        if why:
            problems.append((at, f"annotation key {key!r} {why}"))
        elif _reserved(key):
            problems.append((at, f"annotation key {key!r} is reserved: {_reserved(key)}"))
        elif not isinstance(value, str):
            problems.append((at, f"annotation {key}: value {value!r} must be a string (quote it in YAML)"))
        else:
            out[key] = value
    return out


def tolerations(raw: Any, what: str, problems: Problems) -> tuple[Mapping[str, Any], ...]:
    """Pod tolerations as the API server validates them (also the profile's GPU pools')."""
    if not isinstance(raw, list):
        problems.append((what, f"{what} must be a list of {{key, operator, value, effect}}, got {type(raw).__name__}"))
        return ()
    out = []
    for i, t in enumerate(raw):
        bad = len(problems)
        _toleration(t, f"{what}[{i}]", problems)
        if len(problems) == bad:
            out.append(dict(t))
    return tuple(out)


def _toleration(t: Any, at: str, problems: Problems) -> None:
    if not isinstance(t, Mapping):
        problems.append((at, "a toleration must be a mapping of key, operator, value, effect"))
        return
    problems += [
        (f"{at}.{k}", f"'{k}' is not a toleration field; expected {', '.join(sorted(TOLERATION_KEYS))}")
        for k in t
        if k not in TOLERATION_KEYS
    ]
    key, op, value, effect = t.get("key", ""), t.get("operator", "Equal"), t.get("value", ""), t.get("effect")
    if key and _qualified_key(key):
        problems.append((f"{at}.key", f"toleration key {key!r} {_qualified_key(key)}"))
    if op not in OPERATORS:
        problems.append((f"{at}.operator", f"operator {op!r} must be Exists or Equal"))
    elif op == "Exists" and value:
        problems.append((f"{at}.value", f"value must be empty when operator is Exists, got {value!r}"))
    elif op == "Equal" and not key:
        problems.append((f"{at}.key", "a toleration with operator Equal needs a key (leave it out only with Exists)"))
    if value and (not isinstance(value, str) or not LABEL_NAME.match(value) or len(value) > 63):
        problems.append((f"{at}.value", f"value {value!r} must be a label value"))
    if effect is not None and effect not in EFFECTS:
        problems.append((f"{at}.effect", f"effect {effect!r} must be one of {', '.join(EFFECTS)}"))
    seconds = t.get("tolerationSeconds")
    if seconds is not None and (effect != "NoExecute" or isinstance(seconds, bool) or not isinstance(seconds, int)):
        problems.append((f"{at}.tolerationSeconds", "tolerationSeconds is a whole number, with effect NoExecute only"))
