"""Fuzzing the pipeline YAML reader (issue 12): hypothesis feeds `router.pipeline_yaml.parse_yaml` and the whole
path (`router.loader.load_string`, which runs `router.validation.check`; and `loader.parse`, what `PUT
/pipelines` runs) random text, the examples' pipelines mutated, and generated nested documents with anchors
and aliases. Each must give a Pipeline (one that the store can hold) or raise a `KnflowError` with a message
(`PipelineInvalid` naming the problem): never another exception, never over `MAX_CASE_S`.

Derandomized, no example database: CI runs the same cases each time. Text naming `functions` is left out:
`load_string` imports the modules a document names, and a fuzzer has no business importing modules.
"""

from __future__ import annotations

import contextlib
import re
import time
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from broker.errors import KnflowError
from router.loader import load_string, parse
from router.pipeline import Pipeline, PipelineInvalid
from router.pipeline_yaml import parse_yaml

ROOT = Path(__file__).resolve().parent.parent
MAX_CASE_S = 1.0
EXAMPLES = [re.sub(r"(?m)^functions:.*\n", "", path.read_text()) for path in sorted((ROOT / "examples").glob("*.yaml"))]
FUZZ = settings(
    max_examples=700,  # per strategy: about 2,800 cases in all
    derandomize=True,
    database=None,
    deadline=None,  # measured below, per case, against MAX_CASE_S
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)


@pytest.fixture(scope="module", autouse=True)
def warm() -> None:
    """Validating an example the first time imports the builtins' modules (openai, ...): seconds, once per
    process, not a case's cost."""
    for text in EXAMPLES:
        with contextlib.suppress(KnflowError):
            load_string(text, "example.yaml")


def read(text: str) -> None:
    """The property: a Pipeline the store can hold, or a KnflowError with a message; within MAX_CASE_S."""
    assume("functions" not in text)
    started = time.perf_counter()
    for attempt in (lambda: load_string(text, "fuzz.yaml"), lambda: parse(parse_yaml(text, "fuzz.yaml")[0], "PUT")):
        try:
            pipeline = attempt()
        except KnflowError as exc:
            assert str(exc).strip(), type(exc).__name__
        else:
            assert isinstance(pipeline, Pipeline)
            orjson.dumps(pipeline.to_dict())  # what the SQLite store writes; raises for what it cannot hold
    elapsed_s = time.perf_counter() - started
    assert elapsed_s < MAX_CASE_S, f"{elapsed_s:.2f} s for {text[:200]!r}"


# ---- strategies ------------------------------------------------------------------------------------

SCALARS = st.one_of(
    st.integers().map(str),
    st.integers(min_value=2**62, max_value=2**70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(
        ["~", "null", ".nan", ".inf", "-.inf", "yes", "0x1F", "0o17", "1e400", "2001-12-14", "<<", "=", "!!binary aGk="]
    ),
    st.text(max_size=20).map(lambda s: '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'),
    st.sampled_from(
        ['"\\ud800"', '"\\ud83d\\ude00"', '"\\U0001F600"', '"\\x00"', "'{{ trigger.data.x }}'", '"{{ a.output[0] }}"']
    ),
    st.from_regex(r"[a-z][a-z0-9-]{0,12}", fullmatch=True),
)
KEYS = st.one_of(
    st.sampled_from(
        ["metadata", "name", "nodes", "id", "type", "inputs", "edges", "from", "to", "trigger", "triggers"]
    ),
    st.sampled_from(["when", "retry", "on_failure", "variables", "filter", "schedule", "branches", "foreach", "<<"]),
    st.from_regex(r"[a-z_]{1,8}", fullmatch=True),
)


@st.composite
def documents(draw: st.DrawFn) -> str:
    """A flow-style YAML document built from nested lists and maps, with anchors on some values and aliases to
    earlier ones (also merge keys `<<: *a`)."""
    anchors: list[str] = []

    def value(depth: int) -> str:
        kind = draw(st.integers(0, 9 if depth < 6 else 3))
        if kind <= 2:
            text = draw(SCALARS)
        elif kind == 3 and anchors:
            return "*" + draw(st.sampled_from(anchors))
        elif kind <= 6:
            items = [value(depth + 1) for _ in range(draw(st.integers(0, 4)))]
            text = "[" + ", ".join(items) + "]"
        else:
            pairs = [f"{draw(KEYS)}: {value(depth + 1)}" for _ in range(draw(st.integers(0, 4)))]
            if anchors and draw(st.booleans()):
                pairs.append(f"<<: *{draw(st.sampled_from(anchors))}")
            text = "{" + ", ".join(pairs) + "}"
        if draw(st.integers(0, 4)) == 0:
            name = f"a{len(anchors)}"
            anchors.append(name)
            return f"&{name} {text}"
        return text

    name = draw(st.sampled_from(["fuzz", "x", "UPPER", "", "a" * 80]))
    nodes = value(1)
    return (
        f"metadata: {{name: {name}}}\ntrigger: {value(1)}\nvariables: {value(1)}\nnodes: {nodes}\nedges: {value(1)}\n"
    )


@st.composite
def mutated_examples(draw: st.DrawFn) -> str:
    """An example pipeline with a few edits: a span deleted, text inserted, a line repeated or two swapped."""
    text = draw(st.sampled_from(EXAMPLES))
    for _ in range(draw(st.integers(1, 4))):
        lines = text.splitlines(keepends=True)
        at = draw(st.integers(0, max(len(text) - 1, 0)))
        edit = draw(st.integers(0, 4))
        if edit == 0:
            text = text[:at] + text[at + draw(st.integers(1, 40)) :]
        elif edit == 1:
            text = (
                text[:at]
                + draw(st.one_of(st.text(max_size=12), st.sampled_from(list(":-[]{}&*!|>'\"#\t\n "))))
                + text[at:]
            )
        elif edit == 2 and lines:
            i = draw(st.integers(0, len(lines) - 1))
            lines.insert(i, lines[i])
            text = "".join(lines)
        elif edit == 3 and len(lines) > 1:
            i, j = draw(st.integers(0, len(lines) - 1)), draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
            text = "".join(lines)
        else:
            text = text[:at] + draw(SCALARS) + text[at:]
    return text


# ---- the fuzzers -----------------------------------------------------------------------------------


@FUZZ
@given(st.text(max_size=400))
def test_random_text(text):
    read(text)


@FUZZ
@given(st.text(alphabet=st.sampled_from(list("ab:-[]{}&*!|>'\"#,?\\ \t\n0123456789")), max_size=200))
def test_random_yaml_punctuation(text):
    read(text)


@FUZZ
@given(mutated_examples())
def test_mutated_examples(text):
    read(text)


@FUZZ
@given(documents())
def test_generated_documents_with_aliases(text):
    read(text)


# ---- what the fuzzers found (each was a 500 on PUT /pipelines) ------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "metadata: {name: x}\nvariables:\n  n: 99999999999999999999999\n",
            "x.yaml:3): field 'variables.n': the integer",
        ),
        ("metadata: {name: x}\nvariables: {n: .nan}\n", "field 'variables.n': nan is not a JSON number"),
        ('metadata: {name: x}\nvariables: {"\\udbff": 1}\n', "x.yaml:2): a string holds a lone UTF-16 surrogate"),
        ('metadata: {name: x}\nvariables: {s: "a\\ud800"}\n', "lone UTF-16 surrogate"),
    ],
)
def test_values_the_stores_cannot_hold_are_problems_with_a_line(text, message):
    with pytest.raises(PipelineInvalid) as err:
        parse_yaml(text, "x.yaml")
    assert message in str(err.value)


def test_an_escaped_surrogate_pair_is_the_character_it_spells():
    doc = parse_yaml('metadata: {name: "\\ud83d\\ude00"}', "x.yaml")[0]
    assert doc == {"metadata": {"name": "\U0001f600"}}


def test_the_examples_themselves_load():
    for text in EXAMPLES:
        assert parse(parse_yaml(text, "example.yaml")[0], "example").nodes
