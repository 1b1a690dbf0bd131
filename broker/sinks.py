"""Where a dispatcher delivers events: an async callable in this process, or an HTTP URL (Knative's contract).

A sink is either
- an async callable `(CloudEvent) -> DeliveryOutcome | CloudEvent | None`: a CloudEvent is a reply (200),
  None is accepted without one (202); raising `DeliveryFailed` fails the attempt with its code and
  retryability, any other exception (or running past `timeout_s`) fails it retryably (500 / 504);
- or an `http://` / `https://` URL: the event is POSTed in binary mode with `Prefer: reply`; a 2xx with a
  CloudEvent in the response is a reply, 202 or an empty 2xx is none, a non-empty 2xx that is not a
  CloudEvent is a failed attempt (502, as Knative's broker filter answers); connection errors are 502 and
  timeouts 504, both retried.

`Target.deliver` never raises: every failure is a `DeliveryOutcome`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol, TypeAlias

import aiohttp
from cloudevents.core.v1.event import CloudEvent

from broker import deadlines, tracing
from broker.codec import decode, encode_binary
from broker.delivery import DeliveryOutcome
from broker.errors import KnflowError
from broker.redact import mask_url, redact

__all__ = ["CallableTarget", "HttpTarget", "Sink", "Subscriber", "Target", "make_target"]

Subscriber: TypeAlias = Callable[[CloudEvent], Awaitable["DeliveryOutcome | CloudEvent | None"]]
Sink: TypeAlias = "Subscriber | str"


class Target(Protocol):
    destination: str  # what a dead letter's `knativeerrordest` says

    async def deliver(self, event: CloudEvent) -> DeliveryOutcome: ...


class CallableTarget:
    def __init__(self, fn: Subscriber, timeout_s: float) -> None:
        self._fn = fn
        self.timeout_s = timeout_s
        qualname = getattr(fn, "__qualname__", type(fn).__qualname__)
        self.destination = f"python:{getattr(fn, '__module__', '?')}.{qualname}"

    async def deliver(self, event: CloudEvent) -> DeliveryOutcome:
        try:
            async with deadlines.within(self.timeout_s):  # one loop timer per deadline bucket, not per event
                answer = await self._fn(event)
        except TimeoutError:
            return DeliveryOutcome.failed(
                504, f"dispatch error: {self.destination} gave no answer within timeout_s={self.timeout_s:g}"
            )
        except Exception as err:  # a subscriber's failure is an outcome, never the dispatcher's crash
            return DeliveryOutcome.from_exception(err)
        if isinstance(answer, DeliveryOutcome):
            return answer
        if answer is None or isinstance(answer, CloudEvent):
            return DeliveryOutcome.accepted(answer)
        return DeliveryOutcome.failed(
            500,
            f"dispatch error: {self.destination} returned {type(answer).__name__}; "
            "expected a DeliveryOutcome, a CloudEvent or None",
        )


class HttpTarget:
    def __init__(self, url: str, session: aiohttp.ClientSession, timeout_s: float) -> None:
        self.destination = mask_url(url)  # shown in errors, logs and dead letters: no credentials
        self._url = url
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.timeout_s = timeout_s

    async def deliver(self, event: CloudEvent) -> DeliveryOutcome:
        headers, body = encode_binary(event)
        headers["prefer"] = "reply"
        if tracing.ON:
            tracing.http_headers(headers)
        try:
            async with self._session.post(
                self._url,
                data=body,
                headers=headers,
                timeout=self._timeout,
                allow_redirects=False,
                skip_auto_headers=("Content-Type",),  # no datacontenttype must stay no Content-Type
            ) as response:
                status = response.status
                payload = await response.read()
                reply_headers = response.headers
        except TimeoutError:
            return DeliveryOutcome.failed(
                504, f"dispatch error: no response from {self.destination} within timeout_s={self.timeout_s:g}"
            )
        except (aiohttp.ClientError, OSError) as err:
            return DeliveryOutcome.failed(
                502, f"dispatch error: POST {self.destination}: {type(err).__name__}: {redact(str(err))}"
            )
        if not 200 <= status < 300:
            return DeliveryOutcome.failed(status, payload)
        if status == 202 or (not payload and not any(k.lower().startswith("ce-") for k in reply_headers)):
            return DeliveryOutcome.accepted()
        try:
            return DeliveryOutcome.accepted(decode(reply_headers, payload))
        except KnflowError as err:
            return DeliveryOutcome.failed(
                502,
                f"{self.destination} answered {status} with a non-empty response that is not a CloudEvent ({err}). "
                "The response must be either empty or a valid CloudEvent.",
            )


def make_target(sink: Sink, session: aiohttp.ClientSession | None, timeout_s: float) -> Target:
    if isinstance(sink, str):
        if not sink.startswith(("http://", "https://")):
            shown = mask_url(sink)
            raise KnflowError(f"Sink URL {shown!r} is not an http:// or https:// URL.", sink=shown)
        if session is None:
            raise KnflowError(f"Sink URL {mask_url(sink)!r} needs an aiohttp session.", sink=mask_url(sink))
        return HttpTarget(sink, session, timeout_s)
    if not callable(sink):
        raise KnflowError(f"Sink {sink!r} is a {type(sink).__name__}; expected an async callable or an http(s) URL.")
    return CallableTarget(sink, timeout_s)
