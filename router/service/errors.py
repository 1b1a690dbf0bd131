"""The router's errors as HTTP answers: each error class's status, once (extending the function
service's map, broker/http_errors.py), and the handler that renders every `KnflowError`."""

from __future__ import annotations

import sqlite3

import pymongo.errors
from fastapi import Request
from fastapi.responses import JSONResponse

from broker.errors import KnflowError
from broker.http_errors import Statuses, error_body, http_status
from broker.redact import redact
from functions.server import FUNCTION_STATUSES
from router.conditions import ConditionError
from router.hops import HopLimit
from router.environments import UnknownEnvironment
from router.pipeline import PipelineHeld, PipelineInvalid
from router.replay import InvalidDuration, ReplayRefused
from router.result_keys import ResultRefused
from router.router import UnknownPipeline
from router.service.auth import Forbidden, Unauthorized
from router.store.base import RunExists, RunNotFound, RunUnreadable
from router.templates import TemplateError
from router.tokens import InvalidToken, TokenExists, TokenNotFound

__all__ = [
    "RETRY_AFTER",
    "ROUTER_STATUSES",
    "STORE_UNREACHABLE",
    "Forbidden",
    "Unauthorized",
    "knflow_error",
    "store_unreachable",
]

RETRY_AFTER = {"retry-after": "1"}  # on a 503: the broker or the store is not usable yet
# the run store's driver errors that a retry may fix: SQLite locked or busy, MongoDB unreachable
STORE_UNREACHABLE: tuple[type[Exception], ...] = (sqlite3.OperationalError, pymongo.errors.ConnectionFailure)

ROUTER_STATUSES: Statuses = {
    **FUNCTION_STATUSES,
    Unauthorized: 401,
    Forbidden: 403,
    InvalidToken: 400,
    TokenExists: 409,
    TokenNotFound: 404,
    UnknownPipeline: 404,
    RunNotFound: 404,
    RunExists: 409,
    RunUnreadable: 503,  # a retry may read it
    ReplayRefused: 409,
    InvalidDuration: 400,
    HopLimit: 422,
    ResultRefused: 403,  # a Knative broker does not retry a 4xx other than 404, 408, 409, 429
    PipelineInvalid: 422,
    UnknownEnvironment: 422,  # a pipeline PUT without the router's environment
    PipelineHeld: 409,
    TemplateError: 422,
    ConditionError: 422,
}


async def knflow_error(request: Request, exc: Exception) -> JSONResponse:
    if not isinstance(exc, KnflowError):  # registered for KnflowError only
        raise exc
    status = http_status(exc, ROUTER_STATUSES)
    headers = RETRY_AFTER if status == 503 else None  # the broker or the store is down: try again
    return JSONResponse(error_body(exc), status_code=status, headers=headers)


async def store_unreachable(request: Request, exc: Exception) -> JSONResponse:
    """503 with Retry-After, not a bare 500: nothing was stored, so nothing was promised; the sender retries."""
    message = f"the run store is unreachable, try again: {type(exc).__name__}: {redact(str(exc))}"
    return JSONResponse({"error": message}, status_code=503, headers=RETRY_AFTER)
