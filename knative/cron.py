"""Cron schedules as a PingSource's webhook parses them: robfig/cron's standard parser (five fields,
names for months and weekdays, descriptors such as `@daily`; `@every` refused by Knative). Pure."""

from __future__ import annotations

MONTHS = {
    m: i + 1 for i, m in enumerate(["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"])
}
WEEKDAYS = {d: i for i, d in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])}
FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day of month", 1, 31, {}),
    ("month", 1, 12, MONTHS),
    ("day of week", 0, 6, WEEKDAYS),
)
DESCRIPTORS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")


def schedule_problems(schedule: str) -> list[str]:
    """Why Knative's PingSource webhook would refuse `schedule` (empty when it is fine)."""
    if not isinstance(schedule, str) or not schedule.strip():
        return [f"schedule {schedule!r} is empty; expected five cron fields such as '0 9 * * *'"]
    spec = schedule.strip()
    if spec.startswith(("TZ=", "CRON_TZ=")):
        spec = spec.split(None, 1)[1] if " " in spec else ""
    if "@every" in spec:
        return [f"schedule {schedule!r} uses @every, which Knative's PingSource does not support; use five cron fields"]
    if spec.startswith("@"):
        if spec in DESCRIPTORS:
            return []
        return [f"schedule {schedule!r}: unknown descriptor {spec!r}; expected one of {', '.join(DESCRIPTORS)}"]
    fields = spec.split()
    if len(fields) != len(FIELDS):
        return [
            f"schedule {schedule!r} has {len(fields)} fields; expected 5 (minute hour day-of-month month day-of-week)"
        ]
    out = []
    for text, (name, low, high, names) in zip(fields, FIELDS, strict=True):
        for part in text.split(","):
            problem = _range_problem(part, low, high, names)
            if problem:
                out.append(f"schedule {schedule!r}: {name} field {text!r}: {problem}")
    return out


def _range_problem(expr: str, low: int, high: int, names: dict[str, int]) -> str | None:
    range_and_step = expr.split("/")
    if len(range_and_step) > 2:
        return f"too many slashes in {expr!r}"
    bounds = range_and_step[0].split("-")
    if len(bounds) > 2:
        return f"too many hyphens in {expr!r}"
    if bounds[0] in ("*", "?"):
        if len(bounds) > 1:
            return f"'*' cannot start a range in {expr!r}"
        start, end = low, high
    else:
        try:
            start = _value(bounds[0], names)
            end = _value(bounds[1], names) if len(bounds) == 2 else start
        except ValueError as exc:
            return str(exc)
    if len(range_and_step) == 2:
        try:
            step = _value(range_and_step[1], {})
        except ValueError as exc:
            return str(exc)
        if step <= 0:
            return f"step of range should be a positive number in {expr!r}"
        if len(bounds) == 1 and bounds[0] not in ("*", "?"):
            end = high
    if start < low:
        return f"beginning of range ({start}) below minimum ({low})"
    if end > high:
        return f"end of range ({end}) above maximum ({high})"
    if start > end:
        return f"beginning of range ({start}) beyond end of range ({end})"
    return None


def _value(text: str, names: dict[str, int]) -> int:
    if text.lower() in names:
        return names[text.lower()]
    if not text.isdigit():
        return_names = f" or a name ({', '.join(names)})" if names else ""
        raise ValueError(f"{text!r} is not a non-negative number{return_names}")
    return int(text)
