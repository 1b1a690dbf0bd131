"""Router memory: RSS before and after many diamond runs. It must not grow with the number of finished runs.

The router runs in this process (with its dispatchers and in-process functions), so RSS is this process's
`VmRSS`. The baseline is taken after a warm-up (pools, caches and the allocator at their working size) and
a full garbage collection; the driver keeps no per-run state, so what grows is knflow's.
"""

from __future__ import annotations

import asyncio
import gc
from typing import Any

from bench.drive import Driver


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


async def _runs(driver: Driver, pipeline: Any, n: int, in_flight: int) -> None:
    slots = asyncio.Semaphore(in_flight)
    bad = 0

    async def one(i: int) -> None:
        nonlocal bad
        try:
            if await driver.run(pipeline, {"n": i}) != "succeeded":
                bad += 1
        finally:
            slots.release()

    tasks: set[asyncio.Task] = set()
    for i in range(n):
        await slots.acquire()
        task = asyncio.create_task(one(i))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    while tasks:
        await asyncio.gather(*list(tasks))
    if bad:
        raise RuntimeError(f"memory workload: {bad} of {n} runs did not succeed")


async def growth(router: Any, pipeline: Any, runs: int, in_flight: int, warmup: int = 2000) -> dict[str, float]:
    driver = Driver(router)
    await _runs(driver, pipeline, warmup, in_flight)
    gc.collect()
    before = rss_mb()
    loop = asyncio.get_running_loop()
    started = loop.time()
    await _runs(driver, pipeline, runs, in_flight)
    elapsed = loop.time() - started
    gc.collect()
    after = rss_mb()
    return {
        "rss_before_mb": before,
        "rss_after_mb": after,
        "growth_mb": after - before,
        "runs": runs,
        "runs_per_s": runs / elapsed,
    }
