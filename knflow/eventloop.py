"""The event loop long-running knflow processes use: uvloop where it is installed (Linux and macOS), else asyncio's.

Measured in bench/PROFILE.md: uvloop makes the embedded default about 1.18x faster and the NATS mode's
sequential p50 6.3 ms instead of 7.8 ms. uvicorn picks uvloop by itself for `knflow serve function`.
"""

from __future__ import annotations

import asyncio
from typing import Any
from collections.abc import Coroutine


def run(main: Coroutine[Any, Any, Any]) -> Any:
    """`asyncio.run(main)` on uvloop when it can be imported."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)
