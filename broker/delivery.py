"""What a delivery attempt means, as a Knative Trigger reads it: pure decisions, no network.

- `DeliveryPolicy` is a Trigger's `spec.delivery`: `retry` → `retries`, `backoffPolicy` → `backoff`,
  `backoffDelay` → `backoff_delay_s`, `timeout` → `timeout_s`; `max_delay_s` caps a backoff.
  The delay before retry n (n = 1, 2, ...) is `backoff_delay_s * n` (linear) or `backoff_delay_s * 2**n`
  (exponential), as Knative's `RetryConfigFromDeliverySpec`.
- `DeliveryOutcome` is what a subscriber answered: an HTTP-like status, maybe a reply event, maybe an
  error body. Retried: 5xx, 408, 429 (and network errors and timeouts, which become 502 and 504). Not
  retried: every other status outside 2xx.
- `dead_letter_event` stamps an event with Knative's `knativeerrordest`, `knativeerrorcode` and
  `knativeerrordata` (base64 of the response body, at most 1,024 characters).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, replace
from typing import Final, Literal

from cloudevents.core.v1.event import CloudEvent

from broker.errors import DeliveryFailed, KnflowError

__all__ = ["DeliveryOutcome", "DeliveryPolicy", "dead_letter_event", "is_retryable_status"]

KNATIVE_ERROR_DATA_MAX_CHARS: Final = 1024
_ERROR_BODY_MAX_BYTES: Final = KNATIVE_ERROR_DATA_MAX_CHARS // 4 * 3  # its base64 fits in 1,024 chars


@dataclass(frozen=True, slots=True)
class DeliveryPolicy:
    """Retries and timeouts of one subscription. Also satisfies `broker.memory.RetryPolicy`."""

    retries: int = 3
    backoff: Literal["exponential", "linear"] = "exponential"
    backoff_delay_s: float = 0.2
    max_delay_s: float = 60.0
    timeout_s: float = 30.0

    def __post_init__(self) -> None:
        problems = []
        if not isinstance(self.retries, int) or self.retries < 0:
            problems.append(f"retries is {self.retries!r}; expected an int >= 0")
        if self.backoff not in ("exponential", "linear"):
            problems.append(f"backoff is {self.backoff!r}; expected 'exponential' or 'linear'")
        for name in ("backoff_delay_s", "max_delay_s"):
            if getattr(self, name) < 0:
                problems.append(f"{name} is {getattr(self, name)!r}; expected a number >= 0")
        if self.timeout_s <= 0:
            problems.append(f"timeout_s is {self.timeout_s!r}; expected a number > 0")
        if problems:
            raise KnflowError(f"DeliveryPolicy is invalid: {'; '.join(problems)}.")

    def delay_before_s(self, retry_number: int) -> float:
        """Seconds to wait before retry `retry_number` (1 for the first retry), capped at `max_delay_s`."""
        n = max(1, retry_number)
        if self.backoff == "linear":
            delay = self.backoff_delay_s * n
        else:
            delay = self.backoff_delay_s * 2.0 ** min(n, 64)
        return min(delay, self.max_delay_s)

    def for_event(self, event: CloudEvent) -> DeliveryPolicy:
        """This policy, with the node's own overrides that the router put on the invoke: `knflowretry`
        (`RETRIES/BACKOFF/DELAY_S/MAX_DELAY_S`) and `knflowtimeout` (seconds)."""
        retry, timeout = event.get_extension(RETRY_EXTENSION), event.get_extension(TIMEOUT_EXTENSION)
        if retry is None and timeout is None:
            return self
        fields = {}
        if retry is not None:
            try:
                retries, backoff, delay_s, max_delay_s = str(retry).split("/")
                fields = {
                    "retries": int(retries),
                    "backoff": backoff,
                    "backoff_delay_s": float(delay_s),
                    "max_delay_s": float(max_delay_s),
                }
            except ValueError:
                raise KnflowError(
                    f"event '{event.get_id()}': knflowretry {retry!r} is not RETRIES/BACKOFF/DELAY_S/MAX_DELAY_S"
                ) from None
        if timeout is not None:
            fields["timeout_s"] = float(timeout)
        return replace(self, **fields)

    def header(self) -> str:
        """This policy's retries as the `knflowretry` extension value."""
        return f"{self.retries}/{self.backoff}/{self.backoff_delay_s:g}/{self.max_delay_s:g}"


RETRY_EXTENSION: Final = "knflowretry"
TIMEOUT_EXTENSION: Final = "knflowtimeout"


def is_retryable_status(status: int) -> bool:
    """5xx, 408 and 429 are worth another try; other 4xx (and 1xx, 3xx) are not."""
    return status >= 500 or status in (408, 429)


@dataclass(frozen=True, slots=True)
class DeliveryOutcome:
    """A subscriber's answer. `retryable=None` means: decide by `status`."""

    status: int = 200
    reply: CloudEvent | None = None
    error_body: bytes = b""
    retryable: bool | None = None

    @classmethod
    def accepted(cls, reply: CloudEvent | None = None) -> DeliveryOutcome:
        """200 with a reply event to publish, or 202 with none."""
        return cls(200 if reply is not None else 202, reply)

    @classmethod
    def failed(
        cls, status: int, error_body: bytes | str | object = b"", *, retryable: bool | None = None
    ) -> DeliveryOutcome:
        """A failed attempt; `error_body` becomes the dead letter's `knativeerrordata`."""
        if 200 <= status < 300:
            raise KnflowError(f"DeliveryOutcome.failed got status {status}, a success; use a status outside 2xx.")
        return cls(status, None, error_body_bytes(error_body), retryable)

    @classmethod
    def from_exception(cls, err: BaseException) -> DeliveryOutcome:
        """`DeliveryFailed` keeps its code and retryability; anything else is a retryable 500."""
        if isinstance(err, DeliveryFailed):
            body = err.data if err.data is not None else err.message
            return cls(err.code if not 200 <= err.code < 300 else 500, None, error_body_bytes(body), err.retryable)
        return cls(500, None, f"dispatch error: {type(err).__name__}: {err}".encode(), True)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def should_retry(self) -> bool:
        if self.ok:
            return False
        return self.retryable if self.retryable is not None else is_retryable_status(self.status)


def error_body_bytes(body: bytes | str | object) -> bytes:
    if isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode()
    return json.dumps(body, default=str, separators=(",", ":")).encode()


def dead_letter_event(event: CloudEvent, outcome: DeliveryOutcome, destination: str) -> CloudEvent:
    """`event` with Knative's error extensions: where it went, the last status, base64 of the body."""
    attributes = dict(event.get_attributes())  # a copy: the SDK's constructor keeps and mutates it
    attributes["knativeerrordest"] = destination
    attributes["knativeerrorcode"] = outcome.status
    attributes["knativeerrordata"] = base64.b64encode(outcome.error_body[:_ERROR_BODY_MAX_BYTES]).decode()
    return CloudEvent(attributes, event.get_data())
