"""The pipeline catalog: `GET /pipelines`, and `GET|PUT|DELETE /pipelines/{name}` (PUT takes YAML or JSON);
`GET /pipelines/{name}/details` (its YAML, triggers and input fields: router/pipeline_view.py) and
`POST /pipelines/{name}/runs` (start a run with the body as the trigger's data, as the dashboard's run form
does). Reading needs scope `read`, starting a run `run`, changing `admin`."""

from __future__ import annotations

from fastapi import APIRouter, Request

import uuid
from datetime import UTC, datetime

from broker import events
from broker.errors import InvalidEvent
from functions.blobs import refuse_blob_refs
from router.loader import parse
from router.pipeline_yaml import parse_yaml
from router.router import UnknownPipeline
import router.service.openapi as openapi
from router.pipeline import Pipeline
from router.pipeline_view import input_fields, trigger_views
from router.service.auth import Admin, Reader, Runner
from router.service.context import Service, Svc
from router.triggers import run_id_for

routes = APIRouter()
MANUAL = "dev.knflow.manual"  # the type of a run's trigger event when a user started it (the run form)


@routes.get("/pipelines")
async def list_pipelines(svc: Svc, caller: Reader) -> list[dict]:
    return [p.to_dict() for p in await svc.catalog.all()]


async def known(svc: Service, name: str) -> Pipeline:
    p = await svc.catalog.get(name)
    if p is None:
        raise UnknownPipeline(f"unknown pipeline '{name}'", pipeline=name)
    return p


@routes.get("/pipelines/{name}")
async def get_pipeline(name: str, svc: Svc, caller: Reader) -> dict:
    return (await known(svc, name)).to_dict()


@routes.get("/pipelines/{name}/details")
async def pipeline_details(name: str, svc: Svc, caller: Reader) -> dict:
    """The pipeline, its YAML, each trigger (a webhook's `path`, a cron trigger's `next_at`) and the fields of
    the trigger's data its templates read (`inputs`)."""
    p = await known(svc, name)
    return {
        "pipeline": p.to_dict(),
        "yaml": p.to_yaml(),
        "triggers": trigger_views(p, datetime.now(UTC)),
        "inputs": input_fields(p),
    }


@routes.post("/pipelines/{name}/runs", status_code=202, openapi_extra=openapi.RUN_DATA)
async def start_run(name: str, request: Request, svc: Svc, caller: Runner) -> dict:
    """A run of the pipeline, whatever its triggers: the JSON object in the body is the data of its trigger event
    (`dev.knflow.manual`), `Idempotency-Key` its event id."""
    p = await known(svc, name)
    data = await svc.json_body(request)  # a JSON object ({} when empty), as every JSON route takes
    refuse_blob_refs(data, "request body")
    source = f"/pipelines/{name}/runs"
    event_id = request.headers.get("idempotency-key") or uuid.uuid4().hex
    event = events.make_event({"type": MANUAL, "source": source, "id": event_id, "datacontenttype": events.JSON}, data)
    run = await svc.router.start_run(p, event, run_id=run_id_for(name, source, event_id))
    return {"run": run["id"]}


@routes.put("/pipelines/{name}", openapi_extra=openapi.PIPELINE)
async def put_pipeline(name: str, request: Request, svc: Svc, caller: Admin) -> dict:
    body = await svc.read_body(request)
    source = f"PUT /pipelines/{name}"
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidEvent(f"pipeline body is not UTF-8 text (byte {exc.start})") from None
    doc = parse_yaml(text, source)[0] if text.strip() else None  # bounded: size, depth, aliases
    if isinstance(doc, dict) and doc.get("functions"):
        raise InvalidEvent(
            "a pipeline stored through the API cannot name code: remove 'functions' (the router and the CLI "
            "import only the modules their own --functions / KNFLOW_FUNCTIONS name)",
            field="functions",
        )
    p = parse(doc, source)
    if p.name != name:
        raise InvalidEvent(f"the URL names pipeline '{name}' but metadata.name is '{p.name}'")
    await svc.catalog.put(p)
    return {"pipeline": name, "nodes": len(p.nodes)}


@routes.delete("/pipelines/{name}")
async def delete_pipeline(name: str, svc: Svc, caller: Admin) -> dict:
    if not await svc.catalog.delete(name):
        raise UnknownPipeline(f"unknown pipeline '{name}'", pipeline=name)
    return {"deleted": name}
