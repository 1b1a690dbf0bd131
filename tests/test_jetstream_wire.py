"""broker.jetstream_wire and the publisher and dispatcher on it: nats-py's private hooks, byte-exact headers
against nats-py's own encoding and parsing, acks collected on one inbox, duplicates, missing streams,
timeouts, and a connection that drops with acks in flight (real nats-servers: current and Debian's 2.9.10)."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import nats
import nats.errors
import pytest
from cloudevents.core.v1.event import CloudEvent
from nats.aio.client import Client
from structlog.testing import capture_logs

from broker import jetstream_wire as wire
from broker.nats import JetStreamPublisher, PublishError, StreamLayout
from broker.nats_dispatcher import Dispatcher
from tests.nats_fixture import own_server

ODD_HEADERS = {
    "ce-id": "a b",
    " Padded-Name ": "  padded value\t",
    "ce-text": "line one\r\nline two\nthree\r",
    "ce-unicode": "é – 😀",
    "ce-empty": "",
    "": "an empty name is skipped",
    "   ": "so is a blank one",
    "ce-pct": "100%25 %zz",
    "Nats-Msg-Id": "run:1:2",
    "Weird!#$&'*+-.^_`|~Name": "token characters",
    "ce-colon": "a: b: c",
}


def test_written_for_the_installed_nats_py():
    """Fails on a nats-py upgrade: re-check the hooks that broker/jetstream_wire.py's docstring lists,
    then move WRITTEN_FOR."""
    assert wire.NATS_PY_VERSION == wire.WRITTEN_FOR, (
        f"nats-py is {wire.NATS_PY_VERSION}; broker/jetstream_wire.py was checked against {wire.WRITTEN_FOR}"
    )
    assert wire.HOOKS, "nats-py's private hooks changed: see broker/jetstream_wire.py"


async def nats_py_frame(subject: str, reply: str, headers: dict[str, str], payload: bytes) -> bytes:
    client = Client()  # never connected: `_send_publish` leaves the frame in its outgoing buffer
    await client._send_publish(subject, reply, payload, len(payload), headers)
    return b"".join(client._pending)


async def test_header_block_is_byte_for_byte_nats_pys():
    frame = await nats_py_frame("s", "r", ODD_HEADERS, b"{}")
    line, _, rest = frame.partition(b"\r\n")
    header_size = int(line.split()[3])
    assert wire.header_block(ODD_HEADERS) == rest[:header_size]
    assert wire.header_block(ODD_HEADERS) == wire.header_block(ODD_HEADERS)  # the checked-names cache
    assert wire.hpub_frame("s", "r", wire.header_block(ODD_HEADERS), b"{}") == frame


async def test_a_bad_header_name_is_refused_as_nats_py_does():
    for name in ("bad name", "bad:name", "naïve", "a\r\nb"):
        with pytest.raises(nats.errors.BadHeaderError) as ours:
            wire.header_block({name: "v"})
        with pytest.raises(nats.errors.BadHeaderError) as theirs:
            await nats_py_frame("s", "", {name: "v"}, b"")
        assert str(ours.value) == str(theirs.value)


@pytest.mark.parametrize(
    "block",
    [
        wire.header_block(ODD_HEADERS),
        b"NATS/1.0 503\r\n\r\n",
        b"NATS/1.0 404 No Messages\r\n\r\n",
        b"NATS/1.0 408 Request Timeout\r\nNats-Pending-Messages: 5\r\nNats-Pending-Bytes: 10\r\n\r\n",
        b"NATS/1.0 100 Idle Heartbeat\r\nNats-Last-Consumer: 1016\r\nNats-Last-Stream: 1024\r\n\r\n",
        b"NATS/1.0\r\nno colon here\r\nname with space: x\r\nna\xc3\xafve: x\r\nok:tight\r\nbad-utf8: \xff\xfe\r\n\r\n",
        b"NATS/1.0\r\n: empty name\r\nsep\x1cname: x\r\n\r\n",
    ],
)
async def test_parse_headers_reads_what_nats_py_reads(block):
    assert wire.parse_headers(block) == await Client()._process_headers(block)


# ---- the publisher on the wire ---------------------------------------------------------------------


def event(i: int, **extra: str) -> CloudEvent:
    attributes = {"type": "dev.knflow.invoke", "source": "/t", "id": f"e{i}", "knflowfunction": "f", **extra}
    return CloudEvent({**attributes, "knflowpipeline": "p", "datacontenttype": "application/json"}, {"i": i})


async def test_acks_of_concurrent_callers_are_collected_on_one_inbox(nc, layout):
    publisher = JetStreamPublisher(nc, layout)
    subs_before = len(nc._subs)
    batches = await asyncio.gather(*(publisher.publish_many([event(10 * c + i) for i in range(10)]) for c in range(5)))
    assert len(nc._subs) == subs_before + 1  # one inbox subscription, however many messages
    seqs = [ack.seq for batch in batches for ack in batch]
    assert sorted(seqs) == list(range(1, 51)) and all(ack.stream == layout.stream for b in batches for ack in b)
    assert publisher._pending == {}
    stored = await nc.jetstream().get_msg(layout.stream, batches[2][3].seq)
    assert stored.headers["Nats-Msg-Id"] == "e23" and stored.headers["Nats-Expected-Stream"] == layout.stream


async def test_a_duplicate_is_acknowledged_as_one(nc, layout):
    publisher = JetStreamPublisher(nc, layout)
    first, again, other = await publisher.publish_many([event(1), event(1, knflowrun="r"), event(2)])
    assert (first.duplicate, again.duplicate, again.seq, other.duplicate) == (None, True, first.seq, None)


async def test_a_missing_stream_fails_at_once_not_after_the_timeout(nc, layout):
    elsewhere = StreamLayout(stream=layout.stream, prefix=f"{layout.prefix}x")  # no stream has these subjects
    publisher = JetStreamPublisher(nc, elsewhere, ack_timeout_s=5)
    started = time.monotonic()
    with pytest.raises(PublishError, match="no stream answered for it") as err:
        await publisher.publish(event(1))
    assert time.monotonic() - started < 2 and err.value.fields["failed_ids"] == ["e1"]


async def test_an_unanswered_publish_times_out(nc, layout):
    silent = StreamLayout(stream=layout.stream, prefix=f"{layout.prefix}y")
    listener = await nc.subscribe(f"{silent.prefix}.>")  # a responder that never answers: no 503 either
    try:
        publisher = JetStreamPublisher(nc, silent, ack_timeout_s=0.3)
        with pytest.raises(PublishError, match=r"did not acknowledge it within ack_timeout_s=0\.3"):
            await publisher.publish(event(1))
        assert publisher._pending == {}
    finally:
        await listener.unsubscribe()


async def test_another_stream_on_the_subject_is_refused(nc, layout):
    wrong = StreamLayout(stream=f"{layout.stream}X", prefix=layout.prefix)  # Nats-Expected-Stream mismatch
    with pytest.raises(PublishError, match=r"JetStream refused it: .*expected stream") as err:
        await JetStreamPublisher(nc, wrong).publish(event(1))
    assert err.value.fields["failed_ids"] == ["e1"]


async def test_a_closed_connection_fails_every_event(nats_server):
    client = await nats.connect(nats_server.url)
    await client.close()
    with pytest.raises(PublishError, match="ConnectionClosedError") as err:
        await JetStreamPublisher(client, StreamLayout()).publish_many([event(1), event(2)])
    assert err.value.fields["failed_ids"] == ["e1", "e2"]


# ---- a connection that drops -----------------------------------------------------------------------


async def stopped(pid: int) -> None:
    """Once process `pid` is stopped (state T in /proc/PID/stat), or fail after 10 s."""
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "T":
        assert time.monotonic() < deadline, f"process {pid} did not stop on SIGSTOP"
        await asyncio.sleep(0.01)


async def test_acks_in_flight_when_the_connection_drops_time_out_then_publishing_again_works(tmp_path):
    async with own_server(tmp_path / "store", "drop") as own:
        server, client = own.server, own.client
        layout = StreamLayout(stream="DROP", prefix="drop")
        publisher = JetStreamPublisher(client, layout, ack_timeout_s=1)
        await publisher.ensure_stream()
        assert (await publisher.publish(event(1))).seq == 1
        assert server._proc is not None
        os.kill(server._proc.pid, signal.SIGSTOP)  # the frames go out; no ack comes back
        await stopped(server._proc.pid)  # a signal takes effect asynchronously: on a busy machine, a while later
        with pytest.raises(PublishError, match="did not acknowledge it within ack_timeout_s=1") as err:
            await publisher.publish_many([event(2), event(3)])
        assert err.value.fields["failed_ids"] == ["e2", "e3"] and publisher._pending == {}
        server.restart(crash=True)  # the connection drops; nats-py reconnects and resubscribes the inbox
        await asyncio.wait_for(own.reconnected.wait(), 10)
        acks = await publisher.publish_many([event(2), event(3), event(1)])  # again: safe, ids dedupe
        assert [a.duplicate for a in acks] == [None, None, True]
        assert (await client.jetstream().stream_info("DROP")).state.messages == 3


async def test_events_published_while_reconnecting_go_out_once_reconnected(tmp_path):
    async with own_server(tmp_path / "store", "away") as own:
        server, client = own.server, own.client
        publisher = JetStreamPublisher(client, StreamLayout(stream="AWAY", prefix="away"), ack_timeout_s=10)
        await publisher.ensure_stream()
        await publisher.publish(event(1))
        server.kill()
        await asyncio.wait_for(own.disconnected.wait(), 10)
        publishing = asyncio.ensure_future(publisher.publish_many([event(2), event(3)]))  # buffered meanwhile
        await asyncio.sleep(0.2)
        assert not publishing.done()
        server.start()
        assert [a.seq for a in await publishing] == [2, 3]


# ---- deliveries ------------------------------------------------------------------------------------


async def test_a_delivered_message_acks_once_and_reads_its_headers_lazily(nc, layout):
    publisher = JetStreamPublisher(nc, layout)
    publisher.compact = False  # binary mode, as external events and older versions' invokes are stored
    got: list[wire.JsMsg] = []
    dispatcher = Dispatcher.for_function(nc, "f", lambda ev: asyncio.sleep(0), layout=layout)
    await dispatcher.ensure_consumer()
    sub = await wire.subscribe_raw(
        nc, "_INBOX.wiretest.*", lambda s, r, d, h: got.append(wire.JsMsg(nc, s.decode(), r.decode(), d, h))
    )
    try:
        await publisher.publish(event(1, knflowrun="run é"))
        await nc.publish(
            f"$JS.API.CONSUMER.MSG.NEXT.{layout.stream}.{dispatcher.name}", b"1", reply="_INBOX.wiretest.1"
        )
        deadline = time.monotonic() + 5
        while not got and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        (msg,) = got
        assert msg._headers is False  # not parsed until read
        assert msg.headers is not None and msg.headers["ce-knflowrun"] == "run%20%C3%A9"
        assert (msg.metadata.num_delivered, msg.metadata.stream) == (1, layout.stream)
        await msg.ack()
        with pytest.raises(nats.errors.MsgAlreadyAckdError):
            await msg.ack()
        await nc.flush()
        # the server applies an ack in the consumer's own goroutine, after the flush's PONG: poll for it
        deadline = time.monotonic() + 5
        while True:
            info = await nc.jetstream().consumer_info(layout.stream, dispatcher.name)
            if (info.num_ack_pending, info.ack_floor.stream_seq) == (0, 1) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.02)
        assert (info.num_ack_pending, info.ack_floor.stream_seq) == (0, 1)
    finally:
        await sub.unsubscribe()
        wire.unsubscribed(nc, sub)


async def test_a_raw_handler_that_raises_leaves_the_connection_reading(nc):
    got: list[bytes] = []

    def handler(subject: bytes, reply: bytes, data: bytes, headers: bytes | None) -> None:
        if data == b"boom":
            raise ValueError("a bug in a handler")
        got.append(data)

    sub = await wire.subscribe_raw(nc, "wiretest.raise", handler)
    try:
        with capture_logs() as logs:
            await nc.publish("wiretest.raise", b"boom")
            await nc.publish("wiretest.raise", b"fine")
            await nc.flush()
            deadline = time.monotonic() + 5
            while not got and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
        assert got == [b"fine"] and nc.is_connected
        assert [entry["event"] for entry in logs] == ["raw message handler failed"]
    finally:
        await sub.unsubscribe()
        wire.unsubscribed(nc, sub)
