"""Validating a pipeline against the functions it uses: every problem, each with file, line, node, field.

Pure: the registry is asked for functions, nothing is run. `load` = read + parse + build + validate.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from functions.registry import REGISTRY, Registry, load_module
from functions.errors import ModuleLoadError
from functions.handler import function_input
from router import conditions, templates
from router.pipeline import Pipeline, PipelineInvalid, Problem, load_text, read_file


def _problem(p: Pipeline, message: str, path: tuple = (), node: str | None = None, field: str | None = None) -> Problem:
    return Problem(message, p.source, p.line_of(path) if path else None, p.name or None, node, field)


def validate(p: Pipeline, registry: Registry = REGISTRY) -> list[Problem]:
    problems = _graph_problems(p)
    cyclic = any("cycle" in x.message for x in problems)
    problems += _function_problems(p, registry)
    problems += _template_problems(p, check_upstream=not cyclic)
    problems += _condition_problems(p, check_upstream=not cyclic)
    return problems


def _graph_problems(p: Pipeline) -> list[Problem]:
    out = []
    seen: set[tuple[str, str]] = set()
    for i, e in enumerate(p.edges):
        path = ("edges", i)
        for end, nid in (("from", e.source), ("to", e.target)):
            if nid not in p.nodes:
                out.append(_problem(p, f"edge {e.source} -> {e.target}: '{end}' names unknown node '{nid}'. Known nodes: {', '.join(p.nodes)}", path + (end,), field=f"edges[{i}].{end}"))
        if e.source == e.target:
            out.append(_problem(p, f"edge {e.source} -> {e.target} points a node at itself", path, field=f"edges[{i}]"))
        if (e.source, e.target) in seen:
            out.append(_problem(p, f"edge {e.source} -> {e.target} is given twice", path, field=f"edges[{i}]"))
        seen.add((e.source, e.target))
    cycle = find_cycle(p)
    if cycle:
        out.append(_problem(p, f"the edges form a cycle: {' -> '.join(cycle)}. A pipeline must be a DAG.", p.node_path(cycle[0]), cycle[0]))
    return out


def find_cycle(p: Pipeline) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for s in p.successors[n]:
            if state.get(s) == 1:
                return stack[stack.index(s):] + [s]
            if s not in state:
                found = visit(s)
                if found:
                    return found
        stack.pop()
        state[n] = 2
        return None

    for n in p.nodes:
        if n not in state:
            found = visit(n)
            if found:
                return found
    return None


def _function_problems(p: Pipeline, registry: Registry) -> list[Problem]:
    out = []
    if p.on_failure and registry.find(p.on_failure) is None:
        out.append(_problem(p, f"on_failure names unknown function '{p.on_failure}'. {registry.hint()}", ("on_failure",), field="on_failure"))
    for node in p.nodes.values():
        if not node.function:
            continue
        spec = registry.find(node.function)
        if spec is None:
            out.append(_problem(p, f"unknown function '{node.function}'. {registry.hint()}", p.node_path(node.id, "type"), node.id, "type"))
            continue
        out += _input_problems(p, node, spec)
    return out


def _input_problems(p: Pipeline, node: Any, spec: Any) -> list[Problem]:
    """Check what can be checked before a run: required fields present, literal values of the right type."""
    doc = function_input(spec, node.inputs, node.config)
    if isinstance(doc, str) and _has_template(doc):
        return []  # the whole input is one template: known only at run time
    if not isinstance(doc, dict):
        return [_problem(p, f"inputs must be a mapping for function '{spec.name}' ({spec.input_model.__name__}), got {type(doc).__name__}", p.node_path(node.id, "inputs"), node.id, "inputs")]
    templated = {k for k, v in doc.items() if _has_template(v)}
    literal = {k: v for k, v in doc.items() if k not in templated}
    try:
        spec.input_model.model_validate(literal)
        return []
    except ValidationError as err:
        out = []
        for item in err.errors(include_url=False):
            loc = item["loc"]
            if (loc and loc[0] in templated) or (not loc and templated):
                continue  # known only at run time (a check across fields may need a templated one)
            in_config = loc and loc[0] in node.config and not (isinstance(node.inputs, dict) and loc[0] in node.inputs)
            section = "config" if in_config else "inputs"
            dotted = ".".join(str(x) for x in loc)
            fld = f"{section}.{dotted}" if dotted else section
            out.append(_problem(p, f"{item['msg']} (function '{spec.name}' expects {spec.input_model.__name__})", p.node_path(node.id, section, *loc), node.id, fld))
        return out


def _has_template(value: Any) -> bool:
    """Whether `value` holds a template; a malformed one counts (check() reports it)."""
    try:
        return bool(templates.find_refs(value))
    except templates.TemplateError:
        return True


def _template_problems(p: Pipeline, check_upstream: bool) -> list[Problem]:
    out = []
    ids = set(p.nodes)
    for node in p.nodes.values():
        for section in ("config", "inputs"):
            value = getattr(node, section)
            for message in templates.check(value, ids, where=section):
                out.append(_problem(p, message, p.node_path(node.id, section), node.id))
            try:
                refs = templates.find_refs(value, ids)
            except templates.TemplateError:  # already reported by check()
                continue
            for ref in refs:
                if check_upstream and ref.root == "node" and ref.node not in p.ancestors.get(node.id, set()):
                    out.append(_problem(
                        p,
                        f"reads {ref.text} but '{ref.node}' is not upstream of '{node.id}'. Add an edge {ref.node} -> {node.id}.",
                        p.node_path(node.id, section), node.id, section,
                    ))
    return out


def _condition_problems(p: Pipeline, check_upstream: bool) -> list[Problem]:
    out = []
    ids = set(p.nodes)
    for i, e in enumerate(p.edges):
        if not e.when or e.target not in p.nodes:
            continue
        path, fld = ("edges", i, "when"), f"edges[{i}].when"
        try:
            conditions.compile_condition(e.when)
        except Exception as exc:
            out.append(_problem(p, f"edge {e.source} -> {e.target}: {exc}", path, field=fld))
            continue
        if not check_upstream:
            continue
        upstream = p.ancestors.get(e.target, set())
        for ref in sorted(conditions.referenced_nodes(e.when, ids) - upstream):
            out.append(_problem(p, f"edge {e.source} -> {e.target}: condition reads node '{ref}', which is not upstream of '{e.target}'", path, field=fld))
    return out


def load(path: str | Path, registry: Registry = REGISTRY, extra_functions: list[str] = ()) -> Pipeline:
    """Read, parse and validate a pipeline file, loading the modules it names. Raises PipelineInvalid."""
    return load_string(read_file(path), str(path), registry, extra_functions, base_dir=Path(path).parent)


def load_string(text: str, file: str | None, registry: Registry = REGISTRY, extra_functions: list[str] = (), base_dir: Path | None = None) -> Pipeline:
    pipeline, problems, _ = load_text(text, file)
    if pipeline is not None:
        if base_dir is not None:  # paths relative to the file, made absolute so the stored pipeline finds them
            pipeline.functions = [_resolve(ref, base_dir) for ref in pipeline.functions]
        for ref in [*pipeline.functions, *extra_functions]:
            try:
                load_module(ref, base_dir)
            except ModuleLoadError as exc:
                problems.append(Problem(str(exc), file, pipeline.line_of(("functions",)), pipeline.name or None, field="functions"))
        problems += validate(pipeline, registry)
    if problems:
        raise PipelineInvalid(problems)
    return pipeline


def _resolve(ref: str, base_dir: Path) -> str:
    if not (ref.endswith(".py") or "/" in ref) or Path(ref).is_absolute():
        return ref
    candidate = Path(base_dir) / ref
    return str(candidate.resolve()) if candidate.exists() else ref
