"""The EPI coverage numerators (policies/indicators.toml, source "immunizations"): pentavalent doses 1 and 3 and
measles dose 1 given at the facility in its month to children under one, by sex; a catch-up dose at one year, a
dose read from a card, a dose not given, one entered in error and one corrected into the next month not counted
in it; a dose the child's card does not count (too young, too soon after the dose before, from an expired lot, a
repeat) not counted either, as the national page says; small cells withheld as any other; the DHIS2 file and the
CSV the ministry takes away carry them by their codes, and only the ministry's analyst takes them."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import uuid
import zoneinfo

import pytest

from appliance.layers.clinical import immunization
from appliance.layers.clinical.immunization_schedule import load_schedule
from appliance.layers.clinical.schemas import ImmunizationIn
from appliance.national import indicators as national
from appliance.substrate.principal import Principal
from tests.layers.clinical.conftest import new_patient
from tests.national.test_indicators import DEFINITIONS_FILE

ZONE = "Africa/Nairobi"


@pytest.fixture(scope="module")
def counted(db, settings, tenant_factory):
    facility = tenant_factory(name="Vaccinating Facility", timezone=ZONE)
    zone = zoneinfo.ZoneInfo(ZONE)
    nurse = Principal(account_id=uuid.uuid4(), kind="staff", display_name="Nurse Akinyi", tenant=facility.slug,
                      role="nurse")
    schedule = load_schedule(settings.policies_dir / "immunization.toml")
    today = dt.datetime.now(zone).date()
    this_month = national.Period.containing(today)
    last_month = this_month.previous()
    day = dt.date(last_month.year, last_month.month, 15)

    def dose(born: dt.date, sex: str, vaccine: str, number: int, **fields) -> dict:
        with db.tenant(facility.slug) as conn:
            child = new_patient(conn, nurse, family_name="Odhiambo", given_names="Baby", sex=sex, birth_date=born)
            return immunization.record_dose(conn, nurse, child["id"], ImmunizationIn.model_validate(
                {"vaccine": vaccine, "dose_number": number, "given_on": day, **fields}),
                schedule=schedule, today=today, tz=zone)["immunization"]

    nine_weeks = day - dt.timedelta(weeks=9)
    for _ in range(5):  # five girls' first pentavalent dose: a cell the disclosure rule publishes
        dose(nine_weeks, "female", "PENTA", 1)
    dose(day - dt.timedelta(weeks=16), "male", "PENTA", 3)
    dose(day - dt.timedelta(days=290), "female", "MCV", 1)
    # Not in last month's Penta1 under one: a catch-up at 13 months, a dose from the child's card, a dose due and
    # not given, a dose entered in error, and a dose whose day is corrected into this month.
    dose(day - dt.timedelta(days=400), "male", "PENTA", 1)
    dose(nine_weeks, "male", "PENTA", 1, source="historical")
    dose(nine_weeks, "male", "PENTA", 1, status="not_done", not_done_reason="out_of_stock")
    mistaken = dose(nine_weeks, "male", "PENTA", 1)
    moved = dose(nine_weeks, "male", "PENTA", 1)
    # Doses the card says do not count, each recorded the day the valid ones were: a first pentavalent dose at five
    # weeks (the minimum age is six), one from a lot that expired the day before, a third dose two weeks after a
    # second the child's card shows (the minimum interval is four), and a first dose given again.
    dose(day - dt.timedelta(weeks=5), "female", "PENTA", 1)
    dose(nine_weeks, "female", "PENTA", 1, lot_number="EX-1", expiry_date=day - dt.timedelta(days=1))
    with db.tenant(facility.slug) as conn:
        child = new_patient(conn, nurse, family_name="Odhiambo", given_names="Baby", sex="male",
                            birth_date=day - dt.timedelta(weeks=20))
        for number, weeks_before in ((1, 8), (2, 2), (3, 0)):
            fields = {"source": "historical"} if weeks_before else {}
            immunization.record_dose(conn, nurse, child["id"], ImmunizationIn.model_validate(
                {"vaccine": "PENTA", "dose_number": number, "given_on": day - dt.timedelta(weeks=weeks_before),
                 **fields}), schedule=schedule, today=today, tz=zone)
        repeated = new_patient(conn, nurse, family_name="Odhiambo", given_names="Baby", sex="female",
                               birth_date=nine_weeks)
        for given_on in (day - dt.timedelta(days=1), day):  # the first counts, the second is a repeat
            immunization.record_dose(conn, nurse, repeated["id"], ImmunizationIn(
                vaccine="PENTA", dose_number=1, given_on=given_on, source="administered"),
                schedule=schedule, today=today, tz=zone)
    first_of_month = dt.date(this_month.year, this_month.month, 1)
    with db.tenant(facility.slug) as conn:
        immunization.withdraw_dose(conn, nurse, mistaken["patient_id"], mistaken["id"], "recorded on the wrong child")
        immunization.correct_dose(conn, nurse, moved["patient_id"], moved["id"], ImmunizationIn(
            vaccine="PENTA", dose_number=1, given_on=first_of_month), "given at the outreach of the 1st",
            schedule=schedule, today=today, tz=zone)
    definitions = national.load_definitions(DEFINITIONS_FILE)
    return facility, last_month, definitions, *(national.count_facility(db, facility.slug, ZONE, period, definitions)
                                                for period in (last_month, this_month))


def test_the_epi_numerators_count_doses_given_here_to_children_under_one(counted):
    _, _, definitions, last_month, this_month = counted
    assert last_month["penta1_under1"] == {("F", "LT1Y"): 6}  # the five girls, and the girl given it twice once
    assert last_month["penta3_under1"] == {("M", "LT1Y"): 1}  # not the one given too soon after dose 2
    assert last_month["mcv1_under1"] == {("F", "LT1Y"): 1}
    assert this_month["penta1_under1"] == {("M", "LT1Y"): 1}  # the dose corrected to the 1st
    assert this_month["penta3_under1"] == this_month["mcv1_under1"] == {}
    published = national.withhold(last_month["penta3_under1"], definitions.cells, definitions.threshold)
    assert published.total is None and published.cells[("M", "LT1Y")] is None  # one child: withheld


def test_the_ministry_takes_them_away_by_their_dhis2_codes(counted, signed_in):
    facility, month, *_ = counted
    analyst = signed_in("ministry_analyst", kind="ministry_analyst")
    page = analyst.get(f"/national?period={month.value}&indicator=penta3_under1").text
    assert national.DOSE_CRITERIA.replace("'", "&#39;") in page.split('id="dose-criteria"')[1]
    dhis2 = analyst.get(f"/national/export?period={month.value}&format=dhis2")
    assert dhis2.status_code == 200, dhis2.text
    mine = {(v["dataElement"], v["categoryOptionCombo"]): v["value"] for v in json.loads(dhis2.text)["dataValues"]
            if v["orgUnit"] == facility.slug and v["dataElement"].startswith("HOS_EPI_")}
    assert mine[("HOS_EPI_PENTA1_LT1", "F_LT1Y")] == "6"
    assert ("HOS_EPI_PENTA3_LT1", "M_LT1Y") not in mine and ("HOS_EPI_MCV1_LT1", "F_LT1Y") not in mine  # withheld
    sheet = analyst.get(f"/national/export?period={month.value}&format=csv")
    totals = {row[1]: (row[9], row[10]) for row in csv.reader(io.StringIO(sheet.text))
              if len(row) > 10 and row[3] == facility.slug and row[7] == "all"}
    assert totals["penta1_under1"] == ("6", "no") and totals["penta3_under1"] == ("", "yes")
    for someone in (signed_in("nurse", facility.slug), signed_in("clinician", facility.slug)):
        assert someone.get(f"/national/export?period={month.value}&format=dhis2").status_code == 403


def test_an_immunization_indicator_is_refused_without_its_vaccine_or_dose(tmp_path, settings):
    text = DEFINITIONS_FILE.read_text(encoding="utf-8")
    for fields, said in (('vaccine = "PENTA"\nunder_years = 1', "dose_number must be a whole number from 1"),
                         ('vaccine = "penta 1"\ndose_number = 1', "vaccine must be a vaccine code"),
                         ('vaccine = "PENTA"\ndose_number = 0', "dose_number must be a whole number from 1, not 0"),
                         ('vaccine = "PENTA"\ndose_number = 4', "PENTA dose 4, a dose the immunization schedule does "
                                                                 "not have"),
                         ('vaccine = "ZOSTER"\ndose_number = 1', "ZOSTER dose 1, a dose the immunization")):
        path = tmp_path / "indicators.toml"
        path.write_text(f'{text}\n[[indicator]]\nid = "broken"\nname = "Broken"\ndhis2 = "X"\n'
                        f'source = "immunizations"\n{fields}\n', encoding="utf-8")
        with pytest.raises(national.IndicatorError, match=said):
            national.load_definitions(path)
    # Every vaccine an indicator counts is one the schedule records doses of.
    schedule = load_schedule(settings.policies_dir / "immunization.toml")
    definitions = national.load_definitions(DEFINITIONS_FILE)
    counted_vaccines = {i.vaccine for i in definitions.indicators if i.source == "immunizations"}
    assert counted_vaccines and counted_vaccines <= set(schedule.by_code)
