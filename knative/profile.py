"""The cluster profile: what knflow must know about a cluster to write manifests that it accepts.

A YAML file (every key optional; snake_case; durations in seconds, named `*_s`):

    namespace: pipelines
    image: ghcr.io/acme/knflow:0.1.0
    environment: prod                      # KNFLOW_ENV of the routers: the pipelines' `variables: {default, prod}`
    broker:
      name: knflow
      class: MTChannelBasedBroker          # or NatsJetStreamBroker (eventing-natss' native broker)
      nats_url: nats://nats.nats-io.svc.cluster.local:4222
    gpu:                                   # the one GPU pool, when gpu_pools names none
      node_selector: {karpenter.sh/nodepool: gpu-nodepool}
      tolerations: [{key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}]
      runtime_class_name: nvidia
      cold_start_s: 900
    gpu_pools:                             # or named pools: a function asks for one, or for GPU memory
      l4:
        node_selector: {cloud.google.com/gke-accelerator: nvidia-l4}
        memory: 24Gi                       # of one GPU: `gpu_memory: 20Gi` gets the smallest pool that fits
        cache: {claim: models-l4, mount: /models}   # a model cache PVC on each pod of the pool
      a100-80gb: {node_selector: {cloud.google.com/gke-accelerator: nvidia-a100-80gb}, memory: 80Gi}
    default_gpu_pool: l4                   # for `runOn: gpu` and `gpu: 1`; the smallest pool when not given
    router:
      min_scale: 1
      mongodb_secret: {name: knflow-mongodb, key: url}
      admin_token_secret: {name: knflow-router, key: admin_token}   # KNFLOW_ADMIN_TOKEN
      result_key_secret: {name: knflow-router, key: result_key}     # KNFLOW_RESULT_KEY
    secrets:                               # what the builtins read, as env from Secrets
      mongodb: {name: knflow-builtins-mongodb, key: url}
      openai_api_key: {name: knflow-openai, key: api_key, optional: true}
      webhooks: knflow-webhooks            # signed webhooks: key = each trigger.auth.secret_env
    blob_url: s3://acme-knflow/blobs       # large payloads: storage every pod shares
    monitoring: prometheus-operator        # or annotations (the default: prometheus.io/* on each pod), none
    serving:
      features: {kubernetes.podspec-nodeselector: enabled, kubernetes.podspec-tolerations: enabled}

Pure: `load_profile` reads one file; everything else works on values.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from functions import deployment
from knative.errors import ProfileInvalid
from router import environments
from router.hops import MAX_HOPS

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SecretRef(_Strict):
    """A key of a Kubernetes Secret; knflow never writes secret values into manifests."""

    name: str
    key: str
    optional: bool = False


class BrokerProfile(_Strict):
    name: str = "knflow"
    class_: Literal["MTChannelBasedBroker", "NatsJetStreamBroker"] = Field("MTChannelBasedBroker", alias="class")
    nats_url: str = "nats://nats.nats-io.svc.cluster.local:4222"
    # NatsJetStreamChannel spec for the channel template (stream / consumer tuning), MT broker only
    channel_spec: dict[str, Any] = Field(default_factory=dict)
    # write the knative-eventing ConfigMaps that hold the NATS connection (config-nats / config-nats-broker)
    connection_config_maps: bool = True
    # the broker's ingress URL, given to the router as K_SINK; derived from the class when empty
    ingress_url: str = ""
    retry: int = Field(3, ge=0)
    backoff_delay_s: float = Field(0.5, ge=0)
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class PoolCache(_Strict):
    """A model cache on every pod of a GPU pool: a PersistentVolumeClaim mounted at `mount`, which is also
    the pod's XDG_CACHE_HOME (Hugging Face and torch hub keep their downloads under it)."""

    claim: str
    mount: str = "/models"
    read_only: bool = False

    @field_validator("claim")
    @classmethod
    def _claim(cls, value: str) -> str:
        if not deployment.DNS_SUBDOMAIN.match(value) or len(value) > 253:
            raise ValueError(f"claim {value!r} must be a PersistentVolumeClaim name (DNS-1123)")
        return value

    @field_validator("mount")
    @classmethod
    def _mount(cls, value: str) -> str:
        if not value.startswith("/") or ".." in value.split("/"):
            raise ValueError(f"mount {value!r} must be an absolute path without '..'")
        return value


class GpuProfile(_Strict):
    """One GPU pool: what its nodes need (selector, tolerations, runtime class) and what one GPU has."""

    node_selector: dict[str, str] = Field(default_factory=lambda: {"nvidia.com/gpu.present": "true"})
    tolerations: list[dict[str, Any]] = Field(
        default_factory=lambda: [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    )
    runtime_class_name: str | None = None
    resource_name: str = "nvidia.com/gpu"
    # node provisioning + image pull + model load: added to the delivery timeout of GPU functions
    cold_start_s: int = Field(900, gt=0)
    # serving.knative.dev/progress-deadline for GPU revisions (cluster default is 600 s)
    progress_deadline_s: int = Field(1800, gt=0)
    # keep the last GPU pod this long after traffic stops (a node scale-up is slow); "" for none
    retention_period: str = "10m"
    # the memory of one GPU (24Gi for an L4): what `gpu_memory` requests are matched against
    memory: str | None = None
    cache: PoolCache | None = None

    @field_validator("memory")
    @classmethod
    def _memory(cls, value: str | None) -> str | None:
        if value is not None:
            deployment.quantity(value)
        return value

    @field_validator("node_selector")
    @classmethod
    def _selector(cls, value: dict[str, str]) -> dict[str, str]:
        _raise(deployment.parse({"node_selector": value})[1])
        return value

    @field_validator("tolerations")
    @classmethod
    def _tolerations(cls, value: list[dict[str, Any]]) -> list[dict[str, Any]]:
        _raise(deployment.parse({"tolerations": value})[1])
        return value

    @field_validator("resource_name")
    @classmethod
    def _resource(cls, value: str) -> str:
        if deployment._qualified_key(value) or "/" not in value:
            raise ValueError(f"resource_name {value!r} must be an extended resource such as nvidia.com/gpu")
        return value

    def memory_bytes(self) -> Any:
        return deployment.quantity(self.memory) if self.memory else None


def _raise(problems: deployment.Problems) -> None:
    if problems:
        raise ValueError("; ".join(msg for _, msg in problems))


class RouterProfile(_Strict):
    name: str = "knflow-router"
    min_scale: int = Field(1, ge=0)
    max_scale: int = Field(0, ge=0)
    timeout_s: int = Field(60, gt=0)
    cpu: str | None = None
    memory: str | None = None
    mongodb_secret: SecretRef = SecretRef(name="knflow-mongodb", key="url")
    webhook_secret: SecretRef | None = SecretRef(name="knflow-webhooks", key="token", optional=True)
    # KNFLOW_ADMIN_TOKEN (the bootstrap admin token) and KNFLOW_RESULT_KEY (signs each invoke's result secret;
    # without it the replicas share a key kept in the store)
    admin_token_secret: SecretRef = SecretRef(name="knflow-router", key="admin_token")
    result_key_secret: SecretRef = SecretRef(name="knflow-router", key="result_key", optional=True)
    # the longest chain of runs started by run events (dev.knflow.run.*) before the router stops it
    max_hops: int = Field(MAX_HOPS, gt=0)
    retry: int = Field(10, ge=0)


class SecretsProfile(_Strict):
    """The Secrets that builtin functions read their servers from (env `valueFrom.secretKeyRef`)."""

    # KNFLOW_MONGODB_URL: mongodb-query, mongodb-insert. Not the router's store (router.mongodb_secret): a
    # pipeline's queries never reach the run store's database unless a profile names that Secret here
    mongodb: SecretRef = SecretRef(name="knflow-builtins-mongodb", key="url")
    redis: SecretRef = SecretRef(name="knflow-redis", key="url")  # KNFLOW_REDIS_URL: redis-get, redis-set
    openai_base_url: SecretRef = SecretRef(
        name="knflow-openai", key="base_url"
    )  # KNFLOW_OPENAI_BASE_URL: llm-*, embedding
    openai_api_key: SecretRef = SecretRef(name="knflow-openai", key="api_key", optional=True)  # KNFLOW_OPENAI_API_KEY
    # the Secret the router reads signed webhooks' secrets from: key = a pipeline's trigger.auth.secret_env
    webhooks: str = "knflow-webhooks"


class ServingProfile(_Strict):
    """What the cluster's Knative Serving allows (config-defaults, config-autoscaler, config-features)."""

    max_revision_timeout_s: int = Field(600, gt=0)
    container_concurrency_max: int = Field(1000, gt=0)
    max_scale_limit: int = Field(0, ge=0)
    allow_zero_initial_scale: bool = False
    # flags already set in config-features (knative-serving): name -> enabled | disabled | allowed
    features: dict[str, Literal["enabled", "disabled", "allowed"]] = Field(default_factory=dict)
    # write a config-features patch that enables the flags the manifests need
    features_patch: bool = False


class Profile(_Strict):
    namespace: str = "knflow"
    image: str = "knflow:latest"
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] | None = None
    service_account: str | None = None
    port: int = Field(8080, gt=0, lt=65536)
    # added to the delivery timeout of CPU functions: the time a cold pod needs to answer
    cold_start_s: int = Field(60, gt=0)
    labels: dict[str, str] = Field(default_factory=dict)
    broker: BrokerProfile = BrokerProfile()
    gpu: GpuProfile = GpuProfile()
    # named GPU pools (a function asks for one with gpu: {pool: NAME}, or for gpu_memory); `gpu` when empty
    gpu_pools: dict[str, GpuProfile] = Field(default_factory=dict)
    default_gpu_pool: str | None = None
    router: RouterProfile = RouterProfile()
    serving: ServingProfile = ServingProfile()
    secrets: SecretsProfile = SecretsProfile()
    # KNFLOW_BLOB_URL of every pod: outputs over 256 KiB go there, so it must be storage that all pods share
    # (s3://bucket/prefix; credentials through the service account). Empty: each pod's own disk.
    blob_url: str = ""
    # how Prometheus finds each pod's /metrics (knative/monitoring.py): pod annotations, or a PodMonitor too
    monitoring: Literal["annotations", "prometheus-operator", "none"] = "annotations"
    # KNFLOW_METRICS_TOKEN of every pod, the bearer token /metrics takes (and the PodMonitor sends)
    metrics_token_secret: SecretRef = SecretRef(name="knflow-metrics", key="token", optional=True)
    # a NetworkPolicy that lets the namespace's pods reach anything but the cloud metadata address; turn it
    # off where pods get their cloud credentials from the metadata server (GKE Workload Identity)
    network_policy: bool = True
    # the routers' KNFLOW_ENV: the environment whose variables the pipelines take (router/environments.py)
    environment: str | None = None

    @field_validator("environment")
    @classmethod
    def _environment(cls, value: str | None) -> str | None:
        return environments.check_name(value, "environment")

    @field_validator("namespace")
    @classmethod
    def _dns_label(cls, value: str) -> str:
        if not DNS_LABEL.match(value) or len(value) > 63:
            raise ValueError(f"namespace {value!r} must be a DNS label: lowercase letters, digits and '-'")
        return value

    @model_validator(mode="after")
    def _pools(self) -> Profile:
        if self.gpu_pools and self.gpu != GpuProfile():
            raise ValueError("give gpu (one pool) or gpu_pools (named pools), not both; move gpu into gpu_pools")
        for name in self.gpu_pools:
            if not DNS_LABEL.match(name) or len(name) > 63:
                raise ValueError(f"gpu_pools: pool name {name!r} must be a DNS label such as 'a100-80gb'")
        if self.default_gpu_pool is not None and self.default_gpu_pool not in self.pools():
            raise ValueError(
                f"default_gpu_pool {self.default_gpu_pool!r} is not a pool of gpu_pools ({', '.join(self.pools())})"
            )
        return self

    def pools(self) -> dict[str, GpuProfile]:
        """The GPU pools by name: gpu_pools, or the one `gpu` pool, named 'default'."""
        return dict(self.gpu_pools) if self.gpu_pools else {"default": self.gpu}

    def broker_ingress_url(self) -> str:
        if self.broker.ingress_url:
            return self.broker.ingress_url
        host = "nats-broker-ingress" if self.broker.class_ == "NatsJetStreamBroker" else "broker-ingress"
        return f"http://{host}.knative-eventing.svc.cluster.local/{self.namespace}/{self.broker.name}"


def parse_profile(doc: Any, source: str = "profile") -> Profile:
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise ProfileInvalid(f"{source}: a profile must be a mapping of keys, got {type(doc).__name__}", file=source)
    try:
        return Profile.model_validate(doc)
    except ValidationError as err:
        reasons = []
        for item in err.errors(include_url=False):
            where = ".".join(str(x) for x in item["loc"]) or "(top)"
            if item["type"] == "extra_forbidden":
                reasons.append(
                    f"'{where}' is not a profile key; expected one of {', '.join(_keys_at(item['loc'][:-1]))}"
                )
                continue
            got = (
                f" (got {item['input']!r})" if item["type"] != "missing" and not isinstance(item["input"], dict) else ""
            )
            reasons.append(f"'{where}': {item['msg']}{got}")
        raise ProfileInvalid(f"{source}: profile is invalid: " + "; ".join(reasons), file=source) from None


def _keys_at(loc: tuple) -> list[str]:
    model: Any = Profile
    for part in loc:
        field = model.model_fields.get(part) or next((f for f in model.model_fields.values() if f.alias == part), None)
        model = getattr(field, "annotation", None)
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return []
    return [f.alias or name for name, f in model.model_fields.items()]


def load_profile(path: str | Path | None) -> Profile:
    """The profile in `path`, or the defaults when `path` is None."""
    if path is None:
        return Profile()
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ProfileInvalid(f"profile {path}: cannot read the file: {exc.strerror}", file=str(path)) from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ProfileInvalid(f"profile {path}: YAML syntax error: {exc}", file=str(path)) from None
    return parse_profile(doc, str(path))
