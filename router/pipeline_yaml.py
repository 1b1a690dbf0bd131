"""Reading YAML with line numbers: the document, and where each of its values is in the text.

Pure: text in, values out (reading the file is router/loader.py). router/pipeline_doc.py turns the document
into the model; the line map lets every problem name the line it is about.

The one YAML reader of knflow (files, and `PUT /pipelines` bodies), bounded as Kubernetes bounds its own:
a document over `MAX_PIPELINE_BYTES`, nested deeper than `MAX_YAML_DEPTH`, or whose aliases expand to more
than `MAX_YAML_NODES` nodes ("billion laughs") is refused before anything is built from it. Aliases are
counted on the composed node graph, where an alias is the node it names: counting is linear in the text.
A `\\uD83D\\uDE00` escape pair is read as the one character it spells (as JSON reads it); a lone surrogate
escape is refused, since no stored pipeline or answer could carry it.
"""

from __future__ import annotations

from typing import Any, Final

import re

import yaml

from broker.limits import bad_value, json_depth_exceeded
from router.pipeline import PipelineInvalid, Problem

Path_ = tuple[Any, ...]

MAX_PIPELINE_BYTES: Final = 512 * 1024  # a pipeline document's text
MAX_YAML_NODES: Final = 50_000  # values in the document once every alias is expanded
MAX_YAML_DEPTH: Final = 64  # mappings and lists inside each other
_SURROGATE_ESCAPE: Final = re.compile(r"\\(?:u|U0000)[dD][89a-fA-F]")  # a double-quoted scalar's surrogate


def parse_yaml(text: str, file: str | None) -> tuple[Any, dict[Path_, int]]:
    """The document and a map from each value's path to its 1-based line. Raises PipelineInvalid."""
    size = len(text.encode("utf-8", "surrogatepass")) if len(text) * 4 > MAX_PIPELINE_BYTES else len(text)
    if size > MAX_PIPELINE_BYTES:
        raise PipelineInvalid(
            [Problem(f"the pipeline document is {size:,} bytes; the limit is {MAX_PIPELINE_BYTES:,} bytes", file=file)]
        )
    if json_depth_exceeded(text, MAX_YAML_DEPTH):  # flow style ([[[...]]]): the composer recurses per level
        raise PipelineInvalid([Problem(f"the document nests deeper than {MAX_YAML_DEPTH} levels", file=file)])
    try:
        loader = yaml.SafeLoader(text)
        try:
            node = loader.get_single_node()
            if node is not None:
                _check_size(node, file)
                if _SURROGATE_ESCAPE.search(text):
                    _join_surrogates(node, file)
            doc = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else None
        reason = " ".join(str(p) for p in (getattr(exc, "context", None), getattr(exc, "problem", None)) if p)
        raise PipelineInvalid([Problem(f"YAML syntax error: {reason or exc}", file=file, line=line)]) from None
    except RecursionError:
        raise PipelineInvalid([Problem(f"the document nests deeper than {MAX_YAML_DEPTH} levels", file=file)]) from None
    lines: dict[Path_, int] = {}
    if node is not None:
        _walk_lines(node, (), lines)
    problem = bad_value(doc)  # what the stores (JSON, BSON) cannot hold: a PUT of it would be a 500
    if problem is not None:
        where, why = problem
        raise PipelineInvalid([Problem(why, file=file, line=lines.get(where), field=".".join(map(str, where)) or None)])
    return doc, lines


def _check_size(root: yaml.Node, file: str | None) -> None:
    """PipelineInvalid when the document, aliases expanded, has more than MAX_YAML_NODES values, nests deeper
    than MAX_YAML_DEPTH, or an alias refers to the collection it is in (a cycle). Each distinct node is
    counted once and its expanded size remembered, so a 500-byte bomb costs what its text costs."""
    sizes: dict[int, int] = {}
    open_: set[int] = set()

    def refuse(message: str, node: yaml.Node) -> PipelineInvalid:
        return PipelineInvalid([Problem(message, file=file, line=node.start_mark.line + 1)])

    def size(node: yaml.Node, depth: int) -> int:
        key = id(node)
        known = sizes.get(key)
        if known is not None:
            return known
        if depth > MAX_YAML_DEPTH:
            raise refuse(f"the document nests deeper than {MAX_YAML_DEPTH} levels", node)
        total = 1
        if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)):
            if key in open_:
                raise refuse("a YAML alias refers to the collection it is in (a recursive document)", node)
            open_.add(key)
            children = (c for pair in node.value for c in pair) if isinstance(node, yaml.MappingNode) else node.value
            for child in children:
                total += size(child, depth + 1)
                if total > MAX_YAML_NODES:
                    raise refuse(
                        f"the document expands to more than {MAX_YAML_NODES:,} values (YAML aliases expanded); "
                        f"the limit is {MAX_YAML_NODES:,}",
                        node,
                    )
            open_.discard(key)
        sizes[key] = total
        return total

    size(root, 0)


def _join_surrogates(root: yaml.Node, file: str | None) -> None:
    """Each scalar's surrogate pairs made the character they spell (PyYAML keeps `\\uD83D\\uDE00` as two
    code points); PipelineInvalid naming the line of a lone one. Runs only for text with such an escape."""
    seen: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.ScalarNode):
            if any("\ud800" <= c <= "\udfff" for c in node.value):
                try:
                    node.value = node.value.encode("utf-16-le", "surrogatepass").decode("utf-16-le")
                except UnicodeDecodeError:
                    raise PipelineInvalid(
                        [
                            Problem(
                                "a string holds a lone UTF-16 surrogate escape (\\uD800-\\uDFFF with no pair); "
                                "YAML strings must be Unicode text",
                                file=file,
                                line=node.start_mark.line + 1,
                            )
                        ]
                    ) from None
        elif isinstance(node, yaml.MappingNode):
            stack.extend(c for pair in node.value for c in pair)
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)


def _walk_lines(node: yaml.Node, path: Path_, lines: dict[Path_, int]) -> None:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            _walk_lines(value, (*path, key.value), lines)
            lines[(*path, key.value)] = key.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _walk_lines(item, (*path, i), lines)
