"""Eventing: the Broker backed by NATS JetStream, the ConfigMaps it reads, and the Triggers that route
invokes to functions and results and external events to the router. Pure.

Every Trigger toward the router (results, external events, dead letters) delivers to its cluster-local
broker ingress (`naming.router_events_service`, `knflow serve router --broker-ingress`): a Trigger cannot
send the API token that the public router asks of external events.

Every Trigger gets a `delivery` with `timeout` set: the native NATS broker reads only the Trigger's
delivery (AckWait = timeout), and the channel-based broker's JetStream channel gives up after a minute
without one. A function's timeout covers a cold start (longer for GPU functions) plus its own run.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml

from broker import events
from broker import extensions as ext
from knative import naming
from knative.durations import iso_seconds
from knative.plan import FunctionPlan
from knative.profile import Profile

EVENTING_NS = "knative-eventing"
BROKER_CLASS = "eventing.knative.dev/broker.class"
CHANNEL_API = "messaging.knative.dev/v1alpha1"
CONN_OPTS = {
    "retryOnFailedConnect": True,
    "maxReconnects": 5,
    "reconnectWaitMilliseconds": 2000,
    "reconnectJitterMilliseconds": 100,
    "reconnectJitterTLSMilliseconds": 1000,
}


def channel_config_map_name(profile: Profile) -> str:
    return f"{profile.broker.name}-channel"


def broker(profile: Profile) -> dict[str, Any]:
    b = profile.broker
    spec: dict[str, Any] = {}
    if b.class_ == "MTChannelBasedBroker":
        spec["config"] = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "name": channel_config_map_name(profile),
            "namespace": profile.namespace,
        }
    spec["delivery"] = {
        "retry": b.retry,
        "backoffPolicy": "exponential",
        "backoffDelay": iso_seconds(b.backoff_delay_s),
    }
    return {
        "apiVersion": "eventing.knative.dev/v1",
        "kind": "Broker",
        "metadata": naming.metadata(b.name, profile.namespace, profile, "broker", annotations={BROKER_CLASS: b.class_}),
        "spec": spec,
    }


def broker_config_maps(profile: Profile) -> list[dict[str, Any]]:
    """The channel template (MT broker), and the NATS connection the broker's data plane uses."""
    b = profile.broker
    out = []
    connection = yaml.safe_dump({"url": b.nats_url, "connOpts": CONN_OPTS}, sort_keys=False)
    if b.class_ == "MTChannelBasedBroker":
        template: dict[str, Any] = {"apiVersion": CHANNEL_API, "kind": "NatsJetStreamChannel"}
        if b.channel_spec:
            template["spec"] = b.channel_spec
        out.append(
            _config_map(
                channel_config_map_name(profile),
                profile.namespace,
                profile,
                {"channel-template-spec": yaml.safe_dump(template, sort_keys=False)},
            )
        )
        if b.connection_config_maps:
            out.append(_config_map("config-nats", EVENTING_NS, profile, {"eventing-nats": connection}))
    elif b.connection_config_maps:
        out.append(_config_map("config-nats-broker", EVENTING_NS, profile, {"eventing-nats": connection}))
    return out


def _config_map(name: str, namespace: str, profile: Profile, data: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": naming.metadata(name, namespace, profile, "broker-config"),
        "data": data,
    }


def delivery_timeout_s(plan: FunctionPlan, profile: Profile) -> int:
    cold = plan.gpu_profile(profile).cold_start_s if plan.gpu else profile.cold_start_s
    return plan.autoscaling.timeout_s + cold


def function_trigger(plan: FunctionPlan, profile: Profile) -> dict[str, Any]:
    r = plan.retry
    delivery = {
        "retry": r.retries,
        "backoffPolicy": r.backoff,
        "backoffDelay": iso_seconds(r.delay_s),
        "timeout": iso_seconds(delivery_timeout_s(plan, profile)),
        "deadLetterSink": naming.service_ref(naming.router_events_service(profile), "/dead-letter"),
    }
    name = naming.function_service(plan.name)
    return _trigger(
        name,
        profile,
        "trigger",
        {"type": events.INVOKE, ext.FUNCTION: plan.name},
        naming.service_ref(name),
        delivery,
        {naming.FUNCTION_LABEL: plan.name},
    )


def router_triggers(filters: list[dict[str, str]], profile: Profile) -> list[dict[str, Any]]:
    """Results of nodes (one Trigger per type: filters match exactly), then each external filter."""
    r = profile.router
    delivery = {
        "retry": r.retry,
        "backoffPolicy": "exponential",
        "backoffDelay": iso_seconds(profile.broker.backoff_delay_s),
        "timeout": iso_seconds(r.timeout_s),
    }
    events_sink = naming.service_ref(naming.router_events_service(profile), "/events")
    out = []
    for etype in events.RESULT_TYPES:
        name = f"{r.name}-{etype.rsplit('.', 1)[1]}"
        out.append(_trigger(name, profile, "trigger", {"type": etype}, events_sink, delivery))
    for flt in filters:
        key = ",".join(f"{k}={v}" for k, v in sorted(flt.items()))
        name = f"{r.name}-on-{naming.slug(flt['type'], naming.MAX_NAME - len(r.name) - 11)}-{naming.short_hash(key)}"
        out.append(_trigger(name, profile, "trigger", dict(flt), events_sink, delivery))
    return out


def _trigger(
    name: str,
    profile: Profile,
    component: str,
    attributes: dict[str, str],
    subscriber: dict[str, Any],
    delivery: dict[str, Any],
    labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    return {
        "apiVersion": "eventing.knative.dev/v1",
        "kind": "Trigger",
        "metadata": naming.metadata(name, profile.namespace, profile, component, extra_labels=labels),
        "spec": {
            "broker": profile.broker.name,
            "filter": {"attributes": attributes},
            "subscriber": subscriber,
            "delivery": delivery,
        },
    }
