"""The router as an HTTP service (`knflow serve router`): thin handlers over the router and the store.

    POST /events            any CloudEvent: node results advance runs; other types start the runs of the
                            pipelines whose trigger matches them. 202 {"id", "runs"}
    POST /hooks/{pipeline}  webhook: the JSON body is the trigger's data. 202 {"run"}
    POST /dead-letter       invokes whose retries ran out: the node fails with the reason
    POST /runs/{id}/replay  redrive in place ({"from": NODE}) or re-run ({"new_run": true}); /runs/{id}/cancel
    POST /replay            bulk: {"pipeline", "status", "since": "2h", "new_run"}
    GET  /runs, /runs/{id}; GET|PUT|DELETE /pipelines/{name}; GET /pipelines; GET /healthz

Errors are `KnflowError`s mapped to their `http_status` here, once. A 202 is a promise: it is sent only
after the run (with its trigger event) is stored.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from typing import Any

import structlog
import yaml
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from broker import codec, events
from broker.errors import InvalidEvent, KnflowError, PayloadTooLarge
from router.catalog import StorePipelines
from router.core import Router, UnknownPipeline
from router.loader import parse
from router.replay import parse_duration_s
from router.runs import record
from router.store.base import RunNotFound
from router.triggers import has_trigger, pipelines_for, run_id_for

log = structlog.get_logger("knflow.router")
MAX_BODY_BYTES = 1024 * 1024  # NATS's default max_payload


def accepted(request: Request, body: dict) -> Response:
    """202. Knative's broker asks for a reply (`Prefer: reply`) and takes any non-empty 2xx body that is not a
    CloudEvent for a failed delivery, so it gets an empty 202; other clients get the JSON."""
    if "reply" in request.headers.get("prefer", ""):
        return Response(status_code=202)
    return JSONResponse(body, status_code=202)


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
        "webhook refused: send the secret in X-Knflow-Webhook-Secret, or sign the body in X-Hub-Signature-256 (sha256 HMAC)"
    )


class Unauthorized(KnflowError):
    http_status = 401


def create_app(
    router: Router, catalog: StorePipelines, max_body_bytes: int = MAX_BODY_BYTES, webhook_secret: str | None = None
) -> FastAPI:
    app = FastAPI(title="knflow router", docs_url=None, redoc_url=None)

    @app.exception_handler(KnflowError)
    async def knflow_error(request: Request, exc: KnflowError) -> JSONResponse:
        body: dict[str, Any] = {"error": exc.message}
        problems = getattr(exc, "problems", None)
        if problems:
            body["problems"] = [str(p) for p in problems]
        return JSONResponse(body, status_code=exc.http_status)

    async def read_body(request: Request) -> bytes:
        """The body, or 413 past `max_body_bytes`. A body up to 16 times the limit is read (and dropped)
        before answering, so that the client, still sending, reads the 413 instead of a broken pipe."""
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size <= max_body_bytes:
                chunks.append(chunk)
            elif size > 16 * max_body_bytes:
                break
        if size > max_body_bytes:
            declared = request.headers.get("content-length") or size
            raise PayloadTooLarge(f"request body is {int(declared):,} bytes; the limit is {max_body_bytes:,} bytes")
        return b"".join(chunks)

    @app.get("/healthz")
    async def healthz() -> dict:
        return {"status": "ok"}

    @app.post("/events", status_code=202)
    async def post_event(request: Request) -> Response:
        event = codec.decode(request.headers, await read_body(request), max_body_bytes)
        if event.get_type() in events.RESULT_TYPES:
            await router.on_result(event)
            return accepted(request, {"id": event.get_id(), "runs": [str(event.get_extension("knflowrun"))]})
        if event.get_type() == events.INVOKE:
            raise InvalidEvent("the router does not take dev.knflow.invoke events; send them to the function's service")
        matched = pipelines_for(await catalog.all(), events.event_to_dict(event))
        runs = await router.ingest(event, matched)
        if not matched:
            log.info(
                "event matched no pipeline trigger",
                event_id=event.get_id(),
                type=event.get_type(),
                source=event.get_source(),
            )
        return accepted(request, {"id": event.get_id(), "runs": runs})

    @app.post("/events/replay", status_code=202)
    async def replay_events(request: Request) -> dict:
        body = await json_body(request)
        if not body.get("since"):
            raise InvalidEvent('event replay needs \'since\', e.g. {"since": "2h"}')
        report = await router.replay_events(await catalog.all(), parse_duration_s(body["since"]), body.get("type"))
        return {"events": report}

    @app.post("/hooks/{name}", status_code=202)
    async def webhook(name: str, request: Request) -> dict:
        p = await catalog.get(name)
        if p is None:
            raise UnknownPipeline(f"unknown pipeline '{name}'")
        if not has_trigger(p, "webhook"):
            raise UnknownPipeline(f"pipeline '{name}' has no webhook trigger")
        body = await read_body(request)
        check_webhook_secret(webhook_secret, request, body)
        try:
            data = json.loads(body) if body.strip() else {}
        except json.JSONDecodeError as exc:
            raise InvalidEvent(f"webhook body is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
        key = request.headers.get("idempotency-key")
        event_id = key or uuid.uuid4().hex
        trigger = events.make_event(
            {"type": "dev.knflow.webhook", "source": f"/hooks/{name}", "id": event_id, "datacontenttype": events.JSON},
            data,
        )
        run = await router.start_run(p, trigger, run_id=run_id_for(name, f"/hooks/{name}", event_id))
        return {"run": run["id"]}

    @app.post("/dead-letter", status_code=202)
    async def dead_letter(request: Request) -> Response:
        event = codec.decode(request.headers, await read_body(request), max_body_bytes)
        await router.on_dead_letter(event)
        return accepted(request, {"id": event.get_id(), "runs": [str(event.get_extension("knflowrun"))]})

    @app.get("/runs")
    async def list_runs(pipeline: str | None = None, status: str | None = None, limit: int = 50) -> list[dict]:
        return [
            record(r)
            for r in await router.store.list_runs(pipeline=pipeline, status=status, limit=max(1, min(limit, 1000)))
        ]

    @app.get("/runs/{run_id}")
    async def get_run(run_id: str) -> dict:
        run = await router.store.get_run(run_id)
        if run is None:
            raise RunNotFound(f"run '{run_id}' not found")
        return record(run)

    @app.post("/runs/{run_id}/replay", status_code=202)
    async def replay_run(run_id: str, request: Request) -> dict:
        body = await json_body(request)
        if body.get("new_run"):
            run = await router.rerun(run_id, body.get("by"))
        else:
            run = await router.redrive(run_id, body.get("from"), body.get("by"))
        return record(run)

    @app.post("/runs/{run_id}/cancel")
    async def cancel_run(run_id: str, request: Request) -> dict:
        body = await json_body(request)
        return record(await router.cancel(run_id, body.get("by")))

    @app.post("/replay", status_code=202)
    async def replay_many(request: Request) -> dict:
        body = await json_body(request)
        since = body.get("since")
        report = await router.replay_many(
            body.get("pipeline"),
            body.get("status", "failed"),
            parse_duration_s(since) if since else None,
            bool(body.get("new_run")),
            body.get("by"),
            int(body.get("limit", 1000)),
        )
        return {"runs": report}

    async def json_body(request: Request) -> dict:
        raw = await read_body(request)
        if not raw.strip():
            return {}
        try:
            body = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise InvalidEvent(f"request body is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
        if not isinstance(body, dict):
            raise InvalidEvent(f"request body must be a JSON object, got {type(body).__name__}")
        return body

    @app.get("/pipelines")
    async def list_pipelines() -> list[dict]:
        return [p.to_dict() for p in await catalog.all()]

    @app.get("/pipelines/{name}")
    async def get_pipeline(name: str) -> dict:
        p = await catalog.get(name)
        if p is None:
            raise UnknownPipeline(f"unknown pipeline '{name}'")
        return p.to_dict()

    @app.put("/pipelines/{name}")
    async def put_pipeline(name: str, request: Request) -> dict:
        body = await read_body(request)
        try:
            doc = yaml.safe_load(body) if body.strip() else None
        except yaml.YAMLError as exc:
            raise InvalidEvent(f"pipeline body is neither JSON nor YAML: {exc}") from None
        p = parse(doc, f"PUT /pipelines/{name}")
        if p.name != name:
            raise InvalidEvent(f"the URL names pipeline '{name}' but metadata.name is '{p.name}'")
        await catalog.put(p)
        return {"pipeline": name, "nodes": len(p.nodes)}

    @app.delete("/pipelines/{name}")
    async def delete_pipeline(name: str) -> dict:
        if not await catalog.delete(name):
            raise UnknownPipeline(f"unknown pipeline '{name}'")
        return {"deleted": name}

    return app
