"""Births counted for the ministry (policies/indicators.toml, source "deliveries"): deliveries and caesarean
sections by the mother's age, babies born alive, stillborn (fresh, macerated) and born alive under 2500 g by their
own sex in the youngest band; the facility's month on its own calendar, a corrected delivery as corrected; small
cells withheld as any other."""

from __future__ import annotations

import datetime as dt
import uuid
import zoneinfo

import pytest
import sqlalchemy as sa

from appliance.layers.clinical import delivery, service
from appliance.layers.clinical.schemas import DeliveryIn, EncounterIn, PatientIn
from appliance.national import indicators as national
from appliance.substrate.principal import Principal
from tests.national.test_indicators import DEFINITIONS_FILE

ZONE = "Africa/Nairobi"  # UTC+3: 01:30 on the 1st there is the last evening of the month before in UTC


def _baby(outcome: str, sex: str, weight_g: int) -> dict:
    scores = {"apgar_1": 8, "apgar_5": 9} if outcome == "live_birth" else {}
    return {"outcome": outcome, "sex": sex, "weight_g": weight_g, **scores}


@pytest.fixture(scope="module")
def counted(db, tenant_factory):
    facility = tenant_factory(name="Maternity Facility", timezone=ZONE)
    zone = zoneinfo.ZoneInfo(ZONE)
    midwife = Principal(account_id=uuid.uuid4(), kind="staff", display_name="Midwife", tenant=facility.slug,
                        role="nurse")
    # The latest month whose 1st at 01:30 (below) has passed: until then, on the 1st, the month before.
    this_month = national.Period.containing((dt.datetime.now(zone) - dt.timedelta(hours=2)).date())
    last_month = this_month.previous()
    noon = dt.datetime.combine(dt.date(last_month.year, last_month.month, 15), dt.time(12), zone)

    def delivered(mother_age: int, when: dt.datetime, mode: str, *babies: dict) -> dict:
        data = PatientIn.model_validate({
            "family_name": "Atieno", "given_names": "Rose", "birth_date": dt.date(when.year - mother_age, 1, 10),
            "sex": "female", "identifiers": [{"system": "national_id", "value": uuid.uuid4().hex[:10]}]})
        linked = service.with_subject(db, data, tenant=facility.slug)
        with db.tenant(facility.slug) as conn:
            mother = service.register_patient(conn, midwife, linked)["id"]
        body = DeliveryIn.model_validate({"born_at": when, "gestation_weeks": 39, "mode": mode,
                                          "babies": list(babies), "blood_loss_ml": 300, "uterotonic": "oxytocin"})
        with db.tenant(facility.slug) as conn:
            found = delivery.check(conn, mother, body)
        registrations = [service.with_subject(db, baby, tenant=facility.slug)
                         for baby in delivery.newborns(found, body)]
        with db.tenant(facility.slug) as conn:
            return delivery.record_delivery(conn, midwife, mother, body, registrations)

    # A woman of 30: twins by caesarean section, a girl of 2300 g and a boy stillborn (fresh).
    delivered(30, noon, "caesarean", _baby("live_birth", "female", 2300), _baby("fresh_stillbirth", "male", 2400))
    # A girl of 17: a boy of 3300 g; and a woman of 25 whose baby was macerated, its sex not told.
    delivered(17, noon, "spontaneous_vaginal", _baby("live_birth", "male", 3300))
    delivered(25, noon, "spontaneous_vaginal", _baby("macerated_stillbirth", "unknown", 1800))
    # Corrected from 2600 g to 2450 g: counted as corrected, low birth weight.
    wrong = delivered(28, noon, "assisted_vaginal", _baby("live_birth", "female", 2600))
    with db.tenant(facility.slug) as conn:
        delivery.correct(conn, midwife, wrong["patient_id"], wrong["id"], DeliveryIn.model_validate({
            "born_at": noon, "gestation_weeks": 39, "mode": "assisted_vaginal",
            "babies": [_baby("live_birth", "female", 2450)], "blood_loss_ml": 300, "uterotonic": "oxytocin"}),
            "weighed again on the calibrated scale")
    # Born at 01:30 on the 1st of this month, Nairobi: this month's, not last month's.
    first = dt.datetime.combine(dt.date(this_month.year, this_month.month, 1), dt.time(1, 30), zone)
    delivered(22, first, "spontaneous_vaginal", _baby("live_birth", "male", 3100))
    definitions = national.load_definitions(DEFINITIONS_FILE)
    return definitions, *(national.count_facility(db, facility.slug, ZONE, period, definitions)
                          for period in (last_month, this_month))


def test_births_are_counted_by_outcome_the_mothers_by_age(counted):
    _, last_month, this_month = counted
    assert last_month["deliveries_facility"] == {("F", "15-49Y"): 4}  # the twins' delivery once
    assert last_month["deliveries_caesarean"] == {("F", "15-49Y"): 1}
    assert last_month["births_live"] == {("F", "LT1Y"): 2, ("M", "LT1Y"): 1}
    assert last_month["stillbirths"] == {("M", "LT1Y"): 1, ("U", "LT1Y"): 1}
    assert last_month["stillbirths_fresh"] == {("M", "LT1Y"): 1}
    assert last_month["stillbirths_macerated"] == {("U", "LT1Y"): 1}
    assert last_month["births_low_weight"] == {("F", "LT1Y"): 2}  # 2300 g, and 2450 g as corrected
    assert this_month["deliveries_facility"] == {("F", "15-49Y"): 1}
    assert this_month["births_live"] == {("M", "LT1Y"): 1}


def test_small_birth_cells_are_withheld_as_any_other(counted):
    definitions, last_month, _ = counted
    published = national.withhold(last_month["stillbirths"], definitions.cells, definitions.threshold)
    assert published.total is None  # 2 stillbirths in all: under the threshold, nothing of them leaves the facility


def test_a_baby_born_during_its_mothers_stay_is_not_an_admission(db, tenant_factory):
    """The newborn's encounter alongside its mother's stay keeps it reachable on her ward; it is not an admission
    of its own, so the month's admissions count the mother once, whatever she gave birth to."""
    facility = tenant_factory(name="Rooming-in Facility", timezone=ZONE)
    midwife = Principal(account_id=uuid.uuid4(), kind="staff", display_name="Midwife", tenant=facility.slug,
                        role="nurse")
    linked = service.with_subject(db, PatientIn.model_validate({
        "family_name": "Njeri", "given_names": "Faith", "birth_date": "1996-04-02", "sex": "female",
        "identifiers": [{"system": "national_id", "value": uuid.uuid4().hex[:10]}]}), tenant=facility.slug)
    with db.tenant(facility.slug) as conn:
        mother = service.register_patient(conn, midwife, linked)["id"]
        service.open_encounter(conn, midwife, mother, EncounterIn(encounter_class="inpatient", status="in_progress",
                                                                  reason="in labour"))
    # Born just after she was admitted (an hour before, as this test had it, the birth fell in the month before
    # her admission when she was admitted in the first hour of a month, Nairobi time, and no admission counted).
    born = dt.datetime.now(dt.UTC)
    body = DeliveryIn.model_validate({"born_at": born, "gestation_weeks": 38, "mode": "spontaneous_vaginal",
                                      "babies": [_baby("live_birth", "female", 3000),
                                                 _baby("live_birth", "male", 2900)],
                                      "blood_loss_ml": 250, "uterotonic": "oxytocin"})
    with db.tenant(facility.slug) as conn:
        found = delivery.check(conn, mother, body)
    registrations = [service.with_subject(db, baby, tenant=facility.slug) for baby in delivery.newborns(found, body)]
    with db.tenant(facility.slug) as conn:
        delivery.record_delivery(conn, midwife, mother, body, registrations)
        alongside = conn.execute(sa.text("SELECT count(*) FROM encounter WHERE reason = :r"),
                                 {"r": delivery.BORN_HERE}).scalar()
    assert alongside == 2  # the twins each have their encounter beside hers
    counts = national.count_facility(db, facility.slug, ZONE, national.Period.containing(born.astimezone(
        zoneinfo.ZoneInfo(ZONE)).date()), national.load_definitions(DEFINITIONS_FILE))
    assert sum(counts["admissions"].values()) == 1
    assert sum(counts["births_live"].values()) == 2
