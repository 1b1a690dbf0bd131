"""How deep a chain of runs goes: a run's end event (`dev.knflow.run.*`) may start other pipelines' runs,
whose end events may start more. Each run event carries `knflowhops`, one more than its run's trigger;
the router refuses an event `MAX_HOPS` deep (KNFLOW_MAX_HOPS), so that pipelines starting each other stop.
"""

from __future__ import annotations

from typing import Any

from broker import extensions as ext
from broker.errors import KnflowError

MAX_HOPS = 16  # the default of KNFLOW_MAX_HOPS (knflow.settings) and of the cluster profile's max_hops


class HopLimit(KnflowError):
    """An event too many pipeline hops deep: pipelines that start each other through run events loop."""

    def __init__(self, message: str, *, event_id: str | None = None, hops: int | None = None) -> None:
        super().__init__(message, event_id=event_id, hops=hops)
        self.event_id = event_id
        self.hops = hops


def hops_of(trigger: dict[str, Any]) -> int:
    """How many run events deep a trigger is (`knflowhops`; 0 for an event from outside)."""
    raw = str(trigger.get(ext.HOPS) or "0")
    return int(raw) if raw.isascii() and raw.isdigit() else 0
