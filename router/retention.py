"""Retention (pure): how long a run is kept, and when it expires.

A run expires `retention` after it was created: its pipeline's `retention:` (`7d`, `12h`), else the router's
(`KNFLOW_RETENTION`, default 30 days). The run document keeps the time (`expires_at`); the router's sweeper
deletes expired runs with their node logs, items and blobs once an hour (`Router.prune`), MongoDB's TTL
index (on `expire_at`, a day later) deletes a run no router swept, and `knflow runs prune --older-than 7d`
deletes by age at once. The events `knflow events replay` reads have their own retention (JetStream's
`max_age`).
"""

from __future__ import annotations

from datetime import datetime, timedelta

DEFAULT_RETENTION = "30d"
PRUNE_INTERVAL_S = 3600.0  # how often a router deletes expired runs
TTL_GRACE_S = 86400.0  # MongoDB's TTL deletes a run this long after it expired, if no router did


def expires_at(created_at: str, retention_s: float) -> str:
    """The time a run created at `created_at` (ISO 8601, `...Z`) expires."""
    then = datetime.fromisoformat(created_at.replace("Z", "+00:00")) + timedelta(seconds=retention_s)
    return then.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def ttl_time(expires: str) -> datetime:
    """When MongoDB's TTL index deletes a run that expires at `expires` (a datetime, as TTL indexes need)."""
    return datetime.fromisoformat(expires.replace("Z", "+00:00")) + timedelta(seconds=TTL_GRACE_S)
