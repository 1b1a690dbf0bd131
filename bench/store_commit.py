"""Sequential `commit` rate of each run store: SQLite on a temporary file, MongoDB on nx-27017 (or a URL).

    .venv/bin/python bench/store_commit.py [--calls 2000] [--mongodb-url mongodb://HOST/DB]

One run of 10 nodes; each call awaits the previous one. Three shapes: one transition that wins (a result
applied), one that loses (a duplicate result: MongoDB then reads the run back), and four transitions plus
a run change (an advance step).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from router.runs import RUNNING, RunChange, Transition, new_run
from router.store.mongo import MongoStore
from router.store.sqlite import SqliteStore
from tests.mongo_fixture import MongoWireServer, nx_27017_binary

NODES = [f"node-{i}" for i in range(10)]
OUTPUT = {"text": "x" * 100, "n": 1}


async def bench(store, calls: int) -> dict[str, float]:
    run = new_run(uuid.uuid4().hex, "bench", NODES, {"type": "bench", "data": {"k": "v"}}, {})
    for state in run["nodes"].values():
        state["status"] = RUNNING
    await store.create_run(run)
    rates = {}

    async def timed(name: str, make_args) -> None:
        start = time.perf_counter()
        for k in range(calls):
            await store.commit(run["id"], *make_args(k))
        rates[name] = calls / (time.perf_counter() - start)

    def wins(node: str, k: int) -> Transition:
        return Transition(node, frozenset({RUNNING}), {"attempt": k + 1, "output": OUTPUT}, attempt=k)

    await timed("1 transition, wins", lambda k: ([wins(NODES[0], k)],))
    await timed("1 transition, loses", lambda k: ([wins(NODES[1], -1)],))
    still_running = RunChange(frozenset({RUNNING}), {"status": RUNNING, "error": None})
    await timed("4 transitions + run change", lambda k: ([wins(n, k) for n in NODES[2:6]], still_running))
    return rates


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--mongodb-url", help="a MongoDB to use instead of starting nx-27017")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="knflow-bench-") as tmp:
        results = {}
        sqlite = SqliteStore(Path(tmp) / "knflow.db")
        results["sqlite (WAL, synchronous=NORMAL)"] = await bench(sqlite, args.calls)
        await sqlite.close()

        server = None
        if not (url := args.mongodb_url):
            binary = nx_27017_binary()
            if binary is None:
                raise SystemExit("no nx-27017: install it (the dev extra), or pass --mongodb-url")
            server = MongoWireServer(binary, tmp)
            server.start()
            url = server.database_url("knflow_bench")
        mongo = MongoStore.from_url(url)
        try:
            results["mongodb (nx-27017)" if server else f"mongodb ({url})"] = await bench(mongo, args.calls)
        finally:
            await mongo.close()
            if server:
                server.stop()
    for backend, rates in results.items():
        print(backend)
        for shape, rate in rates.items():
            print(f"  {shape:<28} {rate:>9,.0f} applies/s")


if __name__ == "__main__":
    asyncio.run(main())
