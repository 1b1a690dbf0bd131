"""What a result was measured on: date, machine, versions, command, and the settings of the run."""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def has_uvloop() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "not found"
    return out.splitlines()[0] if out else "unknown"


def _package(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def _git() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return f"{head}{' (with uncommitted changes)' if dirty else ''}"


def describe(command: str, use_uvloop: bool, in_flight: int, sizes: dict[str, int], quick: bool) -> dict[str, Any]:
    from broker.natsserver import current_nats_server

    nats = current_nats_server()
    memory_gib = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30)
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": command,
        "machine": f"{_cpu()}, {os.cpu_count()} cores, {memory_gib} GiB, {platform.system()} {platform.release()}",
        "machine_kind": f"{_cpu()}, {os.cpu_count()} cores",  # what bench/history compares runs by
        "quick": quick,
        "python": platform.python_version(),
        "event_loop": "uvloop " + _package("uvloop") if use_uvloop else "asyncio",
        "nats_server": _version([nats, "--version"]) if nats else "not found",
        "redis_server": _version(["redis-server", "--version"]),
        "celery": _package("celery"),
        "git": _git(),
        "in_flight": in_flight,
        "sizes": sizes,
    }


def header(meta: dict[str, Any]) -> str:
    sizes = meta["sizes"]
    return (
        f"knflow benchmarks — {meta['date']}\n"
        f"  machine  {meta['machine']}; Python {meta['python']}, {meta['event_loop']}; {meta['nats_server']}; "
        f"{meta['redis_server'].split(' sha=')[0]}; Celery {meta['celery']}\n"
        f"  command  {meta['command']}   (git {meta['git']})\n"
        f"  diamond: {sizes['seq']} runs one after another (p50/p99), then {sizes['thr']:,} runs submitted at once "
        f"({sizes['thr_slow']:,} for isolated, mongo and knative, {sizes['celery_thr']:,} for Celery) with at most "
        f"{meta['in_flight']} runs in flight: latency under load = in-flight / throughput\n"
        f"  chain10: {sizes['chain']} runs one after another, per-hop = run / 10; "
        f"fanout1000 (a foreach of 1,000 items) and static500 (500 static nodes): {sizes['fanout']} run(s) each; "
        f"memory: {sizes['memory']:,} diamond runs per mode; logs at warning level, as `knflow dev` by default"
    )
