"""Autoscaling: a function's traits, a node's `scaling:` overrides, and the Knative annotations and
spec fields they become, with values inside the ranges Serving's webhook accepts. Pure.

Node keys (YAML, camelCase as in Knative): minScale, maxScale, target, metric, scaleDownDelay,
retentionPeriod, initialScale, containerConcurrency, timeoutSeconds. Durations take a Go duration
string ("5m", "90s") or a number of seconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from knative.durations import parse_go_duration_s
from knative.profile import ServingProfile

PREFIX = "autoscaling.knative.dev/"
KPA = "kpa.autoscaling.knative.dev"
METRICS = ("concurrency", "rps")
WINDOW_MAX_S = 3600
INT_KEYS = ("minScale", "maxScale", "initialScale", "containerConcurrency", "timeoutSeconds")
DURATION_KEYS = ("scaleDownDelay", "retentionPeriod")
SCALING_KEYS = (*INT_KEYS, "target", "metric", *DURATION_KEYS)


@dataclass(frozen=True)
class Autoscaling:
    min_scale: int = 0
    max_scale: int = 0
    initial_scale: int | None = None
    target: float | None = None
    metric: str | None = None
    scale_down_delay: str | None = None
    retention_period: str | None = None
    container_concurrency: int = 0
    timeout_s: int = 60

    def annotations(self) -> dict[str, str]:
        out = {PREFIX + "class": KPA}
        if self.metric:
            out[PREFIX + "metric"] = self.metric
        if self.target is not None:
            out[PREFIX + "target"] = _number(self.target)
        out[PREFIX + "min-scale"] = str(self.min_scale)
        out[PREFIX + "max-scale"] = str(self.max_scale)
        if self.initial_scale is not None:
            out[PREFIX + "initial-scale"] = str(self.initial_scale)
        if self.scale_down_delay:
            out[PREFIX + "scale-down-delay"] = self.scale_down_delay
        if self.retention_period:
            out[PREFIX + "scale-to-zero-pod-retention-period"] = self.retention_period
        return out

    def with_overrides(self, scaling: dict[str, Any]) -> Autoscaling:
        """`scaling` as returned by `scaling_problems`' normalisation (`normalize`)."""
        names = {
            "minScale": "min_scale",
            "maxScale": "max_scale",
            "initialScale": "initial_scale",
            "target": "target",
            "metric": "metric",
            "scaleDownDelay": "scale_down_delay",
            "retentionPeriod": "retention_period",
            "containerConcurrency": "container_concurrency",
            "timeoutSeconds": "timeout_s",
        }
        return replace(self, **{names[k]: v for k, v in scaling.items()})


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def normalize(raw: dict[str, Any]) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """Checked, normalised overrides and a list of (key, problem). Durations become Go strings."""
    out: dict[str, Any] = {}
    problems: list[tuple[str, str]] = []
    for key, value in raw.items():
        if key not in SCALING_KEYS:
            problems.append((str(key), f"unknown scaling key {key!r}; expected one of {', '.join(SCALING_KEYS)}"))
        elif key in INT_KEYS:
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                problems.append((key, f"{key} has value {value!r}. Expected an integer >= 0."))
            else:
                out[key] = value
        elif key == "target":
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0.01:
                problems.append(
                    (
                        key,
                        f"target has value {value!r}. "
                        "Expected a number >= 0.01 (requests in flight, or per second with metric rps).",
                    )
                )
            else:
                out[key] = float(value)
        elif key == "metric":
            if value not in METRICS:
                problems.append(
                    (
                        key,
                        f"metric has value {value!r}. "
                        f"Expected one of {', '.join(METRICS)} (the KPA autoscaler; it scales to zero).",
                    )
                )
            else:
                out[key] = value
        else:
            text, problem = _duration(key, value)
            if problem:
                problems.append((key, problem))
            else:
                out[key] = text
    return out, problems


def _duration(key: str, value: Any) -> tuple[str, str | None]:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return "", f"{key} has value {value!r}. Expected a duration such as '5m' or a number of seconds."
    text = f"{value}s" if isinstance(value, (int, float)) else value
    try:
        seconds = parse_go_duration_s(text)
    except ValueError as exc:
        return "", f"{key}: {exc}"
    if seconds < 0 or seconds > WINDOW_MAX_S:
        return "", f"{key} has value {value!r}. Expected a duration from 0s to 1h."
    if key == "scaleDownDelay" and seconds != seconds.to_integral_value():
        return "", f"{key} has value {value!r}. Knative takes it in whole seconds."
    return text, None


def range_problems(scale: Autoscaling, serving: ServingProfile) -> list[tuple[str, str]]:
    """Problems between keys and against the cluster's limits, as (key, problem)."""
    out = []
    if scale.max_scale and scale.max_scale < scale.min_scale:
        out.append(
            (
                "maxScale",
                f"maxScale ({scale.max_scale}) is less than minScale ({scale.min_scale}); "
                "give maxScale >= minScale, or 0 for no limit",
            )
        )
    if serving.max_scale_limit:
        if scale.max_scale == 0:
            out.append(
                (
                    "maxScale",
                    "maxScale 0 (unlimited) is not allowed: "
                    f"the cluster's max-scale-limit is {serving.max_scale_limit}",
                )
            )
        elif scale.max_scale > serving.max_scale_limit:
            out.append(
                (
                    "maxScale",
                    f"maxScale ({scale.max_scale}) is above the cluster's max-scale-limit ({serving.max_scale_limit})",
                )
            )
    if scale.initial_scale == 0 and not serving.allow_zero_initial_scale:
        out.append(
            (
                "initialScale",
                'initialScale 0 needs allow-zero-initial-scale: "true" in config-autoscaler '
                "(set serving.allow_zero_initial_scale in the profile)",
            )
        )
    if scale.container_concurrency > serving.container_concurrency_max:
        out.append(
            (
                "containerConcurrency",
                f"containerConcurrency ({scale.container_concurrency}) is above the cluster's "
                f"container-concurrency-max-limit ({serving.container_concurrency_max})",
            )
        )
    if not 0 < scale.timeout_s <= serving.max_revision_timeout_s:
        out.append(
            (
                "timeoutSeconds",
                (
                    f"the request timeout ({scale.timeout_s} s) must be from 1 to "
                    f"max-revision-timeout-seconds ({serving.max_revision_timeout_s} s); "
                    "lower the function's timeout_s, or raise max-revision-timeout-seconds in config-defaults "
                    "and serving.max_revision_timeout_s in the profile"
                ),
            )
        )
    return out


def from_traits(traits: Any, timeout_s: float, retention_period: str | None) -> Autoscaling:
    return Autoscaling(
        min_scale=traits.min_scale,
        max_scale=traits.max_scale,
        container_concurrency=traits.concurrency,
        timeout_s=max(1, math.ceil(timeout_s)),
        retention_period=retention_period or None,
    )
