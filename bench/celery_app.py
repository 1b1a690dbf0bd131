"""The Celery baseline's tasks: the diamond's steps with the same pydantic models and the same work as
knflow's functions (validate the input, compute, dump the output). The worker runs this module:

    KNFLOW_BENCH_REDIS=redis://127.0.0.1:PORT/0 celery -A bench.celery_app worker --concurrency 2
"""

from __future__ import annotations

import os

from celery import Celery

from bench.functions import Num, Pair, step_a, step_b, step_c, step_d

REDIS_URL = os.environ.get("KNFLOW_BENCH_REDIS", "redis://127.0.0.1:6379/0")

app = Celery("knflow_bench", broker=REDIS_URL, backend=REDIS_URL)
app.conf.update(
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)


@app.task(name="bench.a")
def a(doc: dict) -> dict:
    return Num(n=step_a(Num.model_validate(doc).n)).model_dump(mode="json")


@app.task(name="bench.b")
def b(doc: dict) -> dict:
    return Num(n=step_b(Num.model_validate(doc).n)).model_dump(mode="json")


@app.task(name="bench.c")
def c(doc: dict) -> dict:
    return Num(n=step_c(Num.model_validate(doc).n)).model_dump(mode="json")


@app.task(name="bench.d")
def d(docs: list[dict]) -> dict:
    pair = Pair.model_validate({"b": docs[0]["n"], "c": docs[1]["n"]})
    return Num(n=step_d(pair.b, pair.c)).model_dump(mode="json")


def diamond(n: int):
    """A → (B, C) → D, as Celery spells it: chain(A, chord([B, C], D))."""
    from celery import chain, chord

    return chain(a.s({"n": n}), chord([b.s(), c.s()], d.s()))
