"""The answer of a synchronous webhook (`trigger: {type: webhook, respond: sync, timeout_s: 30}`).

The router that took the request holds it and reads the run document from the store with backoff until the
run has an answer, so the answer comes whichever router applies the results (the store is the one place
every router sees): the first `http-response` node that succeeded (its status, headers and body, checked
again by functions/builtins/http_response.py `check_response`), else the run's end (succeeded: the output
of its last nodes; failed or cancelled: a 500 with its error), else, past `timeout_s`, a 504 with the run id
to poll. `answer` is pure."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from functions.blobs import BlobStore, has_refs
from functions.builtins.http_response import check_response
from functions.errors import FunctionError
from router.pipeline import Pipeline
from router.runs import RUNNING, SUCCEEDED, RunDoc

FUNCTION = "http-response"
FIRST_POLL_S = 0.01
MAX_POLL_S = 0.25


@dataclass(frozen=True)
class Reply:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


def answer(p: Pipeline, run: RunDoc) -> Reply | None:
    """The reply the run gives now, or None while it has none yet."""
    for node in p.order:
        if p.nodes[node].function == FUNCTION and run["nodes"][node]["status"] == SUCCEEDED:
            try:
                status, headers, body = check_response(run["nodes"][node]["output"], f"node '{node}' (http-response)")
            except FunctionError as exc:
                return Reply(500, {"run": run["id"], "status": "failed", "error": str(exc)})
            return Reply(status, body, headers)
    if run["status"] == RUNNING:
        return None
    if run["status"] != SUCCEEDED:
        error: dict[str, Any] = dict(run.get("error") or {})
        return Reply(
            500, {"run": run["id"], "status": run["status"], "error": error.get("message"), "node": error.get("node")}
        )
    sinks = [n for n in p.order if not p.successors[n] and run["nodes"][n]["status"] == SUCCEEDED]
    if len(sinks) == 1:
        return Reply(200, run["nodes"][sinks[0]]["output"])
    return Reply(200, {n: run["nodes"][n]["output"] for n in sinks})


def timed_out(run_id: str, timeout_s: float) -> Reply:
    return Reply(
        504,
        {
            "run": run_id,
            "status": "running",
            "error": f"run '{run_id}' had no answer within {timeout_s:g} s (the trigger's timeout_s); "
            f"it goes on: poll GET /runs/{run_id}",
            "poll": f"/runs/{run_id}",
        },
    )


async def await_reply(store: Any, blobs: BlobStore | None, p: Pipeline, run_id: str, timeout_s: float) -> Reply:
    """Poll the run in the store (10 ms, doubling to 250 ms) until it has an answer or `timeout_s` passed."""
    deadline = time.monotonic() + timeout_s
    pause = FIRST_POLL_S
    while True:
        run = await store.get_run(run_id)
        reply = answer(p, run) if run is not None else None
        if reply is not None and run is not None:
            return answer(p, await _resolved(p, run, blobs)) or reply if blobs is not None else reply
        left = deadline - time.monotonic()
        if left <= 0:
            return timed_out(run_id, timeout_s)
        await asyncio.sleep(min(pause, left))
        pause = min(pause * 2, MAX_POLL_S)


async def _resolved(p: Pipeline, run: RunDoc, blobs: BlobStore) -> RunDoc:
    """The run with the outputs a reply may read (http-response nodes, the last nodes) loaded where they are
    references to blobs (outputs over the blob threshold)."""
    read = {n for n in p.order if p.nodes[n].function == FUNCTION or not p.successors[n]}
    nodes = dict(run["nodes"])
    for n in read:
        if has_refs(nodes[n].get("output")):
            nodes[n] = {**nodes[n], "output": await blobs.resolve(nodes[n]["output"], run_id=run["id"])}
    return {**run, "nodes": nodes}
