"""When the doses of a prescription fall due: the frequency a prescriber wrote, read as the ward's
standard administration times, over the prescription's duration. Pure functions, no database.

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

A frequency the table does not know gets no schedule either, and says so: the nurse gives it as
directed and records each dose, rather than the appliance guessing a regimen. The first scheduled dose
is the first standard time at or after the prescription; the last is before it ends (its duration, or
the moment it was stopped).

A dose is **late** once it is more than `LATE_AFTER` past its time with nothing recorded (and a dose
given more than that after its time is recorded as given late, with the minutes).
"""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from dataclasses import dataclass

LATE_AFTER = dt.timedelta(minutes=60)  # the usual "within an hour of the prescribed time" of a drug round
MAX_DOSES = 2000  # a window is bounded; a runaway frequency never floods a page


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


def _ceil_hour(moment: dt.datetime) -> dt.datetime:
    floor = moment.replace(minute=0, second=0, microsecond=0)
    return floor if floor == moment else floor + dt.timedelta(hours=1)


def doses(plan: Regimen, *, start: dt.datetime, end: dt.datetime | None, window_start: dt.datetime,
          window_end: dt.datetime, tz: zoneinfo.ZoneInfo) -> list[dt.datetime]:
    """The scheduled times (UTC) of a prescription that started at `start` and ends at `end` (None:
    until stopped), inside [window_start, window_end]."""
    last = min(end, window_end) if end is not None else window_end
    first = max(start, window_start)
    if last < first or not plan.scheduled:
        return []
    if plan.kind == "once":
        return [start] if window_start <= start <= last else []
    out: list[dt.datetime] = []
    if plan.kind == "interval":
        step = dt.timedelta(hours=plan.hours)
        at = _ceil_hour(start)
        if at < first:
            at += step * ((first - at) // step)
            if at < first:
                at += step
        while at <= last and len(out) < MAX_DOSES:
            if end is None or at < end:
                out.append(at)
            at += step
        return out
    day = first.astimezone(tz).date()
    weekday = start.astimezone(tz).weekday()
    while len(out) < MAX_DOSES:
        if plan.kind != "weekly" or day.weekday() == weekday:
            for time in plan.times:
                at = dt.datetime.combine(day, time, tzinfo=tz).astimezone(dt.UTC)
                if at > last:
                    return out
                if at >= first and at >= start and (end is None or at < end):
                    out.append(at)
        day += dt.timedelta(days=1)
        if dt.datetime.combine(day, dt.time(), tzinfo=tz) > last + dt.timedelta(days=1):
            return out
    return out


def end_of(start: dt.datetime, duration_days: int | None, stopped_at: dt.datetime | None) -> dt.datetime | None:
    """When a prescription stops producing doses: its duration from the start, or when it was stopped."""
    ends = [moment for moment in (start + dt.timedelta(days=duration_days) if duration_days else None, stopped_at)
            if moment is not None]
    return min(ends) if ends else None


def minutes_late(scheduled_for: dt.datetime, at: dt.datetime) -> int | None:
    """Minutes after the scheduled time, when beyond the late window; None when on time."""
    after = at - scheduled_for
    return int(after.total_seconds() // 60) if after > LATE_AFTER else None
