"""`python -m bench --profile [MODE]`: pyinstrument over the diamond throughput workload of one mode (the
router, its dispatchers and the in-process functions all run in this process), written as text: the call
tree of where the time goes. bench/PROFILE.md reads it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


async def profile(mode: str, runs: int, in_flight: int, out: Path) -> dict[str, Any]:
    from pyinstrument import Profiler
    from pyinstrument.renderers import ConsoleRenderer

    from bench import drive, pipelines, stacks

    diamond = pipelines.diamond()
    async with stacks.mode(mode, [diamond]) as stack:
        driver = drive.Driver(stack.router)
        await drive.throughput(driver.run, diamond, min(runs, 500), in_flight)  # warm up
        profiler = Profiler(interval=0.0005, async_mode="disabled")
        profiler.start()
        result = await drive.throughput(driver.run, diamond, runs, in_flight)
        session = profiler.stop()
    tree = ConsoleRenderer(unicode=False, color=False, show_all=False, short_mode=True).render(session)
    out.write_text(
        f"diamond throughput, mode {mode}: {runs:,} runs, at most {in_flight} in flight, "
        f"{result['runs_per_s']:,.0f} runs/s under the profiler\n\n{tree}"
    )
    return result
