"""`mongodb-query` (find documents) and `mongodb-insert` (insert one document or many), with pymongo's async API.

The server is the config's `url`, else `KNFLOW_MONGODB_URL` (from a Secret on Knative), else `MONGODB_URL`;
the database is the config's `database`, else the URL's own (`mongodb://host/DB`). `filter` and documents
may use MongoDB Extended JSON for what JSON lacks: `{"$oid": "..."}`, `{"$date": "2026-01-01T00:00:00Z"}`.
Outputs are plain JSON: an ObjectId becomes its hex string, a date its ISO 8601 text.
Operators (`$ne`, `$oid` ...) come only from what the pipeline wrote: the router refuses a template whose
value holds a `$`-key here (router.templates.render_without_operators), so trigger data cannot inject one.

What a retry may fix (no server, a timeout, a primary stepping down) raises a retryable `FunctionError`;
a bad query, a duplicate key or a bad name fails the node at once with the server's message. Every
operation is bounded by `timeout_s` (pymongo's client-side timeout). One client per event loop and URL;
close them at shutdown with `await aclose_client()`. Messages show the URL without user and password.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

import pymongo
from bson import Binary, Decimal128, ObjectId, Regex, Timestamp, json_util
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel
from pydantic_settings import BaseSettings, SettingsConfigDict
from pymongo import AsyncMongoClient
from pymongo.errors import (
    BulkWriteError,
    ConfigurationError,
    ConnectionFailure,
    OperationFailure,
    PyMongoError,
    ServerSelectionTimeoutError,
)

from functions.builtins.loop_clients import LoopClients
from functions.errors import FunctionError
from functions.sdk import Retry, function

DEFAULT_TIMEOUT_S = 10.0
MAX_TIMEOUT_S = 120.0
MAX_DOCUMENTS = 10_000  # per query, and per insert
_DATABASE = re.compile(r'^[^/\\. "$*<>:|?\x00]{1,63}$')
_COLLECTION = re.compile(r"^(?!system\.)[^$\x00]{1,255}$")
# server codes a retry may outlive: shutdown, stepdown, not primary, interrupted, time limits
TRANSIENT_CODES = frozenset({6, 7, 50, 89, 91, 189, 262, 9001, 10107, 11600, 11602, 13435, 13436})

T = TypeVar("T")


class MongoSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore")

    url: str | None = Field(None, validation_alias=AliasChoices("KNFLOW_MONGODB_URL", "MONGODB_URL"))


class Target(BaseModel):
    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, validate_by_name=True, validate_by_alias=True)

    url: str | None = None
    database: str | None = None
    collection: str
    timeout_s: float = Field(DEFAULT_TIMEOUT_S, gt=0, le=MAX_TIMEOUT_S)

    @field_validator("url")
    @classmethod
    def _mongodb_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("mongodb://", "mongodb+srv://")):
            raise ValueError(f"{_shown(value)!r} is not a MongoDB URL such as 'mongodb://mongo:27017/flume'")
        return value

    @field_validator("database")
    @classmethod
    def _database_name(cls, value: str | None) -> str | None:
        if value is not None and not _DATABASE.match(value):
            raise ValueError(f'{value!r} is not a MongoDB database name: 1 to 63 characters, none of / \\ . space " $')
        return value

    @field_validator("collection")
    @classmethod
    def _collection_name(cls, value: str) -> str:
        if not _COLLECTION.match(value):
            raise ValueError(f"{value!r} is not a MongoDB collection name: 1 to 255 characters, no '$', not 'system.*'")
        return value


class QueryInput(Target):
    """Input of `mongodb-query`: where, `filter`, and `projection`, `sort`, `skip`, `limit`."""

    filter: dict[str, Any] = {}
    projection: dict[str, Any] | list[str] | None = None
    sort: dict[str, Literal[1, -1, "asc", "desc"]] = {}
    skip: int = Field(0, ge=0)
    limit: int = Field(100, ge=1, le=MAX_DOCUMENTS)


class QueryOutput(BaseModel):
    documents: list[dict[str, Any]]
    count: int


class InsertInput(Target):
    """Input of `mongodb-insert`: where, and one `document` or a list of `documents`."""

    document: dict[str, Any] | None = None
    documents: list[dict[str, Any]] | None = Field(None, min_length=1, max_length=MAX_DOCUMENTS)
    ordered: bool = True

    @model_validator(mode="after")
    def _one_of(self) -> InsertInput:
        if (self.document is None) == (self.documents is None):
            raise ValueError("give either 'document' (one) or 'documents' (a list), not both and not neither")
        return self


class InsertOutput(BaseModel):
    inserted_id: Any  # the first document's `_id`: an ObjectId as its hex string
    inserted_ids: list[Any]
    inserted_count: int


@function(name="mongodb-query", timeout_s=MAX_TIMEOUT_S + 10, retries=Retry(retries=3, delay_s=1.0, max_delay_s=30.0))
async def mongodb_query(inp: QueryInput) -> QueryOutput:
    """Find documents in `database`.`collection` matching `filter`; the output is `{"documents", "count"}`."""
    sort = [(field, 1 if order in (1, "asc") else -1) for field, order in inp.sort.items()]
    flt = _extended(inp.filter, "filter")

    async def find(col: Any) -> list[dict[str, Any]]:
        cursor = col.find(flt, inp.projection, skip=inp.skip, limit=inp.limit, sort=sort or None)
        return await cursor.to_list()

    docs = await _on_collection(inp, "query", find)
    return QueryOutput(documents=[jsonable(d) for d in docs], count=len(docs))


@function(name="mongodb-insert", timeout_s=MAX_TIMEOUT_S + 10, retries=Retry(retries=3, delay_s=1.0, max_delay_s=30.0))
async def mongodb_insert(inp: InsertInput) -> InsertOutput:
    """Insert `document` (or `documents`); the output is `{"inserted_id", "inserted_ids", "inserted_count"}`.

    A retry after a lost reply may insert twice unless the documents carry their own `_id`.
    """
    field = "document" if inp.document is not None else "documents"
    docs = _extended([inp.document] if inp.document is not None else inp.documents, field)

    async def insert(col: Any) -> list[Any]:
        if len(docs) == 1:
            return [(await col.insert_one(docs[0])).inserted_id]
        return (await col.insert_many(docs, ordered=inp.ordered)).inserted_ids

    ids = [jsonable(i) for i in await _on_collection(inp, "insert", insert)]
    return InsertOutput(inserted_id=ids[0], inserted_ids=ids, inserted_count=len(ids))


async def aclose_client() -> None:
    """Close the running loop's MongoDB clients; later calls open new ones. Call it on that loop."""
    await _CLIENTS.aclose()


_CLIENTS: LoopClients[str, AsyncMongoClient] = LoopClients(
    make=lambda url: AsyncMongoClient(url, tz_aware=True, appname="knflow-builtin"),
    close=lambda client: client.close(),
)


async def _on_collection(inp: Target, what: str, op: Callable[[Any], Awaitable[T]]) -> T:
    url = inp.url or MongoSettings().url
    if not url:
        raise _missing("url", "no MongoDB to use: set 'url' in the node's config, or KNFLOW_MONGODB_URL")
    database = inp.database or urlsplit(url).path.strip("/")
    if not database:
        raise _missing(
            "database",
            f"no database named: set 'database' in the node's config, or put one in the URL ({_shown(url)}/DB)",
        )
    where = f"{what} on {database}.{inp.collection} at {_shown(url)}"
    try:
        client = _CLIENTS.get(url)
    except (ConfigurationError, ValueError) as exc:
        raise FunctionError(
            f"field 'url': {_shown(url)!r} is not usable: {exc}",
            type="InvalidInput",
            detail=[{"field": "url", "message": str(exc), "type": "value_error"}],
        ) from None
    try:
        with pymongo.timeout(inp.timeout_s):
            return await op(client[database][inp.collection])
    except PyMongoError as exc:
        raise _failure(exc, where, inp.timeout_s) from None


def _failure(exc: PyMongoError, where: str, timeout_s: float) -> FunctionError:
    if isinstance(exc, ServerSelectionTimeoutError):
        return FunctionError(
            f"{where} found no server within {timeout_s:g} s: {_first_line(exc)}",
            retryable=True,
            type="MongoUnreachable",
        )
    if exc.timeout:
        return FunctionError(
            f"{where} timed out after {timeout_s:g} s: {_first_line(exc)}", retryable=True, type="MongoTimeout"
        )
    if isinstance(exc, ConnectionFailure):
        return FunctionError(f"{where} failed: {_first_line(exc)}", retryable=True, type="MongoUnreachable")
    if isinstance(exc, BulkWriteError) and exc.details.get("writeErrors"):
        first = exc.details["writeErrors"][0]
        said = f"document {first.get('index')}: {first.get('errmsg')} ({exc.details.get('nInserted', 0)} inserted)"
        kind = "DuplicateKeyError" if first.get("code") == 11000 else "WriteError"
        return FunctionError(f"{where} failed: {said}"[:800], type=f"Mongo{kind}", detail={"code": first.get("code")})
    code = getattr(exc, "code", None)
    transient = (
        code in TRANSIENT_CODES
        or exc.has_error_label("RetryableWriteError")
        or exc.has_error_label("TransientTransactionError")
    )
    detail = {"code": code} if isinstance(exc, OperationFailure) else None
    return FunctionError(
        f"{where} failed: {_first_line(exc)}", retryable=transient, type=f"Mongo{type(exc).__name__}", detail=detail
    )


def _extended(value: Any, field: str) -> Any:
    """Decode MongoDB Extended JSON (`{"$oid": ...}`, `{"$date": ...}`) in a filter or documents."""
    try:
        return json_util.loads(json.dumps(value))
    except (TypeError, ValueError) as exc:
        raise FunctionError(
            f"field '{field}' holds Extended JSON that does not decode: {exc}",
            type="InvalidInput",
            detail=[{"field": field, "message": str(exc), "type": "value_error"}],
        ) from None


def jsonable(value: Any) -> Any:
    """A BSON value as plain JSON: ObjectId and Decimal128 as text, dates in ISO 8601, bytes in base64."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (ObjectId, Decimal128, uuid.UUID)):
        return str(value)
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if isinstance(value, (bytes, Binary)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, Regex):
        return value.pattern
    if isinstance(value, Timestamp):
        return value.as_datetime().isoformat()
    return value


def _missing(field: str, message: str) -> FunctionError:
    return FunctionError(
        f"field '{field}': {message}",
        type="InvalidInput",
        detail=[{"field": field, "message": message, "type": "missing"}],
    )


def _first_line(exc: Exception) -> str:
    """pymongo's message without what it appends: the topology (server selection), the full reply (write errors)."""
    text = str(exc).split(", Timeout:")[0].split(" (configured timeouts")[0].split(", full error:")[0]
    return text.splitlines()[0][:500] if text else type(exc).__name__


def _shown(url: str) -> str:
    """The URL without user, password and options: enough to find the server, nothing secret."""
    scheme, _, rest = url.partition("://")
    hosts_and_path = rest.rpartition("@")[2].split("?")[0]
    return f"{scheme}://{hosts_and_path}".rstrip("/")
