"""Mortality by underlying cause as certified (policies/indicators.toml, source "deaths"): death certificates
in force whose time of death falls in the facility's month, by the ICD-10 chapter of the lowest used line of
Part 1, sex and age band at death; entered in error not counted, a corrected one as corrected; small cells
withheld as any other."""

from __future__ import annotations

import datetime as dt
import uuid
import zoneinfo

import pytest

from appliance.layers.clinical import death, service
from appliance.layers.clinical.schemas import DeathIn, PatientIn
from appliance.national import indicators as national
from appliance.substrate.principal import Principal
from tests.national.test_indicators import DEFINITIONS_FILE

ZONE = "Africa/Nairobi"  # UTC+3: 01:30 on the 1st there is the last evening of the month before in UTC


@pytest.fixture(scope="module")
def counted(db, tenant_factory):
    facility = tenant_factory(name="Mortality Facility", timezone=ZONE)
    zone = zoneinfo.ZoneInfo(ZONE)
    clinician = Principal(account_id=uuid.uuid4(), kind="staff", display_name="Dr Certifier", tenant=facility.slug,
                          role="clinician")
    # The latest month whose 1st at 01:30 (below) has passed: until then, on the 1st, the month before.
    this_month = national.Period.containing((dt.datetime.now(zone) - dt.timedelta(hours=2)).date())
    last_month = this_month.previous()
    day = dt.date(last_month.year, last_month.month, 15)

    def certified(born: dt.date, sex: str, when: dt.datetime, *causes: str, pregnancy: str | None = None) -> dict:
        data = PatientIn.model_validate({"family_name": "Were", "given_names": "Ann", "birth_date": born, "sex": sex,
                                         "identifiers": [{"system": "national_id", "value": uuid.uuid4().hex[:10]}]})
        linked = service.with_subject(db, data, tenant=facility.slug)
        with db.tenant(facility.slug) as conn:
            patient_id = service.register_patient(conn, clinician, linked)["id"]
            return death.certify(conn, clinician, patient_id, DeathIn.model_validate({
                "died_at": when, "place": "this_facility", "part1": [{"code": c} for c in causes],
                "manner": "disease", "pregnancy": pregnancy}))

    noon = dt.datetime.combine(day, dt.time(12), zone)
    # A woman of 30: postpartum haemorrhage due to retained placenta, both chapter XV.
    certified(dt.date(day.year - 30, 1, 10), "female", noon, "O72.0", "O73.0", pregnancy="within_42_days")
    # Men of 70 and 65: infarction, and a pneumonia whose underlying cause (line b) is a lung cancer.
    certified(dt.date(day.year - 70, 1, 10), "male", noon, "I21.9")
    certified(dt.date(day.year - 65, 1, 10), "male", noon, "J18.9", "C34.9")
    # A child of 2 dead of diarrhoea at 01:30 on the 1st of this month, Nairobi: this month's, not last month's.
    first = dt.datetime.combine(dt.date(this_month.year, this_month.month, 1), dt.time(1, 30), zone)
    certified(dt.date(day.year - 3, 12, 1), "female", first, "A09")
    # Corrected from an infarction to a road traffic injury: counted as corrected.
    wrong = certified(dt.date(day.year - 40, 1, 10), "male", noon, "I21.9")
    with db.tenant(facility.slug) as conn:
        patient_id = wrong["patient_id"]
        death.correct(conn, clinician, patient_id, wrong["id"], DeathIn.model_validate({
            "died_at": noon, "place": "en_route", "part1": [{"code": "V89.2"}], "manner": "accident"}),
            "the infarction was the ambulance crew's guess; the autopsy found the injuries")
    # Entered in error: not a death at all.
    mistaken = certified(dt.date(day.year - 50, 1, 10), "female", noon, "I64", pregnancy="not_pregnant")
    with db.tenant(facility.slug) as conn:
        death.withdraw(conn, clinician, mistaken["patient_id"], "certified on the wrong chart")
    definitions = national.load_definitions(DEFINITIONS_FILE)
    return definitions, *(national.count_facility(db, facility.slug, ZONE, period, definitions)
                          for period in (last_month, this_month))


def test_deaths_are_counted_by_the_chapter_of_the_underlying_cause_as_certified(counted):
    _, last_month, this_month = counted
    assert last_month["deaths_all_causes"] == {("F", "15-49Y"): 1, ("M", "50PLUSY"): 2, ("M", "15-49Y"): 1}
    assert last_month["deaths_maternal"] == {("F", "15-49Y"): 1}
    assert last_month["deaths_circulatory"] == {("M", "50PLUSY"): 1}
    assert last_month["deaths_neoplasms"] == {("M", "50PLUSY"): 1}  # line b, the lowest used, not line a
    assert last_month["deaths_respiratory"] == {}
    assert last_month["deaths_external"] == {("M", "15-49Y"): 1}
    assert this_month["deaths_all_causes"] == {("F", "1-4Y"): 1} == this_month["deaths_infectious"]


def test_small_mortality_cells_are_withheld_as_any_other(counted):
    definitions, last_month, _ = counted
    published = national.withhold(last_month["deaths_all_causes"], definitions.cells, definitions.threshold)
    assert published.total is None  # 4 deaths in all: under the threshold, nothing of them leaves the facility
