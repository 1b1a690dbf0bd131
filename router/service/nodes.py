"""One node of a run as the dashboard's node panel shows it (`GET /runs/{id}/nodes/{node}`): its whole
state and the inputs its invoke renders to."""

from __future__ import annotations

from typing import Any

from broker.errors import InvalidEvent
from router import engine
from router.runs import RunDoc, item_record, item_states, now_iso, split_key, state_of
from router.service.context import Service


async def node_view(svc: Service, run: RunDoc, key: str) -> dict[str, Any]:
    state = state_of(run, key)
    node, index = split_key(key)
    if state is None:
        shown = ", ".join(run["nodes"]) or "none"
        raise InvalidEvent(f"run '{run['id']}' has no node '{key}'. Its nodes: {shown}", field="node")
    p = await svc.catalog.get(run["pipeline"])
    inputs, why = None, None
    if p is None or node not in p.nodes:
        why = f"pipeline '{run['pipeline']}' no longer has node '{node}'"
    else:
        invoke = engine.render_invoke(p, run, key, max(state["attempt"], 1), now_iso())
        if invoke is None:
            why = "its inputs do not render yet: what they read is not in the run (yet)"
        else:
            inputs = invoke.inputs
    shown_state = {k: v for k, v in state.items() if k != "items"}  # items: below, one per line
    out = {
        "run": run["id"],
        "node": key,
        "item": index,
        "function": p.nodes[node].function if p is not None and node in p.nodes else None,
        "state": shown_state,
        "inputs": inputs,
        "inputs_error": why,
    }
    if index is None and "items" in state:  # a fan-out node: its items' states (the run stream has counters only)
        out["items"] = [item_record(item) for item in item_states(state)]  # type: ignore[arg-type]
    return out
