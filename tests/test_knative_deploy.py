"""`knflow deploy` and `knflow status` against FakeApiServer: a real HTTP server on a random port that
plays the Kubernetes API server and records every call. No cluster can run here, so this fake is the
one stand-in: the kubernetes client, its kubeconfig loading, HTTP and the JSON bodies are all real.
"""

from __future__ import annotations

import argparse
import copy
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

import pytest

import kubernetes  # noqa: F401  (knflow deploy talks to clusters through it)

from test_knative_manifests import ROOT

from knative.cli import add_commands
from knative.deploy import KubeApi, apply, diff_objects, status
from knative.errors import ClusterError
from knative.manifests import build
from knative.profile import parse_profile
from router.loader import load

TOKEN = "test-token"
INSTALLED = (
    "/api/v1/",
    "/apis/networking.k8s.io/v1/",
    "/apis/serving.knative.dev/v1/",
    "/apis/eventing.knative.dev/v1/",
    "/apis/sources.knative.dev/v1/",
)


class FakeApiServer:
    """A fake of the Kubernetes API server: GET (object or labelled list) and server-side-apply PATCH,
    with dryRun=All, namespaces that must exist, and a 404 without details for an uninstalled type."""

    def __init__(self, installed: tuple[str, ...] = INSTALLED) -> None:
        # a cluster with Knative installed: its namespaces exist
        self.objects: dict[str, dict[str, Any]] = {
            f"/api/v1/namespaces/{ns}": {"metadata": {"name": ns}} for ns in ("knative-eventing", "knative-serving")
        }
        self.calls: list[dict[str, Any]] = []
        self.installed = installed
        self.refuse: dict[str, tuple[int, str]] = {}  # path -> (status, message) for a PATCH
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                fake.handle(self, "GET")

            def do_PATCH(self) -> None:
                fake.handle(self, "PATCH")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        parts = urlsplit(h.path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        length = int(h.headers.get("Content-Length") or 0)
        body = json.loads(h.rfile.read(length)) if length else None
        self.calls.append(
            {
                "method": method,
                "path": parts.path,
                "query": query,
                "content_type": h.headers.get("Content-Type"),
                "authorization": h.headers.get("Authorization"),
                "body": body,
            }
        )
        code, answer = self.answer(method, parts.path, query, body)
        data = json.dumps(answer).encode()
        h.send_response(code)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    def answer(self, method: str, path: str, query: dict[str, str], body: Any) -> tuple[int, dict[str, Any]]:
        if not path.startswith(self.installed):
            return 404, {
                "kind": "Status",
                "reason": "NotFound",
                "message": "the server could not find the requested resource",
                "details": {},
            }
        segments = path.strip("/").split("/")
        rest = segments[
            2 if segments[0] == "api" else 3 :
        ]  # namespaces/NS/PLURAL is a list, one more segment an object
        if method == "GET" and len(rest) == 3:
            wanted = dict(kv.split("=", 1) for kv in query.get("labelSelector", "").split(",") if kv)
            items = [
                o
                for p, o in self.objects.items()
                if p.rsplit("/", 1)[0] == path
                and all(o["metadata"].get("labels", {}).get(k) == v for k, v in wanted.items())
            ]
            return 200, {"kind": "List", "items": items}
        if method == "GET":
            if path in self.objects:
                return 200, self.objects[path]
            return 404, {
                "kind": "Status",
                "reason": "NotFound",
                "message": f'{segments[-2]} "{segments[-1]}" not found',
                "details": {"name": segments[-1], "kind": segments[-2]},
            }
        assert query.get("fieldManager") == "knflow" and query.get("force") == "true"
        if path in self.refuse:
            code, message = self.refuse[path]
            return code, {"kind": "Status", "reason": "Invalid", "message": message}
        if "namespaces" in segments[:-2]:
            ns = segments[segments.index("namespaces") + 1]
            if f"/api/v1/namespaces/{ns}" not in self.objects:
                return 404, {
                    "kind": "Status",
                    "reason": "NotFound",
                    "message": f'namespaces "{ns}" not found',
                    "details": {"name": ns, "kind": "namespaces"},
                }
        old = self.objects.get(path)
        new = copy.deepcopy(body)
        new["metadata"]["uid"] = (old or {}).get("metadata", {}).get("uid", f"uid-{len(self.objects)}")
        new["metadata"]["generation"] = (old or {}).get("metadata", {}).get("generation", 0) + (
            old is None or old.get("spec") != body.get("spec")
        )
        new["status"] = {"conditions": [{"type": "Ready", "status": "True"}]}
        if query.get("dryRun") != "All":
            self.objects[path] = new
        return (200 if old else 201), new


@pytest.fixture
def fake():
    with FakeApiServer() as server:
        yield server


@pytest.fixture
def kubeconfig(tmp_path, fake) -> str:
    path = tmp_path / "kubeconfig"
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "fake",
                "clusters": [{"name": "fake", "cluster": {"server": fake.url}}],
                "users": [{"name": "me", "user": {"token": TOKEN}}],
                "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "me"}}],
            }
        )
    )
    return str(path)


def bundle(**profile: Any):
    return build(
        [load(ROOT / "examples" / "hello.yaml")],
        profile=parse_profile({"image": "ghcr.io/acme/knflow:1", **profile}),
        root=ROOT,
    )


def test_apply_is_server_side_apply_in_order_then_unchanged(fake, kubeconfig):
    api = KubeApi.connect(kubeconfig)
    manifests = bundle().manifests
    changes = apply(api, manifests)
    assert [c.action for c in changes] == ["created"] * len(manifests)
    patches = [c for c in fake.calls if c["method"] == "PATCH"]
    assert [p["body"] for p in patches] == manifests  # in the bundle's order: namespace first
    assert {p["content_type"] for p in patches} == {"application/apply-patch+yaml"}
    assert {p["query"]["fieldManager"] for p in patches} == {"knflow"}
    assert {c["authorization"] for c in fake.calls} == {f"Bearer {TOKEN}"}
    assert patches[0]["path"] == "/api/v1/namespaces/knflow"
    assert "/apis/serving.knative.dev/v1/namespaces/knflow/services/knflow-router" in [p["path"] for p in patches]
    assert "/apis/eventing.knative.dev/v1/namespaces/knflow/triggers/knflow-router-succeeded" in [
        p["path"] for p in patches
    ]
    assert "/api/v1/namespaces/knative-eventing/configmaps/config-nats" in [p["path"] for p in patches]
    again = apply(api, manifests)
    assert {c.action for c in again} == {"unchanged"}


def test_dry_run_changes_nothing_and_prints_what_would(fake, kubeconfig, capsys):
    api = KubeApi.connect(kubeconfig)
    first = apply(api, bundle().manifests, dry_run=True)
    seeded = dict(fake.objects)
    assert {c.action for c in first} == {"would create"} and fake.objects == seeded
    assert all(c["query"].get("dryRun") == "All" for c in fake.calls if c["method"] == "PATCH")
    apply(api, bundle().manifests)
    stored = len(fake.objects)
    changed = apply(api, bundle(router={"min_scale": 2}).manifests, dry_run=True)
    assert len(fake.objects) == stored
    routers = ("Service/knflow-router", "Service/knflow-router-events")  # the router's scale holds for both
    for router in (c for c in changed if c.resource in routers):
        assert router.action == "would change"
        assert router.diff == ['~ spec.template.metadata.annotations[autoscaling.knative.dev/min-scale]: "1" -> "2"']
    assert {c.action for c in changed if c.resource not in routers} == {"unchanged"}


def run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="knflow")
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.fn(args)


def test_deploy_and_status_commands(fake, kubeconfig, capsys):
    assert (
        run_cli(
            [
                "deploy",
                "examples/hello.yaml",
                "examples/cron-digest.yaml",
                "--kubeconfig",
                kubeconfig,
                "--dry-run",
                "--image",
                "img:1",
            ]
        )
        == 0
    )
    out, err = capsys.readouterr()
    assert "Service/knflow-router  would create" in out and "PingSource/knflow-cron-cron-digest  would create" in out
    assert "dry run, nothing changed" in err and len(fake.objects) == 2
    assert run_cli(["deploy", "examples/hello.yaml", "--kubeconfig", kubeconfig, "--namespace", "team-a"]) == 0
    out, err = capsys.readouterr()
    assert "Namespace/team-a  created" in out and "Trigger/knflow-split-words  created" in out
    assert "watch with: knflow status --namespace team-a" in err
    assert run_cli(["status", "--kubeconfig", kubeconfig, "--namespace", "team-a"]) == 0
    out, _ = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0].split() == ["KIND", "NAME", "READY", "REASON", "/", "URL"]
    assert {tuple(line.split()[:3]) for line in lines[1:]} >= {
        ("Service", "knflow-router", "True"),
        ("Trigger", "knflow-split-words", "True"),
        ("Broker", "knflow", "True"),
    }
    selectors = {
        c["query"].get("labelSelector")
        for c in fake.calls
        if c["method"] == "GET" and c["path"].endswith(("/services", "/triggers"))
    }
    assert selectors == {"app.kubernetes.io/managed-by=knflow"}


def test_status_reports_what_is_not_ready(fake, kubeconfig, capsys):
    apply(KubeApi.connect(kubeconfig), bundle().manifests)
    svc = fake.objects["/apis/serving.knative.dev/v1/namespaces/knflow/services/knflow-router"]
    svc["status"] = {
        "conditions": [
            {"type": "Ready", "status": "False", "reason": "RevisionMissing", "message": "no secret knflow-mongodb"}
        ]
    }
    rows = {(r.kind, r.name): r for r in status(KubeApi.connect(kubeconfig), "knflow")}
    assert rows[("Service", "knflow-router")].ready == "False"
    assert rows[("Service", "knflow-router")].reason == "RevisionMissing no secret knflow-mongodb"
    assert run_cli(["status", "--kubeconfig", kubeconfig]) == 1
    assert run_cli(["status", "--kubeconfig", kubeconfig, "--namespace", "empty"]) == 1
    assert "no knflow resources in namespace 'empty'" in capsys.readouterr().err


def test_a_refusal_names_the_resource_and_the_servers_reason(fake, kubeconfig):
    fake.refuse["/apis/serving.knative.dev/v1/namespaces/knflow/services/knflow-router"] = (
        422,
        "admission webhook denied the request: bad",
    )
    with pytest.raises(
        ClusterError,
        match=r"Service/knflow-router: the API server refused it \(HTTP 422 Invalid\): "
        r"admission webhook denied the request: bad",
    ):
        apply(KubeApi.connect(kubeconfig), bundle().manifests)


def test_a_cluster_without_knative_eventing_is_named(kubeconfig, fake):
    fake.installed = ("/api/v1/", "/apis/networking.k8s.io/v1/", "/apis/serving.knative.dev/v1/")
    with pytest.raises(
        ClusterError,
        match=r"the cluster has no Broker resource \(eventing.knative.dev/v1\): is Knative Eventing installed\?",
    ):
        apply(KubeApi.connect(kubeconfig), bundle().manifests)
    rows = status(KubeApi.connect(kubeconfig), "knflow")
    assert ("Trigger", "eventing.knative.dev/v1 is not installed") in {(r.kind, r.reason) for r in rows}


def test_no_cluster_to_talk_to(tmp_path, monkeypatch):
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "none"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(ClusterError, match="no Kubernetes configuration found"):
        KubeApi.connect()
    with pytest.raises(ClusterError, match="cannot use kubeconfig"):
        KubeApi.connect(str(tmp_path / "none"))


def test_an_unreachable_api_server_is_named(tmp_path, kubeconfig, fake):
    fake.server.shutdown()
    fake.server.server_close()  # nothing listens on its port any more
    api = KubeApi.connect(kubeconfig)
    api.timeout_s = 2
    with pytest.raises(ClusterError, match=f"cannot reach the Kubernetes API server at {fake.url}"):
        apply(api, bundle().manifests)


def test_diff_names_paths_of_labels_annotations_spec_and_data():
    before = {
        "metadata": {"labels": {"a": "1"}, "resourceVersion": "1"},
        "spec": {"x": [1, 2], "y": {"z": "old"}},
        "status": {"s": 1},
    }
    after = {
        "metadata": {"labels": {"a": "1", "b": "2"}, "resourceVersion": "2"},
        "spec": {"x": [1], "y": {"z": "new"}},
        "status": {"s": 2},
    }
    assert diff_objects(before, after) == ['+ metadata.labels.b: "2"', "- spec.x[1]: 2", '~ spec.y.z: "old" -> "new"']
