"""The state model of a run: node and run states, and the run document the stores keep.

A run is one JSON document (as in the Flume seed's `runs` collection) with a `nodes` map. Every change is
a `Transition` guarded by the node's current status and attempt, so stores apply it as compare-and-set
and a duplicated or late result never changes a finished node.

A fan-out node (`foreach`, `loop`, `replicas`) keeps one state per item (status, attempt, output, error,
...), as `nodes[NODE].items["i"]` in the *full* document: a map from the index as text. A transition on
the key `NODE[i]` is a compare-and-set on that item alone, so the results of a thousand items racing on
one run each apply exactly once; the key is also the `knflownode` of the item's events, which makes its
invoke id `{run}:NODE[i]:{attempt}`.

Big runs at linear cost: the stores keep the items out of the run document (`light`: SQLite's `run_items`
table, MongoDB's `items` field and `run_items` collection), and the node keeps counters instead
(`nodes[NODE].fan`, a `FanState`), which `apply` moves with each item transition it lets win. The engine
decides from the counters alone, so a result costs the same with 10 items as with 10,000; `commit` takes
and gives the light document (with only the items its transitions touch), `get_run` the full one.

The documents are typed (`RunDoc`, `NodeState`, `ItemState`, `ErrorDoc`, ...) for the type checker
only: they are plain dicts, read from and written to the stores as they are, never validated or copied
on the way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, NotRequired, TypedDict, cast

from broker.events import ErrorDoc, now_iso

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


class ItemState(TypedDict):
    """One item's state in a fan-out node, `nodes[NODE].items["i"]`; a node's state has these fields too."""

    status: str
    attempt: int
    output: Any
    error: ErrorDoc | None
    queued_at: NotRequired[str | None]  # when the router scheduled (and published) the invoke
    started_at: NotRequired[str | None]  # from the function's reply: when the function began
    finished_at: NotRequired[str | None]  # from the reply; the router's time for a dead letter, a skip, a cancel
    duration_ms: NotRequired[float | None]  # from the function's reply


class Timing(TypedDict, total=False):
    """An attempt's times, in the run record (`record`): the function's clock gives `started_at`, `finished_at`
    and `duration_ms`, the router's `queued_at`, so `queue_ms` (started_at - queued_at) compares two machines'
    clocks when the function runs elsewhere."""

    queued_at: str
    started_at: str
    finished_at: str
    duration_ms: float
    queue_ms: float


class AttemptEntry(TypedDict):
    """An earlier attempt of a node, kept in its `attempts` when a redrive resets it (router/replay.py)."""

    attempt: int
    status: str
    error: ErrorDoc | None
    queued_at: NotRequired[str | None]  # absent from attempts kept before it was recorded
    started_at: str | None
    finished_at: str | None
    duration_ms: float | None
    queue_ms: NotRequired[float | None]


class FanState(TypedDict):
    """A fan-out node's counters, `nodes[NODE].fan`, over the items its current attempt runs (`todo`, in
    order; None: all `count`). Items are taken in that order: `next` of them are taken (scheduled, or failed
    to render), `running` are in flight, `left` are not final, `failed` ended other than succeeded. Every
    pending item has the attempt `base`, so that its next invoke id is new."""

    count: int
    todo: list[int] | None
    next: int
    running: int
    left: int
    failed: int
    base: int


class NodeState(ItemState):
    """A node's state in `nodes[NODE]`."""

    attempts: NotRequired[list[AttemptEntry]]  # once redriven
    items: NotRequired[dict[str, ItemState]]  # a fan-out node in a full document: item states by index, as text
    fan: NotRequired[FanState]  # a fan-out node, once started: its counters


class NodeFields(TypedDict, total=False):
    """What a `Transition` sets on a node's (or an item's) state: any of its fields."""

    status: str
    attempt: int
    output: Any
    error: ErrorDoc | None
    queued_at: str | None
    started_at: str | None
    finished_at: str | None
    duration_ms: float | None
    attempts: list[AttemptEntry]
    items: dict[str, ItemState]
    fan: FanState


# a redrive in place, in `replays` (router/replay.py); `from` is a keyword, hence the functional syntax
RedriveEntry = TypedDict(
    "RedriveEntry",
    {
        "at": str,
        "by": str | None,
        "kind": Literal["redrive"],
        "from": str | None,
        "reset": list[str],
        "previous_status": str,
        "items": NotRequired[list[str]],  # the fan-out items that run again, as keys `gen[2]`
    },
)


class RerunEntry(TypedDict):
    """A re-run, in the new run's `replays`: the run it was started from."""

    at: str
    by: str | None
    kind: Literal["rerun"]
    of: str
    edited: NotRequired[bool]  # started with the trigger's data edited


ReplayEntry = RedriveEntry | RerunEntry


class TraceLink(TypedDict):
    traceparent: str
    kind: str  # redrive, rerun, trigger


class TraceDoc(TypedDict):
    """A run's trace, with tracing on (router/run_traces.py): its root span's context, when it began, its links."""

    traceparent: str
    start_ns: int
    links: list[TraceLink]


class RunDoc(TypedDict):
    """The run document the stores keep (`new_run` makes one)."""

    id: str
    pipeline: str
    status: str
    trigger: dict[str, Any]  # the trigger event, as broker.events.event_to_dict gives it
    variables: dict[str, Any]
    nodes: dict[str, NodeState]
    created_at: str
    finished_at: str | None
    error: ErrorDoc | None
    replay_of: str | None
    version: int
    replays: NotRequired[list[ReplayEntry]]  # once replayed, oldest first
    cancelled_by: NotRequired[str | None]  # once cancelled
    trace: NotRequired[TraceDoc]  # with tracing on
    expires_at: NotRequired[str]  # when the run is deleted (router/retention.py); absent from runs stored before


class RunFields(TypedDict, total=False):
    """What a `RunChange` sets on the run."""

    status: str
    finished_at: str | None
    error: ErrorDoc | None
    replays: list[ReplayEntry]
    cancelled_by: str | None
    trace: TraceDoc


class ItemRecord(Timing):
    """An item of a fan-out node in the run record: its state and the timing fields it has."""

    status: str
    attempt: int
    error: ErrorDoc | None


class NodeRecord(Timing):
    """A node in the run record: its state, the timing fields it has (`Timing`), and its items' states."""

    status: str
    output: Any
    error: ErrorDoc | None
    attempt: int
    attempts: NotRequired[list[AttemptEntry]]
    items: NotRequired[list[ItemRecord]]  # a fan-out node: each item's state (the outputs are in `output`)
    progress: NotRequired[FanProgress]  # a fan-out node: its items by state (in every record, light or not)


class RunRecord(TypedDict):
    """The run record users see (`record`): `knflow run --json`, `GET /runs/{id}`, `RunHandle.result()`."""

    id: str
    pipeline: str
    status: str
    created_at: str
    finished_at: str | None
    error: ErrorDoc | None
    replay_of: str | None
    replays: list[ReplayEntry]
    trigger: dict[str, Any]  # the event that started the run
    nodes: dict[str, NodeRecord]
    trace_id: NotRequired[str]  # with tracing on: the run's trace, to look up in the tracing backend


class _TraceId(TypedDict, total=False):
    trace_id: str


def new_node() -> NodeState:
    return {"status": PENDING, "attempt": 0, "output": None, "error": None}


def item_key(node: str, index: int) -> str:
    """The key (and `knflownode`) of item `index` of fan-out node `node`: `gen[2]`."""
    return f"{node}[{index}]"


def split_key(key: str) -> tuple[str, int | None]:
    """`gen[2]` -> ("gen", 2); a plain node id -> (id, None)."""
    if not key.endswith("]"):  # a plain node id, without the regex: this runs for every transition
        return key, None
    found = _ITEM_KEY.match(key)
    return (found.group(1), int(found.group(2))) if found else (key, None)


def state_of(run: RunDoc, key: str) -> ItemState | None:
    """The state a node key names in a run: a node's, or one item's of a fan-out node; None if none."""
    node, index = split_key(key)
    state = run["nodes"].get(node)
    if index is None or state is None:
        return state if index is None else None
    items = state.get("items")
    return items.get(str(index)) if isinstance(items, dict) else None


def item_states(state: NodeState) -> list[ItemState]:
    """A fan-out node's item states, in order ([] for any other node)."""
    items = state.get("items")
    return [items[str(i)] for i in range(len(items))] if isinstance(items, dict) else []


def item_map(states: list[ItemState]) -> dict[str, ItemState]:
    """Item states as the run document keeps them: by index, as text."""
    return {str(i): state for i, state in enumerate(states)}


def new_run(
    run_id: str,
    pipeline: str,
    node_ids: list[str],
    trigger: dict[str, Any],
    variables: dict[str, Any],
    created_at: str | None = None,
) -> RunDoc:
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
    fields: NodeFields = field(hash=False)
    attempt: int | None = None

    def allowed(self, state: ItemState) -> bool:
        if state["status"] not in self.expect:
            return False
        return self.attempt is None or state.get("attempt") == self.attempt


@dataclass(frozen=True)
class RunChange:
    """Set the run's status (and fields) if it is still in `expect`."""

    expect: frozenset[str]
    fields: RunFields = field(hash=False)


def apply(
    run: RunDoc, transitions: list[Transition], run_change: RunChange | None = None
) -> tuple[RunDoc, list[bool], bool]:
    """Pure compare-and-set: a new run document, which transitions won, whether the run change won.

    The run change is applied only if every transition won: it was decided from the state they lead to.
    An item transition that wins moves its node's counters (`fan`) too, when the node has them. `run` may
    hold only some of a node's items (the ones its transitions touch): the others are not read.
    """
    new = run.copy()  # shallow, as copy.copy, at a third of its cost
    new["nodes"] = run["nodes"].copy()
    copied: set[str] = set()  # fan-out nodes whose items map (and counters) this call already copied
    won = []
    for t in transitions:
        node, index = split_key(t.node)
        ok = False
        if index is None:
            state = new["nodes"].get(t.node)
            if state is not None and t.allowed(state):
                ok = True
                new["nodes"][t.node] = {**state, **t.fields}
                copied.discard(node)  # the fields may have replaced the items map
        else:
            item = state_of(new, t.node)
            if item is not None and t.allowed(item):
                ok = True
                if node not in copied:
                    parent = new["nodes"][node]
                    new["nodes"][node] = {**parent, "items": dict(parent["items"])}
                    if "fan" in parent:
                        new["nodes"][node]["fan"] = cast(FanState, dict(parent["fan"]))
                    copied.add(node)
                # an item's transition sets only an item's fields (NodeFields also has a node's own)
                changed = cast(ItemState, {**item, **t.fields})
                new["nodes"][node]["items"][str(index)] = changed
                if (fan := new["nodes"][node].get("fan")) is not None:
                    count_move(fan, item["status"], changed["status"])
        won.append(ok)
    run_won = False
    if run_change is not None and all(won) and new["status"] in run_change.expect:
        new.update(run_change.fields)
        run_won = True
    if any(won) or run_won:
        new["version"] = run.get("version", 0) + 1
    return new, won, run_won


def count_move(fan: FanState, old: str, new: str) -> None:
    """Move a node's counters for one of its items going from status `old` to `new` (in place)."""
    for key, delta in fan_deltas(old, new).items():
        fan[key] += delta  # type: ignore[literal-required]  # one of FanState's counters


def fan_deltas(old: str, new: str) -> dict[str, int]:
    """What an item going from `old` to `new` adds to its node's counters (the MongoDB store `$inc`s these)."""
    out: dict[str, int] = {}
    if old == PENDING and new != PENDING:
        out["next"] = 1
    running = (new in IN_FLIGHT) - (old in IN_FLIGHT)
    if running:
        out["running"] = running
    if new in NODE_FINAL and old not in NODE_FINAL:
        out["left"] = -1
        if new != SUCCEEDED:
            out["failed"] = 1
    return out


def new_fan(items: list[ItemState], todo: list[int] | None = None, base: int = 0) -> FanState:
    """The counters of a fan-out node (re)started with these items, running `todo` (None: all)."""
    chosen = range(len(items)) if todo is None else todo
    states = [items[i]["status"] for i in chosen]
    return {
        "count": len(items),
        "todo": todo,
        "next": sum(1 for s in states if s != PENDING),
        "running": sum(1 for s in states if s in IN_FLIGHT),
        "left": sum(1 for s in states if s not in NODE_FINAL),
        "failed": sum(1 for s in states if s in NODE_FINAL and s != SUCCEEDED),
        "base": base,
    }


class FanProgress(TypedDict):
    """A fan-out node's items by state, from its counters (the dashboard's progress): `failed` is every item
    that ended other than succeeded; an item its current attempt does not run (a redrive's) counts as done."""

    total: int
    done: int
    failed: int
    running: int  # scheduled or running
    pending: int


def fan_progress(fan: FanState) -> FanProgress:
    return {
        "total": fan["count"],
        "done": fan["count"] - fan["left"] - fan["failed"],
        "failed": fan["failed"],
        "running": fan["running"],
        "pending": fan["left"] - fan["running"],
    }


def light(run: RunDoc) -> tuple[RunDoc, dict[str, dict[str, ItemState]]]:
    """Split a (full or partial) run document: the document without items (a fan-out node's output is in its
    items, so it is None here), and the items by node. A node with items but no counters gets them. A run
    without fan-out nodes is returned as it is, not copied."""
    out: dict[str, dict[str, ItemState]] = {}
    fanned = [n for n, state in run["nodes"].items() if "items" in state or "fan" in state]
    if not fanned:  # no fan-out node: the document is light already (every commit of a plain run)
        return run, out
    nodes = dict(run["nodes"])
    for n in fanned:
        state = run["nodes"][n]
        items = state.get("items")
        rest = cast(NodeState, {k: v for k, v in state.items() if k != "items"})
        if items is not None:
            out[n] = items
            if "fan" not in rest:
                rest["fan"] = new_fan(item_states(state))
        rest["output"] = None
        nodes[n] = rest
    return {**run, "nodes": nodes}, out


def with_items(run: RunDoc, items: dict[str, list[ItemState]]) -> RunDoc:
    """The full run document: a light one with its fan-out nodes' items, and a succeeded one's output (the
    list of its items' outputs)."""
    nodes = dict(run["nodes"])
    for n, states in items.items():
        if n not in nodes:
            continue
        state: NodeState = {**nodes[n], "items": item_map(states)}
        if state["status"] == SUCCEEDED:
            state["output"] = [item.get("output") for item in states]
        nodes[n] = state
    return {**run, "nodes": nodes}


def fan_nodes(run: RunDoc) -> list[str]:
    """The fan-out nodes of a run that have items."""
    return [n for n, s in run["nodes"].items() if "fan" in s or "items" in s]


def record(run: RunDoc) -> RunRecord:
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
        "trigger": run.get("trigger") or {},
        "nodes": {nid: _node_record(state) for nid, state in run["nodes"].items()},
        **_trace_id(run),
    }


def _trace_id(run: RunDoc) -> _TraceId:
    trace = run.get("trace")
    return {"trace_id": trace["traceparent"][3:35]} if trace else {}


def node_output(state: NodeState) -> Any:
    """A node's output: a succeeded fan-out node's is the list of its items' outputs (when they are at hand)."""
    if state.get("status") == SUCCEEDED and state.get("output") is None and isinstance(state.get("items"), dict):
        return [item.get("output") for item in item_states(state)]
    return state.get("output")


def _node_record(state: NodeState) -> NodeRecord:
    out: NodeRecord = {
        "status": state["status"],
        "output": node_output(state),
        "error": state.get("error"),
        "attempt": state["attempt"],
    }
    out.update(timing(state))
    if (attempts := state.get("attempts")) is not None:
        out["attempts"] = attempts
    if state.get("items") is not None:  # a fan-out node: each item's state (outputs are in `output`)
        out["items"] = [item_record(item) for item in item_states(state)]
    if (fan := state.get("fan")) is not None:
        out["progress"] = fan_progress(fan)
    return out


def item_record(item: ItemState) -> ItemRecord:
    out: ItemRecord = {"status": item["status"], "attempt": item["attempt"], "error": item.get("error")}
    out.update(timing(item))
    return out


def timing(state: ItemState) -> Timing:
    """The timing fields a node's (or an item's) state has, and `queue_ms` when both its ends are known."""
    out: Timing = {}
    for key in ("queued_at", "started_at", "finished_at", "duration_ms"):
        if (value := state.get(key)) is not None:
            out[key] = value  # type: ignore[literal-required,typeddict-item]  # one of Timing's keys, as stored
    if (queue_ms := ms_between(out.get("queued_at"), out.get("started_at"))) is not None:
        out["queue_ms"] = queue_ms
    return out


def ms_between(earlier: str | None, later: str | None) -> float | None:
    """Milliseconds from one ISO-8601 time to another (negative when the clocks of two machines disagree);
    None when either is missing or not a time."""
    if not earlier or not later:
        return None
    try:
        delta = datetime.fromisoformat(later) - datetime.fromisoformat(earlier)
    except (TypeError, ValueError):
        return None
    return round(delta.total_seconds() * 1000, 3)
