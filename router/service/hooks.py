"""Webhooks: `POST /hooks/{pipeline}` starts a run of a pipeline with a webhook trigger; the JSON body is
the trigger's data, `Idempotency-Key` its event id. With a webhook secret set, the request must carry it."""

from __future__ import annotations

import hashlib
import hmac
import uuid

from fastapi import APIRouter, Request

from broker import events, limits
from functions.blobs import refuse_blob_refs
from router.router import UnknownPipeline
from router.service.context import Svc
from router.service.errors import Unauthorized
from router.triggers import has_trigger, run_id_for

routes = APIRouter()


def check_webhook_secret(secret: str | None, request: Request, body: bytes) -> None:
    """With a webhook secret set: `X-Knflow-Webhook-Secret: SECRET`, or GitHub's `X-Hub-Signature-256`."""
    if not secret:
        return
    given = request.headers.get("x-knflow-webhook-secret")
    if given is not None and hmac.compare_digest(given, secret):
        return
    signature = request.headers.get("x-hub-signature-256", "")
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    if signature and hmac.compare_digest(signature, expected):
        return
    raise Unauthorized(
        "webhook refused: send the secret in X-Knflow-Webhook-Secret, "
        "or sign the body in X-Hub-Signature-256 (sha256 HMAC)"
    )


@routes.post("/hooks/{name}", status_code=202)
async def webhook(name: str, request: Request, svc: Svc) -> dict:
    p = await svc.catalog.get(name)
    if p is None:
        raise UnknownPipeline(f"unknown pipeline '{name}'", pipeline=name)
    if not has_trigger(p, "webhook"):
        raise UnknownPipeline(f"pipeline '{name}' has no webhook trigger", pipeline=name)
    body = await svc.read_body(request)
    check_webhook_secret(svc.webhook_secret, request, body)
    data = limits.loads(body, "webhook body") if body.strip() else {}
    refuse_blob_refs(data, "webhook body")
    key = request.headers.get("idempotency-key")
    event_id = key or uuid.uuid4().hex
    trigger = events.make_event(
        {"type": "dev.knflow.webhook", "source": f"/hooks/{name}", "id": event_id, "datacontenttype": events.JSON},
        data,
    )
    run = await svc.router.start_run(p, trigger, run_id=run_id_for(name, f"/hooks/{name}", event_id))
    return {"run": run["id"]}
