"""The items of fan-out nodes in both run stores: a compare-and-set per item (`gen[2]`), as `router.runs.apply`.

The stores keep items out of the run document: `commit` gives the light document (the node's counters, no
items), `get_run` the full one (with `light`, the light one), `get_items` one node's items, `get_item` one
item (router/runs.py `light`).
"""

from __future__ import annotations

from router.runs import (
    IN_FLIGHT,
    PENDING,
    RUNNING,
    SCHEDULED,
    SUCCEEDED,
    Transition,
    apply,
    item_map,
    item_states,
    light,
    new_fan,
)
from tests.test_store_contract import a_run, race

ITEMS = 60


def items(n: int, status: str = SCHEDULED) -> dict:
    return item_map(
        [{"status": status, "attempt": 1 if status != PENDING else 0, "output": None, "error": None} for _ in range(n)]
    )


def fan_node(n: int, status: str = SCHEDULED) -> dict:
    """A running fan-out node with `n` items, and its counters."""
    states = items(n, status)
    return {"status": RUNNING, "attempt": 1, "items": states, "fan": new_fan(list(states.values()))}


def finish(key: str, output, attempt: int = 1) -> Transition:
    return Transition(key, IN_FLIGHT, {"status": SUCCEEDED, "output": output}, attempt=attempt)


async def test_an_item_transition_wins_on_its_own_status_and_attempt_only(store):
    run = a_run(a=fan_node(3))
    await store.create_run(run)
    got, won, _ = await store.commit(
        run["id"],
        [
            finish("a[1]", "one"),
            finish("a[2]", "x", attempt=2),
            finish("a[5]", "?"),
            finish("b[0]", "?"),
            finish("a[1]", "again"),
        ],
    )
    assert won == [True, False, False, False, False]
    assert "items" not in got["nodes"]["a"] and got["nodes"]["a"]["status"] == RUNNING  # the light document
    assert got["nodes"]["a"]["fan"] == {**new_fan(item_states(run["nodes"]["a"])), "running": 2, "left": 2}
    got_items = await store.get_items(run["id"], "a")
    assert [i["status"] for i in got_items] == [SCHEDULED, SUCCEEDED, SCHEDULED] and got_items[1]["output"] == "one"
    full = await store.get_run(run["id"])
    expected, _, _ = apply(run, [finish("a[1]", "one")])
    assert full["nodes"]["a"]["items"] == expected["nodes"]["a"]["items"]
    assert light(full)[0] == got


async def test_one_item_and_the_light_run_are_read_alone(store):
    run = a_run(a=fan_node(3))
    await store.create_run(run)
    await store.commit(run["id"], [finish("a[2]", {"big": "x" * 100})])
    item = await store.get_item(run["id"], "a", 2)
    assert item is not None and item["status"] == SUCCEEDED and item["attempt"] == 1 and "output" not in item
    assert await store.get_item(run["id"], "a", 7) is None and await store.get_item(run["id"], "b", 0) is None
    assert await store.get_item("nope", "a", 0) is None
    got = await store.get_run(run["id"], light=True)
    assert got is not None and "items" not in got["nodes"]["a"] and got["nodes"]["a"]["fan"]["left"] == 2
    assert await store.get_run("nope", light=True) is None


async def test_a_node_transition_that_sets_items_then_item_transitions_in_one_commit(store):
    run = a_run()
    await store.create_run(run)
    start = Transition(
        "a", frozenset({PENDING}), {"status": RUNNING, "attempt": 1, "items": items(2, PENDING)}, attempt=0
    )
    sched = [
        Transition(f"a[{i}]", frozenset({PENDING}), {"status": SCHEDULED, "attempt": 1}, attempt=0) for i in range(2)
    ]
    got, won, _ = await store.commit(run["id"], [start, *sched])
    expected, expected_won, _ = apply(run, [start, *sched])
    assert won == expected_won == [True, True, True]
    assert got == light(expected)[0] and got["nodes"]["a"]["fan"]["running"] == 2
    assert (await store.get_run(run["id"]))["nodes"]["a"]["items"] == expected["nodes"]["a"]["items"]


async def test_concurrent_results_of_many_items_each_apply_exactly_once(backend, store):
    run = a_run(a=fan_node(ITEMS))
    await store.create_run(run)

    async def deliver(s, i: int):  # every item's result twice, all at once
        return await s.commit(run["id"], [finish(f"a[{i % ITEMS}]", i)])

    results = await race(backend, deliver, 2 * ITEMS)
    winners = sorted(i % ITEMS for i, (_, won, _) in enumerate(results) if won == [True])
    assert winners == list(range(ITEMS))
    final = await store.get_run(run["id"])
    assert all(item["status"] == SUCCEEDED for item in item_states(final["nodes"]["a"]))
    outputs = {i % ITEMS: i for i, (_, won, _) in enumerate(results) if won == [True]}  # each item's winner
    assert [item["output"] for item in item_states(final["nodes"]["a"])] == [outputs[k] for k in range(ITEMS)]
    assert final["version"] == ITEMS
    assert final["nodes"]["a"]["fan"] == {**final["nodes"]["a"]["fan"], "running": 0, "left": 0, "next": ITEMS}


async def test_mongo_an_item_result_is_an_output_insert_then_one_guarded_update_and_a_crash_between_is_safe(
    mongo_url,
):
    """The output goes first, keyed by its content; the item's state names it in the one guarded update. An
    output a router stored before dying (never named) is never read; the same result again stores nothing."""
    from pymongo import AsyncMongoClient, monitoring

    from router.store.mongo import MongoStore, _bare

    class Commands(monitoring.CommandListener):
        def __init__(self) -> None:
            self.names: list[str] = []

        def started(self, event: monitoring.CommandStartedEvent) -> None:
            if event.command_name in ("findAndModify", "update", "find", "insert"):
                self.names.append(event.command_name)

        def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
            pass

        def failed(self, event: monitoring.CommandFailedEvent) -> None:
            pass

    seen = Commands()
    store = MongoStore(AsyncMongoClient(mongo_url, directConnection=True, event_listeners=[seen]))
    try:
        run = a_run(a=fan_node(3))
        await store.create_run(run)
        orphan: list[dict] = []  # what a router that died after its insert left
        _bare(run["id"], "a", "0", {"status": SUCCEEDED, "attempt": 1, "output": "lost"}, orphan)
        await store._put_outputs(orphan)
        seen.names.clear()
        light_run, won, _ = await store.commit(run["id"], [finish("a[0]", "kept")])
        assert won == [True] and seen.names == ["insert", "findAndModify"] and "items" not in light_run
        assert light_run["nodes"]["a"]["fan"]["left"] == 2
        _, won, _ = await store.commit(run["id"], [finish("a[0]", "kept")])  # delivered again
        assert won == [False]
        assert [i["output"] for i in await store.get_items(run["id"], "a")] == ["kept", None, None]
        assert await store.items.count_documents({"run_id": run["id"]}) == 2  # the orphan, and "kept" once
    finally:
        await store.close()


async def test_commit_gives_the_states_of_the_items_it_names_so_a_result_needs_no_read(store):
    """`Committed.items`: each named item as the commit left it (its other fields, such as `queued_at`, kept;
    no output), a lost one as it is, an unknown one absent; on the one guarded update and on the read path."""
    run = a_run(a=fan_node(3))
    for state in run["nodes"]["a"]["items"].values():
        state["queued_at"] = "2026-01-01T00:00:00.000Z"
    await store.create_run(run)
    first = await store.commit(run["id"], [finish("a[1]", {"big": "x" * 100})])  # one guarded update
    assert first.items == {
        "a[1]": {"status": SUCCEEDED, "attempt": 1, "error": None, "queued_at": "2026-01-01T00:00:00.000Z"}
    }
    again = await store.commit(run["id"], [finish("a[1]", "late"), finish("a[2]", "two"), finish("a[9]", "?")])
    assert again[1] == [False, True, False]  # a lost one: the stored run decides (the read path)
    assert again.items["a[1]"]["status"] == SUCCEEDED and "output" not in again.items["a[1]"]
    assert again.items["a[2]"]["status"] == SUCCEEDED and again.items["a[2]"]["queued_at"].startswith("2026")
    assert "a[9]" not in again.items
    assert (await store.commit(run["id"], [])).items == {}
    assert "items" not in again.run["nodes"]["a"] and again.run["nodes"]["a"]["fan"]["left"] == 1
