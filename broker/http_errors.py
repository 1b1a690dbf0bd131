"""knflow's errors as HTTP answers, for both services (the router's and a function's): a map from error
class to status, looked up along the class's MRO (a subclass answers as its nearest mapped base), and
the one JSON body they answer with.

Each layer maps its own errors where its service is: the broker's here, the functions' in
functions/server.py, the router's in router/service/errors.py, each map extending the one below it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from broker.errors import InvalidEvent, KnflowError, PayloadTooLarge, PublishError

Statuses = Mapping[type[BaseException], int]

BROKER_STATUSES: Statuses = {
    KnflowError: 500,
    InvalidEvent: 400,  # NotACloudEvent too
    PayloadTooLarge: 413,
    PublishError: 503,
}


def http_status(exc: BaseException, statuses: Statuses) -> int:
    """The status of the nearest class in `exc`'s MRO that `statuses` maps; 500 when none is."""
    for cls in type(exc).__mro__:
        status = statuses.get(cls)
        if status is not None:
            return status
    return 500


def error_body(exc: KnflowError) -> dict[str, Any]:
    """`{"error": MESSAGE}`, the error's scalar fields beside it, and `problems` (one line each) when it has them."""
    body: dict[str, Any] = {"error": exc.message}
    body.update((k, v) for k, v in exc.fields.items() if k != "error" and isinstance(v, (str, int, float)))
    problems = getattr(exc, "problems", None)
    if problems:
        body["problems"] = [str(p) for p in problems]
    return body
