"""Tokens for tests that call a router over HTTP, as a user does: the routers the tests start get a
bootstrap admin token (`ROUTER_ENV`), and `create_token` makes a token of any scope through the real API."""

from __future__ import annotations

import json
import secrets
import urllib.request

ADMIN_TOKEN = "kf_test-admin-" + secrets.token_urlsafe(24)  # this test session's; never a fixed secret
ROUTER_ENV = {"KNFLOW_ADMIN_TOKEN": ADMIN_TOKEN}
CLI_ENV = {"KNFLOW_TOKEN": ADMIN_TOKEN}  # what `knflow ... --router URL` sends


def bearer(token: str = ADMIN_TOKEN) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def create_token(router_url: str, name: str, scope: str) -> str:
    """A new token through `POST /tokens`, made with the bootstrap admin token."""
    req = urllib.request.Request(
        f"{router_url}/tokens",
        data=json.dumps({"name": name, "scope": scope}).encode(),
        method="POST",
        headers={**bearer(), "content-type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())["token"]
