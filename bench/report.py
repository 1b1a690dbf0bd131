"""The results: `bench/results.json` as {WORKLOAD: {MODE: {METRIC: number}}} (plus `meta`), a table, and
the issue's targets checked against the figures of the same invocation."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

Results = dict[str, dict[str, dict[str, float]]]

# (what, workload, mode, metric, comparison, target); `x_celery` is computed from the same run
TARGETS = [
    ("diamond throughput, NATS", "diamond", "nats", "runs_per_s", ">=", 1500),
    ("diamond throughput vs Celery, NATS", "diamond", "nats", "x_celery", ">=", 15),
    ("diamond sequential p50, NATS", "diamond", "nats", "p50_ms", "<=", 3),
    ("chain10 per-hop overhead p50, NATS", "chain10", "nats", "hop_p50_ms", "<=", 0.5),
    ("diamond throughput, embedded", "diamond", "embedded", "runs_per_s", ">=", 5000),
    ("diamond throughput, isolated", "diamond", "isolated", "runs_per_s", ">=", 300),
    ("fanout1000 run, NATS", "fanout1000", "nats", "run_s", "<=", 2),
    ("RSS growth, embedded", "memory", "embedded", "growth_mb_per_100k", "<=", 50),
    ("RSS growth, NATS", "memory", "nats", "growth_mb_per_100k", "<=", 50),
    ("cold start to first invoke", "coldstart", "serve_function", "first_invoke_ms", "<=", 1000),
    ("import knflow", "coldstart", "import", "knflow_ms", "<=", 150),
]

COLUMNS = [  # (header, metric, format)
    ("runs/s", "runs_per_s", "{:,.0f}"),
    ("p50 ms", "p50_ms", "{:.2f}"),
    ("p99 ms", "p99_ms", "{:.2f}"),
    ("hop p50 ms", "hop_p50_ms", "{:.3f}"),
    ("run s", "run_s", "{:.2f}"),
    ("loaded p50 ms", "loaded_p50_ms", "{:,.0f}"),
    ("x celery", "x_celery", "{:.1f}"),
    ("x floor", "x_floor", "{:.3f}"),
    ("x untraced", "x_untraced", "{:.3f}"),
]


def add_ratios(results: Results) -> None:
    """Throughput as a multiple of Celery's, as a fraction of the floor's, and traced NATS against untraced NATS,
    all from the same invocation."""
    for modes in results.values():
        celery = modes.get("celery", {}).get("runs_per_s")
        floor = modes.get("floor", {}).get("runs_per_s")
        for mode, metrics in modes.items():
            rate = metrics.get("runs_per_s")
            if rate is None or mode in ("celery", "floor"):
                continue
            if celery:
                metrics["x_celery"] = rate / celery
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
    for m, metrics in results.get("memory", {}).items():
        lines.append(
            f"memory      {m:<9} RSS {metrics['rss_before_mb']:.1f} MB -> {metrics['rss_after_mb']:.1f} MB after "
            f"{metrics['runs']:,.0f} diamond runs ({metrics['growth_mb']:+.1f} MB; "
            f"{metrics['growth_mb_per_100k']:+.1f} MB per 100,000"
            f"{'' if metrics['runs'] >= 100_000 else ', extrapolated'})"
        )
    floor = results.get("transport", {}).get("nats")
    if floor:
        lines.append(
            "transport   one event at a time on this nats-server: "
            f"JetStream ack {floor['publish_ack_p50_ms']:.2f} ms p50, "
            f"publish -> dispatcher {floor['delivery_p50_ms']:.2f} ms p50: a hop crosses it twice"
        )
    cold = results.get("coldstart", {})
    if cold:
        fn, imp = cold.get("serve_function", {}), cold.get("import", {})
        lines.append(
            f"cold start  knflow serve function: /healthz 200 after {fn.get('healthz_ms', float('nan')):.0f} ms, "
            f"first invoke answered after {fn.get('first_invoke_ms', float('nan')):.0f} ms; "
            f"import knflow {imp.get('knflow_ms', float('nan')):.0f} ms (-X importtime)"
        )
    return "\n".join(lines)


def targets(results: Results) -> tuple[str, dict[str, dict[str, Any]]]:
    lines, out = [], {}
    for what, workload, mode, metric, op, target in TARGETS:
        value = results.get(workload, {}).get(mode, {}).get(metric)
        if value is None:
            lines.append(f"  -  {what:<38} not measured in this invocation")
            continue
        met = value >= target if op == ">=" else value <= target
        out[f"{workload}.{mode}.{metric}"] = {"value": value, "target": target, "met": met}
        lines.append(f"  {'✓' if met else '✗'}  {what:<38} {value:10,.2f}  (target {op} {target:,})")
    return "\n".join(lines), out


def write(path: Path, results: Results, meta: dict[str, Any]) -> None:
    path.write_text(json.dumps({"meta": meta, **results}, indent=2, sort_keys=False) + "\n")
