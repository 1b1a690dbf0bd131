"""The floor under a NATS hop on this machine: publish one event to JetStream (file storage) and time its
ack, and its delivery to a dispatcher waiting on a pull request; one at a time, back to back.

Every hop of a run crosses the server twice (the invoke to the function, the result to the router), so
twice the delivery time is the least a hop can cost here, whatever knflow does around it.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from bench.drive import percentile


async def hop_floor(nats_url: str, n: int = 300) -> dict[str, float]:
    import nats

    from broker import events
    from broker.nats import JetStreamPublisher, StreamLayout
    from broker.nats_dispatcher import Dispatcher

    tag = uuid.uuid4().hex[:8]
    layout = StreamLayout(stream=f"FLOOR{tag.upper()}", prefix=f"floor{tag}")
    nc = await nats.connect(nats_url)
    publisher = JetStreamPublisher(nc, layout)
    await publisher.ensure_stream()
    delivered = asyncio.Event()
    at: list[float] = [0.0]

    async def receive(ev: Any) -> None:
        at[0] = time.perf_counter()
        delivered.set()

    dispatcher = Dispatcher.for_function(nc, "floor", receive, layout=layout, timeout_s=5)
    await dispatcher.start()
    acks, deliveries = [], []
    try:
        for i in range(n):
            delivered.clear()
            ev = events.invoke_event(
                run_id=f"{tag}{i:08d}",
                pipeline="floor",
                node="n",
                attempt=1,
                function="floor",
                inputs={"n": i},
                config={},
            )
            t = time.perf_counter()
            await publisher.publish(ev)
            acks.append((time.perf_counter() - t) * 1000)
            await delivered.wait()
            deliveries.append((at[0] - t) * 1000)
    finally:
        await dispatcher.stop()
        await nc.jetstream().delete_stream(layout.stream)
        await nc.close()
    return {
        "publish_ack_p50_ms": percentile(acks, 50),
        "delivery_p50_ms": percentile(deliveries, 50),
        "delivery_p99_ms": percentile(deliveries, 99),
        "events": n,
    }
