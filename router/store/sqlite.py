"""The SQLite store (stdlib sqlite3, WAL): the embedded default, one file under the working directory.

Each run is one JSON document, without its fan-out nodes' items: those are rows of `run_items` (one per
item, keyed by run, node and index), so a result of one item of 10,000 reads and writes that item's row
and the (small) run document, never the other items (router/runs.py `light`). `commit` reads, applies
the pure compare-and-set of `router.runs` and writes back inside a `BEGIN IMMEDIATE` transaction, so
several processes on one file stay correct, and an item and its node's counters change together.
Calls are short and synchronous on the event loop's thread.

Group commit: the writes of one event-loop tick share one transaction, committed by a callback at the
start of the next tick; each writer returns once that commit is done, so "state first, publish second"
holds as before. A read-modify-write never yields in between, so each `commit` stays atomic. While the
transaction is open this connection holds the write lock, so the documents it read or changed stay in
memory until the commit, which writes each changed run once: the results of one run handled in one tick
(a node's result and the advance after it, the branches of a fan-out) cost one UPDATE. A router that
handles a fetched batch of 200 results writes them in one transaction (bench/PROFILE.md). A failed
COMMIT fails every writer of its tick. Reads commit the open transaction first, so they see every
write that returned and every write that will return.

Between transactions the store keeps the stored bytes of the run documents it last read or wrote (`_kept`,
the most recent KEPT_RUNS), so the next result of a run parses its document without a SELECT. Bytes, not
the documents: each commit still starts from a document of its own, which no in-process function that was
handed part of an earlier one can have changed. They are what the file holds as long as no other connection
wrote to it, which `PRAGMA data_version` tells at each BEGIN (it changes with every commit of another
connection, this process' other stores included): when it moved, or a COMMIT failed, they are dropped.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import weakref
from collections import OrderedDict
from pathlib import Path
from typing import Any, cast

import orjson

from router.node_logs import LogBatch, LogLine, base_node, node_filter, truncation_key
from router.runs import ItemState, RunChange, RunDoc, Transition, apply, split_key, with_items
from router.runs import light as _light
from router.store.base import Committed, RunCount, RunExists, RunNotFound, item_results
from router.tokens import TokenExists, TokenRecord

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
  id TEXT PRIMARY KEY, pipeline TEXT NOT NULL, status TEXT NOT NULL, created_at TEXT NOT NULL, doc BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_by_pipeline ON runs (pipeline, created_at);
CREATE INDEX IF NOT EXISTS runs_by_created ON runs (created_at);
CREATE INDEX IF NOT EXISTS runs_by_status ON runs (status, pipeline);
CREATE TABLE IF NOT EXISTS run_items (
  run_id TEXT NOT NULL, node TEXT NOT NULL, idx INTEGER NOT NULL, state BLOB NOT NULL, PRIMARY KEY (run_id, node, idx)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS run_expiry (run_id TEXT PRIMARY KEY, expires_at TEXT NOT NULL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS run_expiry_by_time ON run_expiry (expires_at);
CREATE TABLE IF NOT EXISTS pipelines (name TEXT PRIMARY KEY, doc BLOB NOT NULL, updated_at TEXT NOT NULL, source TEXT);
CREATE TABLE IF NOT EXISTS tokens (
  name TEXT PRIMARY KEY, hash TEXT NOT NULL UNIQUE, scope TEXT NOT NULL, created_at TEXT NOT NULL, revoked_at TEXT
);
CREATE TABLE IF NOT EXISTS router_secrets (name TEXT PRIMARY KEY, value TEXT NOT NULL, created_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS node_logs (
  run_id TEXT NOT NULL, seq INTEGER NOT NULL, node TEXT NOT NULL, base TEXT NOT NULL, attempt INTEGER NOT NULL,
  at TEXT NOT NULL, stream TEXT NOT NULL, level TEXT, message TEXT NOT NULL, fields BLOB,
  PRIMARY KEY (run_id, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS node_log_batches (
  run_id TEXT NOT NULL, node TEXT NOT NULL, base TEXT NOT NULL, attempt INTEGER NOT NULL, batch TEXT NOT NULL,
  dropped INTEGER NOT NULL, PRIMARY KEY (run_id, node, attempt, batch)
);
"""

_OPEN: weakref.WeakSet[SqliteStore] = weakref.WeakSet()  # stores whose tick transaction is open
KEPT_RUNS = 4096  # run documents kept (as bytes) between transactions, see the module docstring
KEPT_MAX_BYTES = 64 * 1024  # a larger document is read again each time


class SqliteStore:
    def __init__(self, path: str | Path = "knflow.db", busy_timeout_s: float = 10.0) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)
        _migrate(self._db)
        self._open = False  # a tick transaction is open
        self._waiters: list[asyncio.Future[None]] = []  # its writers, woken by its commit
        self._docs: dict[str, RunDoc] = {}  # runs as this transaction has them (light: no items)
        self._dirty: set[str] = set()  # of those, the ones to write at the commit
        self._items: dict[tuple[str, str, int], ItemState] = {}  # items as this transaction has them
        self._dirty_items: set[tuple[str, str, int]] = set()  # of those, the ones to write at the commit
        self._replaced: set[tuple[str, str]] = set()  # (run, node) whose items were set anew: old rows go
        self._kept: OrderedDict[str, bytes] = OrderedDict()  # stored runs' bytes as this connection last saw them
        self._data_version = -1  # PRAGMA data_version when `_kept` was last known to match the file
        self._thread = threading.get_ident()

    @classmethod
    def from_url(cls, url: str) -> SqliteStore:
        """`sqlite:///knflow.db` (relative), `sqlite:////tmp/k.db` (absolute), `sqlite://:memory:`."""
        rest = url.removeprefix("sqlite://")
        return cls(rest[1:] if rest.startswith("/") else rest or "knflow.db")

    def _begin(self) -> None:
        """Open this tick's write transaction, unless it is open; its commit runs at the next tick."""
        if self._open:
            return
        for other in list(_OPEN):  # another store on this file in this thread would wait for us: commit it now
            if other is not self and other.path == self.path and other._thread == self._thread:
                other._commit()
        self._db.execute("BEGIN IMMEDIATE")
        version = self._db.execute("PRAGMA data_version").fetchone()[0]
        if version != self._data_version:  # another connection wrote since: what was kept may be stale
            self._kept.clear()
            self._data_version = version
        self._open = True
        _OPEN.add(self)
        asyncio.get_running_loop().call_soon(self._commit)

    def _commit(self) -> None:
        if not self._open:
            return
        self._open = False
        _OPEN.discard(self)
        waiters, self._waiters = self._waiters, []
        docs, dirty, self._docs, self._dirty = self._docs, self._dirty, {}, set()
        items, dirty_items, replaced = self._items, self._dirty_items, self._replaced
        self._items, self._dirty_items, self._replaced = {}, set(), set()
        try:
            if dirty:
                rows = [(docs[run_id]["status"], orjson.dumps(docs[run_id]), run_id) for run_id in dirty]
                self._db.executemany("UPDATE runs SET status = ?, doc = ? WHERE id = ?", rows)
                for _, raw, run_id in rows:
                    self._keep_run(run_id, raw)
            if replaced:
                self._db.executemany("DELETE FROM run_items WHERE run_id = ? AND node = ?", sorted(replaced))
            if dirty_items:  # rows made one at a time: a list of 10,000 (orjson's buffers) is 40 MB at once
                self._db.executemany(
                    "INSERT OR REPLACE INTO run_items (run_id, node, idx, state) VALUES (?, ?, ?, ?)",
                    ((*key, orjson.dumps(items[key])) for key in sorted(dirty_items)),
                )
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            self._kept.clear()
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            for fut in waiters:
                if not fut.done():
                    fut.set_exception(exc)
            return
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    def _keep_run(self, run_id: str, raw: bytes) -> None:
        """Keep a run's stored bytes (read or written in this transaction), the most recent KEPT_RUNS."""
        kept = self._kept
        if len(raw) > KEPT_MAX_BYTES:
            kept.pop(run_id, None)
            return
        kept[run_id] = raw
        kept.move_to_end(run_id)  # the least recently used go first
        if len(kept) > KEPT_RUNS:
            kept.popitem(last=False)

    async def _committed(self) -> None:
        """Return once the open transaction, which holds this caller's write, is committed."""
        if self._open:
            fut = asyncio.get_running_loop().create_future()
            self._waiters.append(fut)
            await fut

    async def create_run(self, run: RunDoc) -> None:
        self._begin()
        doc, items = _light(run)
        raw = orjson.dumps(doc)
        try:
            self._db.execute(
                "INSERT INTO runs (id, pipeline, status, created_at, doc) VALUES (?, ?, ?, ?, ?)",
                (run["id"], run["pipeline"], run["status"], run["created_at"], raw),
            )
        except sqlite3.IntegrityError:
            raise RunExists(f"run '{run['id']}' already exists", run_id=run["id"]) from None
        self._keep_run(run["id"], raw)
        if run.get("expires_at"):
            self._db.execute(
                "INSERT INTO run_expiry (run_id, expires_at) VALUES (?, ?)", (run["id"], run["expires_at"])
            )
        for node, states in items.items():
            self._replaced.add((run["id"], node))
            self._keep(run["id"], node, states)
        await self._committed()

    async def get_run(self, run_id: str, *, light: bool = False) -> RunDoc | None:
        self._commit()
        row = self._db.execute("SELECT doc FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            return None
        doc, inline = _light(orjson.loads(row[0]))  # a document stored with its items (before run_items) too
        if light:
            return doc
        items: dict[str, list[ItemState]] = {n: [m[k] for k in sorted(m, key=int)] for n, m in inline.items()}
        rows = self._db.execute("SELECT node, state FROM run_items WHERE run_id = ? ORDER BY node, idx", (run_id,))
        for node, state in rows:
            items.setdefault(node, []).append(orjson.loads(state))
        return with_items(doc, items)

    async def get_items(self, run_id: str, node: str) -> list[ItemState]:
        self._commit()
        rows = self._db.execute(
            "SELECT state FROM run_items WHERE run_id = ? AND node = ? ORDER BY idx", (run_id, node)
        )  # read row by row: all 10,000 rows' bytes at once would double the peak of a big join
        return [orjson.loads(r[0]) for r in rows]

    def _keep(self, run_id: str, node: str, states: dict[str, ItemState]) -> None:
        for index, state in states.items():
            key = (run_id, node, int(index))
            self._items[key] = state
            self._dirty_items.add(key)

    async def get_item(self, run_id: str, node: str, index: int) -> ItemState | None:
        self._commit()
        item = self._item(run_id, node, index)
        return None if item is None else cast(ItemState, {k: v for k, v in item.items() if k != "output"})

    def _item(self, run_id: str, node: str, index: int) -> ItemState | None:
        key = (run_id, node, index)
        if key not in self._items:
            row = self._db.execute(
                "SELECT state FROM run_items WHERE run_id = ? AND node = ? AND idx = ?", key
            ).fetchone()
            if row is None:
                return None
            self._items[key] = orjson.loads(row[0])
        return self._items[key]

    async def commit(
        self, run_id: str, transitions: list[Transition], run_change: RunChange | None = None
    ) -> Committed:
        self._begin()
        run = self._docs.get(run_id)
        if run is None:
            raw = self._kept.get(run_id)
            if raw is None:
                row = self._db.execute("SELECT doc FROM runs WHERE id = ?", (run_id,)).fetchone()
                if row is None:
                    raise RunNotFound(f"run '{run_id}' not found", run_id=run_id)
                raw = row[0]
                self._keep_run(run_id, raw)
            run = orjson.loads(raw)
        work = self._with_touched_items(run, transitions)
        new, won, run_won = apply(work, transitions, run_change)  # a new document; `run` stays as it is
        doc, items = _light(new)
        if any(won) or run_won:
            self._dirty.add(run_id)
            for t, ok in zip(transitions, won, strict=True):
                if ok and "items" in t.fields and split_key(t.node)[1] is None:
                    self._replaced.add((run_id, t.node))
            for node, states in items.items():
                if (run_id, node) not in self._replaced:  # only the items that changed (`apply` made them anew)
                    states = {k: v for k, v in states.items() if self._items.get((run_id, node, int(k))) is not v}
                self._keep(run_id, node, states)
        self._docs[run_id] = doc
        await self._committed()  # also when it lost: what it read is then durable too
        return Committed(doc, won, run_won, item_results(new, transitions))

    def _with_touched_items(self, run: RunDoc, transitions: list[Transition]) -> RunDoc:
        """`run` with the items its item transitions name (those that exist), for `apply` to decide on."""
        touched: dict[str, dict[str, ItemState]] = {}
        for t in transitions:
            node, index = split_key(t.node)
            if index is None or node not in run["nodes"]:
                continue
            item = self._item(run["id"], node, index)
            if item is not None:
                touched.setdefault(node, {})[str(index)] = item
        if not touched:
            return run
        nodes = dict(run["nodes"])
        for node, found in touched.items():
            nodes[node] = {**nodes[node], "items": {**(nodes[node].get("items") or {}), **found}}
        return {**run, "nodes": nodes}

    async def list_runs(
        self,
        pipeline: str | None = None,
        status: str | None = None,
        limit: int = 50,
        *,
        since: str | None = None,
        until: str | None = None,
        trigger: str | None = None,
        offset: int = 0,
    ) -> list[RunDoc]:
        where, args = [], []
        for clause, value in (
            ("pipeline = ?", pipeline),
            ("status = ?", status),
            ("created_at >= ?", since),
            ("created_at < ?", until),
            ("json_extract(CAST(doc AS TEXT), '$.trigger.type') = ?", trigger),  # json_* cannot read a BLOB
        ):
            if value:
                where.append(clause)
                args.append(value)
        self._commit()
        sql = "SELECT doc FROM runs" + (" WHERE " + " AND ".join(where) if where else "")
        rows = self._db.execute(
            sql + " ORDER BY created_at DESC, rowid DESC LIMIT ? OFFSET ?", (*args, limit, max(offset, 0))
        ).fetchall()
        return [orjson.loads(r[0]) for r in rows]

    async def count_runs(self, *, since: str | None = None, status: str | None = None) -> list[RunCount]:
        where, args = [], []
        for clause, value in (("created_at >= ?", since), ("status = ?", status)):
            if value:
                where.append(clause)
                args.append(value)
        self._commit()
        sql = "SELECT pipeline, status, COUNT(*) FROM runs" + (" WHERE " + " AND ".join(where) if where else "")
        rows = self._db.execute(sql + " GROUP BY pipeline, status ORDER BY pipeline, status", args)
        return [RunCount(pipeline=p, status=st, count=n) for p, st, n in rows]

    async def prune_runs(
        self,
        expired_by: str | None,
        undated_before: str | None,
        created_before: str | None,
        dry_run: bool = False,
        limit: int = 1000,
    ) -> list[RunDoc]:
        where: list[str] = []
        args: list[str | int] = []
        if expired_by is not None:
            where.append("e.expires_at <= ?")
            args.append(expired_by)
        if undated_before is not None:
            where.append("(e.expires_at IS NULL AND r.created_at < ?)")
            args.append(undated_before)
        if created_before is not None:
            where.append("r.created_at < ?")
            args.append(created_before)
        if not where:
            return []
        self._commit()
        rows = self._db.execute(
            "SELECT r.id, r.doc FROM runs r LEFT JOIN run_expiry e ON e.run_id = r.id "
            f"WHERE {' OR '.join(where)} ORDER BY r.created_at LIMIT ?",
            (*args, limit),
        ).fetchall()
        runs = [orjson.loads(doc) for _, doc in rows]
        if dry_run or not runs:
            return runs
        ids = [(run_id,) for run_id, _ in rows]
        self._begin()
        for run_id, _ in rows:  # gone: a later commit on one finds nothing kept, and raises RunNotFound
            self._kept.pop(run_id, None)
            self._docs.pop(run_id, None)  # its UPDATE would change no row
            self._dirty.discard(run_id)
        self._db.executemany("DELETE FROM runs WHERE id = ?", ids)
        for table in ("run_items", "run_expiry", "node_logs", "node_log_batches"):
            self._db.executemany(f"DELETE FROM {table} WHERE run_id = ?", ids)
        await self._committed()
        return runs

    async def get_or_create_secret(self, name: str, value: str) -> str:
        from router.runs import now_iso

        self._begin()
        self._db.execute(
            "INSERT INTO router_secrets (name, value, created_at) VALUES (?, ?, ?) ON CONFLICT(name) DO NOTHING",
            (name, value, now_iso()),
        )
        await self._committed()
        return self._db.execute("SELECT value FROM router_secrets WHERE name = ?", (name,)).fetchone()[0]

    async def put_pipeline(self, name: str, definition: dict[str, Any], source: str | None = None) -> None:
        from router.runs import now_iso

        self._begin()
        self._db.execute(
            "INSERT INTO pipelines (name, doc, updated_at, source) VALUES (?, ?, ?, ?) ON CONFLICT(name) DO UPDATE "
            "SET doc = excluded.doc, updated_at = excluded.updated_at, source = excluded.source",
            (name, orjson.dumps(definition), now_iso(), source),
        )
        await self._committed()

    async def get_pipeline_source(self, name: str) -> str | None:
        self._commit()
        row = self._db.execute("SELECT source FROM pipelines WHERE name = ?", (name,)).fetchone()
        return row[0] if row else None

    async def get_pipeline(self, name: str) -> dict[str, Any] | None:
        self._commit()
        row = self._db.execute("SELECT doc FROM pipelines WHERE name = ?", (name,)).fetchone()
        return orjson.loads(row[0]) if row else None

    async def list_pipelines(self) -> list[dict[str, Any]]:
        self._commit()
        return [orjson.loads(r[0]) for r in self._db.execute("SELECT doc FROM pipelines ORDER BY name")]

    async def delete_pipeline(self, name: str) -> bool:
        self._begin()
        deleted = self._db.execute("DELETE FROM pipelines WHERE name = ?", (name,)).rowcount > 0
        await self._committed()
        return deleted

    async def put_token(self, token: TokenRecord) -> None:
        self._begin()
        changed = self._db.execute(
            "INSERT INTO tokens (name, hash, scope, created_at, revoked_at) VALUES (?, ?, ?, ?, NULL) "
            "ON CONFLICT(name) DO UPDATE SET hash = excluded.hash, scope = excluded.scope, "
            "created_at = excluded.created_at, revoked_at = NULL WHERE tokens.revoked_at IS NOT NULL",
            (token["name"], token["hash"], token["scope"], token["created_at"]),
        ).rowcount
        await self._committed()
        if not changed:
            raise TokenExists(f"a token named '{token['name']}' exists; revoke it first", name=token["name"])

    async def get_token(self, token_hash: str) -> TokenRecord | None:
        self._commit()
        row = self._db.execute(
            "SELECT name, scope, hash, created_at, revoked_at FROM tokens WHERE hash = ?", (token_hash,)
        ).fetchone()
        return _token(row) if row else None

    async def list_tokens(self) -> list[TokenRecord]:
        self._commit()
        rows = self._db.execute("SELECT name, scope, hash, created_at, revoked_at FROM tokens ORDER BY name")
        return [_token(r) for r in rows]

    async def revoke_token(self, name: str, revoked_at: str) -> bool:
        self._begin()
        self._db.execute("UPDATE tokens SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL", (revoked_at, name))
        found = self._db.execute("SELECT 1 FROM tokens WHERE name = ?", (name,)).fetchone() is not None
        await self._committed()
        return found

    async def append_logs(self, run_id: str, node: str, attempt: int, batch: LogBatch) -> int:
        base = base_node(node)
        self._begin()
        self._db.execute("SAVEPOINT node_logs")  # the batch's row and its lines go in together, or neither does
        try:
            stored = self._append_logs(run_id, node, base, attempt, batch)
        except BaseException:
            self._db.execute("ROLLBACK TO node_logs")
            self._db.execute("RELEASE node_logs")
            raise
        self._db.execute("RELEASE node_logs")
        await self._committed()
        return stored

    def _append_logs(self, run_id: str, node: str, base: str, attempt: int, batch: LogBatch) -> int:
        try:
            self._db.execute(
                "INSERT INTO node_log_batches (run_id, node, base, attempt, batch, dropped) VALUES (?, ?, ?, ?, ?, ?)",
                (run_id, node, base, attempt, batch.batch, batch.dropped),
            )
        except sqlite3.IntegrityError:  # stored already: the same result delivered again
            return 0
        last = self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM node_logs WHERE run_id = ?", (run_id,)).fetchone()[0]
        self._db.executemany(
            "INSERT INTO node_logs (run_id, seq, node, base, attempt, at, stream, level, message, fields) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    run_id,
                    last + i,
                    node,
                    base,
                    attempt,
                    line["at"],
                    line["stream"],
                    line["level"],
                    line["message"],
                    None if line["fields"] is None else orjson.dumps(line["fields"]),
                )
                for i, line in enumerate(batch.lines, 1)
            ],
        )
        return len(batch.lines)

    async def read_logs(
        self, run_id: str, node: str | None = None, attempt: int | None = None, after: int = 0, limit: int = 1000
    ) -> tuple[list[LogLine], dict[str, int]]:
        where: list[str] = ["run_id = ?"]
        args: list[str | int] = [run_id]
        if node is not None:
            column, value = node_filter(node)
            where.append(f"{column} = ?")
            args.append(value)
        if attempt is not None:
            where.append("attempt = ?")
            args.append(attempt)
        scope = " AND ".join(where)
        self._commit()
        rows = self._db.execute(
            "SELECT node, attempt, seq, at, stream, level, message, fields FROM node_logs "
            f"WHERE {scope} AND seq > ? ORDER BY seq LIMIT ?",
            (*args, after, limit),
        ).fetchall()
        dropped = self._db.execute(
            f"SELECT node, attempt, SUM(dropped) FROM node_log_batches WHERE {scope} AND dropped > 0 "
            "GROUP BY node, attempt ORDER BY node, attempt",
            args,
        ).fetchall()
        lines: list[LogLine] = [
            {
                "node": r[0],
                "attempt": r[1],
                "seq": r[2],
                "at": r[3],
                "stream": r[4],
                "level": r[5],
                "message": r[6],
                "fields": None if r[7] is None else orjson.loads(r[7]),
            }
            for r in rows
        ]
        return lines, {truncation_key(n, a): count for n, a, count in dropped}

    async def close(self) -> None:
        self._commit()
        self._db.close()


def _migrate(db: sqlite3.Connection) -> None:
    """Bring a database made by an older knflow to SCHEMA: the columns added since, each nullable."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(pipelines)")}
    if "source" not in columns:  # the pipeline's YAML text, as written (issue 15)
        db.execute("ALTER TABLE pipelines ADD COLUMN source TEXT")


def _token(row: tuple[Any, ...]) -> TokenRecord:
    name, scope, hash_, created_at, revoked_at = row
    return TokenRecord(name=name, scope=scope, hash=hash_, created_at=created_at, revoked_at=revoked_at)
