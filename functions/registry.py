"""Finding functions by name, and loading the modules that define them (dotted name or file path).

Builtin functions are registered lazily: their modules (httpx, jmespath ...) are imported on the first
lookup of one of their names, so that `import knflow` and a function's container stay light.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
import traceback
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from broker.errors import KnflowError
from functions.errors import InvalidFunction, ModuleLoadError, UnknownFunction

if TYPE_CHECKING:
    from functions.sdk import FunctionSpec

# builtin function name -> module that defines it
BUILTINS: dict[str, str] = {
    "http-request": "functions.builtins.http",
    "http-response": "functions.builtins.http_response",
    "json-transform": "functions.builtins.transform",
    "template": "functions.builtins.transform",
    "condition": "functions.builtins.logic",
    "switch": "functions.builtins.logic",
    "delay": "functions.builtins.utility",
    "log": "functions.builtins.utility",
    "error": "functions.builtins.utility",
    "llm-generate": "functions.builtins.ai",
    "llm-chat": "functions.builtins.ai",
    "embedding": "functions.builtins.ai",
    "mongodb-query": "functions.builtins.mongodb",
    "mongodb-insert": "functions.builtins.mongodb",
    "redis-get": "functions.builtins.redis",
    "redis-set": "functions.builtins.redis",
}
# builtins whose input is a MongoDB filter or documents: the router refuses a template that renders a `$`-key
# there (router.templates.render_without_operators), so trigger data cannot inject an operator
NO_TEMPLATED_OPERATORS = frozenset({"mongodb-query", "mongodb-insert"})


class Registry:
    def __init__(self) -> None:
        self._specs: dict[str, FunctionSpec] = {}

    def add(self, spec: FunctionSpec) -> None:
        old = self._specs.get(spec.name)
        if old is not None and old.origin != spec.origin:
            raise InvalidFunction(
                f"function name '{spec.name}' is defined twice: by {old.qualname} and by {spec.qualname}. "
                "Give one of them another name=...",
                function=spec.name,
            )
        self._specs[spec.name] = spec

    def find(self, name: str) -> FunctionSpec | None:
        spec = self._specs.get(name)
        if spec is None and name in BUILTINS:
            try:
                importlib.import_module(BUILTINS[name])
            except ImportError as exc:
                raise ModuleLoadError(
                    f"builtin '{name}' cannot load: module {BUILTINS[name]} failed to import: {exc}",
                    module=BUILTINS[name],
                ) from exc
            spec = self._specs.get(name)
        return spec

    def get(self, name: str) -> FunctionSpec:
        spec = self.find(name)
        if spec is None:
            raise UnknownFunction(f"unknown function '{name}'. {self.hint()}", function=name)
        return spec

    def names(self) -> list[str]:
        return sorted(set(self._specs) | set(BUILTINS))

    def hint(self) -> str:
        user = sorted(set(self._specs) - set(BUILTINS))
        known = ", ".join(user) if user else "none"
        return f"Functions defined by loaded modules: {known}; builtins: {', '.join(sorted(BUILTINS))}."


REGISTRY = Registry()


CLIENT_MODULES = (
    "functions.builtins.http",
    "functions.builtins.llm_server",
    "functions.builtins.mongodb",
    "functions.builtins.redis",
)


async def close_builtin_clients() -> None:
    """Close what builtins opened on this event loop (HTTP, OpenAI-compatible, MongoDB and Redis clients),
    for the modules that were loaded at all."""
    for name in CLIENT_MODULES:
        module = sys.modules.get(name)
        if module is not None:
            await module.aclose_client()


def load_module(ref: str, base_dir: str | Path | None = None) -> ModuleType:
    """Import a module that defines functions: a dotted name (`examples.funcs`) or a file path."""
    try:
        if ref.endswith(".py") or "/" in ref or "\\" in ref:
            path = Path(ref)
            if not path.is_absolute() and base_dir is not None and not path.exists():
                path = Path(base_dir) / path
            path = path.resolve()
            if not path.is_file():
                raise ModuleLoadError(f"functions module '{ref}' not found (looked for {path})", module=ref)
            for known in list(sys.modules.values()):
                if getattr(known, "__file__", None) == str(path):
                    return known  # already imported, by path or by dotted name
            digest = hashlib.sha1(str(path).encode()).hexdigest()[:8]
            mod_name = f"knflow_user_{path.stem}_{digest}"
            spec = importlib.util.spec_from_file_location(mod_name, path)
            if spec is None or spec.loader is None:  # a suffix no importer knows, such as .txt
                raise ModuleLoadError(
                    f"functions module '{ref}' cannot be imported: {path} is not a Python file", module=ref
                )
            module = importlib.util.module_from_spec(spec)
            sys.modules[mod_name] = module
            try:
                spec.loader.exec_module(module)
            except BaseException:
                del sys.modules[mod_name]
                raise
            return module
        return importlib.import_module(ref)
    except InvalidFunction as exc:
        raise ModuleLoadError(f"functions module '{ref}': {exc}", module=ref) from exc
    except KnflowError:  # ModuleLoadError, or an invalid @pipeline: its message says it all
        raise
    except Exception as exc:
        raise ModuleLoadError(f"functions module '{ref}' failed to import: {_where(exc)}", module=ref) from exc


def _where(exc: BaseException) -> str:
    """`Type: message (file:line)` of the innermost frame: enough to find the mistake, no traceback."""
    frames = traceback.extract_tb(exc.__traceback__)
    at = f" ({frames[-1].filename}:{frames[-1].lineno})" if frames else ""
    if isinstance(exc, SyntaxError) and exc.filename:
        at = f" ({exc.filename}:{exc.lineno})"
    return f"{type(exc).__name__}: {exc}{at}"
