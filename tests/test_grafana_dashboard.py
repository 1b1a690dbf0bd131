"""The Grafana dashboard (knative/grafana/knflow.json): every metric its PromQL names is one the services
export (the names broker/metrics.py's registry gives, `_bucket`, `_sum`, `_count` and `_total` included), and
it has the panels issue 13 asks for."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from broker import metrics

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "knative" / "grafana" / "knflow.json"
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool", "offset"}
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_NAME = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")


def metric_names(expr: str) -> set[str]:
    """The metric names of a PromQL expression: what is left once strings, label matchers, ranges, grouping
    clauses, numbers and the names of functions and aggregations (a name before `(`) are taken out."""
    expr = expr.replace("$__rate_interval", "5m")
    expr = re.sub(r"label_values\(\s*([A-Za-z_:][A-Za-z0-9_:]*)\s*,[^)]*\)", r"\1", expr)  # Grafana's
    for pattern in (_STRING, _MATCHERS, _RANGE, _GROUPING):
        expr = pattern.sub(" ", expr)
    found = set()
    for match in _NAME.finditer(expr):
        rest = expr[match.end() :].lstrip()
        if rest.startswith("(") or match.group() in KEYWORDS:
            continue
        if match.start() and (expr[match.start() - 1].isdigit() or expr[match.start() - 1] == "."):
            continue  # the exponent or unit of a number
        found.add(match.group())
    return found


def expressions(dashboard: dict[str, Any]) -> list[str]:
    out = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    for var in dashboard["templating"]["list"]:
        query = var.get("query")
        if var["type"] == "query":
            out.append(query["query"] if isinstance(query, dict) else query)
    return out


def test_the_parser_finds_metric_names_and_skips_functions_labels_and_ranges():
    expr = (
        'histogram_quantile(0.95, sum by (le, function) (rate(knflow_node_queue_seconds_bucket{pipeline=~"a|b"}'
        "[$__rate_interval]))) / ignoring(x) max(up) > 1e3"
    )
    assert metric_names(expr) == {"knflow_node_queue_seconds_bucket", "up"}
    assert metric_names("label_values(knflow_runs_started_total, pipeline)") == {"knflow_runs_started_total"}
    assert metric_names("sum(rate(knflow_no_such_thing_total[1m]))") - metrics.metric_names() == {
        "knflow_no_such_thing_total"
    }


def test_every_metric_the_dashboard_queries_is_exported():
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    exprs = expressions(dashboard)
    assert len(exprs) >= 15
    named = set().union(*(metric_names(e) for e in exprs))
    assert named and named <= metrics.metric_names(), named - metrics.metric_names()
    assert {"knflow_runs_finished_total", "knflow_node_queue_seconds_bucket", "knflow_dead_letters_total"} <= named


def test_the_dashboard_has_the_panels_the_issue_asks_for():
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    titles = " | ".join(p["title"] for p in dashboard["panels"])
    for wanted in ("Runs finished per minute by status", "p50", "p95", "Queue time", "Cold start", "Dead letters"):
        assert wanted in titles, (wanted, titles)
    assert "Router events by outcome" in titles
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
    assert all(t["refId"] for p in dashboard["panels"] for t in p["targets"])
