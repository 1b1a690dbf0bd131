"""Python pipelines, FlowHub style: inside a `@pipeline` function, calling `@function`s records nodes.

    @pipeline(name="media")
    def media(trigger):
        text = transcribe(trigger)                  # inputs: {{ trigger.data }}
        mood = classify(text)                       # edge transcribe -> classify, inputs {{ transcribe.output }}
        a = generate(prompt=text.text, style="calm", _id="generate-a")
        b = generate(prompt=text.text, style="bold", _id="generate-b")
        return pick(a, b)                           # fan-in: positional results fill the input fields in order

A result's attributes are lookups into its output (`text.text` -> `{{ transcribe.output.text }}`).
Keyword arguments starting with `_` set node options: `_id`, `_when` (CEL, on every incoming edge),
`_config`, `_retry`, `_timeout_s`, `_run_on`, `_deploy` (a node's `deploy:` settings); fan-out with
`_foreach=fetch.items` (or `_loop`, its alias)
or `_replicas=4`, and `_concurrency=K`, the item read as `item` / `index` (`from router.dsl import item`);
`_branch=(route, "positive")` adds the edge route -> node taken when `route` (a `switch` or `condition`)
picks that branch. The calls record the document the YAML form holds (nodes, edges, the line of each call),
and applying the decorator runs router.validation.check on it, as for YAML: the same model, the same rules.
"""

from __future__ import annotations

import inspect
import os
import sys
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from functions.errors import InvalidFunction
from functions.sdk import RECORDER, FunctionSpec, Retry
from router.pipeline import Pipeline, PipelineInvalid, Problem
from router.pipeline_doc import did_you_mean

OPTIONS = {
    "_id",
    "_when",
    "_config",
    "_retry",
    "_timeout_s",
    "_run_on",
    "_deploy",
    "_foreach",
    "_loop",
    "_replicas",
    "_concurrency",
    "_branch",
}


class Ref:
    """A lookup into the trigger, the variables or a node's output, recorded as a `{{ ... }}` template."""

    def __init__(self, root: str, node: str | None = None, path: tuple = ()) -> None:
        self._root, self._node, self._path = root, node, path

    def __getattr__(self, name: str) -> Ref:
        if name.startswith("__"):
            raise AttributeError(name)
        return Ref(self._root, self._node, (*self._path, name))

    def __getitem__(self, key: int | str) -> Ref:
        return Ref(self._root, self._node, (*self._path, key))

    def template(self) -> str:
        text = self._root
        for part in self._path:
            text += f"[{part}]" if isinstance(part, int) else (f"['{part}']" if not part.isidentifier() else f".{part}")
        return "{{ " + text + " }}"

    def __repr__(self) -> str:
        return f"Ref({self.template()})"

    def __bool__(self) -> bool:
        raise InvalidFunction(
            f"{self.template()} is only known when the pipeline runs; a @pipeline body cannot branch on it. "
            "Use _when='...' (a CEL condition) on the node that should depend on it."
        )


class NodeRef(Ref):
    def __init__(self, node: str) -> None:
        super().__init__(f"{node}.output", node)
        self._id = node

    @property
    def id(self) -> str:
        return self._id


item = Ref("item")  # inside a fan-out node: the item it runs for
index = Ref("index")  # and its position


class _Recorder:
    """Records each call as a node of the pipeline document (the shape YAML gives), with the line of the call."""

    def __init__(self, name: str, source: str | None) -> None:
        self.name, self.source = name, source
        self.nodes: dict[str, dict[str, Any]] = {}
        self.edges: list[dict[str, Any]] = []
        self.lines: dict[tuple, int] = {}
        self.specs: list[FunctionSpec] = []

    def __call__(self, spec: FunctionSpec, args: tuple, kwargs: dict) -> NodeRef:
        options = {k: kwargs.pop(k) for k in list(kwargs) if k in OPTIONS}
        unknown = [k for k in kwargs if k.startswith("_")]
        if unknown:
            hints = "".join(did_you_mean(k, OPTIONS, "dsl", kwargs[k]) for k in unknown)
            raise InvalidFunction(
                f"pipeline '{self.name}': {spec.name}() got unknown option(s) {', '.join(unknown)}{hints}; "
                f"expected {', '.join(sorted(OPTIONS))}"
            )
        node_id = options.get("_id") or self._fresh_id(spec.name)
        if node_id in self.nodes:
            raise InvalidFunction(
                f"pipeline '{self.name}': node id '{node_id}' is used twice; pass _id='...' to name the second one"
            )
        deps: list[str] = []
        node: dict[str, Any] = {"id": node_id, "function": spec.name, "inputs": self._inputs(spec, args, kwargs, deps)}
        for key in ("_foreach", "_loop"):
            if options.get(key) is not None:
                node[key[1:]] = self._convert(options[key], deps)
        retry = self._retry(spec, options.get("_retry"))
        node |= {
            "config": self._convert(options.get("_config"), deps),
            "runOn": options.get("_run_on"),
            "retry": vars(retry) if retry is not None else None,
            "timeout_s": options.get("_timeout_s"),
            "deploy": options.get("_deploy"),
            "replicas": options.get("_replicas"),
            "concurrency": options.get("_concurrency"),
        }
        branch = self._branch(spec, options.get("_branch"), deps)
        self._record(spec, {k: v for k, v in node.items() if v is not None})
        for dep in deps:
            if not any(e["from"] == dep and e["to"] == node_id for e in self.edges):
                edge = {"from": dep, "to": node_id, "when": options.get("_when")}
                edge["branch"] = branch[1] if branch is not None and branch[0].id == dep else None
                self.edges.append({k: v for k, v in edge.items() if v is not None})
                self._mark(("edges", len(self.edges) - 1))
        return NodeRef(node_id)

    def _branch(self, spec: FunctionSpec, branch: Any, deps: list[str]) -> tuple[NodeRef, str] | None:
        if branch is None:
            return None
        if not (
            isinstance(branch, tuple)
            and len(branch) == 2
            and isinstance(branch[0], NodeRef)
            and isinstance(branch[1], str)
        ):
            raise InvalidFunction(
                f"pipeline '{self.name}': {spec.name}() _branch must be (NODE, 'NAME'), the result of a switch or "
                f"condition call and a branch name; got {branch!r}"
            )
        if branch[0].id not in deps:
            deps.append(branch[0].id)
        return branch

    def _record(self, spec: FunctionSpec, node: dict[str, Any]) -> None:
        self._mark(("nodes", len(self.nodes)))
        self.nodes[node["id"]] = node
        if spec not in self.specs:
            self.specs.append(spec)

    def _mark(self, path: tuple) -> None:
        """Note the line of the @pipeline body that is calling, so a problem can name it."""
        frame = sys._getframe(1)
        while frame is not None and frame.f_code.co_filename != self.source:
            frame = frame.f_back  # type: ignore[assignment]
        if frame is not None:
            self.lines[path] = frame.f_lineno

    def _retry(self, spec: FunctionSpec, raw: Any) -> Retry | None:
        """`_retry=3` or `_retry=Retry(...)`, checked now: a pipeline is valid when it is defined."""
        retry = Retry(retries=raw) if isinstance(raw, int) and not isinstance(raw, bool) else raw
        if retry is not None and (not isinstance(retry, Retry) or retry.problems()):
            why = "; ".join(retry.problems()) if isinstance(retry, Retry) else f"got {retry!r}"
            raise InvalidFunction(
                f"pipeline '{self.name}': {spec.name}() _retry must be a count or a valid Retry: {why}"
            )
        return retry

    def _fresh_id(self, base: str) -> str:
        if base not in self.nodes:
            return base
        n = 2
        while f"{base}-{n}" in self.nodes:
            n += 1
        return f"{base}-{n}"

    def _inputs(self, spec: FunctionSpec, args: tuple, kwargs: dict, deps: list[str]) -> Any:
        if len(args) == 1 and not kwargs:
            return self._convert(args[0], deps)
        fields = list(spec.input_model.model_fields)
        if len(args) > len(fields):
            raise InvalidFunction(
                f"pipeline '{self.name}': {spec.name}() takes at most {len(fields)} positional argument(s) "
                f"({', '.join(fields)}), got {len(args)}"
            )
        out = {fields[i]: self._convert(a, deps) for i, a in enumerate(args)}
        for key, value in kwargs.items():
            if key in out:
                raise InvalidFunction(f"pipeline '{self.name}': {spec.name}() got field '{key}' twice")
            out[key] = self._convert(value, deps)
        return out

    def _convert(self, value: Any, deps: list[str]) -> Any:
        if isinstance(value, Ref):
            if value._node is not None and value._node not in deps:
                deps.append(value._node)
            return value.template()
        if isinstance(value, dict):
            return {k: self._convert(v, deps) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self._convert(v, deps) for v in value]
        return value


def pipeline(
    fn: Callable | None = None,
    *,
    name: str | None = None,
    description: str = "",
    variables: dict[str, Any] | None = None,
    trigger: dict[str, Any] | None = None,
    on_failure: FunctionSpec | str | None = None,
    status: str | None = None,
) -> Any:
    """Record a pipeline from a function body that calls `@function`s; returns the validated Pipeline."""

    def decorate(body: Callable) -> Pipeline:
        pname = name or body.__name__.replace("_", "-").lower()
        source = inspect.getsourcefile(body)
        recorder = _Recorder(pname, source)
        params = list(inspect.signature(body).parameters)
        refs = [Ref("trigger.data"), Ref("variables")][: len(params)]
        token = RECORDER.set(recorder)
        try:
            body(*refs)
        finally:
            RECORDER.reset(token)
        if not recorder.nodes:
            problem = Problem("the @pipeline body called no @function, so the pipeline has no nodes", source)
            raise PipelineInvalid([replace(problem, line=body.__code__.co_firstlineno, pipeline=pname)])
        handler = on_failure.name if isinstance(on_failure, FunctionSpec) else on_failure
        specs = [*recorder.specs, on_failure] if isinstance(on_failure, FunctionSpec) else recorder.specs
        doc = {
            "metadata": {"name": pname, "description": description or inspect.getdoc(body) or ""},
            "trigger": trigger,
            "variables": dict(variables or {}),
            "functions": _modules(list(dict.fromkeys(specs)), source),
            "on_failure": handler,
            "status": status,
            "nodes": list(recorder.nodes.values()),
            "edges": recorder.edges,
        }
        doc = {k: v for k, v in doc.items() if v is not None}
        from router.validation import check  # not at import: `import knflow` stays light (no CEL, no orjson)

        p, problems = check(doc, source, {(): body.__code__.co_firstlineno, **recorder.lines})
        if problems or p is None:
            raise PipelineInvalid(problems)
        return p

    return decorate(fn) if fn is not None else decorate


def _modules(specs: list[FunctionSpec], source: str | None) -> list[str]:
    """Where the pipeline's functions are defined, as `functions:` entries of the exported YAML."""
    out: list[str] = []
    for spec in specs:
        module = spec.fn.__module__
        if module.startswith("functions.builtins"):
            continue
        mod = sys.modules.get(module)
        if module == "__main__" or module.startswith("knflow_user_"):
            ref = getattr(mod, "__file__", None) or source
            ref = os.path.relpath(ref) if ref and not os.path.relpath(ref).startswith("..") else ref
        else:
            ref = module
        if ref and ref not in out:
            out.append(ref)
    return out
