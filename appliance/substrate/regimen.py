"""A prescription's frequency as written, read (substrate): what the ward's drug round and the outpatient
pharmacy both need to know about "tds" or "every 8 hours". Pure functions, no database.

The nursing layer schedules doses from it (nursing/schedule.py: when each dose falls due); the operations
layer's pharmacy works out a course's quantity from it (doses a day × days). Layers may not import each
other, so the reading lives here, once.

Standard times (facility local time), as most drug rounds run them:

| frequency as written | times |
|---|---|
| once daily, daily, od, every morning, every 24 hours | 08:00 |
| at night, nocte, at bedtime | 22:00 |
| twice daily, bd, every 12 hours | 08:00, 20:00 |
| three times daily, tds | 08:00, 14:00, 22:00 |
| four times daily, qds | 08:00, 12:00, 18:00, 22:00 |
| every N hours (N divides 24) | from 06:00 every N hours (every 8 hours: 06:00, 14:00, 22:00) |
| every N hours (otherwise) | from the first whole hour after prescribing, every N hours |
| weekly | 08:00 on the weekday it was prescribed |
| stat, once, single dose | once, when prescribed |
| as needed, prn, when required | no schedule: each dose is recorded as it is given |

A frequency the table does not know is read as "unknown", and says so, rather than guessing a regimen.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True)
class Regimen:
    kind: str  # "times" (fixed times of day), "interval", "weekly", "once", "as_needed", "unknown"
    times: tuple[dt.time, ...] = ()
    hours: int = 0
    label: str = ""

    @property
    def scheduled(self) -> bool:
        return self.kind in {"times", "interval", "weekly", "once"}


def _at(*hours: int) -> tuple[dt.time, ...]:
    return tuple(dt.time(hour) for hour in hours)


_NAMED: list[tuple[str, Regimen]] = [
    (r"\b(four times (a day|daily)|qds|qid|4 times (a day|daily))\b",
     Regimen("times", _at(8, 12, 18, 22), label="QDS")),
    (r"\b(three times (a day|daily)|tds|tid|3 times (a day|daily))\b", Regimen("times", _at(8, 14, 22), label="TDS")),
    (r"\b(twice (a day|daily)|bd|bid|2 times (a day|daily))\b", Regimen("times", _at(8, 20), label="BD")),
    (r"\b(at night|nocte|at bedtime)\b", Regimen("times", _at(22), label="at night")),
    (r"\b(once (a day|daily)|daily|od|every morning|mane|once a day)\b", Regimen("times", _at(8), label="daily")),
    (r"\b(weekly|once a week|every week)\b", Regimen("weekly", _at(8), label="weekly")),
    (r"\b(stat|once only|single dose|once)\b", Regimen("once", label="once")),
]
_AS_NEEDED = re.compile(r"\b(as needed|as required|when required|prn|if needed)\b")
_EVERY_HOURS = re.compile(r"\b(?:every|q)\s*(\d{1,3})\s*(?:h|hr|hrs|hour|hours|hourly)\b|\b(\d{1,3})\s*-?\s*hourly\b")


def regimen(frequency: str) -> Regimen:
    """Read a frequency as written by the prescriber."""
    text = " ".join(frequency.lower().replace("-", " ").split())
    if _AS_NEEDED.search(text):
        return Regimen("as_needed", label="as needed")
    every = _EVERY_HOURS.search(text)
    if every:
        hours = int(every.group(1) or every.group(2))
        if hours <= 0 or hours > 168:
            return Regimen("unknown", label=frequency)
        if hours == 24:
            return Regimen("times", _at(8), label="daily")
        if hours == 12:
            return Regimen("times", _at(8, 20), label="every 12 hours")
        if 24 % hours == 0:
            return Regimen("times", _at(*range(6 % hours, 24, hours)), label=f"every {hours} hours")
        return Regimen("interval", hours=hours, label=f"every {hours} hours")
    for pattern, named in _NAMED:
        if re.search(pattern, text):
            return named
    return Regimen("unknown", label=frequency)


def doses_a_day(plan: Regimen) -> Decimal | None:
    """How many doses a day the regimen gives; None for one that has no daily count (once, as needed,
    unknown)."""
    if plan.kind == "times":
        return Decimal(len(plan.times))
    if plan.kind == "interval" and plan.hours:
        return Decimal(24) / Decimal(plan.hours)
    if plan.kind == "weekly":
        return Decimal(1) / Decimal(7)
    return None
