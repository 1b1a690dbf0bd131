"""Running one invoke: validate the input, call the function, shape the reply.

The same code serves an in-process handler (embedded default, `knflow dev`) and the HTTP function
service (Knative). Outcomes follow DESIGN.md: `node.succeeded`, `node.failed` for what a retry cannot fix
(bad input, `FunctionError(retryable=False)`, an output that breaks the output model), and `Retryable`
(HTTP 5xx, so that the broker retries with backoff) for timeouts and unexpected exceptions.
"""

from __future__ import annotations

import asyncio
import time
import traceback
from typing import TYPE_CHECKING, Any
from collections.abc import Awaitable, Callable

from cloudevents.core.v1.event import CloudEvent
from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticSerializationError

from broker import events
from broker import extensions as ext
from broker import tracing
from broker.errors import DeliveryFailed
from broker.events import ErrorDoc, error_doc
from functions import blobs
from functions.errors import FunctionError
from functions.sdk import Context, FunctionSpec

if TYPE_CHECKING:
    from functions.registry import Registry


class Retryable(DeliveryFailed):
    """The invoke failed in a way a retry may fix; the broker retries, then dead-letters it (HTTP 503)."""

    def __init__(self, message: str, *, error: ErrorDoc):
        super().__init__(message, retryable=True, code=503, data=error)
        self.error = error


def function_input(spec: FunctionSpec, inputs: Any, config: Any) -> dict[str, Any] | Any:
    """The function's input document: the node's `config` with its `inputs` laid over it."""
    if isinstance(config, dict) and isinstance(inputs, dict):
        return {**config, **inputs}
    if inputs is None or inputs == {}:
        return config if config is not None else {}
    return inputs


def describe_validation(err: ValidationError, what: str) -> tuple[str, list[dict[str, Any]]]:
    problems = []
    for item in err.errors(include_url=False):
        field = ".".join(str(p) for p in item["loc"]) or "(root)"
        problems.append({"field": field, "message": item["msg"], "type": item["type"]})
    text = "; ".join(f"field '{p['field']}': {p['message']}" for p in problems)
    return f"{what} is invalid: {text}", problems


async def call(spec: FunctionSpec, doc: Any, ctx: Context, timeout_s: float | None = None) -> dict[str, Any]:
    """Run `spec` on `doc` (within `timeout_s`, default the function's). Returns the result data
    (`{"output"}` or `{"error"}`); raises Retryable."""
    timeout_s = timeout_s or spec.traits.timeout_s
    started = time.perf_counter()
    started_at = events.now_iso()
    where = f"node '{ctx.node_id}' (function '{spec.name}')"
    try:
        inp = spec.input_model.model_validate(doc)
    except ValidationError as err:
        message, problems = describe_validation(err, f"input of {where}")
        return {"error": error_doc("InvalidInput", message, problems)}
    try:
        async with asyncio.timeout(timeout_s):
            out: object = await spec.run(inp, ctx)  # user code: a dict, another model, anything
    except TimeoutError:
        msg = f"{where} timed out after {timeout_s:g} s"
        raise Retryable(msg, error=error_doc("Timeout", msg)) from None
    except FunctionError as exc:
        error = error_doc(exc.type, f"{where}: {exc.message}", exc.detail)
        if exc.retryable:
            raise Retryable(error["message"], error=error) from None
        return {"error": error}
    except Exception as exc:
        msg = f"{where} raised {type(exc).__name__}: {exc}"
        raise Retryable(msg, error=error_doc(type(exc).__name__, msg, {"traceback": traceback.format_exc()})) from None
    if isinstance(out, BaseModel) and not isinstance(out, spec.output_model):
        out = out.model_dump(mode="json")
    if isinstance(out, dict):
        out = _validate_output(spec, out)
        if isinstance(out, dict):
            return out
    if not isinstance(out, spec.output_model):
        msg = f"{where} returned {type(out).__name__}; expected {spec.output_model.__name__}"
        return {"error": error_doc("InvalidOutput", msg)}
    try:
        output = out.model_dump(mode="json")
    except PydanticSerializationError as exc:
        return {"error": error_doc("InvalidOutput", f"{where} returned an output that is not JSON: {exc}")}
    return {
        "output": output,
        "started_at": started_at,
        "duration_ms": round((time.perf_counter() - started) * 1000, 3),
    }


def _validate_output(spec: FunctionSpec, out: dict) -> BaseModel | dict:
    try:
        return spec.output_model.model_validate(out)
    except ValidationError as err:
        message, problems = describe_validation(err, f"output of function '{spec.name}'")
        return {"error": error_doc("InvalidOutput", message, problems)}


async def handle_invoke(
    spec: FunctionSpec, invoke: CloudEvent, source: str, store: blobs.BlobStore | None = None
) -> CloudEvent:
    """Answer a `dev.knflow.invoke` CloudEvent with its result event; raises Retryable.

    Blob references in the invoke's data are resolved before the input is validated, and an output over
    the blob store's threshold goes to the store, its reference into the reply (functions.blobs).
    With tracing on, under a span `function NAME` whose context the reply carries back."""
    if tracing.ON:
        with tracing.function_span(invoke, spec.name):
            return tracing.reply(await _answer(spec, invoke, source, store))
    return await _answer(spec, invoke, source, store)


async def _answer(spec: FunctionSpec, invoke: CloudEvent, source: str, store: blobs.BlobStore | None) -> CloudEvent:
    addr = events.address(invoke)
    data = invoke.get_data()
    if not isinstance(data, dict) or ("inputs" not in data and "config" not in data):
        msg = f"invoke '{invoke.get_id()}' data must be a JSON object with 'inputs' and 'config'"
        return events.result_event(
            invoke, succeeded=False, data={"error": error_doc("InvalidEvent", msg)}, source=source
        )
    ctx = Context(run_id=addr.run_id, node_id=addr.node, attempt=addr.tries, pipeline=addr.pipeline, function=spec.name)
    raw_timeout = invoke.get_extension(ext.TIMEOUT)
    timeout_s = float(raw_timeout) if raw_timeout is not None else None
    store = store or blobs.default_store()
    try:
        inputs = await store.resolve(data.get("inputs"), run_id=addr.run_id)
        config = await store.resolve(data.get("config"), run_id=addr.run_id)
    except blobs.BlobError as exc:
        result = {"error": _blob_error(exc, spec, ctx, "its input")}
    else:
        result = await call(spec, function_input(spec, inputs, config), ctx, timeout_s)
    if "output" in result:
        try:
            key = lambda: blobs.attempt_key(addr.run_id, addr.node, addr.attempt)  # noqa: E731
            result["output"] = await store.offload(result["output"], key, "output")
        except blobs.BlobError as exc:
            result = {"error": _blob_error(exc, spec, ctx, "its output")}
    return events.result_event(invoke, succeeded="output" in result, data=result, source=source)


def _blob_error(exc: blobs.BlobError, spec: FunctionSpec, ctx: Context, what: str) -> ErrorDoc:
    """The node's error for a blob that cannot be read or written; raises Retryable when the store may recover."""
    error = error_doc(
        "BlobError", f"node '{ctx.node_id}' (function '{spec.name}'), {what}: {exc.message}", {"blob": exc.url}
    )
    if exc.retryable:
        raise Retryable(error["message"], error=error)
    return error


def in_process(registry: Registry) -> Callable[[CloudEvent], Awaitable[CloudEvent]]:
    """A subscriber that runs any registered function in this process, picked by `knflowfunction`."""

    async def handle(event: CloudEvent) -> CloudEvent:
        name = str(event.get_extension(ext.FUNCTION) or "")
        spec = registry.find(name)
        if spec is None:
            raise DeliveryFailed(f"no function '{name}' in this process. {registry.hint()}", retryable=False, code=404)
        return await handle_invoke(spec, event, source=f"/knflow/functions/{spec.name}")

    return handle
