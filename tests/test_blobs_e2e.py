"""A 5 MB output passes from one function to the next through the blob store, never through NATS: on a real
nats-server, with the router and functions in this process, and across processes (webhook -> router ->
NATS -> dispatcher -> HTTP function service -> NATS -> router). Every message the stream kept is measured."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path

import nats
import pytest

from broker import events
from broker.nats import StreamLayout
from functions import blobs
from functions.blobs import BlobStore, is_ref
from knflow.nats_stack import NatsStack
from router.router import StaticPipelines
from router.store.sqlite import SqliteStore
from router.loader import load_string
from tests.fixtures import large
from tests.processes import Process, free_port
from tests.test_blobs import MB5, PIPELINE, files
from tests.test_fabric_e2e import http, stream_env, wait_run
from tests.tokens import ROUTER_ENV

ROOT = Path(__file__).resolve().parent.parent
FUNCTIONS = ("big-make", "big-take", "big-text")
THRESHOLD_BYTES = blobs.DEFAULT_THRESHOLD_BYTES


async def stream_message_sizes(url: str, stream: str) -> list[int]:
    """The payload size of every message the stream holds (its retention keeps them after they are acked)."""
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        state = (await js.stream_info(stream)).state
        return [len((await js.get_msg(stream, seq)).data or b"") for seq in range(state.first_seq, state.last_seq + 1)]
    finally:
        await nc.close()


async def wait_for(store: SqliteStore, run_id: str, timeout_s: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        run = await store.get_run(run_id)
        if run is not None and run["status"] != "running":
            return run
        assert time.monotonic() < deadline, f"run {run_id} not finished in {timeout_s} s: {run}"
        await asyncio.sleep(0.02)


def check_run(run: dict) -> None:
    assert run["status"] == "succeeded", run
    want = large.seen(large.make_text(MB5, "knflow")).model_dump()
    nodes = run["nodes"]
    assert is_ref(nodes["a"]["output"]) and nodes["a"]["output"]["size_bytes"] > MB5
    assert nodes["whole"]["output"] == want  # the reference travelled as it is; big-take resolved it
    assert nodes["field"]["output"] == want  # the router read inside the blob and sent the invoke by reference
    assert nodes["gated"]["status"] == "succeeded"  # a `when:` that reads inside the blob


def check_blobs(root: Path, run_id: str) -> None:
    names = {(*f.relative_to(root).parts[:3], f.name.split("-")[0]) for f in files(root)}
    assert ("runs", run_id, "a", "output") in names and ("runs", run_id, "field", "inputs") in names, names


async def test_5_mb_pass_through_the_blob_store_not_through_nats(nats_server, tmp_path):
    store = BlobStore(f"file://{tmp_path}/blobs", THRESHOLD_BYTES)
    blobs.set_default_store(store)  # the in-process functions' store
    name = f"b{uuid.uuid4().hex[:8]}"
    layout = StreamLayout(stream=name.upper(), prefix=name)
    p = load_string(PIPELINE % {"name": "blob-nats"}, "t.yaml")
    runs = SqliteStore(tmp_path / "k.db")
    try:
        async with NatsStack(nats_server.url, runs, StaticPipelines([p]), layout=layout) as stack:
            stack.router.blobs = store
            for fn in FUNCTIONS:
                await stack.serve_function(fn)
            trigger = events.make_event(
                {"type": "com.example.big", "source": "/tests", "id": uuid.uuid4().hex, "datacontenttype": events.JSON},
                {"size_bytes": MB5},
            )
            started = time.perf_counter()
            run = await stack.router.start_run(p, trigger)
            run = await wait_for(runs, run["id"])
            print(f"\n5 MB a -> whole/field through NATS + blob store: {time.perf_counter() - started:.3f} s")
        check_run(run)
        check_blobs(tmp_path / "blobs", run["id"])
        sizes = await stream_message_sizes(nats_server.url, layout.stream)
        assert len(sizes) >= 8 and max(sizes) < THRESHOLD_BYTES, sizes  # 4 invokes, 4 results, run events
    finally:
        blobs.set_default_store(None)
        await runs.close()


@pytest.fixture(scope="module")
def fabric(nats_server, tmp_path_factory):
    """Router, dispatcher and one HTTP function service per function, all on one blob directory."""
    tmp = tmp_path_factory.mktemp("blob-fabric")
    (tmp / "big.yaml").write_text(PIPELINE % {"name": "blob-fabric"})
    env = {**stream_env(), "KNFLOW_BLOB_URL": f"file://{tmp}/blobs"}
    procs = []
    try:
        port = free_port()
        router = Process(
            [
                "serve",
                "router",
                "--nats",
                nats_server.url,
                "--store",
                f"sqlite:///{tmp}/runs.db",
                "--pipelines",
                str(tmp / "big.yaml"),
                "--port",
                str(port),
                "--host",
                "127.0.0.1",
            ],
            tmp / "router.log",
            port,
            {**env, **ROUTER_ENV},
        ).start()
        procs.append(router)
        routes = []
        for fn in FUNCTIONS:
            fport = free_port()
            procs.append(
                Process(
                    [
                        "serve",
                        "function",
                        fn,
                        "--functions",
                        "tests.fixtures.large",
                        "--port",
                        str(fport),
                        "--host",
                        "127.0.0.1",
                    ],
                    tmp / f"{fn}.log",
                    fport,
                    env,
                ).start()
            )
            routes += ["--function", f"{fn}=http://127.0.0.1:{fport}/"]
        procs.append(
            Process(
                [
                    "serve",
                    "dispatcher",
                    "--nats",
                    nats_server.url,
                    *routes,
                    "--functions",
                    "tests.fixtures.large",
                    "--dead-letter",
                    f"{router.url}/dead-letter",
                ],
                tmp / "dispatcher.log",
                None,
                env,
            ).start()
        )
        router.tmp, router.stream = tmp, env["KNFLOW_STREAM"]
        yield router
    finally:
        for proc in procs:
            proc.stop()


async def test_5_mb_pass_between_function_services_over_http(fabric, nats_server):
    status, body = http("POST", f"{fabric.url}/hooks/blob-fabric", json.dumps({"size_bytes": MB5}).encode())
    assert status == 202, body
    started = time.perf_counter()
    run = await asyncio.to_thread(wait_run, fabric.url, body["run"], 60.0)
    print(f"\n5 MB across processes (router, dispatcher, 3 function services): {time.perf_counter() - started:.3f} s")
    check_run(run)
    check_blobs(fabric.tmp / "blobs", run["id"])
    sizes = await stream_message_sizes(nats_server.url, fabric.stream)
    assert max(sizes) < THRESHOLD_BYTES, sizes
