"""Applying manifests to a cluster and reading back what is ready, with the `kubernetes` client.

Server-side apply (`PATCH`, `application/apply-patch+yaml`, field manager `knflow`, conflicts forced),
one resource at a time in the bundle's order. `--dry-run` asks the API server for the same apply with
`dryRun=All` and prints how the result differs from what is there. The kubernetes client is imported
here only, when a command talks to a cluster.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from knative import naming
from knative.errors import ClusterError

FIELD_MANAGER = "knflow"
# (apiVersion, kind) -> (URL prefix, plural, namespaced)
RESOURCES = {
    ("v1", "Namespace"): ("/api/v1", "namespaces", False),
    ("v1", "ConfigMap"): ("/api/v1", "configmaps", True),
    ("networking.k8s.io/v1", "NetworkPolicy"): ("/apis/networking.k8s.io/v1", "networkpolicies", True),
    ("serving.knative.dev/v1", "Service"): ("/apis/serving.knative.dev/v1", "services", True),
    ("eventing.knative.dev/v1", "Broker"): ("/apis/eventing.knative.dev/v1", "brokers", True),
    ("eventing.knative.dev/v1", "Trigger"): ("/apis/eventing.knative.dev/v1", "triggers", True),
    ("sources.knative.dev/v1", "PingSource"): ("/apis/sources.knative.dev/v1", "pingsources", True),
    ("monitoring.coreos.com/v1", "PodMonitor"): ("/apis/monitoring.coreos.com/v1", "podmonitors", True),
}
STATUS_KINDS = (
    ("eventing.knative.dev/v1", "Broker"),
    ("serving.knative.dev/v1", "Service"),
    ("eventing.knative.dev/v1", "Trigger"),
    ("sources.knative.dev/v1", "PingSource"),
)
COMPARED = (("metadata", "labels"), ("metadata", "annotations"), ("spec",), ("data",))


class KubeApi:
    """The few calls knflow makes, over the kubernetes client's configured HTTP connection."""

    def __init__(self, api_client: Any, timeout_s: float = 30.0) -> None:
        self.client = api_client
        self.timeout_s = timeout_s

    @classmethod
    def connect(cls, kubeconfig: str | None = None, context: str | None = None) -> KubeApi:
        from kubernetes import client, config
        from kubernetes.config.config_exception import ConfigException

        configuration = client.Configuration()
        try:
            config.load_kube_config(config_file=kubeconfig, context=context, client_configuration=configuration)
        except (ConfigException, OSError) as exc:
            if kubeconfig or context:
                raise ClusterError(
                    f"cannot use kubeconfig {kubeconfig or '(default)'} context {context or '(current)'}: {exc}"
                ) from None
            try:
                config.load_incluster_config(client_configuration=configuration)
            except ConfigException:
                raise ClusterError(
                    f"no Kubernetes configuration found ({exc}); "
                    "give --kubeconfig FILE, set KUBECONFIG, or run inside a cluster"
                ) from None
        return cls(client.ApiClient(configuration))

    @property
    def host(self) -> str:
        return self.client.configuration.host

    def request(
        self,
        method: str,
        path: str,
        query: dict[str, str] | None = None,
        body: Any = None,
        content_type: str | None = None,
    ) -> tuple[int, Any]:
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        method, url, headers, body, _ = self.client.param_serialize(
            method,
            path,
            query_params=list((query or {}).items()),
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        try:
            response = self.client.call_api(method, url, headers, body, _request_timeout=self.timeout_s)
            raw = response.read()
        except (ApiException, HTTPError, OSError) as exc:
            raise ClusterError(
                f"cannot reach the Kubernetes API server at {self.host}: {getattr(exc, 'reason', None) or exc}"
            ) from None
        try:
            return response.status, json.loads(raw) if raw else None
        except json.JSONDecodeError:
            return response.status, {"message": raw[:200].decode("utf-8", "replace")}


def resource_path(manifest: dict[str, Any], name: bool = True) -> str:
    key = (manifest.get("apiVersion"), manifest.get("kind"))
    if key not in RESOURCES:
        raise ClusterError(f"knflow cannot apply {key[1]} ({key[0]}); it knows {', '.join(k for _, k in RESOURCES)}")
    prefix, plural, namespaced = RESOURCES[key]
    meta = manifest.get("metadata", {})
    ns = f"/namespaces/{quote(meta['namespace'])}" if namespaced else ""
    return f"{prefix}{ns}/{plural}" + (f"/{quote(meta['name'])}" if name else "")


def describe(manifest: dict[str, Any]) -> str:
    return f"{manifest['kind']}/{manifest['metadata']['name']}"


@dataclass
class Change:
    resource: str
    action: str  # created | configured | unchanged, or with --dry-run: would create | would change | unchanged
    diff: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        return [f"{self.resource}  {self.action}"] + [f"    {d}" for d in self.diff]


def apply(api: KubeApi, manifests: Iterable[dict[str, Any]], dry_run: bool = False) -> list[Change]:
    manifests = list(manifests)
    created_namespaces = {m["metadata"]["name"] for m in manifests if m["kind"] == "Namespace"}
    changes = []
    for m in manifests:
        path = resource_path(m)
        status, live = api.request("GET", path)
        if status == 404:
            _require_resource_type(m, live)
            live = None
        elif status >= 400:
            raise _refused(m, status, live)
        query = {"fieldManager": FIELD_MANAGER, "force": "true"}
        if dry_run:
            query["dryRun"] = "All"
        status, after = api.request("PATCH", path, query, m, "application/apply-patch+yaml")
        if dry_run and status == 404 and live is None and m["metadata"].get("namespace") in created_namespaces:
            changes.append(Change(describe(m), "would create"))  # its namespace does not exist yet
            continue
        if status >= 400:
            raise _refused(m, status, after)
        if live is None:
            changes.append(Change(describe(m), "would create" if dry_run else "created"))
            continue
        diff = diff_objects(live, after)
        action = ("would change" if dry_run else "configured") if diff else "unchanged"
        changes.append(Change(describe(m), action, diff if dry_run else []))
    return changes


def _require_resource_type(m: dict[str, Any], body: Any) -> None:
    """A 404 for a missing object names it; one for a missing resource type does not."""
    details = (body or {}).get("details") or {}
    if not details.get("name"):
        group = m["apiVersion"].split("/")[0]
        product = {
            "serving.knative.dev": "Knative Serving",
            "eventing.knative.dev": "Knative Eventing",
            "sources.knative.dev": "Knative Eventing",
            "monitoring.coreos.com": "the Prometheus Operator",
        }.get(group, group)
        raise ClusterError(f"the cluster has no {m['kind']} resource ({m['apiVersion']}): is {product} installed?")


def _refused(m: dict[str, Any], status: int, body: Any) -> ClusterError:
    message = (body or {}).get("message") or "no message"
    reason = (body or {}).get("reason") or "error"
    return ClusterError(
        f"{describe(m)}: the API server refused it (HTTP {status} {reason}): {message}", resource=describe(m)
    )


def diff_objects(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """`~ path: old -> new`, `+ path: new`, `- path: old` for labels, annotations, spec and data."""
    out: list[str] = []
    for keys in COMPARED:
        a, b = _dig(before, keys), _dig(after, keys)
        old, new = dict(_flatten(a, ".".join(keys))), dict(_flatten(b, ".".join(keys)))
        for path in sorted(set(old) | set(new)):
            if path not in new:
                out.append(f"- {path}: {_show(old[path])}")
            elif path not in old:
                out.append(f"+ {path}: {_show(new[path])}")
            elif old[path] != new[path]:
                out.append(f"~ {path}: {_show(old[path])} -> {_show(new[path])}")
    return out


def _dig(obj: Any, keys: tuple[str, ...]) -> Any:
    for k in keys:
        obj = obj.get(k) if isinstance(obj, dict) else None
    return obj


def _flatten(value: Any, prefix: str) -> Iterable[tuple[str, Any]]:
    if isinstance(value, dict) and value:
        for k, v in value.items():
            yield from _flatten(v, f"{prefix}[{k}]" if "/" in k or "." in k else f"{prefix}.{k}")
    elif isinstance(value, list) and value:
        for i, v in enumerate(value):
            yield from _flatten(v, f"{prefix}[{i}]")
    elif value is not None:
        yield prefix, value


def _show(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 80 else text[:77] + "..."


@dataclass
class Row:
    kind: str
    name: str
    ready: str  # True | False | Unknown | "-" (type not installed)
    reason: str = ""
    url: str = ""


def status(api: KubeApi, namespace: str) -> list[Row]:
    rows = []
    for api_version, kind in STATUS_KINDS:
        path = resource_path(
            {"apiVersion": api_version, "kind": kind, "metadata": {"namespace": namespace}}, name=False
        )
        code, body = api.request("GET", path, {"labelSelector": naming.SELECTOR})
        if code == 404:
            rows.append(Row(kind, "-", "-", f"{api_version} is not installed"))
            continue
        if code >= 400:
            raise ClusterError(
                f"listing {kind}s in namespace '{namespace}' failed (HTTP {code}): {(body or {}).get('message')}"
            )
        for item in sorted((body or {}).get("items", []), key=lambda i: i["metadata"]["name"]):
            st = item.get("status") or {}
            ready: dict[str, Any] = next((c for c in st.get("conditions", []) if c.get("type") == "Ready"), {})
            reason = " ".join(x for x in (ready.get("reason"), ready.get("message")) if x)
            url = st.get("url") or (st.get("address") or {}).get("url") or st.get("sinkUri") or ""
            rows.append(Row(kind, item["metadata"]["name"], ready.get("status", "Unknown"), reason, url))
    return rows


def format_rows(rows: list[Row]) -> str:
    table = [("KIND", "NAME", "READY", "REASON / URL")] + [(r.kind, r.name, r.ready, r.reason or r.url) for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(3)]
    return "\n".join(f"{k:<{widths[0]}}  {n:<{widths[1]}}  {s:<{widths[2]}}  {x}".rstrip() for k, n, s, x in table)
