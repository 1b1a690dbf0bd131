"""CloudEvents 1.0 over HTTP (binary and structured content mode), on the CloudEvents SDK 2.x core.

Encoding goes through the SDK (`cloudevents.core.bindings.http.to_binary` / `to_structured`). Decoding
checks what the SDK lets through, because the SDK is lenient where a broker must not be:

- a missing `id` or `specversion` is silently filled in (a random id: a duplicate can never be recognised);
- a JSON body that does not parse silently becomes text; an `application/octet-stream` body that happens
  to be UTF-8 becomes `str`;
- version 0.3 events are accepted; extension names longer than 20 characters are accepted;
- a bad `time` raises a bare `ValueError` that names no header.

Every problem raises `InvalidEvent` (HTTP 400) with a message that names the header or JSON member, the
value and what was expected; a request that is no CloudEvent at all (no `ce-` headers, no structured-mode
Content-Type) raises its subclass `NotACloudEvent`; a body over `max_bytes` raises `PayloadTooLarge` (413).

Data on the wire: a JSON content type (`application/json`, `text/json`, `*/*+json`) means parsed JSON;
`text/*` means `str`; any other content type means `bytes`. With no content type at all, data is JSON if it
parses, else text if it is UTF-8, else bytes (the SDK's reading, and what `encode_binary` relies on when an
event has no `datacontenttype`). The SDK's constructor fills in `time` when an event has none.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from datetime import datetime, UTC
from typing import Any, Final
from urllib.parse import quote, unquote

import orjson
from cloudevents.core.bindings.http import to_structured
from cloudevents.core.exceptions import BaseCloudEventException
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent
from dateutil.parser import isoparse

from broker.limits import MAX_JSON_DEPTH, check_json_depth, check_values, may_hold_bad_values
from broker.errors import InvalidEvent, NotACloudEvent, PayloadTooLarge

__all__ = [
    "MAX_BODY_BYTES",
    "STRUCTURED_CONTENT_TYPE",
    "decode",
    "decode_stored",
    "encode_binary",
    "encode_compact",
    "encode_structured",
]

MAX_BODY_BYTES: Final = 1024 * 1024  # the default body limit of both services: NATS's default max_payload

STRUCTURED_CONTENT_TYPE: Final = "application/cloudevents+json; charset=utf-8"
_STRUCTURED_MEDIA: Final = "application/cloudevents+json"
_BATCH_MEDIA: Final = "application/cloudevents-batch+json"
_UTF8: Final = {"charset": "utf-8"}
_SPECVERSION: Final = "1.0"
_REQUIRED: Final = ("id", "source", "type", "specversion")
_CONTEXT_ATTRIBUTES: Final = frozenset({*_REQUIRED, "datacontenttype", "dataschema", "subject", "time"})
_EXTENSION_NAME: Final = re.compile(r"[a-z][a-z0-9]*")
_EXTENSION_NAME_MAX_CHARS: Final = 20
_good_extension_names: set[str] = set()  # names already checked: knflow's own events bring the same dozen
_GOOD_EXTENSION_NAMES_MAX: Final = 1024  # external events bring names of their own: the cache stays bounded
_JSON_MEDIA: Final = re.compile(r"(application|text)/([a-z0-9.\-]+\+)?json")
# What the CloudEvents HTTP binding (and the SDK's `quote`) leaves as it is in a header value: printable
# ASCII except space, '"' and '%'. A value made only of these is sent unchanged, without calling `quote`.
_HEADER_SAFE_CHARS: Final = "".join(c for c in map(chr, range(0x21, 0x7F)) if c not in ' "%')
_HEADER_SAFE: Final = re.compile(r"[\x21\x23\x24\x26-\x7e]*")


def _json_default(value: object) -> str:
    if isinstance(value, datetime):
        text = value.isoformat()
        return text[:-6] + "Z" if text.endswith("+00:00") else text
    raise TypeError(f"CloudEvent data holds a {type(value).__name__}, which JSON cannot encode")


class _Format(JSONFormat):
    """The SDK's JSON format, but any JSON value (lists, numbers) as data, not only dicts."""

    def write_data(self, data: Any, datacontenttype: str | None) -> bytes:
        if isinstance(data, bytearray):
            return bytes(data)
        if data is None or isinstance(data, (str, bytes)):
            return super().write_data(data, datacontenttype)
        return _ENCODER.encode(data).encode()


_ENCODER: Final = json.JSONEncoder(
    default=_json_default, separators=(",", ":")
)  # json.dumps(..., default=) builds one per call


_FORMAT: Final = _Format()
_COMPACT_ENCODER: Final = json.JSONEncoder(default=_json_default, separators=(",", ":"), ensure_ascii=False)


# ---- encoding -------------------------------------------------------------------------------------


def encode_binary(event: CloudEvent) -> tuple[dict[str, str], bytes]:
    """Binary mode: `ce-*` headers (percent-encoded), `content-type` = datacontenttype, body = data.

    The same headers, in the same order, as the SDK's `to_binary`, but booleans in lower case (the
    CloudEvents type system spells them so) and without `quote` for values that need no escaping: on
    the hot path this is a fifth of the cost of a message (bench/PROFILE.md)."""
    headers: dict[str, str] = {}
    attributes = event.get_attributes()
    for name, value in attributes.items():
        if value is None:
            continue
        if name == "datacontenttype":
            headers["content-type"] = str(value)
            continue
        if type(value) is str:
            text = value
        elif isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, datetime):
            text = value.isoformat()
            if text.endswith("+00:00"):
                text = text[:-6] + "Z"
        else:
            text = str(value)
        headers["ce-" + name] = text if _HEADER_SAFE.fullmatch(text) else quote(text, safe=_HEADER_SAFE_CHARS)
    return headers, _FORMAT.write_data(event.get_data(), attributes.get("datacontenttype"))


def encode_structured(event: CloudEvent) -> tuple[dict[str, str], bytes]:
    """Structured mode: the whole event as one JSON document (`data`, or `data_base64` for bytes)."""
    message = to_structured(event, _FORMAT)
    return {"content-type": STRUCTURED_CONTENT_TYPE}, message.body


# orjson hands these to `_json_default`, which encodes a datetime as the standard encoder does and refuses
# the others (date, time, dataclasses) as it does, where orjson would encode them itself
_COMPACT_OPTIONS: Final = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


def encode_compact(event: CloudEvent) -> tuple[dict[str, str], bytes] | None:
    """Structured mode written by orjson in one call: how knflow keeps its own invokes and results on its
    stream (bench/PROFILE.md), one header instead of fourteen, read back by `decode` like any structured
    event. Attribute values are written as the text binary mode sends (booleans in lower case, time with a
    Z), so that the event read back is the one binary mode gives, attribute for attribute.

    None when this form could not keep the event exactly, and binary mode is used instead: data that is not
    a JSON object with datacontenttype application/json, or a value orjson refuses (an integer past 64
    bits, a lone surrogate, a key that is not a string). orjson writes NaN and Infinity as `null`, where
    the standard encoder keeps them for `decode` to refuse, as in binary mode: a body with `null` in it
    that does not read back as the event is written again by the standard encoder."""
    attributes = event.get_attributes()
    data = event.get_data()
    if attributes.get("datacontenttype") != "application/json" or not isinstance(data, dict):
        return None
    document = dict(attributes)
    for name, value in attributes.items():
        if type(value) is str:
            continue
        if value is None:
            del document[name]
        elif isinstance(value, bool):
            document[name] = "true" if value else "false"
        elif isinstance(value, datetime):
            document[name] = _json_default(value)
        else:
            document[name] = str(value)
    document["data"] = data
    try:
        body = orjson.dumps(document, default=_json_default, option=_COMPACT_OPTIONS)
    except TypeError:  # orjson.JSONEncodeError is one
        return None
    if b"null" in body and orjson.loads(body) != document:  # a NaN (or a datetime, a tuple) in the data
        body = _COMPACT_ENCODER.encode(document).encode()  # no lone surrogates (orjson refused them): UTF-8
    return {"content-type": STRUCTURED_CONTENT_TYPE}, body


# ---- decoding -------------------------------------------------------------------------------------


def decode(headers: Mapping[str, str], body: bytes, max_bytes: int | None = None) -> CloudEvent:
    """A CloudEvent from an HTTP request or response: binary mode if any `ce-` header, else structured."""
    if max_bytes is not None and len(body) > max_bytes:
        raise PayloadTooLarge(
            f"CloudEvent body is {len(body):,} bytes; the limit is {max_bytes:,} bytes (max_bytes).",
            size_bytes=len(body),
            max_bytes=max_bytes,
        )
    attributes: dict[str, Any] = {}
    content_type: str | None = None
    for name, value in headers.items():
        key = name.lower()
        if key.startswith("ce-"):
            attribute = key[3:]
            if attribute in attributes:
                raise InvalidEvent(f"CloudEvent header {name} appears twice; send each attribute once.")
            attributes[attribute] = unquote(value) if "%" in value else value  # invalid escapes stay
        elif key == "content-type":
            content_type = value
    if attributes:
        return _decode_binary(attributes, content_type, body)
    return _decode_structured(content_type, body)


def decode_stored(headers: Mapping[str, str], body: bytes) -> CloudEvent:
    """A CloudEvent as a NATS message of the stream holds it: binary mode (external events, and knflow's
    own as older versions stored them) or structured mode (`encode_compact`). The one difference from
    `decode`: structured-mode data may nest as deep as binary-mode data (`MAX_JSON_DEPTH`), one level
    below the body, so that an event's form on the stream never decides whether it is read."""
    content_type = headers.get("content-type")
    if content_type == STRUCTURED_CONTENT_TYPE and not any(name[:3].lower() == "ce-" for name in headers):
        return _decode_structured(content_type, body, MAX_JSON_DEPTH + 1)
    return decode(headers, body)


def _decode_binary(attributes: dict[str, Any], content_type: str | None, body: bytes) -> CloudEvent:
    where = "binary mode: header ce-{}".format
    if "datacontenttype" in attributes:
        raise InvalidEvent(
            "CloudEvent header ce-datacontenttype is not allowed in binary mode: "
            "send the data's media type as the Content-Type header."
        )
    _check_attributes(attributes, where)
    content_type = (content_type or "").strip() or None  # an empty Content-Type is no Content-Type
    if content_type is not None:
        attributes["datacontenttype"] = content_type
    data = _read_data(body, content_type)
    return _build(attributes, data)


def _decode_structured(content_type: str | None, body: bytes, max_depth: int = MAX_JSON_DEPTH) -> CloudEvent:
    if content_type == STRUCTURED_CONTENT_TYPE:  # what knflow writes
        media, params = _STRUCTURED_MEDIA, _UTF8
    else:
        media, params = _parse_media_type(content_type)
    if media == _BATCH_MEDIA:
        raise InvalidEvent(
            f"Content-Type {content_type!r} is batched mode, which knflow does not accept (nor does Knative): "
            "send one event per request."
        )
    if media != _STRUCTURED_MEDIA:
        got = f"Content-Type {content_type!r}" if content_type else "no Content-Type"
        raise NotACloudEvent(
            f"Not a CloudEvent: no ce- headers (binary mode) and {got} (structured mode needs "
            f"'{_STRUCTURED_MEDIA}'). Send the event in binary or structured mode.",
            content_type=content_type,
        )
    document = _read_document(body, params.get("charset", "utf-8"), content_type, max_depth)
    if not isinstance(document, dict):
        raise InvalidEvent(f"Structured CloudEvent body must be a JSON object, got a JSON {_json_kind(document)}.")
    has_data, data = "data" in document, document.pop("data", None)
    data_base64 = document.pop("data_base64", None)
    attributes = {k: v for k, v in document.items() if v is not None}
    where = "structured mode: JSON member '{}'".format
    for name, value in attributes.items():
        if type(value) is not str and not isinstance(value, (str, int)):  # bool is an int
            raise InvalidEvent(
                f"CloudEvent attribute '{name}' ({where(name)}) is a JSON {_json_kind(value)}; "
                "attributes are strings, integers or booleans."
            )
    _check_attributes(attributes, where)
    if data_base64 is not None:
        if has_data and data is not None:
            raise InvalidEvent("Structured CloudEvent has both 'data' and 'data_base64'; send one of them.")
        if not isinstance(data_base64, str):
            raise InvalidEvent(
                f"Structured CloudEvent member 'data_base64' is a JSON {_json_kind(data_base64)}; expected a "
                "base64 string."
            )
        try:
            data = base64.b64decode(data_base64, validate=True)
        except (binascii.Error, ValueError) as err:
            raise InvalidEvent(
                f"Structured CloudEvent member 'data_base64' is not valid base64 ({err}): {_preview(data_base64)!r}."
            ) from None
    return _build(attributes, data)


def _read_document(body: bytes, charset: str, content_type: str | None, max_depth: int) -> Any:
    """The JSON of a structured-mode body: orjson where it reads what `json` would (as `_read_data`)."""
    check_json_depth(body, "Structured CloudEvent body", max_depth)
    if charset.lower() == "utf-8" and not may_hold_bad_values(body):
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError:
            document = None  # bad UTF-8, bad JSON: the standard path names the problem
        if document is not None:
            return document
    text = _decode_text(body, charset, f"Structured CloudEvent (Content-Type {content_type!r})")
    try:
        return check_values(json.loads(text), text, "Structured CloudEvent body")
    except json.JSONDecodeError as err:
        raise InvalidEvent(
            f"Structured CloudEvent body is not valid JSON: {err.msg} at line {err.lineno} column {err.colno} "
            f"(char {err.pos})."
        ) from None


def _check_attributes(attributes: dict[str, Any], where: Any) -> None:
    for name in _REQUIRED:
        value = attributes.get(name)
        if value is None:
            raise InvalidEvent(f"CloudEvent is missing required attribute '{name}' ({where(name)}).", attribute=name)
        if not isinstance(value, str) or not value:
            raise InvalidEvent(
                f"CloudEvent attribute '{name}' ({where(name)}) has value {value!r}. Expected a non-empty string.",
                attribute=name,
            )
    if attributes["specversion"] != _SPECVERSION:
        raise InvalidEvent(
            f"CloudEvent specversion {attributes['specversion']!r} ({where('specversion')}) is not supported; "
            f"knflow accepts CloudEvents {_SPECVERSION} only.",
            attribute="specversion",
        )
    for name, value in attributes.items():
        if name in _CONTEXT_ATTRIBUTES:
            if name in ("subject", "dataschema", "datacontenttype") and (not isinstance(value, str) or not value):
                raise InvalidEvent(
                    f"CloudEvent attribute '{name}' ({where(name)}) has value {value!r}. Expected a non-empty string.",
                    attribute=name,
                )
            continue
        if name in _good_extension_names:
            continue
        if name == "data" or not _EXTENSION_NAME.fullmatch(name) or len(name) > _EXTENSION_NAME_MAX_CHARS:
            reason = (
                "'data' is reserved"
                if name == "data"
                else f"Knative requires ^[a-z][a-z0-9]*$ and at most {_EXTENSION_NAME_MAX_CHARS} characters"
            )
            raise InvalidEvent(
                f"CloudEvent extension name {name!r} ({where(name)}) is not valid: {reason}.", attribute=name
            )
        if len(_good_extension_names) < _GOOD_EXTENSION_NAMES_MAX:
            _good_extension_names.add(name)
    if "time" in attributes:
        attributes["time"] = _parse_time(attributes["time"], where("time"))


def _parse_time(value: Any, where: str) -> datetime:
    expected = "Expected an RFC 3339 timestamp like 2026-05-01T12:00:00Z"
    if not isinstance(value, str):
        raise InvalidEvent(f"CloudEvent attribute 'time' ({where}) is {value!r}. {expected}.", attribute="time")
    try:
        parsed = datetime.fromisoformat(value)  # C, fast; RFC 3339 forms it lacks go to dateutil
    except ValueError:
        parsed = None
    try:
        parsed = parsed or isoparse(value)
    except (ValueError, OverflowError):
        raise InvalidEvent(
            f"CloudEvent attribute 'time' ({where}) has value {value!r}. {expected}.", attribute="time"
        ) from None
    if parsed.tzinfo is None:
        raise InvalidEvent(
            f"CloudEvent attribute 'time' ({where}) has value {value!r}, which has no UTC offset. {expected}.",
            attribute="time",
        )
    return parsed


def _read_data(body: bytes, content_type: str | None) -> Any:
    if not body:
        return None
    if content_type is None:  # no media type: JSON if it parses, else text, else bytes (as the SDK)
        check_json_depth(body, "CloudEvent data")
        try:
            value = json.loads(body)
        except ValueError:
            pass
        else:
            return check_values(value, body, "CloudEvent data")
        try:
            return body.decode("utf-8")
        except UnicodeDecodeError:
            return body
    # knflow's own events: orjson, unless the text may hold what check_values refuses
    if content_type == "application/json" and not may_hold_bad_values(body):
        check_json_depth(body, "CloudEvent data (Content-Type 'application/json')")
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            pass  # NaN, big integers, bad UTF-8, bad JSON: the standard path reads it or names the problem
    media, params = _parse_media_type(content_type)
    what = f"CloudEvent data (Content-Type {content_type!r})"
    if _JSON_MEDIA.fullmatch(media):
        text = _decode_text(body, params.get("charset", "utf-8"), what)
        check_json_depth(body, what)
        try:
            return check_values(json.loads(text), text, what)
        except json.JSONDecodeError as err:
            raise InvalidEvent(
                f"{what} is not valid JSON: {err.msg} at line {err.lineno} column {err.colno} (char {err.pos})."
            ) from None
    if media.startswith("text/"):
        return _decode_text(body, params.get("charset", "utf-8"), what)
    return body


def _build(attributes: dict[str, Any], data: Any) -> CloudEvent:
    """`_check_attributes` checked all that the SDK's constructor checks, and more: skip its checks."""
    return trusted_event(attributes, data)


def _sdk_layout_is_known() -> bool:
    try:
        probe = CloudEvent({"id": "i", "source": "/s", "type": "t"}, None)
    except BaseCloudEventException:
        return False
    return set(vars(probe)) == {"_attributes", "_data"}


_SDK_LAYOUT_KNOWN: Final = _sdk_layout_is_known()


def trusted_event(attributes: dict[str, Any], data: Any) -> CloudEvent:
    """A CloudEvent from attributes already known to be valid (knflow's own events, or checked by
    `decode`), without the SDK constructor's validation, which costs as much as encoding the event.
    Fills in `specversion`, `id` and `time` as the constructor does; keeps and may mutate `attributes`.
    Should a future SDK keep its state elsewhere, this falls back to the validating constructor."""
    if not _SDK_LAYOUT_KNOWN:
        try:
            return CloudEvent(attributes, data)
        except BaseCloudEventException as err:
            raise InvalidEvent(f"Invalid CloudEvent: {err}") from None
    if "specversion" not in attributes:
        attributes["specversion"] = _SPECVERSION
    if "id" not in attributes:
        return CloudEvent(attributes, data)  # a random id: rare, and the SDK's to make
    if "time" not in attributes:
        attributes["time"] = datetime.now(UTC)
    event = CloudEvent.__new__(CloudEvent)
    event._attributes = attributes
    event._data = data
    return event


def _parse_media_type(content_type: str | None) -> tuple[str, dict[str, str]]:
    if not content_type:
        return "", {}
    media, *rest = content_type.split(";")
    params = {}
    for param in rest:
        key, sep, value = param.partition("=")
        if sep:
            params[key.strip().lower()] = value.strip().strip('"')
    return media.strip().lower(), params


def _decode_text(body: bytes, charset: str, what: str) -> str:
    try:
        return body.decode(charset)
    except LookupError:
        raise InvalidEvent(f"{what} names charset {charset!r}, which is unknown; send UTF-8.") from None
    except UnicodeDecodeError as err:
        raise InvalidEvent(f"{what} is not valid {charset}: {err.reason} at byte {err.start}.") from None


def _json_kind(value: object) -> str:
    kinds = {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number"}
    return "null" if value is None else kinds.get(type(value), type(value).__name__)


def _preview(text: str, max_chars: int = 40) -> str:
    return text if len(text) <= max_chars else text[:max_chars] + "…"
