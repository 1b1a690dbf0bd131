"""The router and the functions on a real NATS JetStream broker (`knflow dev`, `knflow serve ...`).

- the router publishes invokes and run events to the stream and consumes results through the durable
  consumer `router-results` (several router processes share it: each result goes to one of them);
- each function gets a dispatcher (durable consumer `fn-NAME`) that delivers its invokes in-process or
  to the function's HTTP service, retries as the function's `Retry` says, and dead-letters to the router.

NATS unreachable: the stack tries again with capped exponential backoff (CONNECT_BACKOFF), logging the masked
URL and the reason each time. With `connect_in_background` (`knflow serve router`) it does so behind the
router's HTTP service: `not_ready()` says why for /healthz (503), and until the first connect a publish fails
at once with PublishError (a webhook's run is stored and its invokes are published by the sweeper; an
external event, which the stream keeps, answers 503). Once connected, nats-py reconnects forever.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import nats.errors
import structlog
from cloudevents.core.v1.event import CloudEvent
from nats.aio.client import Client as NATS
from nats.js.api import PubAck

from broker.errors import KnflowError, PublishError
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


# connecting to NATS (at start, or after a failed first connect); once connected nats-py reconnects on its own
CONNECT_BACKOFF = Retry(retries=1_000_000, backoff="exponential", delay_s=0.25, max_delay_s=10.0)


class NatsConnection:
    """One NATS client for a stack's life, whether it is connected, and why not (`not_ready()`)."""

    def __init__(self, url: str, name: str) -> None:
        self.url = url
        self.name = name
        self.nc = NATS()
        self.ready = False  # connected once and the stream set up (NatsStack._setup)
        self.problem = "not connected yet"

    def not_ready(self) -> str | None:
        """None when connected and set up, else why not, naming the masked URL."""
        if self.ready and self.nc.is_connected:
            return None
        if self.ready:
            return f"NATS at {mask_url(self.url)} disconnected, reconnecting: {self.problem}"
        return f"NATS at {mask_url(self.url)} unreachable: {self.problem}"

    async def _on_error(self, exc: Exception) -> None:
        self.problem = redact(f"{type(exc).__name__}: {exc}")
        if self.ready:  # while connecting, `connect_forever` logs each attempt once
            log.warning("nats connection error", url=mask_url(self.url), error=self.problem)

    async def _on_disconnected(self) -> None:
        if self.ready and not (self.nc.is_closed or self.nc.is_draining):  # not our own drain at the end
            log.warning("nats disconnected, reconnecting", url=mask_url(self.url), error=self.problem)

    async def _on_reconnected(self) -> None:
        log.info("nats reconnected", url=mask_url(self.url))

    async def connect_once(self) -> None:
        """One attempt (nats-py's 2 tries); raises what stopped it. Connected, it reconnects forever."""
        try:
            await self.nc.connect(
                self.url,
                name=self.name,
                max_reconnect_attempts=1,  # the first connect gives up after 2 tries: connect_forever backs off
                reconnect_time_wait=0.25,  # type: ignore[arg-type]  # annotated int; nats-py sleeps a float
                error_cb=self._on_error,
                disconnected_cb=self._on_disconnected,
                reconnected_cb=self._on_reconnected,
                connect_timeout=5,
            )
        except Exception as exc:
            if not isinstance(exc, nats.errors.NoServersError):  # NoServersError: the last error says why
                self.problem = redact(f"{type(exc).__name__}: {exc}")
            raise
        self.nc.options["max_reconnect_attempts"] = -1  # nats-py reads it on each reconnect

    async def connect_forever(self, setup: Callable[[], Awaitable[None]]) -> None:
        """Connect, then `await setup()` (the stream, the consumers); both again, with backoff, until done."""
        attempt = 0
        while True:
            attempt += 1
            try:
                if not self.nc.is_connected:
                    await self.connect_once()
                await setup()
                self.ready = True
                self.problem = "connection lost"  # until error_cb says more
                if attempt > 1:
                    log.info("nats connected", url=mask_url(self.url), attempts=attempt)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                connected = self.nc.is_connected  # connected, but the setup failed: JetStream off, a bad stream
                if connected:
                    self.problem = redact(f"setting up JetStream failed: {type(exc).__name__}: {exc}")
                delay = CONNECT_BACKOFF.delay_before_s(attempt)
                log.warning(
                    "nats set-up failed, retrying" if connected else "nats unreachable, retrying",
                    url=mask_url(self.url),
                    error=self.problem,
                    attempt=attempt,
                    retry_in_s=round(delay, 2),
                )
                await asyncio.sleep(delay)


class GatedPublisher(JetStreamPublisher):
    """A JetStreamPublisher that fails at once, with the reason, until its connection was first set up
    (later, while nats-py reconnects, publishes wait for their acks as usual)."""

    def __init__(self, conn: NatsConnection, layout: StreamLayout) -> None:
        super().__init__(conn.nc, layout)
        self.conn = conn

    async def publish_many(self, events: Iterable[CloudEvent]) -> list[PubAck]:
        events = list(events)
        if events and not self.conn.ready:
            raise PublishError(
                f"{len(events)} event(s) not stored in stream '{self.layout.stream}': {self.conn.not_ready()}",
                stream=self.layout.stream,
                failed_ids=[e.get_id() for e in events],
            )
        return await super().publish_many(events)


class NatsStack:
    """`async with NatsStack(url, store, pipelines) as stack:` router + result consumer (+ functions).

    Without a store there is no router (a dispatcher: `knflow serve dispatcher`): its functions'
    dead letters go to the URL `serve_function` is given. `settings` (knflow.settings.Settings) sets up
    the router; None: the defaults. NATS unreachable: entering waits until it connects, unless
    `connect_in_background` (a router only): then it returns at once and `not_ready()` says why until then."""

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
        connect_in_background: bool = False,
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
        if connect_in_background and store is None:
            raise KnflowError("NatsStack(connect_in_background=True) is for a router: pass a store")
        self.connect_in_background = connect_in_background
        self.conn = NatsConnection(nats_url, "knflow")
        self.nc: NATS = self.conn.nc
        self.publisher: JetStreamPublisher = GatedPublisher(self.conn, self.layout)
        self.router: Router | None = None
        self.dispatchers: list[Dispatcher] = []
        self._connecting: asyncio.Task[None] | None = None

    def not_ready(self) -> str | None:
        """None once NATS is connected and the stream and consumers set up, else why not (for /healthz)."""
        return self.conn.not_ready()

    async def __aenter__(self) -> NatsStack:
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
        if self.connect_in_background:
            self._connecting = asyncio.create_task(self.conn.connect_forever(self._setup))
        else:
            await self.conn.connect_forever(self._setup)
        return self

    async def _setup(self) -> None:
        """On the first connect: the stream, then the router's result consumer (created, or found, once)."""
        await self.publisher.ensure_stream()
        if self.route_results and self.router is not None and not self.dispatchers:
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

    async def __aexit__(self, *exc: object) -> None:
        if self._connecting is not None:
            self._connecting.cancel()
            await asyncio.gather(self._connecting, return_exceptions=True)
        for d in reversed(self.dispatchers):
            await d.stop()
        self.dispatchers.clear()
        if self.nc.is_connected:
            await self.nc.drain()
        elif not self.nc.is_closed:
            await self.nc.close()

    async def _start(self, dispatcher: Dispatcher) -> Dispatcher:
        await dispatcher.start()
        self.dispatchers.append(dispatcher)
        return dispatcher

    async def serve_function(self, name: str, url: str | None = None, dead_letter: Any = None) -> Dispatcher:
        """Deliver function `name`'s invokes in this process, or to its HTTP service at `url`; dead letters go to
        `dead_letter` (a URL or a handler; default: this stack's router)."""
        if not self.conn.ready:
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
