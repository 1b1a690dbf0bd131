"""The benchmark's functions: trivial steps on small JSON, so that what is measured is the orchestration.

The computations are plain functions (`step_*`), shared by the knflow functions below, the Celery tasks
(`bench.celery_app`) and the asyncio floor (`bench.floor`), so every system runs the same work.
"""

from __future__ import annotations

from pydantic import BaseModel

from knflow import function


class Num(BaseModel):
    n: int


class Pair(BaseModel):
    b: int
    c: int


class Many(BaseModel):
    values: list[int]


class Items(BaseModel):
    items: list[Num]


def step_a(n: int) -> int:
    return n + 1


def step_b(n: int) -> int:
    return n * 2


def step_c(n: int) -> int:
    return n + 3


def step_d(b: int, c: int) -> int:
    return b + c


@function(timeout_s=30)
async def bench_a(inp: Num) -> Num:
    return Num(n=step_a(inp.n))


@function(timeout_s=30)
async def bench_b(inp: Num) -> Num:
    return Num(n=step_b(inp.n))


@function(timeout_s=30)
async def bench_c(inp: Num) -> Num:
    return Num(n=step_c(inp.n))


@function(timeout_s=30)
async def bench_d(inp: Pair) -> Num:
    return Num(n=step_d(inp.b, inp.c))


@function(timeout_s=30)
async def bench_sum(inp: Many) -> Num:
    return Num(n=sum(inp.values))


@function(timeout_s=30)
async def bench_collect(inp: Items) -> Num:
    return Num(n=sum(item.n for item in inp.items))


class Blob(BaseModel):
    n: int
    text: str


@function(timeout_s=30)
async def bench_kb(inp: Num) -> Blob:
    """An output of about 2 KB (the foreach10k workload)."""
    return Blob(n=inp.n, text=f"{inp.n:08d}" * 256)


class Blobs(BaseModel):
    items: list[Blob]


@function(timeout_s=30)
async def bench_count(inp: Blobs) -> Num:
    """How many items came in, checking each is the one its position asks for."""
    return Num(n=sum(1 for i, item in enumerate(inp.items) if item.n == i))


DIAMOND_FUNCTIONS = ["bench-a", "bench-b", "bench-c", "bench-d"]
ALL_FUNCTIONS = [*DIAMOND_FUNCTIONS, "bench-sum", "bench-collect", "bench-kb", "bench-count"]


def diamond_expected(n: int) -> int:
    """What node `d` of a diamond run answers for trigger data `{"n": n}`."""
    a = step_a(n)
    return step_d(step_b(a), step_c(a))
