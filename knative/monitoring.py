"""How a cluster's Prometheus finds knflow's `/metrics` (broker/metrics.py). Pure.

Every generated pod (the router, its broker ingress, each function) serves `GET /metrics` on its own port
(Knative names that container port `user-port`), so a scrape reaches the process directly, never through
the queue-proxy: it is not counted as a request and does not keep a function from scaling to zero. Each pod
reads the scrape token `KNFLOW_METRICS_TOKEN` from the profile's `metrics_token_secret` (optional: without the
Secret, a function's /metrics is open inside the cluster, as its POST / is; the routers then want a `read`
token). The profile's `monitoring:` says how Prometheus finds the pods:

- `annotations` (the default): `prometheus.io/scrape`, `prometheus.io/port` and `prometheus.io/path` on each
  revision template (so on each pod), for a Prometheus whose kubernetes_sd `pod` job reads them;
- `prometheus-operator`: the same annotations and a `monitoring.coreos.com/v1 PodMonitor` that selects the pods
  by their `app.kubernetes.io/part-of: knflow` label and sends the scrape token from the same Secret;
- `none`: neither.
"""

from __future__ import annotations

from typing import Any

from knative import naming
from knative.profile import Profile

PART_OF = "app.kubernetes.io/part-of"
USER_PORT = "user-port"  # Knative Serving's name for the user container's port on every revision's pod
POD_MONITOR = "knflow"


def scrape_annotations(profile: Profile) -> dict[str, str]:
    """The pod annotations Prometheus' kubernetes_sd `pod` jobs conventionally read."""
    if profile.monitoring == "none":
        return {}
    return {"prometheus.io/scrape": "true", "prometheus.io/port": str(profile.port), "prometheus.io/path": "/metrics"}


def pod_labels() -> dict[str, str]:
    """The revision template's label every knflow pod carries, which the PodMonitor selects."""
    return {PART_OF: "knflow"}


def pod_monitors(profile: Profile) -> list[dict[str, Any]]:
    """A PodMonitor for the router, its broker ingress and the functions, with `monitoring: prometheus-operator`."""
    if profile.monitoring != "prometheus-operator":
        return []
    ref = profile.metrics_token_secret
    return [
        {
            "apiVersion": "monitoring.coreos.com/v1",
            "kind": "PodMonitor",
            "metadata": naming.metadata(POD_MONITOR, profile.namespace, profile, "monitoring"),
            "spec": {
                "selector": {"matchLabels": pod_labels()},
                "podMetricsEndpoints": [
                    {
                        "port": USER_PORT,
                        "path": "/metrics",
                        "authorization": {"type": "Bearer", "credentials": {"name": ref.name, "key": ref.key}},
                    }
                ],
            },
        }
    ]


def notes(profile: Profile) -> list[str]:
    if profile.monitoring == "none":
        return []
    ref = profile.metrics_token_secret
    how = (
        f"the PodMonitor '{POD_MONITOR}' sends it"
        if profile.monitoring == "prometheus-operator"
        else "pods are annotated prometheus.io/scrape, prometheus.io/port and prometheus.io/path; give your "
        "Prometheus' pod job the same value as `authorization: {credentials_file: FILE}`"
    )
    create = (
        f'kubectl create secret generic {ref.name} -n {profile.namespace} --from-literal={ref.key}="$(openssl rand '
        '-hex 32)"'
    )
    return [
        f"GET /metrics on every pod takes the scrape token in Secret '{ref.name}' key '{ref.key}'; {how}: {create}. "
        "Without that Secret, function pods answer /metrics to anyone in the cluster and the routers want a "
        "`read` token."
    ]
