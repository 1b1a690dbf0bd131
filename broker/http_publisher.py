"""Publishing to an HTTP CloudEvents endpoint: Knative's broker ingress (`K_SINK`) or a router's `/events`.

Each event is POSTed in binary mode; a batch goes out concurrently and every event must be accepted
(2xx), or `PublishError` names the ones that were not: nothing is dropped silently.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable

import aiohttp
from cloudevents.core.v1.event import CloudEvent

from broker import metrics, tracing
from broker.codec import encode_binary
from broker.errors import PublishError
from broker.redact import mask_url, redact


class HttpPublisher:
    def __init__(self, url: str, timeout_s: float = 10.0, max_connections: int = 64) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self.max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.max_connections),
                timeout=aiohttp.ClientTimeout(total=self.timeout_s),
            )
        return self._session

    async def publish(self, event: CloudEvent) -> None:
        await self.publish_many([event])

    async def publish_many(self, events: Iterable[CloudEvent]) -> None:
        batch = list(events)
        if tracing.ON:  # a producer span per event, its context in the event's traceparent
            batch, spans = tracing.publishing(batch, lambda _e: mask_url(self.url), "knative")
        started = time.perf_counter()
        results = await asyncio.gather(*(self._post(e) for e in batch), return_exceptions=True)
        metrics.published(len(batch), time.perf_counter() - started)
        if tracing.ON:
            tracing.published(spans, results)
        failed = [(e, r) for e, r in zip(batch, results, strict=True) if r is not None]
        if failed:
            detail = "; ".join(f"{e.get_id()}: {r}" for e, r in failed[:5])
            raise PublishError(
                f"{len(failed)} of {len(batch)} event(s) were not accepted by {mask_url(self.url)}: {redact(detail)}",
                url=mask_url(self.url),
            )

    async def _post(self, event: CloudEvent) -> str | None:
        headers, body = encode_binary(event)
        if tracing.ON:
            tracing.http_headers(headers)
        try:
            async with self._client().post(self.url, data=body, headers=headers) as resp:
                if 200 <= resp.status < 300:
                    return None
                return f"HTTP {resp.status} {(await resp.text())[:200]}"
        except (TimeoutError, aiohttp.ClientError) as exc:
            return f"{type(exc).__name__}: {exc}"

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
