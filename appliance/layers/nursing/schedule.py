"""When the doses of a prescription fall due: the frequency a prescriber wrote, read as the ward's
standard administration times (appliance/substrate/regimen.py, where the table of frequencies and times
is, shared with the outpatient pharmacy), over the prescription's duration. Pure functions, no database.

A frequency the table does not know gets no schedule, and says so: the nurse gives it as directed and
records each dose, rather than the appliance guessing a regimen; an "as needed" one has none either, each
dose recorded as it is given. The first scheduled dose is the first standard time at or after the
prescription; the last is before it ends (its duration, or the moment it was stopped).

A dose is **late** once it is more than `LATE_AFTER` past its time with nothing recorded (and a dose
given more than that after its time is recorded as given late, with the minutes).
"""

from __future__ import annotations

import datetime as dt
import zoneinfo

from appliance.substrate.regimen import Regimen, regimen

__all__ = ["LATE_AFTER", "MAX_DOSES", "Regimen", "doses", "end_of", "minutes_late", "regimen"]

LATE_AFTER = dt.timedelta(minutes=60)  # the usual "within an hour of the prescribed time" of a drug round
MAX_DOSES = 2000  # a window is bounded; a runaway frequency never floods a page


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
