"""Trusted results: only the function that got an invoke can report its result (pure: no I/O).

Each invoke carries a per-invoke secret, `knflowtoken`: HMAC-SHA256 of the invoke id (`{run}:{node}:{attempt}`)
under the router's result key, base64url without padding. The function handler copies it onto its result
(`broker.events.result_event`), a dead letter is the invoke itself, so it carries it too; the router checks
it in constant time before it reads the store, and drops (logs and counts) a result without the right one.
The token a router minted is kept until its result comes back (the most recent MINTED_KEPT), so checking a
result costs no HMAC where the router that published the invoke takes its result.

The key is `KNFLOW_RESULT_KEY`, shared by every router replica; without it, the routers of one store agree on
a random key kept in the store (`RunStore.get_or_create_secret`). The secret is never stored in run
documents and never logged: the router's log lines name only whether it was missing or wrong.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections import OrderedDict

from cloudevents.core.v1.event import CloudEvent

from broker import extensions as ext
from broker.errors import KnflowError
from broker.events import Address, invoke_id

SECRET_NAME = "result_key"  # the store's name for the key it keeps when KNFLOW_RESULT_KEY is not set
MIN_KEY_CHARS = 32
MISSING, WRONG = "missing", "wrong"  # why a result was refused
MINTED_KEPT = 16384  # tokens of invokes in flight kept for their results (about 100 bytes each)


class ResultKeyInvalid(KnflowError):
    """`KNFLOW_RESULT_KEY` is too short to sign results with."""


class ResultRefused(KnflowError):
    """A result or dead letter without the `knflowtoken` of its invoke (`reason`: missing or wrong): not
    sent by the function that got the invoke."""

    def __init__(self, message: str, *, event_id: str, reason: str) -> None:
        super().__init__(message, event_id=event_id, reason=reason)
        self.event_id = event_id
        self.reason = reason


def new_key() -> str:
    """A random result key (256 bits), as a router that has none stores it."""
    return secrets.token_urlsafe(32)


class ResultKey:
    """Signs invoke ids and checks the tokens results carry back."""

    def __init__(self, key: str) -> None:
        if len(key) < MIN_KEY_CHARS:
            raise ResultKeyInvalid(
                f"KNFLOW_RESULT_KEY is {len(key)} characters long; a result key needs at least {MIN_KEY_CHARS} "
                "(e.g. `openssl rand -hex 32`), the same on every router replica"
            )
        self._mac = hmac.new(key.encode(), digestmod=hashlib.sha256)  # keyed once; each token copies it
        self._minted: OrderedDict[str, str] = OrderedDict()  # invoke id -> token, until its result is checked

    def __repr__(self) -> str:
        return "ResultKey(***)"

    def token(self, invoke_id: str) -> str:
        """The `knflowtoken` of the invoke `invoke_id`, kept for the check of its result."""
        token = self._sign(invoke_id)
        minted = self._minted
        minted[invoke_id] = token
        if len(minted) > MINTED_KEPT:
            minted.popitem(last=False)
        return token

    def _sign(self, invoke_id: str) -> str:
        mac = self._mac.copy()
        mac.update(invoke_id.encode())
        return base64.urlsafe_b64encode(mac.digest()).rstrip(b"=").decode()

    def refusal(self, event: CloudEvent, addr: Address) -> str | None:
        """None if `event` (a result or a dead letter, at `addr`) carries its invoke's token; else MISSING or WRONG."""
        given = event.get_extension(ext.TOKEN)
        if not given:
            return MISSING
        invoke = invoke_id(addr.run_id, addr.node, addr.attempt)
        expected = self._minted.pop(invoke, None) or self._sign(invoke)
        return None if hmac.compare_digest(expected.encode(), str(given).encode()) else WRONG


def refused(event: CloudEvent, reason: str, what: str) -> ResultRefused:
    """The error for a refused result (`what`: 'result' or 'dead letter'); it names the extension, not the secret."""
    said = "carries no" if reason == MISSING else "carries a wrong"
    return ResultRefused(
        f"{what} '{event.get_id()}' {said} {ext.TOKEN} (header ce-{ext.TOKEN}): only the function that received "
        "the invoke can report its result, with the token the invoke carried",
        event_id=event.get_id(),
        reason=reason,
    )
