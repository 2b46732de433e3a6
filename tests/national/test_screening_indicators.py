"""The acute malnutrition indicators: children 6-59 months screened by MUAC or oedema in a facility's
month, and of them those with severe and moderate acute malnutrition, each child once, counted by the
clinical layer's own cut-offs on the facility's calendar."""

from __future__ import annotations

import datetime as dt
import uuid
import zoneinfo

import pytest

from appliance.layers.clinical import growth, service
from appliance.national import indicators as national
from appliance.substrate import record
from appliance.substrate.principal import Principal
from tests.layers.clinical.conftest import new_patient
from tests.national.test_indicators import DEFINITIONS_FILE

ZONE = "Africa/Nairobi"  # UTC+3: 01:30 on a day there is the evening before in UTC


def months_before(day: dt.date, months: int) -> dt.date:
    """The date `months` calendar months before `day` (a 15th, so always a real date)."""
    index = day.year * 12 + day.month - 1 - months
    return day.replace(year=index // 12, month=index % 12 + 1)


@pytest.fixture(scope="module")
def screened(db, tenant_factory):
    """Children screened on the 15th of last month (Nairobi) and around it; returns the facility and
    both months' raw counts."""
    facility = tenant_factory(name="Nutrition Facility", timezone=ZONE)
    zone = zoneinfo.ZoneInfo(ZONE)
    clinician = Principal(account_id=uuid.uuid4(), kind="staff", display_name="Dr Muac", tenant=facility.slug,
                          role="clinician")
    this_month = national.Period.containing(dt.datetime.now(zone).date())
    last_month = this_month.previous()
    day = dt.date(last_month.year, last_month.month, 15)

    def at(days: int = 0, hour: int = 10, minute: int = 0) -> dt.datetime:
        return dt.datetime.combine(day + dt.timedelta(days=days), dt.time(hour, minute), zone)

    with db.tenant(facility.slug) as conn:
        def child(months: int, *screenings: tuple[dt.datetime, dict], sex: str = "female", days_younger: int = 0):
            born = months_before(day, months) + dt.timedelta(days=days_younger)
            patient = new_patient(conn, clinician, birth_date=born, sex=sex)
            return patient, [record.append(conn, clinician, "vital_signs", patient_id=patient["id"], detail=detail,
                                           occurred_at=when) for when, detail in screenings]

        child(20, (at(), {"muac_mm": 114}))  # severe
        child(20, (at(), {"muac_mm": 115}))  # moderate
        child(20, (at(), {"muac_mm": 124}))  # moderate
        # 125 mm: screened, no acute malnutrition; its 100 mm at 00:30 on the 1st of this month in Nairobi
        # (21:30 UTC, still last month in UTC) belongs to this month.
        child(20, (at(), {"muac_mm": 125}),
              (dt.datetime.combine(dt.date(this_month.year, this_month.month, 1), dt.time(0, 30), zone),
               {"muac_mm": 100}))
        child(20, (at(), {"oedema": True}))  # severe, by oedema alone
        child(20, (at(), {"oedema": False}))  # looked for and absent: screened
        child(20, (at(days=-30), {"muac_mm": 110}))  # the month before: not counted last month
        child(20, (at(), {"weight_kg": 9.5}))  # weighed only: not screened
        # The age window, on Nairobi's calendar: 6 months on the 15th at 01:30 there (5 in UTC, the 14th):
        # counted, under 1; one who turns 6 months the next day is not.
        child(6, (at(hour=1, minute=30), {"muac_mm": 120}))
        child(6, (at(), {"muac_mm": 100}), days_younger=1)
        # 60 months on the 15th at 01:30 (59 in UTC): not counted; 59 months, 60 the next day, is.
        child(60, (at(hour=1, minute=30), {"muac_mm": 100}))
        child(60, (at(), {"muac_mm": 130}), days_younger=1)
        # Screened twice: once, severe if either screening was; a moderate MUAC and oedema: severe only.
        child(20, (at(), {"muac_mm": 130}), (at(days=3), {"muac_mm": 110}))
        child(20, (at(), {"muac_mm": 120}), (at(days=3), {"muac_mm": 118}))
        child(20, (at(), {"muac_mm": 120}), (at(days=3), {"oedema": True}))
        # A MUAC corrected this month counts, corrected, on the day it was measured.
        corrected, [measured] = child(20, (at(), {"muac_mm": 130}))
        record.append(conn, clinician, "vital_signs", patient_id=corrected["id"], detail={"muac_mm": 112},
                      supersedes=measured.id, reason="tape read upside down")
        # Entered in error: not a screening at all.
        mistaken, [wrong] = child(20, (at(), {"muac_mm": 100}))
        service.retract_entry(conn, clinician, mistaken["id"], wrong.id, "another child's measurement")
        child(30, (at(), {"muac_mm": 114}), sex="male")
    definitions = national.load_definitions(DEFINITIONS_FILE)
    return facility, definitions, *(national.count_facility(db, facility.slug, ZONE, period, definitions)
                                    for period in (last_month, this_month))


def test_children_are_counted_once_by_the_clinical_cut_offs_at_6_to_59_months(screened):
    _, _, last_month, this_month = screened
    # Girls 1-4: 114, 115, 124, 125, oedema, no oedema, 59 months, the three screened twice, the corrected.
    assert last_month["nutrition_screened"] == {("F", "1-4Y"): 11, ("F", "LT1Y"): 1, ("M", "1-4Y"): 1}
    # 114, oedema, 130 then 110, 120 then oedema, 130 corrected to 112; the boy's 114.
    assert last_month["sam_cases"] == {("F", "1-4Y"): 5, ("M", "1-4Y"): 1}
    # 115, 124, 120 then 118 (once); the 6-month-old's 120.
    assert last_month["mam_cases"] == {("F", "1-4Y"): 3, ("F", "LT1Y"): 1}
    assert this_month["nutrition_screened"] == {("F", "1-4Y"): 1} and this_month["sam_cases"] == {("F", "1-4Y"): 1}
    assert this_month["mam_cases"] == {}


def test_the_cut_offs_are_the_clinical_layers(screened):
    """The one place they are written: the chart's reading of a child and the count agree at each edge."""
    assert national.SCREENING_CUTOFFS == {"acute_from_months": 6, "acute_to_months": 59,
                                          "muac_severe_below": 115, "muac_moderate_below": 125}
    for muac, expected in ((114, "severe"), (115, "moderate"), (124, "moderate"), (125, "none")):
        assert growth.acute_malnutrition(20, muac, None, None)[0] == expected
    assert "under 115 mm" in national.SCREENING_CRITERIA and "115–124 mm" in national.SCREENING_CRITERIA


def test_small_screening_counts_are_withheld_as_any_other(screened):
    _, definitions, last_month, _ = screened
    published = {i: national.withhold(last_month[i], definitions.cells, definitions.threshold)
                 for i in ("nutrition_screened", "sam_cases", "mam_cases")}
    # 11 girls shown; the lone infant and the lone boy withheld (two small cells, 2 < 5: so is the 11).
    assert published["nutrition_screened"].total == 13
    assert published["nutrition_screened"].cells[("F", "1-4Y")] is None
    assert published["nutrition_screened"].withheld == 3
    # 5 girls and a boy: the boy's 1 is withheld and the girls' 5 with it, the total 6 stays.
    assert published["sam_cases"].total == 6 and published["sam_cases"].withheld == 2
    assert published["mam_cases"].total is None  # 4 in all
