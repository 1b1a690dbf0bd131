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
    The common case, nothing over it, costs one encode of each part per invoke and no task; a big invoke's parts
    are not encoded again (a 20 MB foreach list encoded four times was most of a big run's peak memory)."""
    encoded = [_encoded_parts(i) for i in invokes]
    big = [k for k, parts in enumerate(encoded) if _size(parts) > store.threshold_bytes]
    if not big:
        return invokes
    out = list(invokes)
    done = await asyncio.gather(*(_offload(store, invokes[k], encoded[k]) for k in big))
    for k, invoke in zip(big, done, strict=True):
        out[k] = invoke
    return out


async def offload_invoke(store: BlobStore, invoke: Invoke) -> Invoke:
    """`invoke` with its largest parts in the blob store until its data fits within the threshold."""
    parts = _encoded_parts(invoke)
    return invoke if _size(parts) <= store.threshold_bytes else await _offload(store, invoke, parts)


def _encoded_parts(invoke: Invoke) -> dict[str, bytes]:
    return {"inputs": encode(invoke.inputs), "config": encode(invoke.config)}


def _size(parts: dict[str, bytes]) -> int:
    """The size of `{"inputs": ..., "config": ...}` as `encode` writes it, from its parts' encodings."""
    return (
        sum(len(name) + 3 + len(data) for name, data in parts.items()) + len(parts) + 1
    )  # quotes, colon; commas, braces


async def _offload(store: BlobStore, invoke: Invoke, parts: dict[str, bytes]) -> Invoke:
    key = attempt_key(invoke.run_id, invoke.node, invoke.attempt)
    values: dict[str, Any] = {"inputs": invoke.inputs, "config": invoke.config}
    for name in sorted(parts, key=lambda n: len(parts[n]), reverse=True):
        values[name] = ref = await store.offload_encoded(parts[name], key, name)
        parts[name] = encode(ref)
        if _size(parts) <= store.threshold_bytes:
            break
    return dataclasses.replace(invoke, **values)
