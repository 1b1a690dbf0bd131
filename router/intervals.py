"""Interval schedules (`trigger: {type: cron, every: 15m}`) as the cron expressions that say them. Pure.

An interval ticks as its cron expression on every backend (knflow dev's scheduler, a Knative PingSource),
aligned to the clock: `15m` is `*/15 * * * *`, at :00, :15, :30 and :45. Only an interval a cron expression
says evenly is taken: a number of minutes that divides an hour, of hours that divides a day, or one day.
`7m` is refused (cron's `*/7` ticks at :56 and then :00, four minutes apart), with the nearest ones named.
"""

from __future__ import annotations

import re

EVERY = re.compile(r"^([1-9][0-9]*)(s|m|h|d)$")
MINUTE_STEPS = [m for m in range(1, 60) if 60 % m == 0]
HOUR_STEPS = [h for h in range(1, 24) if 24 % h == 0]


def interval_cron(every: object) -> str:
    """The cron expression of an interval such as '15m', '2h', '1d'; ValueError saying why when there is none."""
    m = EVERY.match(every) if isinstance(every, str) else None
    if m is None:
        raise ValueError(
            f"every {every!r} is not an interval such as '30s', '15m', '2h' or '1d' (a number and s, m, h or d)"
        )
    n, unit = int(m[1]), m[2]
    if unit == "s":
        if n % 60:
            raise ValueError(
                f"every {every!r}: schedules tick at most once a minute (as a Knative PingSource does); "
                "use whole minutes"
            )
        n, unit = n // 60, "m"
    if unit == "m" and n >= 60 and n % 60 == 0:
        n, unit = n // 60, "h"
    if unit == "h" and n == 24:
        n, unit = 1, "d"
    if unit == "m" and n in MINUTE_STEPS:
        return "* * * * *" if n == 1 else f"*/{n} * * * *"
    if unit == "h" and n in HOUR_STEPS:
        return "0 * * * *" if n == 1 else f"0 */{n} * * *"
    if unit == "d" and n == 1:
        return "0 0 * * *"
    steps = {
        "m": ", ".join(map(str, MINUTE_STEPS)) + " minutes",
        "h": ", ".join(map(str, HOUR_STEPS)) + " hours",
        "d": "1 day",
    }[unit]
    raise ValueError(
        f"every {every!r} cannot be said as a cron expression, so neither knflow's scheduler nor a Knative PingSource "
        f"can tick it evenly (a cron step restarts every hour, day or month); use {steps}, or a schedule such as "
        "'0 9 * * 1' for anything else"
    )
