"""Every rule of a pipeline, in one place: the document's shape (router/pipeline_doc.py), then the graph, the
functions it runs, templates, conditions and branches. Every problem, each with file, line, node, field.

Pure: the registry is asked for functions, nothing is run. `check` is the one path from a document (YAML,
JSON or the Python DSL's) to the model; the entry points that read files and import modules are router/loader.py.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from functions.handler import function_input
from functions.registry import REGISTRY, Registry
from router import conditions, templates
from router.pipeline import Pipeline, Problem
from router.pipeline_doc import Path_, from_dict


def check(
    doc: Any, file: str | None = None, lines: dict[Path_, int] | None = None, registry: Registry = REGISTRY
) -> tuple[Pipeline | None, list[Problem]]:
    """The model built from `doc` and every problem with it (none: it is valid)."""
    pipeline, problems = from_dict(doc, file, lines)
    if pipeline is not None:
        problems += validate(pipeline, registry)
    return pipeline, problems


def _problem(p: Pipeline, message: str, path: tuple = (), node: str | None = None, field: str | None = None) -> Problem:
    return Problem(message, p.source, p.line_of(path) if path else None, p.name or None, node, field)


def validate(p: Pipeline, registry: Registry = REGISTRY) -> list[Problem]:
    """The rules over a built model: those that need the whole graph or the function registry."""
    problems = _graph_problems(p)
    cyclic = any("cycle" in x.message for x in problems)
    problems += _function_problems(p, registry)
    problems += _template_problems(p, check_upstream=not cyclic)
    problems += _condition_problems(p, check_upstream=not cyclic)
    problems += _branch_problems(p)
    return problems


def _graph_problems(p: Pipeline) -> list[Problem]:
    out = []
    seen: set[tuple[str, str]] = set()
    for i, e in enumerate(p.edges):
        path = ("edges", i)
        for end, nid in (("from", e.source), ("to", e.target)):
            if nid not in p.nodes:
                out.append(
                    _problem(
                        p,
                        f"edge {e.source} -> {e.target}: '{end}' names unknown node '{nid}'. "
                        f"Known nodes: {', '.join(p.nodes)}",
                        (*path, end),
                        field=f"edges[{i}].{end}",
                    )
                )
        if e.source == e.target:
            out.append(_problem(p, f"edge {e.source} -> {e.target} points a node at itself", path, field=f"edges[{i}]"))
        if (e.source, e.target) in seen:
            out.append(_problem(p, f"edge {e.source} -> {e.target} is given twice", path, field=f"edges[{i}]"))
        seen.add((e.source, e.target))
    cycle = find_cycle(p)
    if cycle:
        out.append(
            _problem(
                p,
                f"the edges form a cycle: {' -> '.join(cycle)}. A pipeline must be a DAG.",
                p.node_path(cycle[0]),
                cycle[0],
            )
        )
    return out


def find_cycle(p: Pipeline) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for s in p.successors[n]:
            if state.get(s) == 1:
                return [*stack[stack.index(s) :], s]
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
        out.append(
            _problem(
                p,
                f"on_failure names unknown function '{p.on_failure}'. {registry.hint()}",
                ("on_failure",),
                field="on_failure",
            )
        )
    for node in p.nodes.values():
        if not node.function:
            continue
        spec = registry.find(node.function)
        if spec is None:
            out.append(
                _problem(
                    p,
                    f"unknown function '{node.function}'. {registry.hint()}",
                    p.node_path(node.id, "type"),
                    node.id,
                    "type",
                )
            )
            continue
        out += _input_problems(p, node, spec)
    return out


def _input_problems(p: Pipeline, node: Any, spec: Any) -> list[Problem]:
    """Check what can be checked before a run: required fields present, literal values of the right type."""
    doc = function_input(spec, node.inputs, node.config)
    if isinstance(doc, str) and _has_template(doc):
        return []  # the whole input is one template: known only at run time
    if not isinstance(doc, dict):
        return [
            _problem(
                p,
                f"inputs must be a mapping for function '{spec.name}' ({spec.input_model.__name__}), "
                f"got {type(doc).__name__}",
                p.node_path(node.id, "inputs"),
                node.id,
                "inputs",
            )
        ]
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
            out.append(
                _problem(
                    p,
                    f"{item['msg']} (function '{spec.name}' expects {spec.input_model.__name__})",
                    p.node_path(node.id, section, *loc),
                    node.id,
                    fld,
                )
            )
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
        sections = [("config", node.config), ("inputs", node.inputs)]
        if node.foreach is not None:
            sections.append((node.foreach_key, node.foreach))
        for section, value in sections:
            for message in templates.check(value, ids, where=section):
                out.append(_problem(p, message, p.node_path(node.id, section), node.id))
            try:
                refs = templates.find_refs(value, ids)
            except templates.TemplateError:  # already reported by check()
                continue
            for ref in refs:
                if ref.root in ("item", "index") and (section == node.foreach_key or not node.fans_out):
                    why = (
                        "the list itself cannot read them"
                        if node.fans_out
                        else f"'{node.id}' has none. Add foreach: \"{{{{ NODE.output.LIST }}}}\" (or replicas: N) "
                        "to run it once per item"
                    )
                    out.append(
                        _problem(
                            p,
                            f"reads {ref.text}, which is only set for each item of a foreach, loop or replicas "
                            f"node; {why}.",
                            p.node_path(node.id, section),
                            node.id,
                            section,
                        )
                    )
                    continue
                if check_upstream and ref.root == "node" and ref.node not in p.ancestors.get(node.id, set()):
                    out.append(
                        _problem(
                            p,
                            f"reads {ref.text} but '{ref.node}' is not upstream of '{node.id}'. "
                            f"Add an edge {ref.node} -> {node.id}.",
                            p.node_path(node.id, section),
                            node.id,
                            section,
                        )
                    )
    return out


def _branch_problems(p: Pipeline) -> list[Problem]:
    """An edge's `branch` must name a branch its source can take: a `switch` case or its default, a
    `condition`'s "true"/"false"; other functions have no branches."""
    out = []
    for i, e in enumerate(p.edges):
        source = p.nodes.get(e.source)
        if e.branch is None or source is None:
            continue
        path, fld = ("edges", i, "branch"), f"edges[{i}].branch"
        names = _branch_names(source)
        if source.function not in ("switch", "condition"):
            out.append(
                _problem(
                    p,
                    f"edge {e.source} -> {e.target}: branch {e.branch!r} needs a source that picks a branch "
                    f"(a 'switch' or 'condition' node), but '{e.source}' runs '{source.function}'. Use when: instead.",
                    path,
                    field=fld,
                )
            )
        elif names is not None and e.branch not in names:
            out.append(
                _problem(
                    p,
                    f"edge {e.source} -> {e.target}: branch {e.branch!r} is not a branch of '{e.source}'. "
                    f"Expected one of: {', '.join(repr(x) for x in names)}",
                    path,
                    field=fld,
                )
            )
    return out


def _branch_names(node: Any) -> list[str] | None:
    """The branches a `switch` / `condition` node can take, when its inputs give them literally; else None."""
    if node.function == "condition":
        return ["true", "false"]
    inputs = node.inputs if isinstance(node.inputs, dict) else {}
    doc = {**(node.config or {}), **inputs}
    cases, default = doc.get("cases"), doc.get("default", "default")
    if not isinstance(cases, list) or _has_template(cases) or not isinstance(default, str) or _has_template(default):
        return None
    names = [c.get("name") for c in cases if isinstance(c, dict)]
    if not all(isinstance(n, str) for n in names):
        return None
    return [*map(str, names), default]


def _condition_problems(p: Pipeline, check_upstream: bool) -> list[Problem]:
    out = []
    ids = set(p.nodes)
    for i, e in enumerate(p.edges):
        if not e.when or e.target not in p.nodes:
            continue  # a `branch` alone compiles to a fixed, valid expression (see _branch_problems)
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
            out.append(
                _problem(
                    p,
                    f"edge {e.source} -> {e.target}: condition reads node '{ref}', "
                    f"which is not upstream of '{e.target}'",
                    path,
                    field=fld,
                )
            )
    return out
