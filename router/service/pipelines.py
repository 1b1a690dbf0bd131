"""The pipeline catalog: `GET /pipelines`, and `GET|PUT|DELETE /pipelines/{name}` (PUT takes YAML or JSON).
Reading needs scope `read`, changing `admin`."""

from __future__ import annotations

from fastapi import APIRouter, Request

from broker.errors import InvalidEvent
from router.loader import parse
from router.pipeline_yaml import parse_yaml
from router.router import UnknownPipeline
import router.service.openapi as openapi
from router.service.auth import Admin, Reader
from router.service.context import Svc

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
