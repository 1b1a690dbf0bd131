"""`python -m bench.foreach10k [--modes embedded,nats] [--sizes 1000,10000]`: a big foreach at linear cost.

One run of `src -> each (foreach over N items, each output about 2 KB) -> count (reads {{ each.output }})`
per size and mode, each in a fresh process of its own (so that its peak RSS is its own), and the ratio of
the largest size's time to the smallest's, which the issue's target bounds (10,000 items at most 15x the
time of 1,000, in the same invocation), and each run's RSS above the process's base (the target: under 3x
the size of the outputs). Needs nats-server for the `nats` mode.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUTPUT_BYTES = len(json.dumps({"n": 0, "text": "00000000" * 256}))  # one item's output, as JSON


def pipeline(size: int) -> Any:
    from bench.pipelines import _load

    return _load(
        f"bench-foreach{size}",
        [
            {"id": "src", "type": "bench-a", "inputs": {"n": "{{ trigger.data.n }}"}},
            {"id": "each", "type": "bench-kb", "foreach": "{{ trigger.data.items }}", "inputs": {"n": "{{ item }}"}},
            {"id": "count", "type": "bench-count", "inputs": {"items": "{{ each.output }}"}},
        ],
        [("src", "each"), ("each", "count")],
    )


def _kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


async def one(mode: str, size: int) -> dict[str, Any]:
    """In this process: a warm-up run of 10 items, then the measured run of `size`."""
    from bench import stacks
    from bench.drive import Driver
    from knflow.cli import configure_logging

    configure_logging(0)
    warm, big = pipeline(10), pipeline(size)
    async with stacks.mode(mode, [warm, big]) as stack:
        driver = Driver(stack.router)
        assert await driver.run(warm, {"n": 1, "items": list(range(10))}) == "succeeded"
        Path("/proc/self/clear_refs").write_text("5")  # the peak RSS counts from here
        base_kib = _kib("VmRSS")
        started = time.perf_counter()
        status = await driver.run(big, {"n": 1, "items": list(range(size))})
        seconds = time.perf_counter() - started
        peak_kib = _kib("VmHWM")
        run = await stack.router.store.get_run(f"{driver.tag}{driver.count:010d}")
        counted = run["nodes"]["count"]["output"]["n"]
    return {
        "mode": mode,
        "items": size,
        "status": status,
        "counted": counted,
        "seconds": round(seconds, 3),
        "base_mb": round(base_kib / 1024, 1),
        "rss_above_base_mb": round((peak_kib - base_kib) / 1024, 1),
        "outputs_mb": round(size * OUTPUT_BYTES / 2**20, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.foreach10k", description=__doc__.splitlines()[0])
    parser.add_argument("--modes", default="embedded,nats")
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--one", nargs=2, metavar=("MODE", "SIZE"), help=argparse.SUPPRESS)  # the child
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(asyncio.run(one(args.one[0], int(args.one[1])))))
        return 0
    sizes = [int(s) for s in args.sizes.split(",")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    failed = False
    print(f"{'mode':<10}{'items':>8}{'seconds':>10}{'ratio':>8}{'RSS above base MB':>19}{'outputs MB':>12}{'x':>6}")
    for mode in args.modes.split(","):
        first = None
        for size in sizes:
            done = subprocess.run(
                [sys.executable, "-m", "bench.foreach10k", "--one", mode, str(size)],
                capture_output=True,
                text=True,
                env=env,
                cwd=ROOT,
            )
            if done.returncode != 0:
                print(f"{mode:<10}{size:>8}  failed:\n{done.stderr[-3000:]}")
                failed = True
                break
            got = json.loads(done.stdout.strip().splitlines()[-1])
            first = first or got
            ratio = got["seconds"] / first["seconds"]
            rss_x = got["rss_above_base_mb"] / max(got["outputs_mb"], 0.1)
            ok = got["status"] == "succeeded" and got["counted"] == size
            failed |= not ok
            print(
                f"{mode:<10}{size:>8}{got['seconds']:>10.2f}{ratio:>8.1f}{got['rss_above_base_mb']:>19.1f}"
                f"{got['outputs_mb']:>12.1f}{rss_x:>6.1f}{'' if ok else '  WRONG: ' + json.dumps(got)}"
            )
    print(f"targets: {sizes[-1]:,} items at most 15x the time of {sizes[0]:,}; RSS above base under 3x the outputs")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
