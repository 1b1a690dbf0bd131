"""Errors a function raises and the SDK reports."""

from __future__ import annotations

from broker.errors import KnflowError


class FunctionError(KnflowError):
    """Raised by user code to fail a node on purpose.

    `retryable=False` (the default) fails the node at once with a `dev.knflow.node.failed` reply;
    `retryable=True` answers like a transient error, so the broker retries with backoff.
    """

    def __init__(self, message: str, *, retryable: bool = False, type: str | None = None, detail: object = None):
        super().__init__(message, retryable=retryable, type=type, detail=detail)
        self.retryable = retryable
        self.type = type or "FunctionError"
        self.detail = detail


class InvalidFunction(KnflowError):
    """A decorated function whose signature or traits are wrong (reported when the decorator is applied)."""


class UnknownFunction(KnflowError):
    """A function name the registry does not know (`function`)."""

    def __init__(self, message: str, *, function: str | None = None) -> None:
        super().__init__(message, function=function)
        self.function = function


class ModuleLoadError(KnflowError):
    """A functions module (dotted name or file path, `module`) that cannot be imported."""

    def __init__(self, message: str, *, module: str | None = None) -> None:
        super().__init__(message, module=module)
        self.module = module
