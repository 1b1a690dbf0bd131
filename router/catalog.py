"""The pipelines a router knows: kept in the store (so every replica sees them), parsed (router/loader.py) and cached.

A cached pipeline is re-read after `ttl_s`, so a PUT on one router reaches the others within that time.
Each pipeline comes with the variables of the router's `environment` (router/environments.py); the store
keeps every environment's, as written.
"""

from __future__ import annotations

import re
import time

from router.loader import parse
from router.pipeline_yaml import parse_yaml
from router.pipeline import Pipeline, PipelineInvalid
from router.store.base import RunStore
from router.validation import validate


class StorePipelines:
    def __init__(self, store: RunStore, ttl_s: float = 5.0, environment: str | None = None) -> None:
        self.store = store
        self.ttl_s = ttl_s
        self.environment = environment
        self._cache: dict[str, tuple[float, Pipeline]] = {}
        self._all: tuple[float, list[Pipeline]] | None = None

    async def get(self, name: str) -> Pipeline | None:
        hit = self._cache.get(name)
        if hit is not None and time.monotonic() - hit[0] < self.ttl_s:
            return hit[1]
        doc = await self.store.get_pipeline(name)
        if doc is None:
            self._cache.pop(name, None)
            return None
        p = parse(doc, f"store:pipelines/{name}").for_environment(self.environment)
        self._cache[name] = (time.monotonic(), p)
        return p

    async def all(self) -> list[Pipeline]:
        if self._all is not None and time.monotonic() - self._all[0] < self.ttl_s:
            return self._all[1]
        pipelines = [
            parse(doc, f"store:pipelines/{doc.get('metadata', {}).get('name')}").for_environment(self.environment)
            for doc in await self.store.list_pipelines()
        ]
        self._all = (time.monotonic(), pipelines)
        for p in pipelines:
            self._cache[p.name] = (self._all[0], p)
        return pipelines

    async def put(self, pipeline: Pipeline, source: str | None = None) -> None:
        """Store `pipeline`; `source`, the YAML text it was parsed from, is kept with it as written (the editor
        opens it: comments and order kept), None for one with no text (a JSON PUT, a DSL pipeline)."""
        problems = validate(pipeline)
        if problems:
            raise PipelineInvalid(problems)
        pipeline = pipeline.for_environment(self.environment)  # one without this router's environment is refused
        await self.store.put_pipeline(pipeline.name, pipeline.to_dict(), source)
        self._cache[pipeline.name] = (time.monotonic(), pipeline)
        self._all = None

    async def set_status(self, name: str, status: str) -> Pipeline | None:
        """Store `status` (router/pipeline.py PIPELINE_STATUSES) on the stored pipeline `name`; None if there is none.
        Other routers see it when their cache of it expires (`ttl_s`)."""
        doc = await self.store.get_pipeline(name)
        if doc is None:
            return None
        doc = {**doc, "status": status}
        if status == "active":
            doc.pop("status")
        await self.store.put_pipeline(name, doc, with_status(await self.store.get_pipeline_source(name), status))
        self._cache.pop(name, None)
        self._all = None
        return await self.get(name)

    async def source(self, name: str) -> str | None:
        """The YAML text pipeline `name` was stored from, as written; None if it was stored without one."""
        return await self.store.get_pipeline_source(name)

    async def delete(self, name: str) -> bool:
        self._cache.pop(name, None)
        self._all = None
        return await self.store.delete_pipeline(name)


_STATUS_LINE = re.compile(r"^status:[^\n]*$", re.MULTILINE)


def with_status(text: str | None, status: str) -> str | None:
    """The stored YAML `text` with its top-level `status` set to `status` (the line replaced, or one added at
    the end), so that the text the editor opens says what pause/resume stored; None (the editor then opens
    YAML generated from the document) when there is no text or the edit does not read back as that status."""
    if text is None:
        return None
    if _STATUS_LINE.search(text):
        edited = _STATUS_LINE.sub(f"status: {status}", text, count=1)
    elif status == "active":
        return text  # no status line: active
    else:
        edited = f"{text}{'' if text.endswith(chr(10)) else chr(10)}status: {status}\n"
    try:
        doc, _ = parse_yaml(edited, "store:pipelines")
    except PipelineInvalid:
        return None
    return edited if isinstance(doc, dict) and doc.get("status", "active") == status else None
