"""knflow: pipelines of serverless functions, driven by events.

    from knflow import function, pipeline, Context, Retry, FunctionError

Importing this package loads only the SDK (pydantic; structlog on the first `ctx.log` call): a function's
container stays light.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from broker.errors import KnflowError
from functions.errors import FunctionError
from functions.blobs import Storage
from functions.sdk import Context, FunctionSpec, Retry, function
from knflow.handle import RunHandle
from router.dsl import pipeline
from router.pipeline import Pipeline, PipelineInvalid

if TYPE_CHECKING:
    from knflow.local import EmbeddedStack
    from router.runs import RunRecord

__all__ = [
    "Context",
    "FunctionError",
    "FunctionSpec",
    "KnflowError",
    "Pipeline",
    "PipelineInvalid",
    "Retry",
    "RunHandle",
    "Storage",
    "execute_run",
    "function",
    "load_pipeline",
    "pipeline",
    "start_run",
]


def load_pipeline(path: str, functions: Sequence[str] = ()) -> Pipeline:
    """Read and validate a pipeline file, loading the function modules it names (and `functions`)."""
    from router.loader import load

    return load(path, extra_functions=list(functions))


async def start_run(stack: EmbeddedStack, pipeline: Pipeline, data: Any = None) -> RunHandle:
    """Start a run on a stack (`knflow.local.EmbeddedStack`) without waiting: `handle.id` at once,
    `await handle.result()` for the run record once it has ended."""
    return RunHandle(await stack.start(pipeline, data), stack)


async def execute_run(pipeline: Pipeline, data: Any = None, store: str = "sqlite://:memory:") -> RunRecord:
    """Start a run on the embedded default and wait for it (`start_run` + `result()`); returns the run record."""
    from knflow.local import EmbeddedStack
    from router.store import open_store

    async with EmbeddedStack(open_store(store)) as stack:
        return await (await start_run(stack, pipeline, data)).result()
