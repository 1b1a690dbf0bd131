"""Fan-out (`foreach`, `loop`, `replicas`), `switch` branch edges: the pure engine, validation, redrive."""

from __future__ import annotations

import pytest

from router import engine, replay
from router.loader import load_string
from router.pipeline import PipelineInvalid
from router.pipeline_doc import from_dict
from router.runs import (
    FAILED,
    RUNNING,
    SCHEDULED,
    SKIPPED,
    SUCCEEDED,
    apply,
    item_states,
    new_run,
    node_output,
    record,
    state_of,
    with_items,
)
from router.validation import validate

NOW = "2026-01-01T00:00:00.000Z"


def pipeline(nodes: list[dict], edges: list[dict] = ()):
    doc = {"metadata": {"name": "t"}, "nodes": nodes, "edges": list(edges)}
    p, problems = from_dict(doc)
    assert problems == [], problems
    return p


def fan(**options):
    """a -> gen (fan-out) -> z"""
    gen = {"id": "gen", "type": "f", "inputs": {"x": "{{ item }}", "i": "{{ index }}"}, **options}
    return pipeline(
        [{"id": "a", "type": "f"}, gen, {"id": "z", "type": "f", "inputs": {"all": "{{ gen.output }}"}}],
        [{"from": "a", "to": "gen"}, {"from": "gen", "to": "z"}],
    )


def start(p, data=None):
    return new_run("r", p.name, list(p.nodes), {"type": "t", "data": data or {"n": 3}}, dict(p.variables))


def step(p, run):
    s = engine.plan(p, run, NOW)
    run, won, _ = apply(run, s.transitions, s.run_change)
    return run, [s.invokes[t.node] for t, ok in zip(s.transitions, won, strict=True) if ok and t.node in s.invokes]


def finish(p, run, key, output=None, ok=True):
    attempt = state_of(run, key)["attempt"]
    data = {"output": output} if ok else {"error": {"type": "E", "message": f"{key} broke"}}
    run, won, _ = apply(run, [engine.result_transition(run, key, attempt, data, ok, NOW)])
    assert won == [True]
    return step(p, run)


def through_a(p, items):
    run, _ = step(p, start(p))
    return finish(p, run, "a", {"items": items})


def test_foreach_runs_once_per_item_with_ids_and_joins_outputs_in_order():
    p = fan(foreach="{{ a.output.items }}")
    run, inv = through_a(p, ["x", "y", "z"])
    assert [i.id for i in inv] == ["r:gen[0]:1", "r:gen[1]:1", "r:gen[2]:1"]
    assert [i.inputs for i in inv] == [{"x": "x", "i": 0}, {"x": "y", "i": 1}, {"x": "z", "i": 2}]
    assert (
        run["nodes"]["gen"]["status"] == RUNNING
        and [s["status"] for s in item_states(run["nodes"]["gen"])] == [SCHEDULED] * 3
    )
    for key in ("gen[2]", "gen[0]"):  # out of order
        run, inv = finish(p, run, key, key.upper())
        assert inv == [] and run["nodes"]["gen"]["status"] == RUNNING
    run, inv = finish(p, run, "gen[1]", "GEN[1]")
    assert run["nodes"]["gen"]["status"] == SUCCEEDED
    assert [item["output"] for item in item_states(run["nodes"]["gen"])] == ["GEN[0]", "GEN[1]", "GEN[2]"]
    assert record(with_items(run, {"gen": item_states(run["nodes"]["gen"])}))["nodes"]["gen"]["output"] == [
        "GEN[0]",
        "GEN[1]",
        "GEN[2]",
    ]
    assert [i.node for i in inv] == ["z"] and inv[0].inputs == {"all": ["GEN[0]", "GEN[1]", "GEN[2]"]}
    assert record(run)["nodes"]["gen"]["items"][1] == {
        "status": SUCCEEDED,
        "attempt": 1,
        "error": None,
        "queued_at": NOW,
        "finished_at": NOW,
    }


def test_a_duplicate_item_result_loses():
    p = fan(foreach="{{ a.output.items }}")
    run, _ = through_a(p, [1, 2])
    run, _ = finish(p, run, "gen[0]", "a")
    again = engine.result_transition(run, "gen[0]", 1, {"output": "b"}, True, NOW)
    assert apply(run, [again])[1] == [False]
    assert engine.result_transition(run, "gen[9]", 1, {}, True, NOW) is None


def test_concurrency_limits_items_in_flight():
    p = fan(foreach="{{ a.output.items }}", concurrency=2)
    run, inv = through_a(p, list(range(5)))
    assert [i.node for i in inv] == ["gen[0]", "gen[1]"]
    run, inv = finish(p, run, "gen[1]", 1)
    assert [i.node for i in inv] == ["gen[2]"]
    in_flight = lambda r: sum(s["status"] == SCHEDULED for s in item_states(r["nodes"]["gen"]))  # noqa: E731
    assert in_flight(run) == 2
    run, inv = finish(p, run, "gen[0]", 0)
    assert [i.node for i in inv] == ["gen[3]"] and in_flight(run) == 2
    for key in ("gen[2]", "gen[3]", "gen[4]"):
        run, inv = finish(p, run, key, int(key[4]))
    assert node_output(run["nodes"]["gen"]) == [0, 1, 2, 3, 4] and [i.node for i in inv] == ["z"]


def test_concurrency_holds_when_routers_race_on_stale_states():
    p = fan(foreach="{{ a.output.items }}", concurrency=2)
    run, _ = through_a(p, list(range(6)))
    # two routers each apply one result, then advance from what they saw: both schedule, within the limit
    r0 = apply(run, [engine.result_transition(run, "gen[0]", 1, {"output": 0}, True, NOW)])[0]
    r1 = apply(r0, [engine.result_transition(r0, "gen[1]", 1, {"output": 1}, True, NOW)])[0]
    s0, s1 = engine.plan(p, r0, NOW), engine.plan(p, r1, NOW)
    merged, _, _ = apply(r1, s1.transitions + s0.transitions)
    assert sum(s["status"] == SCHEDULED for s in item_states(merged["nodes"]["gen"])) <= 2


def test_an_empty_list_succeeds_with_no_invokes():
    p = fan(foreach="{{ a.output.items }}")
    run, inv = through_a(p, [])
    assert run["nodes"]["gen"]["status"] == SUCCEEDED and node_output(run["nodes"]["gen"]) == []
    assert [i.node for i in inv] == ["z"] and inv[0].inputs == {"all": []}


def test_a_foreach_that_is_not_a_list_fails_the_node_naming_the_field():
    p = fan(foreach="{{ a.output.items }}")
    run, inv = through_a(p, "not a list")
    err = run["nodes"]["gen"]["error"]
    assert run["nodes"]["gen"]["status"] == FAILED and inv == []
    assert "node 'gen': field 'foreach' gave str 'not a list', not a list" in err["message"]
    assert run["status"] == FAILED and run["nodes"]["z"]["status"] == "cancelled" and run["error"]["node"] == "gen"


def test_a_failed_item_fails_the_node_after_the_others_finish_naming_its_index():
    p = fan(foreach="{{ a.output.items }}")
    run, _ = through_a(p, [0, 1, 2, 3])
    run, _ = finish(p, run, "gen[1]", ok=False)
    run, _ = finish(p, run, "gen[3]", ok=False)
    assert run["nodes"]["gen"]["status"] == RUNNING  # the others still run
    run, _ = finish(p, run, "gen[0]", 0)
    run, _ = finish(p, run, "gen[2]", 2)
    err = run["nodes"]["gen"]["error"]
    assert run["nodes"]["gen"]["status"] == FAILED and run["status"] == FAILED
    assert err["type"] == "ItemsFailed" and "2 of 4 items failed (item 1, 3); item 1: gen[1] broke" in err["message"]
    assert err["detail"]["failed_items"] == [1, 3]


def test_redrive_reruns_only_failed_items_with_new_attempts():
    p = fan(foreach="{{ a.output.items }}")
    run, _ = through_a(p, [0, 1, 2, 3])
    for i in range(4):
        run, _ = finish(p, run, f"gen[{i}]", i * 10, ok=i not in (1, 3))
    assert run["status"] == FAILED
    transitions, change = replay.plan_redrive(p, run, NOW, by="ops")
    run, won, run_won = apply(run, transitions, change)
    assert all(won) and run_won and change.fields["replays"][-1]["items"] == ["gen[1]", "gen[3]"]
    run, inv = step(p, run)
    assert [i.id for i in inv] == ["r:gen[1]:2", "r:gen[3]:2"]
    assert run["nodes"]["gen"]["attempt"] == 2 and run["nodes"]["a"]["attempt"] == 1
    run, _ = finish(p, run, "gen[1]", 11)
    run, inv = finish(p, run, "gen[3]", 31)
    assert node_output(run["nodes"]["gen"]) == [0, 11, 20, 31] and [i.node for i in inv] == ["z"]


def test_redrive_from_the_node_reruns_every_item():
    p = fan(replicas=2)
    run, _ = through_a(p, None)
    run, _ = finish(p, run, "gen[0]", 0)
    run, _ = finish(p, run, "gen[1]", 1)
    run, _ = finish(p, run, "z", "done")
    assert run["status"] == SUCCEEDED
    run, _, _ = apply(run, *replay.plan_redrive(p, run, NOW, from_node="gen"))
    run, inv = step(p, run)
    assert [i.id for i in inv] == ["r:gen[0]:2", "r:gen[1]:2"]


def test_cancel_stops_items_not_yet_started_and_a_redrive_runs_them():
    p = fan(foreach="{{ a.output.items }}", concurrency=1)
    run, inv = through_a(p, ["x", "y", "z"])
    assert [i.node for i in inv] == ["gen[0]"]
    run, won, run_won = apply(run, *replay.plan_cancel(run, NOW, by="ops"))
    assert all(won) and run_won and run["status"] == "cancelled"
    assert [item["status"] for item in item_states(run["nodes"]["gen"])] == [SCHEDULED, "cancelled", "cancelled"]
    run, inv = finish(p, run, "gen[0]", 0)  # a late result is recorded and moves nothing
    assert inv == [] and item_states(run["nodes"]["gen"])[0]["status"] == SUCCEEDED and run["status"] == "cancelled"
    run, _, _ = apply(run, *replay.plan_redrive(p, run, NOW))
    run, inv = step(p, run)
    # item 0 kept its output; concurrency 1 still holds; the items run again go on from the node's highest
    # item attempt (1), so that every pending item has one attempt and its invoke id is new
    assert [i.id for i in inv] == ["r:gen[1]:2"]


def test_sweeper_republishes_stale_item_invokes_under_the_same_ids():
    p = fan(foreach="{{ a.output.items }}")
    run, _ = through_a(p, ["x", "y"])
    run, _ = finish(p, run, "gen[0]", 0)
    stale = replay.stale_invokes(p, run, NOW, "9999")
    assert [(i.id, i.inputs) for i in stale] == [("r:gen[1]:1", {"x": "y", "i": 1})]


def test_replicas_run_n_copies_with_item_equal_to_index():
    p = fan(replicas=4)
    _, inv = through_a(p, None)
    assert [i.inputs for i in inv] == [{"x": n, "i": n} for n in range(4)]


def test_loop_is_an_alias_of_foreach():
    p = fan(loop="{{ a.output.items }}", concurrency=1)
    assert (
        p.nodes["gen"].foreach == "{{ a.output.items }}" and p.nodes["gen"].to_dict()["loop"] == "{{ a.output.items }}"
    )
    run, inv = through_a(p, ["p", "q"])
    assert [i.id for i in inv] == ["r:gen[0]:1"]
    run, inv = finish(p, run, "gen[0]", "P")
    run, inv = finish(p, run, "gen[1]", "Q")
    assert node_output(run["nodes"]["gen"]) == ["P", "Q"]


def test_a_condition_on_an_edge_from_a_foreach_node_sees_its_output_list():
    p = pipeline(
        [
            {"id": "gen", "type": "f", "replicas": 2, "inputs": {"x": "{{ item }}"}},
            {"id": "big", "type": "f"},
            {"id": "small", "type": "f"},
        ],
        [
            {"from": "gen", "to": "big", "when": "size(gen.output) > 1"},
            {"from": "gen", "to": "small", "when": "size(gen.output) <= 1"},
        ],
    )
    run, _ = step(p, start(p))
    run, _ = finish(p, run, "gen[0]", 0)
    run, inv = finish(p, run, "gen[1]", 1)
    assert [i.node for i in inv] == ["big"] and run["nodes"]["small"]["status"] == SKIPPED


SWITCH = """
metadata: {name: routed}
nodes:
  - id: route
    type: switch
    inputs:
      value: "{{ trigger.data.score }}"
      cases: [{name: positive, when: "value > 0.5"}, {name: negative, when: "value < -0.5"}]
      default: neutral
  - {id: cheer, type: log, inputs: {message: yay}}
  - {id: soothe, type: log, inputs: {message: there}}
  - {id: shrug, type: log, inputs: {message: meh}}
edges:
  - {from: route, to: cheer, branch: positive}
  - {from: route, to: soothe, branch: negative, when: "trigger.data.score > -100.0"}
  - {from: route, to: shrug, branch: neutral}
"""


def test_switch_branch_edges_take_only_the_chosen_branch():
    p = load_string(SWITCH, "routed.yaml")
    assert p.edges[0].condition == "nodes['route'].output.branch == 'positive'"
    assert p.edges[1].condition == "(trigger.data.score > -100.0) && nodes['route'].output.branch == 'negative'"
    run, _ = step(p, start(p, {"score": -0.9}))
    run, inv = finish(p, run, "route", {"branch": "negative", "index": 1})
    assert [i.node for i in inv] == ["soothe"]
    assert run["nodes"]["cheer"]["status"] == SKIPPED and run["nodes"]["shrug"]["status"] == SKIPPED


def problems_of(text: str) -> list[str]:
    with pytest.raises(PipelineInvalid) as err:
        load_string(text, "bad.yaml")
    return [str(x) for x in err.value.problems]


def test_a_branch_that_is_not_a_case_name_is_reported_with_the_edge_and_field():
    found = problems_of(SWITCH.replace("branch: neutral", "branch: neutrl"))
    assert found == [
        "pipeline 'routed' (bad.yaml:16): field 'edges[2].branch': edge route -> shrug: "
        "branch 'neutrl' is not a branch of 'route'. Expected one of: 'positive', 'negative', 'neutral'"
    ]


def test_branch_on_a_condition_must_be_true_or_false_and_on_other_functions_is_an_error():
    text = """
metadata: {name: cond}
nodes:
  - {id: check, type: condition, inputs: {value: 1, expression: "input > 0"}}
  - {id: e, type: log, inputs: {message: a}}
  - {id: f, type: log, inputs: {message: b}}
  - {id: g, type: log, inputs: {message: c}}
edges:
  - {from: check, to: e, branch: true}
  - {from: check, to: f, branch: maybe}
  - {from: e, to: g, branch: x}
"""
    found = problems_of(text)
    assert len(found) == 2, found
    assert "edge check -> f: branch 'maybe' is not a branch of 'check'. Expected one of: 'true', 'false'" in found[0]
    assert (
        "field 'edges[2].branch'" in found[1]
        and "edge e -> g: branch 'x' needs a source that picks a branch" in found[1]
    )


FANOUT = """
metadata: {name: fan}
nodes:
  - {id: a, type: log, inputs: {message: hi}}
  - {id: gen, type: log, foreach: "{{ a.output }}", inputs: {message: "{{ item }}"}}
edges: [{from: a, to: gen}]
"""


@pytest.mark.parametrize(
    "change, expected",
    [
        (
            ('foreach: "{{ a.output }}"', 'foreach: "{{ a.output }}", replicas: 2'),
            "node 'gen' field 'replicas': give one of foreach, replicas, not several",
        ),
        (
            ('foreach: "{{ a.output }}"', "replicas: 0"),
            "node 'gen' field 'replicas': replicas has value 0. Expected a whole number from 1 to 10,000.",
        ),
        (('foreach: "{{ a.output }}"', "replicas: 10001"), "replicas has value 10001"),
        (
            ('foreach: "{{ a.output }}"', 'foreach: "{{ a.output }}", concurrency: 0'),
            "node 'gen' field 'concurrency': concurrency has value 0",
        ),
        (
            ('foreach: "{{ a.output }}"', "foreach: 7"),
            "node 'gen' field 'foreach': foreach has value 7. Expected a template that gives a list",
        ),
        (
            ("edges: [{from: a, to: gen}]", "edges: []"),
            "node 'gen' field 'foreach': reads {{ a.output }} but 'a' is not upstream of 'gen'. Add an edge a -> gen.",
        ),
        (
            ('foreach: "{{ a.output }}", ', ""),
            "node 'gen' field 'inputs': reads {{ item }}, "
            "which is only set for each item of a foreach, loop or replicas node",
        ),
        (
            ('foreach: "{{ a.output }}"', 'foreach: "{{ index }}"'),
            "field 'foreach': reads {{ index }}, which is only set for each item",
        ),
    ],
)
def test_fanout_fields_are_validated_with_file_line_node_and_field(change, expected):
    found = problems_of(FANOUT.replace(*change))
    assert any(expected in x and "bad.yaml:5" in x for x in found), found


def test_fanout_fields_round_trip_through_yaml():
    p = load_string(FANOUT.replace("foreach:", "concurrency: 3, loop:"), "ok.yaml")
    again = load_string(p.to_yaml(), "again.yaml")
    assert again.nodes["gen"].to_dict() == p.nodes["gen"].to_dict() and p.nodes["gen"].concurrency == 3


def test_dsl_fanout_and_branch():
    from functions.builtins.logic import switch
    from functions.builtins.utility import log
    from router.dsl import item, pipeline

    @pipeline(name="dsl-fan")
    def flow(trigger):
        route = switch(value=trigger.score, cases=[{"name": "up", "when": "value > 0"}], default="down", _id="route")
        log(message=trigger.text, _branch=(route, "up"))
        return log(message=item, _foreach=trigger.items, _concurrency=2, _id="each", _replicas=None)

    assert [e.to_dict() for e in flow.edges] == [{"from": "route", "to": "log", "branch": "up"}]
    assert flow.nodes["each"].foreach == "{{ trigger.data.items }}" and flow.nodes["each"].concurrency == 2
    assert validate(flow) == []
