"""Run events (`dev.knflow.run.*`) go out only where something consumes them (KNFLOW_RUN_EVENTS auto), every
one with `all`; in-process waiters hear of run ends from the router's run-end hook (`Router.watch_ends`)."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from cloudevents.core.v1.event import CloudEvent

from broker import events
from broker.nats import StreamLayout
from knflow.local import EmbeddedStack
from knflow.nats_stack import NatsStack
from knflow.settings import Settings, SettingsInvalid
from router.loader import load_string
from router.pipeline import Trigger
from router.router import StaticPipelines
from router.run_events import may_match
from router.runs import RUN_FINAL, RunDoc
from router.store.sqlite import SqliteStore
from router.triggers import pipelines_for
from tests.nats_fixture import nats_server  # noqa: F401

RUN_TYPES = (events.RUN_STARTED, events.RUN_SUCCEEDED, events.RUN_FAILED, events.RUN_CANCELLED)
UP = "metadata: {name: up}\nnodes: [{id: say, type: log, inputs: {message: up}}]\n"
DOWN = (
    "metadata: {name: down}\n"
    "triggers: [{type: cloudevent, filter: {type: dev.knflow.run.succeeded, knflowpipeline: up}}]\n"
    "nodes: [{id: say, type: log, inputs: {message: '{{ trigger.knflowrun }}'}}]\n"
)
HOLD = "metadata: {name: hold}\nnodes: [{id: wait, type: delay, inputs: {seconds: 1}}]\n"


def test_a_trigger_may_match_a_run_event_by_its_type_pipeline_and_per_run_attributes():
    on = Trigger("cloudevent", {"type": events.RUN_SUCCEEDED, "knflowpipeline": "up"})
    assert may_match(on, events.RUN_SUCCEEDED, "up")
    assert not may_match(on, events.RUN_SUCCEEDED, "other") and not may_match(on, events.RUN_FAILED, "up")
    assert may_match(Trigger("cloudevent", {"type": events.RUN_FAILED}), events.RUN_FAILED, "any")
    assert may_match(Trigger("cloudevent", {"source": "/knflow/router"}), events.RUN_STARTED, "any")
    assert may_match(Trigger("cloudevent", {"knflowrun": "abc"}), events.RUN_STARTED, "any")  # per run: may match
    assert not may_match(Trigger("cloudevent", {"type": "com.example.push"}), events.RUN_SUCCEEDED, "up")
    assert not may_match(Trigger("cloudevent", {"knflownode": "x"}), events.RUN_SUCCEEDED, "up")  # never carried
    assert not may_match(Trigger("webhook"), events.RUN_SUCCEEDED, "up")


def test_knflow_run_events_takes_auto_or_all(monkeypatch):
    assert Settings().run_events == "auto"
    monkeypatch.setenv("KNFLOW_RUN_EVENTS", "every")
    with pytest.raises(SettingsInvalid, match=r"KNFLOW_RUN_EVENTS has value 'every': expected auto .* or all"):
        Settings()


def heard(stack: EmbeddedStack) -> list[CloudEvent]:
    """What the stack's broker receives of run events (a subscriber of its own: the router does not know it)."""
    got: list[CloudEvent] = []

    async def note(event: CloudEvent) -> None:
        got.append(event)

    for kind in RUN_TYPES:
        stack.broker.subscribe({"type": kind}, note, name="counter")
    return got


async def idle(stack: EmbeddedStack) -> None:
    while stack.broker._tasks or stack.broker.queued:
        await asyncio.sleep(0.01)


async def test_without_a_consumer_no_run_event_reaches_the_broker(tmp_path):
    async with EmbeddedStack(SqliteStore(str(tmp_path / "k.db"))) as stack:
        got = heard(stack)
        runs = [await stack.execute(load_string(UP, "up.yaml")) for _ in range(3)]
        await idle(stack)
        assert [r["status"] for r in runs] == ["succeeded"] * 3
        assert got == [] and not [e for e in stack.broker.unrouted if e.get_type() in RUN_TYPES]


async def test_with_all_every_run_event_is_published(tmp_path, monkeypatch):
    monkeypatch.setenv("KNFLOW_RUN_EVENTS", "all")
    async with EmbeddedStack(SqliteStore(str(tmp_path / "k.db")), settings=Settings()) as stack:
        got = heard(stack)
        run = await stack.execute(load_string(UP, "up.yaml"))
        await idle(stack)
        assert [(e.get_type(), e.get_extension("knflowrun")) for e in got] == [
            (events.RUN_STARTED, run["id"]),
            (events.RUN_SUCCEEDED, run["id"]),
        ]


async def test_a_run_event_trigger_chains_pipelines_with_auto(tmp_path):
    """The consumer is in the catalogue: `up`'s run.succeeded goes out (not its run.started, which no trigger
    reads), and delivered as Knative's broker would, it starts `down`."""
    up, down = load_string(UP, "up.yaml"), load_string(DOWN, "down.yaml")
    async with EmbeddedStack(SqliteStore(str(tmp_path / "k.db")), pipelines=StaticPipelines([up, down])) as stack:
        got = heard(stack)
        started: list[str] = []

        async def ingress(event: CloudEvent) -> None:  # what a Trigger to the router's /events does
            matched = pipelines_for(await stack.pipelines.all(), events.event_to_dict(event))
            started.extend(await stack.router.ingest(event, matched))

        stack.broker.subscribe({"type": events.RUN_SUCCEEDED}, ingress, name="ingress")
        first = await stack.execute(up)
        while not started:
            await asyncio.sleep(0.01)
        chained = await stack.wait(started[0])
        await idle(stack)
        assert chained["pipeline"] == "down" and chained["status"] == "succeeded"
        assert chained["nodes"]["say"]["output"]["message"] == first["id"]
        assert [(e.get_type(), e.get_extension("knflowpipeline")) for e in got] == [(events.RUN_SUCCEEDED, "up")]


async def test_the_run_end_hook_fires_once_per_run_end_and_for_a_cancel(tmp_path):
    async with EmbeddedStack(SqliteStore(str(tmp_path / "k.db"))) as stack:
        ends: list[RunDoc] = []
        stack.router.watch_ends(ends.append)
        done = await stack.execute(load_string(UP, "up.yaml"))
        held = await stack.start(load_string(HOLD, "hold.yaml"))
        await stack.router.cancel(held, by="test")
        cancelled = await stack.wait(held)
        await idle(stack)  # the delay's late result too: it ends nothing again
        assert cancelled["status"] == "cancelled"
        assert [(r["id"], r["status"]) for r in ends] == [(done["id"], "succeeded"), (held, "cancelled")]
        assert all(r["status"] in RUN_FINAL for r in ends)


async def run_subjects(stack: NatsStack) -> dict[str, int]:
    info = await stack.nc.jetstream().stream_info(stack.layout.stream, subjects_filter=f"{stack.layout.prefix}.run.>")
    return dict(info.state.subjects or {})


@pytest.mark.parametrize("mode", ["auto", "all"])
async def test_on_jetstream_run_events_reach_the_stream_only_with_all(nats_server, tmp_path, monkeypatch, mode):  # noqa: F811
    monkeypatch.setenv("KNFLOW_RUN_EVENTS", mode)
    tag = f"re{uuid.uuid4().hex[:8]}"
    layout = StreamLayout(stream=tag.upper(), prefix=tag)
    up = load_string(UP, "up.yaml")
    store = SqliteStore(str(tmp_path / "k.db"))
    async with NatsStack(nats_server.url, store, StaticPipelines([up]), layout=layout, settings=Settings()) as stack:
        router = stack.router
        assert router is not None
        await stack.serve_function("log")
        ended: dict[str, asyncio.Future[str]] = {}
        router.watch_ends(lambda run: ended[run["id"]].set_result(run["status"]))
        for i in range(3):
            run_id = f"{tag}-{i}"
            ended[run_id] = asyncio.get_running_loop().create_future()
            trigger = events.make_event({"type": "com.example.t", "source": "/tests", "id": run_id}, {})
            await router.start_run(up, trigger, run_id=run_id)
            assert await asyncio.wait_for(ended[run_id], 20) == "succeeded"
        subjects = await run_subjects(stack)
    await store.close()
    if mode == "auto":
        assert subjects == {}
    else:
        assert subjects == {f"{tag}.run.up.started": 3, f"{tag}.run.up.succeeded": 3}
