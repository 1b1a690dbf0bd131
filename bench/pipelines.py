"""The workloads' pipelines, built as YAML text and loaded through the same validation as a user's file.

diamond     a -> (b, c) -> d
chain10     n1 -> n2 -> ... -> n10
fanout1000  src -> each (`replicas: 1000`, one invoke per item) -> join
static500   src -> (f0 ... f497) -> join     (500 static nodes, a pipeline's limit, beside the foreach)
"""

from __future__ import annotations

import json
from typing import Any

from router.pipeline import Pipeline
from router.loader import load_string

FUNCTIONS_MODULE = "bench.functions"


def _load(name: str, nodes: list[dict], edges: list[tuple[str, str]]) -> Pipeline:
    doc = {
        "apiVersion": "knflow.dev/v1",
        "kind": "Pipeline",
        "metadata": {"name": name},
        "functions": [FUNCTIONS_MODULE],
        "trigger": {"type": "webhook"},
        "nodes": nodes,
        "edges": [{"from": a, "to": b} for a, b in edges],
    }
    return load_string(json.dumps(doc), f"<bench {name}>")  # JSON is YAML


def diamond() -> Pipeline:
    return _load(
        "bench-diamond",
        [
            {"id": "a", "type": "bench-a", "inputs": {"n": "{{ trigger.data.n }}"}},
            {"id": "b", "type": "bench-b", "inputs": {"n": "{{ a.output.n }}"}},
            {"id": "c", "type": "bench-c", "inputs": {"n": "{{ a.output.n }}"}},
            {"id": "d", "type": "bench-d", "inputs": {"b": "{{ b.output.n }}", "c": "{{ c.output.n }}"}},
        ],
        [("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")],
    )


def chain(length: int = 10) -> Pipeline:
    nodes = [{"id": "n1", "type": "bench-a", "inputs": {"n": "{{ trigger.data.n }}"}}]
    nodes += [
        {"id": f"n{i}", "type": "bench-a", "inputs": {"n": f"{{{{ n{i - 1}.output.n }}}}"}}
        for i in range(2, length + 1)
    ]
    return _load(f"bench-chain{length}", nodes, [(f"n{i - 1}", f"n{i}") for i in range(2, length + 1)])


def fanout(width: int = 1000) -> Pipeline:
    nodes: list[dict[str, Any]] = [
        {"id": "src", "type": "bench-a", "inputs": {"n": "{{ trigger.data.n }}"}},
        {"id": "each", "type": "bench-b", "replicas": width, "inputs": {"n": "{{ src.output.n }}"}},
        {"id": "join", "type": "bench-collect", "inputs": {"items": "{{ each.output }}"}},
    ]
    return _load(f"bench-fanout{width}", nodes, [("src", "each"), ("each", "join")])


def static_fanout(width: int = 498) -> Pipeline:
    branches = [f"f{i}" for i in range(width)]
    nodes = [{"id": "src", "type": "bench-a", "inputs": {"n": "{{ trigger.data.n }}"}}]
    nodes += [{"id": b, "type": "bench-b", "inputs": {"n": "{{ src.output.n }}"}} for b in branches]
    nodes.append(
        {"id": "join", "type": "bench-sum", "inputs": {"values": [f"{{{{ {b}.output.n }}}}" for b in branches]}}
    )
    edges = [("src", b) for b in branches] + [(b, "join") for b in branches]
    return _load(f"bench-static{width}", nodes, edges)
