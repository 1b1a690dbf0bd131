"""Cron triggers become PingSources that post straight to the router's cluster-local broker ingress. Pure.

The event has type `dev.knative.sources.ping`, the trigger's `data` as JSON, and the extension
`knflowpipeline=NAME`, which tells the router the pipeline to start.
"""

from __future__ import annotations

import json
from typing import Any

from broker import extensions as ext
from knative import naming
from knative.errors import KnativeError
from knative.profile import Profile
from router.pipeline import Pipeline

PING_TYPE = "dev.knative.sources.ping"


def ping_sources(pipelines: list[Pipeline], profile: Profile) -> list[dict[str, Any]]:
    out = []
    for p in sorted(pipelines, key=lambda p: p.name):
        crons = [t for t in p.triggers if t.type == "cron"]
        for i, t in enumerate(crons):
            if t.data is not None and not isinstance(t.data, dict):
                raise KnativeError(
                    f"pipeline '{p.name}': cron trigger data must be a mapping "
                    f"(a PingSource sends a JSON object), got {t.data!r}",
                    pipeline=p.name,
                )
            suffix = f"-{i + 1}" if len(crons) > 1 else ""
            name = f"knflow-cron-{naming.slug(p.name, naming.MAX_NAME - 12 - len(suffix))}{suffix}"
            spec: dict[str, Any] = {"schedule": t.cron}  # `every: 15m` is `*/15 * * * *` (router/intervals.py)
            if t.timezone:
                spec["timezone"] = t.timezone
            spec["contentType"] = "application/json"
            spec["data"] = json.dumps(t.data or {}, sort_keys=True, ensure_ascii=False)
            spec["ceOverrides"] = {"extensions": {ext.PIPELINE: p.name}}
            spec["sink"] = naming.service_ref(naming.router_events_service(profile), "/events")  # no token needed there
            out.append(
                {
                    "apiVersion": "sources.knative.dev/v1",
                    "kind": "PingSource",
                    "metadata": naming.metadata(
                        name, profile.namespace, profile, "source", extra_labels={naming.PIPELINE_LABEL: p.name}
                    ),
                    "spec": spec,
                }
            )
    return out
