"""The items of fan-out nodes, where the engine needs them: the router's side of big runs.

The stores keep a fan-out node's items out of the run document (router/runs.py `light`), and the run the
engine decides on has only the node's counters. What a step reads of the items is loaded here, into a copy
of the run (the stored run is not changed), and only for the nodes about to read it:
- a succeeded fan-out node's output (the list of its items' outputs) when a node about to be rendered reads
  it: a template (inputs, config, `foreach`) or an edge's `when:` names it;
- a running fan-out node's items when it is about to join with failed items (the error names them).
A node is about to be rendered when it is pending with every predecessor final (or in `statuses`, for the
sweeper), or is a running fan-out node that takes items now (router/fanout.py `room`). So a step that only
applies a result loads nothing, and a run of N items loads each output list once per node that reads it.

A step that would take items of a running fan-out node decides on the stored run, read again (light), not
on the run that the caller's own commit returned: the results of one window arrive together, and each
result's advance would otherwise refill the window from counters that the others have moved on since,
render the same items again and lose them all to the one that took them first.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from typing import Protocol

from router import conditions, fanout, templates
from router.pipeline import Pipeline
from router.runs import NODE_FINAL, PENDING, RUNNING, SUCCEEDED, ItemState, NodeState, RunDoc, item_map


class ItemReader(Protocol):
    async def get_items(self, run_id: str, node: str) -> list[ItemState]: ...

    async def get_run(self, run_id: str, *, light: bool = False) -> RunDoc | None: ...


def needed(p: Pipeline, run: RunDoc, statuses: Collection[str] = (PENDING,)) -> tuple[set[str], set[str]]:
    """Pure: (succeeded fan-out nodes whose outputs a node about to be rendered reads, running fan-out nodes
    about to join with failed items)."""
    nodes = run["nodes"]
    unloaded = {n for n, s in nodes.items() if s.get("status") == SUCCEEDED and "fan" in s and "items" not in s}
    failing = {
        n
        for n, s in nodes.items()
        if s.get("status") == RUNNING and "items" not in s and (fan := s.get("fan")) and fan["left"] == 0
    }
    if not unloaded:
        return set(), failing
    wanted: set[str] = set()
    for n, node in p.nodes.items():
        state = nodes.get(n)
        if state is None or not _about_to_render(p, n, state, nodes, statuses):
            continue
        for ref in templates.find_refs([node.inputs, node.config, node.foreach]):
            if ref.root == "node" and ref.node in unloaded:
                wanted.add(ref.node)
        for edge in p.incoming[n]:
            if edge.condition:
                wanted |= conditions.referenced_nodes(edge.condition, unloaded)
    return wanted, failing


def _about_to_render(
    p: Pipeline, n: str, state: NodeState, nodes: dict[str, NodeState], statuses: Collection[str]
) -> bool:
    status = state.get("status")
    if status == PENDING and PENDING in statuses:
        return all(nodes[x]["status"] in NODE_FINAL for x in p.predecessors[n] if x in nodes)
    if status in statuses:
        return True
    node = p.nodes[n]
    if status != RUNNING or not node.fans_out or (fan := state.get("fan")) is None:
        return False
    if set(statuses) - {PENDING}:  # the sweeper: it renders the items that stayed scheduled
        return True
    return fanout.room(node, fan) > 0


def _takes_items(p: Pipeline, run: RunDoc) -> bool:
    """Pure: a running fan-out node of `run` takes items in its next step (router/fanout.py `room`)."""
    for n, state in run["nodes"].items():
        node = p.nodes.get(n)
        fan = state.get("fan")
        running = node is not None and node.fans_out and fan is not None and state.get("status") == RUNNING
        if running and fanout.room(node, fan) > 0:  # type: ignore[arg-type]  # checked just above
            return True
    return False


async def loaded_view(p: Pipeline, run: RunDoc, store: ItemReader, statuses: Collection[str] = (PENDING,)) -> RunDoc:
    """`run` (or the stored run, when the step takes items), or a copy of it with the items (and outputs) that
    the next step reads (see the module docstring)."""
    if not any("fan" in state for state in run["nodes"].values()):  # no fan-out node started: nothing to load
        return run
    if PENDING in statuses and _takes_items(p, run):
        run = await store.get_run(run["id"], light=True) or run
    outputs, failing = needed(p, run, statuses)
    if not outputs and not failing:
        return run
    nodes = dict(run["nodes"])

    async def load(n: str) -> None:
        items = await store.get_items(run["id"], n)
        state: NodeState = {**nodes[n], "items": item_map(items)}
        if n in outputs:
            state["output"] = [item.get("output") for item in items]
        nodes[n] = state

    await asyncio.gather(*(load(n) for n in sorted(outputs | failing)))
    return {**run, "nodes": nodes}
