"""API tokens: scopes, their order, and how a token is made and kept. Pure.

A token is `kf_` and 43 random URL-safe characters (`secrets.token_urlsafe(32)`, 256 bits), shown once
when it is created; the store keeps only its SHA-256 (a fast hash is enough for a random secret of this
size: there is nothing to guess). Scopes are ordered, each one holding the ones before it:
`read` (runs, pipelines, events) < `run` (start runs) < `operate` (replay, cancel, redrive) < `admin`
(pipelines, tokens).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from typing import TypedDict

from broker.errors import KnflowError

SCOPES = ("read", "run", "operate", "admin")
PREFIX = "kf_"
BOOTSTRAP = "KNFLOW_ADMIN_TOKEN"  # the name the bootstrap admin token acts under (replay/cancel history)
MIN_BOOTSTRAP_CHARS = 16
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


class TokenRecord(TypedDict):
    """A stored token: never the token, only its hash."""

    name: str
    scope: str
    hash: str
    created_at: str
    revoked_at: str | None


class TokenView(TypedDict):
    """A token as `GET /tokens` and `knflow token list` show it: no hash."""

    name: str
    scope: str
    created_at: str
    revoked: bool
    revoked_at: str | None


class InvalidToken(KnflowError):
    """A token name or scope that is not valid (400)."""


class TokenExists(KnflowError):
    """A live token has this name already (409)."""

    def __init__(self, message: str, *, name: str) -> None:
        super().__init__(message, name=name)
        self.name = name


class TokenNotFound(KnflowError):
    """No token has this name (404)."""

    def __init__(self, message: str, *, name: str) -> None:
        super().__init__(message, name=name)
        self.name = name


def covers(have: str, need: str) -> bool:
    """Whether scope `have` holds scope `need` (admin holds operate holds run holds read)."""
    return SCOPES.index(have) >= SCOPES.index(need)


def check_scope(scope: object) -> str:
    if not isinstance(scope, str) or scope not in SCOPES:
        raise InvalidToken(f"scope {scope!r} is not valid. Expected one of {', '.join(SCOPES)}", scope=str(scope))
    return scope


def check_name(name: object) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidToken(
            f"token name {name!r} is not valid. Expected 1 to 64 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit",
            name=str(name),
        )
    if name == BOOTSTRAP:
        raise InvalidToken(f"token name '{BOOTSTRAP}' is reserved for the bootstrap admin token", name=name)
    return name


def new_token() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_record(name: object, scope: object, created_at: str) -> tuple[str, TokenRecord]:
    """A new token for `name` with `scope` (both checked): (the token, to show once; the record, to store)."""
    token = new_token()
    record = TokenRecord(
        name=check_name(name), scope=check_scope(scope), hash=token_hash(token), created_at=created_at, revoked_at=None
    )
    return token, record


def view(record: TokenRecord) -> TokenView:
    return TokenView(
        name=record["name"],
        scope=record["scope"],
        created_at=record["created_at"],
        revoked=record["revoked_at"] is not None,
        revoked_at=record["revoked_at"],
    )
