"""Big runs (issue 16): a foreach of thousands of items through a real router process, on SQLite and on
MongoDB (the wire server). The items live outside the run document, yet a downstream node's templates
and `GET /runs/{id}` see every output, in order; the stored run document stays small. Not timed: the
cost is measured by `python -m bench.foreach10k`."""

from __future__ import annotations

import json
import sqlite3
import time
import urllib.request
from pathlib import Path

import bson
import pytest
from pymongo import MongoClient

from tests.processes import Process, free_port
from tests.test_fabric_e2e import http
from tests.tokens import ADMIN_TOKEN, ROUTER_ENV

ROOT = Path(__file__).resolve().parent.parent
FUNCS = str(ROOT / "tests/fixtures/big.py")
ITEMS = {"sqlite": 3000, "mongo": 1000}  # the wire server is a Python one: each update costs it the document
PIPELINE = """
metadata: {name: big}
trigger: {type: webhook}
functions: [FUNCS]
nodes:
  - {id: each, type: big-piece, foreach: "{{ trigger.data.items }}", inputs: {n: "{{ item }}"}}
  - {id: count, type: big-count, inputs: {items: "{{ each.output }}"}}
  - {id: last, type: big-piece, inputs: {n: "{{ each.output[-1].n }}"}}
edges: [{from: each, to: count}, {from: each, to: last}]
""".replace("FUNCS", FUNCS)


def text(i: int) -> str:
    return f"{i:04d}é🙂" * 160


@pytest.fixture(params=["sqlite", "mongo"])
def router(request, tmp_path: Path):
    (tmp_path / "big.yaml").write_text(PIPELINE)
    sqlite = f"sqlite:///{tmp_path}/runs.db"
    store = sqlite if request.param == "sqlite" else request.getfixturevalue("mongo_url")
    port = free_port()
    proc = Process(
        ["serve", "router", "--store", store, "--pipelines", str(tmp_path / "big.yaml"), "--port", str(port)],
        tmp_path / "router.log",
        port,
        {**ROUTER_ENV, "PYTHONPATH": str(ROOT), "KNFLOW_BLOB_URL": f"file://{tmp_path}/blobs"},
    ).start()
    proc.store = store
    proc.kind = request.param
    yield proc
    proc.stop()


def wait_run(router, run_id: str, timeout_s: float) -> dict:
    """`GET /runs/{id}` until the run ends (a patient client: the router is busy with thousands of items)."""
    deadline = time.monotonic() + timeout_s
    while True:
        req = urllib.request.Request(f"{router.url}/runs/{run_id}", headers={"authorization": f"Bearer {ADMIN_TOKEN}"})
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            run = json.loads(resp.read())
        if run["status"] != "running":
            return run
        assert time.monotonic() < deadline, f"run {run_id} not finished in {timeout_s} s"
        time.sleep(1)


def stored_run(router, run_id: str) -> tuple[int, int]:
    """(bytes of the stored run document, item outputs stored beside it)."""
    if router.kind == "sqlite":
        db = sqlite3.connect(router.store.removeprefix("sqlite:///"))
        try:
            size = db.execute("SELECT length(doc) FROM runs WHERE id = ?", (run_id,)).fetchone()[0]
            rows = db.execute("SELECT count(*) FROM run_items WHERE run_id = ?", (run_id,)).fetchone()[0]
        finally:
            db.close()
        return size, rows
    client: MongoClient = MongoClient(router.store, directConnection=True)
    try:
        database = client.get_default_database()
        doc = database["runs"].find_one({"_id": run_id})
        assert doc is not None and all("output" not in item for item in doc["items"]["each"].values())
        return len(bson.encode(doc)), database["run_items"].count_documents({"run_id": run_id, "node": "each"})
    finally:
        client.close()


def test_a_foreach_of_thousands_of_items_is_whole_to_templates_and_the_api(router):
    items = ITEMS[router.kind]
    status, body = http("POST", f"{router.url}/hooks/big", json.dumps({"items": list(range(items))}).encode())
    assert status == 202, body
    run = wait_run(router, body["run"], timeout_s=300)
    assert run["status"] == "succeeded", run["error"]
    each = run["nodes"]["each"]
    assert len(each["output"]) == items and all(
        out == {"n": i, "text": text(i)} for i, out in enumerate(each["output"])
    )
    assert len(each["items"]) == items and {item["status"] for item in each["items"]} == {"succeeded"}
    assert run["nodes"]["count"]["output"] == {"n": items}  # the whole list, in order, through a template
    assert run["nodes"]["last"]["output"] == {"n": items - 1, "text": text(items - 1)}
    size, outputs = stored_run(router, run["id"])
    assert outputs == items
    # the outputs (over 1 KB each) are not in the document: on MongoDB the item states (about 200 bytes
    # each) are, on SQLite not even those; the trigger's list of items is (a few bytes each)
    assert size < (10_000 + 250 * items if router.kind == "mongo" else 10_000 + 10 * items), size
    # the router counted each item's result as applied, with its item's queue time (a commit returns the run
    # without its items: the router reads the one item), none as unknown
    assert each["progress"] == {"total": items, "done": items, "failed": 0, "running": 0, "pending": 0}
    scraped = scrape(router)
    assert scraped.get('knflow_router_events_total{outcome="unknown",type="result"}', 0.0) == 0.0
    assert scraped['knflow_router_events_total{outcome="applied",type="result"}'] == items + 2
    labels = 'function="big-piece",node="each",pipeline="big",status="succeeded"'
    assert scraped["knflow_node_duration_seconds_count{" + labels + "}"] == items


def scrape(router) -> dict[str, float]:
    """The router's `GET /metrics` samples, by name and labels as Prometheus writes them."""
    req = urllib.request.Request(f"{router.url}/metrics", headers={"authorization": f"Bearer {ADMIN_TOKEN}"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        lines = resp.read().decode().splitlines()
    return {name: float(v) for name, _, v in (line.rpartition(" ") for line in lines if line and line[0] != "#")}
