"""What every handler gets (`svc: Svc`): the router, the pipeline catalog, who may call (`auth`), whether
this is a broker-ingress router (ingress.py), the limits, the request body read within the size limit, and
`closing`, set when the server shuts down."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.responses import JSONResponse, Response

from broker import limits
from broker.errors import InvalidEvent
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
    broker_ingress: bool = False  # the cluster-local ingress of broker deliveries: external events need no token
    metrics_token: str | None = None  # KNFLOW_METRICS_TOKEN: GET /metrics takes it as well as a `read` token
    closing: asyncio.Event = field(default_factory=asyncio.Event)  # set at shutdown: open streams end (streams.py)

    async def read_body(self, request: Request) -> bytes:
        """The body, streamed against `max_body_bytes` (413 past it; broker.limits.read_body)."""
        return await limits.read_body(request.stream(), self.max_body_bytes, request.headers.get("content-length"))

    async def json_body(self, request: Request) -> dict[str, Any]:
        """The body as a JSON object ({} when empty), or 400 naming what is wrong with it (bad JSON, nested
        deeper than broker.limits.MAX_JSON_DEPTH, not an object)."""
        raw = await self.read_body(request)
        if not raw.strip():
            return {}
        body = limits.loads(raw, "request body")
        if not isinstance(body, dict):
            raise InvalidEvent(f"request body must be a JSON object, got {type(body).__name__}")
        return body


async def service(request: Request) -> Service:
    """async: FastAPI runs a plain `def` dependency in its thread pool, a hop per request (bench/PROFILE.md)."""
    return request.app.state.service


Svc = Annotated[Service, Depends(service)]


def accepted(request: Request, body: dict) -> Response:
    """202. Knative's broker asks for a reply (`Prefer: reply`) and takes any non-empty 2xx body that is not a
    CloudEvent for a failed delivery, so it gets an empty 202; other clients get the JSON."""
    if "reply" in request.headers.get("prefer", ""):
        return Response(status_code=202)
    return JSONResponse(body, status_code=202)
