"""Pure: `{{ path }}` lookups in node `inputs` and `config`. Nothing ever executes; a template only reads.

Roots: `trigger` (the trigger CloudEvent as a dict), `variables`, `NODE.output` (or `nodes['NODE'].output`
for any id), `$now`, `$run`, and `item` / `index` inside a foreach node. Segments: `.key`, `[0]` (negative
counts from the end), `['key']`, `["key"]`. A root name wins over a node of the same name; reach such a
node as `nodes['trigger'].output`.

Rendering rules:
- A string that is exactly one template (surrounding whitespace allowed) becomes the looked-up value with
  its JSON type (object, list, number, bool, null). The value is shared with the scope, not copied.
- A template inside text renders as text: strings as they are, numbers as `str()`, booleans as
  `true`/`false`, null as the empty string, objects and lists as compact JSON.
- Dict keys are not templated; dict values and list items are, recursively. Other values pass through.
- A lookup through null (a skipped node's output, a null field) gives null, so `{{ skipped.output.x }}`
  is null, and "" inside text.
- `render_without_operators` (for the functions that take MongoDB filters and documents) also refuses a
  whole-value template whose value holds a key starting with `$` at any depth: operators come only from
  what the pipeline wrote (`{password: {$eq: "{{ trigger.data.password }}"}}`), never from trigger data or
  outputs (`{password: "{{ trigger.data.password }}"}` with `{"$ne": null}` sent would match every document).
"""

from __future__ import annotations

import difflib
import enum
import functools
import re
from dataclasses import dataclass
from typing import Any, Literal

from broker.errors import KnflowError
from functions.values import as_text

ROOTS = ("trigger", "variables", "$now", "$run", "item", "index")
_TEMPLATE = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
_ROOT = re.compile(r"\$?\w[\w-]*")
_SEGMENT = re.compile(r"""\.([\w$-]+)|\[(-?\d+)\]|\['([^']*)'\]|\["([^"]*)"\]""")
_PLAIN_KEY = re.compile(r"[A-Za-z_][\w-]*")
_KEYS_SHOWN = 10
_KINDS = {bool: "a boolean", int: "a number", float: "a number", str: "a string"}


class TemplateError(KnflowError):
    """A malformed template, an unknown name, or a lookup that found nothing (`template` names it; `where`
    is the place it was written, `segment` the part of a lookup that found nothing)."""

    def __init__(
        self, message: str, *, template: str | None = None, where: str | None = None, segment: object = None
    ) -> None:
        super().__init__(message, template=template, where=where, segment=segment)
        self.template = template
        self.where = where
        self.segment = segment


class _Missing(enum.Enum):
    MISSING = "MISSING"


MISSING = _Missing.MISSING
"""`Scope.item` / `Scope.index` outside a foreach node."""


@dataclass(frozen=True, slots=True)
class Ref:
    """One `{{ ... }}` lookup. `path` follows the root; for a node it follows `.output`."""

    root: Literal["trigger", "variables", "node", "$now", "$run", "item", "index"]
    node: str | None
    path: tuple[str | int, ...]
    text: str


@dataclass(frozen=True, slots=True)
class Scope:
    """What templates can read. `outputs` maps node id to output; a skipped node maps to None."""

    trigger: dict[str, Any]
    variables: dict[str, Any]
    outputs: dict[str, Any]
    run_id: str
    now: str
    item: Any = MISSING
    index: int | _Missing = MISSING


def find_refs(value: Any, node_ids: set[str] | None = None) -> list[Ref]:
    """Every template reference in a nested value. Raises TemplateError at the first problem.

    With `node_ids`, a name that is neither a root nor a node id is an error; without, any name is
    taken for a node id.
    """
    refs: list[Ref] = []
    for where, text in _strings(value, ""):
        parts, problems = _parse(text, node_ids)
        if problems:
            raise TemplateError(_at(where, problems[0]), template=text, where=where or None)
        refs.extend(p for p in parts if isinstance(p, Ref))
    return refs


def check(value: Any, node_ids: set[str] | None, where: str = "") -> list[str]:
    """Every problem in a nested value's templates, as messages prefixed with their place under `where`."""
    problems: list[str] = []
    for place, text in _strings(value, where):
        problems.extend(_at(place, p) for p in _parse(text, node_ids)[1])
    return problems


def render(value: Any, scope: Scope) -> Any:
    """`value` with every template looked up in `scope` (see the module docstring for the rules)."""
    if isinstance(value, str):
        compiled = _compile(value)
        if compiled is None:
            return value
        if isinstance(compiled, Ref):
            return _lookup(compiled, scope)
        return "".join(p if isinstance(p, str) else as_text(_lookup(p, scope)) for p in compiled)
    if isinstance(value, dict):
        return {k: render(v, scope) for k, v in value.items()}
    if isinstance(value, list):
        return [render(v, scope) for v in value]
    return value


class TemplatedOperator(TemplateError):
    """A template that would put a `$`-key (a MongoDB operator) into a filter or a document."""


def render_without_operators(value: Any, scope: Scope, where: str = "") -> Any:
    """`render`, refusing a whole-value template whose value holds a `$`-key (TemplatedOperator says where)."""
    if isinstance(value, str):
        compiled = _compile(value)
        if isinstance(compiled, Ref):
            found = _lookup(compiled, scope)
            path = _operator_path(found, "")
            if path is not None:
                key = path.rpartition("/")[2]
                inside = f" at {path.rpartition('/')[0]!r}" if "/" in path.strip("/") else ""
                raise TemplatedOperator(
                    f"{where or '(root)'}: {compiled.text} gives a value with the key {key!r}{inside}: operators "
                    "($-keys) cannot come from templates; write them in the pipeline and template only their "
                    "values, e.g. {_id: {$oid: '{{ trigger.data.id }}'}}",
                    template=compiled.text,
                    where=where or None,
                )
            return found
        return render(value, scope)
    if isinstance(value, dict):
        return {k: render_without_operators(v, scope, f"{where}.{k}" if where else str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [render_without_operators(v, scope, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


def _operator_path(value: Any, path: str) -> str | None:
    """The path of the first key starting with `$` inside `value` (`/a/$ne`), or None."""
    if isinstance(value, dict):
        for k, v in value.items():
            if isinstance(k, str) and k.startswith("$"):
                return f"{path}/{k}"
            found = _operator_path(v, f"{path}/{k}")
            if found is not None:
                return found
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found = _operator_path(v, f"{path}/{i}")
            if found is not None:
                return found
    return None


@functools.lru_cache(maxsize=4096)
def _compile(text: str) -> Ref | tuple[str | Ref, ...] | None:
    """None for a string without templates, a Ref for a whole-string template, else the parts."""
    if "{{" not in text:
        return None
    parts, problems = _parse(text, None)
    if problems:
        raise TemplateError(problems[0], template=text)
    refs = [p for p in parts if isinstance(p, Ref)]
    if len(refs) == 1 and refs[0].text == text.strip():
        return refs[0]
    return tuple(parts)


def _parse(text: str, node_ids: set[str] | None) -> tuple[list[str | Ref], list[str]]:
    parts: list[str | Ref] = []
    problems: list[str] = []
    pos = 0
    for m in _TEMPLATE.finditer(text):
        parts.append(text[pos : m.start()])
        ref = _parse_one(m.group(0), m.group(1).strip(), node_ids)
        if isinstance(ref, str):
            problems.append(ref)
        else:
            parts.append(ref)
        pos = m.end()
    parts.append(text[pos:])
    parts = [p for p in parts if p != ""]
    for part in parts:
        if isinstance(part, str) and "{{" in part:
            snippet = part[part.index("{{") :][:40]
            problems.append(f"unclosed '{{{{' in {snippet!r}; expected '}}}}' to end the template")
    return parts, problems


def _parse_one(text: str, expr: str, node_ids: set[str] | None) -> Ref | str:
    """A Ref, or a message saying what is wrong with the template `text`."""
    if not expr:
        return f"{text}: empty template; expected a path such as trigger.data.x or NODE.output.x"
    m = _ROOT.match(expr)
    if not m:
        return f"{text}: expected a name at {expr[:20]!r}, such as trigger, variables or a node id"
    name, pos = m.group(), m.end()
    path: list[str | int] = []
    while pos < len(expr):
        seg = _SEGMENT.match(expr, pos)
        if not seg:
            return (
                f"{text}: unexpected {expr[pos:][:20]!r} after {expr[:pos]!r};"
                " expected .key, [index], ['key'] or the closing '}}'"
            )
        key = seg.group(seg.lastindex or 0)
        path.append(int(key) if seg.lastindex == 2 else key)  # group 2 is [index]
        pos = seg.end()
    if name in ("$now", "$run") and path:
        return f"{text}: {name} is a string and has no fields"
    if name in ROOTS:
        return Ref(name, None, tuple(path), text)  # type: ignore[arg-type]
    if name.startswith("$"):
        return f"{text}: unknown name {name!r}; expected $now or $run"
    if name == "nodes":
        if not path or not isinstance(path[0], str):
            return f"{text}: expected nodes['NODE'].output after 'nodes'"
        node, path = path[0], path[1:]
        if node_ids is not None and node not in node_ids:
            return f"{text}: no node {node!r} in this pipeline{_suggest(node, node_ids)}"
    elif node_ids is not None and name not in node_ids:
        expected = f"expected {', '.join(ROOTS)} or a node id"
        return f"{text}: unknown name {name!r}; {expected}{_suggest(name, node_ids)}"
    else:
        node = name
    if not path or path[0] != "output":
        got = repr(_show(path[0])) if path else "nothing"
        note = f" (names other than {', '.join(ROOTS)} are node ids)" if name != "nodes" else ""
        return f"{text}: expected .output after node {node!r}, as in {{{{ {node}.output.x }}}}; got {got}{note}"
    return Ref("node", node, tuple(path[1:]), text)


def _lookup(ref: Ref, scope: Scope) -> Any:
    root = ref.root
    if root == "node":
        assert ref.node is not None  # a lookup with the root "node" names its node
        try:
            value = scope.outputs[ref.node]
        except KeyError:
            raise TemplateError(f"{ref.text}: node {ref.node!r} has no output yet", template=ref.text) from None
    elif root == "trigger":
        value = scope.trigger
    elif root == "variables":
        value = scope.variables
    elif root == "$now":
        return scope.now
    elif root == "$run":
        return scope.run_id
    else:
        value = scope.item if root == "item" else scope.index
        if value is MISSING:
            raise TemplateError(f"{ref.text}: '{root}' is only set inside a foreach node", template=ref.text)
    for depth, seg in enumerate(ref.path):
        if value is None:
            return None
        if isinstance(seg, str) and isinstance(value, dict) and seg in value:  # noqa: SIM114 (each narrows for mypy)
            value = value[seg]
        elif isinstance(seg, int) and isinstance(value, list) and -len(value) <= seg < len(value):
            value = value[seg]
        else:
            raise TemplateError(f"{ref.text}: {_not_found(ref, depth, value)}", template=ref.text, segment=seg)
    return value


def _not_found(ref: Ref, depth: int, value: Any) -> str:
    seg, here = ref.path[depth], _describe(ref, depth)
    if isinstance(value, dict) and isinstance(
        value.get("$blob"), str
    ):  # the router could not load it (router/blobs.py)
        return f"{here} is in the blob store at {value['$blob']!r}, which cannot be read"
    if isinstance(value, dict):
        if isinstance(seg, int):
            return f"{here} is an object, not a list; cannot read index {seg} ({_keys(value)})"
        return f"{here} has no key {seg!r} ({_keys(value)})"
    if isinstance(value, list):
        if isinstance(seg, int):
            return f"{here} has {len(value)} items; index {seg} is out of range"
        return f"{here} is a list of {len(value)} items, not an object; cannot read key {seg!r} (use [0] for an item)"
    kind = _KINDS.get(type(value), type(value).__name__)
    shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
    want = f"key {seg!r}" if isinstance(seg, str) else f"index {seg}"
    return f"{here} is {kind} ({shown}), not an object or a list; cannot read {want}"


def _describe(ref: Ref, depth: int) -> str:
    """Where a lookup stood: `'fetch' output.items[0]`, `trigger.data`, `variables`."""
    start = f"{ref.node!r} output" if ref.root == "node" else ref.root
    return start + "".join(_show(seg) for seg in ref.path[:depth])


def _show(seg: str | int) -> str:
    """One path segment as a template would spell it: `.key`, `[0]`, `['odd key']`."""
    if isinstance(seg, int):
        return f"[{seg}]"
    return f".{seg}" if _PLAIN_KEY.fullmatch(seg) else f"[{seg!r}]"


def _keys(value: dict[str, Any]) -> str:
    keys = [str(k) for k in list(value)[: _KEYS_SHOWN + 1]]
    more = ", …" if len(keys) > _KEYS_SHOWN else ""
    return "keys: " + ", ".join(keys[:_KEYS_SHOWN]) + more if keys else "it is empty"


def _suggest(name: str, node_ids: set[str]) -> str:
    close = difflib.get_close_matches(name, sorted(node_ids), n=1)
    if close:
        return f"; did you mean {close[0]!r}?"
    return f" (nodes: {', '.join(sorted(node_ids))})" if node_ids else " (the pipeline has no nodes)"


def _strings(value: Any, where: str):
    """(place, string) for every string value that holds `{{`, with places like `headers.auth` / `urls[0]`."""
    if isinstance(value, str):
        if "{{" in value:
            yield where, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, (where + _show(str(key))).removeprefix("."))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _strings(item, f"{where}[{i}]")


def _at(where: str, message: str) -> str:
    return f"{where}: {message}" if where else message
