"""How a run reads on the command line: while it runs, a live table on a terminal (one plain line per change
otherwise); when it has ended, its status and its last output."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Mapping
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TextIO

from router.runs import (
    CANCELLED,
    FAILED,
    PENDING,
    RUNNING,
    SCHEDULED,
    SKIPPED,
    SUCCEEDED,
    RunDoc,
    RunRecord,
    Transition,
)

if TYPE_CHECKING:
    from router.node_logs import LogLine

# skipped is an en dash, on purpose
ICONS = {PENDING: "·", SCHEDULED: "▶", RUNNING: "▶", SUCCEEDED: "✓", FAILED: "✗", SKIPPED: "–", CANCELLED: "⊘"}
COLORS = {SUCCEEDED: "32", FAILED: "31", SKIPPED: "90", CANCELLED: "33", SCHEDULED: "36", PENDING: "90"}
WORDS = {SCHEDULED: "started", SUCCEEDED: "succeeded", FAILED: "failed", SKIPPED: "skipped", CANCELLED: "cancelled"}


class Progress:
    """An observer for `router.router.Router`: called with the run after each set of transitions it won
    (`knflow runs watch` calls it with run records). A node's line reads its state or its record."""

    def __init__(self, nodes: list[str], out: TextIO = sys.stderr, live: bool | None = None) -> None:
        self.nodes = nodes
        self.out = out
        self.live = out.isatty() if live is None else live
        self.width = max((len(n) for n in nodes), default=4) + 2
        self.states: dict[str, Mapping[str, Any]] = {n: {"status": PENDING} for n in nodes}
        self.started_s: dict[str, float] = {}
        self.drawn = 0

    def __call__(self, run: RunDoc | RunRecord, transitions: list[Transition]) -> None:
        nodes: Mapping[str, Mapping[str, Any]] = run["nodes"]
        for t in transitions:
            if "[" in t.node:  # an item of a fan-out node (`gen[2]`): its node's line tells
                continue
            state = nodes.get(t.node, {})
            self.states[t.node] = state
            if state.get("status") == SCHEDULED:
                self.started_s[t.node] = time.perf_counter()
            if not self.live:
                self.out.write(self.line(t.node, state) + "\n")
        if self.live:
            self.redraw()
        self.out.flush()

    def line(self, node: str, state: Mapping[str, Any]) -> str:
        status = state.get("status", PENDING)
        text = f"  {node:<{self.width}}{ICONS.get(status, '?')} {WORDS.get(status, status)}"
        if status == SCHEDULED and state.get("attempt", 1) > 1:
            text += f" (attempt {state['attempt']})"
        if state.get("duration_ms") is not None and status in (SUCCEEDED, FAILED):
            text += f" in {state['duration_ms']:.1f} ms"
        err = state.get("error") or {}
        if err.get("message") and status in (FAILED, CANCELLED):
            text += f": {err['message']}"
        return text

    def redraw(self) -> None:
        if self.drawn:
            self.out.write(f"\x1b[{self.drawn}A")
        for n in self.nodes:
            status = self.states[n].get("status", PENDING)
            self.out.write(f"\x1b[2K\x1b[{COLORS.get(status, '0')}m{self.line(n, self.states[n])}\x1b[0m\n")
        self.drawn = len(self.nodes)


def print_result(rec: RunRecord, last_lines: Sequence[LogLine] = (), earlier: bool = False) -> None:
    """The run's end; under a failed node's error, the last lines its failed try wrote (`knflow run`), and
    whether it wrote `earlier` ones."""
    print(f"run {rec['id']} {rec['status']} (pipeline {rec['pipeline']})")
    if err := rec.get("error"):
        print(f"  error at node '{err.get('node')}': {err.get('message')}")
    if last_lines:
        first = last_lines[0]
        more = f" (all of them: knflow logs {rec['id']} {first['node']})" if earlier else ""
        count = f"{len(last_lines)} log line{'s' if len(last_lines) != 1 else ''}"
        print(f"  last {count} of '{first['node']}', attempt {first['attempt']}{more}:")
        for line in last_lines:
            print("    " + line_text(line, with_node=False))
    sinks = [n for n, s in rec["nodes"].items() if s["status"] == "succeeded"]
    if sinks and rec["status"] == "succeeded":
        last = sinks[-1]
        print(f"  output of '{last}': {json.dumps(rec['nodes'][last]['output'], ensure_ascii=False)}")


FAILED_LINES = 20  # what `knflow run` shows of a failed node's log


def failed_try(rec: RunRecord) -> tuple[str, int] | None:
    """The node key (a fan-out item's, `gen[3]`) and attempt of the try a failed run failed at; None if none."""
    error = rec.get("error")
    node = error.get("node") if error else None
    state = rec["nodes"].get(node) if isinstance(node, str) else None
    if not isinstance(node, str) or state is None or state["status"] != FAILED:
        return None
    for i, item in enumerate(state.get("items") or []):
        if item["status"] == FAILED:
            return f"{node}[{i}]", item["attempt"]
    return node, state["attempt"]


def line_text(line: LogLine, with_node: bool = True) -> str:
    """One node log line as `knflow logs` prints it: time, node#attempt, level (or stream), message, fields."""
    kind = line["level"] if line["stream"] == "log" and line["level"] else line["stream"]
    where = f"{line['node']}#{line['attempt']}  " if with_node else ""
    text = f"{line['at']}  {where}{kind:<7} {line['message']}"
    if line["fields"]:
        text += "  " + " ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in line["fields"].items())
    return text
