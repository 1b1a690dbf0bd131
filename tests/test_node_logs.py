"""Node logs in one process: the bounds and masking of a try's lines (functions/node_logs.py), concurrent invokes
keeping their lines apart, lines travelling with replies, 503 bodies, node.logs events and dead letters, and the
router storing each try's lines once, on both stores, whether or not the store takes them."""

from __future__ import annotations

import asyncio
import base64
import json
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from pydantic import BaseModel

from broker import events
from broker.delivery import DeliveryOutcome, dead_letter_event, split_logs
from broker.memory import InMemoryBroker
from functions import node_logs
from functions.handler import Retryable, handle_invoke
from functions.node_logs import MAX_BYTES, MAX_LINE_CHARS, MAX_LINES, Lines
from functions.registry import REGISTRY, load_module
from knflow import Context, function
from knflow.local import EmbeddedStack
from router.loader import load_string
from router.node_logs import InvalidLogs, batch_of
from router.router import StaticPipelines, build_router, dead_letter_reason
from router.store.sqlite import SqliteStore

ROOT = Path(__file__).resolve().parent.parent
load_module(str(ROOT / "tests/fixtures/noisy.py"))


def invoke(run: str, node: str, function: str, inputs: dict, attempt: int = 1, token: str | None = None):
    return events.invoke_event(
        run_id=run, pipeline="p", node=node, attempt=attempt, function=function, inputs=inputs, config={}, token=token
    )


# ---- one try's lines: bounds, cuts, masking ---------------------------------------------------------------


def test_a_try_keeps_its_last_1000_lines_and_counts_the_ones_it_dropped():
    lines = Lines()
    for i in range(MAX_LINES + 250):
        lines.log("info", "line %d", (i,), {})
    batch = lines.batch()
    assert batch is not None and batch["dropped"] == 250 and len(batch["lines"]) == MAX_LINES
    assert batch["lines"][0]["message"] == "line 250" and batch["lines"][-1]["message"] == f"line {MAX_LINES + 249}"
    assert batch["lines"][0] == {"at": batch["lines"][0]["at"], "stream": "log", "level": "info", "message": "line 250"}


def test_a_try_keeps_at_most_256_kib_of_text():
    lines = Lines(streams=True)
    for i in range(400):
        lines.write("stdout", f"{i:04d} " + "x" * 1019 + "\n")  # 1 KiB a line
    batch = lines.batch()
    assert batch is not None
    kept = batch["lines"]
    assert 200 < len(kept) < 256 and batch["dropped"] == 400 - len(kept)
    assert sum(len(line["message"]) for line in kept) <= MAX_BYTES
    assert kept[-1]["message"].startswith("0399 ") and kept[0]["message"].startswith(f"{400 - len(kept):04d} ")


def test_a_long_line_is_cut_and_says_so_and_partial_writes_make_one_line():
    lines = Lines(streams=True)
    lines.write("stdout", "a")
    lines.write("stderr", "other stream\r\n")
    lines.write("stdout", "b\nc")  # "c" waits for its end
    lines.write("stdout", "d\n")
    lines.write("stdout", "y" * (MAX_LINE_CHARS + 10) + "\n")
    lines.write("stdout", "e")  # no end: the try's end takes it
    lines.write("stderr", "z" * (MAX_LINE_CHARS + 5))  # no end at all: taken once too long, so it stays bounded
    batch = lines.batch()
    assert batch is not None
    messages = [(line["stream"], line["message"][:20]) for line in batch["lines"]]
    assert messages[:3] == [("stderr", "other stream"), ("stdout", "ab"), ("stdout", "cd")]
    cut = [line["message"] for line in batch["lines"] if line["message"].startswith("y")]
    assert cut == ["y" * MAX_LINE_CHARS + "… [line cut: 10 more characters]"]
    assert [line["message"] for line in batch["lines"][-2:]] == [
        "z" * MAX_LINE_CHARS + "… [line cut: 5 more characters]",
        "e",
    ]


def test_secrets_are_masked_in_messages_and_fields_and_values_are_kept_as_json():
    lines = Lines()

    class Opaque:
        def __repr__(self) -> str:
            return "<opaque>"

    lines.log(
        "info",
        "calling https://user:s3cret@db.example.com/x with Bearer abcdefghijklmnop",
        (),
        {"api_key": "k-123", "headers": {"Authorization": "Basic qwertyuiop"}, "obj": Opaque(), "n": 2**70, "ok": 1},
    )
    line = lines.batch()["lines"][0]  # type: ignore[index]
    assert "s3cret" not in line["message"] and "abcdefghijklmnop" not in line["message"]
    assert line["fields"] == {
        "api_key": "****",
        "headers": {"Authorization": "****"},
        "obj": "<opaque>",
        "n": str(2**70),
        "ok": 1,
    }


def test_no_lines_no_batch_and_each_try_names_its_own_batch():
    assert Lines().batch() is None
    one, two = Lines(), Lines()
    one.log("info", "x", (), {})
    two.log("info", "x", (), {})
    assert one.batch()["batch"] != two.batch()["batch"]  # type: ignore[index]


# ---- an invoke's lines: with its reply, with its Retryable ------------------------------------------------


async def test_the_reply_carries_ctx_log_lines_and_in_process_no_prints(capsys):
    reply = await handle_invoke(REGISTRY.get("nl-say"), invoke("r1", "say", "nl-say", {"key": "k1"}), "/t")
    logs = reply.get_data()["logs"]
    assert [(line["stream"], line["level"], line["message"]) for line in logs["lines"]] == [
        ("log", "info", "begin"),
        ("log", "warning", "end"),
    ]  # in process (the embedded default) only ctx.log is taken: the prints went to the process's stdout
    assert logs["lines"][0]["fields"] == {"key": "k1", "api_key": "****"}
    assert logs["lines"][1]["fields"] == {"key": "k1", "password": "****", "url": "https://u:****@example.com/x"}
    assert "k1: printed in parts then ended" in capsys.readouterr().out
    assert set(reply.get_data()) == {"output", "logs", "started_at", "finished_at", "duration_ms"}


class Quiet(BaseModel):
    log: bool


@function(name="nl-maybe")
async def maybe(inp: Quiet, ctx: Context) -> Quiet:
    """Logs only when asked; when it does, from a plain thread too (no copy of the invoke's context there)."""
    if inp.log:
        ctx.log.bind(step="main").info("from the task")
        thread = threading.Thread(target=ctx.log.info, args=("from a thread",))
        thread.start()
        thread.join()
    return inp


async def test_a_function_that_logs_gets_its_lines_and_one_that_does_not_gets_none():
    spec = REGISTRY.get("nl-maybe")
    quiet = await handle_invoke(spec, invoke("r9", "q", "nl-maybe", {"log": False}), "/t")
    assert "logs" not in quiet.get_data()  # ctx.log built, never bound, no lines
    loud = await handle_invoke(spec, invoke("r9", "l", "nl-maybe", {"log": True}), "/t")
    lines = loud.get_data()["logs"]["lines"]
    assert [(line["message"], line.get("fields")) for line in lines] == [
        ("from the task", {"step": "main"}),
        ("from a thread", None),
    ]


async def test_a_retryable_failure_carries_its_lines_and_times_in_its_body():
    with pytest.raises(Retryable) as info:
        await handle_invoke(REGISTRY.get("nl-fail"), invoke("r2", "f", "nl-fail", {}, attempt=1), "/t")
    body = info.value.body()
    assert list(body) == ["error", "started_at", "finished_at", "duration_ms", "logs"]
    assert [line["message"] for line in body["logs"]["lines"]] == ["trying"]
    assert info.value.data == body  # in process, the same body goes to the broker
    assert "logs" not in info.value.body(with_logs=False)


async def test_concurrent_invokes_in_one_process_keep_their_lines_apart():
    """Where functions run in their own process, stdout and stderr are taken too: 40 invokes at once, each
    printing its own key from itself, a task and a thread, across awaits, get only their own lines."""
    spec = REGISTRY.get("nl-say")
    with node_logs.capture_streams():
        replies = await asyncio.gather(
            *(
                handle_invoke(
                    spec, invoke(f"run{i}", "say", "nl-say", {"key": f"k{i}", "lines": 3}), "/t", streams=True
                )
                for i in range(40)
            )
        )
    for i, reply in enumerate(replies):
        lines = reply.get_data()["logs"]["lines"]
        text = [(line["stream"], line["message"]) for line in lines if line["stream"] != "log"]
        assert text == [
            ("stdout", f"k{i}: printed in parts then ended"),
            ("stdout", f"k{i}: from a task"),
            ("stdout", f"k{i}: from a thread"),
            *[("stdout", f"k{i}: line {n}") for n in range(3)],
            ("stderr", f"k{i}: to stderr"),
        ]
        assert [line["message"] for line in lines if line["stream"] == "log"] == ["begin", "end"]  # not twice


def test_the_broker_takes_a_tries_lines_out_of_its_error_body():
    body = {"error": {"type": "T", "message": "m"}, "started_at": "s", "logs": {"batch": "b", "lines": []}}
    outcome, logs = split_logs(DeliveryOutcome.failed(503, body))
    assert logs == {"batch": "b", "lines": []} and json.loads(outcome.error_body) == {
        "error": {"type": "T", "message": "m"},
        "started_at": "s",
    }
    plain = DeliveryOutcome.failed(503, b'{"error": "no lines"}')
    assert split_logs(plain) == (plain, None)
    assert split_logs(DeliveryOutcome.failed(502, b'"logs" but not JSON')) == (
        DeliveryOutcome.failed(502, b'"logs" but not JSON'),
        None,
    )
    dead = dead_letter_event(invoke("r", "n", "f", {"a": 1}), outcome, "http://fn/", logs)
    assert dead.get_data() == {"inputs": {"a": 1}, "config": {}, "logs": logs}
    assert json.loads(base64.b64decode(dead.get_extension("knativeerrordata"))) == json.loads(outcome.error_body)


def test_a_dead_letter_carries_the_error_body_that_knative_s_extension_cuts():
    error = {"type": "LookupError", "message": "not ready", "detail": {"traceback": "Traceback ...\n" + "x" * 2000}}
    body = {"error": error, "started_at": "2026-01-01T00:00:00Z", "duration_ms": 3.5}
    dead = dead_letter_event(invoke("r", "n", "f", {}), DeliveryOutcome.failed(503, body), "http://fn/")
    assert len(dead.get_extension("knativeerrordata")) <= 1024  # cut, as Knative cuts it
    assert dead.get_data()["failure"] == body
    assert dead_letter_reason(dead) == (503, "not ready", error, {"started_at": body["started_at"], "duration_ms": 3.5})
    short = dead_letter_event(invoke("r", "n", "f", {}), DeliveryOutcome.failed(503, {"error": {}}), "http://fn/")
    assert "failure" not in short.get_data()  # whole in the extension already


def test_the_router_reads_a_batch_and_counts_what_it_cannot_take():
    lines = [{"at": "t", "stream": "log", "level": "info", "message": "ok", "fields": {"a": 1}}, "junk"]
    lines += [{"at": "t", "stream": "nowhere", "message": "?"}]
    batch = batch_of({"batch": "b1", "dropped": 2, "lines": lines})
    assert batch.lines == [{"at": "t", "stream": "log", "level": "info", "message": "ok", "fields": {"a": 1}}]
    assert batch.dropped == 4
    long = batch_of({"batch": "b2", "lines": [{"at": "t", "stream": "stdout", "message": str(i)} for i in range(1005)]})
    assert len(long.lines) == 1000 and long.dropped == 5 and long.lines[0]["message"] == "5"
    for bad, why in [
        ([], "must be an object"),
        ({"batch": "a/b", "lines": []}, "logs.batch"),
        ({"batch": "b", "dropped": -1, "lines": []}, "logs.dropped"),
        ({"batch": "b", "lines": {}}, "logs.lines"),
    ]:
        with pytest.raises(InvalidLogs, match=why):
            batch_of(bad)


# ---- the router: each try once, a result never held up by its lines ------------------------------------

ONE = "metadata: {name: p}\nnodes: [{id: n, type: nl-fail}]\n"


async def scheduled_run(store):
    """A router whose invokes go nowhere (no subscriber), and a run whose node `n` is scheduled."""
    p = load_string(ONE, "one.yaml")
    router = build_router(None, store, InMemoryBroker(), StaticPipelines([p]))
    run = await router.start_run(p, {"type": "t", "data": {}})
    return router, run["id"], (await router.result_key()).token(f"{run['id']}:n:1")


def result(run_id: str, token: str, messages: list[str], batch: str = "b1", delivery: int = 1):
    lines = [{"at": "2026-01-01T00:00:00.000Z", "stream": "stdout", "message": m} for m in messages]
    data = {"output": {"key": "k"}, "logs": {"batch": batch, "dropped": 0, "lines": lines}}
    return events.result_event(
        events.with_delivery(invoke(run_id, "n", "nl-fail", {}, token=token), delivery),
        succeeded=True,
        data=data,
        source="/t",
    )


async def test_a_redelivered_result_stores_its_lines_once_and_failed_tries_keep_theirs(store):
    router, run_id, token = await scheduled_run(store)
    first_try = invoke(run_id, "n", "nl-fail", {}, token=token)
    await router.on_result(
        events.logs_event(
            first_try,
            {"batch": "t1", "lines": [{"at": "2026-01-01T00:00:00.000Z", "stream": "stderr", "message": "try 1"}]},
            "/t",
        )
    )
    done = result(run_id, token, ["try 2, a", "try 2, b"], delivery=2)
    for _ in range(3):  # JetStream delivers a result again when its ack was lost
        await router.on_result(done)
    lines, _ = await store.read_logs(run_id)
    assert [(line["attempt"], line["seq"], line["message"]) for line in lines] == [
        (1, 1, "try 1"),
        (2, 2, "try 2, a"),
        (2, 3, "try 2, b"),
    ]
    run = await store.get_run(run_id)
    assert run["status"] == "succeeded" and "logs" not in json.dumps(run)  # never in the run document
    forged = events.logs_event(invoke(run_id, "n", "nl-fail", {}), {"batch": "f", "lines": []}, "/t")
    assert (await router.take_result(forged)) is not None and router.refused_results == 1  # no knflowtoken


async def test_a_result_applies_when_its_lines_cannot_be_stored_and_a_redelivery_stores_them(tmp_path):
    store = SqliteStore(tmp_path / "runs.db")
    router, run_id, token = await scheduled_run(store)
    with sqlite3.connect(tmp_path / "runs.db") as db:  # the store refuses lines: a real error, not a fake
        db.execute("ALTER TABLE node_logs RENAME TO node_logs_away")
    done = result(run_id, token, ["lost for now"])
    await router.on_result(done)
    assert (await store.get_run(run_id))["status"] == "succeeded" and router.logs_failed == 1
    with sqlite3.connect(tmp_path / "runs.db") as db:
        db.execute("ALTER TABLE node_logs_away RENAME TO node_logs")
    await router.on_result(done)  # the batch was not half stored: its lines go in now
    assert [line["message"] for line in (await store.read_logs(run_id))[0]] == ["lost for now"]
    await store.close()


# ---- the embedded default, end to end --------------------------------------------------------------------

RETRIED = """
metadata: {name: retried}
nodes: [{id: f, type: nl-fail}]
"""


async def test_embedded_a_retried_node_shows_the_lines_of_each_attempt(tmp_path):
    async with EmbeddedStack(SqliteStore(tmp_path / "runs.db")) as stack:
        run = await stack.execute(load_string(RETRIED, "retried.yaml"))
        lines, truncated = await stack.store.read_logs(run["id"], "f")
    assert run["status"] == "failed" and run["nodes"]["f"]["attempt"] == 2
    assert [(line["attempt"], line["message"], line["fields"]) for line in lines] == [
        (1, "trying", {"attempt": 1}),  # a node.logs event, before the retry
        (2, "trying", {"attempt": 2}),  # in the dead letter
    ]
    assert truncated == {}


def test_knflow_run_prints_a_failed_nodes_last_lines_under_its_error(tmp_path):
    (tmp_path / "p.yaml").write_text(f"functions: [{ROOT / 'tests/fixtures/noisy.py'}]\n" + RETRIED)
    done = subprocess.run(
        [sys.executable, "-m", "knflow.cli", "run", str(tmp_path / "p.yaml"), "--store", f"sqlite:///{tmp_path}/k.db"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "KNFLOW_BLOB_URL": (tmp_path / "blobs").as_uri()},
    )
    assert done.returncode == 1, done.stderr
    out = done.stdout.splitlines()
    at = out.index("  error at node 'f': node 'f' (function 'nl-fail') raised RuntimeError: attempt 2 failed")
    assert out[at + 1] == "  last 1 log line of 'f', attempt 2:"
    assert out[at + 2].startswith("    20") and out[at + 2].endswith("Z  info    trying  attempt=2")
