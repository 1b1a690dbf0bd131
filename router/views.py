"""Pure: the short views of a run that lists show (the dashboard's runs list and its stream, `GET /runs?view=
summary`): no outputs, inputs or tracebacks, so that a page of fifty runs stays small whatever they hold."""

from __future__ import annotations

from typing import Any, TypedDict

from router.runs import RunDoc, fan_progress, item_states


class TriggerSummary(TypedDict):
    type: str | None
    source: str | None
    id: str | None


class RunSummary(TypedDict):
    id: str
    pipeline: str
    status: str
    created_at: str
    finished_at: str | None
    error: dict[str, Any] | None  # its type and message only
    replay_of: str | None
    replays: int
    trigger: TriggerSummary
    nodes: dict[str, int]  # how many nodes are in each state
    items: dict[str, int]  # how many fan-out items are in each state (empty without fan-out nodes); from the
    # counters: succeeded, failed (every other end), running (scheduled too), pending
    version: int


def run_summary(run: RunDoc) -> RunSummary:
    nodes: dict[str, int] = {}
    items: dict[str, int] = {}
    for state in run["nodes"].values():
        nodes[state["status"]] = nodes.get(state["status"], 0) + 1
        if (fan := state.get("fan")) is not None:  # the counters: a list reads light runs, never items
            p = fan_progress(fan)
            for status, n in (("succeeded", p["done"]), ("failed", p["failed"]), ("running", p["running"])):
                if n:
                    items[status] = items.get(status, 0) + n
            if p["pending"]:
                items["pending"] = items.get("pending", 0) + p["pending"]
            continue
        for item in item_states(state):
            items[item["status"]] = items.get(item["status"], 0) + 1
    trigger = run.get("trigger") or {}
    error = run.get("error")
    return {
        "id": run["id"],
        "pipeline": run["pipeline"],
        "status": run["status"],
        "created_at": run["created_at"],
        "finished_at": run.get("finished_at"),
        "error": {"type": error.get("type"), "message": error.get("message")} if error else None,
        "replay_of": run.get("replay_of"),
        "replays": len(run.get("replays") or []),
        "trigger": {"type": trigger.get("type"), "source": trigger.get("source"), "id": trigger.get("id")},
        "nodes": nodes,
        "items": items,
        "version": run.get("version", 0),
    }


def counts_by_status(rows: list[Any]) -> dict[str, Any]:
    """`count_runs` rows as the dashboard reads them: totals by status, and by pipeline then status."""
    statuses: dict[str, int] = {}
    pipelines: dict[str, dict[str, int]] = {}
    for row in rows:
        statuses[row["status"]] = statuses.get(row["status"], 0) + row["count"]
        pipelines.setdefault(row["pipeline"], {})[row["status"]] = row["count"]
    return {"statuses": statuses, "pipelines": pipelines}
