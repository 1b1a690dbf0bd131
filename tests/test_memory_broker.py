"""The embedded default's broker (broker/memory.py): a reply's first subscriber is delivered in the task of the
delivery that answered it, the others as tasks; deliveries in flight stay within `max_in_flight`."""

from __future__ import annotations

import asyncio

from cloudevents.core.v1.event import CloudEvent

from broker import events
from broker.memory import InMemoryBroker


def invoke(i: int) -> CloudEvent:
    return events.invoke_event(
        run_id=f"r{i}", pipeline="p", node="n", attempt=1, function="f", inputs={"i": i}, config={}
    )


async def test_replies_reach_every_subscriber_and_deliveries_stay_within_max_in_flight():
    broker = InMemoryBroker(max_in_flight=4)
    inside, most = 0, 0
    seen: dict[str, list[str]] = {"router": [], "audit": []}

    async def function(event: CloudEvent) -> CloudEvent:
        nonlocal inside, most
        inside += 1
        most = max(most, inside)
        await asyncio.sleep(0.001)
        inside -= 1
        return events.result_event(event, succeeded=True, data={"output": {}}, source="/t")

    def subscriber(name: str):
        async def take(event: CloudEvent) -> None:
            await asyncio.sleep(0)
            seen[name].append(str(event.get_extension("knflowrun")))

        return take

    broker.subscribe({"type": events.INVOKE}, function, name="functions")
    broker.subscribe({"type": events.NODE_SUCCEEDED}, subscriber("router"), name="router")
    broker.subscribe({"type": events.NODE_SUCCEEDED}, subscriber("audit"), name="audit")
    await broker.publish_many([invoke(i) for i in range(50)])
    assert len(broker.queued) == 46  # past max_in_flight, in order
    await asyncio.wait_for(broker.idle(), 10)
    assert most <= 4
    expected = sorted(f"r{i}" for i in range(50))
    assert sorted(seen["router"]) == expected and sorted(seen["audit"]) == expected
    assert not broker.unrouted and not broker.queued
