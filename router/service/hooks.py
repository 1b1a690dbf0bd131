"""Webhooks: `POST /hooks/{pipeline}` starts a run of a pipeline with a webhook trigger; the JSON body is
the trigger's data, `Idempotency-Key` its event id.

Who may call: a pipeline whose webhook trigger has `auth:` takes only deliveries signed as it says
(router/webhook_auth.py), the delivery's id its event id; any other webhook needs a token with scope
`run`, or, with the global `KNFLOW_WEBHOOK_SECRET` set, that secret (`X-Knflow-Webhook-Secret`, or
GitHub's `X-Hub-Signature-256`). The caller is checked before the answer depends on the pipeline, and
every refusal is the same 401, so that a caller without credentials cannot tell which pipelines exist."""

from __future__ import annotations

import hashlib
import hmac
import uuid

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from broker import events, limits
from functions.blobs import refuse_blob_refs
from router.pipeline import SYNC_TIMEOUT_S, Pipeline, PipelineHeld, Trigger, WebhookAuth
from router.router import UnknownPipeline
import router.service.openapi as openapi
from router.service.auth import Unauthorized, bearer
from router.service.context import Service, Svc
from router.tokens import covers
from router.sync_reply import Reply, await_reply
from router.triggers import run_id_for
from router.webhook_auth import WebhookRefused, verify_webhook

routes = APIRouter()
log = structlog.get_logger("knflow.router")

# one answer for an unknown pipeline, a missing signature and a wrong one: it names every way to sign
REFUSED = (
    "webhook refused: no valid signature or token. A pipeline whose webhook trigger sets auth takes what its "
    "scheme names: standard-webhooks (webhook-id, webhook-timestamp, webhook-signature headers), github "
    "(X-Hub-Signature-256: sha256=HMAC of the body) or bearer (Authorization: Bearer SECRET); "
    "one without auth takes 'Authorization: Bearer TOKEN' with a token of scope 'run', or the router's webhook "
    "secret in X-Knflow-Webhook-Secret, or the body signed with it in X-Hub-Signature-256"
)


def check_signature(pipeline: str, auth: WebhookAuth, request: Request, body: bytes) -> str | None:
    """The delivery's id when it is signed as `auth` says; a 401 otherwise, its reason only in the log."""
    try:
        return verify_webhook(auth, request.headers, body)
    except WebhookRefused as exc:
        log.warning("webhook refused", pipeline=pipeline, scheme=auth.scheme, header=exc.header, reason=exc.message)
        raise Unauthorized(REFUSED, scope="run") from None


def webhook_secret_ok(secret: str | None, request: Request, body: bytes) -> bool:
    """With a webhook secret set: `X-Knflow-Webhook-Secret: SECRET`, or GitHub's `X-Hub-Signature-256`."""
    if not secret:
        return False
    given = request.headers.get("x-knflow-webhook-secret")
    if given is not None and hmac.compare_digest(given.encode("utf-8", "replace"), secret.encode()):
        return True
    signature = request.headers.get("x-hub-signature-256", "")
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return bool(signature) and hmac.compare_digest(signature.encode("utf-8", "replace"), expected.encode())


def webhook_trigger(p: Pipeline | None) -> Trigger | None:
    return next((t for t in p.triggers if t.type == "webhook"), None) if p is not None else None


async def check_caller(svc: Service, request: Request, body: bytes) -> None:
    """A webhook of a pipeline without `auth`: a `run` token, or the global webhook secret when one is set."""
    if not svc.webhook_secret:
        try:
            await svc.auth.caller(request, "run")
        except Unauthorized:
            raise Unauthorized(REFUSED, scope="run") from None  # the same 401 as a pipeline with auth
        return
    if webhook_secret_ok(svc.webhook_secret, request, body):
        return
    given = bearer(request)
    caller = await svc.auth.identify(given) if given is not None else None
    if caller is None or not covers(caller.scope, "run"):
        raise Unauthorized(REFUSED, scope="run")


@routes.post("/hooks/{name}", status_code=202, response_model=None, openapi_extra=openapi.WEBHOOK)
async def webhook(name: str, request: Request, svc: Svc) -> dict | Response:
    p = await svc.catalog.get(name)
    request.state.pipeline = p.name if p is not None else ""  # knflow_webhook_requests_total's label
    trigger = webhook_trigger(p)
    body = await svc.read_body(request)
    delivery_id = None
    if trigger is not None and trigger.auth is not None:
        delivery_id = check_signature(name, trigger.auth, request, body)
    else:
        await check_caller(svc, request, body)
    if p is None:
        raise UnknownPipeline(f"unknown pipeline '{name}'", pipeline=name)
    if trigger is None:
        raise UnknownPipeline(f"pipeline '{name}' has no webhook trigger", pipeline=name)
    if p.status != "active":
        log.info("webhook refused: pipeline not active", pipeline=name, status=p.status)
        raise PipelineHeld(name, p.status)  # 409, after the caller is checked
    data = limits.loads(body, "webhook body") if body.strip() else {}
    refuse_blob_refs(data, "webhook body")
    event_id = delivery_id or request.headers.get("idempotency-key") or uuid.uuid4().hex
    event = events.make_event(
        {"type": "dev.knflow.webhook", "source": f"/hooks/{name}", "id": event_id, "datacontenttype": events.JSON},
        data,
    )
    run = await svc.router.start_run(p, event, run_id=run_id_for(name, f"/hooks/{name}", event_id))
    if trigger.respond != "sync":
        return {"run": run["id"]}
    timeout_s = trigger.timeout_s or SYNC_TIMEOUT_S
    reply = await await_reply(svc.router.store, svc.router.blob_store(), p, run["id"], timeout_s)
    log.info("sync webhook answered", pipeline=name, run=run["id"], status=reply.status)
    return sync_response(reply, run["id"])


def sync_response(reply: Reply, run_id: str) -> Response:
    """A synchronous webhook's answer: a string body as text, anything else as JSON; `Knflow-Run` names the run."""
    headers = {**reply.headers, "knflow-run": run_id}
    if isinstance(reply.body, str):
        media = next((v for k, v in headers.items() if k.lower() == "content-type"), "text/plain; charset=utf-8")
        return Response(reply.body, status_code=reply.status, headers=headers, media_type=media)
    return JSONResponse(reply.body, status_code=reply.status, headers=headers)
