"""`http-request`: one HTTP call; its output is the response body, or `{"status", "headers", "body"}`.

What a retry may fix (a network error, a timeout, HTTP 5xx, 408, 429) raises a retryable `FunctionError`,
so the broker retries with backoff; any other 4xx fails the node at once, with the status and the start
of the body in `detail`. Messages show the URL without its query string, which may hold secrets.

`KNFLOW_HTTP_CONNECT_TO=FROM=TO[,FROM=TO...]` sends a request whose URL starts with FROM to TO instead, the
rest of the URL kept (as `curl --connect-to` or a pod's `hostAliases`): a pipeline that calls
`https://api.example.com/...` runs against a local or staging server without editing the pipeline.

One client is shared per event loop: httpx over the aiohttp transport (plain httpx tops out near 600
req/s, see shared/DEPENDENCIES.md), created on first use. Close it at shutdown, on the same loop, with
`await aclose_client()` (the function server's lifespan exit; the local runner's teardown).
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import os
import re
import weakref
from typing import Any, Literal

import httpx
from httpx_aiohttp import HttpxAiohttpClient
from pydantic import BaseModel, ConfigDict, Field, RootModel, field_validator, model_validator

from functions.errors import FunctionError
from functions.sdk import Retry, function

MAX_TIMEOUT_S = 300.0
BODY_EXCERPT_CHARS = 500
RETRYABLE_STATUS = frozenset({408, 429})  # and every 5xx
_HOSTNAME = re.compile(r"^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)*\.?$")

_CLIENTS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = weakref.WeakKeyDictionary()

Scalar = str | int | float | bool | None


class HttpRequest(BaseModel):
    """Input of `http-request`. Send a JSON document with `json`, or raw text with `body`."""

    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True)

    method: Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] = "GET"
    url: str
    headers: dict[str, str] = {}
    params: dict[str, Scalar | list[Scalar]] = {}
    json_doc: Any = Field(None, alias="json")
    body: str | None = None
    timeout_s: float = Field(30.0, gt=0, le=MAX_TIMEOUT_S)
    output: Literal["body", "full"] = "body"
    fail_on_status: bool = True

    @field_validator("method", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("url")
    @classmethod
    def _absolute_http_url(cls, value: str) -> str:
        try:
            url = httpx.URL(value)
        except httpx.InvalidURL as exc:
            raise ValueError(f"{value!r} is not a valid URL ({exc})") from None
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError(f"{value!r} is not an absolute http(s) URL such as 'https://api.example.com/items'")
        if not _valid_host(url.raw_host.decode("ascii")):
            raise ValueError(f"{value!r} has an invalid host {url.host!r}")
        if not 0 < (url.port or 80) < 65536:
            raise ValueError(f"{value!r} has an invalid port {url.port}; expected 1 to 65535")
        return value

    @field_validator("headers")
    @classmethod
    def _one_line_headers(cls, value: dict[str, str]) -> dict[str, str]:
        for name, text in value.items():
            if any(c in name + text for c in "\r\n"):
                raise ValueError(f"header {name!r} has a line break in its name or value")
        return value

    @model_validator(mode="after")
    def _one_body(self) -> HttpRequest:
        if "json_doc" in self.model_fields_set and self.body is not None:
            raise ValueError("give either 'json' (a JSON document) or 'body' (text), not both")
        return self


class HttpResponse(RootModel[Any]):
    """The response body (`output: body`), or `{"status", "headers", "body"}` (`output: full`)."""


@function(name="http-request", timeout_s=MAX_TIMEOUT_S + 10, retries=Retry(retries=3, delay_s=1.0, max_delay_s=30.0))
async def http_request(inp: HttpRequest) -> HttpResponse:
    """Send one HTTP request; the output is the response body.

    The body is parsed JSON when the response says JSON, else text (`null` when empty); with `output: full`
    the output is `{"status", "headers", "body"}`. With `fail_on_status: false` an error status is
    returned like any other.
    """
    url = _connected(inp.url)
    where = f"{inp.method} {_shown(inp.url)}" + (f" (via {_shown(url)})" if url != inp.url else "")
    send = {"json": inp.json_doc} if "json_doc" in inp.model_fields_set else {"content": inp.body}
    try:
        async with asyncio.timeout(inp.timeout_s):
            response = await _client().request(
                inp.method,
                url,
                headers=inp.headers,
                params=inp.params or None,  # {} would drop the URL's own query
                timeout=inp.timeout_s,
                follow_redirects=True,
                **send,
            )
    except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:  # what the URL check let through
        raise FunctionError(
            f"field 'url': {inp.url!r} cannot be requested: {exc}", type="InvalidUrl", detail={"field": "url"}
        ) from None
    except (TimeoutError, httpx.TransportError) as exc:
        if isinstance(exc, TimeoutError) or isinstance(exc.__cause__, TimeoutError):
            reason = f"timed out after {inp.timeout_s:g} s"
        else:
            reason = f"failed: {str(exc) or type(exc).__name__}"
        raise FunctionError(f"{where} {reason}", retryable=True, type="HttpUnreachable") from None
    except httpx.RequestError as exc:  # a bad encoding, too many redirects: the same again next time
        raise FunctionError(f"{where} failed: {exc}", type="HttpRequestFailed") from None
    status = response.status_code
    if inp.fail_on_status and status >= 400:
        detail = {"status": status, "body": response.text[:BODY_EXCERPT_CHARS]}
        if "retry-after" in response.headers:
            detail["retry_after"] = response.headers["retry-after"]
        raise FunctionError(
            f"{where} answered HTTP {status} {response.reason_phrase}".rstrip(),
            retryable=status >= 500 or status in RETRYABLE_STATUS,
            type="HttpStatus",
            detail=detail,
        )
    body = _body(response, where)
    if inp.output == "full":
        return HttpResponse({"status": status, "headers": dict(response.headers.items()), "body": body})
    return HttpResponse(body)


async def aclose_client() -> None:
    """Close the running loop's shared client; a later request opens a new one. Call it on that loop."""
    client = _CLIENTS.pop(asyncio.get_running_loop(), None)
    if client is not None:
        await client.aclose()


def _client() -> httpx.AsyncClient:
    loop = asyncio.get_running_loop()
    client = _CLIENTS.get(loop)
    if client is None or client.is_closed:
        client = _CLIENTS[loop] = HttpxAiohttpClient()
    return client


def _body(response: httpx.Response, where: str) -> Any:
    if not response.content:
        return None
    media_type = response.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type != "application/json" and not media_type.endswith("+json"):
        return response.text
    try:
        return response.json()
    except ValueError as exc:
        raise FunctionError(
            f"{where} answered {media_type} but the body is not JSON: {exc}",
            type="HttpInvalidJson",
            detail={"status": response.status_code, "body": response.text[:BODY_EXCERPT_CHARS]},
        ) from None


def _connected(url: str) -> str:
    """`url`, or where KNFLOW_HTTP_CONNECT_TO sends it."""
    for prefix, target in _connect_to(os.environ.get("KNFLOW_HTTP_CONNECT_TO", "")):
        if url == prefix or url.startswith(prefix.rstrip("/") + "/"):
            return target.rstrip("/") + url[len(prefix.rstrip("/")) :]
    return url


@functools.lru_cache(maxsize=8)
def _connect_to(value: str) -> tuple[tuple[str, str], ...]:
    pairs = []
    for entry in filter(None, (e.strip() for e in value.split(","))):
        prefix, sep, target = entry.partition("=")
        if not sep or not all(x.strip().startswith(("http://", "https://")) for x in (prefix, target)):
            raise FunctionError(
                f"environment variable KNFLOW_HTTP_CONNECT_TO: {entry!r} is not FROM=TO with two http(s) URLs, "
                "e.g. https://api.example.com=http://127.0.0.1:8081",
                type="InvalidSetting",
                detail={"field": "KNFLOW_HTTP_CONNECT_TO"},
            )
        pairs.append((prefix.strip(), target.strip()))
    return tuple(pairs)


def _valid_host(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return bool(_HOSTNAME.match(host))


def _shown(url: str) -> str:
    """The URL without user info, query and fragment: enough to find it, nothing secret."""
    parsed = httpx.URL(url)
    return str(parsed.copy_with(userinfo=b"", query=None, fragment=None))
