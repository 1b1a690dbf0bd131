"""`knflow manifests` through `knative.cli.add_commands` on a parser of our own (the `knflow` command
wires the same function): output to stdout or a directory, notes on stderr, mistakes as messages."""

from __future__ import annotations

import argparse

import pytest
import yaml
from test_knative_manifests import ROOT

from broker.errors import KnflowError
from knative.cli import add_commands


def knflow(argv: list[str]) -> int:
    """What `knflow` does with a handler: run it; a KnflowError becomes a message and exit code 1."""
    parser = argparse.ArgumentParser(prog="knflow")
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        return args.fn(args)
    except KnflowError as exc:
        print(f"knflow {args.command}: {exc}", file=__import__("sys").stderr)
        return 1


@pytest.fixture(autouse=True)
def _in_the_project(monkeypatch):
    monkeypatch.chdir(ROOT)


def test_manifests_to_stdout_with_notes_on_stderr(capsys):
    assert knflow(["manifests", "examples/hello.yaml", "--image", "ghcr.io/acme/knflow:2", "--namespace", "demo"]) == 0
    out, err = capsys.readouterr()
    docs = list(yaml.safe_load_all(out))
    assert {d["metadata"].get("namespace") for d in docs if d["kind"] != "Namespace"} <= {"demo", "knative-eventing"}
    images = {c["image"] for d in docs if d["kind"] == "Service" for c in d["spec"]["template"]["spec"]["containers"]}
    assert images == {"ghcr.io/acme/knflow:2"}
    assert "note: Secret 'knflow-mongodb' key 'url'" in err and "-n demo" in err


def test_manifests_into_a_directory_in_apply_order(tmp_path, capsys):
    out = tmp_path / "deploy"
    out.mkdir()
    (out / "60-sources.yaml").write_text("stale: from an earlier run\n")
    (out / "README.txt").write_text("mine\n")
    assert (
        knflow(["manifests", "examples/gpu-summarize.yaml", "examples/studio.py", "-o", str(out), "--features-patch"])
        == 0
    )
    err = capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == [
        "00-namespace.yaml",
        "05-serving-config-features.yaml",
        "08-network-policy.yaml",
        "10-broker-config.yaml",
        "20-broker.yaml",
        "30-functions.yaml",
        "40-router.yaml",
        "50-triggers.yaml",
        "README.txt",
    ]
    assert f"wrote {out}/30-functions.yaml (6 resources)" in err and f"apply with: kubectl apply -f {out}" in err
    assert "output enables them with a config-features patch" in err
    flags = yaml.safe_load((out / "05-serving-config-features.yaml").read_text())
    assert flags["data"] == {"kubernetes.podspec-nodeselector": "enabled", "kubernetes.podspec-tolerations": "enabled"}


def test_a_profile_file_and_flags_over_it(tmp_path, capsys):
    profile = tmp_path / "cluster.yaml"
    profile.write_text("namespace: from-file\nimage: a:1\nbroker: {class: NatsJetStreamBroker}\n")
    assert knflow(["manifests", "examples/hello.yaml", "--profile", str(profile), "--image", "b:2"]) == 0
    docs = list(yaml.safe_load_all(capsys.readouterr().out))
    assert {d["metadata"]["namespace"] for d in docs if d["kind"] == "Service"} == {"from-file"}
    assert {
        c["image"] for d in docs if d["kind"] == "Service" for c in d["spec"]["template"]["spec"]["containers"]
    } == {"b:2"}
    assert (
        next(d for d in docs if d["kind"] == "Broker")["metadata"]["annotations"]["eventing.knative.dev/broker.class"]
        == "NatsJetStreamBroker"
    )


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["manifests", "examples/broken.yaml"], "cannot read the file"),
        (
            ["manifests", "examples/hello.yaml", "--namespace", "Not_A_Label"],
            "command line: profile is invalid: 'namespace'",
        ),
        (
            ["manifests", "examples/hello.yaml", "--profile", "missing.yaml"],
            "profile missing.yaml: cannot read the file",
        ),
        (["manifests", "examples/hello.py"], "examples/hello.py defines no @pipeline"),
        (["manifests", "examples/nope.yaml"], "cannot read the file"),
    ],
)
def test_mistakes_are_messages_not_tracebacks(argv, expected, capsys):
    assert knflow(argv) == 1
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err


def test_unwritable_output_directory(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert knflow(["manifests", "examples/hello.yaml", "-o", str(blocker / "sub")]) == 1
    assert f"cannot write manifests to {blocker / 'sub'}" in capsys.readouterr().err


def test_the_functions_flag_of_the_knflow_command_is_reused():
    parser = argparse.ArgumentParser(prog="knflow")
    calls = []
    add_commands(
        parser.add_subparsers(dest="command"),
        lambda p: (calls.append(p.prog), p.add_argument("--functions", action="append", default=[])),
    )
    assert calls == ["knflow manifests", "knflow deploy"]
    args = parser.parse_args(["deploy", "x.yaml", "--dry-run", "--functions", "m.py", "--context", "prod"])
    assert (args.dry_run, args.functions, args.context, args.kubeconfig) == (True, ["m.py"], "prod", None)


def test_manifests_print_the_secret_command_for_signed_webhooks(tmp_path, capsys):
    hook = tmp_path / "orders.yaml"
    hook.write_text(
        "metadata: {name: orders}\n"
        "trigger: {type: webhook, auth: {scheme: standard-webhooks, secret_env: ORDERS_WEBHOOK_SECRET}}\n"
        "nodes: [{id: say, type: log, inputs: {message: hi}}]\n"
    )
    assert knflow(["manifests", str(hook)]) == 0
    out, err = capsys.readouterr()
    router = next(
        d for d in yaml.safe_load_all(out) if d["kind"] == "Service" and d["metadata"]["name"] == "knflow-router"
    )
    env = router["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {
        "name": "ORDERS_WEBHOOK_SECRET",
        "valueFrom": {"secretKeyRef": {"name": "knflow-webhooks", "key": "ORDERS_WEBHOOK_SECRET"}},
    } in env
    assert "kubectl create secret generic knflow-webhooks -n knflow --from-literal=ORDERS_WEBHOOK_SECRET=..." in err
