"""Replay, cancel and recovery decisions (pure): which nodes go back to `pending`, what a re-run starts
from, what a cancel stops, which invokes a sweeper publishes again.

Redrive in place: failed, cancelled and never-finished nodes, and everything downstream of them, go back
to `pending`; their current state moves into the node's `attempts` history and the next schedule gives
them the next attempt number (so new invoke ids). Succeeded nodes keep their outputs and are not invoked
again. `from_node` also resets that node and everything downstream of it, even if they succeeded.

A fan-out node (`foreach`, `loop`, `replicas`) that is redriven because it failed itself keeps its
succeeded items and their outputs: only its failed, cancelled and never-finished items run again, each
with its next attempt. When it is reset because something upstream of it runs again (or by `from_node`),
its list may change, so every item runs again.
"""

from __future__ import annotations

import re
from typing import Any

from broker.errors import KnflowError
from broker.events import error_doc
from router import engine
from router.pipeline import ON_FAILURE_NODE, Pipeline
from router.runs import (
    CANCELLED,
    FAILED,
    IN_FLIGHT,
    PENDING,
    RUN_FINAL,
    RUNNING,
    SCHEDULED,
    SUCCEEDED,
    AttemptEntry,
    ItemState,
    NodeFields,
    RedriveEntry,
    RunChange,
    RunDoc,
    Transition,
    item_key,
    item_map,
    item_states,
    new_fan,
    ms_between,
)

DURATION = re.compile(r"^(\d+(?:\.\d+)?)(s|m|h|d)$")
SECONDS_PER = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class ReplayRefused(KnflowError):
    """A redrive, re-run or cancel that the run's state does not allow (or a race lost to another writer)."""

    def __init__(self, message: str, *, run_id: str | None = None) -> None:
        super().__init__(message, run_id=run_id)
        self.run_id = run_id


class InvalidDuration(KnflowError):
    """A duration (`since`) that is not a number and a unit; `value` is what was given."""

    def __init__(self, message: str, *, value: object = None) -> None:
        super().__init__(message, value=None if value is None else str(value))
        self.value = value


def plan_redrive(
    p: Pipeline, run: RunDoc, now: str, from_node: str | None = None, by: str | None = None
) -> tuple[list[Transition], RunChange]:
    """What a redrive in place changes (see the module's docstring); the router commits it."""
    if run["status"] == RUNNING:
        raise ReplayRefused(
            f"run '{run['id']}' is still running; cancel it first or wait for it to end", run_id=run["id"]
        )
    if from_node is not None and from_node not in p.nodes:
        raise ReplayRefused(
            f"run '{run['id']}': --from names unknown node '{from_node}'. Nodes: {', '.join(p.nodes)}", run_id=run["id"]
        )
    nodes = run["nodes"]
    seeds = {n for n, s in nodes.items() if s["status"] in (FAILED, CANCELLED, PENDING) or s["status"] in IN_FLIGHT}
    if from_node is not None:
        seeds.add(from_node)
    reset: set[str] = set()
    whole: set[str] = set() if from_node is None else p.downstream(from_node)  # fan-out nodes whose every item re-runs
    for n in seeds - {ON_FAILURE_NODE}:
        reset |= p.downstream(n)
        whole |= p.downstream(n) - {n}
    if reset and ON_FAILURE_NODE in nodes and nodes[ON_FAILURE_NODE]["status"] != PENDING:
        reset.add(ON_FAILURE_NODE)  # the handler runs again if the redrive fails again
    if not reset:
        raise ReplayRefused(
            f"run '{run['id']}' has nothing to redrive: every node succeeded or was skipped. "
            "Use --from NODE to re-run part of it.",
            run_id=run["id"],
        )
    transitions = []
    items_reset: list[str] = []
    for n in [*p.order, ON_FAILURE_NODE]:
        if n not in reset:
            continue
        state = nodes[n]
        history = list(state.get("attempts") or [])
        if state["attempt"] > 0:
            history.append(_attempt_entry(state))
        fields: NodeFields = {
            "status": PENDING,
            "output": None,
            "error": None,
            "attempts": history,
            "started_at": None,
            "finished_at": None,
            "duration_ms": None,
            "queued_at": None,
        }
        if isinstance(state.get("items"), dict):  # a full document's (the router reads one to redrive)
            old = item_states(state)
            base = max((item.get("attempt", 0) for item in old), default=0)
            items, again = _reset_items(old, keep_succeeded=n not in whole, attempt=base)
            fields["items"] = item_map(items)
            fields["fan"] = new_fan(items, None if len(again) == len(items) else again, base)
            items_reset += [item_key(n, i) for i in again]
        transitions.append(Transition(n, frozenset({state["status"]}), fields, attempt=state["attempt"]))
    entry: RedriveEntry = {
        "at": now,
        "by": by,
        "kind": "redrive",
        "from": from_node,
        "reset": [t.node for t in transitions],
        "previous_status": run["status"],
    }
    if items_reset:
        entry["items"] = items_reset
    change = RunChange(
        frozenset({run["status"]}),
        {"status": RUNNING, "finished_at": None, "error": None, "replays": [*(run.get("replays") or []), entry]},
    )
    return transitions, change


def _attempt_entry(state: ItemState) -> AttemptEntry:
    """A node's current attempt, as its `attempts` history keeps it."""
    return {
        "attempt": state["attempt"],
        "status": state["status"],
        "error": state.get("error"),
        "queued_at": state.get("queued_at"),
        "started_at": state.get("started_at"),
        "finished_at": state.get("finished_at"),
        "duration_ms": state.get("duration_ms"),
        "queue_ms": ms_between(state.get("queued_at"), state.get("started_at")),
    }


def _reset_items(items: list[ItemState], keep_succeeded: bool, attempt: int) -> tuple[list[ItemState], list[int]]:
    """Items back to `pending` at `attempt` (the highest of the node's items, so that their next invoke ids are
    new), and which ones; succeeded items stay as they are when `keep_succeeded`."""
    out: list[ItemState] = []
    again: list[int] = []
    for i, item in enumerate(items):
        if keep_succeeded and item["status"] == SUCCEEDED:
            out.append(item)
            continue
        out.append({"status": PENDING, "attempt": attempt, "output": None, "error": None})
        again.append(i)
    return out, again


SAME_DATA: Any = object()  # a re-run keeps the trigger's data


def rerun_trigger(run: RunDoc, data: Any = SAME_DATA) -> dict[str, Any]:
    """The stored trigger event a re-run starts from; with `data`, the same event carrying that data."""
    trigger = run.get("trigger")
    if not isinstance(trigger, dict) or "type" not in trigger:
        raise ReplayRefused(f"run '{run['id']}' has no stored trigger event to re-run from", run_id=run["id"])
    return trigger if data is SAME_DATA else {**trigger, "data": data}


def plan_cancel(run: RunDoc, now: str, by: str | None = None) -> tuple[list[Transition], RunChange]:
    """What a cancel changes; the router commits it. Nothing new is scheduled: pending nodes are cancelled;
    nodes in flight keep their state, and their late results are recorded without moving the run."""
    if run["status"] in RUN_FINAL:
        raise ReplayRefused(f"run '{run['id']}' already ended {run['status']}", run_id=run["id"])
    fields: NodeFields = {
        "status": CANCELLED,
        "finished_at": now,
        "error": error_doc("Cancelled", f"run cancelled{' by ' + by if by else ''}"),
    }
    transitions = []
    for n, s in run["nodes"].items():
        if s["status"] == PENDING:
            transitions.append(Transition(n, frozenset({PENDING}), fields))
        elif s["status"] in IN_FLIGHT and isinstance(s.get("items"), dict):  # a fan-out node: its items not yet started
            transitions += [
                Transition(item_key(n, i), frozenset({PENDING}), fields)
                for i, item in enumerate(item_states(s))
                if item["status"] == PENDING
            ]
    return transitions, RunChange(frozenset({RUNNING}), {"status": CANCELLED, "finished_at": now, "cancelled_by": by})


def stale_invokes(p: Pipeline, run: RunDoc, now: str, queued_before: str) -> list[engine.Invoke]:
    """Invokes of nodes that stayed `scheduled` since before `queued_before` (a crash between the
    store write and the publish, or a lost message): published again under the same id."""
    out: list[engine.Invoke] = []
    if run["status"] != RUNNING:
        return out
    for n, s in run["nodes"].items():
        due: list[tuple[str, ItemState]] = [(n, s)] if s["status"] == SCHEDULED else []
        if s["status"] in IN_FLIGHT and isinstance(s.get("items"), dict):  # a fan-out node: its items
            due = [(item_key(n, i), item) for i, item in enumerate(item_states(s)) if item["status"] == SCHEDULED]
        for key, state in due:
            if (state.get("queued_at") or "") < queued_before and n in p.nodes:
                invoke = engine.render_invoke(p, run, key, state["attempt"], now)
                if invoke is not None:
                    out.append(invoke)
    return out


def parse_duration_s(text: str) -> float:
    """`90s`, `30m`, `2h`, `7d` -> seconds."""
    found = DURATION.match(str(text).strip())
    if not found:
        raise InvalidDuration(
            f"duration {text!r} is not valid. Expected a number and a unit: 90s, 30m, 2h, 7d.", value=text
        )
    return float(found.group(1)) * SECONDS_PER[found.group(2)]
