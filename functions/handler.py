"""Running one invoke: validate the input, call the function, shape the reply.

The same code serves an in-process handler (embedded default, `knflow dev`) and the HTTP function
service (Knative). Outcomes follow DESIGN.md: `node.succeeded`, `node.failed` for what a retry cannot fix
(bad input, `FunctionError(retryable=False)`, an output that breaks the output model), and `Retryable`
(HTTP 5xx, so that the broker retries with backoff) for timeouts and unexpected exceptions.
"""

from __future__ import annotations

import time
import traceback
from typing import TYPE_CHECKING, Any
from collections.abc import Awaitable, Callable

from cloudevents.core.v1.event import CloudEvent
from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticSerializationError

from broker import events
from broker import extensions as ext
from broker import deadlines, limits, metrics, tracing
from broker.errors import DeliveryFailed
from broker.events import ErrorDoc, error_doc
from functions import blobs, node_logs
from functions.errors import FunctionError
from functions.sdk import Context, FunctionSpec

if TYPE_CHECKING:
    from functions.registry import Registry


class Retryable(DeliveryFailed):
    """The invoke failed in a way a retry may fix; the broker retries, then dead-letters it (HTTP 503).

    `body()` is what the 503 says: the error, the try's times and its node log lines (`logs`, when it
    wrote any), the same in process (`data`) as over HTTP (functions/server.py)."""

    def __init__(self, message: str, *, error: ErrorDoc):
        super().__init__(message, retryable=True, code=503, data={"error": error})
        self.error = error
        self.timing: dict[str, Any] = {}
        self.logs: dict[str, Any] | None = None

    def body(self, with_logs: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {"error": self.error, **self.timing}  # the error first: a cut body keeps it
        if with_logs and self.logs is not None:
            out["logs"] = self.logs
        return out

    def finish(self, timing: dict[str, Any] | None = None, logs: dict[str, Any] | None = None) -> Retryable:
        """Add the try's times and lines, once known."""
        if timing:
            self.timing = timing
        if logs is not None:
            self.logs = logs
        self.data = self.body()
        return self


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
    (`{"output"}` or `{"error"}`, with the try's `started_at`, `finished_at` and `duration_ms`); raises
    Retryable (with the same times)."""
    started = time.perf_counter()
    started_at = events.now_iso()
    try:
        result = await _call(spec, doc, ctx, timeout_s or spec.traits.timeout_s)
    except Retryable as exc:
        raise exc.finish(_timing(started_at, started)) from None
    result["started_at"] = started_at
    result["finished_at"] = events.now_iso()
    result["duration_ms"] = round((time.perf_counter() - started) * 1000, 3)
    return result


def _timing(started_at: str, started: float) -> dict[str, Any]:
    return {
        "started_at": started_at,
        "finished_at": events.now_iso(),
        "duration_ms": round((time.perf_counter() - started) * 1000, 3),
    }


def _where(spec: FunctionSpec, ctx: Context) -> str:
    return f"node '{ctx.node_id}' (function '{spec.name}')"


async def _call(spec: FunctionSpec, doc: Any, ctx: Context, timeout_s: float) -> dict[str, Any]:
    models = spec.models
    try:
        inp = models.input.validate_python(doc)
    except ValidationError as err:
        message, problems = describe_validation(err, f"input of {_where(spec, ctx)}")
        return {"error": error_doc("InvalidInput", message, problems)}
    try:
        async with deadlines.within(timeout_s):  # one loop timer per deadline bucket, not one per invoke
            out: object = await spec.run(inp, ctx)  # user code: a dict, another model, anything
    except TimeoutError:
        msg = f"{_where(spec, ctx)} timed out after {timeout_s:g} s"
        raise Retryable(msg, error=error_doc("Timeout", msg)) from None
    except FunctionError as exc:
        error = error_doc(exc.type, f"{_where(spec, ctx)}: {exc.message}", exc.detail)
        if exc.retryable:
            raise Retryable(error["message"], error=error) from None
        return {"error": error}
    except Exception as exc:
        msg = f"{_where(spec, ctx)} raised {type(exc).__name__}: {exc}"
        raise Retryable(msg, error=error_doc(type(exc).__name__, msg, {"traceback": traceback.format_exc()})) from None
    if type(out) is not spec.output_model:  # the common case, the output model itself, skips all of this
        if isinstance(out, BaseModel) and not isinstance(out, spec.output_model):
            out = out.model_dump(mode="json")
        if isinstance(out, dict):
            out = _validate_output(spec, out)
            if isinstance(out, dict):
                return out
        if not isinstance(out, spec.output_model):
            msg = f"{_where(spec, ctx)} returned {type(out).__name__}; expected {spec.output_model.__name__}"
            return {"error": error_doc("InvalidOutput", msg)}
    try:
        output = models.dump(out)
    except PydanticSerializationError as exc:
        return {"error": error_doc("InvalidOutput", f"{_where(spec, ctx)} returned an output that is not JSON: {exc}")}
    if (problem := limits.bad_value(output)) is not None:  # what no store or broker carries unchanged
        field = limits.field_path(problem[0])
        what = f"an output whose field {field!r}" if field else "an output that"
        msg = f"{_where(spec, ctx)} returned {what} knflow cannot carry: {problem[1]}"
        return {"error": error_doc("InvalidOutput", msg, [{"field": field, "message": problem[1]}])}
    return {"output": output}


def _validate_output(spec: FunctionSpec, out: dict) -> BaseModel | dict:
    try:
        return spec.models.output.validate_python(out)
    except ValidationError as err:
        message, problems = describe_validation(err, f"output of function '{spec.name}'")
        return {"error": error_doc("InvalidOutput", message, problems)}


async def handle_invoke(
    spec: FunctionSpec,
    invoke: CloudEvent,
    source: str,
    store: blobs.BlobStore | None = None,
    streams: bool = False,
) -> CloudEvent:
    """Answer a `dev.knflow.invoke` CloudEvent with its result event; raises Retryable.

    Blob references in the invoke's data are resolved before the input is validated, and an output over
    the blob store's threshold goes to the store, its reference into the reply (functions.blobs).
    The try's node log lines (`ctx.log`; with `streams`, its stdout and stderr too: functions/node_logs.py)
    go in the reply's data as `logs`, or with the Retryable.
    With tracing on, under a span `function NAME` whose context the reply carries back."""
    if tracing.ON:
        with tracing.function_span(invoke, spec.name):
            return tracing.reply(await _logged(spec, invoke, source, store, streams))
    return await _logged(spec, invoke, source, store, streams)


async def _logged(
    spec: FunctionSpec, invoke: CloudEvent, source: str, store: blobs.BlobStore | None, streams: bool
) -> CloudEvent:
    """The result event of `invoke`, with the try's node log lines."""
    lines = node_logs.Lines(streams)
    token = node_logs.CURRENT.set(lines)
    try:
        result = await _answer(spec, invoke, store)
    except Retryable as exc:
        raise exc.finish(logs=lines.batch()) from None
    finally:
        node_logs.CURRENT.reset(token)
    if (batch := lines.batch()) is not None:
        result["logs"] = batch
    return events.result_event(invoke, succeeded="output" in result, data=result, source=source)


async def _answer(spec: FunctionSpec, invoke: CloudEvent, store: blobs.BlobStore | None) -> dict[str, Any]:
    addr = events.address(invoke)
    metrics.invoke_started(addr, spec.name, invoke.get_time())  # knflow_node_queue_seconds
    data = invoke.get_data()
    if not isinstance(data, dict) or ("inputs" not in data and "config" not in data):
        return _invalid(invoke, "data must be a JSON object with 'inputs' and 'config'")
    ctx = Context(
        run_id=addr.run_id,
        node_id=addr.node,
        attempt=addr.tries,
        pipeline=addr.pipeline,
        function=spec.name,
        invoke_id=invoke.get_id(),
    )
    try:
        timeout_s = _timeout_s(invoke.get_extension(ext.TIMEOUT))
    except ValueError:
        return _invalid(invoke, f"extension '{ext.TIMEOUT}' must be a positive number of seconds")
    store = store or blobs.default_store()
    inputs, config = data.get("inputs"), data.get("config")
    if blobs.has_refs(inputs) or blobs.has_refs(config):  # the common case, none, awaits nothing here
        try:
            inputs = await store.resolve(inputs, run_id=addr.run_id)
            config = await store.resolve(config, run_id=addr.run_id)
        except blobs.BlobError as exc:
            return {"error": _blob_error(exc, spec, ctx, "its input")}
    result = await call(spec, function_input(spec, inputs, config), ctx, timeout_s)
    if "output" in result:
        try:
            key = lambda: blobs.attempt_key(addr.run_id, addr.node, addr.attempt)  # noqa: E731
            result["output"] = await store.offload(result["output"], key, "output")
        except blobs.BlobError as exc:
            result = {**result, "error": _blob_error(exc, spec, ctx, "its output")}
            del result["output"]
    return result


def _invalid(invoke: CloudEvent, problem: str) -> dict[str, Any]:
    """The failed result of an invoke that is not what the router sends: no retry can fix it."""
    return {"error": error_doc("InvalidEvent", f"invoke '{invoke.get_id()}' {problem}")}


def _timeout_s(raw: Any) -> float | None:
    """The invoke's `knflowtimeout` in seconds (None: the function's own); ValueError unless positive and finite."""
    if raw is None:
        return None
    timeout_s = float(raw)
    if not 0 < timeout_s < float("inf"):
        raise ValueError(raw)
    return timeout_s


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
