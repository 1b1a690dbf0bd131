"""API tokens: `POST /tokens` (create; the token is in this answer only), `GET /tokens` (no secrets) and
`DELETE /tokens/{name}` (revoke), which need scope `admin`; and `GET /whoami` (any token: its name and the
scopes it holds, which the dashboard reads to show only the actions the token may take)."""

from __future__ import annotations

from fastapi import APIRouter, Request

from broker.events import now_iso
import router.service.openapi as openapi
from router.service.auth import Admin, Reader
from router.service.context import Svc
from router.tokens import SCOPES, TokenNotFound, TokenView, covers, new_record, view

routes = APIRouter()


@routes.post("/tokens", status_code=201, openapi_extra=openapi.NEW_TOKEN)
async def create_token(request: Request, svc: Svc, caller: Admin) -> dict:
    body = await svc.json_body(request)
    token, record = new_record(body.get("name"), body.get("scope"), now_iso())
    await svc.auth.store.put_token(record)
    svc.auth.forget()
    return {"name": record["name"], "scope": record["scope"], "created_at": record["created_at"], "token": token}


@routes.get("/tokens", response_model=None)
async def list_tokens(svc: Svc, caller: Admin) -> list[TokenView]:
    return [view(t) for t in await svc.auth.store.list_tokens()]


@routes.delete("/tokens/{name}")
async def revoke_token(name: str, svc: Svc, caller: Admin) -> dict:
    if not await svc.auth.store.revoke_token(name, now_iso()):
        raise TokenNotFound(f"no token named '{name}'", name=name)
    svc.auth.forget()
    return {"revoked": name}


@routes.get("/whoami")
async def whoami(svc: Svc, caller: Reader) -> dict:
    """The calling token's name (null on an open router without one), its scope, every scope it holds, and
    whether this router is open (no token needed)."""
    return {
        "name": caller.name,
        "scope": caller.scope,
        "scopes": [s for s in SCOPES if covers(caller.scope, s)],
        "open": svc.auth.open_api,
    }
