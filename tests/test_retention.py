"""Retention (issue 16, router/retention.py): expired runs go with their node logs, items and blobs, on both
stores; `knflow runs prune --older-than 7d [--dry-run]`; a pipeline's `retention:` and KNFLOW_RETENTION."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from functions.blobs import BlobStore
from knflow.settings import Settings, SettingsInvalid
from router.loader import load_string
from router.pipeline import PipelineInvalid
from router.retention import expires_at
from router.router import iso_before, prune_runs
from router.runs import RUNNING, SCHEDULED, new_fan, now_iso
from router.store.mongo import MongoStore
from router.store.sqlite import SqliteStore
from tests.test_failures_e2e import knflow
from tests.test_store_contract import a_run, log_batch
from tests.test_store_items import items

DAY_S = 86400.0


def old_run(days: float, expires_in_days: float | None, pipeline: str = "p") -> dict:
    """A run created `days` ago with a fan-out node of 3 items; expiring `expires_in_days` after it was created."""
    created = iso_before(days * DAY_S)
    states = items(3, SCHEDULED)
    run = a_run(pipeline=pipeline, created_at=created)
    run["nodes"]["a"] = {
        "status": RUNNING,
        "attempt": 1,
        "output": None,
        "error": None,
        "items": states,
        "fan": new_fan(list(states.values())),
    }
    if expires_in_days is not None:
        run["expires_at"] = expires_at(created, expires_in_days * DAY_S)
    return run


async def stored(store, *runs: dict) -> None:
    for run in runs:
        await store.create_run(run)
        await store.append_logs(run["id"], "a[1]", 1, log_batch("b1", "hello"))


async def test_expired_runs_go_with_their_logs_and_items_and_others_stay(store):
    expired, fresh, undated_old, undated_new = (
        old_run(10, 9.5),  # expired 12 hours ago: MongoDB's TTL (a day later) has not deleted it yet
        old_run(10, 30),
        old_run(40, None),
        old_run(1, None),
    )
    await stored(store, expired, fresh, undated_old, undated_new)
    now, undated = now_iso(), iso_before(30 * DAY_S)
    would = await store.prune_runs(now, undated, None, dry_run=True)
    assert sorted(r["id"] for r in would) == sorted([expired["id"], undated_old["id"]])
    assert await store.get_run(expired["id"]) is not None  # a dry run deletes nothing
    gone = await store.prune_runs(now, undated, None)
    assert sorted(r["id"] for r in gone) == sorted([expired["id"], undated_old["id"]])
    for run in (expired, undated_old):
        assert await store.get_run(run["id"]) is None
        assert await store.get_items(run["id"], "a") == []
        assert await store.read_logs(run["id"]) == ([], {})
    for run in (fresh, undated_new):
        assert len((await store.get_run(run["id"]))["nodes"]["a"]["items"]) == 3
        assert len((await store.read_logs(run["id"]))[0]) == 1
    assert await store.prune_runs(now, undated, None) == []
    by_age = await store.prune_runs(None, None, iso_before(5 * DAY_S))  # `--older-than 5d`: by age alone
    assert [r["id"] for r in by_age] == [fresh["id"]]


async def test_prune_deletes_blobs_of_the_runs_it_deletes(tmp_path: Path):
    store = SqliteStore(tmp_path / "k.db")
    blobs = BlobStore(f"file://{tmp_path}/blobs")
    gone, kept = old_run(10, 7), old_run(1, 30)
    await stored(store, gone, kept)
    for run in (gone, kept):
        await blobs.write(f"runs/{run['id']}/a/1/output.json", b"{}")
    try:
        deleted = await prune_runs(store, blobs, 30 * DAY_S)
        assert [r["id"] for r in deleted] == [gone["id"]]
        assert not (tmp_path / "blobs" / "runs" / gone["id"]).exists()
        assert (tmp_path / "blobs" / "runs" / kept["id"] / "a/1/output.json").exists()
    finally:
        await store.close()


async def test_mongo_runs_have_a_ttl_index_and_its_time(mongo_url):
    store = MongoStore.from_url(mongo_url)
    try:
        run = old_run(1, 7)
        await store.create_run(run)
        info = await store.runs.index_information()
        ttl = [spec for spec in info.values() if spec["key"] == [("expire_at", 1)]]
        assert ttl and ttl[0]["expireAfterSeconds"] == 0
        raw = await store.runs.find_one({"_id": run["id"]})
        assert raw["expire_at"].isoformat()[:10] > run["expires_at"][:10]  # a day after it expires: a backstop
        assert "expire_at" not in await store.get_run(run["id"])
    finally:
        await store.close()


def test_a_pipeline_retention_is_a_duration():
    base = "metadata: {name: r}\ntrigger: {type: webhook}\nnodes: [{id: a, type: log, inputs: {message: hi}}]\n"
    assert load_string(base + "retention: 7d\n", "r.yaml").retention_s == 7 * DAY_S
    with pytest.raises(PipelineInvalid, match=r"r.yaml:4.*retention 'a week' is not a duration"):
        load_string(base + "retention: a week\n", "r.yaml")


def test_knflow_retention_setting_is_checked_at_start():
    assert Settings(retention="12h").retention_s == 12 * 3600
    with pytest.raises(SettingsInvalid, match="KNFLOW_RETENTION has value 'forever'"):
        Settings(retention="forever")


async def test_a_run_expires_by_its_pipeline_retention_or_the_routers(tmp_path: Path):
    from knflow.local import EmbeddedStack

    text = "metadata: {name: NAME}\ntrigger: {type: webhook}\nnodes: [{id: a, type: log, inputs: {message: hi}}]\n"
    short = load_string(text.replace("NAME", "short") + "retention: 2d\n", "short.yaml")
    plain = load_string(text.replace("NAME", "plain"), "plain.yaml")
    async with EmbeddedStack(SqliteStore(tmp_path / "k.db")) as stack:
        for p in (short, plain):
            stack.add(p)
        for p, days in ((short, 2), (plain, 30)):
            run = await stack.store.get_run(await stack.start(p, {}))
            assert run["expires_at"] == expires_at(run["created_at"], days * DAY_S)


def test_knflow_runs_prune_older_than_with_dry_run(tmp_path: Path):
    import asyncio

    url = f"sqlite:///{tmp_path}/k.db"

    async def fill() -> tuple[str, str]:
        store = SqliteStore(tmp_path / "k.db")
        old, new = old_run(10, 30, pipeline="old-one"), old_run(1, 30, pipeline="new-one")
        await stored(store, old, new)
        await store.close()
        return old["id"], new["id"]

    old_id, new_id = asyncio.run(fill())
    env = {**os.environ, "KNFLOW_BLOB_URL": f"file://{tmp_path}/blobs"}
    dry = knflow("runs", "prune", "--older-than", "7d", "--dry-run", "--store", url, env=env)
    assert dry.returncode == 0, dry.stderr
    assert "would delete 1 run created before" in dry.stdout and "(older than 7d)" in dry.stdout
    assert old_id in dry.stdout and new_id not in dry.stdout and "nothing was deleted (--dry-run)" in dry.stdout
    done = knflow("runs", "prune", "--older-than", "7d", "--store", url, env=env)
    assert done.returncode == 0 and "deleted 1 run" in done.stdout and old_id in done.stdout, done.stderr
    again = knflow("runs", "prune", "--older-than", "7d", "--store", url, env=env)
    assert again.returncode == 0 and again.stdout.startswith("no runs created before"), again.stdout
    listed = knflow("runs", "list", "--store", url, env=env)
    assert new_id in listed.stdout and old_id not in listed.stdout
    bad = knflow("runs", "prune", "--store", url, env=env)
    assert bad.returncode != 0 and "needs --older-than DURATION" in bad.stdout + bad.stderr
    bad = knflow("runs", "prune", "--older-than", "a while", "--store", url, env=env)
    assert bad.returncode != 0 and "duration 'a while' is not valid" in bad.stdout + bad.stderr
    assert json.loads(json.dumps(listed.stdout))  # printable as it is
