"""The pipeline catalog: `GET /pipelines`, and `GET|PUT|DELETE /pipelines/{name}` (PUT takes YAML or JSON).
Reading needs scope `read`, changing `admin`."""

from __future__ import annotations

import yaml
from fastapi import APIRouter, Request

from broker.errors import InvalidEvent
from router.loader import parse
from router.router import UnknownPipeline
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


@routes.put("/pipelines/{name}")
async def put_pipeline(name: str, request: Request, svc: Svc, caller: Admin) -> dict:
    body = await svc.read_body(request)
    try:
        doc = yaml.safe_load(body) if body.strip() else None
    except yaml.YAMLError as exc:
        raise InvalidEvent(f"pipeline body is neither JSON nor YAML: {exc}") from None
    p = parse(doc, f"PUT /pipelines/{name}")
    if p.name != name:
        raise InvalidEvent(f"the URL names pipeline '{name}' but metadata.name is '{p.name}'")
    await svc.catalog.put(p)
    return {"pipeline": name, "nodes": len(p.nodes)}


@routes.delete("/pipelines/{name}")
async def delete_pipeline(name: str, svc: Svc, caller: Admin) -> dict:
    if not await svc.catalog.delete(name):
        raise UnknownPipeline(f"unknown pipeline '{name}'", pipeline=name)
    return {"deleted": name}
