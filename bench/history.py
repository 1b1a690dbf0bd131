"""bench/history/: every full run's results.json, kept as DATE-GITHASH.json, so that a regression shows.

A run is compared with the newest earlier entry of the same machine kind (CPU model and core count: a
figure from another kind of machine says nothing about a change). `--quick` runs are not kept, since
their sizes differ; they are still compared, marked so.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.report import Results

DIR = Path(__file__).resolve().parent / "history"
# (workload, metric, label, whether more is better)
COMPARED = (
    ("diamond", "runs_per_s", "runs/s", True),
    ("diamond", "cpu_ms_per_run", "CPU ms/run", False),
    ("diamond", "p50_ms", "p50 ms", False),
    ("chain10", "hop_p50_ms", "hop p50 ms", False),
)


def entry_name(meta: dict[str, Any]) -> str:
    """`2026-12-03-1037-916f653.json` (a `+` after the hash: uncommitted changes)."""
    date = meta["date"].removesuffix(" UTC").replace(" ", "-").replace(":", "")
    head = meta["git"].split(" ")[0]
    return f"{date}-{head}{'+' if 'uncommitted' in meta['git'] else ''}.json"


def keep(results: Results, meta: dict[str, Any], directory: Path = DIR) -> Path | None:
    if meta.get("quick"):
        return None
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / entry_name(meta)
    path.write_text(json.dumps({"meta": meta, **results}, indent=2) + "\n")
    return path


def previous(meta: dict[str, Any], directory: Path = DIR) -> tuple[str, dict[str, Any]] | None:
    """The newest entry before this run (by name: date first) from the same machine kind, or None."""
    mine = entry_name(meta)
    for path in sorted(directory.glob("*.json"), reverse=True):
        if path.name >= mine:
            continue
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if doc.get("meta", {}).get("machine_kind") == meta["machine_kind"]:
            return path.name, doc
    return None


def changes(results: Results, meta: dict[str, Any], directory: Path = DIR) -> str:
    """What changed against the previous entry of this machine kind, one line per mode; '' when none."""
    found = previous(meta, directory)
    if found is None:
        return ""
    name, before = found
    lines = [
        f"against {name} (git {before['meta'].get('git', '?')}, {before['meta'].get('date', '?')})"
        + (": this is a --quick run, that one was not (sizes differ)" if meta.get("quick") else "")
    ]
    for workload in dict.fromkeys(w for w, *_ in COMPARED):
        for mode, metrics in results.get(workload, {}).items():
            old = before.get(workload, {}).get(mode, {})
            cells = []
            for w, metric, label, more_is_better in COMPARED:
                if w != workload or metric not in metrics or not old.get(metric):
                    continue
                change = metrics[metric] / old[metric] - 1
                better = (change > 0) == more_is_better
                cells.append(
                    f"{label} {old[metric]:,.2f} -> {metrics[metric]:,.2f} "
                    f"({change:+.0%}{'' if abs(change) < 0.005 else ', better' if better else ', worse'})"
                )
            if cells:
                lines.append(f"  {workload:<10} {mode:<11} " + "; ".join(cells))
    return "\n".join(lines)
