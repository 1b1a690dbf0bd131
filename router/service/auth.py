"""Who is calling: `Authorization: Bearer TOKEN`, checked against the bootstrap admin token
(`KNFLOW_ADMIN_TOKEN`, compared in constant time) and the tokens in the run store (by SHA-256).

A handler names the scope it needs with a dependency (`caller: Reader`, `Runner`, `Operator`, `Admin`),
or calls `Auth.require()` when the scope depends on the request (a node result on `POST /events` has its
own check). No token, or one the router does not know (or that is revoked): 401; a token whose scope does
not hold the one needed: 403; both `{"error": ..., "scope": NEEDED}`.

Lookups are cached per token hash for `cache_ttl_s` (5 s), so that a busy client costs one store read per
five seconds; a token revoked through another router is refused within that time, one revoked through
this router at once. An open router (`--insecure`, or `knflow dev` on loopback) lets every request in.
"""

from __future__ import annotations

import hmac
import time
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request

from broker.errors import KnflowError
from router.store.base import RunStore
from router.tokens import BOOTSTRAP, TokenRecord, covers, token_hash

CACHE_TTL_S = 5.0
CACHE_MAX_ENTRIES = 10_000


class Unauthorized(KnflowError):
    """A request without credentials the router accepts (401)."""


class Forbidden(KnflowError):
    """A token whose scope does not hold the one the route needs (403)."""


@dataclass(frozen=True)
class Caller:
    name: str | None  # the token's name; None on an open router without a token
    scope: str

    @property
    def identified(self) -> bool:
        return self.name is not None


ANONYMOUS = Caller(None, "admin")


class Auth:
    def __init__(
        self,
        store: RunStore,
        admin_token: str | None,
        open_api: bool = False,
        cache_ttl_s: float = CACHE_TTL_S,
    ) -> None:
        self.store = store
        self._admin = admin_token.encode() if admin_token else None
        self.open_api = open_api
        self.cache_ttl_s = cache_ttl_s
        self._cache: dict[str, tuple[float, TokenRecord | None]] = {}

    async def caller(self, request: Request, need: str) -> Caller:
        """The caller of `request` if its token holds scope `need`; Unauthorized or Forbidden if not."""
        given = bearer(request)
        found = await self.identify(given) if given is not None else None
        if found is None:
            if self.open_api:
                return ANONYMOUS
            if given is None:
                raise Unauthorized(
                    f"this route needs a token with scope '{need}': send the header 'Authorization: Bearer TOKEN'",
                    scope=need,
                )
            raise Unauthorized("the bearer token is not valid (unknown or revoked)", scope=need)
        if not covers(found.scope, need):
            raise Forbidden(
                f"token '{found.name}' has scope '{found.scope}'; this route needs scope '{need}'", scope=need
            )
        return found

    async def identify(self, token: str) -> Caller | None:
        if self._admin is not None and hmac.compare_digest(token.encode(), self._admin):
            return Caller(BOOTSTRAP, "admin")
        record = await self._lookup(token_hash(token))
        if record is None or record["revoked_at"] is not None:
            return None
        return Caller(record["name"], record["scope"])

    async def _lookup(self, digest: str) -> TokenRecord | None:
        now = time.monotonic()
        hit = self._cache.get(digest)
        if hit is not None and hit[0] > now:
            return hit[1]
        record = await self.store.get_token(digest)
        if len(self._cache) >= CACHE_MAX_ENTRIES:  # unknown tokens sent in bulk cannot grow it without bound
            self._cache.clear()
        self._cache[digest] = (now + self.cache_ttl_s, record)
        return record

    def forget(self) -> None:
        """Drop the cache (a token was created or revoked through this router)."""
        self._cache.clear()


def bearer(request: Request) -> str | None:
    """The token of `Authorization: Bearer TOKEN`, or None without one."""
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def _auth(request: Request) -> Auth:
    return request.app.state.service.auth


def needs(scope: str) -> Any:
    """A FastAPI dependency: the caller, if its token holds `scope`."""

    async def dependency(request: Request) -> Caller:
        return await _auth(request).caller(request, scope)

    dependency.__name__ = f"needs_{scope}"
    return Depends(dependency)


Reader = Annotated[Caller, needs("read")]
Runner = Annotated[Caller, needs("run")]
Operator = Annotated[Caller, needs("operate")]
Admin = Annotated[Caller, needs("admin")]
