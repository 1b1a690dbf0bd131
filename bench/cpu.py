"""CPU time per run, from the processes' own counters: what a run costs whatever the machine's load.

`snapshot()` reads this process's CPU (`time.process_time`, all its threads) and, for every process below
it, utime + stime from /proc/PID/stat, summed per part (each process is told apart by its command line:
nats-server, redis-server, the Celery worker and its pool, `knflow serve router|dispatcher|function`, the
Knative broker stand-in). `per_run(before, after, runs)` turns two snapshots around a throughput phase
into `cpu_PART_ms_per_run` figures plus `cpu_ms_per_run`, the sum of every part but the servers'
(nats-server, redis-server, and mode mongo's nx-27017 wire server, reported beside it as
`cpu_server_ms_per_run`): the bench process counts in the total, since for knflow's in-process modes it
*is* the router, dispatchers and functions (it also drives the runs, as it is Celery's client in the
Celery baseline).

On a machine without /proc only this process is counted.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

PROC = Path("/proc")
TICKS_PER_S = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
SERVERS = ("nats", "redis", "mongo")  # the message and store servers: beside knflow's figure, not in it

# (what a command line holds, the part it counts as); the first match wins
PARTS = (
    ("nats-server", "nats"),
    ("redis-server", "redis"),
    ("celery", "worker"),
    ("serve router", "router"),
    ("serve dispatcher", "dispatcher"),
    ("serve function", "functions"),
    ("bench.knative_standin", "standin"),
    ("bench.otlp_sink", "otlp"),
    ("nx-27017", "mongo"),
)


def _stat(pid: str) -> tuple[int, float] | None:
    """(parent pid, CPU seconds of the process itself) from /proc/PID/stat, or None if it is gone."""
    try:
        fields = (PROC / pid / "stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / TICKS_PER_S


def process_cpu_s(pid: int) -> float | None:
    """CPU seconds process `pid` has spent so far, or None if it is gone (or there is no /proc)."""
    stat = _stat(str(pid))
    return None if stat is None else stat[1]


def _part(pid: str) -> str:
    try:
        cmdline = (PROC / pid / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return "other"
    return next((part for marker, part in PARTS if marker in cmdline), "other")


def snapshot() -> dict[str, float]:
    """CPU seconds so far, per part: `bench` (this process) and each kind of process below it."""
    out = {"bench": time.process_time()}
    if not PROC.is_dir():
        return out
    stats = {pid: s for pid in os.listdir(PROC) if pid.isdigit() and (s := _stat(pid)) is not None}
    me = os.getpid()
    parts: dict[int, str] = {}  # pid -> its part, for every process below this one (a pool's children too)
    pending = [me]
    children: dict[int, list[int]] = {}
    for pid, (ppid, _cpu) in stats.items():
        children.setdefault(ppid, []).append(int(pid))
    while pending:
        parent = pending.pop()
        for child in children.get(parent, []):
            part = parts.get(parent) if parent != me else None
            if part is None or part == "other":
                part = _part(str(child))
            parts[child] = part
            pending.append(child)
    for child, part in parts.items():
        out[part] = out.get(part, 0.0) + stats[str(child)][1]
    return out


def per_run(before: dict[str, float], after: dict[str, float], runs: int) -> dict[str, float]:
    """`cpu_PART_ms_per_run` for every part that used CPU between the snapshots, `cpu_server_ms_per_run`
    (nats-server, redis-server, nx-27017) and `cpu_ms_per_run`, the total of all but the servers."""
    used = {part: max(0.0, after[part] - before.get(part, 0.0)) * 1000 / runs for part in after}
    out = {f"cpu_{part}_ms_per_run": ms for part, ms in used.items() if ms > 0 or part == "bench"}
    server = sum(ms for part, ms in used.items() if part in SERVERS)
    if any(part in SERVERS for part in used):
        out["cpu_server_ms_per_run"] = server
    out["cpu_ms_per_run"] = sum(ms for part, ms in used.items() if part not in SERVERS)
    return out
