"""Knative Services: one per function, and the router. Pure: plans and a profile in, dicts out.

A function's Service runs the project image with `KNFLOW_FUNCTION=NAME` (the image's command is
`knflow serve function`), `KNFLOW_FUNCTIONS` naming the module that defines it, and `K_SINK`, the broker, which
a failed try's node log lines go to (the broker retries it, and keeps no failed answer). The router runs
`knflow serve router` twice, over one store and one result key: `knflow-router`, public, for webhooks and
the API (behind tokens), and `knflow-router-events`, cluster-local, `--broker-ingress`, which Triggers,
PingSources and dead-letter sinks deliver to (they cannot send a token; the cluster network is its trust
boundary). The router reaches the broker through `K_SINK`, reads MongoDB's URL and the webhook
secret from Secrets (and, from the profile's `secrets.webhooks` Secret, each `trigger.auth.secret_env`
that a pipeline names), and loads the pipeline files that `KNFLOW_PIPELINES` lists from a mounted ConfigMap.

Every pod is hardened to the Pod Security Standards' "restricted" profile, with container-level fields only
(a pod-level securityContext needs Serving's kubernetes.podspec-securitycontext flag): non-root (the image's
numeric USER), no privilege escalation, a read-only root filesystem with emptyDirs where a path must be
writable (TMPDIR and HOME; the blob directory when the profile names no shared blob store), every capability
dropped, the runtime's default seccomp profile, and no service account token (nothing calls the Kubernetes
API). Function Services and the router's broker ingress are cluster-local: only the cluster reaches them, never
a public route.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

import yaml

from knative import monitoring, naming
from functions.deployment import SecretEnv
from knative.plan import CACHE_VOLUME, FunctionPlan
from knative.profile import Profile, SecretRef
from knative.scaling import KPA, PREFIX
from router.pipeline import Pipeline

PIPELINES_DIR = "/etc/knflow/pipelines"
# builtin function -> (environment variable, the SecretsProfile field it comes from)
BUILTIN_SECRETS: dict[str, tuple[tuple[str, str], ...]] = {
    **dict.fromkeys(("mongodb-query", "mongodb-insert"), (("KNFLOW_MONGODB_URL", "mongodb"),)),
    **dict.fromkeys(("redis-get", "redis-set"), (("KNFLOW_REDIS_URL", "redis"),)),
    **dict.fromkeys(
        ("llm-generate", "llm-chat", "embedding"),
        (("KNFLOW_OPENAI_BASE_URL", "openai_base_url"), ("KNFLOW_OPENAI_API_KEY", "openai_api_key")),
    ),
}
PROGRESS_DEADLINE = "serving.knative.dev/progress-deadline"
TMP_DIR = "/knflow/tmp"  # TMPDIR and HOME: the root filesystem is read-only
BLOB_DIR = "/knflow/blobs"  # the pod's own blob directory when the profile names no shared blob store
SECURITY_CONTEXT: dict[str, Any] = {
    "runAsNonRoot": True,
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}
PIPELINES_DIGEST = "knflow.dev/pipelines-digest"


def function_service(plan: FunctionPlan, profile: Profile) -> dict[str, Any]:
    auto, deploy, pool = plan.autoscaling, plan.deploy, plan.gpu_profile(profile)
    annotations = auto.annotations() | monitoring.scrape_annotations(profile) | dict(deploy.annotations)
    if plan.gpu:
        annotations[PROGRESS_DEADLINE] = f"{pool.progress_deadline_s}s"
    env = [{"name": "KNFLOW_FUNCTION", "value": plan.name}]
    if plan.module:
        env.append({"name": "KNFLOW_FUNCTIONS", "value": plan.module})
    env += (
        builtin_secret_env(plan, profile)
        + _blob_env(profile)
        + [_secret_env("KNFLOW_METRICS_TOKEN", profile.metrics_token_secret)]
    )
    env.append({"name": "K_SINK", "value": profile.broker_ingress_url()})  # where a failed try's log lines go
    env += deploy_env(plan)
    volumes = plan.volumes()
    cache = next((v for v in volumes if v.name == CACHE_VOLUME), None)
    if cache is not None and "XDG_CACHE_HOME" not in deploy.env:  # where model downloads go
        env.append({"name": "XDG_CACHE_HOME", "value": cache.mount})
    container = _container("function", profile, env, image=deploy.image)
    container["volumeMounts"] = _scratch_mounts(profile) + [v.volume_mount() for v in volumes]
    resources = _resources(plan.spec.traits.cpu, plan.spec.traits.memory, plan.gpu, pool.resource_name)
    if resources:
        container["resources"] = resources
    spec: dict[str, Any] = {
        "containerConcurrency": auto.container_concurrency,
        "timeoutSeconds": auto.timeout_s,
        "enableServiceLinks": False,
        "automountServiceAccountToken": False,
    }
    account = deploy.service_account or profile.service_account
    if account:
        spec["serviceAccountName"] = account
    spec["containers"] = [container]
    spec["volumes"] = _scratch_volumes(profile) + [v.volume() for v in volumes]
    selector = {**(pool.node_selector if plan.gpu else {}), **deploy.node_selector}
    if selector:
        spec["nodeSelector"] = selector
    tolerations = [*(pool.tolerations if plan.gpu else []), *(deploy.tolerations or ())]
    if tolerations:
        spec["tolerations"] = [dict(t) for t in tolerations]
    if plan.gpu and pool.runtime_class_name:
        spec["runtimeClassName"] = pool.runtime_class_name
    name = naming.function_service(plan.name)
    component = "function"
    return {
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Service",
        "metadata": naming.metadata(
            name,
            profile.namespace,
            profile,
            component,
            # no public route: only the broker (and the router's cluster) reach a function
            extra_labels={naming.FUNCTION_LABEL: plan.name, naming.VISIBILITY_LABEL: naming.CLUSTER_LOCAL},
        ),
        "spec": {
            "template": {
                "metadata": {
                    "labels": {**deploy.labels, naming.FUNCTION_LABEL: plan.name, **monitoring.pod_labels()},
                    "annotations": annotations,
                },
                "spec": spec,
            }
        },
    }


def deploy_env(plan: FunctionPlan) -> list[dict[str, Any]]:
    """The function's own `env`: plain values, and Secret keys by reference."""
    out: list[dict[str, Any]] = []
    for name, value in plan.deploy.env.items():
        if isinstance(value, SecretEnv):
            out.append(_secret_env(name, SecretRef(name=value.secret, key=value.key, optional=value.optional)))
        else:
            out.append({"name": name, "value": value})
    return out


def router_service(
    plans: Iterable[FunctionPlan],
    pipelines_doc: dict[str, Any],
    profile: Profile,
    webhook_secret_envs: Iterable[str] = (),
) -> dict[str, Any]:
    """The public router: webhooks and the API, behind tokens (KNFLOW_ADMIN_TOKEN) and webhook secrets."""
    r = profile.router
    secrets: list[dict[str, Any]] = []
    if r.webhook_secret is not None:
        secrets.append(_secret_env("KNFLOW_WEBHOOK_SECRET", r.webhook_secret))
    secrets += [_secret_env(name, SecretRef(name=profile.secrets.webhooks, key=name)) for name in webhook_secret_envs]
    secrets.append(_secret_env("KNFLOW_ADMIN_TOKEN", r.admin_token_secret))
    return _router(r.name, ["knflow", "serve", "router"], secrets, plans, pipelines_doc, profile, {})


def router_events_service(
    plans: Iterable[FunctionPlan], pipelines_doc: dict[str, Any], profile: Profile
) -> dict[str, Any]:
    """The router's broker ingress: what Triggers and PingSources deliver to (they cannot send a token).
    Cluster-local, `--broker-ingress` (only /events and /dead-letter), over the same store and result key;
    no admin token and no webhook secrets, since it serves neither the API nor webhooks."""
    return _router(
        naming.router_events_service(profile),
        ["knflow", "serve", "router", "--broker-ingress"],
        [],
        plans,
        pipelines_doc,
        profile,
        {naming.VISIBILITY_LABEL: naming.CLUSTER_LOCAL},  # the cluster network is its trust boundary
    )


def _router(
    name: str,
    command: list[str],
    secrets: list[dict[str, Any]],
    plans: Iterable[FunctionPlan],
    pipelines_doc: dict[str, Any],
    profile: Profile,
    labels: dict[str, str],
) -> dict[str, Any]:
    r = profile.router
    modules = sorted({p.module for p in plans if p.module})
    env: list[dict[str, Any]] = [_secret_env("KNFLOW_STORE_URL", r.mongodb_secret)]  # the builtins' is their own
    env += secrets
    env.append(_secret_env("KNFLOW_RESULT_KEY", r.result_key_secret))
    env.append({"name": "K_SINK", "value": profile.broker_ingress_url()})
    if modules:
        env.append({"name": "KNFLOW_FUNCTIONS", "value": ",".join(modules)})
    files = [f"{PIPELINES_DIR}/{key}" for key in pipelines_doc["data"]]
    env.append({"name": "KNFLOW_PIPELINES", "value": ",".join(files)})
    env.append({"name": "KNFLOW_MAX_HOPS", "value": str(r.max_hops)})
    if profile.environment:
        env.append({"name": "KNFLOW_ENV", "value": profile.environment})
    env += [*_blob_env(profile), _secret_env("KNFLOW_METRICS_TOKEN", profile.metrics_token_secret)]
    container = _container("router", profile, env, command=command)
    container["volumeMounts"] = [
        {"name": "pipelines", "mountPath": PIPELINES_DIR, "readOnly": True},
        *_scratch_mounts(profile),
    ]
    resources = _resources(r.cpu, r.memory, 0, "")
    if resources:
        container["resources"] = resources
    annotations = {
        PREFIX + "class": KPA,
        PREFIX + "min-scale": str(r.min_scale),
        PREFIX + "max-scale": str(r.max_scale or profile.serving.max_scale_limit),
        # a change of pipelines makes a new revision, so the router reloads them
        PIPELINES_DIGEST: naming.short_hash(yaml.safe_dump(pipelines_doc["data"], sort_keys=True), 16),
        **monitoring.scrape_annotations(profile),
    }
    spec: dict[str, Any] = {
        "containerConcurrency": 0,
        "timeoutSeconds": r.timeout_s,
        "enableServiceLinks": False,
        "automountServiceAccountToken": False,  # the router never calls the Kubernetes API
    }
    if profile.service_account:
        spec["serviceAccountName"] = profile.service_account
    spec["containers"] = [container]
    spec["volumes"] = [
        {"name": "pipelines", "configMap": {"name": pipelines_doc["metadata"]["name"]}},
        *_scratch_volumes(profile),
    ]
    return {
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Service",
        "metadata": naming.metadata(name, profile.namespace, profile, "router", extra_labels=labels),
        "spec": {
            "template": {"metadata": {"labels": monitoring.pod_labels(), "annotations": annotations}, "spec": spec}
        },
    }


def pipelines_config_map(pipelines: Iterable[Pipeline], profile: Profile) -> dict[str, Any]:
    """The pipeline definitions the router serves; `functions` is left out (the image loads them)."""
    data = {}
    for p in sorted(pipelines, key=lambda p: p.name):
        doc = p.to_dict()
        doc.pop("functions", None)
        data[f"{p.name}.yaml"] = yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=100)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": naming.metadata(naming.pipelines_config_map(profile), profile.namespace, profile, "router"),
        "data": data,
    }


def _container(
    name: str,
    profile: Profile,
    env: list[dict[str, Any]],
    command: list[str] | None = None,
    image: str | None = None,
) -> dict[str, Any]:
    container: dict[str, Any] = {"name": name, "image": image or profile.image}
    if profile.image_pull_policy:
        container["imagePullPolicy"] = profile.image_pull_policy
    if command:
        container["command"], container["args"] = command[:1], command[1:]
    container["env"] = [*env, {"name": "TMPDIR", "value": TMP_DIR}, {"name": "HOME", "value": TMP_DIR}]
    container["ports"] = [{"name": "http1", "containerPort": profile.port}]
    container["readinessProbe"] = {"httpGet": {"path": "/healthz"}}
    container["securityContext"] = security_context()
    return container


def security_context() -> dict[str, Any]:
    """The container securityContext of every generated pod (a fresh copy: callers may add to it)."""
    return copy.deepcopy(SECURITY_CONTEXT)


def _scratch_volumes(profile: Profile) -> list[dict[str, Any]]:
    """The emptyDirs behind the paths a pod writes (the root filesystem is read-only)."""
    out: list[dict[str, Any]] = [{"name": "tmp", "emptyDir": {}}]
    if not profile.blob_url:
        out.append({"name": "blobs", "emptyDir": {}})
    return out


def _scratch_mounts(profile: Profile) -> list[dict[str, Any]]:
    out = [{"name": "tmp", "mountPath": TMP_DIR}]
    if not profile.blob_url:
        out.append({"name": "blobs", "mountPath": BLOB_DIR})
    return out


def _resources(cpu: str | None, memory: str | None, gpu: int, gpu_resource: str) -> dict[str, Any]:
    requests, limits = {}, {}
    if cpu:
        requests["cpu"] = str(cpu)
    if memory:
        requests["memory"] = limits["memory"] = str(memory)
    if gpu:
        limits[gpu_resource] = str(gpu)
    out = {}
    if requests:
        out["requests"] = requests
    if limits:
        out["limits"] = limits
    return out


def webhook_secret_envs(pipelines: Iterable[Pipeline]) -> dict[str, list[str]]:
    """The environment variables that signed webhooks read their secrets from (`trigger.auth.secret_env`),
    each with the pipelines that name it, sorted."""
    out: dict[str, set[str]] = {}
    for p in pipelines:
        for t in p.triggers:
            if t.auth is not None:
                out.setdefault(t.auth.secret_env, set()).add(p.name)
    return {name: sorted(out[name]) for name in sorted(out)}


def builtin_secret_env(plan: FunctionPlan, profile: Profile) -> list[dict[str, Any]]:
    """The env a builtin reads its server from, each from a Secret; none for a user's function."""
    if plan.module:
        return []
    return [_secret_env(name, getattr(profile.secrets, field)) for name, field in BUILTIN_SECRETS.get(plan.name, ())]


def _blob_env(profile: Profile) -> list[dict[str, Any]]:
    return [{"name": "KNFLOW_BLOB_URL", "value": profile.blob_url or f"file://{BLOB_DIR}"}]


def _secret_env(name: str, ref: SecretRef) -> dict[str, Any]:
    key_ref: dict[str, Any] = {"name": ref.name, "key": ref.key}
    if ref.optional:
        key_ref["optional"] = True
    return {"name": name, "valueFrom": {"secretKeyRef": key_ref}}
