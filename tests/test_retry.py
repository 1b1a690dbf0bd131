"""The one retry policy (broker.retry): defaults, checks, Knative's backoff, and its extension on the wire."""

from __future__ import annotations

import asyncio
import json

import pytest
from cloudevents.core.v1.event import CloudEvent
from structlog.testing import capture_logs

from broker import events
from broker.codec import decode, encode_binary
from broker.errors import DeliveryFailed, InvalidEvent
from broker.memory import InMemoryBroker
from broker.retry import Retry, retry_for


def invoke(**extensions: str) -> CloudEvent:
    attributes = {"type": events.INVOKE, "source": "/t", "id": "run1:n:1", "knflowfunction": "f", **extensions}
    return CloudEvent(attributes, {"inputs": {}, "config": {}})


def test_defaults_are_the_readmes_no_retries_then_exponential_from_one_second():
    assert Retry() == Retry(retries=0, backoff="exponential", delay_s=1.0, max_delay_s=60.0)
    assert Retry().problems() == []


def test_backoff_follows_knative_capped_at_max_delay():
    exponential = Retry(retries=5, backoff="exponential", delay_s=0.5, max_delay_s=10)
    assert [exponential.delay_before_s(n) for n in (1, 2, 3, 4, 5)] == [1.0, 2.0, 4.0, 8.0, 10.0]  # delay * 2^n
    linear = Retry(retries=3, backoff="linear", delay_s=2.5)
    assert [linear.delay_before_s(n) for n in (1, 2, 3)] == [2.5, 5.0, 7.5]


def test_problems_name_each_field_and_the_bad_value():
    assert Retry(retries=-1, backoff="fibonacci", delay_s=-1, max_delay_s="x").problems() == [  # type: ignore[arg-type]
        "retries must be an integer >= 0, got -1",
        "backoff must be 'exponential' or 'linear', got 'fibonacci'",
        "retry delay_s must be a number >= 0, got -1",
        "retry max_delay_s must be >= delay_s, got 'x'",
    ]
    assert Retry(delay_s="1").problems() == ["retry delay_s must be a number >= 0, got '1'"]  # type: ignore[arg-type]
    assert Retry(delay_s=5, max_delay_s=1).problems() == ["retry max_delay_s must be >= delay_s, got 1"]


def test_the_node_policy_travels_as_one_json_extension_and_comes_back_equal():
    retry = Retry(retries=3, backoff="linear", delay_s=0.5, max_delay_s=30)
    ev = events.invoke_event(
        run_id="r", pipeline="p", node="n", attempt=1, function="f", inputs={}, config={}, retry=retry, timeout_s=9
    )
    assert json.loads(ev.get_extension("knflowretry")) == {
        "retries": 3,
        "backoff": "linear",
        "delay_s": 0.5,
        "max_delay_s": 30,
    }
    assert ev.get_extension("knflowtimeout") == "9"
    headers, body = encode_binary(ev)
    assert retry_for(decode(headers, body), Retry()) == retry  # through HTTP headers and back
    no_override = events.invoke_event(run_id="r", pipeline="p", node="n", attempt=1, function="f", inputs={}, config={})
    assert no_override.get_extension("knflowretry") is None
    assert retry_for(no_override, Retry(retries=7)) == Retry(retries=7)


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("3/exponential/1/60", "it is not JSON"),
        ("[3]", "it is JSON but not an object"),
        ('{"retries": 3, "colour": 1}', "unknown field(s) colour"),
        ('{"retries": -2}', "retries must be an integer >= 0, got -2"),
    ],
)
def test_a_bad_value_on_the_wire_names_the_extension(value, why):
    with pytest.raises(InvalidEvent) as err:
        retry_for(invoke(knflowretry=value), Retry())
    assert err.value.message == (
        f"event 'run1:n:1': extension knflowretry has value {value!r}. Expected a JSON object "
        '{"retries": N, "backoff": "exponential"|"linear", "delay_s": S, "max_delay_s": S}; '
        f"{why}."
    )


async def test_the_in_memory_broker_applies_the_nodes_policy_and_survives_a_bad_one():
    calls: list[str] = []
    dead: list[CloudEvent] = []

    async def failing(ev: CloudEvent) -> None:
        calls.append(ev.get_id())
        raise DeliveryFailed("down", retryable=True)

    async def dead_letter(ev: CloudEvent) -> None:
        dead.append(ev)

    broker = InMemoryBroker()
    broker.subscribe({"type": events.INVOKE}, failing, retry=Retry(retries=0), dead_letter=dead_letter, name="fn")
    node_retry = Retry(retries=2, delay_s=0.001, max_delay_s=0.001).extension_value()
    await broker.publish(invoke(knflowretry=node_retry))
    await asyncio.wait_for(broker.idle(), 5)
    assert (len(calls), len(dead)) == (3, 1)  # the node's 2 retries, not the subscriber's none

    calls.clear()
    with capture_logs() as logs:
        await broker.publish(invoke(knflowretry="3/exponential/1/60"))
        await asyncio.wait_for(broker.idle(), 5)
    assert (len(calls), len(dead)) == (1, 2)  # the subscriber's policy applies
    [bad] = [e for e in logs if e["event"] == "bad retry policy on the event; the subscriber's applies"]
    assert "extension knflowretry has value '3/exponential/1/60'" in bad["error"]
