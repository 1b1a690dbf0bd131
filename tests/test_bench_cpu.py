"""The bench's CPU accounting (bench/cpu.py) and its history of full runs (bench/history.py), on real
processes and files: a busy child's CPU is counted under its part, and a run is compared with the previous
entry of its machine kind only."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from bench import cpu, history

BUSY = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.4: pass\nimport sys; sys.stdin.read()"


def test_a_child_process_cpu_is_counted_under_its_part_and_in_the_total():
    before = cpu.snapshot()
    child = subprocess.Popen([sys.executable, "-c", BUSY, "serve function"], stdin=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while cpu.snapshot().get("functions", 0.0) < 0.35:  # read while it lives: a reaped child is not below us
            assert child.poll() is None and time.monotonic() < deadline, "the busy child's CPU was never counted"
            time.sleep(0.05)
        after = cpu.snapshot()
    finally:
        child.communicate(b"")
    figures = cpu.per_run(before, after, runs=100)
    assert figures["cpu_functions_ms_per_run"] >= 3.5  # 0.35 s over 100 runs
    assert figures["cpu_ms_per_run"] >= figures["cpu_functions_ms_per_run"] + figures["cpu_bench_ms_per_run"] - 1e-9
    servers = sum(v for k, v in figures.items() if k in {f"cpu_{p}_ms_per_run" for p in cpu.SERVERS})
    assert figures.get("cpu_server_ms_per_run", 0.0) == pytest.approx(servers)  # the suite's own servers, if any
    parts = sum(v for k, v in figures.items() if k not in ("cpu_ms_per_run", "cpu_server_ms_per_run"))
    assert figures["cpu_ms_per_run"] == pytest.approx(parts - servers)  # servers beside the total, not in it


def _meta(date: str, kind: str, quick: bool = False) -> dict:
    return {"date": date, "git": "abc1234", "machine_kind": kind, "quick": quick}


def test_history_keeps_full_runs_and_compares_with_the_last_of_the_same_machine_kind(tmp_path):
    old = {"diamond": {"nats": {"runs_per_s": 200.0, "cpu_ms_per_run": 3.0}}}
    other = {"diamond": {"nats": {"runs_per_s": 900.0, "cpu_ms_per_run": 1.0}}}
    assert history.keep(old, _meta("2026-12-01 10:00 UTC", "AMD EPYC, 2 cores"), tmp_path) is not None
    history.keep(other, _meta("2026-12-02 10:00 UTC", "Intel Xeon, 2 cores"), tmp_path)
    new = {"diamond": {"nats": {"runs_per_s": 250.0, "cpu_ms_per_run": 2.4}}}
    meta = _meta("2026-12-03 10:00 UTC", "AMD EPYC, 2 cores", quick=True)
    assert history.keep(new, meta, tmp_path) is None  # a --quick run is not kept
    text = history.changes(new, meta, tmp_path)
    assert "2026-12-01-1000-abc1234.json" in text and "sizes differ" in text, text
    assert "runs/s 200.00 -> 250.00 (+25%, better)" in text and "CPU ms/run 3.00 -> 2.40 (-20%, better)" in text
    assert history.changes(new, _meta("2026-12-03 10:00 UTC", "ARM, 4 cores"), tmp_path) == ""
