"""Fan-out nodes (pure): `foreach` over a list, `loop` (its alias), `replicas` over 0..N-1.

A fan-out node runs its function once per item. Each item's inputs see the item as `{{ item }}` and its
position as `{{ index }}`; each is an invoke of its own, keyed `NODE[i]` (invoke id
`{run}:NODE[i]:{attempt}`), with a state of its own in `nodes[NODE].items["i"]` (router/runs.py). The node is
`running` while its items run, then `succeeded` with the list of the item outputs in order, or `failed`
naming the items that failed (after their retries). An empty list succeeds at once with `[]`.

`loop` is `foreach` by another name, not a repeat-until: a repeat-until needs a cycle in the DAG, and a
cycle would break the deterministic invoke ids (`{run}:{node}[{i}]:{attempt}`) that make results
exactly-once and replay precise. Repeat work by listing it (`loop: "{{ plan.output.steps }}"`).

`concurrency: K` limits the items scheduled or in flight at once; a node without one has the router's
window (`WINDOW` items). The rule is safe when routers race on one run: items are taken in order (the
node's counters say how many are taken and how many in flight), each by a compare-and-set on its own
state, so routers that read the same counters take the same items, and whatever the interleaving, at most
K (or `WINDOW`) are ever in flight.

The window is what keeps a big foreach's memory flat: a step renders and publishes only the invokes it
takes, never all 10,000 at once, and the window is refilled as item results arrive. It is refilled in
batches (once half of it is free, `room`), so a foreach of N items renders its list about 2N / `WINDOW`
times, not once per result. A node's own `concurrency` is refilled item by item, as it always was.
"""

from __future__ import annotations

from typing import Any

from functions.values import as_text
from router import templates
from router.pipeline import MAX_ITEMS, Node
from router.runs import PENDING, SUCCEEDED, ErrorDoc, FanState, ItemState

_ERRORS_SHOWN = 5
WINDOW = 500  # items of a fan-out node in flight at once when its `concurrency` sets no other limit


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


def room(node: Node, fan: FanState) -> int:
    """How many items a step takes now of a running fan-out node (0: none), from its counters: up to its
    `concurrency` free slots; without one, up to the free part of the window once half of it (or all the
    items left to take) is free.

    Past that point the window is refilled by the steps whose counters show the free part on a multiple of
    an eighth of the window from it, or nothing in flight. The results of a window arrive together, and
    each result's step sees the counters its own write left (each value once, as every result moves them
    by one): so about one step in an eighth of the window tries a refill (and reads the stored run first,
    router/run_items.py), not every one. The last result in flight always may, and so may the sweeper's
    step after a crash, so the run never waits on a refill that nobody makes."""
    total = fan["count"] if fan["todo"] is None else len(fan["todo"])
    left = total - fan["next"]
    if node.concurrency is not None:
        return max(0, min(left, node.concurrency - fan["running"]))
    free, need = WINDOW - fan["running"], min(left, WINDOW // 2)
    if left <= 0 or free < need or (fan["running"] and (free - need) % max(1, WINDOW // 8)):
        return 0
    return min(left, free)


def fresh_items(count: int, attempt: int = 0) -> list[ItemState]:
    """Item states for a start of the node: all pending at `attempt` (the highest of an earlier attempt's
    items, so that their next invoke ids are new). A redrive that keeps succeeded items makes its own
    (router/replay.py)."""
    return [{"status": PENDING, "attempt": attempt, "output": None, "error": None} for _ in range(count)]


def failed(node: str, fan: FanState, items: dict[str, ItemState] | None) -> ErrorDoc:
    """The error of a fan-out node whose items all ended, some not succeeded: it names the first failed items
    and the first one's error when the items are at hand (router/run_items.py loads them for the join)."""
    total = fan["count"] if fan["todo"] is None else len(fan["todo"])
    message = f"node '{node}': {fan['failed']} of {total} items failed"
    if items is None:
        return {"type": "ItemsFailed", "message": message, "detail": {"failed_items": None, "errors": {}}}
    order = range(fan["count"]) if fan["todo"] is None else fan["todo"]
    bad = [i for i in order if str(i) in items and items[str(i)]["status"] != SUCCEEDED]
    if not bad:
        return {"type": "ItemsFailed", "message": message, "detail": {"failed_items": None, "errors": {}}}
    first: ErrorDoc | dict[str, Any] = items[str(bad[0])].get("error") or {}
    shown = ", ".join(str(i) for i in bad[:_ERRORS_SHOWN]) + (", …" if len(bad) > _ERRORS_SHOWN else "")
    message += f" (item {shown}); item {bad[0]}: {first.get('message') or first.get('type') or 'failed'}"
    detail = {"failed_items": bad, "errors": {str(i): items[str(i)].get("error") for i in bad[:_ERRORS_SHOWN]}}
    return {"type": "ItemsFailed", "message": message, "detail": detail}
