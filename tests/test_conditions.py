"""router.conditions: CEL `when:` conditions on edges."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker.errors import KnflowError
from router.conditions import ConditionError, compile_condition, referenced_nodes

TRIGGER = {
    "id": "ev-1",
    "type": "com.example.article.requested",
    "source": "/webhooks/article",
    "data": {"topic": "cats", "lang": "en", "words": 300},
}
VARIABLES = {"threshold": 0.5, "langs": ["en", "fr"]}
NODES = {
    "a": {
        "output": {"score": 0.9, "count": 3, "name": "Cats and dogs", "tags": ["pets", "cats"]},
        "status": "succeeded",
    },
    "whole": {"output": {"score": 1}, "status": "succeeded"},
    "fetch-topic": {"output": {"ok": True, "topic": "cats"}, "status": "succeeded"},
    "skipped": {"output": None, "status": "skipped"},
}


def evaluate(expr: str, nodes: dict[str, dict] = NODES) -> bool:
    return compile_condition(expr).evaluate(TRIGGER, VARIABLES, nodes)


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        # comparisons, on every variable
        ("a.output.score > 0.5", True),
        ("a.output.score > variables.threshold", True),
        ("a.output.count == 3 && a.output.count >= 3 && a.output.count != 4", True),
        ("a.output.count < 2 || a.output.count > 5", False),
        ("trigger.data.lang == 'en' && trigger.type.startsWith('com.example.')", True),
        ("trigger.data.words / 100 == 3", True),
        ("a.status == 'succeeded'", True),
        ("skipped.status == 'skipped' && skipped.output == null", True),
        # string functions
        ("a.output.name.contains('dogs')", True),
        ("a.output.name.startsWith('Cats') && a.output.name.endsWith('dogs')", True),
        ("a.output.name.matches('^Cats .* dogs$')", True),
        ("size(a.output.name) == 13", True),
        # in, lists and maps
        ("'cats' in a.output.tags", True),
        ("trigger.data.lang in variables.langs", True),
        ("'score' in a.output", True),
        ("a.output.tags.exists(t, t == 'pets')", True),
        ("a.output.tags.all(t, t.size() > 3)", True),
        ("size(a.output.tags) == 2", True),
        # has()
        ("has(a.output.score)", True),
        ("has(a.output.missing)", False),
        ("has(a.output.missing) && a.output.missing > 1", False),
        # the nodes map, for ids that are not CEL identifiers and for all
        ("nodes['fetch-topic'].output.ok", True),
        ('nodes["fetch-topic"].output.topic == trigger.data.topic', True),
        ("nodes.a.output.count == 3", True),
        ("nodes['a'].output.score == a.output.score", True),
        ("size(nodes) == 4", True),
        ("'fetch-topic' in nodes", True),
        ("nodes.exists(id, nodes[id].status == 'skipped')", True),
    ],
)
def test_conditions_evaluate(expr: str, expected: bool) -> None:
    assert evaluate(expr) is expected


@pytest.mark.parametrize(
    "expr",
    ["whole.output.score > 0.5", "whole.output.score == 1.0", "whole.output.score >= 1", "a.output.score < 1"],
)
def test_ints_and_doubles_compare_with_each_other(expr: str) -> None:
    assert evaluate(expr) is True


def test_arithmetic_does_not_mix_ints_and_doubles() -> None:
    with pytest.raises(ConditionError, match=r"CEL does not convert between types"):
        evaluate("whole.output.score * 0.5 > 0.1")
    assert evaluate("double(whole.output.score) * 0.5 > 0.1") is True


def test_a_node_id_that_is_a_root_name_is_reached_through_nodes() -> None:
    nodes = {"trigger": {"output": {"x": 1}, "status": "succeeded"}}
    assert evaluate("trigger.data.lang == 'en' && nodes['trigger'].output.x == 1", nodes) is True


def test_a_node_that_has_not_run_is_undefined() -> None:
    with pytest.raises(ConditionError) as caught:
        evaluate("later.output.ok", {})
    assert str(caught.value) == "condition 'later.output.ok' failed: Undefined variable or function: 'later'."


def test_only_nodes_read_by_key_are_passed_and_others_still_work() -> None:
    condition = compile_condition("nodes['fetch-topic'].output.ok && nodes.a.output.count == 3")
    assert condition.node_keys == {"fetch-topic", "a"}
    assert compile_condition("size(nodes) > 0").node_keys is None
    assert compile_condition("nodes[variables.which].status == 'x'").node_keys is None
    assert compile_condition("nodes.size() > 0").node_keys is None
    with pytest.raises(ConditionError, match=r"no such key 'nope'"):
        evaluate("nodes['nope'].output")


# --- errors -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        (
            "a.output.score >",
            "condition 'a.output.score >' does not parse: at column 17: mismatched input '<EOF>' expecting",
        ),
        (
            "a.output.score > 'x",
            'condition "a.output.score > \'x" does not parse: at column 18: token recognition error',
        ),
        ("a &&\n b )", "condition 'a &&\\n b )' does not parse: at line 2, column 4: extraneous input ')'"),
        ("", "condition '' does not parse: at column 1: mismatched input '<EOF>'"),
    ],
)
def test_a_syntax_error_names_the_expression_and_the_parsers_message(expr: str, message: str) -> None:
    with pytest.raises(ConditionError) as caught:
        compile_condition(expr)
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value).replace("\\n", "")
    assert caught.value.fields["expr"] == expr
    assert isinstance(caught.value, KnflowError)


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("a.output.score", "condition 'a.output.score' gave float 0.9, not a bool; write a comparison such as"),
        ("a.output.name", "condition 'a.output.name' gave str 'Cats and dogs', not a bool"),
        ("a.output.tags", "condition 'a.output.tags' gave list ['pets', 'cats'], not a bool"),
        ("skipped.output", "condition 'skipped.output' gave NoneType None, not a bool"),
    ],
)
def test_a_result_that_is_not_a_bool_is_an_error(expr: str, message: str) -> None:
    with pytest.raises(ConditionError) as caught:
        evaluate(expr)
    assert str(caught.value).startswith(message)


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        (
            "a.output.missing > 1",
            "condition 'a.output.missing > 1' failed: no such key 'missing'"
            " (test for an optional key with has(x.missing) or 'missing' in x)",
        ),
        ("nodes['nope'].status == 'x'", "condition \"nodes['nope'].status == 'x'\" failed: no such key 'nope'"),
        (
            "a.output.name + 1 == 2",
            "condition 'a.output.name + 1 == 2' failed: Unsupported operation: string + int. CEL does not convert"
            " between types (use int(), double(), string()) nor read a field of null",
        ),
        ("skipped.output.x == 1", "condition 'skipped.output.x == 1' failed: No such overload"),
        ("a.output.tags[5] == 'x'", "condition \"a.output.tags[5] == 'x'\" failed: index out of bounds: 5"),
        ("a.output.count / 0 == 1", "condition 'a.output.count / 0 == 1' failed: division by zero"),
        ("nosuchfn(1)", "condition 'nosuchfn(1)' failed: Undefined variable or function: 'nosuchfn'."),
    ],
)
def test_an_evaluation_error_names_the_expression_and_the_reason(expr: str, message: str) -> None:
    with pytest.raises(ConditionError) as caught:
        evaluate(expr)
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)
    assert caught.value.fields["expr"] == expr


def test_compiled_conditions_are_cached() -> None:
    assert compile_condition("a.output.count == 3") is compile_condition("a.output.count == 3")


# --- referenced_nodes ---------------------------------------------------------------------------------

NODE_IDS = {"a", "b", "fetch-topic", "c", "d", "size"}


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("a.output.x > 1", {"a"}),
        ("nodes['fetch-topic'].output.ok", {"fetch-topic"}),
        ('nodes["fetch-topic"].output.ok && nodes.b.status == "x"', {"fetch-topic", "b"}),
        ("nodes[ 'c' ].output && a.output && d.status == 'x'", {"a", "c", "d"}),
        ("trigger.data.a == variables.b", set()),
        ("unknown.output == 1", set()),
        ("nodes.size() > 1", set()),
        ("foo.nodes.a == 1", set()),
        ("nodes[variables.which].status == 'x'", set()),
    ],
)
def test_referenced_nodes(expr: str, expected: set[str]) -> None:
    assert referenced_nodes(expr, NODE_IDS) == expected


def test_referenced_nodes_of_a_bad_expression_raises() -> None:
    with pytest.raises(ConditionError, match="does not parse"):
        referenced_nodes("a >", NODE_IDS)


# --- properties ---------------------------------------------------------------------------------------


@given(st.integers(min_value=-(2**53), max_value=2**53) | st.floats(allow_nan=False, allow_infinity=False))
def test_a_json_number_compares_like_python(score: float) -> None:
    nodes = {"a": {"output": {"score": score}, "status": "succeeded"}}
    assert evaluate("a.output.score > 0.5", nodes) is (score > 0.5)
    assert evaluate("a.output.score == 2", nodes) is (score == 2)


@given(st.text())
def test_strings_pass_through_unchanged(text: str) -> None:
    nodes = {"a": {"output": {"s": text}, "status": "succeeded"}}
    trigger = {"data": {"s": text}}
    assert compile_condition("a.output.s == trigger.data.s").evaluate(trigger, {}, nodes) is True
