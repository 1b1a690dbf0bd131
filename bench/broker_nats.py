"""Throughput of the NATS JetStream transport on each nats-server binary found here.

    .venv/bin/python bench/broker_nats.py [--events 20000] [--size-bytes 1024]

Prints, per server: awaited `publish` one at a time, `publish_many`, and dispatcher round trips (an
in-process subscriber that replies: decode, reply stored with its ack awaited, then the input acked), plus
consume-only (ack, no reply); each for the dispatcher's lean pull loop and for nats-py's `fetch()`.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import uuid
from pathlib import Path

import nats
from cloudevents.core.v1.event import CloudEvent

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from broker import extensions as ext
from broker.nats import JetStreamPublisher, StreamLayout
from broker.nats_dispatcher import Dispatcher
from tests.nats_fixture import NatsServer, nats_server_binaries


class FetchDispatcher(Dispatcher):
    """The same dispatcher, pulling with nats-py's `pull_subscribe_bind().fetch()` instead of its own loop."""

    async def _pull_loop(self) -> None:
        psub = await self._nc.jetstream().pull_subscribe_bind(durable=self.name, stream=self.layout.stream)
        while True:
            free = self.max_in_flight - len(self._in_flight)
            if free < max(1, min(self.batch_size, self.max_in_flight) // 4):
                self._slot_freed.clear()
                await self._slot_freed.wait()
                continue
            try:
                msgs = await psub.fetch(min(free, self.batch_size), timeout=self.pull_expires_s)
            except nats.errors.TimeoutError:
                continue
            for msg in msgs:
                task = asyncio.create_task(self._deliver(msg))
                self._in_flight.add(task)
                task.add_done_callback(self._delivery_done)


def invokes(n: int, size_bytes: int, tag: str) -> list[CloudEvent]:
    pad = "x" * max(0, size_bytes - 60)
    return [
        CloudEvent(
            {
                "type": "dev.knflow.invoke",
                "source": "/bench",
                "id": f"{tag}:{i}",
                ext.FUNCTION: "echo",
                ext.PIPELINE: "bench",
                "datacontenttype": "application/json",
            },
            {"inputs": {"i": i, "pad": pad}, "config": {}},
        )
        for i in range(n)
    ]


async def replying(ev: CloudEvent) -> CloudEvent:
    data = ev.get_data()
    assert isinstance(data, dict)  # `invokes` sends JSON objects
    return CloudEvent(
        {
            "type": "dev.knflow.node.succeeded",
            "source": "/fn/echo",
            "id": f"{ev.get_id()}:ok",
            ext.PIPELINE: "bench",
            "datacontenttype": "application/json",
        },
        {"output": {"i": data["inputs"]["i"]}},
    )


async def accepting(ev: CloudEvent) -> None:
    return None


async def round_trips(nc, n: int, size_bytes: int, cls: type[Dispatcher], subscriber, max_in_flight: int) -> float:
    layout = StreamLayout(stream=f"B{uuid.uuid4().hex[:8]}", prefix=f"b{uuid.uuid4().hex[:8]}")
    publisher = JetStreamPublisher(nc, layout, ack_timeout_s=30)
    await publisher.ensure_stream()
    for chunk_start in range(0, n, 5000):  # publish first, then measure delivery alone
        await publisher.publish_many(invokes(min(5000, n - chunk_start), size_bytes, f"r{chunk_start}"))
    dispatcher = cls.for_function(nc, "echo", subscriber, layout=layout, timeout_s=30, max_in_flight=max_in_flight)
    started = time.perf_counter()
    await dispatcher.start()
    while dispatcher.stats.delivered < n:
        await asyncio.sleep(0.005)
    elapsed = time.perf_counter() - started
    await dispatcher.stop()
    await nc.jetstream().delete_stream(layout.stream)
    return n / elapsed


async def bench_server(label: str, binary: str, n: int, size_bytes: int) -> None:
    with tempfile.TemporaryDirectory() as store:
        server = NatsServer(binary, store, label=label).start()
        nc = await nats.connect(server.url)
        version = nc.connected_server_version
        layout = StreamLayout(stream="BPUB", prefix="bpub")
        publisher = JetStreamPublisher(nc, layout, ack_timeout_s=30)
        await publisher.ensure_stream()
        one_by_one = invokes(min(n, 5000), size_bytes, "single")
        t = time.perf_counter()
        for ev in one_by_one:
            await publisher.publish(ev)
        single_rate = len(one_by_one) / (time.perf_counter() - t)
        batch = invokes(n, size_bytes, "many")
        t = time.perf_counter()
        for start in range(0, n, 1000):
            await publisher.publish_many(batch[start : start + 1000])
        many_rate = n / (time.perf_counter() - t)
        print(f"nats-server {version} ({label}), {n:,} events of ~{size_bytes} B, file storage")
        print(f"  publish, awaited one at a time   {single_rate:9,.0f} events/s")
        print(f"  publish_many (batches of 1,000)  {many_rate:9,.0f} events/s")
        for what, subscriber in (
            ("round trip: reply stored, then ack", replying),
            ("consume only: ack, no reply", accepting),
        ):
            for cls, loop in ((Dispatcher, "lean loop"), (FetchDispatcher, "fetch()  ")):
                rate = await round_trips(nc, n, size_bytes, cls, subscriber, max_in_flight=200)
                print(f"  {what:<36} {loop} {rate:9,.0f} events/s")
        await nc.close()
        server.stop()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--size-bytes", type=int, default=1024)
    args = parser.parse_args()
    for label, binary in nats_server_binaries().items():
        await bench_server(label, binary, args.events, args.size_bytes)


if __name__ == "__main__":
    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))  # warnings and up
    asyncio.run(main())
