"""Which run events (`dev.knflow.run.started|succeeded|failed|cancelled`) the router publishes.

Each one is a message on the broker per run start and end; inside knflow only a pipeline whose trigger listens
to run events (router/triggers.py) consumes them, and in-process waiters use the router's run-end hook
(`Router.watch_ends`). So with `auto` (KNFLOW_RUN_EVENTS, the default) a run event goes out only when a
pipeline of the router's catalogue has a trigger that may match it; `all` publishes every one, for consumers
outside knflow (a subscriber of `knflow.run.>`, a Knative Trigger that no pipeline of this router asked for).

The answer is kept per catalogue version (the list `Pipelines.all()` returns, the same object until the
catalogue changes or its cache expires), so a run pays a dictionary lookup, not a walk over the triggers.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Final, Literal, Protocol

import structlog

from broker import events
from broker import extensions as ext

if TYPE_CHECKING:
    from router.pipeline import Pipeline, Trigger

log = structlog.get_logger("knflow.router")

RunEvents = Literal["auto", "all"]
RUN_EVENTS_MODES: Final = ("auto", "all")
# attributes that differ from run to run (and the trace context stamped on them): a filter on one may match
_PER_RUN: Final = frozenset({"id", "subject", "time", ext.RUN, ext.HOPS, "traceparent", "tracestate"})


class Catalogue(Protocol):
    async def all(self) -> list[Pipeline]: ...


def may_match(trigger: Trigger, kind: str, pipeline: str) -> bool:
    """Whether `trigger` may start a run on the `kind` run event of a run of `pipeline` (router/triggers.py
    `trigger_matches` on the attributes every such event has; one it has per run may match)."""
    if trigger.type != "cloudevent" or not trigger.filter:
        return False
    fixed = {
        "type": kind,
        "source": events.ROUTER_SOURCE,
        "specversion": "1.0",
        "datacontenttype": events.JSON,
        ext.PIPELINE: pipeline,
    }
    for key, want in trigger.filter.items():
        if key in fixed:
            if fixed[key] != want:
                return False
        elif key not in _PER_RUN:  # an attribute run events never carry
            return False
    return True


def consumed(pipelines: Iterable[Pipeline], kind: str, pipeline: str) -> bool:
    return any(may_match(t, kind, pipeline) for p in pipelines for t in p.triggers)


class RunEventGate:
    """`await gate.wanted(kind, pipeline)`: publish this run event? (`mode` all: always)."""

    def __init__(self, mode: RunEvents, catalogue: Catalogue) -> None:
        if mode not in RUN_EVENTS_MODES:
            raise ValueError(f"run events {mode!r}: expected one of {', '.join(RUN_EVENTS_MODES)}")
        self.mode = mode
        self.catalogue = catalogue
        self._version: list[Pipeline] | None = None  # the catalogue the answers below are for
        self._answers: dict[tuple[str, str], bool] = {}

    async def wanted(self, kind: str, pipeline: str) -> bool:
        if self.mode == "all":
            return True
        try:
            pipelines = await self.catalogue.all()
        except Exception as exc:  # the store is down: publish rather than lose a chained run
            log.warning("catalogue unreadable; run event published", type=kind, pipeline=pipeline, error=str(exc))
            return True
        if pipelines is not self._version:
            self._version, self._answers = pipelines, {}
        answer = self._answers.get((kind, pipeline))
        if answer is None:
            answer = self._answers[(kind, pipeline)] = consumed(pipelines, kind, pipeline)
        return answer
