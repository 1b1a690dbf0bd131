"""The embedded default: in-memory broker, a run store (SQLite by default), functions in-process.

The same router and function code as in production; only publishing and delivery differ.
"""

from __future__ import annotations

import asyncio
from typing import Any

from cloudevents.core.v1.event import CloudEvent

from broker import events
from broker import extensions as ext
from broker.memory import NO_RETRY, InMemoryBroker
from broker.retry import Retry
from functions.handler import in_process
from functions.registry import REGISTRY, Registry, close_builtin_clients
from router.router import Observer, Pipelines, RouterSettings, StaticPipelines, build_router, new_run_id
from router.pipeline import Pipeline
from router.runs import RUNNING, RunDoc
from router.store.base import RunNotFound, RunStore


def function_retry(registry: Registry, event: CloudEvent) -> Retry:
    """The retries of the function an invoke is for (the broker lays the node's own, `knflowretry`, over it)."""
    spec = registry.find(str(event.get_extension(ext.FUNCTION)))
    return spec.traits.retry if spec is not None else NO_RETRY


class EmbeddedStack:
    """`async with EmbeddedStack(store) as stack: run = await stack.execute(pipeline, data)`.

    `settings` (knflow.settings.Settings) sets up the router; None: the defaults."""

    def __init__(
        self,
        store: RunStore,
        registry: Registry = REGISTRY,
        observer: Observer | None = None,
        pipelines: Pipelines | None = None,
        settings: RouterSettings | None = None,
    ) -> None:
        self.store = store
        self.registry = registry
        self.broker = InMemoryBroker()
        self.pipelines = pipelines or StaticPipelines()
        # every invoke goes to `in_process` below: one over the blob threshold is handed over as it is
        self.router = build_router(
            settings, store, self.broker, self.pipelines, observer=observer, invokes_in_process=True
        )
        self._waiting: dict[str, asyncio.Future] = {}
        self.broker.subscribe(
            {"type": events.INVOKE},
            in_process(registry),
            retry=lambda event: function_retry(registry, event),
            dead_letter=self.router.on_dead_letter,
            name="functions",
        )
        for kind in events.RESULT_TYPES:
            self.broker.subscribe({"type": kind}, self.router.on_result, name="router")
        self.router.watch_ends(self._run_ended)

    async def __aenter__(self) -> EmbeddedStack:
        from functions.blobs import default_store

        default_store()  # a bad KNFLOW_BLOB_* setting stops here, before any run starts
        await self.router.result_key()  # read (or created) once, before the first invoke
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.broker.close()
        await close_builtin_clients()
        await self.store.close()

    def add(self, pipeline: Pipeline) -> None:
        if isinstance(self.pipelines, StaticPipelines):
            self.pipelines.add(pipeline)

    async def start(
        self, pipeline: Pipeline, data: Any = None, event: CloudEvent | None = None, run_id: str | None = None
    ) -> str:
        """Start a run; returns its id at once."""
        self.add(pipeline)
        run_id = run_id or new_run_id()
        self._waiting[run_id] = asyncio.get_running_loop().create_future()
        trigger = event or events.make_event(
            {
                "type": "dev.knflow.manual",
                "source": "/knflow/cli",
                "id": f"{run_id}:trigger",
                "datacontenttype": events.JSON,
            },
            data if data is not None else {},
        )
        run = await self.router.start_run(pipeline, trigger, run_id=run_id)
        fut = self._waiting.get(run_id)
        if run["status"] != RUNNING and fut is not None and not fut.done():  # a keyed run that had ended already
            fut.set_result(run["status"])
        return run_id

    async def redrive(
        self, run_id: str, from_node: str | None = None, new_run: bool = False, by: str | None = None
    ) -> str:
        """Redrive a stored run in place (or re-run it as a new run); returns the id of the run to wait for."""
        run = await (self.router.rerun(run_id, by) if new_run else self.router.redrive(run_id, from_node, by))
        return run["id"]

    async def wait(self, run_id: str) -> RunDoc:
        """The run once it has ended (a run that ended before the call is returned at once); RunNotFound if
        the store has no such run."""
        fut = self._waiting.get(run_id)
        if fut is None:
            fut = self._waiting[run_id] = asyncio.get_running_loop().create_future()
            run = await self.store.get_run(run_id)
            if run is None or run["status"] != RUNNING:
                self._waiting.pop(run_id, None)
                return self._found(run_id, run)
        await fut
        self._waiting.pop(run_id, None)
        return self._found(run_id, await self.store.get_run(run_id))

    @staticmethod
    def _found(run_id: str, run: RunDoc | None) -> RunDoc:
        if run is None:
            raise RunNotFound(f"run '{run_id}' is not in the stack's store", run_id=run_id)
        return run

    async def execute(self, pipeline: Pipeline, data: Any = None, event: CloudEvent | None = None) -> RunDoc:
        return await self.wait(await self.start(pipeline, data, event))

    def _run_ended(self, run: RunDoc) -> None:
        """The router's run-end hook (no run event needed: KNFLOW_RUN_EVENTS auto publishes none without a
        consumer). Popped: a run started and never waited for leaves nothing behind (`wait` then reads the store)."""
        fut = self._waiting.pop(run["id"], None)
        if fut is not None and not fut.done():
            fut.set_result(run["status"])
