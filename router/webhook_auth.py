"""Signed webhooks: a delivery's headers and raw body checked against its pipeline's `trigger.auth`. Pure.

The secret is in the router's environment variable `auth.secret_env`; several, separated by whitespace or
commas, while a secret is rotated (any one of them verifies; a GitHub or bearer secret with spaces in it
verifies as a whole too). The schemes:

- `standard-webhooks` (https://www.standardwebhooks.com): `webhook-id`, `webhook-timestamp` (Unix seconds,
  within TOLERANCE_S of now either way) and `webhook-signature`: `v1,BASE64` signatures separated by spaces,
  each an HMAC-SHA256 of `{id}.{timestamp}.{body}` under a key `whsec_BASE64`. The id is the delivery's:
  a redelivery (same id, same body, signed again) finds the run of the first one.
- `github`: `X-Hub-Signature-256: sha256=HEX`, an HMAC-SHA256 of the body under the secret;
  `X-GitHub-Delivery`, when sent, is the delivery's id (GitHub keeps it on a redelivery).
- `bearer`: `Authorization: Bearer SECRET`.

Every comparison is in constant time, and on the bytes as they arrived, before anything parses them.
A refusal says which header is wrong and how; it is for the router's log, not for the caller (who must not
learn from it whether the pipeline exists).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import time
from collections.abc import Mapping
from functools import lru_cache

from broker.errors import KnflowError
from router.pipeline import WebhookAuth

TOLERANCE_S = 300  # Standard Webhooks: a timestamp further than this from now is refused
MAX_ID_CHARS = 256  # the delivery id becomes the run's idempotency key
MAX_SIGNATURES = 32  # `webhook-signature` entries looked at
SECRET_PREFIX = "whsec_"
_SEPARATORS = re.compile(r"[\s,]+")


class WebhookRefused(KnflowError):
    """A delivery whose signature does not verify; `header` names the header at fault."""

    def __init__(self, message: str, *, scheme: str, header: str | None = None) -> None:
        super().__init__(message, scheme=scheme, header=header)
        self.scheme, self.header = scheme, header


def verify_webhook(
    auth: WebhookAuth,
    headers: Mapping[str, str],
    body: bytes,
    *,
    environ: Mapping[str, str] | None = None,
    now_s: float | None = None,
) -> str | None:
    """The delivery's id (Standard Webhooks' `webhook-id`, GitHub's `X-GitHub-Delivery`; None when it has
    none) when `body` is signed as `auth` says; raises WebhookRefused otherwise."""
    raw = (os.environ if environ is None else environ).get(auth.secret_env, "")
    secrets = _secrets(raw)
    if not secrets:
        raise WebhookRefused(
            f"the router's environment has no secret in {auth.secret_env} (trigger.auth.secret_env): "
            "every delivery is refused until it is set",
            scheme=auth.scheme,
        )
    h = {k.lower(): v for k, v in headers.items()}
    if auth.scheme == "standard-webhooks":
        return _standard(_keys(raw, auth.secret_env), h, body, time.time() if now_s is None else now_s)
    if auth.scheme == "github":
        _github(secrets, h, body)
        return _delivery_id(h.get("x-github-delivery"), "X-GitHub-Delivery", auth.scheme)
    if auth.scheme == "bearer":
        _bearer(secrets, h)
        return None
    raise WebhookRefused(f"unknown webhook auth scheme {auth.scheme!r}", scheme=auth.scheme)


def sign_standard(secret: str, msg_id: str, timestamp_s: int, body: bytes) -> str:
    """The `webhook-signature` value a Standard Webhooks sender puts on `body` (for tests and senders)."""
    mac = hmac.new(_key(secret), f"{msg_id}.{timestamp_s}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def sign_github(secret: str, body: bytes) -> str:
    """The `X-Hub-Signature-256` value GitHub puts on `body`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@lru_cache(maxsize=64)
def _secrets(raw: str) -> tuple[str, ...]:
    """The secrets in the variable: each part between whitespace and commas, then (for a GitHub or bearer
    secret that has spaces in it, such as GitHub's example "It's a Secret to Everybody") the whole value."""
    parts = tuple(s for s in _SEPARATORS.split(raw) if s)
    whole = raw.strip()
    return (*parts, whole) if len(parts) > 1 else parts


@lru_cache(maxsize=64)
def _keys(raw: str, env: str) -> tuple[bytes, ...]:
    try:
        return tuple(_key(s) for s in _SEPARATORS.split(raw) if s)
    except (binascii.Error, ValueError):
        raise WebhookRefused(
            f"a secret in {env} is not a Standard Webhooks key ('whsec_' and base64)", scheme="standard-webhooks"
        ) from None


def _key(secret: str) -> bytes:
    encoded = secret.removeprefix(SECRET_PREFIX)
    key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    if not key:
        raise ValueError("empty key")
    return key


def _standard(keys: tuple[bytes, ...], h: dict[str, str], body: bytes, now_s: float) -> str:
    scheme = "standard-webhooks"
    missing = [name for name in ("webhook-id", "webhook-timestamp", "webhook-signature") if not h.get(name)]
    if missing:
        raise WebhookRefused(
            f"no {', '.join(missing)} header: a Standard Webhooks delivery carries webhook-id, "
            "webhook-timestamp and webhook-signature",
            scheme=scheme,
            header=missing[0],
        )
    msg_id = _delivery_id(h["webhook-id"], "webhook-id", scheme) or ""
    stamp = h["webhook-timestamp"].strip()
    if not (stamp.isascii() and stamp.isdigit() and len(stamp) <= 12):
        raise WebhookRefused(
            "webhook-timestamp must be the sending time in Unix seconds", scheme=scheme, header="webhook-timestamp"
        )
    age_s = now_s - int(stamp)
    if abs(age_s) > TOLERANCE_S:
        when = f"{age_s:.0f} s old" if age_s > 0 else f"{-age_s:.0f} s in the future"
        raise WebhookRefused(
            f"webhook-timestamp is {when}; the tolerance is {TOLERANCE_S} s (sign each delivery when sending it)",
            scheme=scheme,
            header="webhook-timestamp",
        )
    given = []
    for entry in h["webhook-signature"].split()[:MAX_SIGNATURES]:
        version, _, value = entry.partition(",")
        if version == "v1":
            try:
                given.append(base64.b64decode(value, validate=True))
            except (binascii.Error, ValueError):
                continue
    signed = f"{msg_id}.{stamp}.".encode() + body
    for key in keys:
        expected = hmac.new(key, signed, hashlib.sha256).digest()
        if any(hmac.compare_digest(expected, g) for g in given):
            return msg_id
    raise WebhookRefused(
        "no signature in webhook-signature matches: expected v1,BASE64(HMAC-SHA256 of "
        "'{webhook-id}.{webhook-timestamp}.{body}') under the pipeline's secret",
        scheme=scheme,
        header="webhook-signature",
    )


def _github(secrets: tuple[str, ...], h: dict[str, str], body: bytes) -> None:
    given = h.get("x-hub-signature-256", "").strip()
    if not given.startswith("sha256="):
        raise WebhookRefused(
            "no X-Hub-Signature-256 header: expected sha256=HEX(HMAC-SHA256 of the body)",
            scheme="github",
            header="X-Hub-Signature-256",
        )
    given_b = given.lower().encode("utf-8", "replace")
    if not any(hmac.compare_digest(sign_github(s, body).encode(), given_b) for s in secrets):
        raise WebhookRefused(
            "X-Hub-Signature-256 does not match: expected sha256=HEX(HMAC-SHA256 of the body as sent)",
            scheme="github",
            header="X-Hub-Signature-256",
        )


def _bearer(secrets: tuple[str, ...], h: dict[str, str]) -> None:
    kind, _, token = h.get("authorization", "").strip().partition(" ")
    if kind.lower() != "bearer" or not token.strip():
        raise WebhookRefused("no Authorization: Bearer SECRET header", scheme="bearer", header="Authorization")
    token_b = token.strip().encode("utf-8", "replace")
    if not any(hmac.compare_digest(s.encode(), token_b) for s in secrets):
        raise WebhookRefused("the Authorization: Bearer secret does not match", scheme="bearer", header="Authorization")


def _delivery_id(value: str | None, header: str, scheme: str) -> str | None:
    if value is None or not value.strip():
        return None
    value = value.strip()
    if len(value) > MAX_ID_CHARS or not value.isprintable():
        raise WebhookRefused(
            f"{header} must be printable and at most {MAX_ID_CHARS} characters", scheme=scheme, header=header
        )
    return value
