"""What metrics and traces cost: the diamond on NATS (one process: router, dispatchers, functions), with
Prometheus metrics off or on and OpenTelemetry traces off or on, in alternating rounds on one stack, so that
every figure has its baseline from the same minutes of the same (noisy) machine.

    python -m bench.observability_cost [--rounds 6] [--runs 300] [--in-flight 200] [--tracing-off-only]

Traces go over OTLP/HTTP to a sink process (bench/otlp_sink.py, which decodes and counts them). Per setting:
the median runs/s of its rounds, and CPU per run (this process' CPU time, its span export thread included;
the nats-server's and the sink's are not), against metrics off and tracing off. `--tracing-off-only` runs
the settings without tracing and never imports broker.tracing: to run it in a checkout from before tracing
too, for what tracing costs when off (two invocations, alternated by hand: compare them with care).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any, cast

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))

SETTINGS = (  # (metrics, tracing)
    (False, False),
    (True, False),
    (False, True),
    (True, True),
)
OFF_ONLY: list[tuple[bool, bool]] = []  # with --tracing-off-only: the settings, tracing never touched
TRACE_ENV = ("OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_BSP_MAX_QUEUE_SIZE")


def label(setting: tuple[bool, bool]) -> str:
    return f"metrics {'on' if setting[0] else 'off'}, tracing {'on' if setting[1] else 'off'}"


def switch(setting: tuple[bool, bool], sink_url: str) -> None:
    """Metrics and tracing as `setting` says, in this process (the stack's dispatchers are in it too)."""
    from broker import metrics

    metrics.set_enabled(setting[0])
    if setting in OFF_ONLY:
        return
    from broker import tracing

    if setting[1]:
        os.environ.update(
            {
                "OTEL_TRACES_EXPORTER": "otlp",
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"{sink_url}/v1/traces",
                "OTEL_BSP_MAX_QUEUE_SIZE": "262144",  # none dropped: a dropped span would cost less than one sent
            }
        )
        if not tracing.configure("knflow-bench"):
            raise RuntimeError("tracing did not turn on: is the otel extra installed? pip install 'knflow[otel]'")
    else:
        for name in TRACE_ENV:
            os.environ.pop(name, None)
        tracing.configure()  # off; the provider flushes what it holds first


async def measure(
    settings: tuple[tuple[bool, bool], ...], rounds: int, runs: int, in_flight: int, sink_url: str
) -> dict[str, list[tuple[float, float]]]:
    from bench import drive, pipelines, stacks

    diamond = pipelines.diamond()
    got: dict[str, list[tuple[float, float]]] = {label(s): [] for s in settings}
    async with stacks.mode("nats", [diamond]) as stack:
        driver = drive.Driver(stack.router)
        await drive.throughput(driver.run, diamond, runs, in_flight)  # warm up
        for r in range(rounds):
            order = settings if r % 2 == 0 else settings[::-1]
            for setting in order:
                switch(setting, sink_url)
                cpu, wall = time.process_time(), time.perf_counter()
                await drive.throughput(driver.run, diamond, runs, in_flight)
                cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
                got[label(setting)].append((runs / wall, cpu / runs * 1000))
            print(f"  round {r + 1}/{rounds} done", file=sys.stderr, flush=True)
        switch((True, False), sink_url)
    return got


class OtlpSink:
    """bench/otlp_sink.py in a process of its own: its URL; `stop` returns how many spans it received."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "bench.otlp_sink"], stdout=subprocess.PIPE, text=True)
        self.out = cast(IO[str], self.proc.stdout)
        self.url = self.out.readline().split()[-1]

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        spans = int(self.out.read().split()[-1])
        self.proc.wait(10)
        return spans


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.observability_cost", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=6, help="rounds; each runs every setting once (default 6)")
    parser.add_argument("--runs", type=int, default=300, help="diamond runs per setting per round (default 300)")
    parser.add_argument("--in-flight", type=int, default=200, help="runs in flight at most (default 200)")
    parser.add_argument("--tracing-off-only", action="store_true", help="only the settings without tracing")
    args = parser.parse_args(argv)
    settings = tuple(s for s in SETTINGS if not s[1]) if args.tracing_off_only else SETTINGS
    if args.tracing_off_only:
        OFF_ONLY.extend(settings)
    from bench import environment
    from knflow.cli import configure_logging

    configure_logging(0)
    sink = None if args.tracing_off_only else OtlpSink()
    try:
        loop_factory: Any = None
        if environment.has_uvloop():
            import uvloop

            loop_factory = uvloop.new_event_loop
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            got = runner.run(measure(settings, args.rounds, args.runs, args.in_flight, sink.url if sink else ""))
    finally:
        spans = sink.stop() if sink else 0
    base = got[label((False, False))]
    base_rate = statistics.median(r for r, _ in base)
    base_cpu = statistics.median(c for _, c in base)
    print(f"diamond on NATS, {args.rounds} rounds of {args.runs} runs per setting, {args.in_flight} in flight")
    print(f"{'setting':<28} {'runs/s':>8} {'vs base':>8} {'CPU ms/run':>11} {'vs base':>8}")
    for name, rows in got.items():
        rate, cpu = statistics.median(r for r, _ in rows), statistics.median(c for _, c in rows)
        print(f"{name:<28} {rate:8.1f} {rate / base_rate - 1:+8.1%} {cpu:11.2f} {cpu / base_cpu - 1:+8.1%}")
    if traced_runs := sum(1 for s in settings if s[1]) * args.rounds * args.runs:
        print(f"spans received by the sink: {spans:,} ({spans / traced_runs:.1f} per traced run)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
