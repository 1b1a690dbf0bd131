"""The MongoDB store: pymongo's native async client, collections `runs` and `pipelines` as in the Flume seed
(and `router_secrets`, the result key routers share when none is configured).

A run is one document (`_id` = run id) with a `nodes` map. `commit` sends one conditional update per
transition, matching only while the node's status (and attempt) are what the transition expects, so
routers that race on one run are safe and a duplicated result changes nothing. The run change is one
more conditional update, on the run's status, sent only if every transition won. The results are those
of the pure `router.runs.apply` (tests/test_store_contract.py proves it); `version` goes up once per
`commit` that changed something, as there.
"""

from __future__ import annotations

import re
from contextlib import suppress
from collections.abc import Mapping
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, IndexModel, ReturnDocument
from pymongo.errors import DuplicateKeyError

from broker.events import now_iso
from router.runs import RunChange, RunDoc, Transition, split_key
from router.store.base import RunCount, RunExists, RunNotFound
from router.tokens import TokenExists, TokenRecord

DEFAULT_DATABASE = "knflow"
RUN_INDEXES = [
    IndexModel([("pipeline", ASCENDING), ("created_at", ASCENDING)]),
    IndexModel("status"),
    IndexModel("created_at"),
]
NEWEST_FIRST = [("created_at", DESCENDING), ("_id", DESCENDING)]
_NODE_ID = re.compile(r"[A-Za-z0-9_-]+")  # safe inside a field path: no '.', no '$'
_LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1"}
_TOPOLOGY_OPTIONS = {"directconnection", "replicaset", "loadbalanced"}


class MongoStore:
    def __init__(self, client: AsyncMongoClient, database: str = DEFAULT_DATABASE) -> None:
        self._client = client
        self.runs = client[database]["runs"]
        self.pipelines = client[database]["pipelines"]
        self.tokens = client[database]["tokens"]  # _id = name; only hashes, never tokens
        self.secrets = client[database]["router_secrets"]
        self._indexed = False
        self._tokens_indexed = False

    @classmethod
    def from_url(cls, url: str) -> MongoStore:
        """`mongodb://HOST[:PORT]/DB?OPTIONS`; the database defaults to `knflow`."""
        client: AsyncMongoClient = AsyncMongoClient(url, **_direct_connection(url))
        return cls(client, client.get_default_database(DEFAULT_DATABASE).name)

    async def create_run(self, run: RunDoc) -> None:
        if not self._indexed:
            await self.runs.create_indexes(RUN_INDEXES)
            self._indexed = True
        try:
            await self.runs.insert_one({"_id": run["id"], **{k: v for k, v in run.items() if k != "id"}})
        except DuplicateKeyError:
            raise RunExists(f"run '{run['id']}' already exists", run_id=run["id"]) from None

    async def get_run(self, run_id: str) -> RunDoc | None:
        doc = await self.runs.find_one({"_id": run_id})
        return None if doc is None else _run(doc)

    async def commit(
        self, run_id: str, transitions: list[Transition], run_change: RunChange | None = None
    ) -> tuple[RunDoc, list[bool], bool]:
        won: list[bool] = []
        doc = None  # the run after this call's last write, unless that write lost
        for t in transitions:
            node, index = split_key(t.node)  # `gen[2]`: item 2 of fan-out node gen, at nodes.gen.items.2
            if not _NODE_ID.fullmatch(node):  # no valid pipeline has such a node: it loses, as an unknown node does
                won.append(False)
                continue
            at = f"nodes.{node}" if index is None else f"nodes.{node}.items.{index}"
            where: dict[str, Any] = {"_id": run_id, f"{at}.status": {"$in": sorted(t.expect)}}
            if t.attempt is not None:
                where[f"{at}.attempt"] = t.attempt
            doc = await self._set_if(where, {f"{at}.{k}": v for k, v in t.fields.items()}, bump=not any(won))
            won.append(doc is not None)
        run_won = False
        if run_change is not None and all(won):
            doc = await self._set_if(
                {"_id": run_id, "status": {"$in": sorted(run_change.expect)}}, run_change.fields, bump=not any(won)
            )
            run_won = doc is not None
        if doc is None:
            doc = await self.runs.find_one({"_id": run_id})
            if doc is None:
                raise RunNotFound(f"run '{run_id}' not found", run_id=run_id)
        return _run(doc), won, run_won

    async def _set_if(self, where: dict[str, Any], fields: Mapping[str, Any], bump: bool) -> dict[str, Any] | None:
        """One compare-and-set: the document after it, or None if `where` matched nothing."""
        update: dict[str, Any] = {}
        if fields:
            update["$set"] = fields
        if bump:
            update["$inc"] = {"version": 1}
        if not update:  # nothing to write (an empty transition after another won): the compare alone
            return await self.runs.find_one(where)
        return await self.runs.find_one_and_update(where, update, return_document=ReturnDocument.AFTER)

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
        found = self.runs.find(query).sort(NEWEST_FIRST).skip(max(offset, 0)).limit(limit)
        return [_run(doc) for doc in await found.to_list()]

    async def count_runs(self, since: str) -> list[RunCount]:
        counts: dict[tuple[str, str], int] = {}
        async for doc in self.runs.find({"created_at": {"$gte": since}}, {"pipeline": 1, "status": 1}):
            key = (str(doc["pipeline"]), str(doc["status"]))
            counts[key] = counts.get(key, 0) + 1
        return [RunCount(pipeline=p, status=st, count=n) for (p, st), n in sorted(counts.items())]

    async def get_or_create_secret(self, name: str, value: str) -> str:
        with suppress(DuplicateKeyError):  # another router stored it first: its value is the one
            await self.secrets.insert_one({"_id": name, "value": value, "created_at": now_iso()})
        doc = await self.secrets.find_one({"_id": name})
        assert doc is not None  # inserted just now, or by the writer that won; secrets are never deleted
        return str(doc["value"])

    async def put_pipeline(self, name: str, definition: dict[str, Any]) -> None:
        now = now_iso()
        await self.pipelines.update_one(
            {"_id": name},
            {"$set": {"name": name, "definition": definition, "updated_at": now}, "$setOnInsert": {"created_at": now}},
            upsert=True,
        )

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

    async def close(self) -> None:
        await self._client.close()


def _run(doc: dict[str, Any]) -> RunDoc:
    """The run document of a stored one: its `_id` as `id`, first."""
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
