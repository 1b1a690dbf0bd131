"""The function SDK: `@function`, `Context`, `Retry` and the traits a function carries to Knative.

`Retry` is the one retry policy of every path (`broker.retry`, re-exported here and as `knflow.Retry`).

`@function` checks the decorated callable when it is applied and reports every problem at once. A
decorated function is a `FunctionSpec`: called outside a pipeline it runs the user's code; called while
a `@pipeline` is being recorded it records a node instead (the recorder is installed by the router's
Python pipeline builder through `RECORDER`, so this module needs nothing from `router`).
"""

from __future__ import annotations

import functools
import inspect
import re
import typing
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Generic, ParamSpec, TypeVar, overload
from collections.abc import Awaitable, Callable

from pydantic import BaseModel

from broker.retry import Retry
from functions import deployment
from functions.deployment import Deployment
from functions.errors import InvalidFunction

if typing.TYPE_CHECKING:
    from functions.blobs import Storage
    from functions.node_logs import Lines

_P = ParamSpec("_P")  # a decorated function's parameters
_R = TypeVar("_R", bound=Awaitable[Any])  # and what calling it returns: the coroutine of its output model

NAME_PATTERN = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
NAME_MAX_CHARS = 50  # room for a "knflow-" prefix and a revision suffix within 63
CPU_PATTERN = re.compile(r"^([0-9]+(\.[0-9]+)?|[0-9]+m)$")
MEMORY_PATTERN = re.compile(r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|K|M|G|T)?$")

# Set by a pipeline recorder: called instead of the user code as `recorder(spec, args, kwargs)`.
RECORDER: ContextVar[Callable[[FunctionSpec, tuple, dict], Any] | None] = ContextVar("knflow_recorder", default=None)


@dataclass(frozen=True)
class Traits:
    """Deployment traits: resources, GPU and autoscaling. Knative manifests are made from these."""

    timeout_s: float = 60.0
    retry: Retry = field(default_factory=Retry)
    cpu: str | None = None
    memory: str | None = None
    gpu: int = 0
    min_scale: int = 0
    max_scale: int = 0
    concurrency: int = 0
    # image, env, volumes, placement and pod metadata of the function's Service (functions/deployment.py)
    deploy: Deployment = field(default_factory=Deployment)

    def problems(self) -> list[str]:
        out = list(self.retry.problems())
        if not isinstance(self.timeout_s, (int, float)) or self.timeout_s <= 0:
            out.append(f"timeout_s must be a number > 0, got {self.timeout_s!r}")
        if self.cpu is not None and not CPU_PATTERN.match(str(self.cpu)):
            out.append(f"cpu must be a Kubernetes quantity such as '500m' or '2', got {self.cpu!r}")
        if self.memory is not None and not MEMORY_PATTERN.match(str(self.memory)):
            out.append(f"memory must be a Kubernetes quantity such as '512Mi' or '4Gi', got {self.memory!r}")
        for name in ("gpu", "min_scale", "max_scale", "concurrency"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                out.append(f"{name} must be an integer >= 0, got {value!r}")
        if (
            isinstance(self.max_scale, int)
            and isinstance(self.min_scale, int)
            and self.max_scale
            and self.max_scale < self.min_scale
        ):
            out.append(f"max_scale ({self.max_scale}) must be >= min_scale ({self.min_scale}), or 0 for no limit")
        return out


@dataclass
class Context:
    """What a running function knows about its invocation."""

    run_id: str
    node_id: str
    attempt: int
    pipeline: str
    function: str = ""
    # the invoke's CloudEvent id, `{run}:{node}:{attempt}`: the same for every delivery and broker retry of one
    # invoke (delivery is at least once), new for a redrive; the key that makes a side effect idempotent
    invoke_id: str = ""
    log: Any = field(default=None, repr=False)
    _storage: Any = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.log is None:  # taken now: a thread the function starts has no context of the invoke's own
            self.log = _BoundLogger(_current_lines(), {}, (self.run_id, self.pipeline, self.node_id, self.attempt))

    @property
    def storage(self) -> Storage:
        """The function's own files in the blob store, under `runs/{run}/{node}/files/` (functions.blobs.Storage)."""
        if self._storage is None:
            from functions.blobs import Storage

            self._storage = Storage(self.run_id, self.node_id)
        return self._storage


_lines_now: Callable[[], Lines | None] | None = None  # node_logs.CURRENT.get, once node_logs is imported


def _current_lines() -> Lines | None:
    """The lines of the invoke this runs in (functions/node_logs.py), if any; node_logs is imported on the
    first call (an import statement per Context costs more than the rest of it)."""
    global _lines_now
    if _lines_now is None:
        from functions.node_logs import CURRENT

        _lines_now = CURRENT.get
    return _lines_now()


class _BoundLogger:
    """`ctx.log`: a structlog logger bound to the invocation, imported on first use (structlog and rich
    cost ~90 ms of a cold start that most invocations never log in). Each call is also one of the node's
    log lines (functions/node_logs.py), with what `bind()` added and the call's key/values as its fields.
    Built for every invoke and used by few: it holds the invocation's run, pipeline, node and attempt as
    they are, and binds them only when it first logs."""

    __slots__ = ("_fields", "_invocation", "_lines", "_logger")

    def __init__(self, lines: Lines | None, fields: dict[str, Any], invocation: tuple[str, str, str, int]) -> None:
        self._lines = lines
        self._fields = fields  # bound by the function with bind(), as opposed to the invocation's own
        self._invocation = invocation
        self._logger: Any = None

    def _structlog(self) -> Any:
        if self._logger is None:
            import structlog

            run, pipeline, node, attempt = self._invocation
            self._logger = structlog.get_logger("knflow.function").bind(
                run=run, pipeline=pipeline, node=node, attempt=attempt, **self._fields
            )
        return self._logger

    def __getattr__(self, name: str) -> Any:  # structlog's other methods (new, unbind, ...): not node log lines
        return getattr(self._structlog(), name)

    def bind(self, **fields: Any) -> _BoundLogger:
        return _BoundLogger(self._lines, {**self._fields, **fields}, self._invocation)

    def _emit(self, level: str, event: Any, args: tuple[Any, ...], fields: dict[str, Any]) -> Any:
        method = getattr(self._structlog(), level)
        if self._lines is None:
            return method(event, *args, **fields)
        self._lines.log(level, event, args, {**self._fields, **fields})
        from functions.node_logs import quiet

        with quiet():  # the process's own log line is not one of the node's stderr lines as well
            return method(event, *args, **fields)

    def debug(self, event: Any = None, *args: Any, **fields: Any) -> Any:
        return self._emit("debug", event, args, fields)

    def info(self, event: Any = None, *args: Any, **fields: Any) -> Any:
        return self._emit("info", event, args, fields)

    def warning(self, event: Any = None, *args: Any, **fields: Any) -> Any:
        return self._emit("warning", event, args, fields)

    warn = warning

    def error(self, event: Any = None, *args: Any, **fields: Any) -> Any:
        return self._emit("error", event, args, fields)

    def critical(self, event: Any = None, *args: Any, **fields: Any) -> Any:
        return self._emit("critical", event, args, fields)

    def exception(self, event: Any = None, *args: Any, **fields: Any) -> Any:
        return self._emit("exception", event, args, fields)

    def msg(self, event: Any = None, *args: Any, **fields: Any) -> Any:
        return self._emit("info", event, args, fields)


@dataclass(eq=False)
class FunctionSpec(Generic[_P, _R]):
    """A decorated function: the user's callable, its models and its traits.

    Type checkers see the user's signature: `await f(inp, ctx)` is typed as `f` is. A call that does not fit it
    (a `@pipeline` body calls functions with node results and `_options`) is typed `Any`.
    """

    name: str
    fn: Callable[_P, _R]
    input_model: type[BaseModel]
    output_model: type[BaseModel]
    traits: Traits
    takes_context: bool
    description: str = ""

    @property
    def qualname(self) -> str:
        return f"{self.fn.__module__}.{self.fn.__qualname__}"

    @property
    def origin(self) -> str:
        """Where the function is defined, whatever name its module was imported under."""
        code = getattr(self.fn, "__code__", None)
        return f"{code.co_filename}:{self.fn.__qualname__}" if code else self.qualname

    @overload
    def __call__(self, *args: _P.args, **kwargs: _P.kwargs) -> _R: ...

    @overload
    def __call__(self, *args: Any, **kwargs: Any) -> Any: ...

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        recorder = RECORDER.get()
        if recorder is not None:
            return recorder(self, args, kwargs)
        return self.fn(*args, **kwargs)

    def run(self, inp: BaseModel, ctx: Context) -> Awaitable[BaseModel]:
        """The user's coroutine for one invoke (awaited by the caller: no coroutine of our own around it)."""
        fn: Callable[..., Awaitable[BaseModel]] = self.fn
        if self.takes_context:
            return fn(inp, ctx)
        return fn(inp)

    @functools.cached_property
    def models(self) -> Models:
        """The input and output models' validators and serializer, built once per function."""
        return Models(self.input_model, self.output_model)


class Models:
    """A function's models through cached `TypeAdapter`s: validation and dumping without the per-call
    Python layers of `model_validate` and `model_dump` (an invoke of a small function pays them twice)."""

    __slots__ = ("_output_type", "_serialize", "input", "output")

    def __init__(self, input_model: type[BaseModel], output_model: type[BaseModel]) -> None:
        from pydantic import TypeAdapter  # pydantic.type_adapter: loaded by the first invoke, not by `import knflow`

        self.input: TypeAdapter[BaseModel] = TypeAdapter(input_model)
        self.output: TypeAdapter[BaseModel] = TypeAdapter(output_model)
        self._output_type = output_model
        self._serialize = self.output.serializer.to_python

    def dump(self, out: BaseModel) -> Any:
        """`out.model_dump(mode="json")`; a subclass of the output model dumps its own fields, as model_dump does."""
        if type(out) is self._output_type:
            return self._serialize(out, mode="json")
        return out.model_dump(mode="json")


def _model_type(annotation: Any) -> type[BaseModel] | None:
    if inspect.isclass(annotation) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _signature_problems(fn: Callable, label: str) -> tuple[list[str], dict]:
    problems: list[str] = []
    found: dict[str, Any] = {"input": None, "output": None, "ctx": False}
    if not inspect.iscoroutinefunction(fn):
        problems.append("it must be defined with 'async def'")
    try:
        hints = typing.get_type_hints(fn)
    except Exception as exc:  # a NameError in a string annotation, for instance
        return [*problems, f"its type annotations cannot be resolved ({exc})"], found
    params = list(inspect.signature(fn).parameters.values())
    if not params or params[0].kind not in (params[0].POSITIONAL_ONLY, params[0].POSITIONAL_OR_KEYWORD):
        problems.append("it must take a pydantic model as its first parameter")
    else:
        found["input"] = _model_type(hints.get(params[0].name))
        if found["input"] is None:
            got = hints.get(params[0].name, "no annotation")
            problems.append(
                f"the first parameter '{params[0].name}' must be annotated with a pydantic model, got {_type_name(got)}"
            )
    if len(params) > 2:
        problems.append(f"it takes {len(params)} parameters; expected (input, ctx: Context) or (input)")
    elif len(params) == 2:
        if hints.get(params[1].name) is not Context:
            got = hints.get(params[1].name, "no annotation")
            problems.append(
                f"the second parameter '{params[1].name}' must be annotated with knflow.Context, got {_type_name(got)}"
            )
        found["ctx"] = True
    found["output"] = _model_type(hints.get("return"))
    if found["output"] is None:
        problems.append(
            f"the return type must be a pydantic model, got {_type_name(hints.get('return', 'no annotation'))}"
        )
    return problems, found


def _type_name(tp: Any) -> str:
    return tp if isinstance(tp, str) else getattr(tp, "__name__", repr(tp))


@overload
def function(fn: Callable[_P, _R]) -> FunctionSpec[_P, _R]: ...


@overload
def function(
    fn: None = None,
    *,
    name: str | None = None,
    timeout_s: float = 60.0,
    retries: int | Retry = 0,
    cpu: str | None = None,
    memory: str | None = None,
    gpu: int | dict[str, Any] = 0,
    min_scale: int = 0,
    max_scale: int = 0,
    concurrency: int = 0,
    description: str | None = None,
    register: bool = True,
    image: str | None = None,
    env: dict[str, Any] | None = None,
    volumes: list[dict[str, Any]] | None = None,
    node_selector: dict[str, str] | None = None,
    tolerations: list[dict[str, Any]] | None = None,
    service_account: str | None = None,
    annotations: dict[str, str] | None = None,
    labels: dict[str, str] | None = None,
    gpu_memory: str | None = None,
) -> Callable[[Callable[_P, _R]], FunctionSpec[_P, _R]]: ...


def function(
    fn: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    timeout_s: float = 60.0,
    retries: int | Retry = 0,
    cpu: str | None = None,
    memory: str | None = None,
    gpu: int | dict[str, Any] = 0,
    min_scale: int = 0,
    max_scale: int = 0,
    concurrency: int = 0,
    description: str | None = None,
    register: bool = True,
    image: str | None = None,
    env: dict[str, Any] | None = None,
    volumes: list[dict[str, Any]] | None = None,
    node_selector: dict[str, str] | None = None,
    tolerations: list[dict[str, Any]] | None = None,
    service_account: str | None = None,
    annotations: dict[str, str] | None = None,
    labels: dict[str, str] | None = None,
    gpu_memory: str | None = None,
) -> Any:
    """Declare a knflow function: `async def f(inp: Model, ctx: Context) -> Model`.

    Every problem with the signature or the traits is reported at once, when the decorator is applied.
    `gpu` is a count or `{count: 1, pool: NAME}`; `image` ... `gpu_memory` are the function's deployment
    settings (functions/deployment.py), which a node's `deploy:` in YAML can override.
    """
    settings = {
        "image": image,
        "env": env,
        "volumes": volumes,
        "node_selector": node_selector,
        "tolerations": tolerations,
        "service_account": service_account,
        "annotations": annotations,
        "labels": labels,
        "gpu": gpu if isinstance(gpu, dict) else None,
        "gpu_memory": gpu_memory,
    }
    deploy, deploy_problems = deployment.parse(
        {k: v for k, v in settings.items() if v is not None}, allow_gpu_count=False
    )
    gpu_count = gpu.get("count", 1) if isinstance(gpu, dict) else gpu
    if gpu_count == 0 and gpu_memory is not None:  # asking for GPU memory is asking for a GPU
        gpu_count = 1

    def decorate(target: Callable[..., Any]) -> FunctionSpec:
        fname = name or target.__name__.replace("_", "-").lower()
        problems, found = _signature_problems(target, fname)
        if not isinstance(fname, str) or not NAME_PATTERN.match(fname) or len(fname) > NAME_MAX_CHARS:
            problems.append(
                f"the name {fname!r} must be lowercase letters, digits and '-', start with a letter, "
                f"at most {NAME_MAX_CHARS} characters (it names a Knative Service)"
            )
        retry = retries if isinstance(retries, Retry) else Retry(retries=retries)
        traits = Traits(timeout_s, retry, cpu, memory, gpu_count, min_scale, max_scale, concurrency, deploy)
        problems += [*traits.problems(), *(msg for _, msg in deploy_problems)]
        if problems:
            count = "1 reason" if len(problems) == 1 else f"{len(problems)} reasons"
            raise InvalidFunction(f"function '{fname}' is invalid for {count}: " + "; ".join(problems), function=fname)
        spec = FunctionSpec(
            name=fname,
            fn=target,
            input_model=found["input"],
            output_model=found["output"],
            traits=traits,
            takes_context=found["ctx"],
            description=description or inspect.getdoc(target) or "",
        )
        if register:
            from functions.registry import REGISTRY

            REGISTRY.add(spec)
        return spec

    return decorate(fn) if fn is not None else decorate
