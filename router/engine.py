"""The decision core (pure): given a pipeline and a run, which node states change and what to invoke.

No I/O. The router applies the returned transitions by compare-and-set and publishes the invokes of the
transitions it won. `plan` is idempotent over a run's state, so any router replica may call it at
any time; what it decides depends only on the stored run.

Rules, in topological order, for each `pending` node whose predecessors are all final:
- a predecessor `failed` or `cancelled` -> the node is `cancelled` (it will not run; the run fails);
- no incoming edge is live (its source succeeded and its `when` holds) -> `skipped`, and so, in turn,
  is whatever only it feeds; a join with one live edge runs, reading `null` from skipped branches;
- otherwise its templates are rendered and it is `scheduled` with the next attempt number.
A template or condition that fails at run time fails the node with that message. When every node is
final the run ends `failed` if any node failed or was cancelled, else `succeeded`.

A fan-out node (`foreach`, `loop`, `replicas`; router/fanout.py) goes `running` with one state per item
instead of `scheduled`; while it runs, each step schedules the items its `concurrency` (or the router's
window, router/fanout.py `room`) allows and, once every item is final, joins them: `succeeded` (its output
is the list of its items' outputs), or `failed`. It decides from the node's counters (`fan`,
router/runs.py), never from the list of its items, so a step costs the same for 10 items as for 10,000.
The items' outputs are not in the run the engine sees (the router loads them, router/run_items.py, for the
nodes about to read them): the successors of a node joined in a step wait for the next step
(`Step.joined`), which the router plans at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, cast

from broker.events import error_doc, invoke_id
from broker.retry import Retry
from functions.registry import NO_TEMPLATED_OPERATORS
from router import conditions, fanout, templates
from router.pipeline import ON_FAILURE_NODE, Pipeline
from router.runs import (
    CANCELLED,
    FAILED,
    IN_FLIGHT,
    NODE_FINAL,
    PENDING,
    RUNNING,
    SCHEDULED,
    SKIPPED,
    SUCCEEDED,
    ErrorDoc,
    FanState,
    NodeFields,
    NodeState,
    RunChange,
    RunDoc,
    Transition,
    count_move,
    item_key,
    item_map,
    item_states,
    new_fan,
    split_key,
    state_of,
)

_PENDING = frozenset({PENDING})


@dataclass(frozen=True)
class Invoke:
    run_id: str
    pipeline: str
    node: str
    function: str
    attempt: int
    inputs: Any
    config: Any
    retry: Retry | None = None  # the node's own retry policy (the knflowretry extension)
    timeout_s: float | None = None  # the node's own timeout

    @property
    def id(self) -> str:
        return invoke_id(self.run_id, self.node, self.attempt)


@dataclass
class Step:
    transitions: list[Transition] = field(default_factory=list)
    invokes: dict[str, Invoke] = field(
        default_factory=dict
    )  # node id (or item key `gen[2]`) -> invoke, for scheduled ones
    run_change: RunChange | None = None
    joined: set[str] = field(default_factory=set)  # fan-out nodes that succeeded in this step: plan again after it

    def __bool__(self) -> bool:
        return bool(self.transitions or self.run_change)


def plan(p: Pipeline, run: RunDoc, now: str) -> Step:
    """The next step of `run`: the transitions to store by compare-and-set and the invokes of those won."""
    step = Step()
    if run["status"] != RUNNING:
        return step
    nodes = dict(run["nodes"])  # as this step leaves them, for the conditions read later in it
    status = {n: s["status"] for n, s in nodes.items()}
    scope: templates.Scope | None = None
    outputs = _outputs(run, status)
    for n in p.order:
        if status[n] == RUNNING and p.nodes[n].fans_out:
            scope = scope or _scope(run, now, outputs)
            _fan(p, run, n, nodes, status, outputs, scope, step, now)
            continue
        if status[n] != PENDING:
            continue
        preds = p.predecessors[n]
        if any(status[x] not in NODE_FINAL or x in step.joined for x in preds):
            continue
        broken = [x for x in preds if status[x] in (FAILED, CANCELLED)]
        if broken:
            status[n] = CANCELLED
            msg = f"not run: upstream node '{broken[0]}' {status[broken[0]]}"
            step.transitions.append(_finish(n, CANCELLED, now, error_doc("UpstreamFailed", msg)))
            continue
        if preds:
            live, err = _live(p, n, run, nodes, status, outputs)
            if err is not None:
                status[n] = FAILED
                step.transitions.append(_finish(n, FAILED, now, err))
                continue
            if not live:
                status[n] = SKIPPED
                outputs[n] = None
                step.transitions.append(_finish(n, SKIPPED, now, None))
                continue
        if scope is None:
            scope = _scope(run, now, outputs)
        if p.nodes[n].fans_out:
            _fan(p, run, n, nodes, status, outputs, scope, step, now)
        else:
            _schedule(p, run, n, nodes, status, scope, step, now)
    if all(status[n] in NODE_FINAL for n in p.order):
        _end(p, run, status, step, now)
    return step


def _schedule(
    p: Pipeline,
    run: RunDoc,
    n: str,
    nodes: dict[str, NodeState],
    status: dict[str, str],
    scope: templates.Scope,
    step: Step,
    now: str,
) -> None:
    """Schedule a pending node that is due, with its next attempt; it fails if its templates do not render."""
    attempt = nodes[n]["attempt"] + 1
    try:
        invoke = _invoke(p, run["id"], n, attempt, scope)
    except templates.TemplateError as exc:  # a lookup that fails at run time
        status[n] = FAILED
        step.transitions.append(_finish(n, FAILED, now, error_doc("TemplateError", f"node '{n}': {exc}")))
        return
    status[n] = SCHEDULED
    step.transitions.append(
        Transition(
            n,
            _PENDING,
            {"status": SCHEDULED, "attempt": attempt, "queued_at": now, "output": None, "error": None},
            attempt=nodes[n]["attempt"],
        )
    )
    step.invokes[n] = invoke


def _fan(
    p: Pipeline,
    run: RunDoc,
    n: str,
    nodes: dict[str, NodeState],
    status: dict[str, str],
    outputs: dict[str, Any],
    scope: templates.Scope,
    step: Step,
    now: str,
) -> None:
    """Start a pending fan-out node, or move a running one on: schedule the items its concurrency (or the
    window) allows, join them once all are final. The items are taken in order from the counters, so a step
    that schedules nothing costs the same however many items there are."""
    node, state = p.nodes[n], nodes[n]
    values: list[Any] | None = None
    try:
        if state["status"] == PENDING:
            values = fanout.values(node, scope)
            if not values:
                _decide(n, state, SUCCEEDED, [], None, nodes, status, outputs, step, now)
                return
            state = nodes[n] = _start(n, state, len(values), step, now)
            status[n] = RUNNING
        fan = _counters(state)
        todo = fan["todo"]
        room = fanout.room(node, fan)  # the node's concurrency, or the router's window (router/fanout.py)
        if room > 0:
            values = fanout.values(node, scope) if values is None else values
            for pos in range(fan["next"], fan["next"] + room):
                _take(p, run, n, pos if todo is None else todo[pos], fan, values, scope, step, now)
    except fanout.FanoutError as exc:
        _decide(n, state, FAILED, None, error_doc("FanoutError", str(exc)), nodes, status, outputs, step, now)
        return
    if fan["left"] == 0:
        if fan["failed"] == 0:  # the output stays with the items (the stores keep it there, not in the node)
            _decide(n, state, SUCCEEDED, None, None, nodes, status, outputs, step, now)
            if "items" in state:  # a full document: the outputs are at hand for the rest of the step
                outputs[n] = [item.get("output") for item in item_states(state)]
            else:  # the next step reads them (router/run_items.py loads them)
                step.joined.add(n)
        else:
            _decide(
                n, state, FAILED, None, fanout.failed(n, fan, state.get("items")), nodes, status, outputs, step, now
            )


def _start(n: str, state: NodeState, count: int, step: Step, now: str) -> NodeState:
    """The transition that starts a pending fan-out node of `count` items; the state it leads to."""
    fields: NodeFields = {
        "status": RUNNING,
        "attempt": state["attempt"] + 1,
        "queued_at": now,
        "output": None,
        "error": None,
    }
    kept = state.get("fan")  # a redrive's: the items it left to run again
    if kept is None or kept["count"] != count:
        base = kept["base"] if kept is not None else 0
        items = fanout.fresh_items(count, base)
        fields["items"] = item_map(items)
        fields["fan"] = new_fan(items, None, base)
    step.transitions.append(Transition(n, _PENDING, fields, attempt=state["attempt"]))
    return {**state, **fields}


def _take(
    p: Pipeline,
    run: RunDoc,
    n: str,
    i: int,
    fan: FanState,
    values: list[Any],
    scope: templates.Scope,
    step: Step,
    now: str,
) -> None:
    """Schedule item `i` (pending at the node's base attempt), or fail it if its templates do not render;
    `fan` counts it."""
    key = item_key(n, i)
    fields: NodeFields
    try:
        invoke = _invoke(p, run["id"], n, fan["base"] + 1, replace(scope, item=values[i], index=i), key)
    except (templates.TemplateError, IndexError) as exc:
        fields = {
            "status": FAILED,
            "finished_at": now,
            "output": None,
            "error": error_doc("TemplateError", f"node '{n}' item {i}: {exc}"),
        }
    else:
        fields = {"status": SCHEDULED, "attempt": invoke.attempt, "queued_at": now, "output": None, "error": None}
        step.invokes[key] = invoke
    step.transitions.append(Transition(key, _PENDING, fields, attempt=fan["base"]))
    count_move(fan, PENDING, fields["status"])


def _counters(state: NodeState) -> FanState:
    """A copy of a running fan-out node's counters (made from its items for a document stored without them)."""
    fan = state.get("fan")
    if fan is None:
        items = item_states(state)
        pending = [item["attempt"] for item in items if item["status"] == PENDING]
        return new_fan(items, None, min(pending, default=0))
    return cast(FanState, dict(fan))


def _decide(
    n: str,
    state: NodeState,
    final: str,
    output: Any,
    err: ErrorDoc | None,
    nodes: dict[str, NodeState],
    status: dict[str, str],
    outputs: dict[str, Any],
    step: Step,
    now: str,
) -> None:
    """End a fan-out node (pending or running) with `final`; the rest of the step sees it ended."""
    fields: NodeFields = {"status": final, "finished_at": now, "output": output, "error": err}
    if state["status"] == PENDING:  # ended before any item ran (an empty list, a bad foreach): an attempt all the same
        fields["attempt"] = state["attempt"] + 1
    step.transitions.append(Transition(n, frozenset({state["status"]}), fields, attempt=state["attempt"]))
    nodes[n] = {**state, **fields}
    status[n] = final
    if final == SUCCEEDED:
        outputs[n] = output


def _end(p: Pipeline, run: RunDoc, status: dict[str, str], step: Step, now: str) -> None:
    """Every DAG node is final: run the failure handler if one is due, else end the run."""
    nodes = run["nodes"]
    failed = [n for n in p.order if status[n] in (FAILED, CANCELLED)]
    err: ErrorDoc | None = None
    if failed:
        first = next((n for n in failed if status[n] == FAILED), failed[0])
        node_err = nodes[first].get("error") or next(
            (t.fields.get("error") for t in step.transitions if t.node == first), None
        )
        # a failed or cancelled node has its error; a document that lacks it still names the node
        err = {"node": first, **(node_err or error_doc("Unknown", f"node '{first}' {status[first]}"))}
    handler = nodes.get(ON_FAILURE_NODE) if p.on_failure else None
    if p.on_failure and handler is not None and handler["status"] == PENDING:
        if err is None:
            step.transitions.append(_finish(ON_FAILURE_NODE, SKIPPED, now, None))
        else:
            attempt = handler["attempt"] + 1
            report = {
                "run_id": run["id"],
                "pipeline": p.name,
                "failed_node": err["node"],
                "error": err,
                "traceback": ((err.get("detail") or {}) if isinstance(err.get("detail"), dict) else {}).get(
                    "traceback"
                ),
                "trigger": (run.get("trigger") or {}).get("data"),
            }
            step.transitions.append(
                Transition(
                    ON_FAILURE_NODE,
                    _PENDING,
                    {"status": SCHEDULED, "attempt": attempt, "queued_at": now},
                    attempt=handler["attempt"],
                )
            )
            step.invokes[ON_FAILURE_NODE] = Invoke(
                run["id"], p.name, ON_FAILURE_NODE, p.on_failure, attempt, report, {}
            )
            return
    elif handler is not None and handler["status"] not in NODE_FINAL:
        return  # the failure handler is still running
    final = FAILED if failed else SUCCEEDED
    step.run_change = RunChange(frozenset({RUNNING}), {"status": final, "finished_at": now, "error": err})


def _invoke(p: Pipeline, run_id: str, n: str, attempt: int, scope: templates.Scope, key: str | None = None) -> Invoke:
    node = p.nodes[n]
    if node.function in NO_TEMPLATED_OPERATORS:  # MongoDB filters and documents: no operator from a template
        inputs = templates.render_without_operators(node.inputs, scope, "inputs")
        config = templates.render_without_operators(node.config, scope, "config")
    else:
        inputs, config = templates.render(node.inputs, scope), templates.render(node.config, scope)
    return Invoke(run_id, p.name, key or n, node.function, attempt, inputs, config, node.retry, node.timeout_s)


def render_invoke(p: Pipeline, run: RunDoc, key: str, attempt: int, now: str) -> Invoke | None:
    """The invoke of a node (or an item `gen[2]`) already scheduled, to publish it again; None if it no longer
    renders."""
    status = {x: s["status"] for x, s in run["nodes"].items()}
    n, index = split_key(key)
    scope = _scope(run, now, _outputs(run, status))
    try:
        if index is not None:
            values = fanout.values(p.nodes[n], scope)
            scope = replace(scope, item=values[index], index=index)
        return _invoke(p, run["id"], n, attempt, scope, key)
    except (templates.TemplateError, fanout.FanoutError, IndexError):
        return None


def _finish(n: str, status: str, now: str, err: ErrorDoc | None) -> Transition:
    return Transition(n, _PENDING, {"status": status, "finished_at": now, "error": err, "output": None})


def _scope(run: RunDoc, now: str, outputs: dict[str, Any]) -> templates.Scope:
    return templates.Scope(
        trigger=run.get("trigger") or {},
        variables=run.get("variables") or {},
        outputs=outputs,
        run_id=run["id"],
        now=now,
    )


def _outputs(run: RunDoc, status: dict[str, str]) -> dict[str, Any]:
    out = {}
    for n, s in status.items():
        if s == SUCCEEDED:
            out[n] = run["nodes"][n].get("output")
        elif s == SKIPPED:
            out[n] = None
    return out


def _live(
    p: Pipeline, n: str, run: RunDoc, nodes: dict[str, NodeState], status: dict[str, str], outputs: dict[str, Any]
) -> tuple[bool, ErrorDoc | None]:
    live = False
    view = None
    for e in p.incoming[n]:
        if status[e.source] != SUCCEEDED:
            continue
        condition = e.condition  # `when`, and `branch` as CEL
        if not condition:
            live = True
            continue
        if view is None:
            view = {x: {"output": outputs.get(x, s.get("output")), "status": status[x]} for x, s in nodes.items()}
        try:
            if conditions.compile_condition(condition).evaluate(
                run.get("trigger") or {}, run.get("variables") or {}, view
            ):
                live = True
        except Exception as exc:  # ConditionError
            return False, error_doc("ConditionError", f"edge {e.source} -> {n}: {exc}")
    return live, None


def result_transition(
    run: RunDoc,
    node: str,
    attempt: int,
    data: dict[str, Any],
    succeeded: bool,
    now: str,
    tries: int | None = None,
) -> Transition | None:
    """The transition a function's reply asks for, or None when the run has no such node. The node's
    attempt becomes `tries` (retries by the broker count), which the next redrive goes on from."""
    if state_of(run, node) is None:
        return None
    return node_result(node, attempt, data, succeeded, now, tries)


def node_result(
    node: str, attempt: int, data: dict[str, Any], succeeded: bool, now: str, tries: int | None = None
) -> Transition:
    """`result_transition` without the run: on a run that has no such node it loses, as a late one does.
    `node` may be an item key (`gen[2]`): the transition is then on that item alone. The times are the
    function's (`started_at`, `finished_at`, `duration_ms` of its reply); `now` when the reply has none."""
    fields: NodeFields = {"status": SUCCEEDED if succeeded else FAILED, "finished_at": now}
    if tries is not None and tries > attempt:
        fields["attempt"] = tries
    if succeeded:
        fields["output"] = data.get("output")
        fields["error"] = None
    else:
        fields["error"] = data.get("error") or error_doc("Unknown", "the function replied node.failed without an error")
    for key in ("started_at", "finished_at", "duration_ms"):
        if data.get(key) is not None:
            fields[key] = data[key]
    return Transition(node, IN_FLIGHT, fields, attempt=attempt)
