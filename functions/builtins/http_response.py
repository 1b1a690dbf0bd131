"""`http-response`: the answer of a synchronous webhook (`trigger: {type: webhook, respond: sync}`).

The node's output `{status, headers, body}` is what the router that holds the webhook's request answers with
(router/sync_reply.py); `check_response` is the one check of it, run here and again by the router. A status
is 100-599; a header name is an RFC 9110 token, its value has no control characters (no CR, LF or NUL: no
header splitting); hop-by-hop headers and those the server sets itself (Content-Length) are refused."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from functions.errors import FunctionError
from functions.sdk import function

TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,256}$")  # RFC 9110 field-name
BAD_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # controls but horizontal tab
MAX_VALUE_CHARS = 8192
MAX_HEADERS = 64
# hop-by-hop (RFC 9110 7.6.1) and what the server computes: a node cannot set them
REFUSED = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "host",
    }
)


class HttpResponseInput(BaseModel):
    """Input of `http-response`: the webhook's answer."""

    model_config = ConfigDict(extra="forbid")

    status: int = Field(200, ge=100, le=599, description="the HTTP status, 100-599")
    headers: dict[str, str] = Field(default_factory=dict, description="response headers (not hop-by-hop ones)")
    body: Any = Field(None, description="a string is sent as text, anything else as JSON")


class HttpResponseOutput(BaseModel):
    status: int
    headers: dict[str, str]
    body: Any = None


def check_response(value: Any, where: str = "http-response") -> tuple[int, dict[str, str], Any]:
    """(status, headers, body) of an `http-response` output; FunctionError naming the field when it is not one."""
    if not isinstance(value, dict):
        raise FunctionError(
            f"{where}: the answer must be an object {{status, headers, body}}, got {type(value).__name__}"
        )
    status = value.get("status", 200)
    if not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599:
        raise FunctionError(f"{where}: field 'status' must be an HTTP status from 100 to 599, got {status!r}")
    headers = value.get("headers") or {}
    if not isinstance(headers, dict):
        raise FunctionError(f"{where}: field 'headers' must map names to strings, got {type(headers).__name__}")
    if len(headers) > MAX_HEADERS:
        raise FunctionError(f"{where}: field 'headers' has {len(headers)} headers; at most {MAX_HEADERS}")
    for name, text in headers.items():
        if not isinstance(name, str) or not TOKEN.match(name):
            raise FunctionError(
                f"{where}: header name {name!r} is not an HTTP token (letters, digits, !#$%&'*+-.^_`|~)"
            )
        if name.lower() in REFUSED:
            raise FunctionError(
                f"{where}: header {name!r} cannot be set by a node (hop-by-hop, or set by the server itself)"
            )
        if not isinstance(text, str) or BAD_VALUE.search(text) or len(text) > MAX_VALUE_CHARS:
            raise FunctionError(
                f"{where}: header {name!r} must be a string of at most {MAX_VALUE_CHARS} characters without "
                "control characters (no CR, LF or NUL)"
            )
    return status, dict(headers), value.get("body")


@function(name="http-response", timeout_s=10)
async def http_response(inp: HttpResponseInput) -> HttpResponseOutput:
    """The answer of a synchronous webhook: `status`, `headers` and `body`.

    With `trigger: {type: webhook, respond: sync}`, the router holding the request answers with the first
    `http-response` node that succeeds; elsewhere it is a plain output.
    """
    status, headers, body = check_response(inp.model_dump())
    return HttpResponseOutput(status=status, headers=headers, body=body)
