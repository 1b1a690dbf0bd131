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
instead of `scheduled`; while it runs, each step schedules the items its `concurrency` allows and,
once every item is final, joins them: `succeeded` with the list of outputs, or `failed`. What the join
decides is seen by the rest of the same step, so its successors are scheduled at once.
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
    ItemState,
    NodeFields,
    NodeState,
    RunChange,
    RunDoc,
    Transition,
    item_key,
    item_map,
    item_states,
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
        if any(status[x] not in NODE_FINAL for x in preds):
            continue
        broken = [x for x in preds if status[x] in (FAILED, CANCELLED)]
        if broken:
            status[n] = CANCELLED
            msg = f"not run: upstream node '{broken[0]}' {status[broken[0]]}"
            step.transitions.append(_finish(n, CANCELLED, now, error_doc("UpstreamFailed", msg)))
            continue
        if preds:
            live, err = _live(p, n, run, nodes, status)
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
    """Start a pending fan-out node, or move a running one on: schedule the items its concurrency allows,
    join them once all are final."""
    node, state = p.nodes[n], nodes[n]
    try:
        values = fanout.values(node, scope)
    except fanout.FanoutError as exc:
        _decide(n, state, FAILED, None, error_doc("FanoutError", str(exc)), nodes, status, outputs, step, now)
        return
    if state["status"] == PENDING and not values:
        _decide(n, state, SUCCEEDED, [], None, nodes, status, outputs, step, now)
        return
    if state["status"] == PENDING:
        attempt = state["attempt"] + 1
        items = fanout.fresh_items(len(values), item_states(state))
        fields: NodeFields = {
            "status": RUNNING,
            "attempt": attempt,
            "queued_at": now,
            "output": None,
            "error": None,
            "items": item_map(items),
        }
        step.transitions.append(Transition(n, _PENDING, fields, attempt=state["attempt"]))
        state = nodes[n] = {**state, **fields}
        status[n] = RUNNING
    items = item_states(state)
    for i in fanout.schedulable(items, node.concurrency):
        key, item = item_key(n, i), items[i]
        try:
            invoke = _invoke(p, run["id"], n, item["attempt"] + 1, replace(scope, item=values[i], index=i), key)
        except templates.TemplateError as exc:
            fields = {
                "status": FAILED,
                "finished_at": now,
                "output": None,
                "error": error_doc("TemplateError", f"node '{n}' item {i}: {exc}"),
            }
        else:
            fields = {
                "status": SCHEDULED,
                "attempt": invoke.attempt,
                "queued_at": now,
                "output": None,
                "error": None,
            }
            step.invokes[key] = invoke
        step.transitions.append(Transition(key, _PENDING, fields, attempt=item["attempt"]))
        items[i] = cast(ItemState, {**item, **fields})  # an item's fields only
    done = fanout.joined(n, items)
    if done is not None:
        _decide(n, {**state, "items": item_map(items)}, *done, nodes, status, outputs, step, now)


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
    p: Pipeline, n: str, run: RunDoc, nodes: dict[str, NodeState], status: dict[str, str]
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
            view = {x: {"output": s.get("output"), "status": status[x]} for x, s in nodes.items()}
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
