"""Pure: the function catalogue a pipeline editor shows (`GET /functions`): each function's name,
description, category, traits and input and output JSON Schemas (from its pydantic models)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from functions.registry import BUILTINS, Registry
from functions.sdk import FunctionSpec

# the README's table of builtins, by the module that defines them
CATEGORIES = {
    "functions.builtins.http": "HTTP",
    "functions.builtins.http_response": "HTTP",
    "functions.builtins.transform": "transform",
    "functions.builtins.logic": "logic",
    "functions.builtins.ai": "AI",
    "functions.builtins.mongodb": "database",
    "functions.builtins.redis": "database",
    "functions.builtins.utility": "utility",
}
CUSTOM = "custom"


def category(spec: FunctionSpec) -> str:
    """A builtin's category as the README's table names it; any other function is `custom`."""
    return CATEGORIES.get(BUILTINS.get(spec.name, ""), CUSTOM)


def describe(spec: FunctionSpec) -> dict[str, Any]:
    """One function as the catalogue shows it: plain JSON."""
    return {
        "name": spec.name,
        "description": spec.description,
        "category": category(spec),
        "builtin": spec.name in BUILTINS,
        "traits": _traits(spec),
        "input_schema": spec.input_model.model_json_schema(),
        "output_schema": spec.output_model.model_json_schema(),
    }


def _traits(spec: FunctionSpec) -> dict[str, Any]:
    """The traits, deployment settings in their YAML form (as a node's `deploy:` writes them), if any."""
    out = {k: v for k, v in asdict(spec.traits).items() if k != "deploy"}
    if spec.traits.deploy:
        out["deploy"] = spec.traits.deploy.to_dict()
    return out


def catalogue(registry: Registry) -> list[dict[str, Any]]:
    """Every function `registry` knows, builtins loaded, by name."""
    return [describe(registry.get(name)) for name in registry.names()]
