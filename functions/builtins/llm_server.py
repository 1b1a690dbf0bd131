"""Reaching an OpenAI-compatible server (vLLM, llama.cpp, OpenAI) for the AI builtins (`functions.builtins.ai`).

Where it is: the node's config (`base_url`, `api_key_env`, `model`; camelCase works too), else the environment
(`KNFLOW_OPENAI_BASE_URL`, `KNFLOW_OPENAI_API_KEY`, `KNFLOW_OPENAI_MODEL` or `KNFLOW_OPENAI_EMBEDDING_MODEL`,
then `OPENAI_BASE_URL`, `OPENAI_API_KEY`). Without a base URL a key means OpenAI's own API; with neither
the node fails naming `base_url`.

Credentials stay with their hosts: the environment's key goes only to the environment's base URL. A node
whose `base_url` is another server sends no key, unless it names its own key source, `api_key_env: NAME`,
an environment variable whose name ends in `_API_KEY` (so knflow's tokens and other secrets cannot be
named). A key is never written in a pipeline: `api_key` in a config is refused.

How it fails: the openai client's own retries are off. What a retry may fix (no connection, a timeout,
HTTP 408/409/429/5xx) raises a retryable `FunctionError`, so the broker retries with backoff; any other
status (400, 401, 404 ...) fails the node at once with the server's own message. Messages show the base
URL without user info or query.

One `AsyncOpenAI` per event loop and (base URL, key); close them at shutdown with `await aclose_client()`.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Awaitable, Callable
from typing import NamedTuple, TypeVar
from urllib.parse import urlsplit

import openai
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic.alias_generators import to_camel
from pydantic_settings import BaseSettings, SettingsConfigDict

from functions.builtins.loop_clients import LoopClients
from functions.errors import FunctionError
from broker.redact import excerpt

DEFAULT_TIMEOUT_S = 120.0
MAX_TIMEOUT_S = 590.0  # the function timeout, 10 s more, stays within Knative's default max-revision-timeout (600 s)
BODY_EXCERPT_CHARS = 500
OPENAI_BASE_URL = "https://api.openai.com/v1"
NO_KEY = "none"  # servers without auth (vLLM, llama.cpp) ignore the bearer token; the client needs one
RETRYABLE_STATUS = frozenset({408, 409, 429})  # and every 5xx

ENV_KEY_VARIABLES = frozenset({"KNFLOW_OPENAI_API_KEY", "OPENAI_API_KEY"})
_KEY_VARIABLE = re.compile(r"^[A-Z][A-Z0-9_]*_API_KEY$")

T = TypeVar("T")


class OpenAISettings(BaseSettings):
    """The server from the environment, when a node's config names none."""

    model_config = SettingsConfigDict(extra="ignore")

    base_url: str | None = Field(None, validation_alias=AliasChoices("KNFLOW_OPENAI_BASE_URL", "OPENAI_BASE_URL"))
    api_key: SecretStr | None = Field(None, validation_alias=AliasChoices("KNFLOW_OPENAI_API_KEY", "OPENAI_API_KEY"))
    model: str | None = Field(None, validation_alias="KNFLOW_OPENAI_MODEL")
    embedding_model: str | None = Field(None, validation_alias="KNFLOW_OPENAI_EMBEDDING_MODEL")


def check_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{value!r} is not an absolute http(s) URL such as 'http://vllm:8000/v1'")
    return value.rstrip("/")


class ServerConfig(BaseModel):
    """The config fields every AI builtin takes: which server, which model, how long to wait."""

    model_config = ConfigDict(
        extra="forbid",
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        coerce_numbers_to_str=True,
    )

    base_url: str | None = None
    api_key_env: str | None = None  # the environment variable that holds the key for `base_url`
    api_key: SecretStr | None = None  # refused: a key is never written in a pipeline
    model: str | None = Field(None, min_length=1)
    timeout_s: float = Field(DEFAULT_TIMEOUT_S, gt=0, le=MAX_TIMEOUT_S)

    @field_validator("base_url")
    @classmethod
    def _absolute_http_url(cls, value: str | None) -> str | None:
        return value if value is None else check_url(value)

    @field_validator("api_key")
    @classmethod
    def _no_literal_key(cls, value: SecretStr | None) -> None:
        if value is not None:
            raise ValueError(
                "a key is not written in a pipeline: keep it in the environment (a Secret) and name the variable "
                "with api_key_env, e.g. api_key_env: VLLM_API_KEY"
            )

    @field_validator("api_key_env")
    @classmethod
    def _key_variable(cls, value: str | None) -> str | None:
        if value is not None and not _KEY_VARIABLE.match(value):
            raise ValueError(
                f"{value!r} is not the name of an environment variable ending in _API_KEY, such as VLLM_API_KEY"
            )
        return value


class Server(NamedTuple):
    base_url: str
    api_key: str
    model: str

    @property
    def client(self) -> openai.AsyncOpenAI:
        return _CLIENTS.get((self.base_url, self.api_key))


def resolve(inp: ServerConfig, *, embedding: bool = False) -> Server:
    """The server and model from the config, else the environment; every missing one named at once.

    The environment's key goes only to the environment's base URL; another `base_url` gets the key its
    `api_key_env` names, or none."""
    env = OpenAISettings()
    env_key = env.api_key.get_secret_value() if env.api_key else None
    env_url = env.base_url or (OPENAI_BASE_URL if env_key else None)
    base_url = inp.base_url or env_url
    model = inp.model or (env.embedding_model if embedding else env.model)
    problems = []
    if base_url is None:
        problems.append(
            ("base_url", "no server to call: set 'base_url' in the node's config, or KNFLOW_OPENAI_BASE_URL")
        )
    elif not inp.base_url:
        try:
            base_url = check_url(base_url)
        except ValueError as exc:
            problems.append(("base_url", f"the environment's base URL {exc}"))
    key: str | None = None
    if inp.api_key_env:
        key = os.environ.get(inp.api_key_env)
        if inp.api_key_env in ENV_KEY_VARIABLES and not _same_server(base_url, env_url):
            problems.append(("api_key_env", f"{inp.api_key_env} is the key of the environment's server only"))
        elif not key:
            problems.append(("api_key_env", f"the environment variable {inp.api_key_env} is not set"))
    elif _same_server(base_url, env_url):
        key = env_key
    if not model:
        variable = "KNFLOW_OPENAI_EMBEDDING_MODEL" if embedding else "KNFLOW_OPENAI_MODEL"
        problems.append(("model", f"no model named: set 'model' in the node's config, or {variable}"))
    if problems:
        raise FunctionError(
            "; ".join(f"field '{field}': {message}" for field, message in problems),
            type="InvalidInput",
            detail=[{"field": f, "message": m, "type": "missing"} for f, m in problems],
        )
    assert base_url is not None and model is not None  # a missing one is a problem above
    return Server(base_url, key or NO_KEY, model)


def _same_server(url: str | None, env_url: str | None) -> bool:
    """Whether `url` is the environment's base URL (scheme, host, port and path; the host's case aside)."""
    if url is None or env_url is None:
        return False
    a, b = urlsplit(url.rstrip("/")), urlsplit(env_url.rstrip("/"))
    return (a.scheme, a.hostname, a.port, a.path) == (b.scheme, b.hostname, b.port, b.path)


async def request(what: str, server: Server, timeout_s: float, send: Callable[[openai.AsyncOpenAI], Awaitable[T]]) -> T:
    """`send(client)` within `timeout_s`; its failures as `FunctionError`s, retryable where a retry may help."""
    where = f"{what} at {shown(server.base_url)}"
    try:
        async with asyncio.timeout(timeout_s):
            return await send(server.client)
    except (TimeoutError, openai.APITimeoutError):
        raise FunctionError(f"{where} timed out after {timeout_s:g} s", retryable=True, type="LlmTimeout") from None
    except openai.APIConnectionError as exc:
        cause = f" ({exc.__cause__})" if exc.__cause__ else ""
        raise FunctionError(f"{where} failed: {exc.message}{cause}", retryable=True, type="LlmUnreachable") from None
    except openai.APIStatusError as exc:
        status = exc.status_code
        said = _server_message(exc.body)
        detail = {"status": status, "body": said}
        if retry_after := exc.response.headers.get("retry-after"):
            detail["retry_after"] = retry_after
        raise FunctionError(
            f"{where} answered HTTP {status}: {said}",
            retryable=status >= 500 or status in RETRYABLE_STATUS,
            type="LlmStatus",
            detail=detail,
        ) from None
    except openai.APIResponseValidationError as exc:
        raise FunctionError(
            f"{where} answered a response that is not OpenAI's shape: {exc.message}", type="LlmInvalidResponse"
        ) from None


async def aclose_client() -> None:
    """Close the running loop's openai clients; later calls open new ones. Call it on that loop."""
    await _CLIENTS.aclose()


_CLIENTS: LoopClients[tuple[str, str], openai.AsyncOpenAI] = LoopClients(
    make=lambda key: openai.AsyncOpenAI(base_url=key[0], api_key=key[1], max_retries=0),
    close=lambda client: client.close(),
)


def _server_message(body: object) -> str:
    """The server's own words: `error.message` (OpenAI, vLLM), else the start of the body."""
    if isinstance(body, dict):
        for name in ("message", "detail", "error"):
            if isinstance(body.get(name), str) and body[name]:
                return excerpt(body[name], BODY_EXCERPT_CHARS)
    return excerpt(str(body), BODY_EXCERPT_CHARS) if body else "(no body)"


def shown(url: str) -> str:
    """The URL without user info and query: enough to find the server, nothing secret."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.port:
        netloc += f":{parts.port}"
    return f"{parts.scheme}://{netloc}{parts.path}"
