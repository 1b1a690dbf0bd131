"""The function catalogue: `GET /functions` and `GET /functions/{name}` (scope `read`), for the pipeline editor's
palette and forms: what every function the router knows takes and returns."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from functions.catalogue import catalogue, describe
from functions.registry import REGISTRY
from router.service.auth import Reader

routes = APIRouter()


@routes.get("/functions")
async def list_functions(caller: Reader) -> list[dict[str, Any]]:
    return catalogue(REGISTRY)


@routes.get("/functions/{name}")
async def get_function(name: str, caller: Reader) -> dict[str, Any]:
    return describe(REGISTRY.get(name))  # UnknownFunction: 404, naming the functions there are
