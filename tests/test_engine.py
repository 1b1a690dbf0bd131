"""The decision core: pure, so tested without servers, by hand and with random DAGs."""

from __future__ import annotations

import random
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from router import engine
from router.pipeline_doc import from_dict
from router.runs import (
    CANCELLED,
    FAILED,
    NODE_FINAL,
    PENDING,
    RUN_FINAL,
    SCHEDULED,
    SKIPPED,
    SUCCEEDED,
    RunChange,
    apply,
    new_run,
)

NOW = "2026-01-01T00:00:00.000Z"


def pipeline(nodes: list[str], edges: list[tuple], inputs: dict | None = None):
    doc = {
        "metadata": {"name": "t"},
        "variables": {"limit": 2},
        "nodes": [{"id": n, "type": "f", "inputs": (inputs or {}).get(n, {})} for n in nodes],
        "edges": [{"from": e[0], "to": e[1], **({"when": e[2]} if len(e) > 2 else {})} for e in edges],
    }
    p, problems = from_dict(doc)
    assert problems == []
    return p


def start(p, data=None):
    return new_run("r", p.name, list(p.nodes), {"type": "t", "data": data or {}}, dict(p.variables))


def step_apply(p, run):
    step = engine.plan(p, run, NOW)
    run, won, _ = apply(run, step.transitions, step.run_change)
    invokes = [
        step.invokes[t.node] for t, ok in zip(step.transitions, won, strict=True) if ok and t.node in step.invokes
    ]
    return run, invokes


def finish(p, run, node, output=None, ok=True):
    attempt = run["nodes"][node]["attempt"]
    data = {"output": output} if ok else {"error": {"type": "E", "message": "boom"}}
    t = engine.result_transition(run, node, attempt, data, ok, NOW)
    run, won, _ = apply(run, [t])
    assert won == [True]
    return step_apply(p, run)


def statuses(run):
    return {n: s["status"] for n, s in run["nodes"].items()}


def test_diamond_fans_out_and_joins_once():
    p = pipeline(
        ["a", "b", "c", "d"],
        [("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")],
        {"b": {"x": "{{ a.output.v }}"}, "d": {"sum": "{{ b.output }} + {{ c.output }}"}},
    )
    run, inv = step_apply(p, start(p))
    assert [i.node for i in inv] == ["a"] and inv[0].id == "r:a:1" and inv[0].function == "f"
    run, inv = finish(p, run, "a", {"v": 7})
    assert sorted(i.node for i in inv) == ["b", "c"]
    assert next(i for i in inv if i.node == "b").inputs == {"x": 7}
    run, inv = finish(p, run, "b", 1)
    assert inv == []  # d waits for c
    run, inv = finish(p, run, "c", 2)
    assert [i.node for i in inv] == ["d"] and inv[0].inputs == {"sum": "1 + 2"}
    run, inv = finish(p, run, "d", 3)
    assert run["status"] == SUCCEEDED and run["finished_at"] == NOW and inv == []


def test_an_attempts_times_come_from_its_reply_and_the_record_adds_its_queue_time():
    from router import replay
    from router.runs import record

    p = pipeline(["a"], [])
    run, _ = step_apply(p, start(p))
    assert run["nodes"]["a"]["queued_at"] == NOW  # when the router scheduled (and published) it
    reply = {
        "output": 1,
        "started_at": "2026-01-01T00:00:00.250Z",  # the function's clock
        "finished_at": "2026-01-01T00:00:01.000Z",
        "duration_ms": 750.0,
    }
    t = engine.result_transition(run, "a", 1, reply, True, "2026-01-01T00:00:02.000Z")
    run, _, _ = apply(run, [t])
    a = record(run)["nodes"]["a"]
    assert {k: a[k] for k in ("queued_at", "started_at", "finished_at", "duration_ms", "queue_ms")} == {
        "queued_at": NOW,
        "started_at": "2026-01-01T00:00:00.250Z",
        "finished_at": "2026-01-01T00:00:01.000Z",  # the reply's, not the router's time of applying it
        "duration_ms": 750.0,
        "queue_ms": 250.0,
    }
    run["status"] = FAILED  # a finished run, redriven from a: the attempt moves into the history, times and all
    transitions, _ = replay.plan_redrive(p, run, NOW, from_node="a")
    kept = apply(run, transitions)[0]["nodes"]["a"]["attempts"][0]
    assert (kept["queued_at"], kept["started_at"], kept["queue_ms"]) == (NOW, "2026-01-01T00:00:00.250Z", 250.0)

    dead = engine.result_transition(
        run, "a", 1, {"error": {"type": "E", "message": "m"}}, False, "2026-01-01T00:00:09.000Z"
    )
    assert dead.fields["finished_at"] == "2026-01-01T00:00:09.000Z"  # no reply times (a dead letter): the router's
    late = {"status": "failed", "attempt": 1, "queued_at": "2026-01-01T00:00:05.000Z", "started_at": NOW}
    assert record({**run, "nodes": {"a": {**late, "output": None, "error": None}}})["nodes"]["a"]["queue_ms"] == -5000.0
    assert "queue_ms" not in record(start(p))["nodes"]["a"]


def test_result_for_a_finished_node_or_an_old_attempt_loses():
    p = pipeline(["a"], [])
    run, _ = step_apply(p, start(p))
    late = engine.result_transition(run, "a", 0, {"output": 1}, True, NOW)
    assert apply(run, [late])[1] == [False]
    run, _ = finish(p, run, "a", 1)
    again = engine.result_transition(run, "a", 1, {"output": 2}, True, NOW)
    assert apply(run, [again])[1] == [False]
    assert engine.result_transition(run, "ghost", 1, {}, True, NOW) is None


def test_false_condition_skips_what_only_it_feeds_and_a_join_runs_on_one_live_branch():
    p = pipeline(
        ["check", "big", "small", "after-big", "join"],
        [
            ("check", "big", "check.output.n > variables.limit"),
            ("check", "small", "check.output.n <= variables.limit"),
            ("big", "after-big"),
            ("after-big", "join"),
            ("small", "join"),
        ],
        {"join": {"big": "{{ after-big.output }}", "small": "{{ small.output }}"}},
    )
    run, _ = step_apply(p, start(p))
    run, inv = finish(p, run, "check", {"n": 1})
    assert [i.node for i in inv] == ["small"]
    assert statuses(run)["big"] == SKIPPED and statuses(run)["after-big"] == SKIPPED
    run, inv = finish(p, run, "small", "s")
    assert [i.node for i in inv] == ["join"] and inv[0].inputs == {"big": None, "small": "s"}
    run, _ = finish(p, run, "join", "done")
    assert run["status"] == SUCCEEDED


def test_nodes_ids_that_are_not_identifiers_in_conditions():
    p = pipeline(["fetch-topic", "b"], [("fetch-topic", "b", "nodes['fetch-topic'].output.ok")])
    run, _ = step_apply(p, start(p))
    run, _ = finish(p, run, "fetch-topic", {"ok": False})
    assert statuses(run)["b"] == SKIPPED and run["status"] == SUCCEEDED


def test_a_failure_cancels_downstream_lets_other_branches_finish_and_fails_the_run():
    p = pipeline(["a", "b", "c", "d"], [("a", "b"), ("a", "c"), ("b", "d")])
    run, _ = step_apply(p, start(p))
    run, _ = finish(p, run, "a", 1)
    run, _ = finish(p, run, "b", ok=False)
    assert statuses(run) == {"a": SUCCEEDED, "b": FAILED, "c": SCHEDULED, "d": CANCELLED}
    assert run["nodes"]["d"]["error"]["message"] == "not run: upstream node 'b' failed"
    assert run["status"] == "running"
    run, _ = finish(p, run, "c", 2)
    assert run["status"] == FAILED
    assert run["error"]["node"] == "b" and run["error"]["message"] == "boom"


def test_template_error_at_run_time_fails_the_node_with_the_reason():
    p = pipeline(["a", "b"], [("a", "b")], {"b": {"x": "{{ a.output.missing }}"}})
    run, _ = step_apply(p, start(p))
    run, inv = finish(p, run, "a", {"present": 1})
    assert inv == [] and statuses(run)["b"] == FAILED
    assert "'a' output has no key 'missing'" in run["nodes"]["b"]["error"]["message"]
    assert run["status"] == FAILED and run["error"]["node"] == "b"


def test_condition_error_at_run_time_fails_the_target():
    p = pipeline(["a", "b"], [("a", "b", "a.output.nope > 1")])
    run, _ = step_apply(p, start(p))
    run, _ = finish(p, run, "a", {"x": 1})
    assert statuses(run)["b"] == FAILED and run["nodes"]["b"]["error"]["type"] == "ConditionError"


def test_advance_is_idempotent_and_a_finished_run_does_not_move():
    p = pipeline(["a"], [])
    run, _ = step_apply(p, start(p))
    assert not engine.plan(p, run, NOW)
    run, _ = finish(p, run, "a", 1)
    assert not engine.plan(p, run, NOW)


def test_run_change_needs_every_transition_to_win():
    p = pipeline(["a"], [])
    run = start(p)
    run["nodes"]["a"]["status"] = SCHEDULED  # someone else moved it
    step = engine.plan(p, start(p), NOW)
    _, won, run_won = apply(run, step.transitions, RunChange(frozenset({"running"}), {"status": SUCCEEDED}))
    assert won == [False] and run_won is False


@st.composite
def scenarios(draw):
    n = draw(st.integers(1, 10))
    names = [f"n{i}" for i in range(n)]
    edges = []
    for j in range(1, n):
        for i in range(j):
            if draw(st.booleans()) and draw(st.booleans()):
                when = draw(st.sampled_from([None, None, "true", "false", f"n{i}.output.v > 0.5"]))
                edges.append((names[i], names[j]) + ((when,) if when else ()))
    outcomes = {x: draw(st.sampled_from(["ok", "ok", "ok", "fail"])) for x in names}
    values = {x: draw(st.sampled_from([0, 1, 0.25, 0.75])) for x in names}
    seed = draw(st.integers(0, 2**16))
    return names, edges, outcomes, values, seed


@settings(max_examples=300, deadline=None)
@given(scenarios())
def test_random_dags_end_with_every_node_final_and_each_node_run_at_most_once(scenario):
    names, edges, outcomes, values, seed = scenario
    rng = random.Random(seed)
    p = pipeline(names, edges)
    run, in_flight = step_apply(p, start(p))
    invoked = Counter()
    while in_flight:
        inv = in_flight.pop(rng.randrange(len(in_flight)))
        invoked[inv.node] += 1
        ok = outcomes[inv.node] == "ok"
        data = {"output": {"v": values[inv.node]}} if ok else {"error": {"message": "x"}}
        t = engine.result_transition(run, inv.node, inv.attempt, data, ok, NOW)
        run, won, _ = apply(run, [t])
        assert won == [True]
        assert apply(run, [t])[1] == [False]  # a duplicate result changes nothing
        run, new = step_apply(p, run)
        in_flight += new
    st_ = statuses(run)
    assert all(s in NODE_FINAL for s in st_.values()), st_
    assert run["status"] in RUN_FINAL
    assert max(invoked.values(), default=0) <= 1
    for node, status in st_.items():
        preds = p.predecessors[node]
        if status in (SUCCEEDED, FAILED):
            assert invoked[node] == 1 and all(st_[x] in (SUCCEEDED, SKIPPED) for x in preds)
        else:
            assert invoked[node] == 0
        if status == CANCELLED:
            assert any(st_[x] in (FAILED, CANCELLED) for x in preds)
        if status == SKIPPED:
            assert preds and not any(st_[x] in (FAILED, CANCELLED) for x in preds)
    bad = any(s in (FAILED, CANCELLED) for s in st_.values())
    assert run["status"] == (FAILED if bad else SUCCEEDED)
    assert PENDING not in st_.values()
