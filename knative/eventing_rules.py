"""Knative Eventing's webhook rules: Destinations (knative.dev/pkg), `delivery` (eventing
`duck/v1/delivery_types.go`), Trigger (`v1/trigger_validation.go` and the subscriptions API filters), Broker,
and PingSource (`sources/v1/ping_validation.go`, CloudEventOverrides). Pure.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import zoneinfo
from typing import Any

from knative import cesql, cron
from knative.durations import parse_iso_duration_s
from knative.rules import Cluster, rule, spec_of

ATTRIBUTE_NAME = re.compile(r"^[a-z][a-z0-9]*$")
EXTENSION_NAME = re.compile(r"^[a-z0-9]+$")
CE_CORE_ATTRIBUTES = {"id", "source", "specversion", "type", "datacontenttype", "dataschema", "subject", "time", "data"}


# ---- destinations and delivery --------------------------------------------------------------------


def destination(dest: Any, path: str, namespace: str | None, c: Cluster) -> list[tuple[str, str]]:
    if not isinstance(dest, dict) or (not dest.get("ref") and not dest.get("uri")):
        return [(path, "expected at least one of ref, uri; got none")]
    ref, uri = dest.get("ref"), dest.get("uri")
    absolute = isinstance(uri, str) and re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://[^/]+", uri) is not None
    if ref and uri and absolute:
        return [(f"{path}.uri", "an absolute URI is not allowed together with ref; give a path")]
    if not ref and not absolute:
        return [(f"{path}.uri", f"relative URI {uri!r} is not allowed without ref")]
    out = []
    if ref:
        for key in ("apiVersion", "kind", "name"):
            if not ref.get(key):
                out.append((f"{path}.ref.{key}", "missing field"))
        if ref.get("namespace") and namespace and ref["namespace"] != namespace and not c.cross_namespace_refs:
            out.append((f"{path}.ref.namespace", f"must be the resource's own namespace {namespace!r}"))
    return out


def _iso(value: Any, path: str, positive: bool = False) -> list[tuple[str, str]]:
    try:
        seconds = parse_iso_duration_s(value)
    except ValueError as exc:
        return [(path, str(exc))]
    if positive and seconds <= 0:
        return [(path, f"{value!r} must be greater than zero")]
    if seconds < 0:
        return [(path, f"{value!r} must not be negative")]
    return []


@rule("Trigger", "Broker")
def delivery(m: dict, c: Cluster) -> list[tuple[str, str]]:
    d = spec_of(m).get("delivery")
    if d is None:
        return []
    out, at = [], "spec.delivery"
    if "deadLetterSink" in d:
        out += destination(d["deadLetterSink"], f"{at}.deadLetterSink", m["metadata"].get("namespace"), c)
    retry = d.get("retry")
    if retry is not None and (isinstance(retry, bool) or not isinstance(retry, int) or retry < 0):
        out.append((f"{at}.retry", f"retry {retry!r} must be an integer >= 0"))
    if "backoffPolicy" in d and d["backoffPolicy"] not in ("linear", "exponential"):
        out.append((f"{at}.backoffPolicy", f"backoffPolicy {d['backoffPolicy']!r} must be linear or exponential"))
    if "backoffDelay" in d:
        out += _iso(d["backoffDelay"], f"{at}.backoffDelay")
    if "timeout" in d:
        out += (
            _iso(d["timeout"], f"{at}.timeout", positive=True)
            if c.delivery_timeout
            else [(f"{at}.timeout", "needs the eventing feature delivery-timeout")]
        )
    if "retryAfterMax" in d:
        out += (
            _iso(d["retryAfterMax"], f"{at}.retryAfterMax")
            if c.delivery_retry_after
            else [(f"{at}.retryAfterMax", "needs the eventing feature delivery-retryafter (alpha, off by default)")]
        )
    if "format" in d and d["format"] not in ("json", "binary"):
        out.append((f"{at}.format", f"format {d['format']!r} must be json or binary"))
    return out


# ---- Trigger and Broker ---------------------------------------------------------------------------


@rule("Trigger")
def trigger_broker(m: dict, c: Cluster) -> list[tuple[str, str]]:
    spec = spec_of(m)
    if bool(spec.get("broker")) == bool(spec.get("brokerRef")):
        return [("spec.broker", "exactly one of broker and brokerRef must be given")]
    ns = (spec.get("brokerRef") or {}).get("namespace")
    if ns and ns != m["metadata"].get("namespace") and not c.cross_namespace_refs:
        return [
            (
                "spec.brokerRef.namespace",
                "a broker in another namespace needs the eventing feature cross-namespace-event-links",
            )
        ]
    return []


@rule("Trigger")
def trigger_subscriber(m: dict, c: Cluster) -> list[tuple[str, str]]:
    return destination(spec_of(m).get("subscriber"), "spec.subscriber", m["metadata"].get("namespace"), c)


@rule("Trigger")
def trigger_filter_attributes(m: dict, c: Cluster) -> list[tuple[str, str]]:
    attrs = ((spec_of(m).get("filter") or {}).get("attributes")) or {}
    return [
        ("spec.filter.attributes", f"invalid attribute name {k!r}: lowercase letters and digits, a letter first")
        for k in attrs
        if not ATTRIBUTE_NAME.match(str(k))
    ]


@rule("Trigger")
def trigger_filters(m: dict, c: Cluster) -> list[tuple[str, str]]:
    out = []
    for i, f in enumerate(spec_of(m).get("filters") or []):
        out += _filter_problems(f, f"spec.filters[{i}]")
    return out


def _filter_problems(f: dict, at: str) -> list[tuple[str, str]]:
    dialects = [d for d in ("exact", "prefix", "suffix", "all", "any", "not", "cesql") if f.get(d)]
    out = []
    if len(dialects) > 1:
        out.append((at, f"multiple dialects found ({', '.join(dialects)}), filters can have only one dialect set"))
    for d in ("exact", "prefix", "suffix"):
        attrs = f.get(d)
        if attrs:
            if len(attrs) != 1:
                out.append((f"{at}.{d}", "multiple items found, can have only one key-value"))
            out += [
                (f"{at}.{d}", f"invalid attribute name {k!r}: lowercase letters and digits, a letter first")
                for k in attrs
                if not ATTRIBUTE_NAME.match(str(k))
            ]
    for d in ("all", "any"):
        if d in f:
            if not f[d]:
                out.append((f"{at}.{d}", f"{d} must contain at least one nested filter"))
            for j, nested in enumerate(f[d] or []):
                out += _filter_problems(nested, f"{at}.{d}[{j}]")
    if f.get("not"):
        out += _filter_problems(f["not"], f"{at}.not")
    if "cesql" in f:
        out += [(f"{at}.cesql", msg) for msg in cesql.parse_problems(f["cesql"])]
    return out


@rule("Broker")
def broker_class_and_config(m: dict, c: Cluster) -> list[tuple[str, str]]:
    out = []
    if not (m["metadata"].get("annotations") or {}).get("eventing.knative.dev/broker.class"):
        out.append(
            (
                "metadata.annotations[eventing.knative.dev/broker.class]",
                "give the broker class; the cluster default may not be backed by NATS",
            )
        )
    config = spec_of(m).get("config")
    if config is not None:
        out += [(f"spec.config.{k}", "missing field") for k in ("apiVersion", "kind", "name") if not config.get(k)]
    return out


# ---- PingSource -----------------------------------------------------------------------------------


@rule("PingSource")
def ping_schedule(m: dict, c: Cluster) -> list[tuple[str, str]]:
    return [("spec.schedule", msg) for msg in cron.schedule_problems(spec_of(m).get("schedule", "* * * * *"))]


@rule("PingSource")
def ping_timezone(m: dict, c: Cluster) -> list[tuple[str, str]]:
    tz = spec_of(m).get("timezone")
    if not tz or tz in ("UTC", "Local"):
        return []
    try:
        zoneinfo.ZoneInfo(tz)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return [("spec.timezone", f"provided bad location {tz!r}: expected an IANA time zone such as 'Europe/Berlin'")]
    return []


@rule("PingSource")
def ping_data(m: dict, c: Cluster) -> list[tuple[str, str]]:
    spec = spec_of(m)
    data, data64 = spec.get("data") or "", spec.get("dataBase64") or ""
    if data and data64:
        return [("spec.data", "expected exactly one of data, dataBase64; got both")]
    text, at = data, "spec.data"
    if data64:
        at = "spec.dataBase64"
        try:
            text = base64.b64decode(data64, validate=True).decode("utf-8", "replace")
        except (binascii.Error, ValueError) as exc:
            return [(at, f"not base64: {exc}")]
    if text and spec.get("contentType") == "application/json":
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError as exc:
            return [(at, f"not valid JSON: {exc.msg}")]
        if not isinstance(parsed, dict):
            return [(at, "must be a JSON object when contentType is application/json")]
    return []


@rule("PingSource")
def ping_sink(m: dict, c: Cluster) -> list[tuple[str, str]]:
    return destination(spec_of(m).get("sink"), "spec.sink", m["metadata"].get("namespace"), c)


@rule("PingSource")
def ce_overrides(m: dict, c: Cluster) -> list[tuple[str, str]]:
    ext = ((spec_of(m).get("ceOverrides") or {}).get("extensions")) or {}
    out = []
    for k in ext:
        if not EXTENSION_NAME.match(str(k)):
            out.append((f"spec.ceOverrides.extensions[{k}]", "extension names must be lowercase letters and digits"))
        elif k in CE_CORE_ATTRIBUTES:
            out.append((f"spec.ceOverrides.extensions[{k}]", f"{k!r} is a CloudEvents attribute, not an extension"))
    return out
