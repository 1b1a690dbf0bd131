"""The one error root of knflow.

It lives in `broker`, the bottom layer that imports no other engine, so that every package can raise
and catch the same root; `knflow` re-exports it. Subclasses carry structured fields and are mapped to
HTTP status codes once, in the service layer.
"""

from __future__ import annotations


class KnflowError(Exception):
    """Root of every error knflow raises on purpose. `str(err)` is a whole sentence for a user."""

    http_status: int = 500

    def __init__(self, message: str, **fields: object) -> None:
        super().__init__(message)
        self.message = message
        self.fields = {k: v for k, v in fields.items() if v is not None}

    def __str__(self) -> str:
        return self.message


class InvalidEvent(KnflowError):
    """A CloudEvent that cannot be decoded or lacks what the protocol needs (names header/attribute)."""

    http_status = 400


class PayloadTooLarge(KnflowError):
    http_status = 413


class DeliveryFailed(KnflowError):
    """A subscriber could not take an event. `retryable` says whether the broker should try again.

    `code` is the HTTP status a Knative subscriber would have answered (503 for retryable errors), and
    `data` what goes into the dead letter's `knativeerrordata`.
    """

    def __init__(self, message: str, *, retryable: bool, code: int = 503, data: object = None):
        super().__init__(message, retryable=retryable, code=code)
        self.retryable = retryable
        self.code = code
        self.data = data


class PublishError(KnflowError):
    """The broker did not store an event (or some events of a batch): no ack, an error ack, a timeout."""

    http_status = 503
