"""The fan-out window (router/fanout.py `room`): a foreach without `concurrency` keeps at most `WINDOW` items
in flight, refilled as results arrive, and still finishes with every item run once; a router that dies in
the middle leaves items pending and items stranded `scheduled`, and the sweeper finishes the run. A real
router over each store (SQLite, MongoDB on the wire server); the publisher records the invokes and the test
answers them, so it counts what was published before any result was applied."""

from __future__ import annotations

import random

import pytest
from cloudevents.core.v1.event import CloudEvent

from broker import events
from router import fanout
from router.pipeline_doc import from_dict
from router.router import StaticPipelines, build_router
from router.runs import FAILED, PENDING, SCHEDULED, SUCCEEDED, fan_progress

WINDOW = 16  # the router's is 500: a smaller one keeps the test quick on the wire server, the rule is the same
ITEMS = 2 * WINDOW + 5  # three refills, the last one short


@pytest.fixture(autouse=True)
def window(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fanout, "WINDOW", WINDOW)


def pipeline(options: dict | None = None):
    doc = {
        "metadata": {"name": "win"},
        "nodes": [
            {"id": "each", "type": "f", "foreach": "{{ trigger.data.items }}", "inputs": {"n": "{{ item }}"}},
            {"id": "count", "type": "f", "inputs": {"all": "{{ each.output }}"}, **(options or {})},
        ],
        "edges": [{"from": "each", "to": "count"}],
    }
    p, problems = from_dict(doc)
    assert problems == [], problems
    return p


class Recorder:
    """A publisher that keeps the invokes it is given (nothing is delivered)."""

    def __init__(self) -> None:
        self.invokes: list[CloudEvent] = []

    async def publish_many(self, out: list[CloudEvent]) -> None:
        self.invokes += [e for e in out if e.get_type() == events.INVOKE]


def answer(invoke: CloudEvent, ok: bool = True) -> CloudEvent:
    data = invoke.get_data()
    assert isinstance(data, dict)
    n = (data.get("inputs") or {}).get("n")
    body = {"output": {"n": n}} if ok else {"error": {"type": "E", "message": f"item {n} broke"}}
    return events.result_event(invoke, succeeded=ok, data=body, source="test")


def in_flight(fan: dict) -> int:
    return fan_progress(fan)["running"]


async def drain(router, publisher: Recorder, run_id: str, rng: random.Random) -> int:
    """Answer the recorded invokes in a random order, checking the window after each; the most in flight."""
    most = 0
    while publisher.invokes:
        k = rng.randrange(len(publisher.invokes))
        invoke = publisher.invokes.pop(k)
        await router.on_result(answer(invoke))
        run = await router.store.get_run(run_id, light=True)
        fan = run["nodes"]["each"].get("fan")
        if fan is not None:
            most = max(most, in_flight(fan))
            assert in_flight(fan) <= WINDOW
    return most


async def test_a_foreach_keeps_at_most_the_window_in_flight_and_finishes(store):
    p = pipeline()
    publisher = Recorder()
    router = build_router(None, store, publisher, StaticPipelines([p]))
    run = await router.start_run(p, {"type": "t", "data": {"items": list(range(ITEMS))}}, run_id="w1")
    assert len(publisher.invokes) == WINDOW  # published before any result was applied: the window, not all
    fan = run["nodes"]["each"]["fan"]
    assert fan_progress(fan) == {"total": ITEMS, "done": 0, "failed": 0, "running": WINDOW, "pending": ITEMS - WINDOW}
    most = await drain(router, publisher, "w1", random.Random(7))
    assert most == WINDOW
    done = await store.get_run("w1")
    assert done["status"] == SUCCEEDED, done.get("error")
    each = done["nodes"]["each"]
    assert [item["attempt"] for item in each["items"].values()] == [1] * ITEMS  # each item ran once
    assert each["output"] == [{"n": i} for i in range(ITEMS)]
    count = done["nodes"]["count"]
    assert count["status"] == SUCCEEDED and count["attempt"] == 1  # its invoke was published once, and answered


async def test_a_duplicate_result_neither_refills_nor_moves_the_counters(store):
    p = pipeline()
    publisher = Recorder()
    router = build_router(None, store, publisher, StaticPipelines([p]))
    await router.start_run(p, {"type": "t", "data": {"items": list(range(ITEMS))}}, run_id="w2")
    first = publisher.invokes[0]
    for _ in range(3):
        await router.on_result(answer(first))
    run = await store.get_run("w2", light=True)
    assert fan_progress(run["nodes"]["each"]["fan"])["running"] == WINDOW - 1
    assert len(publisher.invokes) == WINDOW  # below half the window free: no refill yet


async def test_a_router_that_dies_mid_window_leaves_a_run_the_sweeper_finishes(store):
    """Invokes lost with the router (stranded `scheduled`) and items never taken (pending): the sweeper
    publishes the first again under their ids and the refills take the rest."""
    p = pipeline()
    publisher = Recorder()
    router = build_router(None, store, publisher, StaticPipelines([p]))
    await router.start_run(p, {"type": "t", "data": {"items": list(range(ITEMS))}}, run_id="w3")
    rng = random.Random(3)
    for _ in range(WINDOW // 2 + 10):  # past the refill point
        await router.on_result(answer(publisher.invokes.pop(rng.randrange(len(publisher.invokes)))))
    lost = {e.get_id() for e in publisher.invokes}
    publisher.invokes.clear()  # the router died: what it published never arrived
    run = await store.get_run("w3")
    states = [item["status"] for item in run["nodes"]["each"]["items"].values()]
    assert states.count(SCHEDULED) == len(lost) > 0 and states.count(PENDING) > 0
    again = build_router(None, store, publisher, StaticPipelines([p]))
    assert await again.sweep(older_than_s=-60) == len(lost)  # all are old enough
    assert {e.get_id() for e in publisher.invokes} == lost  # the same invoke ids
    await drain(again, publisher, "w3", rng)
    done = await store.get_run("w3")
    assert done["status"] == SUCCEEDED
    assert done["nodes"]["each"]["output"] == [{"n": i} for i in range(ITEMS)]


async def test_a_failed_item_of_a_windowed_foreach_is_redriven_alone(store):
    p = pipeline()
    publisher = Recorder()
    router = build_router(None, store, publisher, StaticPipelines([p]))
    await router.start_run(p, {"type": "t", "data": {"items": list(range(WINDOW + 5))}}, run_id="w4")
    while publisher.invokes:
        invoke = publisher.invokes.pop(0)
        await router.on_result(answer(invoke, ok=invoke.get_extension("knflownode") != "each[3]"))
    failed = await store.get_run("w4")
    assert failed["status"] == FAILED and failed["nodes"]["each"]["status"] == FAILED
    await router.redrive("w4")
    assert [e.get_extension("knflownode") for e in publisher.invokes] == ["each[3]"]
    await router.on_result(answer(publisher.invokes.pop()))
    done = await store.get_run("w4")
    assert done["nodes"]["each"]["status"] == SUCCEEDED
    assert done["nodes"]["each"]["output"] == [{"n": i} for i in range(WINDOW + 5)]
    assert fan_progress(done["nodes"]["each"]["fan"])["done"] == WINDOW + 5
