"""Fan-out nodes (pure): `foreach` over a list, `loop` (its alias), `replicas` over 0..N-1.

A fan-out node runs its function once per item. Each item's inputs see the item as `{{ item }}` and its
position as `{{ index }}`; each is an invoke of its own, keyed `NODE[i]` (invoke id
`{run}:NODE[i]:{attempt}`), with a state of its own in `nodes[NODE].items["i"]` (router/runs.py). The node is
`running` while its items run, then `succeeded` with the list of the item outputs in order, or `failed`
naming the items that failed (after their retries). An empty list succeeds at once with `[]`.

`loop` is `foreach` by another name, not a repeat-until: a repeat-until needs a cycle in the DAG, and a
cycle would break the deterministic invoke ids (`{run}:{node}[{i}]:{attempt}`) that make results
exactly-once and replay precise. Repeat work by listing it (`loop: "{{ plan.output.steps }}"`).

`concurrency: K` limits the items scheduled or in flight at once. The rule is safe when routers race on
one run: item i may be scheduled only while fewer than K items below i are unfinished (pending or in
flight). Finished items stay finished, so whatever the interleaving, at most K are ever in flight.
"""

from __future__ import annotations

from typing import Any

from functions.values import as_text
from router import templates
from router.pipeline import MAX_ITEMS, Node
from router.runs import FAILED, IN_FLIGHT, NODE_FINAL, PENDING, SUCCEEDED, ErrorDoc, ItemState

_ERRORS_SHOWN = 5


class FanoutError(Exception):
    """The fan-out list cannot be had: the message names the node and the field."""


def values(node: Node, scope: templates.Scope) -> list[Any]:
    """The items of a fan-out node for this run. Raises FanoutError."""
    if node.replicas is not None:
        return list(range(node.replicas))
    where = f"node '{node.id}': field '{node.foreach_key}'"
    try:
        value = templates.render(node.foreach, scope)
    except templates.TemplateError as exc:
        raise FanoutError(f"{where}: {exc}") from None
    if not isinstance(value, list):
        shown = as_text(value)
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        raise FanoutError(
            f"{where} gave {type(value).__name__} {shown!r}, not a list. "
            f"{node.foreach_key} must give a list, such as {{{{ fetch.output.items }}}}."
        )
    if len(value) > MAX_ITEMS:
        raise FanoutError(
            f"{where} gave {len(value):,} items; the most one node runs is {MAX_ITEMS:,}. Split the list upstream."
        )
    return value


def fresh_items(count: int, old: list[ItemState]) -> list[ItemState]:
    """Item states for a (re)start of the node: an item that succeeded in an earlier attempt keeps its
    state and output (a redrive re-runs only what failed); the others are pending, their attempt numbers
    going on from the earlier ones, so that their invoke ids are new."""
    old = old if len(old) == count else []
    out: list[ItemState] = []
    for i in range(count):
        prev = old[i] if i < len(old) else None
        if prev is not None and prev.get("status") == SUCCEEDED:
            out.append(prev)
        else:
            attempt = prev.get("attempt", 0) if prev is not None else 0
            out.append({"status": PENDING, "attempt": attempt, "output": None, "error": None})
    return out


def schedulable(items: list[ItemState], limit: int | None) -> list[int]:
    """The pending items that may be scheduled now, in order (see the module docstring for the rule)."""
    out = []
    unfinished = 0  # items below the one looked at that are pending or in flight
    for i, item in enumerate(items):
        if limit is not None and unfinished >= limit:
            break
        status = item["status"]
        if status == PENDING:
            out.append(i)
        if status not in NODE_FINAL:
            unfinished += 1
    return out


def in_flight(items: list[ItemState]) -> int:
    return sum(1 for item in items if item["status"] in IN_FLIGHT)


def joined(node: str, items: list[ItemState]) -> tuple[str, Any, ErrorDoc | None] | None:
    """(status, output, error) of the node once every item is final; None while some are not."""
    if any(item["status"] not in NODE_FINAL for item in items):
        return None
    bad = [i for i, item in enumerate(items) if item["status"] != SUCCEEDED]
    if not bad:
        return SUCCEEDED, [item.get("output") for item in items], None
    first: ErrorDoc | dict[str, Any] = items[bad[0]].get("error") or {}
    shown = ", ".join(str(i) for i in bad[:_ERRORS_SHOWN]) + (", …" if len(bad) > _ERRORS_SHOWN else "")
    message = (
        f"node '{node}': {len(bad)} of {len(items)} items failed (item {shown}); "
        f"item {bad[0]}: {first.get('message') or first.get('type') or 'failed'}"
    )
    detail = {"failed_items": bad, "errors": {str(i): items[i].get("error") for i in bad[:_ERRORS_SHOWN]}}
    return FAILED, None, {"type": "ItemsFailed", "message": message, "detail": detail}
