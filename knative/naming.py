"""Names and labels of the resources knflow generates. Pure.

Every resource carries `app.kubernetes.io/managed-by: knflow`, which `knflow status` selects on, and an
`app.kubernetes.io/component` that says what it is (and which output file it goes to).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any

from knative.profile import Profile

MANAGED_BY = "app.kubernetes.io/managed-by"
COMPONENT = "app.kubernetes.io/component"
FUNCTION_LABEL = "knflow.dev/function"
VISIBILITY_LABEL = "networking.knative.dev/visibility"  # Knative Serving: `cluster-local` = no public route
CLUSTER_LOCAL = "cluster-local"
PIPELINE_LABEL = "knflow.dev/pipeline"
SELECTOR = f"{MANAGED_BY}=knflow"
MAX_NAME = 63


def function_service(function: str) -> str:
    return f"knflow-{function}"


def router_events_service(profile: Profile) -> str:
    """The router's cluster-local broker ingress (`knflow serve router --broker-ingress`): what Triggers,
    PingSources and dead-letter sinks deliver to."""
    return f"{profile.router.name}-events"


def pipelines_config_map(profile: Profile) -> str:
    return f"{profile.router.name}-pipelines"


def short_hash(text: str, length: int = 6) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def slug(text: str, max_chars: int) -> str:
    out = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return out[:max_chars].rstrip("-") or "x"


def labels(profile: Profile, component: str, **extra: str) -> dict[str, str]:
    out = dict(profile.labels)  # the profile's own labels first: they cannot hide knflow's
    out.update(
        {
            "app.kubernetes.io/name": "knflow",
            "app.kubernetes.io/part-of": "knflow",
            MANAGED_BY: "knflow",
            COMPONENT: component,
        }
    )
    out.update(extra)
    return out


def metadata(
    name: str,
    namespace: str | None,
    profile: Profile,
    component: str,
    annotations: dict[str, str] | None = None,
    extra_labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name}
    if namespace is not None:
        out["namespace"] = namespace
    out["labels"] = labels(profile, component, **(extra_labels or {}))
    if annotations:
        out["annotations"] = annotations
    return out


def service_ref(name: str, uri: str | None = None) -> dict[str, Any]:
    """A Knative Destination to a Knative Service, with a path on it when `uri` is given."""
    out: dict[str, Any] = {"ref": {"apiVersion": "serving.knative.dev/v1", "kind": "Service", "name": name}}
    if uri:
        out["uri"] = uri
    return out
