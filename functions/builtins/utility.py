"""`delay` (wait), `log` (write a line into the run's log, pass data on) and `error` (fail on purpose)."""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from functions.errors import FunctionError
from functions.sdk import Context, function

MAX_DELAY_S = 300.0


class DelayInput(BaseModel):
    """Input of `delay`: how long to wait, at most `MAX_DELAY_S`."""

    model_config = ConfigDict(extra="forbid")

    seconds: float = Field(ge=0, le=MAX_DELAY_S)


class DelayOutput(BaseModel):
    delayed_s: float


@function(name="delay", timeout_s=MAX_DELAY_S + 10)
async def delay(inp: DelayInput) -> DelayOutput:
    """Wait `seconds` (0 to 300), then succeed with `{"delayed_s": seconds}`.

    The wait holds a function instance; to wait hours, start a later run from a cron trigger instead.
    """
    await asyncio.sleep(inp.seconds)
    return DelayOutput(delayed_s=inp.seconds)


class LogInput(BaseModel):
    """Input of `log`: a `message`, its `level`, and `data` to log with it and pass on."""

    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True)

    message: str
    level: Literal["debug", "info", "warning", "error"] = "info"
    data: Any = None


class LogOutput(BaseModel):
    message: str
    level: str
    data: Any = None


@function(name="log", timeout_s=10)
async def log(inp: LogInput, ctx: Context) -> LogOutput:
    """Write `message` (with `data`) to the run's log at `level`, and pass all three on.

    A downstream node reads the data on as `{{ log-node.output.data }}`.
    """
    getattr(ctx.log, inp.level)(inp.message, data=inp.data)
    return LogOutput(message=inp.message, level=inp.level, data=inp.data)


class ErrorInput(BaseModel):
    """Input of `error`: the failure to raise."""

    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True)

    message: str = Field(min_length=1)
    type: str | None = Field(None, min_length=1)
    retryable: bool = False
    detail: Any = None


class NoOutput(BaseModel):
    """`error` never succeeds, so it never gives this."""


@function(name="error", timeout_s=10)
async def error(inp: ErrorInput) -> NoOutput:
    """Fail the node on purpose with `message`, `type` and `detail`.

    With `retryable: true` the broker retries it, then dead-letters it, as if the failure were transient.
    """
    raise FunctionError(inp.message, retryable=inp.retryable, type=inp.type, detail=inp.detail)
