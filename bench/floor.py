"""The floor: the same functions called directly with asyncio in one process, no broker, no store.

Each call validates its input from JSON and dumps its output, as knflow's handler does, so that the
difference to a knflow mode is the orchestration alone.
"""

from __future__ import annotations

import asyncio
from typing import Any

from bench.functions import bench_a, bench_b, bench_c, bench_d, bench_sum


async def _call(spec: Any, doc: dict) -> dict:
    return (await spec.fn(spec.input_model.model_validate(doc))).model_dump(mode="json")


async def diamond(pipeline: Any, data: dict) -> str:
    a = await _call(bench_a, {"n": data["n"]})
    b, c = await asyncio.gather(_call(bench_b, a), _call(bench_c, a))
    await _call(bench_d, {"b": b["n"], "c": c["n"]})
    return "succeeded"


async def chain(pipeline: Any, data: dict) -> str:
    doc = {"n": data["n"]}
    for _ in range(10):
        doc = await _call(bench_a, doc)
    return "succeeded"


async def fanout(pipeline: Any, data: dict, width: int = 1000) -> str:
    src = await _call(bench_a, {"n": data["n"]})
    outs = await asyncio.gather(*(_call(bench_b, src) for _ in range(width)))
    await _call(bench_sum, {"values": [o["n"] for o in outs]})
    return "succeeded"


RUNNERS = {"diamond": diamond, "chain10": chain, "fanout1000": fanout}
