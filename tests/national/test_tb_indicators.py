"""The TB cohort's national figures (policies/indicators.toml, source "tb_outcomes"): new and relapse cases counted in
the month their treatment started, as registered and under their WHO outcome, at the age at the start; a case
previously treated (not a relapse), one entered in error and one started the next month not counted in it; a
corrected outcome counted as corrected; and a definition naming no known count refused at load."""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path

import pytest

from appliance.layers.clinical import tuberculosis
from appliance.layers.clinical.tuberculosis_schemas import TbCorrection, TbFollowUpIn, TbOutcomeIn, TbRegistrationIn
from appliance.national import indicators as national
from appliance.substrate import record
from appliance.substrate.principal import Principal
from tests.layers.clinical.conftest import new_patient
from tests.national.test_indicators import DEFINITIONS_FILE

ZONE = "Africa/Nairobi"
REGIMENS = tuberculosis.load_regimens(Path(__file__).resolve().parents[2] / "policies" / "tuberculosis.toml")


def test_the_cohort_month_counts_new_and_relapse_cases_and_their_outcomes(db, tenant_factory):
    facility = tenant_factory(name="TB Counting Facility", timezone=ZONE)
    doctor = Principal(account_id=uuid.uuid4(), kind="staff", display_name="Dr Cohort", tenant=facility.slug,
                       role="clinician")
    today = dt.date.today()
    period = national.Period.containing(dt.date(today.year - 2, 5, 1))
    day = dt.date(period.year, period.month, 15)

    def case(born: dt.date, sex: str, started: dt.date = day, **fields) -> dict:
        with db.tenant(facility.slug) as conn:
            who = new_patient(conn, doctor, family_name="Ochieng", given_names="Case", sex=sex, birth_date=born)
            return tuberculosis.register(conn, doctor, who["id"], TbRegistrationIn.model_validate(
                {"started_on": started, "site": "pulmonary", "bacteriology": "bacteriologically_confirmed",
                 "history": "new", "regimen": "2HRZE/4HR", "hiv_status": "negative", "weight_kg": "50", **fields}),
                regimens=REGIMENS, today=today)

    def outcome(treated: dict, what: str, months: int = 6) -> dict:
        with db.tenant(facility.slug) as conn:
            return tuberculosis.record_outcome(conn, doctor, treated["patient_id"], treated["id"], TbOutcomeIn(
                outcome=what, outcome_on=tuberculosis.months_after(treated["started_on"], months)),
                regimens=REGIMENS, today=today)

    thirty = dt.date(day.year - 30, 1, 1)  # 30 at the start: the 15-49 band of the file
    cured = case(thirty, "male")
    with db.tenant(facility.slug) as conn:
        for month in (2, 6):
            tuberculosis.record_follow_up(conn, doctor, cured["patient_id"], cured["id"], TbFollowUpIn(
                month=month, examined_on=tuberculosis.months_after(day, month), smear="negative"),
                regimens=REGIMENS, today=today)
    outcome(cured, "cured")
    outcome(case(thirty, "female", history="relapse", bacteriology="clinically_diagnosed"), "treatment_completed")
    outcome(case(dt.date(day.year - 8, 1, 1), "male", site="extrapulmonary"), "died", months=1)
    case(thirty, "male")  # on treatment: in the cohort, with no outcome yet
    # Not in the month's figures: a case after failure, one registered on the wrong patient, one started next month.
    case(thirty, "male", history="after_failure")
    wrong = case(thirty, "male")
    with db.tenant(facility.slug) as conn:
        record.retract(conn, doctor, wrong["id"], "registered on the wrong patient")
    case(thirty, "male", started=dt.date(day.year, day.month + 1, 2))
    # Recorded lost to follow-up, corrected to not evaluated (transferred out): counted as corrected.
    moved = outcome(case(thirty, "female"), "lost_to_follow_up", months=3)
    with db.tenant(facility.slug) as conn:
        tuberculosis.correct_treatment(conn, doctor, moved["patient_id"], moved["id"], TbCorrection.model_validate(
            {**{k: moved[k] for k in ("started_on", "site", "bacteriology", "history", "regimen", "hiv_status",
                                      "weight_kg")}, "outcome": "not_evaluated", "outcome_on": moved["outcome_on"],
             "reason": "transferred out, not lost", "version_id": moved["id"]}), regimens=REGIMENS, today=today)

    definitions = national.load_definitions(DEFINITIONS_FILE)
    counts = national.count_facility(db, facility.slug, ZONE, period, definitions)
    figures = {i.id: counts[i.id] for i in definitions.indicators if i.source == "tb_outcomes"}
    assert figures == {
        "tb_new_relapse_registered": {("M", "15-49Y"): 2, ("F", "15-49Y"): 2, ("M", "5-14Y"): 1},
        "tb_new_relapse_cured": {("M", "15-49Y"): 1},
        "tb_new_relapse_completed": {("F", "15-49Y"): 1},
        "tb_new_relapse_failed": {},
        "tb_new_relapse_died": {("M", "5-14Y"): 1},
        "tb_new_relapse_lost": {},
        "tb_new_relapse_not_evaluated": {("F", "15-49Y"): 1},
    }


def test_a_tb_indicator_must_name_what_it_counts(tmp_path):
    text = DEFINITIONS_FILE.read_text(encoding="utf-8").replace('cases = "died"', 'cases = "dead"')
    (tmp_path / "indicators.toml").write_text(text, encoding="utf-8")
    with pytest.raises(national.IndicatorError, match="cases must be one of registered, cured"):
        national.load_definitions(tmp_path / "indicators.toml")
