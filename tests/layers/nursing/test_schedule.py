"""MAR schedule generation: frequencies as prescribers write them, read as standard administration
times in the facility's time zone, over the prescription's duration or until it is stopped."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import pytest

from appliance.layers.nursing import schedule

NAIROBI = zoneinfo.ZoneInfo("Africa/Nairobi")  # UTC+3 all year


def local(day: int, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime(2026, 11, day, hour, minute, tzinfo=NAIROBI)


@pytest.mark.parametrize(("written", "kind", "hours"), [
    ("once daily", "times", [8]), ("Daily", "times", [8]), ("OD", "times", [8]), ("every 24 hours", "times", [8]),
    ("twice daily", "times", [8, 20]), ("BD", "times", [8, 20]), ("every 12 hours", "times", [8, 20]),
    ("three times daily", "times", [8, 14, 22]), ("tds", "times", [8, 14, 22]),
    ("four times a day", "times", [8, 12, 18, 22]), ("QDS", "times", [8, 12, 18, 22]),
    ("every 8 hours", "times", [6, 14, 22]), ("8-hourly", "times", [6, 14, 22]), ("q6h", "times", [0, 6, 12, 18]),
    ("every 4 hours", "times", [2, 6, 10, 14, 18, 22]), ("at night", "times", [22]), ("nocte", "times", [22]),
    ("weekly", "weekly", [8]), ("stat", "once", []), ("once only", "once", []),
    ("every 6 hours as needed", "as_needed", []), ("PRN", "as_needed", []), ("when required", "as_needed", []),
    ("every 36 hours", "interval", []), ("with meals", "unknown", []), ("every 0 hours", "unknown", []),
])
def test_frequencies_read_as_standard_times(written, kind, hours):
    plan = schedule.regimen(written)
    assert plan.kind == kind
    assert [t.hour for t in plan.times] == hours


def test_doses_fall_at_local_times_from_the_start_over_the_duration():
    plan = schedule.regimen("three times daily")
    start = local(20, 10, 30)  # prescribed mid-morning: the 08:00 dose of that day is not owed
    end = schedule.end_of(start, 2, None)
    doses = schedule.doses(plan, start=start, end=end, window_start=local(19, 0), window_end=local(25, 0), tz=NAIROBI)
    assert [d.astimezone(NAIROBI).strftime("%d %H:%M") for d in doses] == [
        "20 14:00", "20 22:00", "21 08:00", "21 14:00", "21 22:00", "22 08:00"]
    assert all(d.tzinfo is not None and d.utcoffset() == dt.timedelta(0) for d in doses)


def test_a_stopped_prescription_has_no_doses_after_it_was_stopped():
    start, stopped = local(20, 7), local(21, 9)
    end = schedule.end_of(start, None, stopped)
    doses = schedule.doses(schedule.regimen("BD"), start=start, end=end, window_start=local(20, 0),
                           window_end=local(23, 0), tz=NAIROBI)
    assert [d.astimezone(NAIROBI).strftime("%d %H") for d in doses] == ["20 08", "20 20", "21 08"]
    assert schedule.end_of(start, 5, stopped) == stopped  # whichever comes first
    assert schedule.end_of(start, 1, None) == start + dt.timedelta(days=1)
    assert schedule.end_of(start, None, None) is None


def test_the_window_bounds_an_open_ended_prescription():
    doses = schedule.doses(schedule.regimen("every 6 hours"), start=local(1, 0), end=None,
                           window_start=local(20, 5), window_end=local(21, 5), tz=NAIROBI)
    assert [d.astimezone(NAIROBI).strftime("%d %H") for d in doses] == ["20 06", "20 12", "20 18", "21 00"]


def test_interval_and_once_and_weekly_regimens():
    start = local(20, 9, 10)
    interval = schedule.doses(schedule.regimen("every 36 hours"), start=start, end=None, window_start=start,
                              window_end=local(24, 0), tz=NAIROBI)
    assert [d.astimezone(NAIROBI).strftime("%d %H:%M") for d in interval] == ["20 10:00", "21 22:00", "23 10:00"]
    assert schedule.doses(schedule.regimen("stat"), start=start, end=None, window_start=local(20, 0),
                          window_end=local(21, 0), tz=NAIROBI) == [start]
    weekly = schedule.doses(schedule.regimen("weekly"), start=local(2, 7), end=None, window_start=local(1, 0),
                            window_end=local(30, 0), tz=NAIROBI)
    assert [d.astimezone(NAIROBI).day for d in weekly] == [2, 9, 16, 23]  # Mondays, from the first


def test_as_needed_and_unknown_frequencies_have_no_schedule():
    for written in ("as needed", "with meals"):
        assert schedule.doses(schedule.regimen(written), start=local(20, 0), end=None, window_start=local(20, 0),
                              window_end=local(22, 0), tz=NAIROBI) == []


def test_late_means_beyond_the_hour_after_the_dose_time():
    due = local(20, 8)
    assert schedule.minutes_late(due, local(20, 9)) is None
    assert schedule.minutes_late(due, local(20, 9, 1)) == 61
    assert schedule.minutes_late(due, local(20, 7, 30)) is None
