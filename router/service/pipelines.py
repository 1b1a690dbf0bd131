"""The pipeline catalog: `GET /pipelines`, and `GET|PUT|DELETE /pipelines/{name}` (PUT takes YAML or JSON);
`POST /pipelines/validate` (a draft in, every problem out, with its line when it came as YAML);
`GET /pipelines/{name}/details` (its YAML, triggers and input fields: router/pipeline_view.py) and
`POST /pipelines/{name}/runs` (start a run with the body as the trigger's data, as the dashboard's run form
does); `POST /pipelines/{name}/pause|resume` (its status: a paused pipeline's triggers start no runs).
Reading and validating need scope `read`, starting a run `run`, pausing and resuming `operate`, changing
`admin`."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Any

import structlog
from fastapi import APIRouter, Request

from broker import events
from broker.errors import InvalidEvent
from functions.blobs import refuse_blob_refs
from functions.registry import REGISTRY
from router.pipeline import Pipeline, PipelineInvalid, Problem
from router.pipeline_view import input_fields, trigger_views
from router.pipeline_yaml import parse_yaml
from router.router import UnknownPipeline
import router.service.openapi as openapi
from router.service.auth import Admin, Operator, Reader, Runner
from router.service.context import Service, Svc
from router.triggers import run_id_for
from router.validation import check

routes = APIRouter()
log = structlog.get_logger("knflow.router")
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
    """The pipeline, its YAML (the text it was stored from, else generated: `yaml_source`), each trigger (a
    webhook's `path`, a cron trigger's `next_at`) and the fields of the trigger's data its templates read
    (`inputs`)."""
    p = await known(svc, name)
    stored = await svc.catalog.source(name)
    return {
        "pipeline": p.to_dict(),
        "yaml": stored if stored is not None else p.to_yaml(),
        "yaml_source": "generated" if stored is None else "stored",  # stored: the text it was PUT as, comments kept
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


NO_CODE = (
    "a pipeline stored through the API cannot name code: remove 'functions' (the router and the CLI "
    "import only the modules their own --functions / KNFLOW_FUNCTIONS name)"
)


@routes.post("/pipelines/validate", openapi_extra=openapi.PIPELINE_VALIDATE)
async def validate_pipeline(request: Request, svc: Svc, caller: Reader) -> dict[str, Any]:
    """The same validator as `knflow validate` and PUT, on a draft that is not stored: 200 either way."""
    pipeline, problems = _checked(await _text(svc, request), "draft")
    return {
        "valid": not problems,
        "pipeline": pipeline.name if pipeline is not None else None,
        "problems": [problem_doc(p, pipeline) for p in problems],
    }


@routes.put("/pipelines/{name}", openapi_extra=openapi.PIPELINE)
async def put_pipeline(name: str, request: Request, svc: Svc, caller: Admin) -> dict:
    text = await _text(svc, request)
    pipeline, problems = _checked(text, f"PUT /pipelines/{name}", code_is_an_error=True)
    if pipeline is not None and pipeline.name != name:
        raise InvalidEvent(f"the URL names pipeline '{name}' but metadata.name is '{pipeline.name}'")
    if problems or pipeline is None:
        raise PipelineInvalid(problems)
    await svc.catalog.put(pipeline, None if _is_json(text) else text)  # YAML: its text kept as written
    return {"pipeline": name, "nodes": len(pipeline.nodes)}


async def _text(svc: Service, request: Request) -> str:
    body = await svc.read_body(request)
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidEvent(f"pipeline body is not UTF-8 text (byte {exc.start})") from None


def _is_json(text: str) -> bool:
    """A JSON body (an object): stored as its document, with no source text (GET .../details regenerates YAML)."""
    return text.lstrip().startswith("{")


def _checked(text: str, source: str, *, code_is_an_error: bool = False) -> tuple[Pipeline | None, list[Problem]]:
    """The body (YAML or JSON text) as a pipeline, and every problem with it (router/validation.py `check`)."""
    try:
        doc, lines = parse_yaml(text, source) if text.strip() else (None, {})  # bounded: size, depth, aliases
    except PipelineInvalid as exc:  # YAML syntax, size or depth: the problems, with their lines
        return None, exc.problems
    names_code = isinstance(doc, dict) and bool(doc.get("functions"))
    if isinstance(doc, dict) and names_code:
        if code_is_an_error:
            raise InvalidEvent(NO_CODE, field="functions")
        doc = {k: v for k, v in doc.items() if k != "functions"}
    pipeline, problems = check(doc, source, lines, REGISTRY)
    if names_code:
        name = pipeline.name if pipeline is not None else None
        problems.insert(0, Problem(NO_CODE, source, lines.get(("functions",)), name, None, "functions"))
    return pipeline, problems


_EDGE = re.compile(r"^edges\[(\d+)\]")


def problem_doc(problem: Problem, pipeline: Pipeline | None) -> dict[str, Any]:
    """A problem as JSON, with the edge it names (index, from, to) when its field is one of an edge's."""
    doc: dict[str, Any] = {
        "message": problem.message,
        "line": problem.line,
        "node": problem.node,
        "field": problem.field,
        "text": str(problem),
    }
    edge = _EDGE.match(problem.field or "")
    if edge is not None:
        index = int(edge.group(1))
        doc["edge"] = {"index": index}
        if pipeline is not None and index < len(pipeline.edges):
            doc["edge"] |= {"from": pipeline.edges[index].source, "to": pipeline.edges[index].target}
    return doc


@routes.delete("/pipelines/{name}")
async def delete_pipeline(name: str, svc: Svc, caller: Admin) -> dict:
    if not await svc.catalog.delete(name):
        raise UnknownPipeline(f"unknown pipeline '{name}'", pipeline=name)
    return {"deleted": name}


@routes.post("/pipelines/{name}/pause")
async def pause_pipeline(name: str, request: Request, svc: Svc, caller: Operator) -> dict:
    """Pause a stored pipeline: its webhooks answer 409, its cron ticks and events are skipped (and counted).
    The body, if any, is a JSON object (nothing in it is read yet), as on every other POST route."""
    await svc.json_body(request)
    return await _set_status(svc, name, "paused")


@routes.post("/pipelines/{name}/resume")
async def resume_pipeline(name: str, request: Request, svc: Svc, caller: Operator) -> dict:
    """Make a paused pipeline (or a draft) active again: its triggers start runs."""
    await svc.json_body(request)
    return await _set_status(svc, name, "active")


async def _set_status(svc: Service, name: str, status: str) -> dict:
    p = await svc.catalog.set_status(name, status)
    if p is None:
        raise UnknownPipeline(f"unknown pipeline '{name}'", pipeline=name)
    log.info("pipeline status changed", pipeline=name, status=status)
    return {"pipeline": name, "status": p.status}
