"""The retry policy: how often and how patiently a failed delivery is tried again. Pure.

One model for every path: `@function(retries=Retry(...))` and a node's `retry: {retries, backoff, delay_s,
max_delay_s}` (`knflow.Retry` is this class), the in-memory broker and the NATS dispatcher that apply it,
and the Knative Trigger's `delivery` made from it (`retries` -> `retry`, `backoff` -> `backoffPolicy`,
`delay_s` -> `backoffDelay`; Knative has no cap, so `max_delay_s` holds on knflow's own brokers only).

- The delay before retry n (n = 1, 2, ...) is `delay_s * n` (linear) or `delay_s * 2**n` (exponential),
  as Knative's `RetryConfigFromDeliverySpec`, capped at `max_delay_s`.
- `problems()` says what is wrong with a policy; the decorator and the pipeline reader call it when a
  function or a pipeline is defined, so that their messages name the function, file and node.
- A node's own policy travels on its invokes as one extension, `knflowretry`, a JSON object with the four
  fields (`extension_value()`); `retry_for(event, default)` reads it back (each distinct value is parsed
  once per process) and names the extension when the value is not a valid policy.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal

from broker import extensions as ext
from broker.errors import InvalidEvent

if TYPE_CHECKING:
    from cloudevents.core.v1.event import CloudEvent

__all__ = ["Backoff", "Retry", "retry_for"]

Backoff = Literal["exponential", "linear"]
FIELDS: Final = ("retries", "backoff", "delay_s", "max_delay_s")
_WIRE_SHAPE: Final = '{"retries": N, "backoff": "exponential"|"linear", "delay_s": S, "max_delay_s": S}'


@dataclass(frozen=True)
class Retry:
    """How often and how patiently a failed delivery is retried (a Knative Trigger's `delivery`).

    The defaults: no retries (a function retries only when it says so, `@function(retries=3)`); when it
    does, exponential backoff from 1 s (2 s, 4 s, 8 s ...), each delay at most 60 s.
    """

    retries: int = 0
    backoff: Backoff = "exponential"
    delay_s: float = 1.0
    max_delay_s: float = 60.0

    def problems(self) -> list[str]:
        """What is wrong with this policy, one clause each; empty when it is valid."""
        out = []
        if not isinstance(self.retries, int) or self.retries < 0:
            out.append(f"retries must be an integer >= 0, got {self.retries!r}")
        if self.backoff not in ("exponential", "linear"):
            out.append(f"backoff must be 'exponential' or 'linear', got {self.backoff!r}")
        delay_ok = isinstance(self.delay_s, (int, float)) and self.delay_s >= 0
        if not delay_ok:
            out.append(f"retry delay_s must be a number >= 0, got {self.delay_s!r}")
        if not isinstance(self.max_delay_s, (int, float)) or (delay_ok and self.max_delay_s < self.delay_s):
            out.append(f"retry max_delay_s must be >= delay_s, got {self.max_delay_s!r}")
        return out

    def delay_before_s(self, retry_number: int) -> float:
        """Seconds to wait before retry `retry_number` (1 for the first retry), capped at `max_delay_s`."""
        n = max(1, retry_number)
        delay = self.delay_s * n if self.backoff == "linear" else self.delay_s * 2.0 ** min(n, 64)
        return min(delay, self.max_delay_s)

    def extension_value(self) -> str:
        """This policy as the `knflowretry` extension: a compact JSON object with the four fields."""
        return _encode(self)


@functools.lru_cache(maxsize=256)
def _encode(retry: Retry) -> str:
    return json.dumps({name: getattr(retry, name) for name in FIELDS}, separators=(",", ":"))


def retry_for(event: CloudEvent, default: Retry) -> Retry:
    """The node's own policy that the router put on `event` (`knflowretry`), else `default`.

    Raises `InvalidEvent`, naming the extension, the value and what was expected, for a value that is
    not a valid policy."""
    raw = event.get_extension(ext.RETRY)
    if raw is None:
        return default
    retry = _decode(raw if isinstance(raw, str) else str(raw))
    if isinstance(retry, Retry):
        return retry
    raise InvalidEvent(
        f"event '{event.get_id()}': extension {ext.RETRY} has value {raw!r}. Expected a JSON object "
        f"{_WIRE_SHAPE}; {retry}.",
        event_id=event.get_id(),
    )


@functools.lru_cache(maxsize=256)
def _decode(text: str) -> Retry | str:
    """The policy in `text`, or what is wrong with it."""
    try:
        doc = json.loads(text)
    except ValueError:
        return "it is not JSON"
    if not isinstance(doc, dict):
        return "it is JSON but not an object"
    unknown = sorted(set(doc) - set(FIELDS))
    if unknown:
        return f"unknown field(s) {', '.join(unknown)}"
    retry = Retry(**doc)
    problems = retry.problems()
    return "; ".join(problems) if problems else retry
