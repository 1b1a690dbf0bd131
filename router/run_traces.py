"""A run's trace, kept in its run document, since the router keeps nothing between events.

One trace per run. When a run starts (or is redriven in place, or re-run as a new run) the router picks
the trace id and the id of the run's root span, asks the sampler, and stores them in the document as
`trace` (`traceparent`, `start_ns`, and `links`: the run it replays, the trigger event's own trace); the
stores keep it as any other field. Every router that later handles the run reads it there:

- a node attempt (or a fan-out item's) span has an id derived from the trace and the invoke id
  (`broker.tracing.derived_span_id`), so the router that publishes the invoke makes the invoke's
  `traceparent` name it, and the router that applies the result (maybe another one) emits it, from the
  node's `queued_at` to now, a child of the run's span (an item's: of its fan-out node's span);
- the run's span is emitted by the router that ends the run, from `start_ns` to now, with the ids chosen
  at its start. Spans emitted when they end are the OpenTelemetry way for work that outlives a process:
  nothing waits in memory, and a router killed mid-run loses no span but those of the steps it lost.

A redrive starts a new trace (a new `trace` in the same document) with a link to the one before; a
re-run's new run links to the old run's trace. Nothing here runs unless `broker.tracing.ON`.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from cloudevents.core.v1.event import CloudEvent

from broker import events, tracing
from broker import extensions as ext
from broker.codec import trusted_event
from router.pipeline import Pipeline
from router.runs import NODE_FINAL, ItemState, RunDoc, TraceDoc, Transition, split_key

_NS_PER_MS = 1_000_000


def new_trace(
    pipeline: str, trigger: dict[str, Any] | None = None, replays: RunDoc | None = None, kind: str = "rerun"
) -> TraceDoc | None:
    """A trace for a run of `pipeline` starting now; linked to the trace of the run it `replays` (as `kind`:
    rerun, redrive), and to the trigger event's own trace when it carries one."""
    links = []
    if replays is not None and (before := replays.get("trace")):
        links.append((before["traceparent"], kind))
    if trigger and isinstance(upstream := trigger.get(ext.TRACEPARENT), str):
        links.append((upstream, "trigger"))
    traceparent = tracing.new_root(f"run {pipeline}", links)
    if traceparent is None:
        return None
    return {
        "traceparent": traceparent,
        "start_ns": time.time_ns() // _NS_PER_MS * _NS_PER_MS,  # to the ms, as the `queued_at` of its nodes
        "links": [{"traceparent": t, "kind": k} for t, k in links],
    }


def _ids(run: RunDoc) -> tuple[int, int, int] | None:
    trace = run.get("trace")
    return tracing.parse_traceparent(trace["traceparent"]) if trace else None


def node_traceparent(run: RunDoc, key: str, attempt: int) -> str | None:
    """The context of attempt `attempt` of node (or item) `key`: what its invoke's `traceparent` carries."""
    ids = _ids(run)
    if ids is None:
        return None
    return tracing.format_traceparent(
        ids[0], tracing.derived_span_id(ids[0], events.invoke_id(run["id"], key, attempt)), ids[2]
    )


def stamp(run: RunDoc, out: list[CloudEvent]) -> list[CloudEvent]:
    """Events without a trace context (the run's own `run.*`) carrying the run span's."""
    trace = run.get("trace")
    if not trace:
        return out
    return [
        e
        if e.get_extension(ext.TRACEPARENT)
        else trusted_event({**e.get_attributes(), ext.TRACEPARENT: trace["traceparent"]}, e.get_data())
        for e in out
    ]


def node_ended(
    run: RunDoc, state: ItemState | None, addr: events.Address, succeeded: bool, data: dict[str, Any]
) -> None:
    """Emit the span of the node attempt (or item) that `addr`'s result just ended; `state` is its state
    after the result (an item's is not in the light run that `commit` returns)."""
    trace = run.get("trace")
    own = node_traceparent(run, addr.node, addr.attempt)
    if not trace or own is None or state is None:
        return
    node, index = split_key(addr.node)
    parent = trace["traceparent"] if index is None else node_traceparent(run, node, run["nodes"][node]["attempt"])
    error = data.get("error") if not succeeded else None
    tracing.emit(
        f"node {addr.node}",
        own,
        parent,
        tracing.iso_to_ns(state.get("queued_at")),
        _node_attributes(run, addr.node, addr.attempt, "succeeded" if succeeded else "failed", addr.function),
        error=_message(error) if not succeeded else None,
    )


def step_ended(pipeline: Pipeline, run: RunDoc, winners: Iterable[Transition], run_won: bool) -> None:
    """Emit the spans a committed step ended: fan-out nodes that joined, and the run if it ended."""
    for t in winners:
        spec = pipeline.nodes.get(t.node)
        if spec is None or not spec.fans_out or t.fields.get("status") not in NODE_FINAL:
            continue
        state = run["nodes"][t.node]
        own = node_traceparent(run, t.node, state["attempt"])
        if own is not None:
            status = state["status"]
            tracing.emit(
                f"node {t.node}",
                own,
                run["trace"]["traceparent"],
                tracing.iso_to_ns(state.get("queued_at")),
                _node_attributes(run, t.node, state["attempt"], status, spec.function),
                error=_message(state.get("error")) if status != "succeeded" else None,
            )
    if run_won:
        run_ended(run)


def run_ended(run: RunDoc) -> None:
    """Emit the run's span: from its trace's start to now, with the links its trace keeps."""
    trace = run.get("trace")
    if not trace:
        return
    attributes: dict[str, str | int] = {
        "knflow.run.id": run["id"],
        "knflow.pipeline": run["pipeline"],
        "knflow.run.status": run["status"],
    }
    if run.get("replay_of"):
        attributes["knflow.run.replay_of"] = str(run["replay_of"])
    trigger = run.get("trigger") or {}
    for name, key in (
        ("id", "event_id"),
        ("source", "event_source"),
        ("type", "event_type"),
        ("subject", "event_subject"),
    ):
        if isinstance(trigger.get(name), str):
            attributes[f"cloudevents.{key}"] = trigger[name]
    if isinstance(trigger.get("specversion"), str):
        attributes["cloudevents.event_spec_version"] = trigger["specversion"]
    tracing.emit(
        f"run {run['pipeline']}",
        trace["traceparent"],
        None,
        trace.get("start_ns"),
        attributes,
        links=[(link["traceparent"], link["kind"]) for link in trace.get("links") or []],
        error=_message(run.get("error")) if run["status"] == "failed" else None,
    )


def _node_attributes(run: RunDoc, key: str, attempt: int, status: str, function: str | None) -> dict[str, str | int]:
    out: dict[str, str | int] = {
        "knflow.run.id": run["id"],
        "knflow.pipeline": run["pipeline"],
        "knflow.node": key,
        "knflow.attempt": attempt,
        "knflow.node.status": status,
    }
    if function:
        out["knflow.function"] = function
    return out


def _message(error: object) -> str:
    if isinstance(error, dict):
        return f"{error.get('type', 'Error')}: {error.get('message', '')}"
    return "failed" if error is None else str(error)
