"""Traces end to end: a diamond run across a real nats-server, a router, a dispatcher and four HTTP function
services, each its own process with OTEL_* set, exporting over OTLP/HTTP to a receiver in this test that
decodes the real protobuf payloads.

The processes batch their spans for a minute (OTEL_BSP_SCHEDULE_DELAY), so every span arrives through the
flush each process does when it is stopped: what a function service that scales to zero must do.

    run fabric                                   router
      node split                                 router (emitted when its result is applied)
        publish T.invoke.split-words             router      PRODUCER  messaging.system=nats
          process T.invoke.split-words           dispatcher  CONSUMER
            process split-words                  function    CONSUMER  messaging.system=knative
              function split-words               function
                publish T.result.fabric          dispatcher  PRODUCER
                  process T.result.fabric        router      CONSUMER
"""

from __future__ import annotations

import json

import pytest

from tests.otlp_receiver import OtlpReceiver, Span
from tests.test_fabric_e2e import http, start_fabric, wait_run

pytestmark = pytest.mark.usefixtures("otel_installed")  # tests/conftest.py: fails, naming the extra, without it

NODES = {"split": "split-words", "count": "count-words", "shout": "shout-words", "summary": "summarize"}
SPANS_PER_NODE = 7  # node, publish, process (dispatcher), process (function service), function, publish, process
BATCH_FOR_A_MINUTE = {"OTEL_BSP_SCHEDULE_DELAY": "60000"}
ALL_RUN_EVENTS = {"KNFLOW_RUN_EVENTS": "all"}  # no pipeline listens to them here: published for their spans


@pytest.fixture(scope="module")
def traced(nats_server, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("traced")
    with OtlpReceiver() as receiver:
        router, procs = start_fabric(
            nats_server.url, tmp, f"sqlite:///{tmp}/runs.db", {**receiver.env(), **BATCH_FOR_A_MINUTE, **ALL_RUN_EVENTS}
        )
        try:
            yield router, procs, receiver
        finally:
            for p in procs:
                p.stop()


def one(spans: list[Span], **want: object) -> Span:
    """The one span with these fields (`attr_NAME` for an attribute, dots as `__`)."""
    found = [
        s
        for s in spans
        if all(
            (s.attributes.get(k[5:].replace("__", ".")) if k.startswith("attr_") else getattr(s, k)) == v
            for k, v in want.items()
        )
    ]
    assert len(found) == 1, f"{len(found)} spans match {want}: {[(s.service, s.name) for s in found]}"
    return found[0]


def check_node(spans: list[Span], run: dict, root: Span, node: str, prefix: str) -> None:
    function, invoke_id = NODES[node], f"{run['id']}:{node}:1"
    span = one(spans, name=f"node {node}", service="knflow-router")
    assert span.parent_span_id == root.span_id and span.attributes["knflow.node.status"] == "succeeded"
    assert span.attributes["knflow.function"] == function and span.attributes["knflow.attempt"] == 1
    subject = f"{prefix}.invoke.{function}"
    publish = one(spans, name=f"publish {subject}", kind="producer", service="knflow-router")
    assert publish.parent_span_id == span.span_id
    assert (
        publish.attributes
        | {
            "messaging.system": "nats",
            "messaging.destination.name": subject,
            "messaging.operation.type": "publish",
            "messaging.message.id": invoke_id,
            "cloudevents.event_id": invoke_id,
            "cloudevents.event_source": "/knflow/router",
            "cloudevents.event_type": "dev.knflow.invoke",
            "cloudevents.event_subject": node,
            "cloudevents.event_spec_version": "1.0",
            "knflow.node": node,
        }
        == publish.attributes
    ), publish.attributes
    delivered = one(spans, name=f"process {subject}", kind="consumer", service="knflow-dispatcher")
    assert delivered.parent_span_id == publish.span_id
    assert delivered.attributes["messaging.operation.type"] == "process"
    assert delivered.attributes["messaging.consumer.group.name"] == f"fn-{function}"
    assert delivered.attributes["cloudevents.event_id"] == invoke_id
    assert delivered.attributes["knflow.delivery.status"] == 200
    served = one(spans, name=f"process {function}", kind="consumer", service=f"knflow-function-{function}")
    assert served.parent_span_id == delivered.span_id  # the dispatcher's context, in ce-traceparent
    assert served.attributes["messaging.system"] == "knative"
    assert served.attributes["cloudevents.event_type"] == "dev.knflow.invoke"
    ran = one(spans, name=f"function {function}", service=f"knflow-function-{function}")
    assert ran.parent_span_id == served.span_id and ran.attributes["knflow.node"] == node and ran.error is None
    result_subject = f"{prefix}.result.fabric"
    replied = one(spans, name=f"publish {result_subject}", service="knflow-dispatcher", attr_knflow__node=node)
    assert replied.parent_span_id == ran.span_id and replied.kind == "producer"
    assert replied.attributes["cloudevents.event_type"] == "dev.knflow.node.succeeded"
    assert replied.attributes["cloudevents.event_id"] == f"{invoke_id}:ok"
    assert replied.attributes["cloudevents.event_source"] == f"/knflow/functions/{function}"
    applied = one(spans, name=f"process {result_subject}", service="knflow-router", attr_knflow__node=node)
    assert applied.parent_span_id == replied.span_id and applied.kind == "consumer"
    assert applied.attributes["messaging.consumer.group.name"] == "router-results"
    assert root.start_ns <= span.start_ns <= publish.start_ns <= delivered.start_ns <= served.start_ns
    assert ran.end_ns <= replied.end_ns and applied.start_ns <= span.end_ns <= root.end_ns


def test_a_diamond_run_is_one_trace_across_every_process_and_replays_link_to_it(traced):
    router, procs, receiver = traced
    prefix = procs[0].env["KNFLOW_SUBJECT_PREFIX"]
    status, body = http("POST", f"{router.url}/hooks/fabric", b'{"text": "traced all the way"}')
    assert status == 202, body
    run = wait_run(router.url, body["run"])
    assert run["status"] == "succeeded" and len(run["trace_id"]) == 32, run
    status, rerun = http("POST", f"{router.url}/runs/{run['id']}/replay", json.dumps({"new_run": True}).encode())
    assert status == 202, rerun
    rerun = wait_run(router.url, rerun["id"])
    status, _ = http("POST", f"{router.url}/runs/{run['id']}/replay", json.dumps({"from": "count"}).encode())
    assert status == 202
    redriven = wait_run(router.url, run["id"])
    traces = {run["trace_id"], rerun["trace_id"], redriven["trace_id"]}
    assert rerun["status"] == redriven["status"] == "succeeded" and len(traces) == 3
    for p in procs:
        p.stop()  # SIGTERM: each process flushes the spans it batched as it exits

    # each process exported what it held before it exited: every span is here (waited for all the same)
    spans = receiver.wait_for(lambda got: len({s.service for s in got}) == 6 and len(got) >= 31 + 30 + 16)
    first = [s for s in spans if s.trace_id == run["trace_id"]]
    root = one(first, name="run fabric", service="knflow-router")
    assert root.parent_span_id == "" and root.links == [] and root.error is None
    assert root.attributes["knflow.run.id"] == run["id"] and root.attributes["knflow.run.status"] == "succeeded"
    assert root.attributes["cloudevents.event_type"] == "dev.knflow.webhook"
    assert root.attributes["cloudevents.event_source"] == "/hooks/fabric"
    for node in NODES:
        check_node(first, run, root, node, prefix)
    started = one(first, name=f"publish {prefix}.run.fabric.started")
    ended = one(first, name=f"publish {prefix}.run.fabric.succeeded")
    assert started.parent_span_id == ended.parent_span_id == root.span_id
    assert len(first) == 1 + SPANS_PER_NODE * len(NODES) + 2  # and nothing else in the run's trace

    again = [s for s in spans if s.trace_id == rerun["trace_id"]]
    rerun_root = one(again, name="run fabric")
    assert [(link.trace_id, link.span_id, link.attributes) for link in rerun_root.links] == [
        (root.trace_id, root.span_id, {"knflow.link": "rerun"})
    ]
    assert rerun_root.attributes["knflow.run.replay_of"] == run["id"]
    # the same spans, but a re-run publishes no run.started (Router.rerun goes straight to advance)
    assert sorted(s.name for s in again) == sorted(s.name for s in first if s is not started)

    redrive = [s for s in spans if s.trace_id == redriven["trace_id"]]
    redrive_root = one(redrive, name="run fabric")
    assert [(link.trace_id, link.span_id, link.attributes["knflow.link"]) for link in redrive_root.links] == [
        (root.trace_id, root.span_id, "redrive")
    ]
    assert redrive_root.start_ns > root.end_ns
    assert {s.name for s in redrive if s.name.startswith("node ")} == {"node count", "node summary"}
    assert one(redrive, name="node count").attributes["knflow.attempt"] == 2

    logged = [json.loads(line) for line in router.output(10**8).splitlines() if line.startswith("{")]
    applied = [e for e in logged if e.get("event") == "node succeeded" and e.get("run") == run["id"]]
    assert len(applied) == 4 + 2 and {e.get("trace_id") for e in applied} == {run["trace_id"], redriven["trace_id"]}
    assert all(len(e["span_id"]) == 16 for e in applied)
