"""Webhooks: `POST /hooks/{pipeline}` starts a run of a pipeline with a webhook trigger; the JSON body is
the trigger's data, `Idempotency-Key` its event id.

Who may call: a pipeline whose webhook trigger has `auth:` checks the sender's signature
(`verify_signature`); any other webhook needs a token with scope `run`, or, with the global
`KNFLOW_WEBHOOK_SECRET` set, that secret (`X-Knflow-Webhook-Secret`, or GitHub's `X-Hub-Signature-256`).
The caller is checked before the answer depends on the pipeline, so that a caller without credentials
gets 401 whether the pipeline exists or not."""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from typing import Any

from fastapi import APIRouter, Request

from broker import events
from broker.errors import InvalidEvent
from router.pipeline import Pipeline, Trigger
from router.router import UnknownPipeline
from router.service.auth import Unauthorized, bearer
from router.service.context import Service, Svc
from router.tokens import covers
from router.triggers import run_id_for

routes = APIRouter()


def webhook_secret_ok(secret: str | None, request: Request, body: bytes) -> bool:
    """With a webhook secret set: `X-Knflow-Webhook-Secret: SECRET`, or GitHub's `X-Hub-Signature-256`."""
    if not secret:
        return False
    given = request.headers.get("x-knflow-webhook-secret")
    if given is not None and hmac.compare_digest(given.encode(), secret.encode()):
        return True
    signature = request.headers.get("x-hub-signature-256", "")
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return bool(signature) and hmac.compare_digest(signature.encode(), expected.encode())


def webhook_trigger(p: Pipeline | None) -> Trigger | None:
    return next((t for t in p.triggers if t.type == "webhook"), None) if p is not None else None


def verify_signature(auth: Any, request: Request, body: bytes) -> None:
    """The check of a trigger's own `auth:` (signed webhooks). Raises Unauthorized when it fails."""
    raise Unauthorized("webhook refused: this pipeline's trigger.auth is not supported by this router")


async def check_caller(svc: Service, request: Request, body: bytes) -> None:
    """A webhook of a pipeline without `auth`: a `run` token, or the global webhook secret when one is set."""
    if not svc.webhook_secret:
        await svc.auth.caller(request, "run")
        return
    if webhook_secret_ok(svc.webhook_secret, request, body):
        return
    given = bearer(request)
    caller = await svc.auth.identify(given) if given is not None else None
    if caller is None or not covers(caller.scope, "run"):
        raise Unauthorized(
            "webhook refused: send 'Authorization: Bearer TOKEN' with a token of scope 'run', the secret in "
            "X-Knflow-Webhook-Secret, or sign the body in X-Hub-Signature-256 (sha256 HMAC)",
            scope="run",
        )


@routes.post("/hooks/{name}", status_code=202)
async def webhook(name: str, request: Request, svc: Svc) -> dict:
    p = await svc.catalog.get(name)
    trigger = webhook_trigger(p)
    body = await svc.read_body(request)
    auth = getattr(trigger, "auth", None)  # trigger.auth: signed webhooks
    if auth is not None:
        verify_signature(auth, request, body)
    else:
        await check_caller(svc, request, body)
    if p is None:
        raise UnknownPipeline(f"unknown pipeline '{name}'", pipeline=name)
    if trigger is None:
        raise UnknownPipeline(f"pipeline '{name}' has no webhook trigger", pipeline=name)
    try:
        data = json.loads(body) if body.strip() else {}
    except json.JSONDecodeError as exc:
        raise InvalidEvent(f"webhook body is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    key = request.headers.get("idempotency-key")
    event_id = key or uuid.uuid4().hex
    trigger_event = events.make_event(
        {"type": "dev.knflow.webhook", "source": f"/hooks/{name}", "id": event_id, "datacontenttype": events.JSON},
        data,
    )
    run = await svc.router.start_run(p, trigger_event, run_id=run_id_for(name, f"/hooks/{name}", event_id))
    return {"run": run["id"]}
