"""Fault injection for the crash tests (tests/test_faults_e2e.py): `KNFLOW_FAULT_CRASH_AT=POINT[:N]` ends this
process the Nth time (default the first) it passes POINT, with `os._exit` as `kill -9` would: nothing flushed,
nothing cleaned up, no reply, no ack. The points are the steps of applying a result in the router:

    result-received   a result event in hand, nothing of it stored
    result-stored     the node's result committed, the next step not yet planned
    step-stored       the next step (scheduled nodes, the run's status) committed, its invokes not published
    step-published    its invokes and run events published, the result event not yet acknowledged

Unset (always, outside those tests), `crash_point` costs one comparison."""

from __future__ import annotations

import os
import sys
from typing import Final

SETTING: Final = "KNFLOW_FAULT_CRASH_AT"
POINTS: Final = ("result-received", "result-stored", "step-stored", "step-published")


def parse(text: str) -> tuple[str | None, int]:
    """(point, n) from the setting's text; ValueError naming the setting for a point or count it cannot be."""
    if not text.strip():
        return None, 0
    point, _, count = text.strip().partition(":")
    if point not in POINTS or (count and not (count.isdigit() and int(count) > 0)):
        raise ValueError(
            f"{SETTING} has value {text!r}: expected POINT or POINT:N with N > 0, POINT one of {', '.join(POINTS)}"
        )
    return point, int(count or 1)


def _from_env() -> tuple[str | None, int]:
    try:
        return parse(os.environ.get(SETTING, ""))
    except ValueError:  # every command's check_environment (knflow/settings.py) names it and stops
        return None, 0


_point, _left = _from_env()


def crash_point(name: str) -> None:
    global _left
    if name != _point:
        return
    _left -= 1
    if _left == 0:
        print(f"knflow: fault injected: {SETTING}={name}, the process ends here", file=sys.stderr, flush=True)
        os._exit(137)
