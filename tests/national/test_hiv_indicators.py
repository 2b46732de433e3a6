"""The HIV treatment figures (policies/indicators.toml, source "hiv_care") on a hand-built month: TX_NEW, TX_CURR at
the month's last day, TX_PVLS's denominator and numerator (and their split by indication, routine or targeted: a
result with none documented in the totals only), and the interruptions in treatment that began in the
month; a person transferred out, one interrupted the month before, a viral load older than 12 months, an enrolment
entered in error and ART started the next month left out where the definitions say; and a definition naming no count
refused at load."""

from __future__ import annotations

import datetime as dt
import uuid
import zoneinfo
from pathlib import Path

import pytest

from appliance.layers.clinical import death, hiv, service
from appliance.layers.clinical.hiv_schemas import (
    HivEnrolmentIn,
    HivRegimenIn,
    HivStatusIn,
    HivViralLoadIn,
    HivVisitIn,
)
from appliance.layers.clinical.schemas import DeathIn, PatientIn
from appliance.national import indicators as national
from appliance.substrate.principal import Principal
from tests.layers.clinical.conftest import new_patient
from tests.national.test_indicators import DEFINITIONS_FILE

ZONE = "Africa/Nairobi"
PROGRAMME = hiv.load_programme(Path(__file__).resolve().parents[2] / "policies" / "hiv.toml")


def test_a_hand_built_month_of_art(db, tenant_factory):
    facility = tenant_factory(name="HIV Counting Facility", timezone=ZONE)
    doctor = Principal(account_id=uuid.uuid4(), kind="staff", display_name="Dr Cascade", tenant=facility.slug,
                       role="clinician")
    today = dt.date.today()
    period = national.Period.containing(dt.date(today.year - 1, 5, 1))
    y = period.year
    long_ago = dt.date(y - 1, 1, 5)

    def person(sex: str, art_on: dt.date | None = long_ago, *, born: dt.date = dt.date(y - 30, 1, 1),
               visits=(), loads=()) -> dict:
        with db.tenant(facility.slug) as conn:
            who = new_patient(conn, doctor, family_name="Phiri", given_names="Case", sex=sex, birth_date=born)["id"]
            care = hiv.enrol(conn, doctor, who, HivEnrolmentIn(
                enrolled_on=min(art_on or long_ago, long_ago), diagnosed_on=dt.date(y - 2, 12, 20), who_stage=1,
                tb_screening="no_signs"), programme=PROGRAMME, today=today)
            if art_on is not None:
                hiv.change_regimen(conn, doctor, who, care["root_id"], HivRegimenIn(
                    change="initiation", started_on=art_on, regimen="TDF+3TC+DTG"), programme=PROGRAMME, today=today)
            for on, days, next_on in visits:
                hiv.record_visit(conn, doctor, who, care["root_id"], HivVisitIn(
                    visit_on=on, arv_days=days, next_appointment_on=next_on), programme=PROGRAMME, today=today)
            for on, copies, *indication in loads:
                hiv.record_viral_load(conn, doctor, who, care["root_id"], HivViralLoadIn(
                    sampled_on=on, copies_per_ml=copies, indication=(indication or [None])[0]), programme=PROGRAMME,
                    today=today)
        return {"patient_id": who, "care_id": care["root_id"]}

    may = lambda day: dt.date(y, 5, day)  # noqa: E731 -- the month's days read best as may(10)
    # Started this month, picked up 30 days: new and current; a viral load before ART (no schedule yet, no indication
    # said: not documented) is in TX_PVLS's totals and in neither part of its split.
    person("male", may(10), visits=[(may(10), 30, dt.date(y, 6, 9))], loads=[(may(5), 200)])
    # On ART a year and more; the 1 May appointment missed, but 90 days on 20 April last to 19 July; suppressed in
    # November, the schedule's (due from 6 months after ART): current, in TX_PVLS both, routine.
    person("female", visits=[(dt.date(y, 4, 20), 90, may(1))], loads=[(dt.date(y - 1, 11, 1), 40)])
    # 30 days on 1 April, due 1 May: interrupted from 30 May (29 days on), counted in IIT, not current.
    person("female", visits=[(dt.date(y, 4, 1), 30, may(1))])
    # Current, unsuppressed in April, ordered for suspected failure: in the denominator (targeted), not the numerator.
    person("male", visits=[(may(15), 30, dt.date(y, 6, 14))], loads=[(dt.date(y, 4, 1), 5000, "targeted")])
    # A boy of 8 transferred out on 25 May: neither current nor interrupted.
    moved = person("male", born=dt.date(y - 8, 1, 1), visits=[(may(20), 60, dt.date(y, 7, 19))])
    # Interrupted from 29 April: April's, not May's, and not current.
    person("female", visits=[(dt.date(y, 3, 1), 30, dt.date(y, 3, 31))])
    # Current; the viral load of 20 May last year is more than 12 months before 31 May: not in TX_PVLS.
    person("female", visits=[(may(2), 90, dt.date(y, 7, 31))], loads=[(dt.date(y - 1, 5, 20), 30)])
    # Enrolled and started this month on the wrong person, withdrawn: nowhere. Started in June: nowhere in May.
    wrong = person("male", may(12), visits=[(may(12), 30, dt.date(y, 6, 11))])
    person("male", dt.date(y, 6, 2))
    with db.tenant(facility.slug) as conn:
        hiv.change_status(conn, doctor, moved["patient_id"], moved["care_id"], HivStatusIn(
            status="transferred_out", status_on=may(25)), programme=PROGRAMME, today=today)
        hiv.withdraw(conn, doctor, wrong["patient_id"], wrong["care_id"], "enrolled on the wrong person")

    definitions = national.load_definitions(DEFINITIONS_FILE)
    counts = national.count_facility(db, facility.slug, ZONE, period, definitions)
    figures = {i.id: counts[i.id] for i in definitions.indicators if i.source == "hiv_care"}
    assert figures == {
        "hiv_tx_new": {("M", "15-49Y"): 1},
        "hiv_tx_curr": {("M", "15-49Y"): 2, ("F", "15-49Y"): 2},
        "hiv_tx_pvls_d": {("M", "15-49Y"): 2, ("F", "15-49Y"): 1},
        "hiv_tx_pvls_n": {("M", "15-49Y"): 1, ("F", "15-49Y"): 1},
        "hiv_iit": {("F", "15-49Y"): 1},
        "hiv_tx_pvls_d_routine": {("F", "15-49Y"): 1},
        "hiv_tx_pvls_d_targeted": {("M", "15-49Y"): 1},
        "hiv_tx_pvls_n_routine": {("F", "15-49Y"): 1},
        "hiv_tx_pvls_n_targeted": {},
    }


def test_an_hiv_indicator_must_name_what_it_counts(tmp_path):
    text = DEFINITIONS_FILE.read_text(encoding="utf-8").replace('count = "tx_curr"', 'count = "on_art"')
    (tmp_path / "indicators.toml").write_text(text, encoding="utf-8")
    with pytest.raises(national.IndicatorError, match="count must be one of tx_new, tx_curr"):
        national.load_definitions(tmp_path / "indicators.toml")


def test_a_person_certified_dead_is_neither_current_nor_to_trace_whatever_their_status_in_care(db, tenant_factory):
    """A woman on ART with six months of pills died at home; her death was certified, her status in care here never
    changed: she stayed 'Active on ART' on the register, then went onto the list to trace (a tracer sent to a bereaved
    family), and TX_CURR kept counting her. From the day of death she stands as died; the month before, she counts."""
    facility = tenant_factory(name="HIV Deaths Facility", timezone=ZONE)
    doctor = Principal(account_id=uuid.uuid4(), kind="staff", display_name="Dr Cascade", tenant=facility.slug,
                       role="clinician")
    today = dt.date.today()
    may = national.Period.containing(dt.date(today.year - 1, 5, 1))
    y = may.year
    linked = service.with_subject(db, PatientIn.model_validate({
        "family_name": "Phiri", "given_names": "Grace", "birth_date": dt.date(y - 30, 1, 1), "sex": "female",
        "identifiers": [{"system": "national_id", "value": uuid.uuid4().hex[:10]}]}), tenant=facility.slug)
    with db.tenant(facility.slug) as conn:
        who = service.register_patient(conn, doctor, linked)["id"]
        care = hiv.enrol(conn, doctor, who, HivEnrolmentIn(enrolled_on=dt.date(y - 1, 1, 5),
                                                           diagnosed_on=dt.date(y - 2, 12, 20), who_stage=1,
                                                           tb_screening="no_signs"), programme=PROGRAMME, today=today)
        hiv.change_regimen(conn, doctor, who, care["root_id"], HivRegimenIn(
            change="initiation", started_on=dt.date(y - 1, 1, 5), regimen="TDF+3TC+DTG"), programme=PROGRAMME,
            today=today)
        hiv.record_visit(conn, doctor, who, care["root_id"], HivVisitIn(
            visit_on=dt.date(y, 4, 20), arv_days=180, next_appointment_on=dt.date(y, 10, 17)), programme=PROGRAMME,
            today=today)
        death.certify(conn, doctor, who, DeathIn.model_validate({
            "died_at": dt.datetime(y, 5, 20, 12, tzinfo=zoneinfo.ZoneInfo(ZONE)), "place": "home",
            "manner": "disease", "pregnancy": "unknown", "part1": [{"code": "J96.0", "interval": "2 hours"},
                                                                  {"code": "A15.0", "interval": "3 months"}]}))
        listed = hiv.register(conn, doctor, programme=PROGRAMME, today=today)
    assert listed["to_trace"] == [] and (listed["counts"]["died"], listed["counts"]["active"]) == (1, 0)
    assert (listed["people"][0]["status"], listed["people"][0]["status_on"]) == ("died", dt.date(y, 5, 20))
    definitions = national.load_definitions(DEFINITIONS_FILE)
    current = {month: national.count_facility(db, facility.slug, ZONE, month, definitions)["hiv_tx_curr"]
               for month in (may.previous(), may)}
    assert current == {may.previous(): {("F", "15-49Y"): 1}, may: {}}
