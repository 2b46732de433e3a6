"""Where a child stands on the immunization schedule (appliance/layers/clinical/immunization_schedule.py),
against hand-worked cases: a child born on 31 January 2025 (a month end, where counting months is easiest to get
wrong), doses on known days, the status of each dose on a known day. And the schedule file: the shipped one
loads; a broken one is refused with a sentence naming the vaccine and the field."""

from __future__ import annotations

import dataclasses
import datetime as dt
import shutil
import uuid
from pathlib import Path

import pytest

from appliance.layers.clinical.immunization_schedule import (
    RecordedDose,
    ScheduleError,
    Span,
    evaluate,
    load_schedule,
    outstanding,
)
from appliance.substrate.age import months_on

POLICY = Path(__file__).parents[3] / "policies" / "immunization.toml"
BORN = dt.date(2025, 1, 31)


@pytest.fixture(scope="module")
def schedule():
    return load_schedule(POLICY)


def dose(vaccine: str, number: int | None, day: dt.date, status: str = "completed", reason: str | None = None):
    return RecordedDose(uuid.uuid4(), vaccine, number, day, status, reason)


def states(statuses) -> dict:
    return {(s.vaccine, s.dose_number): s for s in statuses}


def test_each_vaccine_is_found_by_its_cvx_code_with_or_without_the_leading_zero(schedule):
    assert schedule.vaccine_of_cvx("198").code == "PENTA"
    assert schedule.vaccine_of_cvx("08").code == schedule.vaccine_of_cvx("8").code == "HEPB_BD"
    assert schedule.vaccine_of_cvx("140") is None and schedule.vaccine_of_cvx("PENTA") is None
    assert schedule.vaccine_of_cvx("\u0661\u0669") is None  # Arabic-Indic digits are not a CVX code


def test_ages_in_months_are_counted_as_the_rest_of_the_appliance_counts_them():
    # Born 31 January: no 31 February, so one month old on 1 March (months_on agrees), nine months on 31 October.
    assert Span.parse("1m").after(BORN) == dt.date(2025, 3, 1)
    assert months_on(BORN, dt.date(2025, 2, 28)) == 0 and months_on(BORN, dt.date(2025, 3, 1)) == 1
    assert Span.parse("9m").after(BORN) == dt.date(2025, 10, 31)
    assert Span.parse("6w").after(BORN) == dt.date(2025, 3, 14)  # 42 days
    assert Span.parse("2y").after(dt.date(2024, 2, 29)) == dt.date(2026, 3, 1)


def test_the_shipped_schedule_loads_with_its_vaccines_in_order(schedule):
    assert [v.code for v in schedule.vaccine] == ["BCG", "HEPB_BD", "OPV", "IPV", "PENTA", "PCV", "ROTA", "MCV"]
    assert schedule.by_code["PENTA"].doses == 3 and str(schedule.by_code["ROTA"].no_later_than) == "24m"


def test_a_dose_on_time_counts_and_the_next_falls_due_after_the_minimum_interval(schedule):
    recorded = [dose("BCG", 1, BORN), dose("PENTA", 1, dt.date(2025, 3, 14))]
    found = states(evaluate(schedule, BORN, recorded, dt.date(2025, 3, 20)))
    assert (found["BCG", 1].state, found["BCG", 1].given_on) == ("given", BORN)
    assert (found["PENTA", 1].state, found["PENTA", 1].given_on) == ("given", dt.date(2025, 3, 14))
    # Dose 2: four weeks after dose 1 (11 April), which is also ten weeks of age: not yet due on 20 March.
    penta2 = found["PENTA", 2]
    assert (penta2.state, penta2.due_from, penta2.recommended_on) == ("not_yet_due", dt.date(2025, 4, 11),
                                                                      dt.date(2025, 4, 11))
    # Dose 3 waits for dose 2; the hepatitis B birth dose never given is overdue since the day after birth.
    assert (found["PENTA", 3].state, found["PENTA", 3].waiting_for) == ("not_yet_due", 2)
    assert (found["HEPB_BD", 1].state, found["HEPB_BD", 1].overdue_since) == ("overdue", dt.date(2025, 2, 1))


def test_a_dose_too_early_is_listed_but_does_not_count_and_the_dose_stays_due(schedule):
    early_age = dose("PENTA", 1, dt.date(2025, 3, 1))  # 29 days old: younger than six weeks
    found = states(evaluate(schedule, BORN, [early_age], dt.date(2025, 3, 14)))  # six weeks old: due today
    penta1 = found["PENTA", 1]
    assert penta1.state == "due" and penta1.due_from == dt.date(2025, 3, 14) and penta1.given_on is None
    [attempt] = penta1.attempts
    assert not attempt.counts
    assert attempt.why == ("too early: does not count (given at 4 weeks 1 day of age, younger than the minimum "
                           "age of 6 weeks)")
    # An interval too short: dose 2 three weeks after dose 1 does not count; on 20 April it is overdue since the
    # day after its recommended day (11 April, four weeks after dose 1).
    recorded = [dose("PENTA", 1, dt.date(2025, 3, 14)), dose("PENTA", 2, dt.date(2025, 4, 4))]
    penta2 = states(evaluate(schedule, BORN, recorded, dt.date(2025, 4, 20)))["PENTA", 2]
    assert (penta2.state, penta2.overdue_since) == ("overdue", dt.date(2025, 4, 12))
    assert penta2.attempts[0].why.endswith("(given 21 days after dose 1, sooner than the minimum interval of "
                                           "4 weeks)")


def test_a_late_dose_moves_the_next_one_and_a_repeat_or_campaign_dose_counts_for_nothing_more(schedule):
    recorded = [dose("OPV", 1, dt.date(2025, 5, 2)), dose("OPV", 1, dt.date(2025, 5, 9)),
                dose("OPV", None, dt.date(2025, 5, 20))]
    found = states(evaluate(schedule, BORN, recorded, dt.date(2025, 5, 25)))
    opv1 = found["OPV", 1]
    assert opv1.given_on == dt.date(2025, 5, 2) and [a.counts for a in opv1.attempts] == [True, False]
    assert opv1.attempts[1].why == "a repeat: dose 1 was already given on 2025-05-02"
    # Dose 2 was to be at ten weeks (11 April); dose 1 came late, so it is due four weeks after it: 30 May.
    assert (found["OPV", 2].state, found["OPV", 2].due_from, found["OPV", 2].recommended_on) == \
        ("not_yet_due", dt.date(2025, 5, 30), dt.date(2025, 5, 30))


def test_a_dose_without_an_interval_falls_due_after_the_dose_before_it_never_on_its_day_or_before(schedule):
    # Measles dose 2 has no minimum interval in the shipped file. Dose 1 given late, on 10 December 2025 (nine
    # months was 31 October): dose 2 is due from the day after, not from nine months, before dose 1 was given.
    recorded = [dose("MCV", 1, dt.date(2025, 12, 10))]
    mcv2 = states(evaluate(schedule, BORN, recorded, dt.date(2025, 12, 10)))["MCV", 2]
    assert (mcv2.state, mcv2.due_from) == ("not_yet_due", dt.date(2025, 12, 11))
    # A dose 2 recorded on dose 1's day, or before it, is no second dose: listed, not counted, still owed.
    for day, said in ((dt.date(2025, 12, 10), "on the same day as"), (dt.date(2025, 11, 20), "before")):
        found = states(evaluate(schedule, BORN, [*recorded, dose("MCV", 2, day)], dt.date(2026, 1, 5)))["MCV", 2]
        assert (found.state, found.due_from) == ("due", dt.date(2025, 12, 11))
        assert found.attempts[0].why == f"too early: does not count (given {said} dose 1, given on 2025-12-10)"
    # With an interval too, a dose before the one before it is said so, not "given -7 days after dose 1".
    penta = [dose("PENTA", 1, dt.date(2025, 3, 27)), dose("PENTA", 2, dt.date(2025, 3, 20))]
    penta2 = states(evaluate(schedule, BORN, penta, dt.date(2025, 4, 1)))["PENTA", 2]
    assert penta2.attempts[0].why == "too early: does not count (given before dose 1, given on 2025-03-27)"


def test_a_dose_from_a_lot_past_its_expiry_does_not_count_and_the_dose_stays_due(schedule):
    expired = dataclasses.replace(dose("PENTA", 1, dt.date(2025, 3, 14)), expiry_date=dt.date(2025, 3, 13))
    penta1 = states(evaluate(schedule, BORN, [expired], dt.date(2025, 3, 14)))["PENTA", 1]
    assert (penta1.state, penta1.given_on) == ("due", None)
    assert penta1.attempts[0].why == ("from an expired lot: does not count (the lot expired on 2025-03-13, before the "
                                      "dose's day)")
    on_its_last_day = dataclasses.replace(expired, expiry_date=dt.date(2025, 3, 14))
    assert states(evaluate(schedule, BORN, [on_its_last_day], dt.date(2025, 3, 14)))["PENTA", 1].state == "given"


def test_a_dose_not_given_keeps_its_reason_and_stays_owed_until_the_age_limit(schedule):
    recorded = [dose("ROTA", 1, dt.date(2025, 3, 14), "not_done", "out_of_stock")]
    at_two_months = states(evaluate(schedule, BORN, recorded, dt.date(2025, 4, 1)))["ROTA", 1]
    assert (at_two_months.state, at_two_months.not_done.not_done_reason) == ("overdue", "out_of_stock")
    # Rotavirus vaccine is not given from 24 months: on the second birthday the missing doses are no longer given.
    at_two_years = states(evaluate(schedule, BORN, recorded, dt.date(2027, 1, 31)))
    assert at_two_years["ROTA", 1].state == at_two_years["ROTA", 2].state == "no_longer_given"
    assert at_two_years["ROTA", 1].no_later_than == dt.date(2027, 1, 31)
    # Measles has no age limit in the schedule: still overdue at two, from 9 months (31 October 2025).
    assert (at_two_years["MCV", 1].state, at_two_years["MCV", 1].overdue_since) == ("overdue", dt.date(2025, 11, 1))


def test_what_a_child_is_owed_is_the_due_and_overdue_doses_with_the_oldest_overdue_day(schedule):
    recorded = [dose("BCG", 1, BORN), dose("HEPB_BD", 1, BORN)]
    owed = outstanding(evaluate(schedule, BORN, recorded, dt.date(2025, 3, 20)))
    assert {(d.vaccine, d.dose_number, d.state) for d in owed.doses} == {
        ("OPV", 1, "overdue"), ("PENTA", 1, "overdue"), ("PCV", 1, "overdue"), ("ROTA", 1, "overdue")}
    assert owed.overdue_since == dt.date(2025, 3, 15)


@pytest.mark.parametrize(("text", "said"), [
    ('trace_until = "5y"\n[[vaccine]]\ncode = "PCV"\nname = "PCV"\nantigen = "pneumococcus"\n'
     '[[vaccine.dose]]\nmin_age = "6x"\nrecommended_age = "6w"\n',
     "vaccine PCV, dose 1, min_age: '6x' is not an age"),
    ('trace_until = "5y"\n[[vaccine]]\ncode = "PCV"\nname = "PCV"\nantigen = "pneumococcus"\n'
     '[[vaccine.dose]]\nmin_age = "6w"\nrecommended_age = "6w"\nmin_interval = "4w"\n',
     "vaccine PCV: dose 1 has a min_interval, but there is no dose before it"),
    ('trace_until = "5y"\n[[vaccine]]\ncode = "ROTA"\nname = "Rota"\nantigen = "rotavirus"\nno_later_than = "8w"\n'
     '[[vaccine.dose]]\nmin_age = "6w"\nrecommended_age = "10w"\n',
     "vaccine ROTA: no_later_than 8w is not after dose 1's recommended_age 10w"),
    ('trace_until = "5y"\n[[vaccine]]\ncode = "BCG"\nname = "BCG"\nantigen = "tb"\n'
     '[[vaccine.dose]]\nmin_age = "0d"\nrecommended_age = "0d"\nlot = "x"\n',
     "vaccine BCG, dose 1, lot: Extra inputs are not permitted"),
    ('trace_until = "5y"\n[[vaccine]]\ncode = "BCG"\nname = "BCG"\nantigen = "tb"\ncvx = "B19"\ncvx_name = "BCG"\n'
     '[[vaccine.dose]]\nmin_age = "0d"\nrecommended_age = "0d"\n',
     "vaccine BCG, cvx: String should match pattern"),
    ('trace_until = "5y"\n[[vaccine]]\ncode = "BCG"\nname = "BCG"\nantigen = "tb"\ncvx = "19"\n'
     '[[vaccine.dose]]\nmin_age = "0d"\nrecommended_age = "0d"\n',
     "vaccine BCG: cvx and cvx_name go together"),
    ('trace_until = "5y"\n[[vaccine]]\ncode = "BCG"\nname = "BCG"\nantigen = "tb"\ncvx = "19"\ncvx_name = "BCG"\n'
     '[[vaccine.dose]]\nmin_age = "0d"\nrecommended_age = "0d"\n'
     '[[vaccine]]\ncode = "BCG2"\nname = "BCG again"\nantigen = "tb"\ncvx = "019"\ncvx_name = "BCG"\n'
     '[[vaccine.dose]]\nmin_age = "0d"\nrecommended_age = "0d"\n',
     "vaccine BCG2 has cvx 019, which vaccine BCG has too"),
])
def test_a_broken_schedule_is_refused_naming_the_vaccine_and_the_field(tmp_path, text, said):
    path = tmp_path / "immunization.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ScheduleError) as refused:
        load_schedule(path)
    assert said in str(refused.value)


def test_the_appliance_refuses_to_start_with_a_broken_schedule(db, settings, tmp_path):
    """A ministry's edit that breaks the file stops the start with the sentence, not a nurse's first dose."""
    from appliance.web.app import create_app

    policies = tmp_path / "policies"
    shutil.copytree(settings.policies_dir, policies)
    text = (policies / "immunization.toml").read_text(encoding="utf-8")
    (policies / "immunization.toml").write_text(text.replace('recommended_age = "15m"', 'recommended_age = "15q"'),
                                                encoding="utf-8")
    with pytest.raises(ScheduleError, match="vaccine MCV, dose 2, recommended_age: '15q' is not an age"):
        create_app(db, dataclasses.replace(settings, policies_dir=policies))
