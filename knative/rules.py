"""The machinery of knflow's admission-webhook checks: a rule registry, what a rule knows about the
cluster (`Cluster`), and the problems rules report (`RuleProblem`). The rules themselves are in
`serving_rules` and `eventing_rules`; `webhook_rules` runs them all. Pure.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from knative.features import ON_BY_DEFAULT, enabled_flags
from knative.profile import Profile


@dataclass(frozen=True)
class RuleProblem:
    rule: str
    resource: str
    path: str
    message: str
    severity: str = "error"  # "warning": depends on cluster settings knflow cannot see

    def __str__(self) -> str:
        return f"{self.resource}: {self.path}: {self.message}"


@dataclass(frozen=True)
class Cluster:
    """What the rules need to know about the cluster's Knative configuration."""

    features: frozenset[str] = frozenset()
    max_revision_timeout_s: int = 600
    container_concurrency_max: int = 1000
    max_scale_limit: int = 0
    allow_zero_initial_scale: bool = False
    delivery_timeout: bool = True  # eventing config-features delivery-timeout (beta, on by default)
    delivery_retry_after: bool = False  # eventing config-features delivery-retryafter (alpha, off)
    cross_namespace_refs: bool = False
    disabled: frozenset[str] = frozenset()  # Serving flags the profile turns off (even those on by default)

    def has(self, flag: str) -> bool:
        """Whether the Serving flag is on: named as enabled, or on by default and not turned off."""
        return flag in self.features or (flag in ON_BY_DEFAULT and flag not in self.disabled)

    @classmethod
    def from_profile(cls, profile: Profile, extra_features: Iterable[str] = ()) -> Cluster:
        s = profile.serving
        return cls(
            frozenset(enabled_flags(profile)) | frozenset(extra_features),
            s.max_revision_timeout_s,
            s.container_concurrency_max,
            s.max_scale_limit,
            s.allow_zero_initial_scale,
            disabled=frozenset(flag for flag, state in s.features.items() if state == "disabled"),
        )


Rule = Callable[[dict, Cluster], list[tuple[str, str]]]  # -> (path, message)
RULES: dict[str, list[Rule]] = {}
WARNING_RULES: set[str] = set()


def rule(*kinds: str, warning: bool = False) -> Callable[[Rule], Rule]:
    def register(fn: Rule) -> Rule:
        for kind in kinds:
            RULES.setdefault(kind, []).append(fn)
        if warning:
            WARNING_RULES.add(fn.__name__)
        return fn

    return register


def check(manifests: Iterable[dict[str, Any]], cluster: Cluster) -> list[RuleProblem]:
    out = []
    for m in manifests:
        resource = f"{m.get('kind')}/{m.get('metadata', {}).get('name')}"
        for fn in RULES.get(m.get("kind", ""), []) + RULES.get("*", []):
            severity = "warning" if fn.__name__ in WARNING_RULES else "error"
            out += [RuleProblem(fn.__name__, resource, path, msg, severity) for path, msg in fn(m, cluster)]
    return out


def spec_of(m: dict) -> dict:
    return m.get("spec") or {}


def template_of(m: dict) -> tuple[dict, dict]:
    t = spec_of(m).get("template") or {}
    return t.get("metadata") or {}, t.get("spec") or {}
