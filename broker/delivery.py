"""What a delivery attempt means, as a Knative Trigger reads it: pure decisions, no network.

- How often and how patiently to retry is `broker.retry.Retry` (a Trigger's `retry`, `backoffPolicy`,
  `backoffDelay`); how long one attempt may take is the subscriber's `timeout_s` (the Trigger's `timeout`).
- `DeliveryOutcome` is what a subscriber answered: an HTTP-like status, maybe a reply event, maybe an
  error body. Retried: 5xx, 408, 429 (and network errors and timeouts, which become 502 and 504). Not
  retried: every other status outside 2xx.
- `dead_letter_event` stamps an event with Knative's `knativeerrordest`, `knativeerrorcode` and
  `knativeerrordata` (base64 of the response body, at most 1,024 characters); knflow's own dead letters
  also carry a knflow function's whole error body in their data (`failure`), which that cut would lose.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, replace
from typing import Any, Final

from cloudevents.core.v1.event import CloudEvent

from broker import extensions as ext
from broker.errors import DeliveryFailed, KnflowError

__all__ = ["DeliveryOutcome", "dead_letter_event", "is_retryable_status", "split_logs"]

KNATIVE_ERROR_DATA_MAX_CHARS: Final = 1024
_ERROR_BODY_MAX_BYTES: Final = KNATIVE_ERROR_DATA_MAX_CHARS // 4 * 3  # its base64 fits in 1,024 chars
FAILURE_MAX_BYTES: Final = 64 * 1024  # the most of an error body a dead letter's data carries whole


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


def dead_letter_event(
    event: CloudEvent, outcome: DeliveryOutcome, destination: str, logs: dict[str, Any] | None = None
) -> CloudEvent:
    """`event` with Knative's error extensions: where it went, the last status, base64 of the body; where
    knflow's dispatchers deliver, with the last try's node log lines (`split_logs`) as `logs` in its data, and
    a knflow function's error body that the extension cuts (a traceback, the try's times) whole as `failure`."""
    attributes = dict(event.get_attributes())  # a copy: the SDK's constructor keeps and mutates it
    attributes[ext.ERROR_DEST] = destination
    attributes[ext.ERROR_CODE] = outcome.status
    attributes[ext.ERROR_DATA] = base64.b64encode(outcome.error_body[:_ERROR_BODY_MAX_BYTES]).decode()
    data = event.get_data()
    if isinstance(data, dict):
        if logs is not None:
            data = {**data, "logs": logs}
        if (failure := _cut_failure(outcome.error_body)) is not None:
            data = {**data, "failure": failure}
    return CloudEvent(attributes, data)


def _cut_failure(body: bytes) -> dict[str, Any] | None:
    """A knflow function's error body (`{"error": {...}, "started_at", ...}`) that `knativeerrordata` cuts."""
    if len(body) <= _ERROR_BODY_MAX_BYTES or len(body) > FAILURE_MAX_BYTES:
        return None
    try:
        parsed = json.loads(body)
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) and isinstance(parsed.get("error"), dict) else None


def split_logs(outcome: DeliveryOutcome) -> tuple[DeliveryOutcome, dict[str, Any] | None]:
    """A failed try's node log lines taken out of its error body (a knflow function's 503 body carries them as
    `logs`: functions/handler.py Retryable): the outcome without them, and the lines (None if it had none)."""
    body = outcome.error_body
    if b'"logs"' not in body:
        return outcome, None
    try:
        parsed = json.loads(body)
    except ValueError:
        return outcome, None
    if not isinstance(parsed, dict) or not isinstance(parsed.get("logs"), dict):
        return outcome, None
    logs = parsed.pop("logs")
    return replace(outcome, error_body=error_body_bytes(parsed)), logs
