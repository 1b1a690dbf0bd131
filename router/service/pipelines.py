"""The pipeline catalog: `GET /pipelines`, and `GET|PUT|DELETE /pipelines/{name}` (PUT takes YAML or JSON), and
`POST /pipelines/validate` (a draft in, every problem out, with its line when it came as YAML). Reading and
validating need scope `read`, changing `admin`."""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Request

from broker.errors import InvalidEvent
from functions.registry import REGISTRY
from router.pipeline import Pipeline, PipelineInvalid, Problem
from router.pipeline_yaml import parse_yaml
from router.router import UnknownPipeline
import router.service.openapi as openapi
from router.service.auth import Admin, Reader
from router.service.context import Service, Svc
from router.validation import check

routes = APIRouter()


@routes.get("/pipelines")
async def list_pipelines(svc: Svc, caller: Reader) -> list[dict]:
    return [p.to_dict() for p in await svc.catalog.all()]


@routes.get("/pipelines/{name}")
async def get_pipeline(name: str, svc: Svc, caller: Reader) -> dict:
    p = await svc.catalog.get(name)
    if p is None:
        raise UnknownPipeline(f"unknown pipeline '{name}'", pipeline=name)
    return p.to_dict()


NO_CODE = (
    "a pipeline stored through the API cannot name code: remove 'functions' (the router and the CLI "
    "import only the modules their own --functions / KNFLOW_FUNCTIONS name)"
)


@routes.post("/pipelines/validate", openapi_extra=openapi.PIPELINE_VALIDATE)
async def validate_pipeline(request: Request, svc: Svc, caller: Reader) -> dict[str, Any]:
    """The same validator as `knflow validate` and PUT, on a draft that is not stored: 200 either way."""
    pipeline, problems = await _checked(svc, request, "draft")
    return {
        "valid": not problems,
        "pipeline": pipeline.name if pipeline is not None else None,
        "problems": [problem_doc(p, pipeline) for p in problems],
    }


@routes.put("/pipelines/{name}", openapi_extra=openapi.PIPELINE)
async def put_pipeline(name: str, request: Request, svc: Svc, caller: Admin) -> dict:
    pipeline, problems = await _checked(svc, request, f"PUT /pipelines/{name}", code_is_an_error=True)
    if pipeline is not None and pipeline.name != name:
        raise InvalidEvent(f"the URL names pipeline '{name}' but metadata.name is '{pipeline.name}'")
    if problems or pipeline is None:
        raise PipelineInvalid(problems)
    await svc.catalog.put(pipeline)
    return {"pipeline": name, "nodes": len(pipeline.nodes)}


async def _checked(
    svc: Service, request: Request, source: str, *, code_is_an_error: bool = False
) -> tuple[Pipeline | None, list[Problem]]:
    """The body (YAML or JSON text) as a pipeline, and every problem with it (router/validation.py `check`)."""
    body = await svc.read_body(request)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidEvent(f"pipeline body is not UTF-8 text (byte {exc.start})") from None
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
