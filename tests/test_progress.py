"""How a run reads while it runs: plain lines off a terminal, a live table on one."""

import io

from knflow.progress import Progress
from router.runs import Transition


def run_with(**states):
    return {"nodes": {n: s for n, s in states.items()}}


def test_plain_lines_one_per_change():
    out = io.StringIO()
    progress = Progress(["fetch", "save"], out=out, live=False)
    progress(
        run_with(fetch={"status": "scheduled", "attempt": 1}, save={"status": "pending"}),
        [Transition("fetch", frozenset(), {})],
    )
    progress(
        run_with(
            fetch={"status": "failed", "attempt": 2, "duration_ms": 1.25, "error": {"message": "HTTP 503"}},
            save={"status": "pending"},
        ),
        [Transition("fetch", frozenset(), {})],
    )
    assert out.getvalue().splitlines() == ["  fetch  ▶ started", "  fetch  ✗ failed in 1.2 ms: HTTP 503"]


def test_live_table_redraws_in_place():
    out = io.StringIO()
    progress = Progress(["a", "b"], out=out, live=True)
    progress(
        run_with(a={"status": "scheduled", "attempt": 2}, b={"status": "pending"}), [Transition("a", frozenset(), {})]
    )
    progress(
        run_with(a={"status": "succeeded", "attempt": 2}, b={"status": "skipped"}),
        [Transition("a", frozenset(), {}), Transition("b", frozenset(), {})],
    )
    text = out.getvalue()
    assert text.count("\x1b[2A") == 1  # the second drawing moves up over the first
    assert "▶ started (attempt 2)" in text and "✓ succeeded" in text and "– skipped" in text
