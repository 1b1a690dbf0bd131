"""`mongodb-query`, `mongodb-insert` against the MongoDB wire server, `redis-get`, `redis-set` against a real
redis-server."""

from __future__ import annotations

import socket

import pytest
import redis

from functions.builtins import mongodb
from functions.builtins import redis as redis_builtins
from functions.handler import Retryable, call
from functions.registry import REGISTRY
from functions.sdk import Context
from tests import mongo_fixture, redis_fixture
from tests.redis_fixture import unique_key

# session-scoped servers, started once (the MongoDB wire server, a real redis-server)
mongo_server, mongo_url = mongo_fixture.mongo_server, mongo_fixture.mongo_url
redis_server, redis_url = redis_fixture.redis_server, redis_fixture.redis_url

MONGO_ENV = ("KNFLOW_MONGODB_URL", "MONGODB_URL")
REDIS_ENV = ("KNFLOW_REDIS_URL", "REDIS_URL")


async def run(function: str, doc: dict, node: str = "save") -> dict:
    ctx = Context(run_id="run-1", node_id=node, attempt=1, pipeline="test", function=function)
    return await call(REGISTRY.get(function), doc, ctx)


def fields(result: dict) -> set[str]:
    return {problem["field"] for problem in result["error"]["detail"]}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in MONGO_ENV + REDIS_ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session", autouse=True)
async def shared_clients():
    yield
    await mongodb.aclose_client()
    await redis_builtins.aclose_client()


@pytest.fixture
def refused_port():
    with socket.socket() as sock:  # bound, never listening: connections to it are refused
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@pytest.fixture
def db(mongo_url):
    """The server URL without a database, and this test's own database name."""
    base, _, rest = mongo_url.rpartition("/")
    return {"url": f"{base}/?{rest.partition('?')[2]}", "database": rest.partition("?")[0]}


@pytest.fixture
def raw_redis(redis_url):
    with redis.Redis.from_url(redis_url) as client:
        yield client


# MongoDB


async def test_insert_the_seed_document_then_query_it(db):
    """The article-generator seed's save-article node: `database`, `collection` in config, `document` in inputs."""
    doc = {
        **db,
        "collection": "articles",
        "document": {"title": "cats", "content": "echo: cats", "createdAt": "2026-11-22T08:00:00+00:00"},
    }
    out = (await run("mongodb-insert", doc))["output"]
    assert out["inserted_count"] == 1 and out["inserted_ids"] == [out["inserted_id"]] and len(out["inserted_id"]) == 24
    found = (await run("mongodb-query", {**db, "collection": "articles", "filter": {"title": "cats"}}))["output"]
    assert found == {"count": 1, "documents": [{"_id": out["inserted_id"], **doc["document"]}]}


async def test_query_filter_sort_skip_limit_projection(db):
    docs = [{"_id": i, "n": i, "even": i % 2 == 0, "tag": f"t{i}"} for i in range(10)]
    assert (await run("mongodb-insert", {**db, "collection": "nums", "documents": docs}))["output"][
        "inserted_ids"
    ] == list(range(10))
    query = {
        **db,
        "collection": "nums",
        "filter": {"even": True, "n": {"$gte": 2}},
        "sort": {"n": "desc"},
        "skip": 1,
        "limit": 2,
        "projection": {"_id": 0, "n": 1},
    }
    assert (await run("mongodb-query", query))["output"] == {"documents": [{"n": 6}, {"n": 4}], "count": 2}
    assert (await run("mongodb-query", {**db, "collection": "nums", "sort": {"n": 1}, "limit": 1}))["output"][
        "documents"
    ][0]["tag"] == "t0"


async def test_extended_json_ids_and_dates(db):
    doc = {**db, "collection": "events", "document": {"at": {"$date": "2026-01-02T03:04:05Z"}, "what": "x"}}
    inserted = (await run("mongodb-insert", doc))["output"]["inserted_id"]
    found = (await run("mongodb-query", {**db, "collection": "events", "filter": {"_id": {"$oid": inserted}}}))[
        "output"
    ]
    assert found["documents"] == [{"_id": inserted, "at": "2026-01-02T03:04:05+00:00", "what": "x"}]


async def test_url_from_the_environment_and_database_from_the_url(mongo_url, monkeypatch):
    monkeypatch.setenv("KNFLOW_MONGODB_URL", mongo_url)
    assert (await run("mongodb-insert", {"collection": "c", "document": {"a": 1}}))["output"]["inserted_count"] == 1
    assert (await run("mongodb-query", {"collection": "c"}))["output"]["count"] == 1


async def test_duplicate_key_fails_without_retry(db):
    doc = {**db, "collection": "dups", "document": {"_id": "same"}}
    await run("mongodb-insert", doc)
    error = (await run("mongodb-insert", doc))["error"]
    assert error["type"] == "MongoDuplicateKeyError" and error["detail"] == {"code": 11000}
    assert "full error" not in error["message"]
    assert error["message"].startswith(
        f"node 'save' (function 'mongodb-insert'): insert on {db['database']}.dups at mongodb://127.0.0.1:"
    )


async def test_duplicate_in_a_list_names_the_document(db):
    docs = [{"_id": 1}, {"_id": 2}, {"_id": 1}]
    error = (await run("mongodb-insert", {**db, "collection": "dups", "documents": docs}))["error"]
    assert error["type"] == "MongoDuplicateKeyError" and error["detail"] == {"code": 11000}
    assert "document 2: " in error["message"]
    assert error["message"].endswith("(2 inserted)")


async def test_missing_url_and_missing_database_name_the_field(mongo_server):
    result = await run("mongodb-insert", {"collection": "c", "document": {}})
    assert result["error"]["type"] == "InvalidInput" and fields(result) == {"url"}
    assert "KNFLOW_MONGODB_URL" in result["error"]["message"]
    result = await run("mongodb-query", {"url": mongo_server.url, "collection": "c"})
    assert fields(result) == {"database"} and "field 'database': no database named" in result["error"]["message"]


@pytest.mark.parametrize(
    "function, doc, field",
    [
        ("mongodb-insert", {"database": "d", "document": {}}, "collection"),
        ("mongodb-insert", {"collection": "c", "document": "text"}, "document"),
        ("mongodb-insert", {"collection": "c", "documents": []}, "documents"),
        ("mongodb-insert", {"collection": "c", "documents": [1]}, "documents.0"),
        ("mongodb-insert", {"collection": "c"}, "(root)"),
        ("mongodb-insert", {"collection": "c", "document": {}, "documents": [{}]}, "(root)"),
        ("mongodb-insert", {"collection": "system.users", "document": {}}, "collection"),
        ("mongodb-insert", {"collection": "c", "database": "a.b", "document": {}}, "database"),
        ("mongodb-insert", {"collection": "c", "url": "http://mongo:27017", "document": {}}, "url"),
        ("mongodb-query", {"collection": "c", "filter": "x"}, "filter"),
        ("mongodb-query", {"collection": "c", "limit": 0}, "limit"),
        ("mongodb-query", {"collection": "c", "sort": {"n": 2}}, "sort.n"),
        ("mongodb-query", {"collection": "c", "timeoutS": "soon"}, "timeoutS"),
        ("mongodb-query", {"collection": "c", "colection": "typo"}, "colection"),
    ],
)
async def test_mongodb_bad_input_names_the_field_without_retry(function, doc, field):
    result = await run(function, doc)
    assert result["error"]["type"] == "InvalidInput"
    assert field in fields(result)


async def test_bad_name_quotes_the_value():
    message = (await run("mongodb-query", {"collection": "c", "database": "a.b"}))["error"]["message"]
    assert "field 'database': Value error, 'a.b' is not a MongoDB database name" in message


async def test_unreachable_mongodb_is_retryable_and_hides_the_password(refused_port):
    url = f"mongodb://user:secret@127.0.0.1:{refused_port}/?directConnection=true"
    with pytest.raises(Retryable) as info:
        await run("mongodb-insert", {"url": url, "database": "d", "collection": "c", "document": {}, "timeout_s": 0.3})
    error = info.value.error
    assert error["type"] == "MongoUnreachable" and "secret" not in error["message"]
    assert f"insert on d.c at mongodb://127.0.0.1:{refused_port} found no server within 0.3 s" in error["message"]


# Redis


async def test_set_then_get_json_round_trips(redis_url):
    key = unique_key("doc")
    assert (await run("redis-set", {"url": redis_url, "key": key, "value": {"a": [1, 2.5, None], "k": "한"}}))[
        "output"
    ] == {"key": key, "stored": True}
    assert (await run("redis-get", {"url": redis_url, "key": key}))["output"] == {
        "key": key,
        "found": True,
        "value": {"a": [1, 2.5, None], "k": "한"},
    }


async def test_text_format_stores_plain_strings(redis_url, raw_redis):
    key = unique_key("text")
    await run("redis-set", {"url": redis_url, "key": key, "value": "hello", "format": "text"})
    assert raw_redis.get(key) == b"hello"
    assert (await run("redis-get", {"url": redis_url, "key": key, "format": "text"}))["output"]["value"] == "hello"


async def test_missing_key_gives_the_default(redis_url):
    out = (await run("redis-get", {"url": redis_url, "key": unique_key("absent"), "default": {"n": 0}}))["output"]
    assert out["found"] is False and out["value"] == {"n": 0}


async def test_ttl_and_only_if(redis_url, raw_redis, monkeypatch):
    monkeypatch.setenv("REDIS_URL", redis_url)
    key = unique_key("ttl")
    assert (await run("redis-set", {"key": key, "value": 1, "only_if": "exists"}))["output"]["stored"] is False
    assert (await run("redis-set", {"key": key, "value": 1, "ttl_s": 60, "only_if": "absent"}))["output"][
        "stored"
    ] is True
    assert 0 < raw_redis.pttl(key) <= 60_000
    assert (await run("redis-set", {"key": key, "value": 2, "onlyIf": "absent"}))["output"]["stored"] is False
    assert (await run("redis-get", {"key": key}))["output"]["value"] == 1


async def test_value_that_is_not_json_fails_naming_format(redis_url, raw_redis):
    key = unique_key("raw")
    raw_redis.set(key, b"plain words")
    error = (await run("redis-get", {"url": redis_url, "key": key}, node="read"))["error"]
    assert error["type"] == "RedisInvalidValue" and error["detail"]["field"] == "format"
    assert error["message"].startswith(
        f"node 'read' (function 'redis-get'): field 'format': key {key!r} holds 'plain words'"
    )


async def test_wrong_type_fails_without_retry(redis_url, raw_redis):
    key = unique_key("list")
    raw_redis.rpush(key, "x")
    error = (await run("redis-get", {"url": redis_url, "key": key}))["error"]
    assert error["type"] == "RedisResponseError" and "WRONGTYPE" in error["message"]


async def test_wrong_password_fails_without_retry(redis_server, raw_redis):
    user = unique_key("user").replace(":", "-")
    raw_redis.execute_command("ACL", "SETUSER", user, "on", ">right-password", "~*", "+@all")
    try:
        url = redis_server.url.replace("redis://", f"redis://{user}:wrong-password@")
        error = (await run("redis-get", {"url": url, "key": "k"}))["error"]
    finally:
        raw_redis.execute_command("ACL", "DELUSER", user)
    assert error["type"] == "RedisAuthentication" and "wrong-password" not in error["message"]
    assert f"GET 'k' at {redis_server.url} was refused: " in error["message"]


async def test_missing_url_names_the_field():
    result = await run("redis-get", {"key": "k"})
    assert result["error"]["type"] == "InvalidInput" and fields(result) == {"url"}
    assert "KNFLOW_REDIS_URL" in result["error"]["message"]


@pytest.mark.parametrize(
    "function, doc, field",
    [
        ("redis-get", {}, "key"),
        ("redis-get", {"key": ""}, "key"),
        ("redis-get", {"key": {"a": 1}}, "key"),
        ("redis-get", {"key": "k", "format": "xml"}, "format"),
        ("redis-get", {"key": "k", "url": "http://redis:6379"}, "url"),
        ("redis-set", {"key": "k"}, "value"),
        ("redis-set", {"key": "k", "value": 1, "ttl_s": -1}, "ttl_s"),
        ("redis-set", {"key": "k", "value": 1, "only_if": "never"}, "only_if"),
        ("redis-set", {"key": "k", "value": {"a": 1}, "format": "text"}, "value"),
    ],
)
async def test_redis_bad_input_names_the_field_without_retry(function, doc, field):
    result = await run(function, doc)
    assert result["error"]["type"] == "InvalidInput"
    assert field in fields(result)


async def test_unreachable_redis_is_retryable(refused_port):
    with pytest.raises(Retryable) as info:
        await run("redis-set", {"url": f"redis://:pw@127.0.0.1:{refused_port}/0", "key": "k", "value": 1})
    error = info.value.error
    assert error["type"] == "RedisUnreachable" and "pw" not in error["message"]
    assert error["message"].startswith(
        f"node 'save' (function 'redis-set'): SET 'k' at redis://127.0.0.1:{refused_port}/0 failed: "
    )


async def test_clients_reopen_after_aclose(redis_url, db):
    await redis_builtins.aclose_client()
    await mongodb.aclose_client()
    assert (await run("redis-get", {"url": redis_url, "key": unique_key("x")}))["output"]["found"] is False
    assert (await run("mongodb-query", {**db, "collection": "none"}))["output"]["count"] == 0


async def test_close_builtin_clients_closes_every_builtins_clients_on_this_loop(redis_url, db):
    from functions.registry import close_builtin_clients

    await run("redis-get", {"url": redis_url, "key": unique_key("x")})
    await run("mongodb-query", {**db, "collection": "none"})
    assert len(redis_builtins._CLIENTS) >= 1 and len(mongodb._CLIENTS) >= 1
    await close_builtin_clients()  # what the function server and the embedded stack call at shutdown
    assert len(redis_builtins._CLIENTS) == 0 and len(mongodb._CLIENTS) == 0


LOGIN = """
metadata: {name: login}
nodes:
  - id: find
    type: mongodb-query
    config: {url: "URL", database: DB, collection: users}
    inputs:
      filter: FILTER
"""


async def login(db: dict, flt: str, data: dict) -> dict:
    """A run of a pipeline whose `find` node queries users with `flt`, as written in the YAML."""
    import knflow
    from router.loader import load_string

    yaml_text = LOGIN.replace("URL", db["url"]).replace("DB", db["database"]).replace("FILTER", flt)
    record = await knflow.execute_run(load_string(yaml_text, "login.yaml"), data)
    return record["nodes"]["find"]


async def test_trigger_data_cannot_inject_an_operator_into_a_filter(db):
    """The attack: `{password: "{{ trigger.data.password }}"}` with `{"$ne": null}` sent must not match all."""
    users = [{"name": "ada", "password": "s3cret"}, {"name": "bob", "password": "hunter2"}]
    await run("mongodb-insert", {**db, "collection": "users", "documents": users})
    templated = '{name: "{{ trigger.data.name }}", password: "{{ trigger.data.password }}"}'
    attack = await login(db, templated, {"name": "ada", "password": {"$ne": None}})
    assert attack["status"] == "failed" and attack["error"]["type"] == "TemplateError"
    message = attack["error"]["message"]
    assert "inputs.filter.password: {{ trigger.data.password }} gives a value with the key '$ne'" in message
    assert "operators ($-keys) cannot come from templates" in message
    nested = await login(db, '{$and: "{{ trigger.data.clauses }}"}', {"clauses": [{"password": {"$gt": ""}}]})
    assert nested["status"] == "failed" and "key '$gt' at '/0/password'" in nested["error"]["message"]
    # the legitimate paths: a plain value from the trigger, and the author's own operators around templates
    ok = await login(db, templated, {"name": "ada", "password": "s3cret"})
    assert ok["status"] == "succeeded" and ok["output"]["count"] == 1
    wrong = await login(db, templated, {"name": "ada", "password": "nope"})
    assert wrong["status"] == "succeeded" and wrong["output"]["count"] == 0
    own = await login(db, '{password: {$ne: "{{ trigger.data.not }}"}}', {"not": "s3cret"})
    assert own["status"] == "succeeded" and [d["name"] for d in own["output"]["documents"]] == ["bob"]


async def test_trigger_data_cannot_inject_an_operator_into_a_document(db):
    yaml_text = f"""
metadata: {{name: save}}
nodes:
  - id: save
    type: mongodb-insert
    config: {{url: "{db["url"]}", database: {db["database"]}, collection: notes}}
    inputs: {{document: "{{{{ trigger.data }}}}"}}
"""
    import knflow
    from router.loader import load_string

    record = await knflow.execute_run(load_string(yaml_text, "save.yaml"), {"note": {"$where": "sleep(1000)"}})
    assert record["nodes"]["save"]["status"] == "failed"
    assert "key '$where' at '/note'" in record["nodes"]["save"]["error"]["message"]
    record = await knflow.execute_run(load_string(yaml_text, "save.yaml"), {"note": "plain"})
    assert record["nodes"]["save"]["status"] == "succeeded"
