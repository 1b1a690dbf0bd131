"""Driving runs through a router and timing them: sequential latency and capped-concurrency throughput.

A run's end is taken from the router's run-end hook (`Router.watch_ends`): `RunEnds` resolves a run's future
once the router has stored its end (and published its run event, where something consumes one). Runs are
submitted the way ingress does, `router.start_run(pipeline, event)`.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from broker import events
from router.pipeline import Pipeline
from router.runs import RunDoc


class RunEnds:
    """Notes which runs ended, and how (`failed` counts those that did not succeed)."""

    def __init__(self) -> None:
        self.waiting: dict[str, asyncio.Future[str]] = {}
        self.failed = 0

    def expect(self, run_id: str) -> asyncio.Future[str]:
        fut = self.waiting[run_id] = asyncio.get_running_loop().create_future()
        return fut

    def ended(self, run: RunDoc) -> None:
        status = run["status"]
        if status != "succeeded":
            self.failed += 1
        fut = self.waiting.pop(run["id"], None)
        if fut is not None and not fut.done():
            fut.set_result(status)


class Driver:
    """Starts runs on `router` and waits for their ends."""

    def __init__(self, router: Any) -> None:
        self.router = router
        self.ends = RunEnds()
        router.watch_ends(self.ends.ended)
        self.tag = uuid.uuid4().hex[:6]
        self.count = 0

    async def run(self, pipeline: Pipeline, data: Any) -> str:
        """One run, start to end; returns how it ended."""
        self.count += 1
        run_id = f"{self.tag}{self.count:010d}"
        ended = self.ends.expect(run_id)
        trigger = events.make_event(
            {"type": "dev.knflow.bench", "source": "/bench", "id": f"{run_id}:trigger", "datacontenttype": events.JSON},
            data,
        )
        await self.router.start_run(pipeline, trigger, run_id=run_id)
        return await ended


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


def _label(pipeline: Pipeline | None) -> str:
    return pipeline.name if pipeline is not None else "floor"


async def sequential(run: Any, pipeline: Pipeline | None, n: int, warmup: int = 20) -> dict[str, float]:
    """`n` runs one after another: p50 and p99 of one run, in ms. `pipeline` is None for the floor, which
    calls the functions directly."""
    for i in range(warmup):
        await run(pipeline, {"n": i})
    times = []
    for i in range(n):
        t = time.perf_counter()
        status = await run(pipeline, {"n": i})
        times.append((time.perf_counter() - t) * 1000)
        if status != "succeeded":
            raise RuntimeError(f"{_label(pipeline)}: a benchmark run {status}")
    return {"p50_ms": percentile(times, 50), "p99_ms": percentile(times, 99), "runs": n}


async def throughput(run: Any, pipeline: Pipeline | None, n: int, in_flight: int) -> dict[str, float]:
    """`n` runs submitted at once, at most `in_flight` of them running: runs/s from the first submit to
    the last end, and the latency of a run under that load. `pipeline` is None for the floor."""
    slots = asyncio.Semaphore(in_flight)
    times: list[float] = []
    bad: list[str] = []

    async def one(i: int) -> None:
        t = time.perf_counter()
        try:
            status = await run(pipeline, {"n": i})
        finally:
            slots.release()
        times.append((time.perf_counter() - t) * 1000)
        if status != "succeeded":
            bad.append(status)

    tasks = []
    started = time.perf_counter()
    for i in range(n):
        await slots.acquire()
        tasks.append(asyncio.create_task(one(i)))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - started
    if bad:
        raise RuntimeError(f"{_label(pipeline)}: {len(bad)} of {n} benchmark runs did not succeed ({bad[0]})")
    return {
        "runs_per_s": n / elapsed,
        "runs": n,
        "in_flight": in_flight,
        "loaded_p50_ms": percentile(times, 50),
        "loaded_p99_ms": percentile(times, 99),
    }
