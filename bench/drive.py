"""Driving runs through a router and timing them: sequential latency and capped-concurrency throughput.

A run's end is taken from what the router publishes: `RunEnds` wraps the router's publisher and resolves
a run's future once its `dev.knflow.run.succeeded|failed` event is stored (acked by JetStream, or handed
to the in-memory broker). Runs are submitted the way ingress does, `router.start_run(pipeline, event)`.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from broker import events
from broker import extensions as ext
from router.pipeline import Pipeline

ENDED = {events.RUN_SUCCEEDED: "succeeded", events.RUN_FAILED: "failed", events.RUN_CANCELLED: "cancelled"}


class RunEnds:
    """A publisher in front of the router's own: notes which runs ended, and how."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.waiting: dict[str, asyncio.Future[str]] = {}
        self.failed = 0

    def expect(self, run_id: str) -> asyncio.Future[str]:
        fut = self.waiting[run_id] = asyncio.get_running_loop().create_future()
        return fut

    async def publish_many(self, evs: list[Any]) -> Any:
        out = await self.inner.publish_many(evs)
        for ev in evs:
            status = ENDED.get(ev.get_type())
            if status is not None:
                fut = self.waiting.pop(str(ev.get_extension(ext.RUN)), None)
                if status != "succeeded":
                    self.failed += 1
                if fut is not None and not fut.done():
                    fut.set_result(status)
        return out

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class Driver:
    """Starts runs on `router` and waits for their ends."""

    def __init__(self, router: Any) -> None:
        self.router = router
        self.ends = RunEnds(router.publisher)
        router.publisher = self.ends
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
