"""The admission-webhook rules of Knative Serving and Eventing that the CRD schemas do not express,
checked in code (shared/knative/README.md §8). Each rule is a small function: a manifest and what is known
about the cluster in, a list of (path, problem) out; `check` runs every rule that applies to a manifest.

    problems = check(manifests, Cluster.from_profile(profile))

The rules live in `serving_rules` (Service: autoscaling annotations and ranges, timeouts, concurrency,
feature flags, the container contract) and `eventing_rules` (Trigger broker one-of, filters with one dialect
each, attribute names, CESQL that parses; delivery durations and policies; Destinations; Broker; PingSource
cron, time zone, data and sink). Pure.
"""

from __future__ import annotations

from knative import eventing_rules, serving_rules
from knative.rules import RULES, WARNING_RULES, Cluster, RuleProblem, check

__all__ = ["RULES", "WARNING_RULES", "Cluster", "RuleProblem", "check", "eventing_rules", "serving_rules"]
