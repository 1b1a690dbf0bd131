"""The router and the functions on a real NATS JetStream broker (`knflow dev`, `knflow serve ...`).

- the router publishes invokes and run events to the stream and consumes results through the durable
  consumer `router-results` (several router processes share it: each result goes to one of them);
- each function gets a dispatcher (durable consumer `fn-NAME`) that delivers its invokes in-process or
  to the function's HTTP service, retries as the function's `Retry` says, and dead-letters to the router.
"""

from __future__ import annotations

from typing import Any

import nats
import structlog
from nats.aio.client import Client as NATS

from broker.errors import KnflowError
from broker.event_log import JetStreamEventLog
from broker.nats import JetStreamPublisher, StreamLayout
from broker.nats_dispatcher import Dispatcher
from broker.redact import mask_url, redact
from broker.retry import Retry
from functions.handler import in_process
from functions.registry import REGISTRY, Registry
from router.router import Observer, Pipelines, Router, RouterSettings, StaticPipelines, build_router
from router.store.base import RunStore

log = structlog.get_logger("knflow.stack")

# a result the router cannot apply now (its store is down) is retried, patiently, never dropped
RESULT_RETRY = Retry(retries=100_000, backoff="exponential", delay_s=0.05, max_delay_s=2.0)
RESULT_TIMEOUT_S = 10.0


async def connect(url: str, name: str) -> NATS:
    async def on_error(exc: Exception) -> None:
        log.warning("nats connection error", url=mask_url(url), error=redact(str(exc)))

    return await nats.connect(
        url, name=name, max_reconnect_attempts=-1, reconnect_time_wait=0.25, error_cb=on_error, connect_timeout=5
    )


class NatsStack:
    """`async with NatsStack(url, store, pipelines) as stack:` router + result consumer (+ functions).

    Without a store there is no router (a dispatcher: `knflow serve dispatcher`): its functions'
    dead letters go to the URL `serve_function` is given. `settings` (knflow.settings.Settings) sets up
    the router; None: the defaults."""

    def __init__(
        self,
        nats_url: str,
        store: RunStore | None = None,
        pipelines: Pipelines | None = None,
        *,
        registry: Registry = REGISTRY,
        layout: StreamLayout | None = None,
        route_results: bool = True,
        observer: Observer | None = None,
        batch_size: int = 200,
        settings: RouterSettings | None = None,
    ) -> None:
        if store is None and route_results:
            raise KnflowError("NatsStack without a store has no router to route results to: pass route_results=False")
        self.nats_url = nats_url
        self.store = store
        self.pipelines = pipelines or StaticPipelines()
        self.settings = settings
        self.registry = registry
        self.layout = layout or StreamLayout()
        self.route_results = route_results
        self.observer = observer
        self.batch_size = batch_size
        self.nc: NATS | None = None
        self.publisher: JetStreamPublisher | None = None
        self.router: Router | None = None
        self.dispatchers: list[Dispatcher] = []

    async def __aenter__(self) -> NatsStack:
        self.nc = await connect(self.nats_url, "knflow")
        self.publisher = JetStreamPublisher(self.nc, self.layout)
        await self.publisher.ensure_stream()
        if self.store is not None:
            self.router = build_router(
                self.settings,
                self.store,
                self.publisher,
                self.pipelines,
                observer=self.observer,
                event_log=JetStreamEventLog(self.nc, self.layout, self.publisher),
            )
            await self.router.result_key()  # read (or created) once, before the first invoke or result
        if self.route_results and self.router is not None:  # (__init__ refuses results without a router)
            await self._start(
                Dispatcher(
                    self.nc,
                    name="router-results",
                    filter_subject=f"{self.layout.prefix}.result.>",
                    subscriber=self.router.on_result,
                    layout=self.layout,
                    retry=RESULT_RETRY,
                    timeout_s=RESULT_TIMEOUT_S,
                    publisher=self.publisher,
                    batch_size=self.batch_size,
                    max_in_flight=256,
                    ack_margin_s=2.0,
                )
            )
        return self

    async def __aexit__(self, *exc: object) -> None:
        for d in reversed(self.dispatchers):
            await d.stop()
        self.dispatchers.clear()
        if self.nc is not None:
            await self.nc.drain()

    async def _start(self, dispatcher: Dispatcher) -> Dispatcher:
        await dispatcher.start()
        self.dispatchers.append(dispatcher)
        return dispatcher

    async def serve_function(self, name: str, url: str | None = None, dead_letter: Any = None) -> Dispatcher:
        """Deliver function `name`'s invokes in this process, or to its HTTP service at `url`; dead letters go to
        `dead_letter` (a URL or a handler; default: this stack's router)."""
        if self.nc is None:
            raise KnflowError(f"function '{name}': serve it inside `async with NatsStack(...)`, once connected")
        spec = self.registry.get(name)
        if not dead_letter:
            if self.router is None:
                raise KnflowError(f"function '{name}': a stack without a router needs a dead_letter URL")
            dead_letter = self.router.on_dead_letter
        return await self._start(
            Dispatcher.for_function(
                self.nc,
                spec.name,
                url or in_process(self.registry),
                layout=self.layout,
                retry=spec.traits.retry,
                timeout_s=spec.traits.timeout_s,
                dead_letter=dead_letter,
                publisher=self.publisher,
                max_in_flight=spec.traits.concurrency or 64,
                batch_size=self.batch_size,
            )
        )
