"""What every handler gets (`svc: Svc`): the router, the pipeline catalog, who may call (`auth`) and the
limits, and the request body read within the size limit."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.responses import JSONResponse, Response

from broker.errors import InvalidEvent, PayloadTooLarge
from router.catalog import StorePipelines
from router.router import Router
from router.service.auth import Auth


@dataclass(frozen=True)
class Service:
    router: Router
    catalog: StorePipelines
    auth: Auth
    max_body_bytes: int
    webhook_secret: str | None = None

    async def read_body(self, request: Request) -> bytes:
        """The body, or 413 past `max_body_bytes`. A body up to 16 times the limit is read (and dropped)
        before answering, so that the client, still sending, reads the 413 instead of a broken pipe."""
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size <= self.max_body_bytes:
                chunks.append(chunk)
            elif size > 16 * self.max_body_bytes:
                break
        if size > self.max_body_bytes:
            declared = request.headers.get("content-length") or size
            raise PayloadTooLarge(
                f"request body is {int(declared):,} bytes; the limit is {self.max_body_bytes:,} bytes",
                size_bytes=int(declared),
                max_bytes=self.max_body_bytes,
            )
        return b"".join(chunks)

    async def json_body(self, request: Request) -> dict[str, Any]:
        """The body as a JSON object ({} when empty), or 400 naming what is wrong with it."""
        raw = await self.read_body(request)
        if not raw.strip():
            return {}
        try:
            body = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise InvalidEvent(f"request body is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
        if not isinstance(body, dict):
            raise InvalidEvent(f"request body must be a JSON object, got {type(body).__name__}")
        return body


def service(request: Request) -> Service:
    return request.app.state.service


Svc = Annotated[Service, Depends(service)]


def accepted(request: Request, body: dict) -> Response:
    """202. Knative's broker asks for a reply (`Prefer: reply`) and takes any non-empty 2xx body that is not a
    CloudEvent for a failed delivery, so it gets an empty 202; other clients get the JSON."""
    if "reply" in request.headers.get("prefer", ""):
        return Response(status_code=202)
    return JSONResponse(body, status_code=202)
