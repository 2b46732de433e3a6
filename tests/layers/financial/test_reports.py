"""Same-day variance, the late-charge rate and KPI 8 on known scenarios: a charge captured on the day,
one captured late, one unpriced and one missing (written with the reaction switched off), each found
under its department with the entry behind it."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from decimal import Decimal

import pytest

from appliance.layers.clinical import service as clinical
from appliance.layers.clinical.schemas import ServiceRequestIn
from appliance.layers.financial import charges, reactions, reports
from appliance.substrate import kpis, record
from tests.layers.financial.conftest import CHEST_XRAY, FULL_BLOOD_COUNT, GLUCOSE, MALARIA_SMEAR

NAIROBI = zoneinfo.ZoneInfo("Africa/Nairobi")


@pytest.fixture(scope="module")
def quiet_facility(tenant_factory):
    """A facility of its own, so the day's figures are exactly this module's."""
    from tests.layers.financial.conftest import FINANCIAL_CONFIG

    return tenant_factory(name="Reports Facility", **FINANCIAL_CONFIG)


def _order(conn, principal, patient_id, code, *, at=None):
    detail = {"category": "imaging" if code == CHEST_XRAY else "lab", "code": code, "display": code,
              "priority": "routine", "status": "active", "clinical_info": None, "order_set": None}
    return record.append(conn, principal, "service_request", patient_id=patient_id, detail=detail, occurred_at=at)


@pytest.fixture(scope="module")
def scenario(db, quiet_facility, clinician):
    from tests.layers.financial.conftest import new_patient

    today = dt.datetime.now(NAIROBI).date()
    yesterday_noon = dt.datetime.combine(today - dt.timedelta(days=1), dt.time(12), NAIROBI)
    with db.tenant(quiet_facility.slug) as conn:
        patient = new_patient(conn, clinician)
        same_day = clinical.order_test(conn, clinician, patient["id"], ServiceRequestIn(code=FULL_BLOOD_COUNT))
        unpriced = clinical.order_test(conn, clinician, patient["id"], ServiceRequestIn(code=GLUCOSE))
        xray = clinical.order_test(conn, clinician, patient["id"], ServiceRequestIn(code=CHEST_XRAY))
        retracted = clinical.order_test(conn, clinician, patient["id"], ServiceRequestIn(code=MALARIA_SMEAR))
        clinical.retract_entry(conn, clinician, patient["id"], retracted["id"], "duplicate order")
        late = _order(conn, clinician, patient["id"], MALARIA_SMEAR, at=yesterday_noon)  # charged today
        reactions.unregister()
        try:
            missing = _order(conn, clinician, patient["id"], FULL_BLOOD_COUNT)
        finally:
            reactions.register()
    return {"today": today, "same_day": same_day["id"], "unpriced": unpriced["id"], "xray": xray["id"],
            "retracted": retracted["id"], "late": late.id, "missing": missing.id}


def _ids(department: dict, outcome: str) -> set:
    return {e["entry_id"] for e in department["entries"][outcome]}


def test_variance_by_department_with_the_entries_behind_each_figure(db, quiet_facility, clerk, scenario):
    with db.tenant(quiet_facility.slug) as conn:
        today = reports.variance(conn, clerk, scenario["today"])
        yesterday = reports.variance(conn, clerk, scenario["today"] - dt.timedelta(days=1))
    departments = {d["department"]: d for d in today["departments"]}
    assert set(departments) == {"LAB", "RAD"}
    lab, rad = departments["LAB"], departments["RAD"]
    assert (lab["billable"], lab["same_day"], lab["late"], lab["unpriced"], lab["missing"]) == (3, 1, 0, 1, 1)
    assert _ids(lab, "same_day") == {scenario["same_day"]} and _ids(lab, "unpriced") == {scenario["unpriced"]}
    assert _ids(lab, "missing") == {scenario["missing"]}
    assert scenario["retracted"] not in {e for o in reports.OUTCOMES for e in _ids(lab, o)}  # not billable any more
    assert (rad["billable"], rad["same_day"], rad["amount"]) == (1, 1, Decimal("1500.00"))
    assert today["totals"]["billable"] == 4 and today["same_day_percent"] == 50.0
    [late_line] = yesterday["departments"]
    assert late_line["late"] == 1 and _ids(late_line, "late") == {scenario["late"]}


def test_late_charge_rate_is_late_amount_over_all_charges(db, quiet_facility, scenario):
    with db.tenant(quiet_facility.slug) as conn:
        rate = reports.late_charge_rate(conn, scenario["today"] - dt.timedelta(days=1), scenario["today"])
    # posted: blood count 450.00 and X-ray 1500.00 on the day, the smear 200.50 a day late
    assert rate["total"] == Decimal("2150.50") and rate["late"] == Decimal("200.50")
    assert rate["late_charges"] == 1 and rate["percent"] == round(100 * 200.50 / 2150.50, 1)


def test_kpi_8_is_registered_and_counts_the_same_way(db, quiet_facility, scenario):
    computation = kpis.computation_of("same_day_charge_capture")
    assert computation is not None and computation.layer == "financial"
    start = dt.datetime.combine(scenario["today"] - dt.timedelta(days=1), dt.time(0), NAIROBI)
    window = kpis.Window(start, start + dt.timedelta(days=2), NAIROBI)
    with db.tenant(quiet_facility.slug) as conn:
        [figure] = computation.compute(conn, [window])
        behind = computation.entries(conn, window, 100)
    assert (figure.numerator, figure.denominator) == (2, 5) and figure.value == 40.0
    assert sorted(e["measure"] for e in behind) == [0, 0, 0, 1, 1]
    assert any("no charge" in e["label"] for e in behind)


def test_the_reports_default_departments_match_the_charges(db, quiet_facility):
    for kind in ("lab", "imaging", "medication", "procedure", "blood"):
        assert f"'{charges.DEFAULT_DEPARTMENTS[kind]}'" in "".join(reports._SOURCES.values())
    for code in charges.CONSULTATION_DEPARTMENTS.values():
        assert f"'{code}'" in reports._SOURCES["encounter_status"]


def test_kpi_8_answers_each_window_of_a_trend_alike(db, quiet_facility, scenario):
    computation = kpis.computation_of("same_day_charge_capture")
    today = dt.datetime.combine(scenario["today"], dt.time(0), NAIROBI)
    days = [kpis.Window(today - dt.timedelta(days=n), today - dt.timedelta(days=n - 1), NAIROBI) for n in (2, 1, 0)]
    with db.tenant(quiet_facility.slug) as conn:
        trend = computation.compute(conn, days)
        alone = [computation.compute(conn, [window])[0] for window in days]
    assert trend == alone
    assert [(f.numerator, f.denominator) for f in trend] == [(0, 0), (0, 1), (2, 4)]
    assert trend[0].value is None  # an empty day has no percentage, not 0
