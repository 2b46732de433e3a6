"""Antenatal care counted for the ministry (policies/indicators.toml, source "antenatal"): on a hand-built month,
ANC1 and ANC1 before 12 weeks at a pregnancy's first contact, ANC4 in the month of its fourth contact (its first three
in the month before), the syphilis tests each pregnancy once, and a contact entered in error not at all."""

from __future__ import annotations

import datetime as dt
import uuid
import zoneinfo

import pytest

from appliance.layers.clinical import antenatal, service
from appliance.layers.clinical.antenatal_schemas import AntenatalIn
from appliance.layers.clinical.schemas import PatientIn
from appliance.national import indicators as national
from appliance.substrate.principal import Principal
from tests.national.test_indicators import DEFINITIONS_FILE

ZONE = "Africa/Nairobi"
WOMEN = ("F", "15-49Y")


@pytest.fixture(scope="module")
def counted(db, tenant_factory):
    facility = tenant_factory(name="ANC Facility", timezone=ZONE)
    zone = zoneinfo.ZoneInfo(ZONE)
    midwife = Principal(account_id=uuid.uuid4(), kind="staff", display_name="Midwife", tenant=facility.slug,
                        role="nurse")
    today = dt.datetime.now(zone).date()
    last_month = national.Period.containing(today).previous()
    before = last_month.previous()

    def woman() -> uuid.UUID:
        data = PatientIn.model_validate({
            "family_name": "Achieng", "given_names": "Mercy", "birth_date": dt.date(today.year - 26, 2, 1),
            "sex": "female", "identifiers": [{"system": "national_id", "value": uuid.uuid4().hex[:10]}]})
        linked = service.with_subject(db, data, tenant=facility.slug)
        with db.tenant(facility.slug) as conn:
            return service.register_patient(conn, midwife, linked)["id"]

    def seen(patient_id: uuid.UUID, period: national.Period, day: int, **fields) -> dict:
        body = AntenatalIn.model_validate({"seen_on": dt.date(period.year, period.month, day), **fields})
        with db.tenant(facility.slug) as conn:
            return antenatal.record_contact(conn, midwife, patient_id, body, today=today, tz=zone)

    # A: first seen the month before at 10 weeks (tested negative then), three contacts there, the fourth last month.
    a = woman()
    seen(a, before, 3, lmp=dt.date(before.year, before.month, 3) - dt.timedelta(weeks=10), syphilis_test="negative")
    seen(a, before, 10)
    seen(a, before, 17)
    seen(a, last_month, 15)
    # B: first seen last month at 8 weeks, tested negative.
    seen(woman(), last_month, 5, lmp=dt.date(last_month.year, last_month.month, 5) - dt.timedelta(weeks=8),
         syphilis_test="negative")
    # C: first seen last month at 20 weeks, positive, and positive again at the next contact: each counted once.
    c = woman()
    seen(c, last_month, 6, lmp=dt.date(last_month.year, last_month.month, 6) - dt.timedelta(weeks=20),
         syphilis_test="positive")
    seen(c, last_month, 20, syphilis_test="positive", syphilis_treated=True)
    # D: a first contact entered in error (recorded on the wrong woman): not counted.
    wrong = seen(woman(), last_month, 7, lmp=dt.date(last_month.year, last_month.month, 7) - dt.timedelta(weeks=9),
                 syphilis_test="positive")
    with db.tenant(facility.slug) as conn:
        antenatal.enter_in_error(conn, midwife, wrong["patient_id"], wrong["id"], "recorded on the wrong woman")
    definitions = national.load_definitions(DEFINITIONS_FILE)
    return definitions, *(national.count_facility(db, facility.slug, ZONE, period, definitions)
                          for period in (before, last_month))


def test_anc_contacts_are_counted_by_their_number_in_the_pregnancy(counted):
    _, before, last_month = counted
    assert before["anc1"] == {WOMEN: 1} and before["anc1_before_12_weeks"] == {WOMEN: 1}
    assert before["anc_syphilis_tested"] == {WOMEN: 1} and before["anc4"] == {}
    assert last_month["anc1"] == {WOMEN: 2}  # B and C; D's contact is entered in error
    assert last_month["anc1_before_12_weeks"] == {WOMEN: 1}  # B at 8 weeks, not C at 20
    assert last_month["anc4"] == {WOMEN: 1} and last_month["anc8"] == {}  # A's fourth
    assert last_month["anc_syphilis_tested"] == {WOMEN: 2}  # B and C, C once for two tests
    assert last_month["anc_syphilis_positive"] == {WOMEN: 1}


def test_small_anc_cells_are_withheld_as_any_other(counted):
    definitions, _, last_month = counted
    published = national.withhold(last_month["anc1"], definitions.cells, definitions.threshold)
    assert published.total is None and published.cells[WOMEN] is None
