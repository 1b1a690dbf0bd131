"""The knflow command, run as a user runs it: a real process, exit codes, stdout and stderr."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KNFLOW = [sys.executable, "-m", "knflow.cli"]


def knflow(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    proc = subprocess.run([*KNFLOW, *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def test_validate_good_and_bad(tmp_path):
    ok = knflow("validate", "examples/hello.yaml", "examples/studio.py")
    assert ok.returncode == 0
    assert "examples/hello.yaml: pipeline 'hello' is valid (4 nodes, 4 edges)" in ok.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "metadata: {name: bad}\nnodes:\n  - {id: a, type: nope}\n  - {id: a, type: log}\nedges: [{from: a, to: b}]\n"
    )
    proc = knflow("validate", str(bad), "examples/article-generator.yaml")
    assert proc.returncode == 1
    assert f"{bad}: 3 problems" in proc.stderr
    assert "node 'a' field 'type': unknown function 'nope'" in proc.stderr
    assert "duplicate node id 'a'" in proc.stderr and "'to' names unknown node 'b'" in proc.stderr
    assert "examples/article-generator.yaml: pipeline 'article-generator' is valid (3 nodes, 2 edges)" in proc.stdout


def test_run_json_record_and_store_for_later_commands(tmp_path):
    store = f"sqlite:///{tmp_path}/k.db"
    proc = knflow("run", "examples/hello.yaml", "--data", '{"text": "a b c"}', "--store", store, "--json")
    assert proc.returncode == 0, proc.stderr
    rec = json.loads(proc.stdout)
    assert set(rec) >= {"id", "pipeline", "status", "nodes"} and rec["status"] == "succeeded"
    assert rec["nodes"]["summary"]["output"] == {"count": 3, "shout": "hello: A B C!"}
    assert set(rec["nodes"]["split"]) >= {"status", "output", "error", "attempt"}
    assert "split" in proc.stderr and "succeeded" in proc.stderr  # plain progress lines when not a terminal
    listed = knflow("runs", "list", "--store", store)
    assert rec["id"] in listed.stdout and "succeeded" in listed.stdout
    shown = knflow("runs", "show", rec["id"], "--store", store)
    assert json.loads(shown.stdout)["nodes"] == rec["nodes"]


def test_default_store_is_a_file_in_the_working_directory(tmp_path):
    proc = knflow("run", str(ROOT / "examples/hello.yaml"), "--data", '{"text": "x"}', cwd=tmp_path)
    assert proc.returncode == 0 and (tmp_path / "knflow.db").exists()
    assert "run " in proc.stdout and "succeeded" in proc.stdout


def test_failed_run_exits_1_with_the_reason(tmp_path):
    proc = knflow("run", "examples/hello.yaml", "--data", '{"words": 1}', "--store", f"sqlite:///{tmp_path}/k.db")
    assert proc.returncode == 1
    assert "trigger.data has no key 'text'" in proc.stdout


def test_input_file_and_python_pipeline(tmp_path):
    data = tmp_path / "in.json"
    data.write_text(json.dumps({"text": "The sun is warm and good."}))
    proc = knflow("run", "examples/studio.py", "--input", str(data), "--json", "--store", f"sqlite:///{tmp_path}/k.db")
    assert proc.returncode == 0, proc.stderr
    rec = json.loads(proc.stdout)
    assert rec["nodes"]["classify"]["output"]["mood"] == "upbeat"
    assert rec["nodes"]["pick"]["output"]["style"] in {"headline", "whisper", "shout", "tagged"}


def test_run_one_node_alone():
    proc = knflow("run", "examples/hello.yaml", "--node", "shout", "--data", '{"words": ["hi", "there"]}')
    assert proc.returncode == 0 and json.loads(proc.stdout) == {"text": "HI THERE!"}
    bad = knflow("run", "examples/hello.yaml", "--node", "shout", "--data", '{"words": 5}', "--json")
    assert bad.returncode == 1 and json.loads(bad.stdout)["error"]["type"] == "InvalidInput"
    missing = knflow("run", "examples/hello.yaml", "--node", "nope", "--data", "{}")
    assert (
        missing.returncode == 1
        and "pipeline 'hello' has no node 'nope'. Nodes: split, count, shout, summary" in missing.stderr
    )


def test_export_python_pipeline_to_yaml(tmp_path):
    proc = knflow("export", "examples/studio.py")
    assert proc.returncode == 0 and "name: studio" in proc.stdout
    out = tmp_path / "studio.yaml"
    out.write_text(proc.stdout)
    assert knflow("validate", str(out)).returncode == 0


def test_user_mistakes_are_messages_not_tracebacks(tmp_path):
    assert (
        "--data is not valid JSON: Expecting value at line 1 column 1"
        in knflow("run", "examples/hello.yaml", "--data", "nope").stderr
    )
    assert "cannot read the file" in knflow("run", "missing.yaml").stderr
    assert (
        "--input nothing.json: No such file or directory"
        in knflow("run", "examples/hello.yaml", "--input", "nothing.json").stderr
    )
    assert "no run 'zzz'" in knflow("runs", "show", "zzz", "--store", f"sqlite:///{tmp_path}/k.db").stderr
    assert (
        "store URL 'redis://x' is not supported" in knflow("run", "examples/hello.yaml", "--store", "redis://x").stderr
    )
    usage = knflow("frobnicate")
    assert usage.returncode == 2 and "invalid choice" in usage.stderr


def test_runs_watch_on_a_store_follows_the_run_until_it_ends(tmp_path):
    """`knflow runs watch --store` reads the store again on every poll: another process finishing the run
    ends the watch with the run's exit code."""
    import asyncio

    from router.runs import RUNNING, SUCCEEDED, RunChange, Transition, new_run
    from router.store.sqlite import SqliteStore

    db = tmp_path / "k.db"

    async def write(step: str) -> None:
        store = SqliteStore(str(db))
        try:
            if step == "create":
                await store.create_run(new_run("r-watch", "p", ["a"], {"type": "manual"}, {}))
            else:
                done = Transition("a", frozenset({"pending"}), {"status": SUCCEEDED, "attempt": 1, "output": {}})
                await store.commit("r-watch", [done], RunChange(frozenset({RUNNING}), {"status": SUCCEEDED}))
        finally:
            await store.close()

    asyncio.run(write("create"))
    with subprocess.Popen(
        [*KNFLOW, "runs", "watch", "r-watch", "--store", f"sqlite:///{db}", "--interval-s", "0.05"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as watcher:
        try:
            watcher.wait(timeout=3)
        except subprocess.TimeoutExpired:
            asyncio.run(write("finish"))
            out, err = watcher.communicate(timeout=30)
        else:
            raise AssertionError(f"watch ended while the run was running: {watcher.communicate()}")
    assert watcher.returncode == 0, err
    assert "run r-watch succeeded" in out and "Traceback" not in err
