"""Which functions the pipelines use, and how each one is deployed: one Knative Service per function,
so every node that calls it must agree on scaling, placement (CPU or GPU) and retry policy. Pure.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TypeVar

from functions.deployment import Deployment, Volume, quantity
from functions.registry import BUILTINS, Registry
from functions.sdk import FunctionSpec, Retry
from knative import scaling
from knative.errors import DeploymentInvalid, KnativeError, NodesDisagree, ScalingInvalid
from knative.profile import GpuProfile, Profile
from router.pipeline import Node, Pipeline, Problem

T = TypeVar("T")
CACHE_VOLUME = "model-cache"  # a GPU pool's cache (profile gpu_pools.NAME.cache)
# volume names and paths every function pod has already (knative/services.py)
RESERVED_VOLUMES = {"tmp": "/knflow/tmp", "blobs": "/knflow/blobs", CACHE_VOLUME: ""}


@dataclass(frozen=True)
class Use:
    """One node of one pipeline that calls a function."""

    pipeline: Pipeline
    node: Node

    def where(self) -> str:
        line = self.pipeline.line_of(self.pipeline.node_path(self.node.id))
        place = ":".join(str(p) for p in (self.pipeline.source, line) if p is not None)
        return f"node '{self.node.id}' of pipeline '{self.pipeline.name}'" + (f" ({place})" if place else "")

    def problem(self, message: str, field_name: str | None = None, *path: object) -> Problem:
        p = self.pipeline
        line = p.line_of(p.node_path(self.node.id, *path)) if path else p.line_of(p.node_path(self.node.id))
        return Problem(message, p.source, line, p.name or None, self.node.id, field_name)


@dataclass
class FunctionPlan:
    name: str
    spec: FunctionSpec
    uses: list[Use]
    gpu: int
    autoscaling: scaling.Autoscaling
    retry: Retry
    module: str | None  # what KNFLOW_FUNCTIONS names in the image; None for a builtin
    notes: list[str] = field(default_factory=list)
    # the function's deployment settings with its nodes' `deploy:` over them, and the GPU pool it runs on
    deploy: Deployment = field(default_factory=Deployment)
    pool: str | None = None
    pool_profile: GpuProfile | None = None

    def volumes(self) -> tuple[Volume, ...]:
        """The function's volumes, with its GPU pool's model cache."""
        cache = self.pool_profile.cache if self.gpu and self.pool_profile else None
        if cache is None:
            return tuple(self.deploy.volumes)
        mount = Volume(CACHE_VOLUME, cache.mount, "claim", cache.claim, read_only=cache.read_only)
        return (*self.deploy.volumes, mount)

    def gpu_profile(self, profile: Profile) -> GpuProfile:
        """The pool a GPU function runs on (the profile's `gpu` for a CPU function, unused)."""
        return self.pool_profile or profile.gpu


def plan_functions(
    pipelines: Iterable[Pipeline], registry: Registry, profile: Profile, root: Path
) -> list[FunctionPlan]:
    """One plan per function used, sorted by name. Raises with every problem found, not just the first."""
    uses: dict[str, list[Use]] = {}
    for p in pipelines:
        for node in p.nodes.values():
            uses.setdefault(node.function, []).append(Use(p, node))
    plans, scaling_problems, disagreements, deploy_problems = [], [], [], []
    for name in sorted(uses):
        spec = registry.get(name)
        plan, bad_scaling, disagree = _plan_one(spec, uses[name], profile, root)
        scaling_problems += bad_scaling
        disagreements += disagree
        deploy_problems += _place(plan, profile)
        plans.append(plan)
    if deploy_problems:
        raise DeploymentInvalid("\n".join(str(x) for x in deploy_problems))
    if scaling_problems:
        raise ScalingInvalid("\n".join(str(x) for x in scaling_problems + disagreements))
    if disagreements:
        raise NodesDisagree("\n".join(str(x) for x in disagreements))
    return plans


def _plan_one(spec: FunctionSpec, uses: list[Use], profile: Profile, root: Path) -> tuple[FunctionPlan, list, list]:
    bad: list[Problem] = []
    disagree: list[str] = []
    overrides: list[tuple[Use, dict]] = []
    for use in uses:
        normal, problems = scaling.normalize(use.node.scaling)
        bad += [use.problem(msg, f"scaling.{key}", "scaling", key) for key, msg in problems]
        if use.node.scaling:
            overrides.append((use, normal))
    disagree += _disagreement(spec.name, "scaling", [(u, o) for u, o in overrides], _show_mapping)
    deploys = [(u, u.node.deploy.over(spec.traits.deploy)) for u in uses]
    disagree += _disagreement(spec.name, "deployment (deploy:)", deploys, lambda d: _show_mapping(d.to_dict()))
    placements = [(u, _placement(spec, u.node, d)) for u, d in deploys]
    disagree += _disagreement(spec.name, "placement", placements, lambda g: f"runOn {'gpu' if g else 'cpu'}")
    retries = [(u, u.node.retry or spec.traits.retry) for u in uses]
    disagree += _disagreement(spec.name, "retry policy", retries, _show_retry)

    gpu = placements[0][1]
    timeout_s = max(u.node.timeout_s or spec.traits.timeout_s for u in uses)
    pool = choose_pool(profile, deploys[0][1])[0] if gpu else None
    retention = profile.pools()[pool].retention_period if pool else None
    auto = scaling.from_traits(spec.traits, timeout_s, retention)
    if overrides and not bad:
        auto = auto.with_overrides(overrides[0][1])
    limit = profile.serving.max_scale_limit
    if limit and auto.max_scale == 0 and not any("maxScale" in o for _, o in overrides):
        auto = replace(auto, max_scale=limit)  # "no limit" in a cluster that has one
    if not bad:
        where = overrides[0][0] if overrides else uses[0]
        for key, msg in scaling.range_problems(auto, profile.serving):
            bad.append(where.problem(f"function '{spec.name}': {msg}", f"scaling.{key}", "scaling"))
    plan = FunctionPlan(spec.name, spec, uses, gpu, auto, retries[0][1], module_ref(spec, root), deploy=deploys[0][1])
    timeouts = sorted({u.node.timeout_s or spec.traits.timeout_s for u in uses})
    if len(timeouts) > 1:
        plan.notes.append(
            f"function '{spec.name}': its nodes have timeouts {', '.join(f'{t:g} s' for t in timeouts)}; "
            f"its Service and Trigger use the longest, {timeouts[-1]:g} s"
        )
    return plan, bad, disagree


def _placement(spec: FunctionSpec, node: Node, deploy: Deployment) -> int:
    """How many GPUs one pod of the function gets: a node's deploy.gpu count, else its runOn, else the
    function's `gpu` (at least 1 when it names a pool or a GPU memory)."""
    wants = spec.traits.gpu or (1 if deploy.gpu_pool or deploy.gpu_memory else 0)
    if node.deploy.gpu_count is not None:
        return node.deploy.gpu_count
    if node.run_on == "gpu":
        return wants or 1
    if node.run_on in ("cpu", "engine"):
        return 0
    return wants


def choose_pool(profile: Profile, deploy: Deployment) -> tuple[str | None, str]:
    """(the GPU pool for these settings, '') or (None, why none fits): the pool named, else the smallest
    whose GPUs have `gpu_memory`, else default_gpu_pool, else the smallest pool."""
    pools = profile.pools()
    listing = ", ".join(f"{n} ({p.memory or 'memory not given'})" for n, p in pools.items())
    want = quantity(deploy.gpu_memory) if deploy.gpu_memory else None
    if deploy.gpu_pool:
        chosen = pools.get(deploy.gpu_pool)
        if chosen is None:
            return (
                None,
                f"asks for GPU pool '{deploy.gpu_pool}', which the profile's gpu_pools does not list: {listing}",
            )
        have = chosen.memory_bytes()
        if want is not None and (have is None or have < want):
            return None, (
                f"asks for GPU pool '{deploy.gpu_pool}' with gpu_memory {deploy.gpu_memory}, but that pool's GPUs "
                f"have {chosen.memory or 'no memory given (gpu_pools.' + deploy.gpu_pool + '.memory)'}"
            )
        return deploy.gpu_pool, ""
    if want is not None:
        fits = sorted((m, n) for n, p in pools.items() if (m := p.memory_bytes()) is not None and m >= want)
        if not fits:
            return (
                None,
                f"asks for gpu_memory {deploy.gpu_memory}, and no GPU pool of the profile has that much: {listing}",
            )
        return fits[0][1], ""
    if profile.default_gpu_pool:
        return profile.default_gpu_pool, ""
    return min(pools, key=lambda n: (pools[n].memory_bytes() is None, pools[n].memory_bytes() or 0, n)), ""


def _place(plan: FunctionPlan, profile: Profile) -> list[Problem]:
    """Settle the plan's GPU pool, or say which node asked for one that does not fit."""
    use = plan.uses[0]
    if not plan.gpu:
        if plan.deploy.gpu_pool or plan.deploy.gpu_memory:
            return [
                use.problem(
                    f"function '{plan.name}' asks for a GPU pool or gpu_memory but runs on CPU (runOn: cpu or a "
                    "deploy.gpu count of 0); give it a GPU or drop the pool",
                    "deploy.gpu",
                )
            ]
        return _clashes(plan, profile)
    chosen, why = choose_pool(profile, plan.deploy)
    if chosen is None:
        return [use.problem(f"function '{plan.name}' {why}", "deploy.gpu")]
    plan.pool, plan.pool_profile = chosen, profile.pools()[chosen]
    return _clashes(plan, profile)


def _clashes(plan: FunctionPlan, profile: Profile) -> list[Problem]:
    """Volumes or node selectors of the function that collide with what knflow or the pool already set."""
    out, use = [], plan.uses[0]
    pool = plan.gpu_profile(profile)
    taken = dict(RESERVED_VOLUMES)
    if plan.gpu and pool.cache:
        taken[CACHE_VOLUME] = pool.cache.mount
    paths = {path.rstrip("/"): name for name, path in taken.items() if path}
    for v in plan.deploy.volumes:
        if v.name in taken:
            out.append(
                use.problem(
                    f"function '{plan.name}': volume name '{v.name}' is knflow's own; rename it", "deploy.volumes"
                )
            )
        elif v.mount.rstrip("/") in paths:
            out.append(
                use.problem(
                    f"function '{plan.name}': volume '{v.name}' mounts at {v.mount}, where knflow mounts "
                    f"'{paths[v.mount.rstrip('/')]}'; choose another path",
                    "deploy.volumes",
                )
            )
    if plan.gpu:
        for key, value in plan.deploy.node_selector.items():
            if pool.node_selector.get(key, value) != value:
                out.append(
                    use.problem(
                        f"function '{plan.name}': node_selector {key}={value} contradicts its GPU pool "
                        f"'{plan.pool}', which selects {key}={pool.node_selector[key]}",
                        "deploy.node_selector",
                    )
                )
    return out


def _disagreement(function: str, what: str, values: Sequence[tuple[Use, T]], show: Callable[[T], str]) -> list[str]:
    if len(values) < 2:
        return []
    first_use, first = values[0]
    for use, value in values[1:]:
        if value != first:
            return [
                (
                    f"function '{function}' is deployed once (one Knative Service and one Trigger), "
                    f"but its nodes ask for a different {what}: {first_use.where()} has {show(first)}; "
                    f"{use.where()} has {show(value)}. "
                    f"Give both nodes the same {what}, or give one of them a function of its own."
                )
            ]
    return []


def _show_mapping(value: dict) -> str:
    return "{" + ", ".join(f"{k}: {v}" for k, v in value.items()) + "}"


def _show_retry(r: Retry) -> str:
    return f"{{retries: {r.retries}, backoff: {r.backoff}, delay_s: {r.delay_s:g}}}"


def module_ref(spec: FunctionSpec, root: Path) -> str | None:
    """How the image names the module that defines `spec`: a path relative to the project root, or a
    dotted module name for an installed package; None for a builtin (loaded by name, lazily)."""
    mod_name = spec.fn.__module__
    if BUILTINS.get(spec.name) == mod_name:
        return None
    module = sys.modules.get(mod_name)
    file = getattr(module, "__file__", None)
    if file:
        try:
            return Path(file).resolve().relative_to(root.resolve()).as_posix()
        except ValueError:
            pass
    installed = file is not None and any(part in ("site-packages", "dist-packages") for part in Path(file).parts)
    if not installed:
        raise KnativeError(
            f"function '{spec.name}' is defined in {file or mod_name}, outside the project directory {root} that the "
            "image is built from. Move the module into the project, or install it in the image as a package.",
            function=spec.name,
        )
    return mod_name
