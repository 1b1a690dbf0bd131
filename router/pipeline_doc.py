"""A pipeline document (from YAML, JSON or the Python DSL) into router.pipeline's model: the shape rules.

Pure. Every key, type and value of the document is checked here, once, and every problem is collected
(file, line where known, node, field) instead of stopping at the first; an unknown key gets a "did you mean".
What needs the whole graph or the function registry is router/validation.py.
"""

from __future__ import annotations

import re
from typing import Any, Final

from functions import deployment
from functions.deployment import Deployment
from functions.sdk import Retry
from router import environments
from router.pipeline import (
    API_VERSIONS,
    MAX_ITEMS,
    ON_FAILURE_NODE,
    MAX_SYNC_TIMEOUT_S,
    PIPELINE_STATUSES,
    RESPOND_MODES,
    WEBHOOK_SCHEMES,
    Edge,
    Node,
    Pipeline,
    Problem,
    Trigger,
    WebhookAuth,
)

Path_ = tuple[Any, ...]

NODE_ID = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]*$")
PIPELINE_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
TRIGGER_TYPES = ("webhook", "cloudevent", "cron", "manual")
RUN_ON = ("engine", "cpu", "gpu")
FANOUT_FIELDS = ("foreach", "loop", "replicas")  # at most one per node; `loop` is `foreach` by another name
TOP_FIELDS = {
    "apiVersion",
    "kind",
    "metadata",
    "trigger",
    "triggers",
    "variables",
    "nodes",
    "edges",
    "functions",
    "on_failure",
    "status",
    "retention",
}
NODE_FIELDS = {
    "id",
    "type",
    "function",
    "config",
    "inputs",
    "runOn",
    "retry",
    "timeout_s",
    "scaling",
    "deploy",
    "description",
    *FANOUT_FIELDS,
    "concurrency",
}
EDGE_FIELDS = {"from", "to", "when", "branch"}
TRIGGER_FIELDS = {"type", "filter", "schedule", "every", "timezone", "data", "auth", "respond", "timeout_s"}
AUTH_FIELDS = {"scheme", "secret_env"}
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# environment variables a webhook's secret must not take: knflow's and Knative's own, and the process's
RESERVED_ENV_PREFIXES = ("KNFLOW_", "K_")
RESERVED_ENV = {"PATH", "HOME", "PORT", "PYTHONPATH", "PYTHONHOME", "LD_PRELOAD", "LD_LIBRARY_PATH"}
# what people call a scheme that knflow spells another way
SCHEME_ALIASES = {"svix": "standard-webhooks", "hmac": "github", "hub-signature": "github", "token": "bearer"}
RETRY_FIELDS = {"retries", "backoff", "delay_s", "max_delay_s"}

# keys people write for something this format spells another way: key -> the suggestion (VALUE: the value given)
HINTS = {
    "top-level": {
        "name": "metadata: {name: VALUE}",
        "description": "metadata: {description: ...}",
        "steps": "'nodes'",
        "tasks": "'nodes'",
    },
    "node": {
        "retries": "retry: {retries: VALUE}",
        "max_retries": "retry: {retries: VALUE}",
        "timeout": "timeout_s: VALUE (seconds)",
        "depends_on": "an edge {from: VALUE, to: NODE} in 'edges'",
        "dependsOn": "an edge {from: VALUE, to: NODE} in 'edges'",
        "needs": "an edge {from: VALUE, to: NODE} in 'edges'",
        "after": "an edge {from: VALUE, to: NODE} in 'edges'",
        "when": "when: on the edge into NODE, in 'edges'",
        "items": "'foreach'",
    },
    "edge": {"source": "'from'", "target": "'to'", "condition": "'when'", "if": "'when'"},
    "trigger": {"cron": "'schedule'", "tz": "'timezone'", "event": "filter: {type: VALUE}", "secret": "'auth'"},
    "trigger auth": {
        "secret": "secret_env: NAME (the router's environment variable that holds the secret, never the secret)",
        "env": "'secret_env'",
        "type": "'scheme'",
        "kind": "'scheme'",
    },
    "retry": {"delay": "'delay_s'", "max_delay": "'max_delay_s'", "attempts": "'retries'"},
    "dsl": {"_retries": "_retry=VALUE", "_timeout": "_timeout_s=VALUE", "_depends_on": "passing its result"},
}


def did_you_mean(key: Any, known: set[str], kind: str, value: Any = None, node: str = "NODE") -> str:
    """` (did you mean 'timeout_s'?)` for a near-miss key among `known` (or among the keys of HINTS), or ''."""
    if not isinstance(key, str):
        return ""
    hints = HINTS.get(kind, {})
    by_lower = {k.lower(): f"'{k}'" for k in known} | {k.lower(): hint for k, hint in hints.items()}
    import difflib  # for a mistake's hint only: `import knflow` does not pay it

    close = difflib.get_close_matches(key.lower(), by_lower, n=1, cutoff=0.7)
    hint = hints.get(key) or (by_lower[close[0]] if close else None)
    if hint is None:
        return ""
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    shown = value if isinstance(value, (int, float, str)) and not isinstance(value, bool) else "..."
    return f" (did you mean {hint.replace('VALUE', str(shown)).replace('NODE', node)}?)"


def unknown_key(key: Any, known: set[str], kind: str, value: Any = None, node: str = "NODE") -> str:
    """The message for a key that `kind` does not have."""
    suggestion = did_you_mean(key, known, kind, value, node)
    what = "field" if kind in ("node", "edge") else f"{kind} field"
    return f"unknown {what} {key!r}{suggestion}; expected one of {', '.join(sorted(known))}"


class _Collector:
    def __init__(self, file: str | None, lines: dict[Path_, int]):
        self.file, self.lines = file, lines
        self.pipeline: str | None = None
        self.problems: list[Problem] = []
        self.node_index: dict[str, int] = {}

    def add(self, message: str, path: Path_ = (), node: str | None = None, field: str | None = None) -> None:
        line = None
        for cut in range(len(path), -1, -1):
            line = self.lines.get(tuple(path[:cut]))
            if line is not None:
                break
        self.problems.append(Problem(message, self.file, line, self.pipeline, node, field))


MAX_NODES: Final = 500  # nodes per pipeline
MAX_EDGES: Final = 2000  # edges per pipeline


def _over_caps(doc: dict[str, Any], c: _Collector) -> bool:
    """Whether the document has more nodes or edges than a pipeline may (a problem added for each)."""
    over = False
    for key, cap in (("nodes", MAX_NODES), ("edges", MAX_EDGES)):
        raw = doc.get(key)
        if isinstance(raw, (dict, list)) and len(raw) > cap:
            c.add(f"the pipeline has {len(raw):,} {key}; the limit is {cap:,} {key} per pipeline", (key,), field=key)
            over = True
    return over


def from_dict(
    doc: Any, file: str | None = None, lines: dict[Path_, int] | None = None
) -> tuple[Pipeline | None, list[Problem]]:
    """Build the model from a document. The shape rules only; router.validation.check runs every rule."""
    c = _Collector(file, lines or {})
    if not isinstance(doc, dict):
        c.add(f"the document must be a mapping with apiVersion, kind, metadata, nodes; got {type(doc).__name__}")
        return None, c.problems
    meta: dict[str, Any] = doc["metadata"] if isinstance(doc.get("metadata"), dict) else {}
    name = meta.get("name")
    c.pipeline = name if isinstance(name, str) else None
    if not isinstance(name, str) or not PIPELINE_NAME.match(name):
        c.add(
            f"metadata.name must be lowercase letters, digits and '-', got {name!r}",
            ("metadata", "name"),
            field="metadata.name",
        )
    for key in doc:
        if key not in TOP_FIELDS:
            c.add(unknown_key(key, TOP_FIELDS, "top-level", doc[key]), (key,), field=str(key))
    if doc.get("kind", "Pipeline") != "Pipeline":
        c.add(f"kind must be 'Pipeline', got {doc.get('kind')!r}", ("kind",), field="kind")
    api = doc.get("apiVersion", API_VERSIONS[0])
    if api not in API_VERSIONS:
        c.add(
            f"apiVersion {api!r} is not supported; expected one of {', '.join(API_VERSIONS)}",
            ("apiVersion",),
            field="apiVersion",
        )
    variables, sections = _variables(doc, c)
    functions = doc.get("functions") or []
    if isinstance(functions, str):
        functions = [functions]
    if not isinstance(functions, list) or not all(isinstance(f, str) for f in functions):
        c.add("functions must be a list of module names or file paths", ("functions",), field="functions")
        functions = []
    if _over_caps(doc, c):
        return None, c.problems
    triggers = _triggers(doc, c)
    nodes = _nodes(doc.get("nodes"), c)
    on_failure = doc.get("on_failure")
    if on_failure is not None and not isinstance(on_failure, str):
        c.add(f"on_failure must name a function, got {on_failure!r}", ("on_failure",), field="on_failure")
        on_failure = None
    if ON_FAILURE_NODE in nodes:
        c.add(
            f"node id '{ON_FAILURE_NODE}' is reserved for the pipeline's on_failure handler",
            ("nodes",),
            ON_FAILURE_NODE,
            "id",
        )
    edges = _edges(doc.get("edges"), c)
    status = _status(doc, c)
    retention, retention_s = _retention(doc.get("retention"), c)
    pipeline = Pipeline(
        name=c.pipeline or "",
        nodes=nodes,
        edges=edges,
        variables=variables,
        environments=sections,
        triggers=triggers,
        description=str(meta.get("description") or ""),
        functions=functions,
        source=file,
        api_version=api if api in API_VERSIONS else API_VERSIONS[0],
        lines=c.lines,
        node_index=c.node_index,
        on_failure=on_failure,
        status=status,
        retention=retention,
        retention_s=retention_s,
    )
    return pipeline, c.problems


def _variables(doc: dict, c: _Collector) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """The default environment's variables, and every environment's when they are per environment."""
    variables = doc.get("variables") or {}
    if not isinstance(variables, dict):
        c.add(f"variables must be a mapping, got {type(variables).__name__}", ("variables",), field="variables")
        return {}, {}
    for key, message in environments.problems(variables):
        c.add(message, ("variables", key), field=f"variables.{key}")
    if not environments.is_sectioned(variables):
        return dict(variables), {}
    sections = {k: v for k, v in variables.items() if isinstance(v, dict)}
    return dict(sections[environments.DEFAULT]), sections


def _status(doc: dict, c: _Collector) -> str:
    status = doc.get("status", "active")
    if status not in PIPELINE_STATUSES:
        c.add(f"status {status!r} is not one of {', '.join(PIPELINE_STATUSES)}", ("status",), field="status")
        return "active"
    return status


def _retention(raw: Any, c: _Collector) -> tuple[str | None, float | None]:
    """The pipeline's `retention:` (a duration such as `7d`), and its seconds."""
    if raw is None:
        return None, None
    from router.replay import InvalidDuration, parse_duration_s

    try:
        seconds = parse_duration_s(str(raw))
    except InvalidDuration:
        c.add(
            f"retention {raw!r} is not a duration; expected a number and a unit: 12h, 7d, 90d",
            ("retention",),
            field="retention",
        )
        return None, None
    if seconds <= 0:
        c.add(f"retention {raw!r} must be longer than nothing", ("retention",), field="retention")
        return None, None
    return str(raw), seconds


def _triggers(doc: dict, c: _Collector) -> list[Trigger]:
    if "trigger" in doc and "triggers" in doc:
        c.add("give either 'trigger' or 'triggers', not both", ("triggers",), field="triggers")
    raw, key = (doc["triggers"], "triggers") if "triggers" in doc else (doc.get("trigger"), "trigger")
    if raw is None:
        return [Trigger()]
    items = raw if isinstance(raw, list) else [raw]
    out = []
    for i, item in enumerate(items):
        path = (key, i) if isinstance(raw, list) else (key,)
        if not isinstance(item, dict):
            c.add(f"a trigger must be a mapping with 'type', got {item!r}", path, field=key)
            continue
        for k in item:
            if k not in TRIGGER_FIELDS:
                c.add(unknown_key(k, TRIGGER_FIELDS, "trigger", item[k]), (*path, k), field=f"{key}.{k}")
        out.append(_trigger(item, c, path, key))
    if sum(t.type == "webhook" for t in out) > 1:
        c.add(
            "a pipeline has at most one webhook trigger: POST /hooks/NAME is one URL with one way to sign it",
            (key,),
            field=key,
        )
    return out or [Trigger()]


def _trigger(item: dict, c: _Collector, path: Path_, key: str) -> Trigger:
    ttype = item.get("type", "manual")
    if ttype not in TRIGGER_TYPES:
        c.add(f"trigger type {ttype!r} is not one of {', '.join(TRIGGER_TYPES)}", (*path, "type"), field=f"{key}.type")
    flt = item.get("filter") or {}
    if not isinstance(flt, dict) or not all(isinstance(v, str) for v in flt.values()):
        c.add(
            "trigger filter must map CloudEvent attributes to exact string values",
            (*path, "filter"),
            field=f"{key}.filter",
        )
        flt = {}
    if ttype == "cloudevent" and "type" not in flt:
        c.add(
            "a cloudevent trigger needs filter.type (the CloudEvent type it starts runs for)",
            path,
            field=f"{key}.filter",
        )
    if ttype == "cron" and "every" in item:
        _every(item, c, path, key)
    elif "every" in item:
        c.add(
            f"every applies to cron triggers only, not to a {ttype!r} trigger", (*path, "every"), field=f"{key}.every"
        )
    elif ttype == "cron" and not isinstance(item.get("schedule"), str):
        c.add("a cron trigger needs schedule, e.g. '0 9 * * *', or every, e.g. '15m'", path, field=f"{key}.schedule")
    elif ttype == "cron" and not _valid_cron(item["schedule"]):
        c.add(
            f"schedule {item['schedule']!r} is not a cron expression of 5 fields (minute hour day month weekday)",
            (*path, "schedule"),
            field=f"{key}.schedule",
        )
    if item.get("timezone") is not None and not _valid_zone(item["timezone"]):
        c.add(
            f"timezone {item['timezone']!r} is not an IANA time zone such as 'Asia/Seoul' or 'UTC'",
            (*path, "timezone"),
            field=f"{key}.timezone",
        )
    auth = _auth(item["auth"], ttype, c, (*path, "auth"), f"{key}.auth") if item.get("auth") is not None else None
    respond, timeout_s = _respond(item, ttype, c, path, key)
    every = item.get("every") if isinstance(item.get("every"), str) else None
    return Trigger(
        ttype, dict(flt), item.get("schedule"), item.get("timezone"), item.get("data"), auth, respond, timeout_s, every
    )


def _every(item: dict, c: _Collector, path: Path_, key: str) -> None:
    """`every: 15m` on a cron trigger: instead of a schedule, and one that a cron expression says."""
    from router.intervals import interval_cron

    if "schedule" in item:
        c.add("give a cron trigger either schedule or every, not both", (*path, "every"), field=f"{key}.every")
    try:
        interval_cron(item["every"])
    except ValueError as exc:
        c.add(str(exc), (*path, "every"), field=f"{key}.every")


def _respond(item: dict, ttype: str, c: _Collector, path: Path_, key: str) -> tuple[str, float | None]:
    """`respond: async | sync` and `timeout_s` (a sync webhook's wait) on a webhook trigger."""
    respond, timeout_s = item.get("respond", "async"), item.get("timeout_s")
    if ("respond" in item or "timeout_s" in item) and ttype != "webhook":
        c.add(f"respond and timeout_s apply to webhook triggers only, not to a {ttype!r} trigger", path, field=key)
        return "async", None
    if respond not in RESPOND_MODES:
        c.add(
            f"respond {respond!r} is not one of {', '.join(RESPOND_MODES)} (sync holds the request for the answer)",
            (*path, "respond"),
            field=f"{key}.respond",
        )
        respond = "async"
    if timeout_s is not None:
        ok = (
            isinstance(timeout_s, (int, float))
            and not isinstance(timeout_s, bool)
            and 0 < timeout_s <= MAX_SYNC_TIMEOUT_S
        )
        if not ok or respond != "sync":
            why = (
                "applies with respond: sync only" if ok else f"must be seconds above 0, at most {MAX_SYNC_TIMEOUT_S:g}"
            )
            c.add(f"timeout_s {timeout_s!r} {why}", (*path, "timeout_s"), field=f"{key}.timeout_s")
            timeout_s = None
    return respond, float(timeout_s) if timeout_s is not None else None


def _auth(raw: Any, ttype: str, c: _Collector, path: Path_, field: str) -> WebhookAuth | None:
    """`auth: {scheme: standard-webhooks | github | bearer, secret_env: NAME}` on a webhook trigger."""
    example = "auth: {scheme: standard-webhooks, secret_env: ORDERS_WEBHOOK_SECRET}"
    if ttype != "webhook":
        c.add(f"auth applies to webhook triggers only, not to a {ttype!r} trigger", path, field=field)
        return None
    if not isinstance(raw, dict):
        c.add(f"auth must be a mapping, e.g. {example}; got {type(raw).__name__}", path, field=field)
        return None
    for k in raw:
        if k not in AUTH_FIELDS:
            c.add(unknown_key(k, AUTH_FIELDS, "trigger auth"), (*path, k), field=f"{field}.{k}")
    scheme, env = raw.get("scheme"), raw.get("secret_env")
    ok = True
    if scheme not in WEBHOOK_SCHEMES:
        ok = False
        what = "auth needs a scheme" if scheme is None else f"auth scheme {scheme!r} is not known"
        c.add(
            f"{what}{_scheme_hint(scheme)}; expected one of {', '.join(WEBHOOK_SCHEMES)}",
            (*path, "scheme"),
            field=f"{field}.scheme",
        )
    if not isinstance(env, str) or not ENV_NAME.match(env):
        ok = False
        # the value is not quoted: someone may have put the secret itself here
        c.add(
            "auth needs secret_env: the name of the router's environment variable that holds the secret "
            "(letters, digits and '_', e.g. ORDERS_WEBHOOK_SECRET), never the secret itself",
            (*path, "secret_env"),
            field=f"{field}.secret_env",
        )
    elif env.upper().startswith(RESERVED_ENV_PREFIXES) or env.upper() in RESERVED_ENV:
        ok = False
        c.add(
            f"auth secret_env {env!r} is a variable knflow, Knative or the process uses (KNFLOW_*, K_*, "
            f"{', '.join(sorted(RESERVED_ENV))}); give the webhook's secret a variable of its own, "
            "e.g. ORDERS_WEBHOOK_SECRET",
            (*path, "secret_env"),
            field=f"{field}.secret_env",
        )
    return WebhookAuth(str(scheme), str(env)) if ok else None


def _scheme_hint(scheme: Any) -> str:
    if not isinstance(scheme, str):
        return ""
    import difflib

    low = scheme.lower().replace("_", "-").replace(" ", "-")
    close = SCHEME_ALIASES.get(low) or next(iter(difflib.get_close_matches(low, WEBHOOK_SCHEMES, 1, 0.6)), None)
    return f" (did you mean {close!r}?)" if close else ""


def _valid_cron(schedule: str) -> bool:
    from croniter import croniter

    return len(schedule.split()) == 5 and croniter.is_valid(schedule)


def _valid_zone(name: Any) -> bool:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(str(name))
        return True
    except (ZoneInfoNotFoundError, ValueError):
        return False


def _nodes(raw: Any, c: _Collector) -> dict[str, Node]:
    nodes: dict[str, Node] = {}
    if not isinstance(raw, list) or not raw:
        c.add("nodes must be a non-empty list", ("nodes",), field="nodes")
        return nodes
    for i, item in enumerate(raw):
        path = ("nodes", i)
        if not isinstance(item, dict):
            c.add(f"node #{i + 1} must be a mapping with id and type, got {item!r}", path)
            continue
        nid = item.get("id")
        if not isinstance(nid, str) or not NODE_ID.match(nid):
            c.add(f"node #{i + 1} needs an id of letters, digits, '-' and '_', got {nid!r}", (*path, "id"), field="id")
            continue
        if nid in nodes:
            c.add(f"duplicate node id '{nid}'", (*path, "id"), node=nid, field="id")
            continue
        c.node_index[nid] = i
        nodes[nid] = _node(item, c, path, nid)
    return nodes


def _node(item: dict, c: _Collector, path: Path_, nid: str) -> Node:
    for key in item:
        if key not in NODE_FIELDS:
            c.add(unknown_key(key, NODE_FIELDS, "node", item[key], nid), (*path, key), nid, str(key))
    fname = item.get("function") or item.get("type")
    if "function" in item and "type" in item and item["function"] != item["type"]:
        c.add("give 'type' or 'function', not both", (*path, "function"), nid, "function")
    if not isinstance(fname, str) or not fname:
        c.add("needs 'type' (or 'function'): the function it runs", path, nid, "type")
        fname = ""
    config = item.get("config") or {}
    if not isinstance(config, dict):
        c.add(f"config must be a mapping, got {type(config).__name__}", (*path, "config"), nid, "config")
        config = {}
    run_on = item.get("runOn")
    if run_on is not None and run_on not in RUN_ON:
        c.add(f"runOn {run_on!r} is not one of {', '.join(RUN_ON)}", (*path, "runOn"), nid, "runOn")
    return Node(
        id=nid,
        function=fname,
        config=config,
        inputs=item.get("inputs") if item.get("inputs") is not None else {},
        run_on=run_on,
        retry=_retry(item.get("retry"), c, path, nid),
        timeout_s=_positive(item.get("timeout_s"), c, (*path, "timeout_s"), nid, "timeout_s"),
        scaling=item["scaling"] if isinstance(item.get("scaling"), dict) else {},
        deploy=_deploy(item.get("deploy"), c, path, nid),
        description=str(item.get("description") or ""),
        **_fanout(item, c, path, nid),
    )


def _fanout(item: dict, c: _Collector, path: Path_, nid: str) -> dict[str, Any]:
    """The `foreach` / `loop` / `replicas` / `concurrency` fields of a node, checked."""
    given = [k for k in FANOUT_FIELDS if item.get(k) is not None]
    out: dict[str, Any] = {}
    if len(given) > 1:
        c.add(f"give one of {', '.join(given)}, not several: each fans the node out", (*path, given[1]), nid, given[1])
    if given:
        key = given[0]
        value = item[key]
        if key == "replicas":
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_ITEMS:
                c.add(
                    f"replicas has value {value!r}. Expected a whole number from 1 to {MAX_ITEMS:,}.",
                    (*path, key),
                    nid,
                    key,
                )
            else:
                out["replicas"] = value
        elif isinstance(value, (str, list)):
            out["foreach"], out["foreach_key"] = value, key
            if isinstance(value, list) and len(value) > MAX_ITEMS:
                c.add(f"{key} lists {len(value):,} items; the most is {MAX_ITEMS:,}", (*path, key), nid, key)
        else:
            c.add(
                f"{key} has value {value!r}. Expected a template that gives a list, "
                "such as '{{ fetch.output.items }}', or a list.",
                (*path, key),
                nid,
                key,
            )
    concurrency = item.get("concurrency")
    if concurrency is None:
        return out
    where = (*path, "concurrency")
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        c.add(f"concurrency has value {concurrency!r}. Expected a whole number >= 1.", where, nid, "concurrency")
    elif not given:
        c.add(
            "concurrency limits the items of a fan-out; give foreach, loop or replicas too", where, nid, "concurrency"
        )
    else:
        out["concurrency"] = concurrency
    return out


def _deploy(raw: Any, c: _Collector, path: Path_, nid: str) -> Deployment:
    """A node's `deploy:` settings, checked as the cluster will check them (functions/deployment.py)."""
    settings, problems = deployment.parse(raw)
    for where, message in problems:
        key = where.split(".")[0].split("[")[0]
        at = (*path, "deploy", key) if key and isinstance(raw, dict) and key in raw else (*path, "deploy")
        c.add(f"deploy: {message}", at, nid, f"deploy.{where}" if where else "deploy")
    return settings


def _retry(raw: Any, c: _Collector, path: Path_, nid: str) -> Retry | None:
    if raw is None:
        return None
    if isinstance(raw, int) and not isinstance(raw, bool):
        raw = {"retries": raw}
    where = (*path, "retry")
    if not isinstance(raw, dict):
        c.add("retry must be a count or a mapping {retries, backoff, delay_s, max_delay_s}", where, nid, "retry")
        return None
    unknown = sorted(set(raw) - RETRY_FIELDS, key=str)
    if unknown:
        hints = "".join(did_you_mean(k, RETRY_FIELDS, "retry") for k in unknown)
        c.add(
            f"unknown retry field(s) {', '.join(map(str, unknown))}{hints}; "
            "expected retries, backoff, delay_s, max_delay_s",
            where,
            nid,
            "retry",
        )
        return None
    retry = Retry(**raw)
    for problem in retry.problems():
        c.add(problem, where, nid, "retry")
    return retry


def _positive(value: Any, c: _Collector, path: Path_, nid: str, name: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        c.add(f"{name} has value {value!r}. Expected a number > 0.", path, nid, name)
        return None
    return float(value)


def _edges(raw: Any, c: _Collector) -> list[Edge]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        c.add("edges must be a list of {from, to, when, branch}", ("edges",), field="edges")
        return []
    out = []
    for i, item in enumerate(raw):
        path = ("edges", i)
        ends = isinstance(item, dict) and isinstance(item.get("from"), str) and isinstance(item.get("to"), str)
        label = f"edge {item['from']} -> {item['to']}" if ends else f"edge #{i + 1}"
        for key in item if isinstance(item, dict) else ():
            if key not in EDGE_FIELDS:
                message = f"{label}: {unknown_key(key, EDGE_FIELDS, 'edge', item[key])}"
                c.add(message, (*path, key), field=f"edges[{i}].{key}")
        if not ends:
            c.add(f"edge #{i + 1} must be a mapping with string 'from' and 'to', got {item!r}", path, field="edges")
            continue
        when = item.get("when")
        if when is not None and not isinstance(when, str):
            c.add(
                f"{label}: when must be a CEL expression string, got {when!r}",
                (*path, "when"),
                field=f"edges[{i}].when",
            )
            when = None
        branch = item.get("branch")
        if isinstance(branch, bool):  # YAML reads `branch: true` as a bool: a `condition`'s branch is "true"
            branch = "true" if branch else "false"
        if branch is not None and (not isinstance(branch, str) or not branch):
            c.add(
                f"{label}: branch must name a branch of '{item['from']}', got {branch!r}",
                (*path, "branch"),
                field=f"edges[{i}].branch",
            )
            branch = None
        out.append(Edge(item["from"], item["to"], when, branch))
    return out
