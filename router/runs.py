"""The state model of a run: node and run states, and the run document the stores keep.

A run is one JSON document (as in the Flume seed's `runs` collection) with a `nodes` map. Every change is
a `Transition` guarded by the node's current status and attempt, so stores apply it as compare-and-set
and a duplicated or late result never changes a finished node.

A fan-out node (`foreach`, `loop`, `replicas`) keeps one state per item in its own entry, as
`nodes[NODE].items["i"]` (status, attempt, output, error, ...): a map from the index as text, not a list,
so that the item's field path `nodes.NODE.items.i` means the same to every MongoDB server (and its
wire-compatible test servers). A transition on the key `NODE[i]` is a compare-and-set on that item
alone, so the results of a thousand items racing on one run each apply exactly once; the key is also the
`knflownode` of the item's events, which makes its invoke id `{run}:NODE[i]:{attempt}`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from broker.events import now_iso

PENDING, SCHEDULED, RUNNING, SUCCEEDED, FAILED, SKIPPED, CANCELLED = (
    "pending",
    "scheduled",
    "running",
    "succeeded",
    "failed",
    "skipped",
    "cancelled",
)
NODE_STATES = (PENDING, SCHEDULED, RUNNING, SUCCEEDED, FAILED, SKIPPED, CANCELLED)
NODE_FINAL = frozenset({SUCCEEDED, FAILED, SKIPPED, CANCELLED})
IN_FLIGHT = frozenset({SCHEDULED, RUNNING})
RUN_STATES = (RUNNING, SUCCEEDED, FAILED, CANCELLED)
RUN_FINAL = frozenset({SUCCEEDED, FAILED, CANCELLED})


_ITEM_KEY = re.compile(r"^(.+)\[(\d+)\]$")


def new_node() -> dict[str, Any]:
    return {"status": PENDING, "attempt": 0, "output": None, "error": None}


def item_key(node: str, index: int) -> str:
    """The key (and `knflownode`) of item `index` of fan-out node `node`: `gen[2]`."""
    return f"{node}[{index}]"


def split_key(key: str) -> tuple[str, int | None]:
    """`gen[2]` -> ("gen", 2); a plain node id -> (id, None)."""
    found = _ITEM_KEY.match(key)
    return (found.group(1), int(found.group(2))) if found else (key, None)


def state_of(run: dict[str, Any], key: str) -> dict[str, Any] | None:
    """The state a node key names in a run: a node's, or one item's of a fan-out node; None if none."""
    node, index = split_key(key)
    state = run["nodes"].get(node)
    if index is None or state is None:
        return state if index is None else None
    items = state.get("items")
    return items.get(str(index)) if isinstance(items, dict) else None


def item_states(state: dict[str, Any]) -> list[dict[str, Any]]:
    """A fan-out node's item states, in order ([] for any other node)."""
    items = state.get("items")
    return [items[str(i)] for i in range(len(items))] if isinstance(items, dict) else []


def item_map(states: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Item states as the run document keeps them: by index, as text."""
    return {str(i): state for i, state in enumerate(states)}


def new_run(
    run_id: str,
    pipeline: str,
    node_ids: list[str],
    trigger: dict[str, Any],
    variables: dict[str, Any],
    created_at: str | None = None,
) -> dict[str, Any]:
    return {
        "id": run_id,
        "pipeline": pipeline,
        "status": RUNNING,
        "trigger": trigger,
        "variables": variables,
        "nodes": {n: new_node() for n in node_ids},
        "created_at": created_at or now_iso(),
        "finished_at": None,
        "error": None,
        "replay_of": None,
        "version": 0,
    }


@dataclass(frozen=True)
class Transition:
    """Set `fields` on node `node` if its status is in `expect` (and its attempt is `attempt`, when given)."""

    node: str
    expect: frozenset[str]
    fields: dict[str, Any] = field(hash=False)
    attempt: int | None = None

    def allowed(self, state: dict[str, Any]) -> bool:
        if state["status"] not in self.expect:
            return False
        return self.attempt is None or state.get("attempt") == self.attempt


@dataclass(frozen=True)
class RunChange:
    """Set the run's status (and fields) if it is still in `expect`."""

    expect: frozenset[str]
    fields: dict[str, Any] = field(hash=False)


def apply(
    run: dict[str, Any], transitions: list[Transition], run_change: RunChange | None = None
) -> tuple[dict[str, Any], list[bool], bool]:
    """Pure compare-and-set: a new run document, which transitions won, whether the run change won.

    The run change is applied only if every transition won: it was decided from the state they lead to.
    """
    new = dict(run)  # shallow, as copy.copy, at a third of its cost
    new["nodes"] = dict(run["nodes"])
    copied: set[str] = set()  # fan-out nodes whose items list this call already copied
    won = []
    for t in transitions:
        node, index = split_key(t.node)
        if index is None:
            state = new["nodes"].get(t.node)
            ok = state is not None and t.allowed(state)
            if ok:
                new["nodes"][t.node] = {**state, **t.fields}
                copied.discard(node)  # the fields may have replaced the items list
        else:
            state = state_of(new, t.node)
            ok = state is not None and t.allowed(state)
            if ok:
                if node not in copied:
                    parent = new["nodes"][node]
                    new["nodes"][node] = {**parent, "items": dict(parent["items"])}
                    copied.add(node)
                new["nodes"][node]["items"][str(index)] = {**state, **t.fields}
        won.append(ok)
    run_won = False
    if run_change is not None and all(won) and new["status"] in run_change.expect:
        new.update(run_change.fields)
        run_won = True
    if any(won) or run_won:
        new["version"] = run.get("version", 0) + 1
    return new, won, run_won


def record(run: dict[str, Any]) -> dict[str, Any]:
    """The run record users see (`knflow run --json`, `GET /runs/{id}`)."""
    return {
        "id": run["id"],
        "pipeline": run["pipeline"],
        "status": run["status"],
        "created_at": run.get("created_at"),
        "finished_at": run.get("finished_at"),
        "error": run.get("error"),
        "replay_of": run.get("replay_of"),
        "replays": run.get("replays") or [],
        "nodes": {nid: _node_record(state) for nid, state in run["nodes"].items()},
    }


def _node_record(state: dict[str, Any]) -> dict[str, Any]:
    out = {k: state.get(k) for k in ("status", "output", "error", "attempt")}
    for key in ("started_at", "finished_at", "duration_ms", "attempts"):
        if state.get(key) is not None:
            out[key] = state[key]
    if state.get("items") is not None:  # a fan-out node: each item's state (outputs are in `output`)
        out["items"] = [{k: item.get(k) for k in ("status", "attempt", "error")} for item in item_states(state)]
    return out
