"""Reading YAML with line numbers: the document, and where each of its values is in the text.

Pure: text in, values out (reading the file is router/loader.py). router/pipeline_doc.py turns the document
into the model; the line map lets every problem name the line it is about.
"""

from __future__ import annotations

from typing import Any

import yaml

from router.pipeline import PipelineInvalid, Problem

Path_ = tuple[Any, ...]


def parse_yaml(text: str, file: str | None) -> tuple[Any, dict[Path_, int]]:
    """The document and a map from each value's path to its 1-based line. Raises PipelineInvalid."""
    try:
        loader = yaml.SafeLoader(text)
        try:
            node = loader.get_single_node()
            doc = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else None
        reason = " ".join(str(p) for p in (getattr(exc, "context", None), getattr(exc, "problem", None)) if p)
        raise PipelineInvalid([Problem(f"YAML syntax error: {reason or exc}", file=file, line=line)]) from None
    lines: dict[Path_, int] = {}
    if node is not None:
        _walk_lines(node, (), lines)
    return doc, lines


def _walk_lines(node: yaml.Node, path: Path_, lines: dict[Path_, int]) -> None:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            _walk_lines(value, (*path, key.value), lines)
            lines[(*path, key.value)] = key.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _walk_lines(item, (*path, i), lines)
