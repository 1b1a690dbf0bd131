"""The entry points that give a validated Pipeline: from a file, YAML text or a document.

`load` = read the file + `load_string`; `load_string` = YAML with line numbers + `load_doc`; `load_doc` imports
the function modules the document names, then runs router.validation.check, the one validation. `parse` is
the shape alone, for a document the store already holds. Raise PipelineInvalid with every problem at once.
The I/O is here: reading the file, importing modules; the rules are pure.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from broker.errors import KnflowError
from functions.errors import ModuleLoadError
from functions.registry import REGISTRY, Registry, load_module
from router.pipeline import Pipeline, PipelineInvalid, Problem
from router.pipeline_doc import Path_, from_dict
from router.pipeline_yaml import parse_yaml
from router.validation import check


def load(path: str | Path, registry: Registry = REGISTRY, extra_functions: Sequence[str] = ()) -> Pipeline:
    """Read, parse and validate a pipeline file, loading the modules it names."""
    return load_string(read_file(path), str(path), registry, extra_functions, base_dir=Path(path).parent)


def load_string(
    text: str,
    file: str | None,
    registry: Registry = REGISTRY,
    extra_functions: Sequence[str] = (),
    base_dir: Path | None = None,
) -> Pipeline:
    """A pipeline from YAML (or JSON) text; `file` names it in problems."""
    doc, lines = parse_yaml(text, file)
    return load_doc(doc, file, lines, registry, extra_functions, base_dir)


def load_doc(
    doc: Any,
    file: str | None,
    lines: dict[Path_, int] | None = None,
    registry: Registry = REGISTRY,
    extra_functions: Sequence[str] = (),
    base_dir: Path | None = None,
) -> Pipeline:
    """A pipeline from a document, after importing the modules its `functions` name (and `extra_functions`)."""
    problems: list[Problem] = []
    refs = (doc.get("functions") if isinstance(doc, dict) else None) or []
    refs = [refs] if isinstance(refs, str) else refs
    if not isinstance(refs, list) or not all(isinstance(r, str) for r in refs):
        refs = []  # check() names the problem
    if refs and base_dir is not None:  # paths relative to the file, made absolute so the stored pipeline finds them
        refs = [_resolve(ref, base_dir) for ref in refs]
        doc = {**doc, "functions": refs}
    problems += _import(doc, [*refs, *extra_functions], file, lines or {}, base_dir)
    pipeline, more = check(doc, file, lines, registry)
    problems += more
    if problems or pipeline is None:
        raise PipelineInvalid(problems)
    return pipeline


def parse(doc: Any, source: str) -> Pipeline:
    """The model of a document (any value: one that is not a mapping is refused), its shape checked (not its
    functions): for what the store holds, or a PUT before the catalogue validates it."""
    p, problems = from_dict(doc, source)
    if p is None or problems:
        raise PipelineInvalid(problems) if problems else KnflowError(f"{source} is not a pipeline")
    return p


def read_file(path: str | Path) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise PipelineInvalid([Problem(f"cannot read the file: {exc.strerror}", file=str(path))]) from None


def _import(doc: Any, refs: list[str], file: str | None, lines: dict[Path_, int], base_dir: Path | None) -> list:
    """Import each function module, a problem for each that fails."""
    meta = doc.get("metadata") if isinstance(doc, dict) else None
    name = meta.get("name") if isinstance(meta, dict) and isinstance(meta.get("name"), str) else None
    out = []
    for ref in refs:
        try:
            load_module(ref, base_dir)
        except ModuleLoadError as exc:
            out.append(
                Problem(str(exc), file, lines.get(("functions",), lines.get(())), name or None, field="functions")
            )
    return out


def _resolve(ref: str, base_dir: Path) -> str:
    if not (ref.endswith(".py") or "/" in ref) or Path(ref).is_absolute():
        return ref
    candidate = Path(base_dir) / ref
    return str(candidate.resolve()) if candidate.exists() else ref
