"""Large payloads through the blob store (functions/blobs.py, router/blobs.py): references, the threshold,
resolution on both sides, `ctx.storage`, and a 5 MB output on the embedded default."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest

from broker import events
from functions import blobs
from functions.blobs import BlobError, BlobStore, Storage, is_ref, make_ref
from functions.handler import Retryable, handle_invoke
from functions.registry import REGISTRY
from functions.sdk import Context
from knflow.local import EmbeddedStack
from knflow.settings import Settings
from router import blobs as router_blobs
from router.engine import Invoke
from router.store.sqlite import SqliteStore
from router.loader import load_string
from tests.fixtures import large

MB5 = 5 * 1024 * 1024


@pytest.fixture
def store(tmp_path: Path):
    """A blob store of the test's own, also the process default (in-process functions read that one)."""
    s = BlobStore(f"file://{tmp_path}/blobs", threshold_bytes=1024)
    blobs.set_default_store(s)
    yield s
    blobs.set_default_store(None)


def files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


# ---- references and the threshold -----------------------------------------------------------------


def test_a_reference_is_recognised_only_by_its_exact_shape():
    ref = make_ref("file:///x/y.json", b'{"a":1}')
    assert is_ref(ref) and ref["size_bytes"] == 7 and ref["sha256"] == hashlib.sha256(b'{"a":1}').hexdigest()
    assert not is_ref({"$blob": "file:///x"})  # no size, no hash: user data that happens to use the key
    assert not is_ref({**ref, "extra": 1})
    assert not is_ref([ref])


async def test_values_within_the_threshold_stay_inline(store):
    value = {"text": "x" * 1000}
    assert await store.offload(value, "runs/r/n/1", "output") is value
    assert not (Path(store.url.removeprefix("file://"))).exists()


async def test_a_value_over_the_threshold_becomes_a_reference_keyed_by_run_node_attempt(store):
    value = {"text": "x" * 5000}
    ref = await store.offload(value, blobs.attempt_key("run1", "gen", 2), "output")
    data = blobs.encode(value)
    assert ref == {
        "$blob": ref["$blob"],
        "size_bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "media_type": "application/json",
    }
    assert ref["$blob"] == f"{store.url}/runs/run1/gen/2/output-{ref['sha256'][:16]}.json"
    assert Path(ref["$blob"].removeprefix("file://")).read_bytes() == data
    again = await store.offload(
        value, blobs.attempt_key("run1", "gen", 2), "output"
    )  # a redelivery writes the same blob
    assert again == ref and len(files(Path(store.url.removeprefix("file://")))) == 1
    assert await store.resolve(ref) == value


async def test_references_are_resolved_at_any_depth(store):
    big = {"text": "y" * 3000}
    inner = await store.offload(big, "runs/r/a/1", "output")
    outer = await store.offload({"items": [inner, inner], "note": "z" * 2000}, "runs/r/b/1", "inputs")
    assert await store.resolve({"x": [1, outer], "y": "plain"}) == {
        "x": [1, {"items": [big, big], "note": "z" * 2000}],
        "y": "plain",
    }


async def test_a_missing_blob_is_a_clear_error_that_a_retry_cannot_fix(store):
    ref = make_ref(f"{store.url}/runs/r/n/1/output-0000.json", b"{}")
    with pytest.raises(BlobError) as err:
        await store.resolve({"a": ref})
    assert err.value.retryable is False and "does not exist" in err.value.message and ref["$blob"] in err.value.message


async def test_a_blob_that_does_not_match_its_reference_is_refused(store):
    ref = await store.offload({"text": "x" * 5000}, "runs/r/n/1", "output")
    Path(ref["$blob"].removeprefix("file://")).write_bytes(b'{"text":"tampered"}')
    with pytest.raises(BlobError, match="do not match its reference"):
        await store.load(ref)


async def test_a_reference_outside_the_store_is_never_read(store, tmp_path):
    secret = tmp_path / "secret.json"
    secret.write_text('{"password": "x"}')
    for url in (secret.as_uri(), f"{store.url}/../secret.json"):
        with pytest.raises(BlobError, match="is not under the blob store"):
            await store.resolve(make_ref(url, secret.read_bytes()))


async def test_an_unreadable_blob_may_be_retried(store):
    ref = await store.offload({"text": "x" * 5000}, "runs/r/n/1", "output")
    path = Path(ref["$blob"].removeprefix("file://"))
    path.unlink()
    path.mkdir()  # reading a directory fails as a store that misbehaves would, not as a missing blob
    with pytest.raises(BlobError) as err:
        await store.load(ref)
    assert err.value.retryable is True


def test_settings_name_the_store_and_the_threshold(monkeypatch, tmp_path):
    monkeypatch.setenv("KNFLOW_BLOB_URL", f"file://{tmp_path}/b")
    monkeypatch.setenv("KNFLOW_BLOB_THRESHOLD_BYTES", "4096")
    from_settings, from_env = Settings().blob_store(), blobs.from_env()
    assert (
        (from_settings.url, from_settings.threshold_bytes)
        == (from_env.url, from_env.threshold_bytes)
        == (f"file://{tmp_path}/b", 4096)
    )
    monkeypatch.setenv("KNFLOW_BLOB_THRESHOLD_BYTES", "lots")
    with pytest.raises(BlobError, match="KNFLOW_BLOB_THRESHOLD_BYTES has value 'lots'"):
        blobs.from_env()
    monkeypatch.setenv("KNFLOW_BLOB_THRESHOLD_BYTES", str(2 * 1024 * 1024))
    with pytest.raises(ValueError, match="must be below KNFLOW_MAX_BODY_BYTES"):
        Settings()


def test_the_default_store_is_a_directory_under_the_working_directory(monkeypatch, tmp_path):
    monkeypatch.delenv("KNFLOW_BLOB_URL", raising=False)
    monkeypatch.delenv("KNFLOW_BLOB_THRESHOLD_BYTES", raising=False)
    monkeypatch.chdir(tmp_path)
    s = blobs.from_env()
    assert s.url == (tmp_path / ".knflow/blobs").resolve().as_uri() and s.threshold_bytes == 256 * 1024


# ---- the function side ----------------------------------------------------------------------------


def invoke(function: str, inputs, node: str = "b", attempt: int = 1):
    return events.invoke_event(
        run_id="run1", pipeline="p", node=node, attempt=attempt, function=function, inputs=inputs, config={}
    )


async def test_a_large_output_leaves_as_a_reference_and_the_next_function_reads_it_whole(store):
    reply = await handle_invoke(REGISTRY.get("big-make"), invoke("big-make", {"size_bytes": 50_000}, node="a"), "/t")
    ref = reply.get_data()["output"]
    assert reply.get_type() == events.NODE_SUCCEEDED and is_ref(ref) and "/runs/run1/a/1/output-" in ref["$blob"]
    assert len(json.dumps(reply.get_data())) < 1024
    reply = await handle_invoke(REGISTRY.get("big-take"), invoke("big-take", ref), "/t")
    assert reply.get_data()["output"] == large.seen(large.make_text(50_000, "knflow")).model_dump()


async def test_a_missing_input_blob_fails_the_node_naming_it(store):
    ref = make_ref(f"{store.url}/runs/run1/a/1/output-gone.json", b"{}")
    reply = await handle_invoke(REGISTRY.get("big-text"), invoke("big-text", {"text": ref}), "/t")
    error = reply.get_data()["error"]
    assert reply.get_type() == events.NODE_FAILED and error["type"] == "BlobError"
    assert (
        error["message"].startswith("node 'b' (function 'big-text'), its input: blob ")
        and ref["$blob"] in error["message"]
    )
    assert error["detail"] == {"blob": ref["$blob"]}


async def test_an_unreadable_input_blob_is_retried(store):
    ref = await store.offload({"text": "x" * 5000}, "runs/run1/a/1", "output")
    path = Path(ref["$blob"].removeprefix("file://"))
    path.unlink()
    path.mkdir()
    with pytest.raises(Retryable, match="node 'b'"):
        await handle_invoke(REGISTRY.get("big-take"), invoke("big-take", ref), "/t")


# ---- the router side (pure parts, then offloading an invoke) -----------------------------------------

PIPELINE = """
metadata: {name: %(name)s}
trigger: {type: webhook}
functions: [tests.fixtures.large]
nodes:
  - {id: a, type: big-make, inputs: {size_bytes: "{{ trigger.data.size_bytes }}"}}
  - {id: whole, type: big-take, inputs: "{{ a.output }}"}
  - {id: field, type: big-text, inputs: {text: "{{ a.output.text }}"}}
  - {id: gated, type: big-text, inputs: {text: "gate passed"}}
edges:
  - {from: a, to: whole}
  - {from: a, to: field}
  - {from: a, to: gated, when: "a.output.size > 10"}
"""


def test_the_router_loads_only_the_blob_outputs_that_a_ready_node_reads_inside():
    p = load_string(PIPELINE % {"name": "blob-reads"}, "t.yaml")
    ref = make_ref("file:///b/x.json", b"{}")
    run = {
        "id": "r",
        "nodes": {
            "a": {"status": "succeeded", "output": ref},
            "whole": {"status": "pending"},
            "field": {"status": "pending"},
            "gated": {"status": "pending"},
        },
    }
    assert router_blobs.outputs_read_inside(p, run) == {"a"}
    run["nodes"]["field"]["status"] = run["nodes"]["gated"]["status"] = "scheduled"
    assert router_blobs.outputs_read_inside(p, run) == set()  # `whole` passes the reference on as it is
    assert router_blobs.outputs_read_inside(p, run, statuses=("scheduled",)) == {"a"}  # the sweeper renders those again
    run["nodes"]["a"]["output"] = {"text": "inline"}
    assert router_blobs.outputs_read_inside(p, run, statuses=("scheduled",)) == set()


async def test_an_invoke_over_the_threshold_carries_its_inputs_by_reference(store):
    small = Invoke("r", "p", "n", "f", 1, {"text": "short"}, {"k": 1})
    assert await router_blobs.offload_invoke(store, small) is small
    big = Invoke("r", "p", "n", "f", 3, {"text": "x" * 5000}, {"k": 1})
    out = await router_blobs.offload_invoke(store, big)
    assert is_ref(out.inputs) and "/runs/r/n/3/inputs-" in out.inputs["$blob"] and out.config == {"k": 1}
    assert await store.resolve(out.inputs) == big.inputs


# ---- ctx.storage ------------------------------------------------------------------------------------


async def test_ctx_storage_keeps_a_functions_files_under_its_run_and_node(store):
    ctx = Context(run_id="run1", node_id="render", attempt=1, pipeline="p")
    url = await ctx.storage.write("frames/0001.png", b"\x89PNG...")
    assert url == ctx.storage.url("frames/0001.png") == f"{store.url}/runs/run1/render/files/frames/0001.png"
    assert Path(url.removeprefix("file://")).read_bytes() == b"\x89PNG..."
    assert await ctx.storage.read("frames/0001.png") == b"\x89PNG..."
    with pytest.raises(BlobError, match=re.escape("file name '../other' is not valid for ctx.storage")):
        ctx.storage.url("../other")
    with pytest.raises(BlobError, match="takes bytes, got str"):
        await ctx.storage.write("a.txt", "text")
    with pytest.raises(BlobError, match="does not exist"):
        await Storage("run1", "render", store).read("nothing.bin")


# ---- the embedded default, end to end -----------------------------------------------------------------


async def test_5_mb_pass_from_one_function_to_the_next_on_the_embedded_default(store, tmp_path):
    store.threshold_bytes = blobs.DEFAULT_THRESHOLD_BYTES
    p = load_string(PIPELINE % {"name": "blob-embedded"}, "t.yaml")
    async with EmbeddedStack(SqliteStore(tmp_path / "k.db")) as stack:
        sizes: list[int] = []
        publish = stack.broker.publish_many

        async def recording(evs):
            sizes.extend(len(blobs.encode(e.get_data())) for e in evs)
            return await publish(evs)

        stack.broker.publish_many = recording
        run = await stack.execute(p, {"size_bytes": MB5})
    assert run["status"] == "succeeded", run
    want = large.seen(large.make_text(MB5, "knflow")).model_dump()
    nodes = run["nodes"]
    assert is_ref(nodes["a"]["output"]) and nodes["a"]["output"]["size_bytes"] > MB5
    assert nodes["whole"]["output"] == want and nodes["field"]["output"] == want
    assert nodes["gated"]["status"] == "succeeded"  # the condition read inside the blob
    # outputs go to the blob store (they are stored with the run); `field`'s 5 MB invoke stays in process, handed
    # to its function as it is (the NATS and HTTP tests in test_blobs_e2e.py show it offloaded where it crosses)
    assert max(sizes) > MB5, sizes
    names = [f.name for f in files(Path(store.url.removeprefix("file://")))]
    assert any(n.startswith("output-") for n in names) and not any(n.startswith("inputs-") for n in names), names
