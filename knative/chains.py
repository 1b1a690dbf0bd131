"""The external CloudEvents the router must receive, and the guard against loops. Pure.

A pipeline with `trigger: {type: cloudevent, filter: {...}}` starts on events that match the filter; the
router gets them through one Knative Trigger per distinct filter. Pipelines chain through the router's
own `dev.knflow.run.*` events; the native NATS broker has no `knativebrokerttl` hop limit, so a chain that
leads back to where it started would run forever. Such chains are refused here, before deployment, and
the router gets a hop limit (`KNFLOW_MAX_HOPS`) for what no static check can see.
"""

from __future__ import annotations

from collections.abc import Iterable

from broker import events
from broker import extensions as ext
from knative.errors import LoopRisk
from router.pipeline import Pipeline

INTERNAL_TYPES = (events.INVOKE, *events.RESULT_TYPES)


def external_filters(pipelines: Iterable[Pipeline]) -> list[dict[str, str]]:
    """Distinct trigger filters, without those that a broader one already covers, in a stable order."""
    found: list[dict[str, str]] = []
    for p in pipelines:
        for t in p.triggers:
            if t.type == "cloudevent" and t.filter and dict(t.filter) not in found:
                found.append(dict(t.filter))
    broadest = [f for f in found if not any(g != f and g.items() <= f.items() for g in found)]
    return sorted(broadest, key=lambda f: (f.get("type", ""), sorted(f.items())))


def loop_problems(pipelines: list[Pipeline]) -> list[str]:
    out = []
    names = {p.name for p in pipelines}
    starts: dict[str, set[str]] = {p.name: set() for p in pipelines}  # Q -> pipelines that Q's runs start
    for p in pipelines:
        for t in p.triggers:
            if t.type != "cloudevent":
                continue
            etype = t.filter.get("type", "")
            empty = sorted(k for k, v in t.filter.items() if v == "")
            if empty:
                out.append(
                    f"pipeline '{p.name}': trigger filter {', '.join(empty)} is empty; a Knative Trigger reads an "
                    "empty value as 'any value'. Give the exact value."
                )
            if etype in INTERNAL_TYPES:
                out.append(
                    f"pipeline '{p.name}': its trigger listens to {etype}, knflow's own traffic between the router "
                    "and functions. Listen to dev.knflow.run.* events to chain pipelines."
                )
            elif etype.startswith(events.RUN_PREFIX):
                upstream = t.filter.get(ext.PIPELINE)
                if upstream is None:
                    out.append(
                        f"pipeline '{p.name}': its trigger starts a run on every {etype} event, those of its own runs "
                        "included, so each run would start the next one. "
                        "Add knflowpipeline: <upstream pipeline> to the filter."
                    )
                elif upstream in names:
                    starts[upstream].add(p.name)
    cycle = _find_cycle(starts)
    if cycle:
        out.append(
            f"pipelines start each other in a circle through dev.knflow.run.* events: {' -> '.join(cycle)}. "
            "Each run would start the next one forever; break the circle."
        )
    return out


def check_loops(pipelines: list[Pipeline]) -> None:
    problems = loop_problems(pipelines)
    if problems:
        raise LoopRisk("\n".join(problems))


def _find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(edges.get(n, ())):
            if state.get(m) == 1:
                return [*stack[stack.index(m) :], m]
            if m not in state and (found := visit(m)):
                return found
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(edges):
        if n not in state and (found := visit(n)):
            return found
    return None
