"""From pipelines, the functions they use and a cluster profile to the manifests a cluster needs,
checked against Knative's webhook rules; and their YAML. Pure: writing files is the CLI's job.

    bundle = build(pipelines, REGISTRY, profile, root)
    bundle.manifests   # dicts in apply order
    bundle.notes       # what a person must know or do (feature flags, Secrets, ...)
    files(bundle)      # file name -> YAML text, for `knflow manifests -o DIR`
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from functions.registry import REGISTRY, Registry
from knative import chains, eventing, features, monitoring, naming, network, services, sources, webhook_rules
from knative.errors import KnativeError, ManifestsRejected
from knative.plan import FunctionPlan, plan_functions
from knative.profile import Profile, SecretRef
from router.pipeline import Pipeline

# component label -> output file, in apply order (ConfigMaps and flags before what reads them)
FILES = {
    "namespace": "00-namespace.yaml",
    "serving-config": "05-serving-config-features.yaml",
    "network-policy": "08-network-policy.yaml",
    "broker-config": "10-broker-config.yaml",
    "broker": "20-broker.yaml",
    "function": "30-functions.yaml",
    "router": "40-router.yaml",
    "trigger": "50-triggers.yaml",
    "source": "60-sources.yaml",
    "monitoring": "70-monitoring.yaml",
}
OTHER_FILE = "90-other.yaml"


@dataclass
class Bundle:
    manifests: list[dict[str, Any]]
    notes: list[str] = field(default_factory=list)
    warnings: list[webhook_rules.RuleProblem] = field(default_factory=list)
    functions: list[FunctionPlan] = field(default_factory=list)


def build(
    pipelines: Iterable[Pipeline],
    registry: Registry = REGISTRY,
    profile: Profile | None = None,
    root: Path | None = None,
) -> Bundle:
    """Every manifest for these pipelines. Raises a KnativeError naming each problem found."""
    profile = profile or Profile()
    pipelines = _distinct(list(pipelines))
    for p in pipelines:  # each has the profile's environment, or the routers would refuse it at start
        p.for_environment(profile.environment)
    chains.check_loops(pipelines)
    plans = plan_functions(pipelines, registry, profile, root or Path.cwd())

    fn_services = [services.function_service(plan, profile) for plan in plans]
    needed = features.flags_needed(fn_services)
    missing = [f for f in needed if f not in features.enabled_flags(profile)]
    patch = profile.serving.features_patch and bool(missing)

    manifests: list[dict[str, Any]] = []
    if profile.namespace != "default":
        manifests.append(
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": naming.metadata(profile.namespace, None, profile, "namespace"),
            }
        )
    if patch:
        manifests.append(features.features_patch(missing, profile))
    if profile.network_policy:
        manifests.append(network.deny_metadata_policy(profile))
    manifests += eventing.broker_config_maps(profile)
    manifests.append(eventing.broker(profile))
    manifests += fn_services
    pipelines_cm = services.pipelines_config_map(pipelines, profile)
    hook_envs = services.webhook_secret_envs(pipelines)
    manifests += [
        pipelines_cm,
        services.router_service(plans, pipelines_cm, profile, hook_envs),
        services.router_events_service(plans, pipelines_cm, profile),
    ]
    manifests += [eventing.function_trigger(plan, profile) for plan in plans]
    manifests += eventing.router_triggers(chains.external_filters(pipelines), profile)
    manifests += sources.ping_sources(pipelines, profile)
    manifests += monitoring.pod_monitors(profile)
    _check_unique(manifests, plans, profile)

    cluster = webhook_rules.Cluster.from_profile(profile, extra_features=missing if patch else ())
    problems = webhook_rules.check(manifests, cluster)
    errors = [p for p in problems if p.severity == "error"]
    if errors:
        raise ManifestsRejected(errors)
    notes = features.feature_notes(needed, profile, patched=patch)
    notes += [n for plan in plans for n in plan.notes]
    notes += _notes(plans, profile) + _webhook_notes(hook_envs, profile) + monitoring.notes(profile)
    return Bundle(manifests, notes, [p for p in problems if p.severity != "error"], plans)


def _distinct(pipelines: list[Pipeline]) -> list[Pipeline]:
    seen: dict[str, Pipeline] = {}
    for p in pipelines:
        other = seen.get(p.name)
        if other is not None and other.to_dict() != p.to_dict():
            raise KnativeError(
                f"two different pipelines are named '{p.name}' "
                f"({other.source or 'Python'} and {p.source or 'Python'}); "
                "the router keeps one pipeline per name. Rename one.",
                pipeline=p.name,
            )
        seen[p.name] = p
    return list(seen.values())


def _check_unique(manifests: list[dict[str, Any]], plans: list[FunctionPlan], profile: Profile) -> None:
    seen: set[tuple[str, str, str]] = set()
    for m in manifests:
        key = (m["kind"], m["metadata"].get("namespace", ""), m["metadata"]["name"])
        if key in seen:
            fn = next((p.name for p in plans if naming.function_service(p.name) == key[2]), None)
            hint = f" Function '{fn}' takes a name the router uses; rename the function." if fn else ""
            raise KnativeError(
                f"two generated resources are both {key[0]} '{key[2]}' "
                f"in namespace '{key[1] or profile.namespace}'.{hint}"
            )
        seen.add(key)


def _notes(plans: list[FunctionPlan], profile: Profile) -> list[str]:
    out = []
    r = profile.router
    secrets = [r.mongodb_secret] + ([r.webhook_secret] if r.webhook_secret else [])
    secrets += [r.admin_token_secret, r.result_key_secret]
    generated = {
        (r.admin_token_secret.name, r.admin_token_secret.key),
        (r.result_key_secret.name, r.result_key_secret.key),
    }
    by_name: dict[str, list[SecretRef]] = {}
    for s in secrets:
        if s not in by_name.setdefault(s.name, []):
            by_name[s.name].append(s)
    for name, refs in by_name.items():
        keys = ", ".join(f"'{s.key}'{' (optional)' if s.optional else ''}" for s in refs)
        literals = " ".join(
            f'--from-literal={s.key}="$(openssl rand -hex 32)"'
            if (s.name, s.key) in generated
            else f"--from-literal={s.key}=..."
            for s in refs
        )
        out.append(
            f"Secret '{name}' key{'s' if len(refs) > 1 else ''} {keys} {'are' if len(refs) > 1 else 'is'} read by "
            f"the router, never written here: kubectl create secret generic {name} -n {profile.namespace} {literals}"
        )
    token = r.admin_token_secret
    out.append(
        "The router refuses requests without a token; the bootstrap admin token (KNFLOW_ADMIN_TOKEN) is read back "
        f"with: kubectl get secret {token.name} -n {profile.namespace} -o jsonpath='{{.data.{token.key}}}' | base64 -d"
    )
    out.append(
        f"Knative's broker (Triggers, dead letters, PingSources) delivers to {naming.router_events_service(profile)}, "
        "cluster-local, which takes external events without a token (Triggers cannot send one): any workload "
        f"that reaches it inside the cluster can start runs, none can forge a result. Keep it cluster-local; "
        f"webhooks and the API are on {r.name}, behind tokens."
    )
    used: dict[tuple[str, str, bool], set[str]] = {}
    for plan in plans:
        for env in services.builtin_secret_env(plan, profile) + services.deploy_env(plan):
            if "valueFrom" not in env:
                continue
            ref = env["valueFrom"]["secretKeyRef"]
            used.setdefault((ref["name"], ref["key"], ref.get("optional", False)), set()).add(plan.name)
    for (name, key, optional), functions in sorted(used.items()):
        out.append(
            f"Secret '{name}' key '{key}'{' (optional)' if optional else ''} "
            f"is read by {', '.join(sorted(functions))}, "
            f"never written here: kubectl create secret generic {name} -n {profile.namespace} --from-literal={key}=..."
        )
    out += _deploy_notes(plans, profile)
    if not profile.blob_url:
        out.append(
            "Outputs over 256 KiB go to the blob store, which is each pod's own disk unless the profile sets "
            "blob_url (s3://bucket/prefix, shared by every pod); set it before such payloads flow."
        )
    if any(plan.gpu for plan in plans):
        out.append(
            'GPU nodes that a cluster autoscaler adds on demand take minutes: set pod-is-always-schedulable: "true" '
            "in config-deployment (knative-serving) so that revisions waiting for a node are not marked Unschedulable."
        )
    for plan in plans:
        r_ = plan.retry
        # Knative's exponential backoff waits delay * 2^n before retry n (broker/retry.py follows it), uncapped
        last_wait_s = r_.delay_s * 2**r_.retries
        if r_.retries and r_.backoff == "exponential" and last_wait_s > r_.max_delay_s:
            out.append(
                f"function '{plan.name}': Knative has no cap on backoff, so its last retry waits "
                f"{last_wait_s:g} s, beyond max_delay_s {r_.max_delay_s:g} s."
            )
    if profile.broker.class_ == "NatsJetStreamBroker":
        out.append(
            "The native NatsJetStreamBroker has no knativebrokerttl hop limit; the router stops run chains after "
            f"{r.max_hops} hops (KNFLOW_MAX_HOPS)."
        )
    return out


def _deploy_notes(plans: list[FunctionPlan], profile: Profile) -> list[str]:
    """What the functions' own images, volumes and pools ask of the cluster (nothing here creates them)."""
    out = []
    for plan in plans:
        if plan.deploy.image and plan.deploy.image != profile.image:
            out.append(
                f"function '{plan.name}' runs its own image {plan.deploy.image}: build it FROM the project image "
                f"({profile.image}) so that it has knflow and {plan.module or 'the builtins'}; its command stays "
                "`knflow serve function`."
            )
        if plan.gpu and plan.pool and len(profile.pools()) > 1:
            pool = plan.gpu_profile(profile)
            memory = f", {pool.memory} per GPU" if pool.memory else ""
            out.append(f"function '{plan.name}' runs on GPU pool '{plan.pool}' ({plan.gpu} GPU{memory}).")
    claims: dict[tuple[str, bool], list[str]] = {}
    for plan in plans:
        for v in plan.volumes():
            if v.kind == "claim":
                claims.setdefault((v.source, v.read_only), []).append(plan.name)
    for (claim, read_only), functions in sorted(claims.items()):
        mode = "read-only" if read_only else "read-write (ReadWriteMany when several pods share it)"
        out.append(
            f"PersistentVolumeClaim '{claim}' is mounted {mode} by {', '.join(sorted(functions))}; it must exist "
            f"in namespace {profile.namespace} (knflow never creates it), writable by the image's non-root user."
        )
    return out


def _webhook_notes(envs: dict[str, list[str]], profile: Profile) -> list[str]:
    """One line for the Secret of signed webhooks: its keys, who reads them, the command that makes it."""
    if not envs:
        return []
    name = profile.secrets.webhooks
    keys = ", ".join(f"'{env}' ({', '.join(pipelines)})" for env, pipelines in envs.items())
    literals = " ".join(f"--from-literal={env}=..." for env in envs)
    legacy = profile.router.webhook_secret
    if legacy is not None and legacy.name == name:  # the router-wide KNFLOW_WEBHOOK_SECRET lives there too
        literals += f" [--from-literal={legacy.key}=...]"
    return [
        f"Secret '{name}' keys {keys} hold the webhook secrets of those pipelines (several, separated by "
        f"spaces, while one is rotated); the router reads them, never written here: "
        f"kubectl create secret generic {name} -n {profile.namespace} {literals}"
    ]


def component(manifest: dict[str, Any]) -> str:
    return manifest["metadata"].get("labels", {}).get(naming.COMPONENT, "")


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (pipelines, channel templates in ConfigMaps) as readable `|` blocks."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value and not any(line != line.rstrip() for line in value.splitlines()) else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def to_yaml(manifests: Iterable[dict[str, Any]]) -> str:
    """One YAML stream, `---` between documents, as `kubectl apply -f -` takes it."""
    docs = [yaml.dump(m, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=120) for m in manifests]
    return "---\n" + "---\n".join(docs) if docs else ""


def files(bundle: Bundle) -> dict[str, str]:
    """Output file name -> YAML, named so that `kubectl apply -f DIR` applies them in a working order."""
    grouped: dict[str, list[dict[str, Any]]] = {}
    for m in bundle.manifests:
        grouped.setdefault(FILES.get(component(m), OTHER_FILE), []).append(m)
    return {name: to_yaml(grouped[name]) for name in sorted(grouped)}
