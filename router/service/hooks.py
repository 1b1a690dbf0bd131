"""Webhooks: `POST /hooks/{pipeline}` starts a run of a pipeline with a webhook trigger; the JSON body is
the trigger's data, `Idempotency-Key` its event id. A trigger with `auth` takes only deliveries signed as it
says (router/webhook_auth.py), the delivery's id its event id. Without `auth`, with a webhook secret set,
the request must carry it. Every refusal is the same 401, so a caller cannot tell which pipelines exist."""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid

import structlog
from fastapi import APIRouter, Request

from broker import events
from broker.errors import InvalidEvent
from router.pipeline import Trigger, WebhookAuth
from router.router import UnknownPipeline
from router.service.context import Svc
from router.service.errors import Unauthorized
from router.triggers import run_id_for
from router.webhook_auth import WebhookRefused, verify_webhook

routes = APIRouter()
log = structlog.get_logger("knflow.router")

# one answer for an unknown pipeline, a missing signature and a wrong one: it names every way to sign
REFUSED = (
    "webhook refused: no valid signature. A pipeline whose webhook trigger sets auth takes what its scheme "
    "names: standard-webhooks (webhook-id, webhook-timestamp, webhook-signature headers), github "
    "(X-Hub-Signature-256: sha256=HMAC of the body) or bearer (Authorization: Bearer SECRET); "
    "one without auth takes the router's webhook secret in X-Knflow-Webhook-Secret, "
    "or the body signed with it in X-Hub-Signature-256"
)


def check_signature(pipeline: str, auth: WebhookAuth, request: Request, body: bytes) -> str | None:
    """The delivery's id when it is signed as `auth` says; a 401 otherwise, its reason only in the log."""
    try:
        return verify_webhook(auth, request.headers, body)
    except WebhookRefused as exc:
        log.warning("webhook refused", pipeline=pipeline, scheme=auth.scheme, header=exc.header, reason=exc.message)
        raise Unauthorized(REFUSED) from None


def check_webhook_secret(secret: str | None, request: Request, body: bytes) -> None:
    """With a webhook secret set: `X-Knflow-Webhook-Secret: SECRET`, or GitHub's `X-Hub-Signature-256`."""
    if not secret:
        return
    given = request.headers.get("x-knflow-webhook-secret")
    if given is not None and hmac.compare_digest(given.encode("utf-8", "replace"), secret.encode()):
        return
    signature = request.headers.get("x-hub-signature-256", "")
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    if signature and hmac.compare_digest(signature.encode("utf-8", "replace"), expected.encode()):
        return
    raise Unauthorized(REFUSED)


@routes.post("/hooks/{name}", status_code=202)
async def webhook(name: str, request: Request, svc: Svc) -> dict:
    p = await svc.catalog.get(name)
    trigger: Trigger | None = next((t for t in p.triggers if t.type == "webhook"), None) if p else None
    body = await svc.read_body(request)
    delivery_id = None
    if trigger is not None and trigger.auth is not None:
        delivery_id = check_signature(name, trigger.auth, request, body)
    else:
        check_webhook_secret(svc.webhook_secret, request, body)
    if p is None:
        raise UnknownPipeline(f"unknown pipeline '{name}'", pipeline=name)
    if trigger is None:
        raise UnknownPipeline(f"pipeline '{name}' has no webhook trigger", pipeline=name)
    try:
        data = json.loads(body) if body.strip() else {}
    except json.JSONDecodeError as exc:
        raise InvalidEvent(f"webhook body is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    event_id = delivery_id or request.headers.get("idempotency-key") or uuid.uuid4().hex
    event = events.make_event(
        {"type": "dev.knflow.webhook", "source": f"/hooks/{name}", "id": event_id, "datacontenttype": events.JSON},
        data,
    )
    run = await svc.router.start_run(p, event, run_id=run_id_for(name, f"/hooks/{name}", event_id))
    return {"run": run["id"]}
