"""`redis-get` and `redis-set`: one key, with redis-py's asyncio client.

The server is the config's `url`, else `KNFLOW_REDIS_URL`, else `REDIS_URL` (`redis://host:6379/0`,
`rediss://` for TLS). Values are JSON by default (`format: json`): `redis-set` stores any JSON value as
its JSON text and `redis-get` parses it back, so `{"a": 1}` round-trips; `format: text` stores and reads
plain strings, for keys that other programs share.

What a retry may fix (no server, a timeout, a server still loading) raises a retryable `FunctionError`;
a wrong password, a key of another type (`WRONGTYPE`) or a value that is not JSON fails the node at once.
redis-py's own retries are off. One client per event loop and URL; close them at shutdown with
`await aclose_client()`. Messages show the URL without its password.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from pydantic.alias_generators import to_camel
from pydantic_settings import BaseSettings, SettingsConfigDict
from redis import exceptions as rx
from redis.asyncio.retry import Retry as RedisRetry
from redis.backoff import NoBackoff

from functions.builtins.loop_clients import LoopClients
from functions.errors import FunctionError
from functions.sdk import Retry, function

DEFAULT_TIMEOUT_S = 5.0
MAX_TIMEOUT_S = 60.0
MAX_KEY_CHARS = 1024
RETRY = Retry(retries=3, delay_s=0.5, max_delay_s=10.0)

T = TypeVar("T")


class RedisSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore")

    url: str | None = Field(None, validation_alias=AliasChoices("KNFLOW_REDIS_URL", "REDIS_URL"))


class KeyInput(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        coerce_numbers_to_str=True,
    )

    url: str | None = None
    key: str = Field(min_length=1, max_length=MAX_KEY_CHARS)
    format: Literal["json", "text"] = "json"
    timeout_s: float = Field(DEFAULT_TIMEOUT_S, gt=0, le=MAX_TIMEOUT_S)

    @field_validator("url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        if value is not None and urlsplit(value).scheme not in ("redis", "rediss", "unix"):
            raise ValueError(f"{_shown(value)!r} is not a Redis URL such as 'redis://redis:6379/0'")
        return value


class GetInput(KeyInput):
    """Input of `redis-get`: the `key`, and the `default` value when it is absent."""

    default: Any = None


class GetOutput(BaseModel):
    key: str
    found: bool
    value: Any


class SetInput(KeyInput):
    """Input of `redis-set`: `key`, `value`, and optionally `ttl_s` and `only_if` (`absent` or `exists`)."""

    value: Any
    ttl_s: float | None = Field(None, gt=0)
    only_if: Literal["absent", "exists"] | None = None

    @field_validator("value")
    @classmethod
    def _text_is_a_string(cls, value: Any, info: ValidationInfo) -> Any:
        if info.data.get("format") == "text" and (isinstance(value, bool) or not isinstance(value, (str, int, float))):
            raise ValueError(
                f"with format 'text' the value must be a string, got {type(value).__name__} {repr(value)[:80]}; "
                "use format 'json'"
            )
        return value


class SetOutput(BaseModel):
    key: str
    stored: bool  # False when `only_if` kept the value from being written


@function(name="redis-get", timeout_s=MAX_TIMEOUT_S + 5, retries=RETRY)
async def redis_get(inp: GetInput) -> GetOutput:
    """Read `key`; the output is `{"key", "found", "value"}`, `value` being `default` when the key is absent."""
    raw = await _on_server(inp, "GET", lambda client: client.get(inp.key))
    if raw is None:
        return GetOutput(key=inp.key, found=False, value=inp.default)
    assert isinstance(raw, bytes)  # _make_client does not set decode_responses
    try:
        text = raw.decode("utf-8")
        value = json.loads(text) if inp.format == "json" else text
    except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError both
        excerpt = raw[:80].decode("utf-8", "replace")
        raise FunctionError(
            f"field 'format': key {inp.key!r} holds {excerpt!r}, "
            f"which is not {'JSON' if inp.format == 'json' else 'UTF-8 text'} "
            f"({exc}). Read it with format 'text', or store it with redis-set's format 'json'",
            type="RedisInvalidValue",
            detail={"field": "format", "key": inp.key},
        ) from None
    return GetOutput(key=inp.key, found=True, value=value)


@function(name="redis-set", timeout_s=MAX_TIMEOUT_S + 5, retries=RETRY)
async def redis_set(inp: SetInput) -> SetOutput:
    """Write `value` at `key` (JSON text, or the string with `format: text`); the output is `{"key", "stored"}`."""
    data = json.dumps(inp.value, ensure_ascii=False) if inp.format == "json" else str(inp.value)
    px = max(1, round(inp.ttl_s * 1000)) if inp.ttl_s else None
    done = await _on_server(
        inp,
        "SET",
        lambda client: client.set(
            inp.key, data.encode("utf-8"), px=px, nx=inp.only_if == "absent", xx=inp.only_if == "exists"
        ),
    )
    return SetOutput(key=inp.key, stored=bool(done))


async def aclose_client() -> None:
    """Close the running loop's Redis clients; later calls open new ones. Call it on that loop."""
    await _CLIENTS.aclose()


def _make_client(url: str) -> aioredis.Redis:
    return aioredis.Redis.from_url(url, retry=RedisRetry(NoBackoff(), 0), socket_connect_timeout=MAX_TIMEOUT_S)


_CLIENTS: LoopClients[str, aioredis.Redis] = LoopClients(make=_make_client, close=lambda client: client.aclose())


async def _on_server(inp: KeyInput, command: str, op: Callable[[aioredis.Redis], Awaitable[T]]) -> T:
    url = inp.url or RedisSettings().url
    if not url:
        message = "no Redis to use: set 'url' in the node's config, or KNFLOW_REDIS_URL"
        raise FunctionError(
            f"field 'url': {message}",
            type="InvalidInput",
            detail=[{"field": "url", "message": message, "type": "missing"}],
        )
    where = f"{command} {inp.key!r} at {_shown(url)}"
    try:
        client = _CLIENTS.get(url)
    except ValueError as exc:
        raise FunctionError(
            f"field 'url': {_shown(url)!r} is not usable: {exc}",
            type="InvalidInput",
            detail=[{"field": "url", "message": str(exc), "type": "value_error"}],
        ) from None
    try:
        async with asyncio.timeout(inp.timeout_s):
            return await op(client)
    except (rx.AuthenticationError, rx.AuthorizationError) as exc:
        raise FunctionError(f"{where} was refused: {exc}", type="RedisAuthentication") from None
    except (TimeoutError, rx.TimeoutError):
        raise FunctionError(
            f"{where} timed out after {inp.timeout_s:g} s", retryable=True, type="RedisTimeout"
        ) from None
    except rx.ConnectionError as exc:  # BusyLoadingError too
        raise FunctionError(f"{where} failed: {exc}", retryable=True, type="RedisUnreachable") from None
    except rx.RedisError as exc:  # WRONGTYPE, a read-only replica, out of memory ...
        raise FunctionError(f"{where} failed: {exc}", type=f"Redis{type(exc).__name__}") from None


def _shown(url: str) -> str:
    """The URL without user and password."""
    parts = urlsplit(url)
    return parts._replace(netloc=parts.netloc.rpartition("@")[2], query="").geturl()
