"""The results: `bench/results.json` as {WORKLOAD: {MODE: {METRIC: number}}} (plus `meta`), a table, and
the issue's targets checked against the figures of the same invocation."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

Results = dict[str, dict[str, dict[str, float]]]

# (what, workload, modes, metric, comparison, target): issue 18's, each a ratio or a CPU figure of the same
# invocation, so that it holds on any machine; of several modes, the best one counts. `x_celery` and
# `hop_over_floor_ms` are computed from the same run (add_ratios).
TARGETS = [
    ("CPU per diamond run, NATS (ms)", "diamond", ("nats",), "cpu_ms_per_run", "<=", 1.0),
    ("diamond throughput vs Celery, NATS", "diamond", ("nats", "nats-split"), "x_celery", ">=", 12),
    ("diamond throughput vs Celery, embedded", "diamond", ("embedded",), "x_celery", ">=", 40),
    ("chain10 per-hop above the floor, NATS (ms)", "chain10", ("nats",), "hop_over_floor_ms", "<=", 0.3),
    ("import knflow (ms)", "coldstart", ("import",), "knflow_ms", "<=", 120),
    ("cold start to first invoke (ms)", "coldstart", ("serve_function",), "first_invoke_ms", "<=", 600),
    ("fanout1000 run, NATS (s)", "fanout1000", ("nats",), "run_s", "<=", 2),
    ("diamond throughput, isolated (runs/s)", "diamond", ("isolated",), "runs_per_s", ">=", 300),
    ("RSS growth, embedded (MB per 100k)", "memory", ("embedded",), "growth_mb_per_100k", "<=", 50),
    ("RSS growth, NATS (MB per 100k)", "memory", ("nats",), "growth_mb_per_100k", "<=", 50),
]

# bench/cpu.py's parts, as the table names them
PARTS = {
    "bench": "bench process",
    "router": "router",
    "dispatcher": "dispatcher process",
    "functions": "function services",
    "standin": "broker stand-in",
    "worker": "celery worker",
    "otlp": "OTLP sink",
    "other": "other",
}
SERVERS = {"nats": "nats-server", "redis": "redis-server", "mongo": "nx-27017"}

COLUMNS = [  # (header, metric, format)
    ("runs/s", "runs_per_s", "{:,.0f}"),
    ("p50 ms", "p50_ms", "{:.2f}"),
    ("p99 ms", "p99_ms", "{:.2f}"),
    ("hop p50 ms", "hop_p50_ms", "{:.3f}"),
    ("run s", "run_s", "{:.2f}"),
    ("loaded p50 ms", "loaded_p50_ms", "{:,.0f}"),
    ("CPU ms/run", "cpu_ms_per_run", "{:.2f}"),
    ("server ms/run", "cpu_server_ms_per_run", "{:.2f}"),
    ("x celery", "x_celery", "{:.1f}"),
    ("x celery CPU", "x_celery_cpu", "{:.1f}"),
    ("x floor", "x_floor", "{:.3f}"),
    ("x untraced", "x_untraced", "{:.3f}"),
]


def add_ratios(results: Results) -> None:
    """Throughput as a multiple of Celery's, CPU per run as a fraction of Celery's (`x_celery_cpu`: how many
    of this mode's runs cost the CPU of one Celery run), throughput as a fraction of the floor's, traced NATS
    against untraced NATS,
    and chain10's per-hop time on NATS above the transport's floor (a JetStream ack + a delivery), all from
    the same invocation."""
    hop = results.get("chain10", {}).get("nats", {}).get("hop_p50_ms")
    transport = results.get("transport", {}).get("nats")
    if hop is not None and transport:
        floor_ms = transport["publish_ack_p50_ms"] + transport["delivery_p50_ms"]
        results["chain10"]["nats"].update({"floor_ms": floor_ms, "hop_over_floor_ms": hop - floor_ms})
    for modes in results.values():
        celery = modes.get("celery", {}).get("runs_per_s")
        celery_cpu_ms = modes.get("celery", {}).get("cpu_ms_per_run")
        floor = modes.get("floor", {}).get("runs_per_s")
        for mode, metrics in modes.items():
            rate = metrics.get("runs_per_s")
            if rate is None or mode in ("celery", "floor"):
                continue
            if celery:
                metrics["x_celery"] = rate / celery
            if celery_cpu_ms and metrics.get("cpu_ms_per_run"):  # Celery's CPU per run over this mode's: load-proof
                metrics["x_celery_cpu"] = celery_cpu_ms / metrics["cpu_ms_per_run"]
            if floor:
                metrics["x_floor"] = rate / floor
        untraced = modes.get("nats", {}).get("runs_per_s")
        if untraced and (traced := modes.get("nats-traced", {}).get("runs_per_s")):
            modes["nats-traced"]["x_untraced"] = traced / untraced  # what tracing costs, in the same run


def _cell(metrics: dict[str, float], metric: str, fmt: str) -> str:
    value = metrics.get(metric)
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else fmt.format(value)


def table(results: Results) -> str:
    lines = []
    runs = [
        (w, m, metrics)
        for w, modes in results.items()
        if w in ("diamond", "chain10", "fanout1000", "static500")
        for m, metrics in modes.items()
    ]
    cols = [c for c in COLUMNS if any(c[1] in metrics for _w, _m, metrics in runs)]
    head = f"{'workload':<11} {'mode':<11} " + " ".join(f"{h:>13}" for h, _m, _f in cols)
    lines += [head, "-" * len(head)]
    for w, m, metrics in runs:
        lines.append(f"{w:<11} {m:<11} " + " ".join(f"{_cell(metrics, metric, fmt):>13}" for _h, metric, fmt in cols))
    lines += cpu_lines(results)
    for m, metrics in results.get("memory", {}).items():
        lines.append(
            f"memory      {m:<9} RSS {metrics['rss_before_mb']:.1f} MB -> {metrics['rss_after_mb']:.1f} MB after "
            f"{metrics['runs']:,.0f} diamond runs ({metrics['growth_mb']:+.1f} MB; "
            f"{metrics['growth_mb_per_100k']:+.1f} MB per 100,000"
            f"{'' if metrics['runs'] >= 100_000 else ', extrapolated'})"
        )
    floor = results.get("transport", {}).get("nats")
    if floor:
        over = results.get("chain10", {}).get("nats", {}).get("hop_over_floor_ms")
        lines.append(
            "transport   one event at a time on this nats-server: "
            f"JetStream ack {floor['publish_ack_p50_ms']:.2f} ms p50, "
            f"publish -> dispatcher {floor['delivery_p50_ms']:.2f} ms p50: a hop crosses it twice"
            + ("" if over is None else f"; chain10's hop on nats is {over:.2f} ms above ack + delivery")
        )
    cold = results.get("coldstart", {})
    if cold:
        fn, imp = cold.get("serve_function", {}), cold.get("import", {})
        lines.append(
            f"cold start  knflow serve function: /healthz 200 after {fn.get('healthz_ms', float('nan')):.0f} ms, "
            f"first invoke answered after {fn.get('first_invoke_ms', float('nan')):.0f} ms "
            f"({fn.get('first_invoke_cpu_ms', float('nan')):.0f} ms of its CPU); "
            f"import knflow {imp.get('knflow_ms', float('nan')):.0f} ms (-X importtime; "
            f"{imp.get('knflow_cpu_ms', float('nan')):.0f} ms of CPU)"
        )
    return "\n".join(lines)


def cpu_lines(results: Results) -> list[str]:
    """CPU per diamond run (the throughput phase), per mode and per part, the message server beside."""
    lines = []
    for mode, metrics in results.get("diamond", {}).items():
        if "cpu_ms_per_run" not in metrics:
            continue
        parts = [
            f"{label} {metrics[f'cpu_{part}_ms_per_run']:.2f}"
            for part, label in PARTS.items()
            if f"cpu_{part}_ms_per_run" in metrics
        ]
        servers = [
            f"{label} {metrics[f'cpu_{part}_ms_per_run']:.2f} ms beside"
            for part, label in SERVERS.items()
            if f"cpu_{part}_ms_per_run" in metrics
        ]
        lines.append(
            f"cpu/run     {mode:<11} {metrics['cpu_ms_per_run']:.2f} ms = {' + '.join(parts)}"
            + (f"; {', '.join(servers)}" if servers else "")
        )
    return lines


def targets(results: Results) -> tuple[str, dict[str, dict[str, Any]]]:
    lines, out = [], {}
    for what, workload, modes, metric, op, target in TARGETS:
        found = [(v, m) for m in modes if (v := results.get(workload, {}).get(m, {}).get(metric)) is not None]
        if not found:
            lines.append(f"  -  {what:<44} not measured in this invocation")
            continue
        value, mode = max(found) if op == ">=" else min(found)
        met = value >= target if op == ">=" else value <= target
        out[f"{workload}.{mode}.{metric}"] = {"value": value, "target": target, "met": met}
        note = f"  {mode}" if len(modes) > 1 else ""
        server = results.get(workload, {}).get(mode, {}).get("cpu_server_ms_per_run")
        if metric == "cpu_ms_per_run" and server is not None:
            note += f"  (nats-server {server:.2f} ms beside)"
        cpu_ms = results.get(workload, {}).get(mode, {}).get(metric.removesuffix("_ms") + "_cpu_ms")
        if workload == "coldstart" and cpu_ms is not None:  # wall-clock, as a pod pays it: the CPU says how busy
            note += f"  ({cpu_ms:,.0f} ms of CPU)"
        lines.append(f"  {'✓' if met else '✗'}  {what:<44} {value:10,.2f}  (target {op} {target:,}){note}")
    return "\n".join(lines), out


def write(path: Path, results: Results, meta: dict[str, Any]) -> None:
    path.write_text(json.dumps({"meta": meta, **results}, indent=2, sort_keys=False) + "\n")
