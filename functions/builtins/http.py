"""`http-request`: one HTTP call; its output is the response body, or `{"status", "headers", "body"}`.

What a retry may fix (a network error, a timeout, HTTP 5xx, 408, 429) raises a retryable `FunctionError`,
so the broker retries with backoff; any other 4xx fails the node at once, with the status and the start
of the body in `detail`. Messages show the URL without its query string, which may hold secrets.

`KNFLOW_HTTP_CONNECT_TO=FROM=TO[,FROM=TO...]` sends a request whose URL starts with FROM to TO instead, the
rest of the URL kept (as `curl --connect-to` or a pod's `hostAliases`): a pipeline that calls
`https://api.example.com/...` runs against a local or staging server without editing the pipeline.

The SSRF guard (`functions.netguard`): the host is resolved, and loopback, private, link-local, CGNAT,
unique-local, multicast, metadata and internal names are refused unless `KNFLOW_HTTP_ALLOW_NETS` (CIDRs or
host:port, comma-separated) opens them; the connection goes to the addresses that were checked (the
client's resolver is the guard: no second lookup; the Host header and TLS SNI stay the URL's name).
Redirects are followed here, at most MAX_REDIRECTS, each one checked again. A `KNFLOW_HTTP_CONNECT_TO`
target is checked as well (tests allow their own 127.0.0.1 servers). The body is read as it streams and
refused past `max_response_bytes` (default `KNFLOW_HTTP_MAX_RESPONSE_BYTES`, else 10 MiB; a node may
lower it, not raise it). A failed node's error holds at most 200 characters of the body, credentials
masked (`functions.redact`).

One client is shared per event loop: httpx over the aiohttp transport (plain httpx tops out near 600
req/s, see shared/DEPENDENCIES.md), created on first use. Close it at shutdown, on the same loop, with
`await aclose_client()` (the function server's lifespan exit; the local runner's teardown).
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import json
import os
import re
import socket
import weakref
from typing import Any, Literal

import aiohttp
import httpx
from aiohttp.abc import AbstractResolver
from httpx_aiohttp import AiohttpTransport, HttpxAiohttpClient
from pydantic import BaseModel, ConfigDict, Field, RootModel, field_validator, model_validator

from functions import netguard
from functions.errors import FunctionError
from broker.redact import excerpt
from functions.sdk import Retry, function

MAX_TIMEOUT_S = 300.0
MAX_REDIRECTS = 10
DEFAULT_MAX_RESPONSE_BYTES = 10 * 1024 * 1024
MAX_RESPONSE_SETTING = "KNFLOW_HTTP_MAX_RESPONSE_BYTES"
_DEFAULT_PORTS = {"http": 80, "https": 443}
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
    max_response_bytes: int | None = Field(None, gt=0)  # default KNFLOW_HTTP_MAX_RESPONSE_BYTES, else 10 MiB

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
    cap = _response_cap(inp.max_response_bytes)
    send = {"json": inp.json_doc} if "json_doc" in inp.model_fields_set else {"content": inp.body}
    client = _client()
    try:
        async with asyncio.timeout(inp.timeout_s):
            request = client.build_request(
                inp.method,
                url,
                headers=inp.headers,
                params=inp.params or None,  # {} would drop the URL's own query
                timeout=inp.timeout_s,
                **send,
            )
            response = await _send(client, request, where)
            try:
                content = await _read(response, cap, where)
            finally:
                await response.aclose()
    except netguard.Refused as exc:
        raise FunctionError(
            f"{where} refused by the SSRF guard: {exc}",
            type="HttpAddressRefused",
            detail={"field": "url", "host": exc.host, "port": exc.port, "address": exc.address, "reason": exc.reason},
        ) from None
    except netguard.AllowListInvalid as exc:
        raise FunctionError(str(exc), type="InvalidSetting", detail={"field": netguard.SETTING}) from None
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
    except httpx.RequestError as exc:  # a bad encoding: the same again next time
        raise FunctionError(f"{where} failed: {exc}", type="HttpRequestFailed") from None
    status = response.status_code
    if inp.fail_on_status and status >= 400:
        detail = {"status": status, "body": excerpt(_text(response, content))}
        if "retry-after" in response.headers:
            detail["retry_after"] = response.headers["retry-after"]
        raise FunctionError(
            f"{where} answered HTTP {status} {response.reason_phrase}".rstrip(),
            retryable=status >= 500 or status in RETRYABLE_STATUS,
            type="HttpStatus",
            detail=detail,
        )
    body = _body(response, content, where)
    if inp.output == "full":
        return HttpResponse({"status": status, "headers": dict(response.headers.items()), "body": body})
    return HttpResponse(body)


async def aclose_client() -> None:
    """Close the running loop's shared client; a later request opens a new one. Call it on that loop."""
    client = _CLIENTS.pop(asyncio.get_running_loop(), None)
    if client is not None:
        await client.aclose()


async def system_lookup(host: str, port: int) -> list[str]:
    """The addresses `host` resolves to, by the system's resolver (getaddrinfo)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


lookup: netguard.Lookup = system_lookup
"""How the guard resolves names; tests put a resolver of their own here (e.g. with monkeypatch)."""


class _GuardedResolver(AbstractResolver):
    """aiohttp's resolver: the guard's checked addresses, and only those, are what the connector dials."""

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET) -> list[Any]:
        addresses = await netguard.resolve(host, port, _allow_list(), lookup)
        return [
            {
                "hostname": host,
                "host": address,
                "port": port,
                "family": socket.AF_INET6 if ":" in address else socket.AF_INET,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
            for address in addresses
        ]

    async def close(self) -> None:
        return None


def _client() -> httpx.AsyncClient:
    loop = asyncio.get_running_loop()
    client = _CLIENTS.get(loop)
    if client is None or client.is_closed:

        def session() -> aiohttp.ClientSession:
            connector = aiohttp.TCPConnector(resolver=_GuardedResolver(), use_dns_cache=False, limit=100)
            return aiohttp.ClientSession(connector=connector, trust_env=False)

        # trust_env off: a proxy from the environment would be dialled instead of the checked address
        client = _CLIENTS[loop] = HttpxAiohttpClient(transport=AiohttpTransport(client=session), trust_env=False)
    return client


async def _send(client: httpx.AsyncClient, request: httpx.Request, where: str) -> httpx.Response:
    """Send `request`, following redirects here (each target checked by the guard), at most MAX_REDIRECTS."""
    allow = _allow_list()
    for _ in range(MAX_REDIRECTS + 1):
        netguard.check_host(request.url.host, request.url.port or _DEFAULT_PORTS[request.url.scheme], allow)
        response = await client.send(request, stream=True)
        if response.next_request is None:
            return response
        await response.aclose()
        request = response.next_request
        if request.url.scheme not in _DEFAULT_PORTS:
            raise FunctionError(
                f"{where} redirected to a {request.url.scheme!r} URL; only http(s) is followed", type="HttpRedirect"
            )
    raise FunctionError(f"{where} redirected more than {MAX_REDIRECTS} times", type="HttpTooManyRedirects")


async def _read(response: httpx.Response, cap: int, where: str) -> bytes:
    """The body, read as it streams; past `cap` bytes the read stops and the node fails naming the cap."""
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > cap:
        raise _too_large(where, cap, f"its Content-Length is {declared}")
    chunks, size = [], 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > cap:
            raise _too_large(where, cap, "the body was longer")
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(where: str, cap: int, why: str) -> FunctionError:
    return FunctionError(
        f"{where} answered more than the response cap of {cap} bytes ({why}); raise max_response_bytes "
        f"(at most {MAX_RESPONSE_SETTING}) for bigger responses",
        type="HttpResponseTooLarge",
        detail={"max_response_bytes": cap},
    )


def _response_cap(node_cap: int | None) -> int:
    text = os.environ.get(MAX_RESPONSE_SETTING, "").strip()
    if text and not (text.isdigit() and int(text) > 0):
        raise FunctionError(
            f"environment variable {MAX_RESPONSE_SETTING}: {text!r} is not a positive number of bytes",
            type="InvalidSetting",
            detail={"field": MAX_RESPONSE_SETTING},
        )
    ceiling = int(text) if text else DEFAULT_MAX_RESPONSE_BYTES
    if node_cap is None:
        return ceiling
    if node_cap > ceiling:
        raise FunctionError(
            f"field 'max_response_bytes': {node_cap} is over this deployment's cap of {ceiling} bytes "
            f"({MAX_RESPONSE_SETTING})",
            type="InvalidInput",
            detail=[{"field": "max_response_bytes", "message": f"at most {ceiling}", "type": "less_than_equal"}],
        )
    return node_cap


def _allow_list() -> netguard.AllowList:
    return netguard.parse_allow_list(os.environ.get(netguard.SETTING, ""))


def _text(response: httpx.Response, content: bytes) -> str:
    return content.decode(response.charset_encoding or "utf-8", errors="replace")


def _body(response: httpx.Response, content: bytes, where: str) -> Any:
    if not content:
        return None
    media_type = response.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type != "application/json" and not media_type.endswith("+json"):
        return _text(response, content)
    try:
        return json.loads(content)
    except ValueError as exc:
        raise FunctionError(
            f"{where} answered {media_type} but the body is not JSON: {exc}",
            type="HttpInvalidJson",
            detail={"status": response.status_code, "body": excerpt(_text(response, content))},
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
