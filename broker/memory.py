"""The in-memory broker of the embedded default: subscriptions by attribute filter, delivery with
retries and backoff, a dead-letter sink (events stamped with `knativeerror*` as Knative does), replies
published back, as a Knative Trigger would do.

Deliveries in flight are bounded (`max_in_flight`, 512): past it, events wait in order in `queued` and
start as deliveries end, so a foreach that schedules 10,000 items at once holds 512 tries (and their
results) in memory, not 10,000 (issue 16: a big run's memory grows with its store, not its width).

Nothing is dropped silently: an event no subscription matches is logged and kept in `unrouted` (the
last 1,000 of them, so that a long-running embedded router does not grow with every run it starts;
`unrouted_total` counts them all).
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field
from typing import Any
from collections.abc import Awaitable, Callable

import structlog
from cloudevents.core.v1.event import CloudEvent

from broker import metrics
from broker.delivery import DeliveryOutcome, dead_letter_event, split_logs
from broker.errors import DeliveryFailed, InvalidEvent
from broker.events import logs_event, with_delivery
from broker.retry import Retry, retry_for

log = structlog.get_logger("knflow.broker")

Handler = Callable[[CloudEvent], Awaitable[CloudEvent | None]]
DeadLetter = Callable[[CloudEvent], Awaitable[None]]


NO_RETRY = Retry()
UNROUTED_KEPT = 1000
MAX_IN_FLIGHT = 512


def matches(event: CloudEvent, filter_: dict[str, str]) -> bool:
    """Exact attribute match, as a Knative Trigger's `filter.attributes`."""
    for key, want in filter_.items():
        got = event.get_attributes().get(key)
        if got is None or str(got) != want:
            return False
    return True


@dataclass
class Subscription:
    filter: dict[str, str]
    handler: Handler
    retry: Retry | Callable[[CloudEvent], Retry]  # the subscriber's own, or one per event (by its function)
    dead_letter: DeadLetter | None
    slots: asyncio.Semaphore | None
    name: str = ""

    def policy_for(self, event: CloudEvent) -> Retry:
        """The subscriber's policy, or the node's own that the router put on the invoke (`knflowretry`)."""
        default = self.retry(event) if callable(self.retry) else self.retry
        try:
            return retry_for(event, default)
        except InvalidEvent as err:
            log.error("bad retry policy on the event; the subscriber's applies", subscriber=self.name, error=str(err))
            return default


@dataclass
class InMemoryBroker:
    subscriptions: list[Subscription] = field(default_factory=list)
    unrouted: deque[CloudEvent] = field(default_factory=lambda: deque(maxlen=UNROUTED_KEPT))
    unrouted_total: int = 0
    max_in_flight: int = MAX_IN_FLIGHT  # deliveries at once; more wait in `queued`
    queued: deque[tuple[Subscription, CloudEvent]] = field(default_factory=deque)
    _tasks: set[asyncio.Task] = field(default_factory=set)
    _by_type: dict[str, list[Subscription]] = field(default_factory=dict)  # the subscriptions an event type may match

    def subscribe(
        self,
        filter_: dict[str, str],
        handler: Handler,
        *,
        retry: Retry | Callable[[CloudEvent], Retry] | None = None,
        dead_letter: DeadLetter | None = None,
        concurrency: int = 0,
        name: str = "",
    ) -> Subscription:
        sub = Subscription(
            dict(filter_),
            handler,
            retry or NO_RETRY,
            dead_letter,
            asyncio.Semaphore(concurrency) if concurrency else None,
            name,
        )
        self.subscriptions.append(sub)
        self._by_type.clear()
        return sub

    async def publish(self, event: CloudEvent) -> None:
        await self.publish_many([event])

    async def publish_many(self, events: list[CloudEvent]) -> None:
        for event in events:
            self._route(event)

    def _route(self, event: CloudEvent, now: bool = False) -> list[asyncio.Task]:
        """Deliver `event` to its subscribers: at once when `now` or under `max_in_flight`, else queued."""
        tasks = []
        for sub in self._targets(event):
            task = self._start_or_queue(sub, event, now)
            if task is not None:
                tasks.append(task)
        return tasks

    def _targets(self, event: CloudEvent) -> list[Subscription]:
        """The subscriptions `event` matches; none: it is kept in `unrouted`."""
        event_type = event.get_type()
        candidates = self._by_type.get(event_type)
        if candidates is None:
            candidates = self._by_type[event_type] = [
                s for s in self.subscriptions if s.filter.get("type", event_type) == event_type
            ]
        targets = [s for s in candidates if matches(event, s.filter)]
        if not targets:
            self.unrouted.append(event)
            self.unrouted_total += 1
            log.debug("event has no subscriber", event_id=event.get_id(), type=event.get_type())
        return targets

    def _start_or_queue(self, sub: Subscription, event: CloudEvent, now: bool = False) -> asyncio.Task | None:
        if not now and len(self._tasks) >= self.max_in_flight:
            self.queued.append((sub, event))
            return None
        return self._start(sub, event)

    def _start(self, sub: Subscription, event: CloudEvent) -> asyncio.Task:
        task = asyncio.create_task(self._deliver(sub, event))
        self._tasks.add(task)
        task.add_done_callback(self._ended)
        return task

    def _ended(self, task: asyncio.Task) -> None:
        """A delivery ended: the next queued ones start (before `idle` can see nothing in flight)."""
        self._tasks.discard(task)
        while self.queued and len(self._tasks) < self.max_in_flight:
            self._start(*self.queued.popleft())

    async def _deliver(self, sub: Subscription, event: CloudEvent) -> None:
        retry: Retry | None = None  # read on the first failure: most deliveries never need it
        attempt = 0
        while True:
            attempt += 1
            delivered = with_delivery(event, attempt)
            try:
                metrics.delivery(delivered)
                if sub.slots is not None:
                    async with sub.slots:
                        reply = await sub.handler(delivered)
                else:
                    reply = await sub.handler(delivered)
            except Exception as exc:
                failure = (
                    exc
                    if isinstance(exc, DeliveryFailed)
                    else DeliveryFailed(f"{type(exc).__name__}: {exc}", retryable=True)
                )
                outcome, logs = split_logs(DeliveryOutcome.from_exception(failure))  # the try's node log lines
                if retry is None:
                    retry = sub.policy_for(event)
                if failure.retryable and attempt <= retry.retries:
                    if logs is not None:  # delivered before the retry, as the NATS dispatcher publishes them
                        await asyncio.gather(*self._route(logs_event(delivered, logs, f"python:{sub.name}"), now=True))
                    delay_s = retry.delay_before_s(attempt)
                    log.info(
                        "delivery retry",
                        event_id=event.get_id(),
                        subscriber=sub.name,
                        retry=attempt,
                        delay_s=delay_s,
                        reason=failure.message,
                    )
                    metrics.retried(event)
                    await asyncio.sleep(delay_s)
                    continue
                await self._dead_letter(sub, with_delivery(event, attempt), failure, outcome, logs)
                return
            if reply is not None:
                await self._reply(reply)
            return

    async def _reply(self, reply: CloudEvent) -> None:
        """A reply goes on as a published event, its first subscriber delivered in this task: a result
        (the router's) is most of what a subscriber answers, and a task of its own costs as much as
        delivering it. Others start as tasks, or wait in `queued`, as any published event's do."""
        targets = self._targets(reply)
        if targets:
            for sub in targets[1:]:
                self._start_or_queue(sub, reply)
            await self._deliver(targets[0], reply)

    async def _dead_letter(
        self,
        sub: Subscription,
        event: CloudEvent,
        failure: DeliveryFailed,
        outcome: DeliveryOutcome,
        logs: dict[str, Any] | None,
    ) -> None:
        if sub.dead_letter is None:
            log.error(
                "delivery failed and no dead-letter sink is set",
                event_id=event.get_id(),
                subscriber=sub.name,
                reason=failure.message,
            )
            self.unrouted.append(event)
            self.unrouted_total += 1
            return
        await sub.dead_letter(dead_letter_event(event, outcome, f"python:{sub.name}", logs))

    async def idle(self) -> None:
        """Wait until nothing is in flight."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        self.queued.clear()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)
