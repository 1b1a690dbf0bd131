"""Which functions the pipelines use, and how each one is deployed: one Knative Service per function,
so every node that calls it must agree on scaling, placement (CPU or GPU) and retry policy. Pure.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TypeVar

from functions.registry import BUILTINS, Registry
from functions.sdk import FunctionSpec, Retry
from knative import scaling
from knative.errors import KnativeError, NodesDisagree, ScalingInvalid
from knative.profile import Profile
from router.pipeline import Node, Pipeline, Problem

T = TypeVar("T")


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


def plan_functions(
    pipelines: Iterable[Pipeline], registry: Registry, profile: Profile, root: Path
) -> list[FunctionPlan]:
    """One plan per function used, sorted by name. Raises with every problem found, not just the first."""
    uses: dict[str, list[Use]] = {}
    for p in pipelines:
        for node in p.nodes.values():
            uses.setdefault(node.function, []).append(Use(p, node))
    plans, scaling_problems, disagreements = [], [], []
    for name in sorted(uses):
        spec = registry.get(name)
        plan, bad_scaling, disagree = _plan_one(spec, uses[name], profile, root)
        scaling_problems += bad_scaling
        disagreements += disagree
        plans.append(plan)
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
    placements = [(u, _placement(spec, u.node)) for u in uses]
    disagree += _disagreement(spec.name, "placement", placements, lambda g: f"runOn {'gpu' if g else 'cpu'}")
    retries = [(u, u.node.retry or spec.traits.retry) for u in uses]
    disagree += _disagreement(spec.name, "retry policy", retries, _show_retry)

    gpu = placements[0][1]
    timeout_s = max(u.node.timeout_s or spec.traits.timeout_s for u in uses)
    retention = profile.gpu.retention_period if gpu else None
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
    plan = FunctionPlan(spec.name, spec, uses, gpu, auto, retries[0][1], module_ref(spec, root))
    timeouts = sorted({u.node.timeout_s or spec.traits.timeout_s for u in uses})
    if len(timeouts) > 1:
        plan.notes.append(
            f"function '{spec.name}': its nodes have timeouts {', '.join(f'{t:g} s' for t in timeouts)}; "
            f"its Service and Trigger use the longest, {timeouts[-1]:g} s"
        )
    return plan, bad, disagree


def _placement(spec: FunctionSpec, node: Node) -> int:
    if node.run_on == "gpu":
        return spec.traits.gpu or 1
    if node.run_on in ("cpu", "engine"):
        return 0
    return spec.traits.gpu


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
