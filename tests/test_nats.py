"""broker.nats + broker.nats_dispatcher on real nats-servers (current and Debian's 2.9.10) and a real HTTP server."""

from __future__ import annotations

import asyncio
import base64
import inspect
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import orjson
import pytest
from aiohttp import web
from cloudevents.core.v1.event import CloudEvent
from multidict import CIMultiDict
from structlog.testing import capture_logs

from broker.codec import STRUCTURED_CONTENT_TYPE, decode, decode_stored, encode_binary, encode_structured
from broker.delivery import DeliveryOutcome
from broker.errors import DeliveryFailed, InvalidEvent, KnflowError
from broker.nats import JetStreamPublisher, PublishError, StreamLayout, escape_token
from broker.nats_dispatcher import Dispatcher
from broker.retry import Retry
from tests.nats_fixture import own_server

FAST = Retry(retries=3, backoff="linear", delay_s=0.05)


async def wait_for(condition: Callable[[], object], what: str, timeout_s: float = 10.0) -> None:
    """Poll `condition` (plain or async) until it holds; fail after `timeout_s` naming `what`."""
    deadline = time.monotonic() + timeout_s
    while not ((await result) if inspect.isawaitable(result := condition()) else result):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.005)


def invoke(i: int = 0, function: str = "resize", **extra: str) -> CloudEvent:
    return CloudEvent(
        {
            "type": "dev.knflow.invoke",
            "source": "/knflow/router",
            "id": f"run{i}:n:1",
            "knflowfunction": function,
            "knflowpipeline": "p",
            "datacontenttype": "application/json",
            **extra,
        },
        {"inputs": {"i": i}, "config": {}},
    )


def result_for(ev: CloudEvent) -> CloudEvent:
    return CloudEvent(
        {
            "type": "dev.knflow.node.succeeded",
            "source": "/fn/resize",
            "id": f"{ev.get_id()}:ok",
            "knflowpipeline": "p",
            "datacontenttype": "application/json",
        },
        {"output": ev.get_data()["inputs"]},
    )


async def stream_messages(nc, layout: StreamLayout, subject: str) -> list[CloudEvent]:
    sub = await nc.jetstream().subscribe(subject, stream=layout.stream, ordered_consumer=True)
    info = await nc.jetstream().stream_info(layout.stream, subjects_filter=subject)
    count = sum((info.state.subjects or {}).values())
    events = [decode((m := await sub.next_msg(timeout=5)).headers or {}, m.data) for _ in range(count)]
    await sub.unsubscribe()
    return events


async def consumer_settled(nc, layout: StreamLayout, name: str) -> bool:
    info = await nc.jetstream().consumer_info(layout.stream, name)
    return info.num_ack_pending == 0 and info.num_pending == 0 and info.num_redelivered == 0


# ---- subject layout (no server) -----------------------------------------------------------------


def test_subjects_per_event_kind():
    lay = StreamLayout()
    assert lay.subjects == ["knflow.>"]
    assert lay.subject_for(invoke(function="resize")) == "knflow.invoke.resize"
    assert lay.subject_for(result_for(invoke())) == "knflow.result.p"
    run_failed = CloudEvent({"type": "dev.knflow.run.failed", "source": "/r", "knflowpipeline": "article"})
    assert lay.subject_for(run_failed) == "knflow.run.article.failed"
    push = CloudEvent({"type": "com.github.push", "source": "/gh"})
    assert lay.subject_for(push) == "knflow.ext.com%2Egithub%2Epush"


def test_escape_token_is_one_token_and_one_to_one():
    texts = ["a.b", "a%2Eb", "a b", "*", ">", "é", "a/b\\c", "", "%00", "plain-name_1"]
    escaped = [escape_token(t) for t in texts]
    assert len(set(escaped)) == len(texts)
    for token in escaped:
        assert token and not set(token) & set(". *>/\\\t") and token.isascii()
    assert escape_token("plain-name_1") == "plain-name_1"


def test_unroutable_event_names_the_missing_extension():
    ev = CloudEvent({"type": "dev.knflow.invoke", "source": "/r", "id": "x1"})
    with pytest.raises(InvalidEvent) as err:
        StreamLayout().subject_for(ev)
    assert str(err.value) == (
        "Event 'x1' of type 'dev.knflow.invoke' lacks extension attribute 'knflowfunction' (header ce-knflowfunction), "
        "which routes it to a subject."
    )


def test_layout_and_dispatcher_validate_their_values():
    with pytest.raises(KnflowError, match=r"Stream name 'a\.b' is not valid"):
        StreamLayout(stream="a.b")
    with pytest.raises(
        KnflowError,
        match=r"Dispatcher 'fn-x' is invalid: backoff must be 'exponential' or 'linear', got 'fibonacci'; "
        r"timeout_s must be a number > 0, got 0\.",
    ):
        Dispatcher.for_function(None, "x", "http://127.0.0.1:9/", retry=Retry(backoff="fibonacci"), timeout_s=0)


# ---- stream and publisher ------------------------------------------------------------------------


async def test_ensure_stream_is_idempotent_and_updates(nc, layout):
    info = await JetStreamPublisher(nc, layout).ensure_stream()
    assert (info.config.subjects, info.config.storage, info.config.duplicate_window) == (
        [f"{layout.prefix}.>"],
        "file",
        120.0,
    )
    wider = StreamLayout(stream=layout.stream, prefix=layout.prefix, duplicate_window_s=300)
    assert (await JetStreamPublisher(nc, wider).ensure_stream()).config.duplicate_window == 300.0


async def test_publisher_stores_invokes_and_results_compact_and_drops_duplicates_by_id(nc, layout):
    publisher = JetStreamPublisher(nc, layout)
    ev = invoke(1, knflowrun="run 1 é")
    first = await publisher.publish(ev)
    again = await publisher.publish(ev)
    assert (first.duplicate, again.duplicate, again.seq) == (None, True, first.seq)
    result = result_for(ev)
    await publisher.publish(result)
    for seq, event, subject in ((first.seq, ev, "invoke.resize"), (first.seq + 1, result, "result.p")):
        msg = await nc.jetstream().get_msg(layout.stream, seq)
        assert msg.subject == f"{layout.prefix}.{subject}"
        assert msg.headers is not None and msg.headers["Nats-Msg-Id"] == event.get_id()
        assert msg.headers["content-type"] == STRUCTURED_CONTENT_TYPE  # structured mode: one JSON document
        assert not [name for name in msg.headers if name.startswith("ce-")]
        stored = decode_stored(msg.headers, msg.data)
        assert stored.get_attributes() == event.get_attributes() and stored.get_data() == event.get_data()
    assert orjson.loads((await nc.jetstream().get_msg(layout.stream, first.seq)).data)["knflowrun"] == "run 1 é"


async def test_other_events_and_the_older_form_are_binary_mode(nc, layout):
    external = CloudEvent({"type": "com.example.push", "source": "/gh", "id": "x1", "knflowrun": "run 1 é"}, {"a": 1})
    old = JetStreamPublisher(nc, layout)
    old.compact = False  # how knflow stored its invokes before the compact form
    for publisher, ev in ((JetStreamPublisher(nc, layout), external), (old, invoke(1, knflowrun="run 1 é"))):
        ack = await publisher.publish(ev)
        msg = await nc.jetstream().get_msg(layout.stream, ack.seq)
        assert msg.headers is not None and msg.headers["ce-knflowrun"] == "run%201%20%C3%A9"
        stored = decode_stored(msg.headers, msg.data)
        assert stored.get_attributes() == ev.get_attributes() and stored.get_data() == ev.get_data()


async def test_a_dispatcher_reads_both_forms_alike(nc, layout):
    """A stream upgraded in place holds binary-mode invokes beside compact ones: both arrive the same."""
    seen: list[CloudEvent] = []

    async def resize(ev: CloudEvent) -> None:
        seen.append(ev)

    old = JetStreamPublisher(nc, layout)
    old.compact = False
    sent = [invoke(1, knflowrun="r 1 %20 é"), invoke(2, knflowrun="r 1 %20 é")]
    await old.publish(sent[0])
    await JetStreamPublisher(nc, layout).publish(sent[1])
    async with Dispatcher.for_function(nc, "resize", resize, layout=layout, timeout_s=5) as d:
        await wait_for(lambda: d.stats.delivered == 2, "both deliveries")
    assert sorted((ev.get_id(), ev.get_attributes(), ev.get_data()) for ev in seen) == [
        (ev.get_id(), ev.get_attributes(), ev.get_data()) for ev in sent
    ]


async def test_publish_many_awaits_every_ack_and_dedupes(nc, layout):
    publisher = JetStreamPublisher(nc, layout)
    events = [invoke(i) for i in range(500)] + [invoke(7), invoke(8)]  # two duplicates in the batch
    acks = await publisher.publish_many(events)
    assert len(acks) == 502 and sum(bool(a.duplicate) for a in acks) == 2
    assert (await nc.jetstream().stream_info(layout.stream)).state.messages == 500
    assert await publisher.publish_many([]) == []


async def test_publish_many_raises_when_nothing_is_stored(nc, layout):
    elsewhere = StreamLayout(stream=layout.stream, prefix=f"{layout.prefix}x")  # no stream holds these subjects
    with pytest.raises(PublishError) as err:
        await JetStreamPublisher(nc, elsewhere, ack_timeout_s=2).publish_many([invoke(1), invoke(2)])
    assert str(err.value).startswith(
        f"2 of 2 events were not stored. First: Event 'run1:n:1' on subject '{layout.prefix}x.invoke.resize' "
        f"was not stored in stream '{layout.stream}': no stream answered for it"
    )
    assert err.value.fields["failed_ids"] == ["run1:n:1", "run2:n:1"]


# ---- dispatcher: in-process ------------------------------------------------------------------------


class RecordingPublisher(JetStreamPublisher):
    """Records the input's ack state when each reply is published; can fail the first publishes."""

    def __init__(self, nc, layout, consumer: str, fail_first: int = 0) -> None:
        super().__init__(nc, layout)
        self.consumer, self.fail_first, self.unacked_at_publish = consumer, fail_first, []

    async def publish(self, event):
        info = await self._nc.jetstream().consumer_info(self.layout.stream, self.consumer)
        self.unacked_at_publish.append(info.num_ack_pending)
        if self.fail_first > 0:
            self.fail_first -= 1
            raise PublishError("JetStream is unavailable (test)")
        return await super().publish(event)


async def test_in_process_reply_is_stored_before_the_input_is_acked(nc, layout):
    seen = []

    async def resize(ev: CloudEvent) -> CloudEvent:
        seen.append(ev)
        return result_for(ev)

    publisher = RecordingPublisher(nc, layout, "fn-resize", fail_first=1)
    async with Dispatcher.for_function(
        nc, "resize", resize, layout=layout, retry=FAST, timeout_s=5, publisher=publisher
    ) as d:
        await JetStreamPublisher(nc, layout).publish(invoke(1))
        await wait_for(lambda: d.stats.delivered == 1, "the delivery")
    assert publisher.unacked_at_publish == [1, 1]  # input still unacked while its reply was being stored
    assert (d.stats.retries, d.stats.replies, len(seen)) == (1, 1, 2)  # the failed reply store made it retry
    replies = await stream_messages(nc, layout, f"{layout.prefix}.result.p")
    assert [r.get_id() for r in replies] == ["run1:n:1:ok"]
    await wait_for(lambda: consumer_settled(nc, layout, "fn-resize"), "the input's ack")


async def test_handlers_may_raise_delivery_failed_and_return_none(nc, layout):
    attempts: list[int] = []

    async def flaky(ev: CloudEvent) -> None:
        attempts.append(1)
        if len(attempts) < 3:
            raise DeliveryFailed("GPU busy", retryable=True, code=503)
        return None  # accepted, no reply

    async with Dispatcher.for_function(nc, "flaky", flaky, layout=layout, retry=FAST, timeout_s=5) as d:
        await JetStreamPublisher(nc, layout).publish(invoke(1, function="flaky"))
        await wait_for(lambda: d.stats.delivered == 1, "the third attempt")
    assert (len(attempts), d.stats.retries, d.stats.replies) == (3, 2, 0)


async def test_timeout_is_retried(nc, layout):
    never = asyncio.Event()
    calls = []

    async def slow_then_fast(ev: CloudEvent) -> DeliveryOutcome:
        calls.append(ev)
        if len(calls) == 1:
            await never.wait()
        return DeliveryOutcome.accepted()

    retry = Retry(retries=1, delay_s=0.01)
    async with Dispatcher.for_function(nc, "slow", slow_then_fast, layout=layout, retry=retry, timeout_s=0.2) as d:
        await JetStreamPublisher(nc, layout).publish(invoke(1, function="slow"))
        await wait_for(lambda: d.stats.delivered == 1, "the retry after the timeout")
    assert (len(calls), d.stats.retries) == (2, 1)


async def test_concurrency_limit(nc, layout):
    release = asyncio.Event()
    running, peak, done = 0, 0, 0

    async def gated(ev: CloudEvent) -> None:
        nonlocal running, peak, done
        running += 1
        peak = max(peak, running)
        await release.wait()
        running -= 1
        done += 1

    async with Dispatcher.for_function(
        nc, "gated", gated, layout=layout, retry=FAST, timeout_s=5, max_in_flight=3
    ) as d:
        await JetStreamPublisher(nc, layout).publish_many([invoke(i, function="gated") for i in range(20)])
        await wait_for(lambda: running == 3, "three deliveries in flight")
        info = await nc.jetstream().consumer_info(layout.stream, d.name)
        assert (d.in_flight, info.num_ack_pending) == (3, 3)  # nothing fetched beyond the free slots
        release.set()
        await wait_for(lambda: done == 20, "all twenty")
    assert peak == 3


async def test_not_a_cloudevent_is_terminated_and_logged(nc, layout):
    async def never(ev):  # pragma: no cover - must not be called
        raise AssertionError("delivered a message that is not a CloudEvent")

    with capture_logs() as logs:
        async with Dispatcher.for_function(nc, "junk", never, layout=layout, retry=FAST, timeout_s=5) as d:
            await nc.jetstream().publish(f"{layout.prefix}.invoke.junk", b"hello", headers={"ce-id": "j1"})
            await wait_for(lambda: d.stats.terminated == 1, "the termination")
    [line] = [entry for entry in logs if entry["event"] == "message is not a CloudEvent; terminated"]
    assert "missing required attribute 'source'" in line["error"]


async def test_stop_leaves_an_unfinished_delivery_for_redelivery(nc, layout):
    blocked, calls = asyncio.Event(), []

    async def first_hangs(ev: CloudEvent) -> None:
        calls.append(ev)
        if len(calls) == 1:
            await blocked.wait()

    options = {"retry": Retry(retries=3, delay_s=0.2), "timeout_s": 0.5, "ack_margin_s": 0.3}
    first = Dispatcher.for_function(nc, "hang", first_hangs, layout=layout, **options)
    await first.start()
    await JetStreamPublisher(nc, layout).publish(invoke(1, function="hang"))
    await wait_for(lambda: len(calls) == 1, "the first delivery")
    await first.stop(drain_timeout_s=0.05)
    async with Dispatcher.for_function(nc, "hang", first_hangs, layout=layout, **options) as d:
        await wait_for(lambda: d.stats.delivered == 1, "the redelivery after ack_wait")
    assert len(calls) == 2


# ---- dispatcher: HTTP subscriber and dead letters ------------------------------------------------------


@dataclass
class FunctionService:
    """A real HTTP server; each path answers from its script of (status, kind) steps, the last one repeating."""

    scripts: dict[str, list[tuple[int, str]]]
    requests: dict[str, list[tuple[float, CIMultiDict[str], bytes]]] = field(default_factory=dict)
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        path = request.path.strip("/")
        body = await request.read()
        seen = self.requests.setdefault(path, [])
        seen.append((time.monotonic(), CIMultiDict(request.headers), body))
        script = self.scripts[path]
        status, kind = script[min(len(seen), len(script)) - 1]
        if kind == "binary-reply":
            headers, payload = encode_binary(result_for(decode(request.headers, body)))
            return web.Response(status=status, body=payload, headers=headers)
        if kind == "structured-reply":
            headers, payload = encode_structured(result_for(decode(request.headers, body)))
            return web.Response(status=status, body=payload, headers=headers)
        return web.Response(status=status, text=kind)  # kind is the body text


@pytest.fixture
async def service() -> AsyncIterator[FunctionService]:
    svc = FunctionService(scripts={})
    app = web.Application()
    app.router.add_post("/{path}", svc.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    svc.url = f"http://{host}:{port}"
    yield svc
    await runner.cleanup()


@pytest.mark.parametrize("compact", [True, False], ids=["compact-on-stream", "binary-on-stream"])
@pytest.mark.parametrize("kind", ["binary-reply", "structured-reply"])
async def test_http_subscriber_reply_is_published(nc, layout, service, kind, compact):
    """The function service gets binary mode, whichever form the invoke had on the stream."""
    service.scripts["resize"] = [(200, kind)]
    url = f"{service.url}/resize"
    publisher = JetStreamPublisher(nc, layout)
    publisher.compact = compact
    async with Dispatcher.for_function(nc, "resize", url, layout=layout, retry=FAST, timeout_s=5) as d:
        await publisher.publish(invoke(1, knflowrun="r 1"))
        await wait_for(lambda: d.stats.delivered == 1, "the HTTP delivery")
    [(_, headers, body)] = service.requests["resize"]
    assert (headers["Prefer"], headers["ce-id"], headers["ce-knflowrun"], headers["Content-Type"]) == (
        "reply",
        "run1:n:1",
        "r%201",
        "application/json",
    )
    assert decode(headers, body).get_data() == {"inputs": {"i": 1}, "config": {}}
    replies = await stream_messages(nc, layout, f"{layout.prefix}.result.p")
    assert [(r.get_id(), r.get_data()) for r in replies] == [("run1:n:1:ok", {"output": {"i": 1}})]


async def test_http_202_and_empty_200_are_no_reply(nc, layout, service):
    service.scripts["a"] = [(202, "a body that must not be read as a reply")]
    service.scripts["b"] = [(200, "")]
    external = f"{layout.prefix}.ext.>"
    async with (
        Dispatcher(nc, name="a", filter_subject=external, subscriber=f"{service.url}/a", layout=layout) as a,
        Dispatcher(nc, name="b", filter_subject=external, subscriber=f"{service.url}/b", layout=layout) as b,
    ):
        ev = CloudEvent({"type": "com.example.x", "source": "/s", "id": "x1"})
        await JetStreamPublisher(nc, layout).publish(ev)
        await wait_for(lambda: a.stats.delivered == b.stats.delivered == 1, "both deliveries")
    assert a.stats.replies == b.stats.replies == 0


async def test_http_retries_503_with_backoff_then_succeeds(nc, layout, service):
    service.scripts["resize"] = [(503, "warming up"), (503, "warming up"), (200, "binary-reply")]
    async with Dispatcher.for_function(
        nc, "resize", f"{service.url}/resize", layout=layout, retry=FAST, timeout_s=5
    ) as d:
        await JetStreamPublisher(nc, layout).publish(invoke(1))
        await wait_for(lambda: d.stats.delivered == 1, "the third attempt")
    times = [t for t, _h, _b in service.requests["resize"]]
    assert len(times) == 3 and (d.stats.retries, d.stats.replies, d.stats.dead_letters) == (2, 1, 0)
    assert times[1] - times[0] >= 0.05 * 0.9 and times[2] - times[1] >= 0.10 * 0.9  # linear: 0.05 s, 0.10 s
    await wait_for(lambda: consumer_settled(nc, layout, d.name), "the input's ack")


async def test_the_nodes_retry_policy_on_the_invoke_overrides_the_dispatchers(nc, layout, service):
    service.scripts["resize"] = [(503, "down")]
    service.scripts["dlq"] = [(202, "")]
    node_retry = Retry(retries=1, backoff="linear", delay_s=0.01).extension_value()
    async with Dispatcher.for_function(
        nc, "resize", f"{service.url}/resize", layout=layout, retry=FAST, timeout_s=5, dead_letter=f"{service.url}/dlq"
    ) as d:
        with capture_logs() as logs:
            await JetStreamPublisher(nc, layout).publish(invoke(1, knflowretry=node_retry))
            await wait_for(lambda: d.stats.dead_letters == 1, "the dead letter after the node's one retry")
            await JetStreamPublisher(nc, layout).publish(invoke(2, knflowretry="3/linear/0.05/60"))
            await wait_for(lambda: d.stats.dead_letters == 2, "the dead letter after the dispatcher's 3 retries")
    assert len(service.requests["resize"]) == 2 + 4 and d.stats.retries == 1 + 3
    bad = [e for e in logs if e["event"] == "bad retry policy on the event; the subscriber's applies"]
    assert bad and "extension knflowretry has value '3/linear/0.05/60'" in bad[0]["error"]


async def test_http_400_is_not_retried_and_goes_to_the_dead_letter_url(nc, layout, service):
    service.scripts["resize"] = [(400, "field 'width' must be > 0")]
    service.scripts["dlq"] = [(202, "")]
    async with Dispatcher.for_function(
        nc, "resize", f"{service.url}/resize", layout=layout, retry=FAST, timeout_s=5, dead_letter=f"{service.url}/dlq"
    ) as d:
        await JetStreamPublisher(nc, layout).publish(invoke(1))
        await wait_for(lambda: d.stats.dead_letters == 1, "the dead letter")
    assert len(service.requests["resize"]) == 1 and d.stats.retries == 0
    [(_, headers, body)] = service.requests["dlq"]
    dead = decode(headers, body)
    assert dead.get_id() == "run1:n:1" and dead.get_data() == {"inputs": {"i": 1}, "config": {}}
    assert dead.get_extension("knativeerrorcode") == "400"
    assert dead.get_extension("knativeerrordest") == f"{service.url}/resize"
    assert base64.b64decode(dead.get_extension("knativeerrordata")) == b"field 'width' must be > 0"
    await wait_for(lambda: consumer_settled(nc, layout, d.name), "the input's ack")


async def test_dead_letter_after_retries_run_out(nc, layout, service):
    service.scripts["resize"] = [(503, "x" * 5000)]
    dead_letters: list[CloudEvent] = []

    async def dead_letter_sink(ev: CloudEvent) -> None:
        dead_letters.append(ev)

    retry = Retry(retries=2, backoff="exponential", delay_s=0.01)
    async with Dispatcher.for_function(
        nc, "resize", f"{service.url}/resize", layout=layout, retry=retry, timeout_s=5, dead_letter=dead_letter_sink
    ) as d:
        await JetStreamPublisher(nc, layout).publish(invoke(1))
        await wait_for(lambda: d.stats.dead_letters == 1, "the dead letter")
    assert len(service.requests["resize"]) == 3 and d.stats.retries == 2
    [dead] = dead_letters
    assert dead.get_extension("knativeerrorcode") == 503
    assert dead.get_extension("knativeerrordest") == f"{service.url}/resize"
    assert len(dead.get_extension("knativeerrordata")) == 1024  # Knative's limit, still valid base64
    assert base64.b64decode(dead.get_extension("knativeerrordata")) == b"x" * 768
    await wait_for(lambda: consumer_settled(nc, layout, d.name), "the input's ack")


async def test_a_failing_dead_letter_sink_gets_the_event_again_nothing_is_acked(nc, layout, service):
    service.scripts["resize"] = [(404, "no such route")]
    service.scripts["dlq"] = [(500, "router down"), (200, "")]
    async with Dispatcher.for_function(
        nc, "resize", f"{service.url}/resize", layout=layout, retry=FAST, timeout_s=5, dead_letter=f"{service.url}/dlq"
    ) as d:
        await JetStreamPublisher(nc, layout).publish(invoke(1))
        with capture_logs() as logs:
            await wait_for(lambda: d.stats.dead_letters == 1, "the second dead-letter attempt")
    assert (len(service.requests["resize"]), len(service.requests["dlq"])) == (2, 2)
    assert any(e["event"] == "dead-letter sink failed; will try again" and e["sink_status"] == 500 for e in logs)
    await wait_for(lambda: consumer_settled(nc, layout, d.name), "the input's ack")


async def test_connection_refused_is_retried_then_dead_lettered(nc, layout):
    dead_letters: list[CloudEvent] = []

    async def sink(ev: CloudEvent) -> None:
        dead_letters.append(ev)

    retry = Retry(retries=1, delay_s=0.01)
    async with Dispatcher.for_function(
        nc, "gone", "http://127.0.0.1:9/nothing-listens", layout=layout, retry=retry, timeout_s=5, dead_letter=sink
    ) as d:
        await JetStreamPublisher(nc, layout).publish(invoke(1, function="gone"))
        await wait_for(lambda: d.stats.dead_letters == 1, "the dead letter")
    [dead] = dead_letters
    assert dead.get_extension("knativeerrorcode") == 502
    error_data = base64.b64decode(dead.get_extension("knativeerrordata"))
    assert error_data.startswith(b"dispatch error: POST http://127.0.0.1:9/nothing-listens: ClientConnectorError")


# ---- a server crash --------------------------------------------------------------------------------


async def test_dispatcher_and_stream_survive_a_server_crash(tmp_path):
    async with own_server(tmp_path / "store", "crash") as own:
        server, client = own.server, own.client
        layout = StreamLayout(stream="CRASH", prefix="crash")
        publisher = JetStreamPublisher(client, layout)
        await publisher.ensure_stream()
        seen: list[str] = []

        async def record(ev: CloudEvent) -> None:
            seen.append(ev.get_id())

        async with Dispatcher.for_function(
            client, "resize", record, layout=layout, retry=FAST, timeout_s=5, pull_expires_s=0.3
        ):
            await publisher.publish(invoke(1))
            await wait_for(lambda: seen == ["run1:n:1"], "the delivery before the crash")
            server.restart(crash=True)  # SIGKILL, then the same store dir and port
            await wait_for(own.reconnected.is_set, "the reconnect")
            await publisher.publish(invoke(2))
            await wait_for(lambda: seen == ["run1:n:1", "run2:n:1"], "the delivery after the crash")
        assert (await client.jetstream().stream_info("CRASH")).state.messages == 2
