"""The router's side of large payloads (the blob store and its references: functions.blobs).

- A function whose output is over the threshold replies with a reference; the router stores that (small)
  as the node's output. A template that passes the whole output (`{{ a.output }}`) passes the reference
  on as it is, and the next function resolves it.
- A template or an edge's `when:` that reads *inside* such an output (`{{ a.output.text }}`) needs the
  value. `resolved_view` loads exactly the outputs that the nodes about to be rendered read inside, into a
  copy of the run that the pure engine decides on; the stored run keeps the reference.
- An invoke whose rendered data is over the threshold goes to the blob store as well (`offload_invokes`),
  so that nothing larger than the threshold is ever published.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any
from collections.abc import Collection

import structlog

from functions.blobs import BlobStore, attempt_key, encode, is_ref
from router import conditions, templates
from router.engine import Invoke
from router.pipeline import Pipeline
from router.runs import PENDING, RUNNING, SUCCEEDED, RunDoc

log = structlog.get_logger("knflow.router")


def outputs_read_inside(p: Pipeline, run: RunDoc, statuses: Collection[str] = (PENDING,)) -> set[str]:
    """Pure: the succeeded nodes with a blob output (a reference, or a fan-out's list holding some) that a
    node about to be rendered reads inside of: a template path past `.output` (in its inputs, config or
    `foreach`), or an edge condition that names the node. Nodes about to be rendered are those in
    `statuses`, and running fan-out nodes (they render their items as they go)."""
    nodes = run["nodes"]
    referenced = {n for n, s in nodes.items() if s.get("status") == SUCCEEDED and _holds_refs(s.get("output"))}
    if not referenced:
        return set()
    wanted: set[str] = set()
    for n, node in p.nodes.items():
        state = nodes.get(n)
        status = state.get("status") if state is not None else None
        if status not in statuses and not (status == RUNNING and node.fans_out):
            continue
        for ref in templates.find_refs([node.inputs, node.config, node.foreach]):
            if ref.root == "node" and ref.path and ref.node is not None and ref.node in referenced:
                wanted.add(ref.node)
        for edge in p.incoming[n]:
            if edge.condition:
                wanted |= conditions.referenced_nodes(edge.condition, referenced)
    return wanted


def _holds_refs(output: Any) -> bool:
    return is_ref(output) or (isinstance(output, list) and any(is_ref(x) for x in output))


async def resolved_view(p: Pipeline, run: RunDoc, store: BlobStore, statuses: Collection[str] = (PENDING,)) -> RunDoc:
    """`run`, or a copy of it whose blob outputs that nodes in `statuses` read inside are loaded. Raises
    BlobError when the store fails in a way a retry may fix; a blob that is gone stays a reference, and the
    template that reads it fails its node, naming the blob."""
    wanted = sorted(outputs_read_inside(p, run, statuses))
    if not wanted:
        return run
    nodes = dict(run["nodes"])

    async def load(n: str) -> None:
        try:
            nodes[n] = {**nodes[n], "output": await store.resolve(nodes[n]["output"], run_id=run["id"])}
        except Exception as exc:  # BlobError
            if getattr(exc, "retryable", True):
                raise
            log.warning(
                "blob output cannot be read", run=run["id"], pipeline=run.get("pipeline"), node=n, error=str(exc)
            )

    await asyncio.gather(*(load(n) for n in wanted))
    return {**run, "nodes": nodes}


async def offload_invokes(store: BlobStore, invokes: list[Invoke]) -> list[Invoke]:
    """The invokes, each with its `inputs` (then its `config`) in the blob store when its data is over the threshold.
    The common case, nothing over it, costs one encode per invoke and no task."""
    big = [
        k
        for k, i in enumerate(invokes)
        if len(encode({"inputs": i.inputs, "config": i.config})) > store.threshold_bytes
    ]
    if not big:
        return invokes
    out = list(invokes)
    for k, done in zip(big, await asyncio.gather(*(offload_invoke(store, invokes[k]) for k in big)), strict=True):
        out[k] = done
    return out


async def offload_invoke(store: BlobStore, invoke: Invoke) -> Invoke:
    parts = {"inputs": invoke.inputs, "config": invoke.config}
    if len(encode(parts)) <= store.threshold_bytes:
        return invoke
    key = attempt_key(invoke.run_id, invoke.node, invoke.attempt)
    sizes = {name: len(encode(value)) for name, value in parts.items()}
    for name in sorted(parts, key=sizes.__getitem__, reverse=True):
        parts[name] = await store.offload(parts[name], key, name, threshold_bytes=0)
        if len(encode(parts)) <= store.threshold_bytes:
            break
    return dataclasses.replace(invoke, **parts)
