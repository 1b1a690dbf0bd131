"""Which pipelines an event starts (pure), and the run ids that make ingress idempotent.

A `cloudevent` trigger's `filter` is an exact match on CloudEvent attributes, as a Knative Trigger's
`spec.filter.attributes`. A run started by an event gets an id derived from the pipeline and the event's
`source` and `id`, so a redelivered event finds its run instead of starting a second one.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, UTC
from typing import Any
from collections.abc import Iterable
from zoneinfo import ZoneInfo

from broker import extensions as ext
from router.pipeline import Pipeline, Trigger


PING_TYPE = "dev.knative.sources.ping"  # what a PingSource (a cron trigger on Knative) sends
WEBHOOK_TYPE = "dev.knflow.webhook"  # a webhook's trigger event (router/service/hooks.py)
MANUAL_TYPE = "dev.knflow.manual"  # a run started from code or the CLI (knflow/local.py)
TRIGGER_KINDS = {WEBHOOK_TYPE: "webhook", PING_TYPE: "cron", MANUAL_TYPE: "manual"}


def trigger_kind(trigger: dict[str, Any]) -> str:
    """What started a run, as a bounded metric label: webhook, cron, manual, or cloudevent (any other event)."""
    return TRIGGER_KINDS.get(str(trigger.get("type")), "cloudevent")


def trigger_matches(trigger: Trigger, attributes: dict[str, Any], pipeline: str) -> bool:
    if trigger.type == "cron":  # a PingSource names the pipeline it ticks for
        return attributes.get("type") == PING_TYPE and attributes.get(ext.PIPELINE) == pipeline
    if trigger.type != "cloudevent" or not trigger.filter:
        return False
    return all(key in attributes and str(attributes[key]) == want for key, want in trigger.filter.items())


def pipelines_for(pipelines: Iterable[Pipeline], attributes: dict[str, Any]) -> list[Pipeline]:
    return [p for p in pipelines if any(trigger_matches(t, attributes, p.name) for t in p.triggers)]


def next_ticks(pipelines: Iterable[Pipeline], after: datetime) -> list[tuple[datetime, Pipeline, Trigger]]:
    """When each cron trigger fires next after `after` (croniter; `timezone` as an IANA name, default UTC)."""
    from croniter import croniter

    out = []
    for p in pipelines:
        for t in p.triggers:
            if t.type == "cron" and t.cron:  # a schedule, or the cron expression of an interval (`every`)
                zone = ZoneInfo(t.timezone) if t.timezone else UTC
                out.append((croniter(t.cron, after.astimezone(zone)).get_next(datetime), p, t))
    return sorted(out, key=lambda x: x[0])


def has_trigger(pipeline: Pipeline, kind: str) -> bool:
    return any(t.type == kind for t in pipeline.triggers)


def run_id_for(pipeline: str, source: str, event_id: str) -> str:
    return hashlib.sha256(f"{pipeline}\n{source}\n{event_id}".encode()).hexdigest()[:16]
