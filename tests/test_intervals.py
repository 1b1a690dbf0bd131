"""Interval schedules (router/intervals.py): `every: 15m` as its cron expression, what a cron expression cannot
say refused naming the field, the scheduler's next tick, and the PingSource knflow manifests makes of one."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from functions.registry import REGISTRY
from knative.cron import schedule_problems
from knative.manifests import build
from router.intervals import interval_cron
from router.loader import load_string
from router.pipeline import PipelineInvalid
from router.triggers import next_ticks

ROOT = Path(__file__).resolve().parent.parent
CRON = "metadata: {name: every}\ntrigger: {type: cron, TRIGGER}\nnodes: [{id: say, type: log, inputs: {message: t}}]\n"


@pytest.mark.parametrize(
    "every,cron",
    [
        ("1m", "* * * * *"),
        ("15m", "*/15 * * * *"),
        ("120s", "*/2 * * * *"),
        ("60m", "0 * * * *"),
        ("6h", "0 */6 * * *"),
        ("24h", "0 0 * * *"),
        ("1d", "0 0 * * *"),
    ],
)
def test_an_interval_a_cron_expression_says_becomes_it(every, cron):
    assert interval_cron(every) == cron
    assert schedule_problems(cron) == []  # what Knative's PingSource webhook takes


@pytest.mark.parametrize(
    "every,why",
    [
        ("7m", "use 1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30 minutes"),
        ("5h", "use 1, 2, 3, 4, 6, 8, 12 hours"),
        ("2d", "use 1 day"),
        ("30s", "at most once a minute"),
        ("15 minutes", "not an interval such as"),
    ],
)
def test_an_interval_no_cron_expression_says_is_refused_naming_the_field(every, why):
    with pytest.raises(PipelineInvalid) as err:
        load_string(CRON.replace("TRIGGER", f"every: {every}"), "every.yaml")
    assert "field 'trigger.every'" in str(err.value) and why in str(err.value)


def test_schedule_and_every_are_one_or_the_other():
    with pytest.raises(PipelineInvalid) as err:
        load_string(CRON.replace("TRIGGER", "every: 15m, schedule: '* * * * *'"), "every.yaml")
    assert "either schedule or every, not both" in str(err.value)
    with pytest.raises(PipelineInvalid) as err:
        load_string(CRON.replace("type: cron, TRIGGER", "type: webhook, every: 15m"), "every.yaml")
    assert "every applies to cron triggers only" in str(err.value)


def test_the_scheduler_ticks_an_interval_on_the_clock():
    p = load_string(CRON.replace("TRIGGER", "every: 15m"), "every.yaml")
    assert p.to_dict()["trigger"] == {"type": "cron", "every": "15m"}
    (when, _, _), *_ = next_ticks([p], datetime(2026, 12, 3, 8, 7, 30, tzinfo=UTC))
    assert when == datetime(2026, 12, 3, 8, 15, tzinfo=UTC)


def test_on_knative_an_interval_becomes_a_ping_source_with_its_cron_expression():
    p = load_string(CRON.replace("TRIGGER", "every: 15m"), "every.yaml")
    sources = [m for m in build([p], REGISTRY, root=ROOT).manifests if m["kind"] == "PingSource"]
    assert [s["spec"]["schedule"] for s in sources] == ["*/15 * * * *"]
