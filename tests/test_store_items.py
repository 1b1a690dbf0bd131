"""The items of fan-out nodes in both run stores: a compare-and-set per item (`gen[2]`), as `router.runs.apply`."""

from __future__ import annotations

from router.runs import IN_FLIGHT, PENDING, RUNNING, SCHEDULED, SUCCEEDED, Transition, apply, item_map, item_states
from tests.test_store_contract import a_run, race

ITEMS = 60


def items(n: int, status: str = SCHEDULED) -> dict:
    return item_map(
        [{"status": status, "attempt": 1 if status != PENDING else 0, "output": None, "error": None} for _ in range(n)]
    )


def finish(key: str, output, attempt: int = 1) -> Transition:
    return Transition(key, IN_FLIGHT, {"status": SUCCEEDED, "output": output}, attempt=attempt)


async def test_an_item_transition_wins_on_its_own_status_and_attempt_only(store):
    run = a_run(a={"status": RUNNING, "attempt": 1, "items": items(3)})
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
    assert [i["status"] for i in item_states(got["nodes"]["a"])] == [SCHEDULED, SUCCEEDED, SCHEDULED]
    assert got["nodes"]["a"]["items"]["1"]["output"] == "one" and got["nodes"]["a"]["status"] == RUNNING
    assert await store.get_run(run["id"]) == got


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
    assert got["nodes"] == expected["nodes"] and got["version"] == expected["version"]


async def test_concurrent_results_of_many_items_each_apply_exactly_once(backend, store):
    run = a_run(a={"status": RUNNING, "attempt": 1, "items": items(ITEMS)})
    await store.create_run(run)

    async def deliver(s, i: int):  # every item's result twice, all at once
        return await s.commit(run["id"], [finish(f"a[{i % ITEMS}]", i)])

    results = await race(backend, deliver, 2 * ITEMS)
    winners = sorted(i % ITEMS for i, (_, won, _) in enumerate(results) if won == [True])
    assert winners == list(range(ITEMS))
    final = await store.get_run(run["id"])
    assert all(item["status"] == SUCCEEDED for item in item_states(final["nodes"]["a"]))
    assert final["version"] == ITEMS
