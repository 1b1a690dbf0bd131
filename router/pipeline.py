"""The Pipeline model: nodes, edges, triggers, the DAG (order, predecessors, ancestors), back to a document.

Pure: no network, no database. A document becomes this model in router/pipeline_doc.py (the shape rules);
router/validation.py runs every rule; router/loader.py holds the entry points (`load`, `load_string`, `parse`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

from broker.errors import KnflowError
from functions.deployment import Deployment
from functions.sdk import Retry
from router import environments

API_VERSIONS = ("knflow.dev/v1", "flume/v1")
MAX_ITEMS = 10_000  # the most items one fan-out node runs (a foreach list, or replicas)
ON_FAILURE_NODE = "on-failure"  # the node id of a pipeline's failure handler in a run
# a pipeline's `status`: `active` (its triggers fire), `paused` (webhooks answer 409, cron ticks and events are
# skipped and counted), `draft` (no trigger fires; it runs only by hand)
PIPELINE_STATUSES = ("active", "paused", "draft")


@dataclass(frozen=True)
class Problem:
    message: str
    file: str | None = None
    line: int | None = None
    pipeline: str | None = None
    node: str | None = None
    field: str | None = None

    def __str__(self) -> str:
        where = ":".join(str(p) for p in (self.file, self.line) if p is not None)
        head = f"pipeline '{self.pipeline}'" if self.pipeline else "pipeline"
        head += f" ({where})" if where else ""
        subject = []
        if self.node:
            subject.append(f"node '{self.node}'")
        if self.field:
            subject.append(f"field '{self.field}'")
        return f"{head}: {' '.join(subject) + ': ' if subject else ''}{self.message}"


class PipelineHeld(KnflowError):
    """A trigger of a pipeline that is `paused` or a `draft` (a 409 for a webhook)."""

    def __init__(self, pipeline: str, status: str) -> None:
        how = (
            f"resume it with `knflow pipelines resume {pipeline}` or POST /pipelines/{pipeline}/resume"
            if status == "paused"
            else "a draft runs only by hand (POST /pipelines/NAME/runs, knflow run); set status: active to turn "
            "its triggers on"
        )
        super().__init__(
            f"pipeline '{pipeline}' is {status}: its triggers do not start runs; {how}",
            pipeline=pipeline,
            status=status,
        )
        self.pipeline, self.status = pipeline, status


class PipelineInvalid(KnflowError):
    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems), pipeline=problems[0].pipeline if problems else None)


@dataclass(frozen=True)
class WebhookAuth:
    """How a webhook trigger's deliveries are signed (router/webhook_auth.py checks them): `scheme` is one of
    WEBHOOK_SCHEMES, `secret_env` the router's environment variable that holds the secret (or several)."""

    scheme: str
    secret_env: str

    def to_dict(self) -> dict[str, str]:
        return {"scheme": self.scheme, "secret_env": self.secret_env}


WEBHOOK_SCHEMES = ("standard-webhooks", "github", "bearer")
RESPOND_MODES = ("async", "sync")
SYNC_TIMEOUT_S = 30.0  # how long a `respond: sync` webhook holds its request by default
MAX_SYNC_TIMEOUT_S = 300.0


@dataclass
class Trigger:
    type: str = "manual"
    filter: dict[str, str] = field(default_factory=dict)
    schedule: str | None = None
    timezone: str | None = None
    data: Any = None
    auth: WebhookAuth | None = None  # webhook triggers only
    respond: str = "async"  # webhook triggers: `async` (202 with the run id) or `sync` (router/sync_reply.py)
    timeout_s: float | None = None  # a `sync` webhook's wait for its answer (default SYNC_TIMEOUT_S)
    every: str | None = None  # a cron trigger's interval ('15m'), instead of a schedule (router/intervals.py)

    @property
    def cron(self) -> str | None:
        """A cron trigger's schedule as a cron expression: `schedule`, or the one that says `every`."""
        if self.schedule or not self.every:
            return self.schedule
        from router.intervals import interval_cron

        return interval_cron(self.every)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type}
        if self.respond != "async":
            out["respond"] = self.respond
        for key in ("filter", "schedule", "every", "timezone", "data", "timeout_s"):
            if getattr(self, key):
                out[key] = getattr(self, key)
        if self.auth is not None:
            out["auth"] = self.auth.to_dict()
        return out


@dataclass
class Node:
    id: str
    function: str
    config: dict[str, Any] = field(default_factory=dict)
    inputs: Any = field(default_factory=dict)
    run_on: str | None = None
    retry: Retry | None = None
    timeout_s: float | None = None
    scaling: dict[str, Any] = field(default_factory=dict)
    # `deploy:` image, env, volumes, placement over the function's own (functions/deployment.py)
    deploy: Deployment = field(default_factory=Deployment)
    description: str = ""
    # fan-out: one invoke per item of `foreach` (a template that renders to a list, or a literal list), or
    # per index in 0..replicas-1; `foreach_key` is how the YAML spelled it (`foreach` or its alias `loop`)
    foreach: Any = None
    foreach_key: str = "foreach"
    replicas: int | None = None
    concurrency: int | None = None  # at most this many items scheduled or in flight at once

    @property
    def fans_out(self) -> bool:
        return self.foreach is not None or self.replicas is not None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "function": self.function}
        if self.description:
            out["description"] = self.description
        if self.run_on:
            out["runOn"] = self.run_on
        if self.config:
            out["config"] = self.config
        if self.inputs not in (None, {}):
            out["inputs"] = self.inputs
        if self.retry is not None:
            out["retry"] = {k: v for k, v in vars(self.retry).items()}
        if self.timeout_s is not None:
            out["timeout_s"] = self.timeout_s
        if self.scaling:
            out["scaling"] = self.scaling
        if self.deploy:
            out["deploy"] = self.deploy.to_dict()
        if self.foreach is not None:
            out[self.foreach_key] = self.foreach
        if self.replicas is not None:
            out["replicas"] = self.replicas
        if self.concurrency is not None:
            out["concurrency"] = self.concurrency
        return out


@dataclass(frozen=True)
class Edge:
    """`when` is a CEL condition; `branch` names the source's output branch (a `switch` case, or a
    `condition`'s "true"/"false") that the edge needs. `condition` is the two in one CEL expression."""

    source: str
    target: str
    when: str | None = None
    branch: str | None = None

    @property
    def condition(self) -> str | None:
        if self.branch is None:
            return self.when
        test = f"nodes[{_cel_string(self.source)}].output.branch == {_cel_string(self.branch)}"
        return f"({self.when}) && {test}" if self.when else test

    def to_dict(self) -> dict[str, Any]:
        out = {"from": self.source, "to": self.target}
        if self.when:
            out["when"] = self.when
        if self.branch is not None:
            out["branch"] = self.branch
        return out


def _cel_string(text: str) -> str:
    """`text` as a CEL string literal."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


@dataclass
class Pipeline:
    name: str
    nodes: dict[str, Node]
    edges: list[Edge] = field(default_factory=list)
    # the variables of the environment in use (the default one when parsed; `for_environment` picks another)
    variables: dict[str, Any] = field(default_factory=dict)
    # per-environment variables as written (router/environments.py); empty when `variables` is plain
    environments: dict[str, dict[str, Any]] = field(default_factory=dict)
    environment: str | None = None  # the one `variables` holds: None for the default
    triggers: list[Trigger] = field(default_factory=lambda: [Trigger()])
    description: str = ""
    functions: list[str] = field(default_factory=list)
    source: str | None = None
    api_version: str = API_VERSIONS[0]
    on_failure: str | None = None  # a function that receives the failed run, as a node of its own
    status: str = "active"  # one of PIPELINE_STATUSES
    retention: str | None = None  # how long its runs are kept (`7d`); None: the router's (router/retention.py)
    retention_s: float | None = None  # the same, in seconds
    # where things were in the YAML document: document path -> line, node id -> index in `nodes`
    lines: dict[tuple, int] = field(default_factory=dict, repr=False, compare=False)
    node_index: dict[str, int] = field(default_factory=dict, repr=False, compare=False)

    def line_of(self, path: tuple) -> int | None:
        for cut in range(len(path), -1, -1):
            line = self.lines.get(tuple(path[:cut]))
            if line is not None:
                return line
        return None

    def node_path(self, node: str, *rest: Any) -> tuple:
        return ("nodes", self.node_index.get(node, -1), *rest)

    def for_environment(self, environment: str | None) -> Pipeline:
        """This pipeline with the variables of `environment` (None: the default). Raises UnknownEnvironment when
        the pipeline has environments and not this one; a pipeline without environments is the same in each."""
        if not self.environments or environment == self.environment:
            return self
        variables = environments.resolve(self.name, self.environments, environment, self.source)
        return replace(self, variables=variables, environment=environment)

    @property
    def run_nodes(self) -> list[str]:
        """The node ids a run keeps a state for: the DAG's, and the failure handler's."""
        return [*self.nodes, ON_FAILURE_NODE] if self.on_failure else list(self.nodes)

    @cached_property
    def predecessors(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {n: [] for n in self.nodes}
        for e in self.edges:
            if e.target in out and e.source in self.nodes and e.source not in out[e.target]:
                out[e.target].append(e.source)
        return out

    @cached_property
    def successors(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {n: [] for n in self.nodes}
        for e in self.edges:
            if e.source in out and e.target in self.nodes and e.target not in out[e.source]:
                out[e.source].append(e.target)
        return out

    @cached_property
    def incoming(self) -> dict[str, list[Edge]]:
        out: dict[str, list[Edge]] = {n: [] for n in self.nodes}
        for e in self.edges:
            if e.target in out:
                out[e.target].append(e)
        return out

    @cached_property
    def order(self) -> list[str]:
        """Node ids in topological order (ties in definition order). Assumes no cycle."""
        indegree = {n: len(p) for n, p in self.predecessors.items()}
        ready = [n for n in self.nodes if indegree[n] == 0]
        out: list[str] = []
        while ready:
            n = ready.pop(0)
            out.append(n)
            for s in self.successors[n]:
                indegree[s] -= 1
                if indegree[s] == 0:
                    ready.append(s)
        return out

    @cached_property
    def ancestors(self) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        for n in self.order:
            acc: set[str] = set()
            for p in self.predecessors[n]:
                acc.add(p)
                acc |= out.get(p, set())
            out[n] = acc
        return out

    def downstream(self, node: str) -> set[str]:
        """`node` and everything that depends on it."""
        seen, todo = {node}, [node]
        while todo:
            for s in self.successors[todo.pop()]:
                if s not in seen:
                    seen.add(s)
                    todo.append(s)
        return seen

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"apiVersion": self.api_version, "kind": "Pipeline", "metadata": {"name": self.name}}
        if self.description:
            out["metadata"]["description"] = self.description
        if self.status != "active":
            out["status"] = self.status
        if self.functions:
            out["functions"] = list(self.functions)
        if len(self.triggers) == 1:
            out["trigger"] = self.triggers[0].to_dict()
        else:
            out["triggers"] = [t.to_dict() for t in self.triggers]
        if self.environments or self.variables:
            out["variables"] = self.environments or self.variables
        if self.on_failure:
            out["on_failure"] = self.on_failure
        if self.retention:
            out["retention"] = self.retention
        out["nodes"] = [n.to_dict() for n in self.nodes.values()]
        out["edges"] = [e.to_dict() for e in self.edges]
        return out

    def to_yaml(self) -> str:
        import yaml  # ~10 ms that `import knflow` (a function's container) does not pay

        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True, width=100)
