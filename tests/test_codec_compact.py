"""broker.codec's compact form: how knflow keeps its own invokes and results on its stream (structured mode,
written and read by orjson). The event read back from it must be the one binary mode gives, for any data and
attributes, and so must its refusals; an older binary-mode message is still read; the SDK reads it."""

from __future__ import annotations

import json
import math
import re
from datetime import date, datetime, timedelta, timezone, UTC
from typing import Any

import orjson
import pytest
from cloudevents.core.bindings.http import HTTPMessage, from_http_event
from cloudevents.core.v1.event import CloudEvent
from hypothesis import example, given, settings
from hypothesis import strategies as st

from broker import jetstream_wire as wire
from broker.codec import STRUCTURED_CONTENT_TYPE, decode_stored, encode_binary, encode_compact
from broker.errors import InvalidEvent
from broker.limits import INT64_MAX, INT64_MIN, MAX_JSON_DEPTH, may_hold_bad_values

T0 = datetime(2026, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)


def invoke(data: Any, **attributes: Any) -> CloudEvent:
    base = {
        "type": "dev.knflow.invoke",
        "source": "/knflow/router",
        "id": "run1:fetch:1",
        "time": T0,
        "datacontenttype": "application/json",
        "knflowrun": "run1",
    }
    return CloudEvent({**base, **attributes}, data)


def stored(event: CloudEvent, compact: bool) -> tuple[dict[str, str], bytes]:
    """`event` as a NATS message of the stream holds it: headers through a header block, as a delivery has them."""
    headers, body = (encode_compact(event) if compact else None) or encode_binary(event)
    headers["Nats-Msg-Id"] = event.get_id()
    return wire.parse_headers(wire.header_block(headers)) or {}, body


def outcome(event: CloudEvent, compact: bool) -> tuple[str, Any]:
    """What a dispatcher gets from `event` on the stream: the event, or the error that refuses it."""
    try:
        back = decode_stored(*stored(event, compact))
    except (InvalidEvent, TypeError, UnicodeEncodeError) as err:
        return "refused", type(err).__name__
    return "read", (back.get_attributes(), back.get_data())


def same(a: Any, b: Any) -> bool:
    """Equal, and of the same JSON kind all the way down (1 and 1.0, 0.0 and -0.0 told apart; NaN is NaN)."""
    if isinstance(a, float) or isinstance(b, float):
        if not (isinstance(a, float) and isinstance(b, float)):
            return False
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    if isinstance(a, dict):
        return isinstance(b, dict) and list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


TEXT = st.text(st.characters(exclude_categories=[]), max_size=8)  # lone surrogates too: both forms refuse them
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(INT64_MIN, INT64_MAX)
    | st.sampled_from([2**63, 2**64 - 1, 2**64, -(2**63) - 1, 2**70, 2**53 + 1, 0, -1])
    | st.floats()  # NaN and Infinity too
    | TEXT
    | st.sampled_from(["", "null", "NaN", "\x00", "\u2028", "\U0001f600", "é" * 5, "\\u0000", "1" * 25])
)
KEYS = TEXT | st.sampled_from(["", "k\x00", "data", "$", "null"])
VALUES = st.recursive(
    SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=4), max_leaves=12
)
# what JSON has not: the standard encoder's `default` refuses all but datetimes, or writes them its own way
ODD_SCALARS = st.sampled_from([date(2026, 5, 1), b"bytes", (1, "a"), T0, T0.astimezone(timezone(timedelta(hours=5)))])
ODD_KEYS = st.sampled_from([1, -2, None, True, 2.5])
ODD_VALUES = st.recursive(
    SCALARS | ODD_SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS | ODD_KEYS, inner, max_size=3),
    max_leaves=8,
)
ATTRIBUTE_VALUES = TEXT | st.sampled_from([" lead", "trail ", "a\r\nb", "50%", "%20", '"q"', "é", "\ud800", 7, True])


def assert_same_outcome(event: CloudEvent) -> None:
    binary, compact = outcome(event, compact=False), outcome(event, compact=True)
    assert binary[0] == compact[0], (binary, compact)
    if binary[0] == "read":
        assert binary[1][0] == compact[1][0]
        assert same(binary[1][1], compact[1][1]), (binary[1][1], compact[1][1])


@settings(max_examples=400, deadline=None)
@given(data=st.dictionaries(KEYS, VALUES, max_size=4), extension=ATTRIBUTE_VALUES)
def test_the_compact_form_reads_back_as_binary_mode_does(data, extension):
    assert_same_outcome(invoke(data, knflownote=extension))


@settings(max_examples=200, deadline=None)
@given(data=st.dictionaries(KEYS | ODD_KEYS, ODD_VALUES, max_size=3))
@example(data={"t": T0})
@example(data={"t": T0.astimezone(timezone(timedelta(hours=5, minutes=30)))})
@example(data={"d": date(2026, 5, 1)})
@example(data={"tuple": (1, "a"), "none": None})
@example(data={"b": b"x"})
@example(data={1: "a", None: 2})
def test_values_json_has_not_fare_as_in_binary_mode(data):
    assert_same_outcome(invoke(data))


@pytest.mark.parametrize(
    ("data", "what"),
    [
        ({"x": math.nan}, "nan is not a JSON number"),  # orjson would write null
        ({"x": [math.inf, None]}, "inf is not a JSON number"),
        ({"k\x00": 1}, "NUL"),
        ({"n": 2**63}, "64-bit"),
    ],
)
def test_values_binary_mode_refuses_are_refused_in_the_compact_form_too(data, what):
    headers, body = stored(invoke(data), compact=True)
    assert headers["content-type"] == STRUCTURED_CONTENT_TYPE
    with pytest.raises(InvalidEvent, match=what):
        decode_stored(headers, body)


def test_the_compact_form_is_one_header_and_a_json_document():
    event = invoke({"inputs": {"é": [1, 2.5, None]}, "config": None}, knflowattempt=2, knflowflag=True)
    headers, body = stored(event, compact=True)
    assert headers == {"content-type": STRUCTURED_CONTENT_TYPE, "Nats-Msg-Id": "run1:fetch:1"}
    document = orjson.loads(body)
    assert document["time"] == "2026-05-01T12:00:00.123456Z"
    assert (document["knflowattempt"], document["knflowflag"]) == ("2", "true")  # as binary mode sends them
    assert document["data"] == {"inputs": {"é": [1, 2.5, None]}, "config": None}
    back = decode_stored(headers, body)
    assert back.get_attributes() == decode_stored(*stored(event, compact=False)).get_attributes()


@pytest.mark.parametrize(
    "event",
    [
        pytest.param(invoke("text"), id="str-data"),
        pytest.param(invoke([1, 2]), id="list-data"),
        pytest.param(invoke(None), id="no-data"),
        pytest.param(invoke({"a": 1}, datacontenttype="application/vnd.x+json"), id="other-json-type"),
        pytest.param(invoke(b"\x00\xff", datacontenttype="application/octet-stream"), id="bytes"),
        pytest.param(invoke({"n": 2**70}), id="big-int"),
        pytest.param(invoke({"s": "\ud800"}), id="lone-surrogate"),
        pytest.param(invoke({1: "int key"}), id="int-key"),
    ],
)
def test_events_the_compact_form_cannot_keep_exactly_stay_binary_mode(event):
    assert encode_compact(event) is None


def test_an_older_binary_mode_message_is_still_read():
    event = invoke({"inputs": {"x": 1}}, knflowrun='run 1 %20 "q" é')
    headers, body = stored(event, compact=False)
    assert headers["ce-knflowrun"] == "run%201%20%2520%20%22q%22%20%C3%A9"
    back = decode_stored(headers, body)
    assert (back.get_attributes(), back.get_data()) == (event.get_attributes(), event.get_data())


def test_data_nests_as_deep_in_both_forms():
    deep: Any = 1
    for _ in range(MAX_JSON_DEPTH - 1):
        deep = [deep]
    for compact in (False, True):
        assert decode_stored(*stored(invoke({"d": deep}), compact)).get_data() == {"d": deep}
        with pytest.raises(InvalidEvent, match="deeper than"):
            decode_stored(*stored(invoke({"d": [deep]}), compact))


def test_a_structured_event_with_ce_headers_is_binary_mode():
    """A binary-mode event whose data is a structured event is read as binary mode, as `decode` reads it."""
    inner = json.dumps({"specversion": "1.0", "id": "i", "source": "/s", "type": "t", "data": {}}).encode()
    headers = {"content-type": STRUCTURED_CONTENT_TYPE, "ce-source": "/s", "ce-type": "t", "ce-specversion": "1.0"}
    with pytest.raises(InvalidEvent, match="missing required attribute 'id'"):
        decode_stored(headers, inner)


def test_the_sdk_reads_the_compact_form():
    event = invoke({"inputs": {"x": [1, "a"]}}, subject="node fetch", knflowrun='r "1" é')
    headers, body = encode_compact(event) or ({}, b"")
    back = from_http_event(HTTPMessage(headers, body))
    assert back.get_attributes() == event.get_attributes() and back.get_data() == event.get_data()


_OLD_SUSPECT = re.compile(rb"\\u[dD][89a-fA-F]|\\u0000|\d{19}|NaN|Infinity")  # what may_hold_bad_values was


@settings(max_examples=1000, deadline=None)
@given(st.text(alphabet="000000000111119a\\uDd8-NInfity", max_size=60).map(str.encode))
@example(b"1" * 18)
@example(b"-" + b"9" * 19)
@example(b"\\uD83d")
def test_may_hold_bad_values_finds_what_the_regex_found(raw):
    assert may_hold_bad_values(raw) == (_OLD_SUSPECT.search(raw) is not None)
