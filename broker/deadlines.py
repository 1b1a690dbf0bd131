"""Timeouts for many short awaits at once: `async with within(timeout_s):`, as `asyncio.timeout`, but on
one loop timer per deadline bucket instead of one timer per await.

Every invoke runs under its function's timeout, and almost none reaches it: `asyncio.timeout` schedules
and cancels a timer handle per invoke, which costs more than many functions take. Here an await joins the
bucket of its deadline, rounded up to `BUCKET_S`, and the bucket's one timer (scheduled by its first
member) cancels whoever is still inside when it fires. So a timeout fires up to `BUCKET_S` late, never
early, and raises `TimeoutError` in the task as `asyncio.timeout` does (a cancellation from elsewhere
stays a `CancelledError`).
"""

from __future__ import annotations

import asyncio
import math
from types import TracebackType

BUCKET_S = 0.01  # how late a timeout may fire: deadlines within it share one loop timer


class _Wheel:
    """One event loop's buckets: deadline tick -> the awaits inside whose deadline falls in it."""

    __slots__ = ("buckets", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.buckets: dict[int, set[within]] = {}

    def join(self, member: within, deadline_s: float) -> set[within]:
        tick = math.ceil(deadline_s / BUCKET_S)
        bucket = self.buckets.get(tick)
        if bucket is None:
            bucket = self.buckets[tick] = set()
            self.loop.call_at(tick * BUCKET_S, self._fire, tick)
        bucket.add(member)
        return bucket

    def _fire(self, tick: int) -> None:
        for member in self.buckets.pop(tick, ()):
            member.expire()


_NEVER: set[within] = set()  # the bucket of an await without a deadline: never fires, stays empty
_last: _Wheel | None = None  # the wheel of the loop that asked last: a process mostly runs one loop


def _wheel(loop: asyncio.AbstractEventLoop) -> _Wheel:
    global _last
    wheel = _last
    if wheel is None or wheel.loop is not loop:
        wheel = _last = _Wheel(loop)  # the old loop's buckets still fire on their own timers
    return wheel


class within:  # used as `asyncio.timeout` is: a lowercase context manager
    """`async with within(timeout_s):` raises TimeoutError once the body has run `timeout_s` (up to
    `BUCKET_S` more)."""

    __slots__ = ("_bucket", "_cancelling", "_expired", "_task", "timeout_s")

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._expired = False

    async def __aenter__(self) -> within:
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("within() must be used inside a task")
        self._task = task
        self._cancelling = task.cancelling()
        if self.timeout_s < math.inf:
            loop = asyncio.get_running_loop()
            self._bucket = _wheel(loop).join(self, loop.time() + self.timeout_s)
        else:  # no deadline at all: nothing to join
            self._bucket = _NEVER
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._bucket.discard(self)
        if self._expired and self._task.uncancel() <= self._cancelling and exc_type is asyncio.CancelledError:
            raise TimeoutError from exc

    def expire(self) -> None:
        """The deadline passed with the body still inside: cancel it (turned into TimeoutError on exit)."""
        self._expired = True
        self._task.cancel()

    @property
    def expired(self) -> bool:
        return self._expired
