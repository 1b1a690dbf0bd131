"""Pure: what the dashboard's pipeline page shows beyond the pipeline itself: each trigger with where it is
reached (a webhook's path, a cron trigger's next fire time) and the fields of the trigger's data that the
pipeline's templates read (the run form asks for those)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from router import templates
from router.pipeline import Pipeline
from router.triggers import next_ticks


def trigger_views(p: Pipeline, now: datetime) -> list[dict[str, Any]]:
    ticks = {id(t): when for when, _, t in next_ticks([p], now)}
    out = []
    for t in p.triggers:
        view = t.to_dict()
        if t.type == "webhook":
            view["path"] = f"/hooks/{p.name}"
        if id(t) in ticks:
            view["next_at"] = ticks[id(t)].isoformat()
        out.append(view)
    return out


def input_fields(p: Pipeline) -> list[dict[str, Any]]:
    """The keys of `trigger.data` that templates read (`{{ trigger.data.text }}` -> text), in node order,
    each with the nodes that read it; a template that reads the whole `trigger.data` adds no key."""
    fields: dict[str, list[str]] = {}
    for node_id in p.order:
        node = p.nodes[node_id]
        try:
            refs = templates.find_refs([node.inputs, node.config, node.foreach])
        except templates.TemplateError:
            continue  # the validator reports it; the form asks for what it can read
        for ref in refs:
            if ref.root == "trigger" and len(ref.path) > 1 and ref.path[0] == "data" and isinstance(ref.path[1], str):
                readers = fields.setdefault(ref.path[1], [])
                if node_id not in readers:
                    readers.append(node_id)
    return [{"name": name, "nodes": nodes} for name, nodes in fields.items()]
