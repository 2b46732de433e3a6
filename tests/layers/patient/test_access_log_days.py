"""The patient's access log a day at a time: a day's accesses said in a few lines (who did what, how many times,
from when to when, in the facility's time), break-the-glass and refused accesses never folded in with the rest,
and the days paged newest first."""

import datetime as dt
from zoneinfo import ZoneInfo

from appliance.layers.patient import portal
from appliance.substrate.audit import AccessEntry

NAIROBI = ZoneInfo("Africa/Nairobi")
WARD = {"tenant": "t_ward", "name": "Lakeshore District Hospital"}
NURSE = {"name": "Nurse Achieng", "role": "nurse", "kind": "staff", "account": "a-nurse"}
DOCTOR = {"name": "Dr Otieno", "role": "clinician", "kind": "staff", "account": "a-doctor"}


def _at(day: int, hour: int, minute: int) -> dt.datetime:
    return dt.datetime(2026, 11, day, hour, minute, tzinfo=NAIROBI).astimezone(dt.UTC)


def _entry(seq: int, recorded: dt.datetime, who: dict, event_type: str = "record.vital_signs.read", *,
           outcome: str = "success", break_the_glass: bool = False, reason: str | None = None) -> AccessEntry:
    return AccessEntry(seq=seq, recorded=recorded, event_type=event_type, action="R", outcome=outcome, who=who,
                       facility=WARD, break_the_glass=break_the_glass, reason=reason)


def _a_childs_morning_and_the_night_before() -> list[AccessEntry]:
    """Fourteen reads of vital signs by the nurse, 08:10 to 11:25 on 27 November (Nairobi); among them a doctor
    breaking the glass and a refused read; and a nurse's read at 00:30 Nairobi on the 27th, 21:30 UTC the day
    before, and one at 22:00 on the 26th: newest first, as the log gives them."""
    entries = [_entry(i, _at(27, 8, 10) + dt.timedelta(minutes=15 * i), NURSE) for i in range(14)]
    entries += [_entry(20, _at(27, 9, 5), DOCTOR, "record.chart.read", break_the_glass=True,
                       reason="Seizing, mother away"),
                _entry(21, _at(27, 9, 50), DOCTOR, "record.chart.read", outcome="denied"),
                _entry(22, _at(27, 0, 30), NURSE), _entry(23, _at(26, 22, 0), NURSE)]
    return sorted(entries, key=lambda e: (e.recorded, e.seq), reverse=True)


def test_a_day_is_said_in_a_few_lines_in_the_facilitys_time():
    days = portal.by_day(_a_childs_morning_and_the_night_before(), {"t_ward": NAIROBI})
    assert [d.day for d in days] == [dt.date(2026, 11, 27), dt.date(2026, 11, 26)]  # 00:30 local is the 27th
    morning = days[0]
    assert len(morning.entries) == 17 and morning.entries[0].recorded > morning.entries[-1].recorded
    [vitals] = [g for g in morning.groups if g.who == NURSE]
    assert (vitals.what, vitals.count) == ("looked at vital signs", 15)
    assert (vitals.first.strftime("%H:%M"), vitals.last.strftime("%H:%M")) == ("00:30", "11:25")
    [glass] = [g for g in morning.groups if g.break_the_glass]
    assert (glass.count, glass.reason, glass.what) == (1, "Seizing, mother away", "looked at your chart")
    [refused] = [g for g in morning.groups if g.refused]
    assert refused.count == 1 and not refused.break_the_glass  # the doctor's two chart reads are two lines
    assert [g.last for g in morning.groups] == sorted((g.last for g in morning.groups), reverse=True)
    assert [(g.count, g.first.strftime("%H:%M")) for g in days[1].groups] == [(1, "22:00")]


def test_every_break_the_glass_access_is_a_line_of_its_own():
    entries = [_entry(i, _at(27, 9, i), DOCTOR, "record.chart.read", break_the_glass=True, reason="Unconscious")
               for i in range(3)]
    [day] = portal.by_day(entries[::-1], {"t_ward": NAIROBI})
    assert [g.count for g in day.groups] == [1, 1, 1] and all(g.break_the_glass for g in day.groups)


def test_the_days_are_paged_newest_first():
    entries = [_entry(i, _at(1 + i, 10, 0), NURSE) for i in range(10)][::-1]
    days = portal.by_day(entries, {"t_ward": NAIROBI})
    first, page, pages = portal.days_page(days, 1, 7)
    assert (page, pages) == (1, 2) and [d.day.day for d in first] == [10, 9, 8, 7, 6, 5, 4]
    last, page, pages = portal.days_page(days, 2, 7)
    assert (page, pages) == (2, 2) and [d.day.day for d in last] == [3, 2, 1]
    assert portal.days_page(days, 9, 7)[1] == 2  # past the last: the last
    assert portal.days_page([], 1, 7) == ([], 1, 1)
