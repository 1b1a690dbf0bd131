"""knflow: pipelines of serverless functions, driven by events.

    from knflow import function, pipeline, Context, Retry, FunctionError

Importing this package loads only the SDK (pydantic; structlog on the first `ctx.log` call): a function's
container stays light. What only a pipeline's author or a run's starter needs (`pipeline`, `Pipeline`,
`PipelineInvalid`, `Storage`, `RunHandle`: the router's pipeline model and YAML, the blob store) is imported
on first use of its name (PEP 562), so `from knflow import function, Context` never loads it.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from broker.errors import KnflowError
from functions.errors import FunctionError
from functions.sdk import Context, FunctionSpec, Retry, function

if TYPE_CHECKING:
    from functions.blobs import Storage
    from knflow.handle import RunHandle
    from knflow.local import EmbeddedStack
    from router.dsl import pipeline
    from router.pipeline import Pipeline, PipelineInvalid
    from router.runs import RunRecord

# exported names imported on first use: name -> the module that defines it
_LAZY = {
    "Pipeline": "router.pipeline",
    "PipelineInvalid": "router.pipeline",
    "RunHandle": "knflow.handle",
    "Storage": "functions.blobs",
    "pipeline": "router.dsl",
}

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


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'knflow' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # the next lookup is an ordinary one
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


def load_pipeline(path: str, functions: Sequence[str] = ()) -> Pipeline:
    """Read and validate a pipeline file, loading the function modules it names (and `functions`)."""
    from router.loader import load

    return load(path, extra_functions=list(functions))


async def start_run(stack: EmbeddedStack, pipeline: Pipeline, data: Any = None) -> RunHandle:
    """Start a run on a stack (`knflow.local.EmbeddedStack`) without waiting: `handle.id` at once,
    `await handle.result()` for the run record once it has ended."""
    from knflow.handle import RunHandle

    return RunHandle(await stack.start(pipeline, data), stack)


async def execute_run(pipeline: Pipeline, data: Any = None, store: str = "sqlite://:memory:") -> RunRecord:
    """Start a run on the embedded default and wait for it (`start_run` + `result()`); returns the run record."""
    from knflow.local import EmbeddedStack
    from router.store import open_store

    async with EmbeddedStack(open_store(store)) as stack:
        return await (await start_run(stack, pipeline, data)).result()
