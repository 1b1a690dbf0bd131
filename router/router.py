"""The router, the I/O shell around the pure core: it takes events, asks `router.engine` (and
`router.replay`) what a run's next step is, commits the step to the store and publishes what it won.

State changes first, publishing second (DESIGN.md, Delivery guarantees): a node moves to `scheduled` by
compare-and-set, and only the writer that won publishes its invoke. Nothing is kept in memory between
events, so any replica may handle any event, and a router killed at any point loses nothing.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import re
import time
import uuid
from datetime import datetime, timedelta, UTC
from typing import Any, Protocol, cast
from collections.abc import Callable, Iterable, Sequence

from cloudevents.core.v1.event import CloudEvent
from pydantic import SecretStr

from broker import events
from broker import extensions as ext
from broker import faults, metrics, tracing
from broker.events import error_doc
from broker.errors import KnflowError, PublishError
from functions.blobs import BlobStore, default_store
from router import blobs, engine, node_logs, replay, retention, run_items, run_traces
from router.hops import MAX_HOPS, HopLimit, hops_of
from router.logger import Logger
from router.pipeline import Pipeline
from router.result_keys import SECRET_NAME, ResultKey, ResultRefused, new_key, refused
from router.run_events import RunEventGate, RunEvents
from router.runs import (
    RUN_FINAL,
    SCHEDULED,
    SUCCEEDED,
    ErrorDoc,
    ItemState,
    RerunEntry,
    RunDoc,
    Transition,
    fan_nodes,
    new_run,
    now_iso,
    state_of,
)
from router.runs import apply as apply_transitions
from router.store.base import RunExists, RunNotFound, RunStore, RunUnreadable
from router.triggers import pipelines_for, run_id_for, trigger_kind

log = Logger("knflow.router")  # bound once per logging configuration: the router logs every result
DEFAULT_RETENTION_S = 30 * 86400.0  # router/retention.py DEFAULT_RETENTION

Observer = Callable[[RunDoc, list[Transition]], None]
RunEnded = Callable[[RunDoc], None]


class Publisher(Protocol):
    """Where the router's events go: broker.memory.InMemoryBroker, broker.nats.JetStreamPublisher,
    broker.http_publisher.HttpPublisher. `publish_many` returns once the events are stored (or raises
    PublishError); what it returns (JetStream's acks) the router does not read."""

    async def publish_many(self, events: list[CloudEvent]) -> object: ...


class UnknownPipeline(KnflowError):
    """No pipeline is named `pipeline` (or it has no trigger of the kind asked for)."""

    def __init__(self, message: str, *, pipeline: str | None = None) -> None:
        super().__init__(message, pipeline=pipeline)
        self.pipeline = pipeline


class Pipelines(Protocol):
    async def get(self, name: str) -> Pipeline | None: ...

    async def all(self) -> list[Pipeline]:
        """Every pipeline; the same list object until the catalogue changes (router/run_events.py keeps its
        answers per list)."""


class StaticPipelines:
    """Pipelines known in advance (the embedded default and tests)."""

    def __init__(self, pipelines: Iterable[Pipeline] = ()) -> None:
        self.by_name = {p.name: p for p in pipelines}
        self._all: list[Pipeline] | None = None

    def add(self, pipeline: Pipeline) -> None:
        if self.by_name.get(pipeline.name) is not pipeline:
            self.by_name[pipeline.name] = pipeline
            self._all = None

    async def get(self, name: str) -> Pipeline | None:
        return self.by_name.get(name)

    async def all(self) -> list[Pipeline]:
        if self._all is None:
            self._all = list(self.by_name.values())
        return self._all


def build_router(
    settings: RouterSettings | None,
    store: RunStore,
    publisher: Publisher,
    pipelines: Pipelines,
    *,
    observer: Observer | None = None,
    event_log: EventLog | None = None,
    blobs: BlobStore | None = None,
    invokes_in_process: bool = False,
) -> Router:
    """The one place a router is built (`knflow serve router`, `knflow dev`, the embedded and NATS stacks):
    the store, publisher and pipelines a stack has, and what the settings say (None: the defaults)."""
    return Router(
        store,
        publisher,
        pipelines,
        observer=observer,
        event_log=event_log,
        blobs=blobs,
        invokes_in_process=invokes_in_process,
        max_hops=MAX_HOPS if settings is None else settings.max_hops,
        retention_s=DEFAULT_RETENTION_S if settings is None else settings.retention_s,
        result_key=None if settings is None or settings.result_key is None else settings.result_key.get_secret_value(),
        run_events="auto" if settings is None else settings.run_events,
    )


def iso_before(seconds: float) -> str:
    then = datetime.now(UTC) - timedelta(seconds=seconds)
    return then.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_run_id() -> str:
    return uuid.uuid4().hex[:16]


class EventLog(Protocol):
    """Where the broker keeps external events for replay, and dead letters for the dashboard
    (broker.event_log.JetStreamEventLog)."""

    async def record(self, event: CloudEvent) -> None: ...

    async def record_dead_letter(self, event: CloudEvent) -> None: ...

    async def read(
        self,
        since: datetime,
        event_type: str | None = None,
        max_events: int = ...,
        batch: int = ...,
        kind: str = ...,
        idle_s: float = ...,
    ) -> list[CloudEvent]: ...


class RouterSettings(Protocol):
    """What the router reads from the settings (knflow.settings.Settings has it)."""

    max_hops: int
    result_key: SecretStr | None
    run_events: RunEvents

    @property
    def retention_s(self) -> float: ...


class Router:
    """One router over a store, a publisher and the pipelines; build it with `build_router`.

    `observer` is told of each set of transitions this router won; `event_log` keeps external events
    where the broker can (None: no event replay); `blobs` holds large payloads (None: KNFLOW_BLOB_URL,
    read on first use); an event `max_hops` run events deep is refused (router/hops.py).

    Invokes carry a result secret under `result_key` (router/result_keys.py; None: the key the store keeps,
    read once); a result or dead letter without its invoke's secret is refused, logged and counted in
    `refused_results` and `refused_dead_letters`.

    `run_events` says which `dev.knflow.run.*` events go to the publisher (router/run_events.py: `auto`, those
    a pipeline's trigger may consume; `all`). Code in the same process learns of run ends from `watch_ends`.

    `invokes_in_process`: every invoke goes to a function in this process (the embedded stack), so an invoke
    over the blob threshold is handed over as it is, not written to the blob store first (that write is for
    what crosses a process: a message's size limit; for a 10,000-item list it was a third of a run's memory).
    """

    def __init__(
        self,
        store: RunStore,
        publisher: Publisher,
        pipelines: Pipelines,
        *,
        observer: Observer | None = None,
        event_log: EventLog | None = None,
        blobs: BlobStore | None = None,
        invokes_in_process: bool = False,
        max_hops: int = MAX_HOPS,
        result_key: str | None = None,
        retention_s: float | None = None,
        run_events: RunEvents = "auto",
    ) -> None:
        self.store = metrics.timed_store(store)  # knflow_store_operation_seconds
        self.publisher = publisher
        self.pipelines = pipelines
        self.observer = observer
        self.event_log = event_log
        self.blobs = blobs
        self.invokes_in_process = invokes_in_process
        self.max_hops = max_hops
        self.retention_s = DEFAULT_RETENTION_S if retention_s is None else retention_s  # a pipeline's own wins
        self._pruned_at = 0.0  # when this router last deleted expired runs (time.monotonic)
        self._result_key = None if result_key is None else ResultKey(result_key)  # bad KNFLOW_RESULT_KEY: here
        self.refused_results = 0  # results without their invoke's knflowtoken, dropped
        self.refused_dead_letters = 0  # the same for dead letters
        self.logs_failed = 0  # node log batches that could not be read or stored (the results still applied)
        self.run_events = RunEventGate(run_events, pipelines)
        self._end_watchers: list[RunEnded] = []

    def watch_ends(self, callback: RunEnded) -> None:
        """Call `callback` with the run document each time this router ends a run (succeeded, failed) or
        cancels one, once the step is stored, whether or not a run event is published for it (in-process
        waiters: knflow/local.py, bench/drive.py). A run another router ends is not seen here."""
        self._end_watchers.append(callback)

    def _ended(self, run: RunDoc) -> None:
        for callback in self._end_watchers:
            callback(run)

    async def result_key(self) -> ResultKey:
        """The key invokes are signed with: KNFLOW_RESULT_KEY, or the one the store keeps (read once, created
        by the first router of the store)."""
        if self._result_key is None:
            self._result_key = ResultKey(await self.store.get_or_create_secret(SECRET_NAME, new_key()))
        return self._result_key

    async def ingest(self, event: CloudEvent, pipelines: list[Pipeline], replay_id: str | None = None) -> list[str]:
        """Start the runs an external event triggers (ids derived from the event, so a redelivery finds
        its runs); the event is kept in the broker's log first, where there is one."""
        hops = hops_of(events.event_to_dict(event))
        if pipelines and hops >= self.max_hops:
            metrics.router_event("external", "refused")
            raise HopLimit(
                f"event '{event.get_id()}' ({event.get_type()}) is {hops} pipeline hops deep; "
                f"the limit is {self.max_hops} (KNFLOW_MAX_HOPS): "
                "pipelines that start each other through run events form a loop",
                event_id=event.get_id(),
                hops=hops,
            )
        metrics.router_event("external", "applied" if pipelines else "unmatched")
        if self.event_log is not None and replay_id is None:
            await self.event_log.record(event)
        runs = []
        for p in pipelines:
            if p.status != "active":  # a paused pipeline's (or a draft's) cron ticks and events: counted, logged
                kind = trigger_kind(events.event_to_dict(event))
                metrics.trigger_skipped(p.name, kind, p.status)
                log.info("trigger skipped", pipeline=p.name, status=p.status, trigger=kind, event_id=event.get_id())
                continue
            key = event.get_id() if replay_id is None else f"{event.get_id()}#{replay_id}"
            run = await self.start_run(p, event, run_id=run_id_for(p.name, event.get_source(), key))
            runs.append(run["id"])
        return runs

    async def replay_events(
        self, all_pipelines: list[Pipeline], since_s: float, event_type: str | None = None
    ) -> list[dict[str, Any]]:
        """Deliver the external events the broker kept for the last `since_s` through the triggers again, once each."""
        if self.event_log is None:
            raise replay.ReplayRefused(
                "event replay needs the NATS JetStream broker (it keeps the events); this router has none"
            )
        from broker.event_log import since_from_seconds

        replay_id = new_run_id()
        report = []
        for event in await self.event_log.read(since_from_seconds(since_s), event_type):
            matched = pipelines_for(all_pipelines, events.event_to_dict(event))
            report.append(
                {
                    "event": event.get_id(),
                    "type": event.get_type(),
                    "runs": await self.ingest(event, matched, replay_id),
                }
            )
        log.info("events replayed", events=len(report), since_s=since_s, type=event_type, replay=replay_id)
        return report

    async def pipeline(self, name: str) -> Pipeline:
        p = await self.pipelines.get(name)
        if p is None:
            raise UnknownPipeline(f"unknown pipeline '{name}'", pipeline=name)
        return p

    async def start_run(
        self, pipeline: Pipeline, trigger: CloudEvent | dict[str, Any], run_id: str | None = None
    ) -> RunDoc:
        """Store the run with its trigger event, then schedule its source nodes."""
        trigger_doc = events.event_to_dict(trigger) if isinstance(trigger, CloudEvent) else trigger
        run = new_run(run_id or new_run_id(), pipeline.name, pipeline.run_nodes, trigger_doc, dict(pipeline.variables))
        if tracing.ON and (trace := run_traces.new_trace(pipeline.name, trigger_doc)):
            run["trace"] = trace
        run["expires_at"] = retention.expires_at(run["created_at"], pipeline.retention_s or self.retention_s)
        # the run is stored as its first advance leaves it (one write, not two), and `run.started` goes out
        # with the first invokes (one publish, not two): the same states and events, in the same order
        step = engine.plan(pipeline, run, now_iso())
        first, won, run_won = apply_transitions(run, step.transitions, step.run_change)
        try:
            await self.store.create_run(first)
        except RunExists:
            # the same trigger delivered again: finish what an earlier delivery may have left undone
            log.info("run already exists; trigger redelivered", run=run["id"], pipeline=pipeline.name)
            stored = await self.store.get_run(run["id"])
            if stored is None:  # deleted since, or not yet readable where the store reads: the sender retries
                raise RunUnreadable(
                    f"run '{run['id']}' of pipeline '{pipeline.name}' exists but cannot be read back; try again",
                    run_id=run["id"],
                ) from None
            return await self.advance(pipeline, stored)
        log.info("run started", run=run["id"], pipeline=pipeline.name, trigger=trigger_doc.get("type"))
        metrics.run_started(pipeline.name, trigger_kind(trigger_doc))
        before = []
        if await self.run_events.wanted(events.RUN_STARTED, pipeline.name):
            before.append(events.run_event(events.RUN_STARTED, run["id"], pipeline.name, {"trigger": trigger_doc}))
        try:
            return await self._publish_step(pipeline, first, step, won, run_won, before)
        except PublishError as exc:  # the run is stored, which is what ingress promises; the sweeper goes on
            log.warning(
                "run stored, publishing deferred to the sweeper", run=run["id"], pipeline=pipeline.name, error=str(exc)
            )
            return first

    async def on_result(self, event: CloudEvent) -> None:
        """Apply a `dev.knflow.node.*` reply at most once, then advance the run; one without its invoke's
        `knflowtoken` is dropped (logged and counted: a broker's retry would not make it right)."""
        await self.take_result(event)

    async def take_result(self, event: CloudEvent) -> ResultRefused | None:
        """`on_result`, returning why the result was refused (not raised: the caller chooses), or None."""
        addr = events.address(event)
        if refusal := await self._refusal(event, addr, "result"):
            return refusal
        raw = event.get_data()
        data = raw if isinstance(raw, dict) else {}
        if event.get_type() == events.NODE_LOGS:  # a failed try's lines, which no reply carries
            await self.store_logs(addr, data.get("logs"), event.get_id())
            return None
        await self._finish_node(addr, data, event.get_type() == events.NODE_SUCCEEDED, event.get_id(), "result")
        return None

    async def on_dead_letter(self, event: CloudEvent) -> None:
        """An invoke whose retries ran out (stamped `knativeerror*`): the node fails with the last error.
        The invoke carries its `knflowtoken`; a dead letter without it is dropped, logged and counted."""
        await self.take_dead_letter(event)

    async def take_dead_letter(self, event: CloudEvent) -> ResultRefused | None:
        """`on_dead_letter`, returning why the dead letter was refused (not raised), or None."""
        addr = events.address(event)
        if refusal := await self._refusal(event, addr, "dead letter"):
            return refusal
        if self.event_log is not None:
            try:
                await self.event_log.record_dead_letter(event)
            except KnflowError as exc:  # only the dashboard's list misses it: the node still fails below
                log.warning("dead letter not kept for the dashboard", event_id=event.get_id(), error=exc.message)
        code, reason, error, times = dead_letter_reason(event)
        err = error.copy() if error else error_doc("DeliveryFailed", reason)
        err.setdefault("message", reason)
        if code is not None:
            err["http_status"] = code
        invoke = event.get_data()  # knflow's dispatchers add the last try's node log lines to its data
        logs = invoke.get("logs") if isinstance(invoke, dict) else None
        await self._finish_node(addr, {"error": err, **times, "logs": logs}, False, event.get_id(), "dead_letter")
        return None

    async def _refusal(self, event: CloudEvent, addr: events.Address, what: str) -> ResultRefused | None:
        """None if `event` carries its invoke's token; else count it, log it (without any token) and say why."""
        key = self._result_key or await self.result_key()
        reason = key.refusal(event, addr)
        if reason is None:
            return None
        metrics.router_event("result" if what == "result" else "dead_letter", "refused")
        if what == "result":
            self.refused_results += 1
        else:
            self.refused_dead_letters += 1
        log.warning(
            f"{what} refused: {ext.TOKEN} {reason}",
            run=addr.run_id,
            pipeline=addr.pipeline,
            node=addr.node,
            attempt=addr.attempt,
            event_id=event.get_id(),
            type=event.get_type(),
            source=event.get_source(),
        )
        return refused(event, reason, what)

    async def store_logs(self, addr: events.Address, raw: Any, event_id: str) -> None:
        """Store a try's node log lines (router/node_logs.py) under its node and try; lines that cannot be
        read or stored are logged and counted (`logs_failed`), never a reason to hold up a result."""
        if raw is None:
            return
        try:
            batch = node_logs.batch_of(raw)
            if batch.lines or batch.dropped:
                await self.store.append_logs(addr.run_id, addr.node, addr.tries, batch)
        except Exception as exc:  # the store's own errors included: the result still applies
            self.logs_failed += 1
            log.warning(
                "node log lines not stored",
                run=addr.run_id,
                pipeline=addr.pipeline,
                node=addr.node,
                attempt=addr.tries,
                event_id=event_id,
                error=f"{type(exc).__name__}: {exc}",
            )

    async def _finish_node(
        self, addr: events.Address, data: dict[str, Any], succeeded: bool, event_id: str, kind: str
    ) -> None:
        faults.crash_point("result-received")
        await self.store_logs(addr, data.get("logs"), event_id)  # before the result: a reader of the result finds them
        ctx = {
            "run": addr.run_id,
            "pipeline": addr.pipeline,
            "node": addr.node,
            "attempt": addr.attempt,
            "event_id": event_id,
        }
        transition = engine.node_result(addr.node, addr.attempt, data, succeeded, now_iso(), addr.tries)
        try:  # no read first: the compare-and-set says all (an unknown node loses, an unknown run raises)
            committed = await self.store.commit(addr.run_id, [transition])
        except RunNotFound:
            metrics.router_event(kind, "unknown")
            log.warning("result for unknown run ignored", **ctx)
            return
        run, won, _ = committed
        state = _state_of(run, addr.node, committed.items)
        _count_result(kind, run, state, addr, won[0], succeeded)
        if not won[0]:
            if state is None:
                log.warning("result for unknown node ignored", **ctx)
                return
            log.info(
                "duplicate or late result ignored", node_status=state["status"], node_attempt=state["attempt"], **ctx
            )
            return
        faults.crash_point("result-stored")
        self._observe(run, [transition])
        if tracing.ON:
            run_traces.node_ended(run, state, addr, succeeded, data)
        if succeeded:
            log.info("node succeeded", duration_ms=data.get("duration_ms"), **ctx)
        else:
            log.info("node failed", error=(data.get("error") or {}).get("message"), **ctx)
        await self.advance(await self.pipeline(run["pipeline"]), run)

    async def advance(self, pipeline: Pipeline, run: RunDoc) -> RunDoc:
        """Move every node that can move; publish the invokes this writer won; end the run when done."""
        while True:
            view = await run_items.loaded_view(pipeline, run, self.store)
            step = engine.plan(pipeline, await blobs.resolved_view(pipeline, view, self._blobs()), now_iso())
            if not step:
                return run
            run, won, run_won = await self.store.commit(run["id"], step.transitions, step.run_change)
            faults.crash_point("step-stored")
            if run["status"] in RUN_FINAL or (all(won) and not step.joined):
                return await self._publish_step(pipeline, run, step, won, run_won)
            await self._publish_step(pipeline, run, step, won, run_won)
            # another writer moved part of this run meanwhile, or a fan-out node joined (its successors read
            # its items' outputs, loaded for the next step): decide again from the stored state

    async def _publish_step(
        self,
        pipeline: Pipeline,
        run: RunDoc,
        step: engine.Step,
        won: list[bool],
        run_won: bool,
        before: Sequence[CloudEvent] = (),
    ) -> RunDoc:
        """After a step was stored: tell the observer, publish the invokes this writer won (after `before`)
        and the run's end if this writer ended it."""
        winners = [t for t, ok in zip(step.transitions, won, strict=True) if ok]
        self._observe(run, winners)
        out = list(before)
        invokes = [step.invokes[t.node] for t in winners if t.node in step.invokes]
        if invokes:
            key = self._result_key or await self.result_key()
            out += [_invoke_event(i, key, run) for i in await self._offload(invokes)]
        if run_won:
            kind = events.RUN_SUCCEEDED if run["status"] == SUCCEEDED else events.RUN_FAILED
            if await self.run_events.wanted(kind, run["pipeline"]):
                generation = len(run.get("replays") or [])
                out.append(
                    events.run_event(
                        kind,
                        run["id"],
                        run["pipeline"],
                        {"status": run["status"], "error": run.get("error")},
                        generation,
                        hops=hops_of(run.get("trigger") or {}) + 1,
                    )
                )
            run_error = run.get("error")
            metrics.run_finished(run["pipeline"], run["status"], run["created_at"])
            log.info(
                f"run {run['status']}",
                run=run["id"],
                pipeline=run["pipeline"],
                error=run_error.get("message") if run_error else None,
            )
        if tracing.ON:  # the run's events in its trace; the spans of what this step ended
            out = run_traces.stamp(run, out)
            run_traces.step_ended(pipeline, run, winners, run_won)
        try:
            if out:
                await self.publisher.publish_many(out)
                faults.crash_point("step-published")
        finally:  # the run's end is stored: its waiters hear of it even when the publish failed
            if run_won:
                self._ended(run)
        return run

    async def redrive(self, run_id: str, from_node: str | None = None, by: str | None = None) -> RunDoc:
        """Failed, cancelled and never-finished nodes (and `from_node` onwards) run again; see router.replay."""
        run = await self._get(run_id)
        pipeline = await self.pipeline(run["pipeline"])
        transitions, change = replay.plan_redrive(pipeline, run, now_iso(), from_node, by)
        if tracing.ON and (trace := run_traces.new_trace(pipeline.name, run.get("trigger"), run, "redrive")):
            change.fields["trace"] = trace  # a trace of its own, linked to the one before
        run, won, run_won = await self.store.commit(run_id, transitions, change)
        if not run_won:
            raise replay.ReplayRefused(f"run '{run_id}' changed while it was being redriven; try again", run_id=run_id)
        self._observe(run, [t for t, ok in zip(transitions, won, strict=True) if ok])
        log.info(
            "run redriven",
            run=run_id,
            pipeline=run["pipeline"],
            reset=[t.node for t in transitions],
            by=by,
            from_node=from_node,
        )
        return await self.advance(pipeline, run)

    async def rerun(self, run_id: str, by: str | None = None, data: Any = replay.SAME_DATA) -> RunDoc:
        """A new run from the old run's stored trigger event (its `data` replaced by `data` when given),
        linked by `replay_of`."""
        old = await self._get(run_id)
        pipeline = await self.pipeline(old["pipeline"])
        trigger = replay.rerun_trigger(old, data)
        run = new_run(new_run_id(), pipeline.name, pipeline.run_nodes, trigger, dict(pipeline.variables))
        run["replay_of"] = run_id
        entry: RerunEntry = {"at": now_iso(), "by": by, "kind": "rerun", "of": run_id}
        if data is not replay.SAME_DATA:
            entry["edited"] = True
        run["replays"] = [entry]
        if tracing.ON and (trace := run_traces.new_trace(pipeline.name, trigger, old)):
            run["trace"] = trace
        run["expires_at"] = retention.expires_at(run["created_at"], pipeline.retention_s or self.retention_s)
        await self.store.create_run(run)
        log.info("run re-run", run=run["id"], replay_of=run_id, pipeline=pipeline.name, by=by)
        metrics.run_started(pipeline.name, "rerun")
        return await self.advance(pipeline, run)

    async def cancel(self, run_id: str, by: str | None = None) -> RunDoc:
        run = await self._get(run_id)
        transitions, change = replay.plan_cancel(run, now_iso(), by)
        run, won, run_won = await self.store.commit(run_id, transitions, change)
        if not run_won:
            raise replay.ReplayRefused(f"run '{run_id}' changed while it was being cancelled; try again", run_id=run_id)
        self._observe(run, [t for t, ok in zip(transitions, won, strict=True) if ok])
        log.info("run cancelled", run=run_id, pipeline=run["pipeline"], by=by)
        metrics.run_finished(run["pipeline"], run["status"], run["created_at"])
        if tracing.ON:
            run_traces.run_ended(run)
        try:
            if await self.run_events.wanted(events.RUN_CANCELLED, run["pipeline"]):
                generation = len(run.get("replays") or [])
                ended = [
                    events.run_event(
                        events.RUN_CANCELLED, run_id, run["pipeline"], {"status": run["status"], "by": by}, generation
                    )
                ]
                await self.publisher.publish_many(run_traces.stamp(run, ended) if tracing.ON else ended)
        finally:
            self._ended(run)
        return run

    async def sweep_forever(self, interval_s: float, older_than_s: float) -> None:
        """Sweep every `interval_s` (a task of each router replica; duplicates are dropped by id), and delete
        the runs that expired once an hour (router/retention.py)."""
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.sweep(older_than_s)
                if time.monotonic() - self._pruned_at >= retention.PRUNE_INTERVAL_S:
                    self._pruned_at = time.monotonic()
                    await self.prune()
            except Exception as exc:  # the store or the broker is down: try again next time
                log.warning("sweep failed", error=f"{type(exc).__name__}: {exc}")

    async def prune(self, older_than_s: float | None = None, dry_run: bool = False) -> list[RunDoc]:
        """Delete runs with their node logs, items and blobs: those that expired (their pipeline's or this
        router's retention), or with `older_than_s` those created longer ago than that (`prune_runs`)."""
        return await prune_runs(self.store, self._blobs(), self.retention_s, older_than_s, dry_run)

    async def sweep(self, older_than_s: float, limit: int = 1000) -> int:
        """Recover what a crash left: advance running runs and publish again the invokes of nodes that stayed
        `scheduled` for `older_than_s` (same ids: JetStream and the router drop duplicates). Returns the
        number of invokes published again."""
        cutoff = iso_before(older_than_s)
        republished = 0
        for run in await self.store.list_runs(status="running", limit=limit):
            if run["created_at"] >= cutoff:
                continue
            pipeline = await self.pipelines.get(run["pipeline"])
            if pipeline is None:
                continue
            run = await self.advance(pipeline, run)
            if fan_nodes(run) and run["status"] not in RUN_FINAL:  # the items that stayed scheduled: in the full run
                run = await self._get(run["id"])
            view = await run_items.loaded_view(pipeline, run, self.store, statuses=(SCHEDULED,))
            view = await blobs.resolved_view(pipeline, view, self._blobs(), statuses=(SCHEDULED,))
            stale = await self._offload(replay.stale_invokes(pipeline, view, now_iso(), cutoff))
            if stale:
                key = await self.result_key()
                await self.publisher.publish_many([_invoke_event(i, key, run) for i in stale])
                republished += len(stale)
                metrics.sweeper_republished(len(stale))
                log.warning(
                    "invokes published again", run=run["id"], pipeline=run["pipeline"], nodes=[i.node for i in stale]
                )
        return republished

    async def replay_many(
        self,
        pipeline: str | None,
        status: str | None,
        since_s: float | None,
        new_run: bool,
        by: str | None,
        limit: int = 1000,
    ) -> list[dict[str, Any]]:
        """Redrive (or re-run) every run that matches; one report per run, failures included."""
        cutoff = iso_before(since_s) if since_s is not None else ""
        report = []
        for run in await self.store.list_runs(pipeline=pipeline, status=status, limit=limit):
            if run["created_at"] < cutoff:
                continue
            try:
                done = await (self.rerun(run["id"], by) if new_run else self.redrive(run["id"], None, by))
                report.append({"run": run["id"], "replay": done["id"], "status": done["status"]})
            except KnflowError as exc:
                report.append({"run": run["id"], "error": exc.message})
        return report

    async def _get(self, run_id: str) -> RunDoc:
        run = await self.store.get_run(run_id)
        if run is None:
            raise RunNotFound(f"run '{run_id}' not found", run_id=run_id)
        return run

    def blob_store(self) -> BlobStore:
        """The blob store of large payloads (KNFLOW_BLOB_URL when none was given)."""
        return self._blobs()

    async def _offload(self, invokes: list[engine.Invoke]) -> list[engine.Invoke]:
        """The invokes as they are published: over the threshold in the blob store, unless they stay in process."""
        return invokes if self.invokes_in_process else await blobs.offload_invokes(self._blobs(), invokes)

    def _blobs(self) -> BlobStore:
        if self.blobs is None:
            self.blobs = default_store()
        return self.blobs

    def _observe(self, run: RunDoc, transitions: list[Transition]) -> None:
        if self.observer is not None and transitions:
            self.observer(run, transitions)


def _state_of(run: RunDoc, key: str, items: dict[str, ItemState]) -> ItemState | None:
    """The state `key` names after a commit: a node's, or an item's (`gen[2]`), which the light run that
    `commit` returns does not hold (its node has the counters) but `Committed.items` does: no read."""
    return items.get(key) or state_of(run, key)


def _count_result(
    kind: str, run: RunDoc, state: ItemState | None, addr: events.Address, won: bool, succeeded: bool
) -> None:
    """knflow_router_events_total by outcome; for one applied, the node's (or item's: `state`) duration
    (and a dead letter)."""
    if not metrics.enabled():
        return
    if state is None:
        outcome = "unknown"
    elif not won:  # the same attempt's result again, or one for an attempt the node has moved past
        outcome = "duplicate" if state.get("attempt") in (addr.attempt, addr.tries) else "late"
    else:
        outcome = "applied"
        metrics.node_finished(run["pipeline"], addr.node, addr.function, succeeded, state.get("queued_at"))
        if kind == "dead_letter":
            metrics.dead_letter(run["pipeline"], addr.node, addr.function)
    metrics.router_event(kind, outcome)


async def prune_runs(
    store: RunStore,
    blob_store: BlobStore,
    retention_s: float,
    older_than_s: float | None = None,
    dry_run: bool = False,
    batch: int = 1000,
) -> list[RunDoc]:
    """Delete runs with their node logs, items and blobs, `batch` at a time until none is left: those that
    expired (a run stored before `expires_at` existed: created more than `retention_s` ago), or with
    `older_than_s` those created longer ago than that. Returns the runs deleted (with `dry_run`: that would
    be, up to 100,000)."""
    now = now_iso()
    expired, undated, created = (
        (now, iso_before(retention_s), None) if older_than_s is None else (None, None, iso_before(older_than_s))
    )
    if dry_run:
        return await store.prune_runs(expired, undated, created, dry_run=True, limit=100_000)
    deleted: list[RunDoc] = []
    while True:
        runs = await store.prune_runs(expired, undated, created, limit=batch)
        for run in runs:
            await blob_store.delete_run(run["id"])
        deleted += runs
        if len(runs) < batch:
            break
    if deleted:
        log.info("runs deleted", runs=len(deleted), older_than_s=older_than_s, retention_s=retention_s)
    return deleted


def _invoke_event(i: engine.Invoke, key: ResultKey, run: RunDoc) -> CloudEvent:
    """The invoke's event, with its result secret (the HMAC of its id: once per invoke published) and, with
    tracing on, the context of its node attempt's span."""
    return events.invoke_event(
        run_id=i.run_id,
        pipeline=i.pipeline,
        node=i.node,
        attempt=i.attempt,
        function=i.function,
        inputs=i.inputs,
        config=i.config,
        retry=i.retry,
        timeout_s=i.timeout_s,
        token=key.token(events.invoke_id(i.run_id, i.node, i.attempt)),
        traceparent=run_traces.node_traceparent(run, i.node, i.attempt) if tracing.ON else None,
    )


_TIMES = ("started_at", "finished_at", "duration_ms")
_MESSAGE = re.compile(r'"message":\s*"((?:[^"\\]|\\.)*)"')
_TYPE = re.compile(r'"type":\s*"((?:[^"\\]|\\.)*)"')


def dead_letter_reason(event: CloudEvent) -> tuple[int | None, str, ErrorDoc | None, dict[str, Any]]:
    """Knative's `knativeerrorcode`, and `knativeerrordata` (base64 of the last response body; a knflow
    function answers `{"error": {...}, "started_at", "finished_at", "duration_ms"}`), as (HTTP status, reason,
    error, the try's times); where the extension cut that body, knflow's dispatchers put it whole in the dead
    letter's data as `failure` (broker/delivery.py). The error is the body's, as the function sent it (not
    checked further)."""
    raw_code = str(event.get_extension(ext.ERROR_CODE) or "")
    code = int(raw_code) if raw_code.isascii() and raw_code.isdigit() else None
    raw = event.get_extension(ext.ERROR_DATA) or ""
    try:
        body = base64.b64decode(raw, validate=True).decode("utf-8", "replace")
    except (binascii.Error, ValueError):
        body = str(raw)
    invoke = event.get_data()  # knflow's dispatchers: the body whole, where the extension cut it
    if isinstance(invoke, dict) and isinstance(invoke.get("failure"), dict):
        body = json.dumps(invoke["failure"])
    error: ErrorDoc | None = None
    times: dict[str, Any] = {}
    try:
        parsed = json.loads(body)
        if isinstance(parsed, dict) and isinstance(parsed.get("error"), dict):
            error = cast(ErrorDoc, parsed["error"])
            times = {k: parsed[k] for k in _TIMES if isinstance(parsed.get(k), (str, int, float))}
        elif isinstance(parsed, dict) and "message" in parsed and "type" in parsed:
            error = cast(ErrorDoc, parsed)
    except json.JSONDecodeError:  # cut at Knative's 1,024 characters: keep what can be read
        found = _MESSAGE.search(body)
        if found:
            error = {"type": (_TYPE.search(body) or found).group(1), "message": found.group(1), "detail": "(truncated)"}
    dest = event.get_extension(ext.ERROR_DEST) or "the subscriber"
    reason = (error.get("message") if error else None) or (
        f"delivery to {dest} failed with HTTP {code or '?'}: {body[:200] or 'no body'}"
    )
    return code, reason, error, times
