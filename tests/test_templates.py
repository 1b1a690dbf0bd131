"""router.templates: parsing, reference finding, checking and rendering of `{{ ... }}` lookups."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker.errors import KnflowError
from router.templates import MISSING, Ref, Scope, TemplateError, check, find_refs, render

TRIGGER = {
    "id": "ev-1",
    "type": "com.example.article.requested",
    "source": "/webhooks/article",
    "subject": "cats",
    "time": "2024-05-01T12:00:00Z",
    "data": {"topic": "cats", "words": 300, "tags": ["a", "b"], "meta": {"lang": "en"}, "nothing": None},
}
NOW = "2024-05-01T12:00:01Z"


def make_scope(**changes: object) -> Scope:
    scope = Scope(
        trigger=TRIGGER,
        variables={"model": "small", "temperature": 0.2, "odd key": 1},
        outputs={
            "fetch-topic": {"topic": "cats", "url": "https://x.test/cats"},
            "score_1": {"score": 0.9, "ok": True, "items": [{"n": 1}, {"n": 2}], "count": 2},
            "skipped": None,
        },
        run_id="run-8f3a",
        now=NOW,
    )
    return dataclasses.replace(scope, **changes)


# --- rendering: every root ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ trigger.data.topic }}", "cats"),
        ("{{ trigger.type }}", "com.example.article.requested"),
        ("{{ trigger.source }}", "/webhooks/article"),
        ("{{ trigger.id }}", "ev-1"),
        ("{{ trigger.subject }}", "cats"),
        ("{{ trigger.time }}", "2024-05-01T12:00:00Z"),
        ("{{ trigger }}", TRIGGER),
        ("{{ variables.model }}", "small"),
        ("{{ variables['odd key'] }}", 1),
        ("{{ fetch-topic.output.topic }}", "cats"),
        ("{{fetch-topic.output}}", {"topic": "cats", "url": "https://x.test/cats"}),
        ("{{ nodes['fetch-topic'].output.url }}", "https://x.test/cats"),
        ('{{ nodes["fetch-topic"].output["url"] }}', "https://x.test/cats"),
        ("{{ nodes.score_1.output.ok }}", True),
        ("{{ score_1.output.items[1].n }}", 2),
        ("{{ score_1.output.items[-1] }}", {"n": 2}),
        ("{{ $now }}", NOW),
        ("{{ $run }}", "run-8f3a"),
    ],
)
def test_render_reads_every_root(template: str, expected: object) -> None:
    assert render(template, make_scope()) == expected


def test_render_reads_item_and_index_in_a_foreach_node() -> None:
    scope = make_scope(item={"url": "u1"}, index=3)
    assert render({"url": "{{ item.url }}", "i": "{{ index }}", "s": "#{{ index }}"}, scope) == {
        "url": "u1",
        "i": 3,
        "s": "#3",
    }


# --- rendering: type keeping and text -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ score_1.output.score }}", 0.9),
        ("{{ score_1.output.count }}", 2),
        ("{{ score_1.output.ok }}", True),
        ("{{ score_1.output.items }}", [{"n": 1}, {"n": 2}]),
        ("{{ trigger.data.nothing }}", None),
        ("  {{ trigger.data.words }}\n", 300),
    ],
)
def test_a_whole_string_template_keeps_the_json_type(template: str, expected: object) -> None:
    result = render(template, make_scope())
    assert result == expected
    assert type(result) is type(expected)


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("topic={{ trigger.data.topic }}", "topic=cats"),
        ("n={{ score_1.output.count }} s={{ score_1.output.score }}", "n=2 s=0.9"),
        ("ok={{ score_1.output.ok }}", "ok=true"),
        ("null=[{{ trigger.data.nothing }}]", "null=[]"),
        ("tags={{ trigger.data.tags }}", 'tags=["a","b"]'),
        ("meta={{ trigger.data.meta }}", 'meta={"lang":"en"}'),
        ("{{ $run }}/{{ $now }}", f"run-8f3a/{NOW}"),
        ("{{ trigger.data.topic }}{{ trigger.data.topic }}", "catscats"),
    ],
)
def test_a_template_inside_text_renders_as_text(template: str, expected: str) -> None:
    assert render(template, make_scope()) == expected


def test_render_walks_dicts_and_lists_but_not_dict_keys() -> None:
    value = {"{{ $run }}": ["{{ $run }}", {"deep": "{{ fetch-topic.output.topic }}"}, 5, None, True]}
    assert render(value, make_scope()) == {"{{ $run }}": ["run-8f3a", {"deep": "cats"}, 5, None, True]}


def test_lookups_through_a_skipped_node_give_none() -> None:
    scope = make_scope()
    assert render("{{ skipped.output }}", scope) is None
    assert render("{{ skipped.output.a.b[3] }}", scope) is None
    assert render("{{ trigger.data.nothing.deeper }}", scope) is None
    assert render("x={{ skipped.output.a }}", scope) == "x="


def test_non_ascii_text_stays_as_is() -> None:
    scope = make_scope(variables={"greeting": {"fr": "ça va"}})
    assert render("g={{ variables.greeting }}", scope) == 'g={"fr":"ça va"}'


# --- rendering errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "message"),
    [
        (
            "{{ fetch-topic.output.topik }}",
            "{{ fetch-topic.output.topik }}: 'fetch-topic' output has no key 'topik' (keys: topic, url)",
        ),
        (
            "{{ score_1.output.items[5] }}",
            "{{ score_1.output.items[5] }}: 'score_1' output.items has 2 items; index 5 is out of range",
        ),
        (
            "{{ score_1.output.items.n }}",
            "{{ score_1.output.items.n }}: 'score_1' output.items is a list of 2 items, not an object;"
            " cannot read key 'n' (use [0] for an item)",
        ),
        (
            "{{ score_1.output[0] }}",
            "{{ score_1.output[0] }}: 'score_1' output is an object, not a list; cannot read index 0"
            " (keys: score, ok, items, count)",
        ),
        (
            "{{ trigger.data.words.x }}",
            "{{ trigger.data.words.x }}: trigger.data.words is a number (300), not an object or a list;"
            " cannot read key 'x'",
        ),
        (
            "{{ trigger.data.topic[0] }}",
            "{{ trigger.data.topic[0] }}: trigger.data.topic is a string ('cats'), not an object or a list;"
            " cannot read index 0",
        ),
        (
            "{{ variables['odd key'].x }}",
            "{{ variables['odd key'].x }}: variables['odd key'] is a number (1), not an object or a list;"
            " cannot read key 'x'",
        ),
        ("{{ later.output }}", "{{ later.output }}: node 'later' has no output yet"),
        ("{{ item.url }}", "{{ item.url }}: 'item' is only set inside a foreach node"),
        ("{{ index }}", "{{ index }}: 'index' is only set inside a foreach node"),
    ],
)
def test_a_failed_lookup_names_the_template_the_segment_and_what_was_there(template: str, message: str) -> None:
    with pytest.raises(TemplateError) as caught:
        render({"a": [template]}, make_scope())
    assert str(caught.value) == message
    assert caught.value.fields["template"] == template
    assert isinstance(caught.value, KnflowError)


def test_a_missing_key_in_an_empty_object_says_it_is_empty() -> None:
    with pytest.raises(TemplateError, match=r"variables has no key 'x' \(it is empty\)"):
        render("{{ variables.x }}", make_scope(variables={}))


def test_a_long_key_list_is_cut() -> None:
    scope = make_scope(variables={f"k{i}": i for i in range(30)})
    with pytest.raises(TemplateError, match=r"\(keys: k0, k1, k2, k3, k4, k5, k6, k7, k8, k9, …\)$"):
        render("{{ variables.nope }}", scope)


def test_item_and_index_are_missing_by_default() -> None:
    scope = make_scope()
    assert scope.item is MISSING
    assert scope.index is MISSING


# --- parsing: find_refs -------------------------------------------------------------------------------


def test_find_refs_lists_every_reference_in_a_nested_value() -> None:
    value = {
        "a": "{{ trigger.data.x }} and {{ variables.v }}",
        "b": ["{{fetch-topic.output}}", {"c": "{{ nodes['x-y'].output.items[0]['k'] }}"}],
        "d": "{{ $now }}{{ $run }}{{ item.u }}{{ index }}",
        "e": 3,
        "f": "no templates here",
    }
    assert find_refs(value) == [
        Ref("trigger", None, ("data", "x"), "{{ trigger.data.x }}"),
        Ref("variables", None, ("v",), "{{ variables.v }}"),
        Ref("node", "fetch-topic", (), "{{fetch-topic.output}}"),
        Ref("node", "x-y", ("items", 0, "k"), "{{ nodes['x-y'].output.items[0]['k'] }}"),
        Ref("$now", None, (), "{{ $now }}"),
        Ref("$run", None, (), "{{ $run }}"),
        Ref("item", None, ("u",), "{{ item.u }}"),
        Ref("index", None, (), "{{ index }}"),
    ]


def test_find_refs_accepts_known_node_ids() -> None:
    refs = find_refs("{{ fetch-topic.output.topic }}", node_ids={"fetch-topic"})
    assert refs == [Ref("node", "fetch-topic", ("topic",), "{{ fetch-topic.output.topic }}")]


@pytest.mark.parametrize(
    ("value", "node_ids", "message"),
    [
        ("a {{ b", None, "unclosed '{{' in '{{ b'; expected '}}' to end the template"),
        ("{{ }}", None, "{{ }}: empty template; expected a path such as trigger.data.x or NODE.output.x"),
        (
            "{{ foo }}",
            {"fetch"},
            "{{ foo }}: unknown name 'foo'; expected trigger, variables, $now, $run, item, index or a node id"
            " (nodes: fetch)",
        ),
        (
            "{{ fetch-topc.output }}",
            {"fetch-topic"},
            "{{ fetch-topc.output }}: unknown name 'fetch-topc'; expected trigger, variables, $now, $run, item,"
            " index or a node id; did you mean 'fetch-topic'?",
        ),
        (
            "{{ foo.output }}",
            set(),
            "{{ foo.output }}: unknown name 'foo'; expected trigger, variables, $now,"
            " $run, item, index or a node id (the pipeline has no nodes)",
        ),
        (
            "{{ nodes['zz'].output }}",
            {"fetch"},
            "{{ nodes['zz'].output }}: no node 'zz' in this pipeline (nodes: fetch)",
        ),
        (
            "{{ foo }}",
            None,
            "{{ foo }}: expected .output after node 'foo', as in {{ foo.output.x }}; got nothing"
            " (names other than trigger, variables, $now, $run, item, index are node ids)",
        ),
        (
            "{{ fetch.outputs.x }}",
            {"fetch"},
            "{{ fetch.outputs.x }}: expected .output after node 'fetch', as in {{ fetch.output.x }};"
            " got '.outputs' (names other than trigger, variables, $now, $run, item, index are node ids)",
        ),
        (
            "{{ nodes['fetch'] }}",
            {"fetch"},
            "{{ nodes['fetch'] }}: expected .output after node 'fetch', as in {{ fetch.output.x }}; got nothing",
        ),
        ("{{ nodes }}", None, "{{ nodes }}: expected nodes['NODE'].output after 'nodes'"),
        ("{{ nodes[0].output }}", None, "{{ nodes[0].output }}: expected nodes['NODE'].output after 'nodes'"),
        ("{{ $now.date }}", None, "{{ $now.date }}: $now is a string and has no fields"),
        ("{{ $today }}", None, "{{ $today }}: unknown name '$today'; expected $now or $run"),
        (
            "{{ fetch.output. }}",
            None,
            "{{ fetch.output. }}: unexpected '.' after 'fetch.output'; expected .key, [index], ['key'] or the"
            " closing '}}'",
        ),
        (
            "{{ fetch.output + 1 }}",
            None,
            "{{ fetch.output + 1 }}: unexpected ' + 1' after 'fetch.output'; expected .key, [index], ['key'] or"
            " the closing '}}'",
        ),
        (
            "{{ trigger.data['x }}",
            None,
            "{{ trigger.data['x }}: unexpected \"['x\" after 'trigger.data'; expected .key, [index], ['key'] or"
            " the closing '}}'",
        ),
        (
            "{{ 'x' }}",
            None,
            "{{ 'x' }}: expected a name at \"'x'\", such as trigger, variables or a node id",
        ),
    ],
)
def test_a_malformed_template_names_the_text_and_what_was_expected(
    value: str, node_ids: set[str] | None, message: str
) -> None:
    with pytest.raises(TemplateError) as caught:
        find_refs(value, node_ids)
    assert str(caught.value) == message
    assert caught.value.fields["template"] == value
    assert check(value, node_ids) == [message]


def test_render_of_a_malformed_template_raises_the_same_error() -> None:
    with pytest.raises(TemplateError, match=r"^\{\{ \}\}: empty template"):
        render({"a": "{{ }}"}, make_scope())


def test_check_reports_every_problem_with_its_place() -> None:
    value = {
        "good": "{{ fetch.output.x }}",
        "a": "{{ foo }}",
        "b": ["ok", "{{ nodes['zz'].output }} and {{ x"],
        "odd key": {"c": "{{ }}"},
    }
    assert check(value, {"fetch"}, where="inputs") == [
        "inputs.a: {{ foo }}: unknown name 'foo'; expected trigger, variables, $now, $run, item, index or a node id"
        " (nodes: fetch)",
        "inputs.b[1]: {{ nodes['zz'].output }}: no node 'zz' in this pipeline (nodes: fetch)",
        "inputs.b[1]: unclosed '{{' in '{{ x'; expected '}}' to end the template",
        "inputs['odd key'].c: {{ }}: empty template; expected a path such as trigger.data.x or NODE.output.x",
    ]
    assert check(value["a"], {"fetch"})[0].startswith("{{ foo }}: unknown name")
    assert check(value, {"fetch"})[0].startswith("a: {{ foo }}")


def test_check_of_a_clean_value_is_empty() -> None:
    assert check({"a": "{{ trigger.data }}", "b": [1, "text"], "c": "}} alone is text"}, set()) == []


def test_find_refs_reports_the_place_of_the_first_problem() -> None:
    with pytest.raises(TemplateError, match=r"^b\[0\]: \{\{ \}\}: empty template") as caught:
        find_refs({"a": "fine", "b": ["{{ }}"]})
    assert caught.value.fields["where"] == "b[0]"


def test_a_root_name_wins_over_a_node_of_the_same_name() -> None:
    refs = find_refs(["{{ trigger.data }}", "{{ nodes['trigger'].output }}"], node_ids={"trigger"})
    assert [r.root for r in refs] == ["trigger", "node"]


# --- properties ---------------------------------------------------------------------------------------

JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
JSON_VALUES = st.recursive(
    JSON_SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4)
)


@given(JSON_VALUES.filter(lambda v: "{{" not in repr(v)))
def test_render_of_a_value_without_templates_is_identity(value: object) -> None:
    assert render(value, make_scope()) == value
    assert find_refs(value) == []


@given(JSON_VALUES)
def test_a_whole_template_returns_the_variable_as_it_is(value: object) -> None:
    assert render("{{ variables.v }}", make_scope(variables={"v": value})) == value


@given(st.text().filter(lambda s: "{" not in s and "}" not in s))
def test_text_around_a_string_lookup_is_kept(text: str) -> None:
    scope = make_scope(variables={"v": text})
    assert render(f"<{text}>{{{{ variables.v }}}}<{text}>", scope) == f"<{text}>{text}<{text}>"
