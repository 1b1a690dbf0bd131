"""The one error root of knflow.

It lives in `broker`, the bottom layer that imports no other engine, so that every package can raise
and catch the same root; `knflow` re-exports it. Subclasses carry what they are about as named
attributes (`run_id`, `node`, `pipeline`, `attribute`, ...), also collected in `fields`. Which HTTP status
an error answers is not said here: the services map error classes to statuses once (broker/http_errors.py).
"""

from __future__ import annotations


class KnflowError(Exception):
    """Root of every error knflow raises on purpose. `str(err)` is a whole sentence for a user;
    `fields` holds the structured details that are set (None values are left out)."""

    def __init__(self, message: str, **fields: object) -> None:
        super().__init__(message)
        self.message = message
        self.fields = {k: v for k, v in fields.items() if v is not None}

    def __str__(self) -> str:
        return self.message


class InvalidEvent(KnflowError):
    """A CloudEvent that cannot be decoded or lacks what the protocol needs; `attribute` names the
    CloudEvent attribute at fault, where one is."""

    def __init__(self, message: str, *, attribute: str | None = None, **fields: object) -> None:
        super().__init__(message, attribute=attribute, **fields)
        self.attribute = attribute


class NotACloudEvent(InvalidEvent):
    """A request that is no CloudEvent at all: no `ce-` headers (binary mode) and no structured-mode
    Content-Type; `content_type` is the one it had (None: none)."""

    def __init__(self, message: str, *, content_type: str | None = None) -> None:
        super().__init__(message, content_type=content_type)
        self.content_type = content_type


class PayloadTooLarge(KnflowError):
    """A body or an event over the size limit: `size_bytes` against `max_bytes`."""

    def __init__(
        self, message: str, *, size_bytes: int | None = None, max_bytes: int | None = None, **fields: object
    ) -> None:
        super().__init__(message, size_bytes=size_bytes, max_bytes=max_bytes, **fields)
        self.size_bytes = size_bytes
        self.max_bytes = max_bytes


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
    """The broker did not store an event (or some events of a batch): no ack, an error ack, a timeout.
    `stream` and `subject` (NATS) or `url` (HTTP) say where it was sent."""

    def __init__(
        self,
        message: str,
        *,
        stream: str | None = None,
        subject: str | None = None,
        url: str | None = None,
        **fields: object,
    ) -> None:
        super().__init__(message, stream=stream, subject=subject, url=url, **fields)
        self.stream = stream
        self.subject = subject
        self.url = url
