"""The small parsers behind the webhook rules: Go and ISO-8601 durations, cron schedules, CESQL."""

from __future__ import annotations

from decimal import Decimal

import pytest

from knative import cesql, cron
from knative.durations import iso_seconds, parse_go_duration_s, parse_iso_duration_s


@pytest.mark.parametrize(
    "text, seconds",
    [
        ("90s", 90),
        ("1h30m", 5400),
        ("0", 0),
        ("5m", 300),
        ("1.5s", 1.5),
        ("300ms", 0.3),
        ("-1s", -1),
        ("2h45m30.5s", 9930.5),
    ],
)
def test_go_durations(text, seconds):
    assert parse_go_duration_s(text) == Decimal(str(seconds))


@pytest.mark.parametrize("text", ["", "1", "abc", "5 m", "1d", "m5", 90])
def test_bad_go_durations(text):
    with pytest.raises(ValueError, match="Go duration"):
        parse_go_duration_s(text)


@pytest.mark.parametrize(
    "text, seconds",
    [
        ("PT1S", 1),
        ("PT0.5S", 0.5),
        ("PT10M", 600),
        ("P1D", 86400),
        ("PT1H1M1S", 3661),
        ("PT0,2S", 0.2),
        ("P1W", 604800),
        ("-PT1S", -1),
    ],
)
def test_iso_durations(text, seconds):
    assert parse_iso_duration_s(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["P", "PT", "P1DT", "1s", "PT1", "T1S", "PT1S2M"])
def test_bad_iso_durations(text):
    with pytest.raises(ValueError, match="ISO-8601"):
        parse_iso_duration_s(text)


def test_iso_seconds_is_what_eventing_reads():
    assert [iso_seconds(s) for s in (1.0, 0.2, 600, 1.23456, 0)] == ["PT1S", "PT0.2S", "PT600S", "PT1.235S", "PT0S"]
    assert all(parse_iso_duration_s(iso_seconds(s)) == pytest.approx(round(s, 3)) for s in (0.25, 7, 930))


@pytest.mark.parametrize(
    "schedule",
    [
        "0 9 * * *",
        "*/5 * * * *",
        "0 9 * * mon-fri",
        "@daily",
        "@hourly",
        "CRON_TZ=Europe/Berlin 0 3 * * *",
        "5/15 * * * *",
        "0 9 * JAN,dec SUN",
        "0 0 1-15/2 * ?",
    ],
)
def test_schedules_knative_accepts(schedule):
    assert cron.schedule_problems(schedule) == []


@pytest.mark.parametrize(
    "schedule, expected",
    [
        ("0 9 * * 7", "end of range (7) above maximum (6)"),
        ("@every 5m", "@every"),
        ("0 0 9 * * *", "has 6 fields"),
        ("61 * * * *", "above maximum (59)"),
        ("1-2-3 * * * *", "too many hyphens"),
        ("*/0 * * * *", "step of range should be a positive number"),
        ("@fortnightly", "unknown descriptor"),
        ("5-1 * * * *", "beyond end of range"),
        ("0 9 * foo *", "is not a non-negative number or a name"),
        ("", "empty"),
    ],
)
def test_schedules_knative_refuses(schedule, expected):
    problems = cron.schedule_problems(schedule)
    assert problems and expected in problems[0]


@pytest.mark.parametrize(
    "expression",
    [
        "type = 'a'",
        "NOT EXISTS knflowhops OR INT(knflowhops) < 16",
        "a IN ('x', 'y')",
        "a NOT LIKE 'x%'",
        "LOWER(subject) = 'x' AND source LIKE '/s/%'",
        "1 + 2 * 3 > 4",
        "-a",
        "TRUE",
        "'it''s' = x",
        "(a = 1) XOR (b <> 2)",
        "ABS(-1) >= 1",
        'source != "x"',
    ],
)
def test_cesql_that_parses(expression):
    assert cesql.parse_problems(expression) == []


@pytest.mark.parametrize(
    "expression, expected",
    [
        ("(a = 1", "ends too early"),
        ("a = ", "ends too early"),
        ("a == 1", "unexpected '='"),
        ("a = 1)", "unexpected ')'"),
        ("EXISTS 'x'", "EXISTS needs an attribute name"),
        ("a IS NOT NULL", "unexpected 'IS'"),
        ("a b", "unexpected 'b'"),
        ("a = $x", "unexpected character '$'"),
        ("a LIKE b", "LIKE needs a string pattern"),
        ("lower(a) = 'x'", "must be upper case"),
        ("", "empty"),
    ],
)
def test_cesql_that_does_not(expression, expected):
    problems = cesql.parse_problems(expression)
    assert problems and expected in problems[0]
