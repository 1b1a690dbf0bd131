"""The MongoDB store: pymongo's native async client, collections `runs` and `pipelines` as in the Flume seed
(and `router_secrets`, the result key routers share when none is configured; `node_logs` and
`node_log_batches`, the node log lines, router/node_logs.py).

A run is one document (`_id` = run id) with a `nodes` map. `commit` lands everything one result causes (its
node or item, the run's status, the next nodes' scheduling) in ONE conditional update of that document, so
a router that dies mid-commit leaves the old state or the new one, never half of it:
- first, optimistically, one update whose filter is every transition's guard (the node's or item's status
  and attempt) and the run change's (the run's status): when they all hold, as for a fresh result, that one
  write is the whole commit, and results of different items of one run never conflict;
- otherwise (a duplicate or late result, a lost race, transitions that see each other's writes) it reads the
  run, decides with the pure `router.runs.apply` what wins, and writes just that, guarded by the document's
  `version`; a concurrent commit in between makes it read and decide again.
The results are those of `router.runs.apply` (tests/test_store_contract.py proves it); `version` goes up
once per `commit` that changed something, as there.

Fan-out items (big runs): the run document holds each item's state without its output, in a top-level
`items` map (`items.NODE.i`: status, attempt, error, times; about 150 bytes an item, so 10,000 items stay
far under the 16 MB document limit), and the node's counters (`nodes.NODE.fan`), which the same guarded
update `$inc`s; reads leave `items` out (a projection), so a result costs the same for 10 items as for
10,000. Item outputs are documents of their own in `run_items`, keyed by their content
(`_id` "RUN/NODE/i/ATTEMPT/HASH"), inserted before the run's update (insert-if-absent), and the item's
state names its output by that key (`output_key`), set by the same guarded update as its status: a router
that dies between the two writes leaves an output no state names (never read; it goes with the run), and
the same result delivered again stores nothing new. So the one guarded update still decides everything.
"""

from __future__ import annotations

import hashlib
import re
from contextlib import suppress
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

import bson
from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, IndexModel, ReturnDocument
from pymongo.errors import BulkWriteError, DuplicateKeyError

from broker.events import now_iso
from router.node_logs import LogBatch, LogLine, base_node, node_filter, truncation_key
from router.runs import (
    IN_FLIGHT,
    NODE_FINAL,
    PENDING,
    ItemState,
    NodeState,
    RunChange,
    RunDoc,
    Transition,
    apply,
    fan_deltas,
    light,
    split_key,
    with_items,
)
from router.retention import ttl_time
from router.store.base import Committed, RunCount, RunExists, RunNotFound, item_results
from router.tokens import TokenExists, TokenRecord

DEFAULT_DATABASE = "knflow"
RUN_INDEXES = [
    IndexModel([("pipeline", ASCENDING), ("created_at", ASCENDING)]),
    IndexModel("status"),
    IndexModel("created_at"),
    IndexModel("expires_at"),
    IndexModel("expire_at", expireAfterSeconds=0),  # TTL: a run no router pruned (router/retention.py)
]
NEWEST_FIRST = [("created_at", DESCENDING), ("_id", DESCENDING)]
_NODE_ID = re.compile(r"[A-Za-z0-9_-]+")  # safe inside a field path: no '.', no '$'
_LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1"}
_TOPOLOGY_OPTIONS = {"directconnection", "replicaset", "loadbalanced"}
_DUPLICATE_KEY = 11000
NO_ITEMS = {"items": 0}  # the light run document: without its items (router/runs.py `light`)
RUN_FIELDS = sorted((RunDoc.__required_keys__ | RunDoc.__optional_keys__) - {"id"})  # its fields, as stored


class MongoStore:
    def __init__(self, client: AsyncMongoClient, database: str = DEFAULT_DATABASE) -> None:
        self._client = client
        self.runs = client[database]["runs"]
        self.pipelines = client[database]["pipelines"]
        self.tokens = client[database]["tokens"]  # _id = name; only hashes, never tokens
        self.secrets = client[database]["router_secrets"]
        self.node_logs = client[database]["node_logs"]  # _id = "RUN/SEQ"; router/node_logs.py
        self.log_batches = client[database]["node_log_batches"]  # each try's batch, and each run's line count
        self.items = client[database]["run_items"]  # item outputs, _id = "RUN/NODE/i/ATTEMPT"
        self._indexed = False
        self._tokens_indexed = False
        self._logs_indexed = False

    @classmethod
    def from_url(cls, url: str) -> MongoStore:
        """`mongodb://HOST[:PORT]/DB?OPTIONS`; the database defaults to `knflow`."""
        client: AsyncMongoClient = AsyncMongoClient(url, **_direct_connection(url))
        return cls(client, client.get_default_database(DEFAULT_DATABASE).name)

    async def create_run(self, run: RunDoc) -> None:
        if not self._indexed:
            await self.runs.create_indexes(RUN_INDEXES)
            await self.items.create_indexes([IndexModel([("run_id", ASCENDING), ("node", ASCENDING)])])
            self._indexed = True
        doc, items = light(run)
        outputs: list[dict[str, Any]] = []
        stored = {k: v for k, v in doc.items() if k != "id"}
        if run.get("expires_at"):
            stored["expire_at"] = ttl_time(run["expires_at"])
        if items:
            stored["items"] = {
                n: {k: _bare(run["id"], n, k, v, outputs) for k, v in m.items()} for n, m in items.items()
            }
        await self._put_outputs(outputs)
        try:
            await self.runs.insert_one({"_id": run["id"], **stored})
        except DuplicateKeyError:
            raise RunExists(f"run '{run['id']}' already exists", run_id=run["id"]) from None

    async def get_run(self, run_id: str, *, light: bool = False) -> RunDoc | None:
        if light:
            found = await self.runs.find_one({"_id": run_id}, NO_ITEMS)
            return None if found is None else _run(found)
        doc = await self.runs.find_one({"_id": run_id})
        if doc is None:
            return None
        bare = doc.pop("items", None) or {}
        outputs = await self._outputs({"run_id": run_id})
        items = {n: _items(run_id, n, m, outputs) for n, m in bare.items()}
        return with_items(_run(doc), items)

    async def get_item(self, run_id: str, node: str, index: int) -> ItemState | None:
        if not _NODE_ID.fullmatch(node):
            return None
        # that one item only (an aggregation's field path: a projection's is read differently by some servers)
        found = await (
            await self.runs.aggregate([{"$match": {"_id": run_id}}, {"$project": {"item": f"$items.{node}.{index}"}}])
        ).to_list()
        bare = found[0].get("item") if found else None
        return None if bare is None else cast(ItemState, {k: v for k, v in bare.items() if k != "output_key"})

    async def get_items(self, run_id: str, node: str) -> list[ItemState]:
        doc = await self.runs.find_one({"_id": run_id}, {"items": 1})
        bare = ((doc or {}).get("items") or {}).get(node) or {}
        return _items(run_id, node, bare, await self._outputs({"run_id": run_id, "node": node}))

    async def _outputs(self, query: dict[str, Any]) -> dict[str, Any]:
        return {d["_id"]: d.get("output") for d in await self.items.find(query).to_list()}

    async def _put_outputs(self, docs: list[dict[str, Any]]) -> None:
        """Store item outputs (insert-if-absent, by key), before the run document that names them."""
        if not docs:
            return
        try:
            await self.items.insert_many(docs, ordered=False)
        except BulkWriteError as exc:  # stored already: a result delivered again, or written before a crash
            if any(e.get("code") != _DUPLICATE_KEY for e in exc.details.get("writeErrors", [])):
                raise

    async def commit(
        self, run_id: str, transitions: list[Transition], run_change: RunChange | None = None
    ) -> Committed:
        if not transitions and run_change is None:
            return Committed(await self._read(run_id), [], False)
        one = _guarded_update(run_id, transitions, run_change)
        if one is not None:
            where, update, outputs = one
            await self._put_outputs(outputs)
            doc = await self.runs.find_one_and_update(
                {"_id": run_id, **where},
                update,
                projection=_with_touched(transitions),
                return_document=ReturnDocument.AFTER,
            )
            if doc is not None:
                items = _touched_items(doc, transitions)
                return Committed(_run(doc), [True] * len(transitions), run_change is not None, items)
        while True:  # decide on the stored run, write what won if nobody wrote in between
            stored = await self.runs.find_one({"_id": run_id})
            if stored is None:
                raise RunNotFound(f"run '{run_id}' not found", run_id=run_id)
            run = _with_bare_items(stored)
            new, won, run_won = apply(run, transitions, run_change)
            if not any(won) and not run_won:
                return Committed(light(run)[0], won, False, item_results(run, transitions))
            update, outputs = _changed(run_id, new, transitions, won, run_change if run_won else None)
            await self._put_outputs(outputs)
            doc = await self.runs.find_one_and_update(
                {"_id": run_id, "version": run.get("version", 0)},
                {"$set": update},
                projection=NO_ITEMS,
                return_document=ReturnDocument.AFTER,
            )
            if doc is not None:
                return Committed(_run(doc), won, run_won, item_results(new, transitions))

    async def _read(self, run_id: str) -> RunDoc:
        doc = await self.runs.find_one({"_id": run_id}, NO_ITEMS)
        if doc is None:
            raise RunNotFound(f"run '{run_id}' not found", run_id=run_id)
        return _run(doc)

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
        if limit <= 0:
            return []
        query: dict[str, Any] = {k: v for k, v in (("pipeline", pipeline), ("status", status)) if v}
        created = {op: v for op, v in (("$gte", since), ("$lt", until)) if v}
        if created:
            query["created_at"] = created
        if trigger:
            query["trigger.type"] = trigger
        found = self.runs.find(query, NO_ITEMS).sort(NEWEST_FIRST).skip(max(offset, 0)).limit(limit)
        return [_run(doc) for doc in await found.to_list()]

    async def count_runs(self, *, since: str | None = None, status: str | None = None) -> list[RunCount]:
        query: dict[str, Any] = {}
        if since:
            query["created_at"] = {"$gte": since}
        if status:
            query["status"] = status
        counts: dict[tuple[str, str], int] = {}
        async for doc in self.runs.find(query, {"pipeline": 1, "status": 1}):
            key = (str(doc["pipeline"]), str(doc["status"]))
            counts[key] = counts.get(key, 0) + 1
        return [RunCount(pipeline=p, status=st, count=n) for (p, st), n in sorted(counts.items())]

    async def prune_runs(
        self,
        expired_by: str | None,
        undated_before: str | None,
        created_before: str | None,
        dry_run: bool = False,
        limit: int = 1000,
    ) -> list[RunDoc]:
        """Children go first: a router that dies half-way leaves runs that the next prune deletes again."""
        either: list[dict[str, Any]] = []
        if expired_by is not None:
            either.append({"expires_at": {"$lte": expired_by}})
        if undated_before is not None:
            either.append({"expires_at": {"$exists": False}, "created_at": {"$lt": undated_before}})
        if created_before is not None:
            either.append({"created_at": {"$lt": created_before}})
        if not either or limit <= 0:
            return []
        found = await self.runs.find({"$or": either}, NO_ITEMS).sort("created_at", ASCENDING).limit(limit).to_list()
        runs = [_run(doc) for doc in found]
        if dry_run or not runs:
            return runs
        ids = [run["id"] for run in runs]
        await self.items.delete_many({"run_id": {"$in": ids}})
        await self.node_logs.delete_many({"run_id": {"$in": ids}})
        await self.log_batches.delete_many({"run_id": {"$in": ids}})
        await self.log_batches.delete_many({"_id": {"$in": [f"n:{i}" for i in ids]}})
        await self.runs.delete_many({"_id": {"$in": ids}})
        return runs

    async def get_or_create_secret(self, name: str, value: str) -> str:
        with suppress(DuplicateKeyError):  # another router stored it first: its value is the one
            await self.secrets.insert_one({"_id": name, "value": value, "created_at": now_iso()})
        doc = await self.secrets.find_one({"_id": name})
        assert doc is not None  # inserted just now, or by the writer that won; secrets are never deleted
        return str(doc["value"])

    async def put_pipeline(self, name: str, definition: dict[str, Any], source: str | None = None) -> None:
        now = now_iso()
        fields = {"name": name, "definition": definition, "updated_at": now, "source": source}
        await self.pipelines.update_one(
            {"_id": name}, {"$set": fields, "$setOnInsert": {"created_at": now}}, upsert=True
        )

    async def get_pipeline_source(self, name: str) -> str | None:
        doc = await self.pipelines.find_one({"_id": name}, {"source": 1})
        return doc.get("source") if doc else None  # none in a document stored before issue 15

    async def get_pipeline(self, name: str) -> dict[str, Any] | None:
        doc = await self.pipelines.find_one({"_id": name}, {"definition": 1})
        return doc["definition"] if doc else None

    async def list_pipelines(self) -> list[dict[str, Any]]:
        return [
            doc["definition"]
            for doc in await self.pipelines.find({}, {"definition": 1}).sort("_id", ASCENDING).to_list()
        ]

    async def delete_pipeline(self, name: str) -> bool:
        return (await self.pipelines.delete_one({"_id": name})).deleted_count > 0

    async def put_token(self, token: TokenRecord) -> None:
        if not self._tokens_indexed:
            await self.tokens.create_indexes([IndexModel("hash", unique=True)])
            self._tokens_indexed = True
        fields = {k: v for k, v in token.items() if k != "name"}
        try:  # matches only a revoked token of this name; a live one makes the upsert's insert collide
            await self.tokens.update_one(
                {"_id": token["name"], "revoked_at": {"$ne": None}}, {"$set": fields}, upsert=True
            )
        except DuplicateKeyError:
            raise TokenExists(f"a token named '{token['name']}' exists; revoke it first", name=token["name"]) from None

    async def get_token(self, token_hash: str) -> TokenRecord | None:
        doc = await self.tokens.find_one({"hash": token_hash})
        return None if doc is None else _token(doc)

    async def list_tokens(self) -> list[TokenRecord]:
        return [_token(doc) for doc in await self.tokens.find({}).sort("_id", ASCENDING).to_list()]

    async def revoke_token(self, name: str, revoked_at: str) -> bool:
        await self.tokens.update_one({"_id": name, "revoked_at": None}, {"$set": {"revoked_at": revoked_at}})
        return await self.tokens.find_one({"_id": name}, {"_id": 1}) is not None

    async def append_logs(self, run_id: str, node: str, attempt: int, batch: LogBatch) -> int:
        """The batch's document (`b:RUN/NODE/ATTEMPT/BATCH`) holds the first seq of its lines, reserved from the
        run's count (`n:RUN`) by one atomic `$inc`; lines go in by `_id`, so a batch delivered again, or
        written again after a crash half-way, writes each of its lines once (a range a lost race reserved is
        left unused: seq only has to increase)."""
        if not self._logs_indexed:
            await self.node_logs.create_indexes([IndexModel([("run_id", ASCENDING), ("seq", ASCENDING)])])
            self._logs_indexed = True
        first = await self._first_seq(run_id, node, attempt, batch)
        if not batch.lines:
            return 0
        base = base_node(node)
        docs = [
            {
                "_id": f"{run_id}/{first + i}",
                "run_id": run_id,
                "seq": first + i,
                "node": node,
                "base": base,
                "attempt": attempt,
                **line,
            }
            for i, line in enumerate(batch.lines)
        ]
        try:
            return len((await self.node_logs.insert_many(docs, ordered=False)).inserted_ids)
        except BulkWriteError as exc:  # lines stored already (a redelivery) are duplicates: not an error
            if any(e.get("code") != _DUPLICATE_KEY for e in exc.details.get("writeErrors", [])):
                raise
            return int(exc.details.get("nInserted", 0))

    async def _first_seq(self, run_id: str, node: str, attempt: int, batch: LogBatch) -> int:
        """The seq of the batch's first line: the one its document holds, or one reserved for it now."""
        batch_id = f"b:{run_id}/{node}/{attempt}/{batch.batch}"
        found = await self.log_batches.find_one({"_id": batch_id}, {"first_seq": 1})
        if found is not None:
            return int(found["first_seq"])
        count = await self.log_batches.find_one_and_update(
            {"_id": f"n:{run_id}"},
            {"$inc": {"next": len(batch.lines)}},
            upsert=True,
            return_document=ReturnDocument.AFTER,
        )
        assert count is not None  # an upsert returns the document it left
        first = int(count["next"]) - len(batch.lines) + 1
        doc = {"run_id": run_id, "node": node, "base": base_node(node), "attempt": attempt, "dropped": batch.dropped}
        try:
            await self.log_batches.insert_one({"_id": batch_id, **doc, "first_seq": first})
        except DuplicateKeyError:  # a redelivery of the batch was faster: its numbers are the ones
            found = await self.log_batches.find_one({"_id": batch_id}, {"first_seq": 1})
            if found is not None:
                return int(found["first_seq"])
        return first

    async def read_logs(
        self, run_id: str, node: str | None = None, attempt: int | None = None, after: int = 0, limit: int = 1000
    ) -> tuple[list[LogLine], dict[str, int]]:
        scope: dict[str, Any] = {"run_id": run_id}
        if node is not None:
            field, value = node_filter(node)
            scope[field] = value
        if attempt is not None:
            scope["attempt"] = attempt
        found = (
            await self.node_logs.find({**scope, "seq": {"$gt": after}}).sort("seq", ASCENDING).limit(limit).to_list()
        )
        lines: list[LogLine] = [
            {
                "node": d["node"],
                "attempt": d["attempt"],
                "seq": d["seq"],
                "at": d["at"],
                "stream": d["stream"],
                "level": d.get("level"),
                "message": d["message"],
                "fields": d.get("fields"),
            }
            for d in found
        ]
        dropped: dict[str, int] = {}
        for b in await self.log_batches.find({**scope, "dropped": {"$gt": 0}}).to_list():
            key = truncation_key(b["node"], b["attempt"])
            dropped[key] = dropped.get(key, 0) + int(b["dropped"])
        return lines, dict(sorted(dropped.items()))

    async def close(self) -> None:
        await self._client.close()


def _guarded_update(
    run_id: str, transitions: list[Transition], run_change: RunChange | None
) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]] | None:
    """Pure: the filter and update of a commit in which every transition wins, and the item outputs to store
    first; or None when two of its transitions touch one state (one key twice, or an item and a node
    transition that sets its node's items or counters): those see each other's writes, so only the stored run
    can decide them. Distinct items of one node are independent; each moves its node's counters by `$inc`."""
    where: dict[str, Any] = {}
    fields: dict[str, Any] = {}
    incs: dict[str, int] = {}
    outputs: list[dict[str, Any]] = []
    keys: set[str] = set()
    whole: set[str] = set()  # nodes whose items or counters a node transition sets
    items_of: set[str] = set()  # nodes with a transition on one of their items
    for t in transitions:
        node, index = split_key(t.node)
        if not _NODE_ID.fullmatch(node) or t.node in keys:
            return None
        keys.add(t.node)
        if index is None:
            if "items" in t.fields or "fan" in t.fields:
                if node in items_of:
                    return None
                whole.add(node)
            at = f"nodes.{node}"
            fields.update({f"{at}.{k}": v for k, v in t.fields.items() if k != "items"})
            if "items" in t.fields:
                fields[f"items.{node}"] = {k: _bare(run_id, node, k, v, outputs) for k, v in t.fields["items"].items()}
        else:
            old = _one_class(t.expect)
            if node in whole or old is None or ("output" in t.fields and t.attempt is None):
                return None
            items_of.add(node)
            at = f"items.{node}.{index}"
            state = cast(ItemState, {"attempt": t.attempt, **t.fields})
            fields.update({f"{at}.{k}": v for k, v in _bare(run_id, node, str(index), state, outputs).items()})
            where[f"nodes.{node}.fan"] = {"$exists": True}  # a node without counters: `apply` decides
            for k, delta in fan_deltas(old, t.fields.get("status", old)).items():
                incs[f"nodes.{node}.fan.{k}"] = incs.get(f"nodes.{node}.fan.{k}", 0) + delta
        where[f"{at}.status"] = {"$in": sorted(t.expect)}
        if t.attempt is not None:
            where[f"{at}.attempt"] = t.attempt
    if run_change is not None:
        where["status"] = {"$in": sorted(run_change.expect)}
        fields.update(run_change.fields)
    update: dict[str, Any] = {"$inc": {"version": 1, **incs}}
    if fields:
        update["$set"] = fields
    return where, update, outputs


def _one_class(expect: frozenset[str]) -> str | None:
    """A status that stands for every status in `expect` as far as the counters go (pending, in flight or
    final), or None when `expect` mixes them."""
    for group in (frozenset({PENDING}), IN_FLIGHT, NODE_FINAL):
        if expect <= group:
            return min(expect)
    return None


def _changed(
    run_id: str, new: RunDoc, transitions: list[Transition], won: list[bool], run_change: RunChange | None
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Pure: a `$set` of what the transitions that won (and the run change) wrote, read from `new` (whole node
    states, whole items), and the item outputs to store first."""
    out: dict[str, Any] = {"version": new.get("version", 0)}
    outputs: list[dict[str, Any]] = []
    replaced = {t.node for t, ok in zip(transitions, won, strict=True) if ok and "items" in t.fields}
    nodes = light(new)[0]["nodes"]  # node states as the document keeps them
    for t, ok in zip(transitions, won, strict=True):
        if not ok:
            continue
        node, index = split_key(t.node)
        out[f"nodes.{node}"] = nodes[node]
        if index is not None and node not in replaced:
            item = new["nodes"][node]["items"][str(index)]
            out[f"items.{node}.{index}"] = _bare(run_id, node, str(index), item, outputs)
    for node in replaced:
        items = new["nodes"][node].get("items") or {}
        out[f"items.{node}"] = {k: _bare(run_id, node, k, v, outputs) for k, v in items.items()}
    if run_change is not None:
        out.update(run_change.fields)
    return out, outputs


def _bare(run_id: str, node: str, index: str, item: ItemState, outputs: list[dict[str, Any]]) -> dict[str, Any]:
    """An item's state as the run document keeps it: its output replaced by the key of its document in
    `run_items` (appended to `outputs`, to store first); one without an `output` field keeps its key."""
    bare: dict[str, Any] = {k: v for k, v in item.items() if k != "output"}
    if "output" in item:
        value = item["output"]
        if value is None:
            bare["output_key"] = None
        else:
            digest = hashlib.blake2b(bson.encode({"v": value}), digest_size=9).hexdigest()
            key = bare["output_key"] = f"{item.get('attempt', 0)}/{digest}"
            outputs.append(
                {"_id": _output_id(run_id, node, index, key), "run_id": run_id, "node": node, "output": value}
            )
    return bare


def _output_id(run_id: str, node: str, index: str, key: str) -> str:
    """The `_id` in `run_items` of an item's output: `output_key` (ATTEMPT/HASH) says which."""
    return f"{run_id}/{node}/{index}/{key}"


def _items(run_id: str, node: str, bare: dict[str, Any], outputs: dict[str, Any]) -> list[ItemState]:
    """A node's item states, in order, each with its output."""
    out: list[ItemState] = []
    for k in sorted(bare, key=int):
        state = {f: v for f, v in bare[k].items() if f != "output_key"}
        key = bare[k].get("output_key")
        state["output"] = None if key is None else outputs.get(_output_id(run_id, node, k, key))
        out.append(cast(ItemState, state))
    return out


def _with_touched(transitions: list[Transition]) -> dict[str, int]:
    """The projection of a commit's update: the light run, and the items its transitions name (which an
    inclusion projection needs: it cannot leave out `items` and keep some of them)."""
    paths = [
        f"items.{node}.{index}" for node, index in map(split_key, (t.node for t in transitions)) if index is not None
    ]
    if not paths:
        return NO_ITEMS
    return {**{field: 1 for field in RUN_FIELDS}, **{path: 1 for path in paths}}


def _touched_items(doc: dict[str, Any], transitions: list[Transition]) -> dict[str, ItemState]:
    """`Committed.items` from a document projected by `_with_touched` (popping its items): nested as MongoDB
    gives them, or under the dotted path as some wire servers do."""
    nested = doc.pop("items", None) or {}
    out: dict[str, ItemState] = {}
    for t in transitions:
        node, index = split_key(t.node)
        if index is None:
            continue
        bare = doc.pop(f"items.{node}.{index}", None) or (nested.get(node) or {}).get(str(index))
        if bare is not None:
            out[t.node] = cast(ItemState, {k: v for k, v in bare.items() if k != "output_key"})
    return out


def _with_bare_items(doc: dict[str, Any]) -> RunDoc:
    """The run with each fan-out node's items as the document keeps them (no outputs), for `apply`."""
    bare = doc.pop("items", None) or {}
    run = _run(doc)
    for node, items in bare.items():
        if node in run["nodes"]:
            run["nodes"][node] = cast(
                NodeState, {**run["nodes"][node], "items": {k: dict(v) for k, v in items.items()}}
            )
    return run


def _run(doc: dict[str, Any]) -> RunDoc:
    """The run document of a stored one: its `_id` as `id`, first (without the TTL index's `expire_at`)."""
    doc.pop("expire_at", None)
    return cast(RunDoc, {"id": doc.pop("_id"), **doc})


def _token(doc: dict[str, Any]) -> TokenRecord:
    return TokenRecord(
        name=doc["_id"],
        scope=doc["scope"],
        hash=doc["hash"],
        created_at=doc["created_at"],
        revoked_at=doc.get("revoked_at"),
    )


def _direct_connection(url: str) -> dict[str, Any]:
    """`directConnection=True` for one local host (the wire servers of tests and `knflow dev`), unless the URL chose."""
    parts = urlsplit(url)
    hosts = parts.netloc.rpartition("@")[2].split(",")
    chosen = {k.lower() for k in parse_qs(parts.query)} & _TOPOLOGY_OPTIONS
    local = parts.scheme == "mongodb" and len(hosts) == 1 and parts.hostname in _LOCAL_HOSTS
    return {"directConnection": True} if local and not chosen else {}
