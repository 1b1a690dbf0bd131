"""Timeouts on one loop timer per deadline bucket (broker/deadlines.py): they fire (late by at most a
bucket, never early), as TimeoutError; a cancellation from elsewhere stays one; and an invoke's function
timeout still fires through them, in process and behind a dispatcher's callable target."""

from __future__ import annotations

import asyncio
import time

import pytest
from pydantic import BaseModel

from broker import deadlines, events
from broker.sinks import CallableTarget
from functions.handler import Retryable, handle_invoke
from knflow import function


class Nap(BaseModel):
    nap_s: float


@function(name="dl-nap", timeout_s=0.05)
async def nap(inp: Nap) -> Nap:
    await asyncio.sleep(inp.nap_s)
    return inp


async def test_a_deadline_fires_as_timeout_error_not_early_and_at_most_a_bucket_late():
    started = time.perf_counter()
    with pytest.raises(TimeoutError):
        async with deadlines.within(0.05):
            await asyncio.sleep(5)
    elapsed_s = time.perf_counter() - started
    assert 0.05 - 0.002 <= elapsed_s < 0.05 + deadlines.BUCKET_S + 0.5  # the loop's timer resolution; a loaded machine


async def test_a_body_that_ends_in_time_is_untouched_and_its_task_not_cancelled_later():
    async with deadlines.within(0.02) as d:
        await asyncio.sleep(0)
    await asyncio.sleep(0.05)  # past the bucket's timer: it finds nobody inside
    assert not d.expired and asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


async def test_many_awaits_share_buckets_and_each_gets_its_own_outcome():
    async def one(i: int) -> str:
        try:
            async with deadlines.within(0.03):
                await asyncio.sleep(0 if i % 2 else 1)
        except TimeoutError:
            return "timed out"
        return "done"

    outcomes = await asyncio.gather(*(one(i) for i in range(200)))
    assert outcomes.count("done") == 100 and outcomes.count("timed out") == 100


async def test_a_cancellation_from_elsewhere_stays_a_cancellation():
    async def body() -> None:
        async with deadlines.within(10):
            await asyncio.sleep(10)

    task = asyncio.create_task(body())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_nested_deadlines_the_inner_one_fires_and_the_outer_one_goes_on():
    async with deadlines.within(5) as outer:
        with pytest.raises(TimeoutError):
            async with deadlines.within(0.02):
                await asyncio.sleep(5)
        await asyncio.sleep(0)
    assert not outer.expired


def invoke(nap_s: float, **extra: object):
    return events.invoke_event(
        run_id="r1", pipeline="p", node="n", attempt=1, function="dl-nap", inputs={"nap_s": nap_s}, config={}, **extra
    )


async def test_a_function_past_its_timeout_is_a_retryable_timeout():
    with pytest.raises(Retryable) as info:
        await handle_invoke(nap, invoke(5), "/t")
    assert info.value.error["type"] == "Timeout"
    assert info.value.error["message"] == "node 'n' (function 'dl-nap') timed out after 0.05 s"
    reply = await handle_invoke(nap, invoke(0), "/t")  # in time: its output
    assert reply.get_data()["output"] == {"nap_s": 0}


async def test_the_invoke_s_own_timeout_overrides_the_function_s():
    reply = await handle_invoke(nap, invoke(0.1, timeout_s=2), "/t")  # longer than the function's 0.05 s
    assert reply.get_type() == events.NODE_SUCCEEDED


async def test_a_callable_target_past_its_timeout_fails_the_attempt_with_504():
    async def slow(event):
        await asyncio.sleep(5)

    outcome = await CallableTarget(slow, timeout_s=0.03).deliver(invoke(0))
    assert outcome.status == 504 and b"gave no answer within timeout_s=0.03" in outcome.error_body


async def test_an_infinite_timeout_never_fires():
    async with deadlines.within(float("inf")) as d:
        await asyncio.sleep(0.01)
    assert not d.expired
