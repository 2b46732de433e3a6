"""Operations in the same-day charge capture (KPI 8) and the variance report (financial/reports.py, capture.py,
t0032): a case is billable work once completed, on the facility-local day it was completed, not the day it was
booked; completed and charged today it was captured the same day, completed yesterday and charged today it was
not; a case booked, in theatre, cancelled, or completed and then entered in error is no billable work. The KPI
and its drill-down say what the report says, and t0032's downgrade takes the operations out of the projection
and its upgrade brings them back."""

from __future__ import annotations

import datetime as dt
import importlib
import uuid
import zoneinfo

import pytest
import sqlalchemy as sa
from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext

from appliance.layers.clinical import surgery
from appliance.layers.clinical.surgery_schemas import PhaseIn, SurgeryIn
from appliance.layers.financial import reports
from appliance.substrate import kpis, record
from appliance.substrate.db import tenant_schema
from appliance.substrate.principal import Principal
from tests.layers.financial.conftest import FINANCIAL_CONFIG, new_patient

NAIROBI = zoneinfo.ZoneInfo("Africa/Nairobi")
THEATRE_CONFIG = {
    **FINANCIAL_CONFIG,
    "theatres": [{"code": "TH1", "name": "Theatre 1"}],
    "procedures": [{"code": "APPX", "name": "Appendicectomy"}],
    "fee_schedule": {
        **FINANCIAL_CONFIG["fee_schedule"],
        "items": [*FINANCIAL_CONFIG["fee_schedule"]["items"],
                  {"kind": "procedure", "code": "APPX", "name": "Appendicectomy", "department": "THEATRE",
                   "effective_from": "2020-01-01", "prices": {"CASH": "20000.00", "NHI": "18000.00"}}],
    },
}
T0032 = "appliance.substrate.migrations.tenant.versions.t0032_operations_in_charge_capture"


@pytest.fixture(scope="module")
def theatre(tenant_factory):
    return tenant_factory(name="Capture Theatre Hospital", timezone="Africa/Nairobi", **THEATRE_CONFIG)


@pytest.fixture(scope="module")
def surgeon(theatre) -> Principal:
    return Principal(account_id=uuid.uuid4(), kind="staff", display_name="Dr Mwangi", tenant=theatre.slug,
                     role="clinician")


def _booking(planned_at: dt.datetime) -> SurgeryIn:
    return SurgeryIn(procedure="Appendicectomy", procedure_code="APPX", planned_at=planned_at, theatre="TH1",
                     surgeon="Dr Mwangi", urgency="urgent", anaesthesia="general")


def _phase(key: str) -> PhaseIn:
    [phase] = [p for p in surgery.CHECKLIST if p.key == key]
    return PhaseIn(confirmed=[item for item, _ in phase.items])


def _complete(conn, surgeon: Principal, case_id: uuid.UUID, at: dt.datetime | None = None) -> None:
    """Through the WHO checklist to completed, `at` the time given (now if none)."""
    surgery.record_phase(conn, surgeon, case_id, "sign_in", _phase("sign_in"))
    surgery.move(conn, surgeon, case_id, "in_theatre", at=at - dt.timedelta(minutes=75) if at else None)
    surgery.record_phase(conn, surgeon, case_id, "time_out", _phase("time_out"))
    surgery.record_phase(conn, surgeon, case_id, "sign_out", _phase("sign_out"))
    surgery.move(conn, surgeon, case_id, "completed", at=at)


@pytest.fixture(scope="module")
def cases(db, theatre, surgeon) -> dict:
    today = dt.datetime.now(NAIROBI).date()
    yesterday_evening = dt.datetime.combine(today - dt.timedelta(days=1), dt.time(21), NAIROBI)
    with db.tenant(theatre.slug) as conn:
        patient = new_patient(conn, surgeon)["id"]
        # Booked two days ago for today's list, completed (and so charged) today.
        two_days_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=2)
        booked_ahead = record.append(conn, surgeon, "surgery", patient_id=patient, occurred_at=two_days_ago, detail={
            **_booking(two_days_ago).model_dump(exclude={"encounter_id"}), "anaesthetist": None,
            "status": "scheduled", "cancel_reason": None, "checklist": {}, "started_at": None, "ended_at": None})
        _complete(conn, surgeon, booked_ahead.root_id)
        # Completed last night, written up (and so charged) only this morning.
        last_night = surgery.book(conn, surgeon, patient, _booking(yesterday_evening - dt.timedelta(hours=2)))
        _complete(conn, surgeon, last_night["root_id"], at=yesterday_evening)
        booked = surgery.book(conn, surgeon, patient, _booking(yesterday_evening + dt.timedelta(days=1)))
        in_theatre = surgery.book(conn, surgeon, patient, _booking(yesterday_evening))
        surgery.record_phase(conn, surgeon, in_theatre["root_id"], "sign_in", _phase("sign_in"))
        surgery.move(conn, surgeon, in_theatre["root_id"], "in_theatre")
        cancelled = surgery.book(conn, surgeon, patient, _booking(yesterday_evening))
        surgery.move(conn, surgeon, cancelled["root_id"], "cancelled", reason="patient ate breakfast")
        withdrawn = surgery.book(conn, surgeon, patient, _booking(yesterday_evening))
        _complete(conn, surgeon, withdrawn["root_id"])
        surgery.retract(conn, surgeon, withdrawn["root_id"], "booked on the wrong patient")
    return {"today": today, "same_day": booked_ahead.root_id, "next_day": last_night["root_id"],
            "not_billable": {booked["root_id"], in_theatre["root_id"], cancelled["root_id"], withdrawn["root_id"]}}


def _days(today: dt.date) -> list[kpis.Window]:
    """Two days ago, yesterday, today, then yesterday and today together."""
    midnight = dt.datetime.combine(today, dt.time(0), NAIROBI)
    days = [kpis.Window(midnight - dt.timedelta(days=n), midnight - dt.timedelta(days=n - 1), NAIROBI)
            for n in (2, 1, 0)]
    return [*days, kpis.Window(midnight - dt.timedelta(days=1), midnight + dt.timedelta(days=1), NAIROBI)]


def _reported(conn, window: kpis.Window) -> dict[uuid.UUID, str]:
    return {r.root_id: r.outcome
            for r in reports.billable_entries(conn, window.start, window.end, "Africa/Nairobi")}


def test_an_operation_is_billable_on_the_day_it_was_completed_and_same_day_only_if_charged_that_day(
        db, theatre, surgeon, cases):
    two_days_ago, yesterday, today, both = _days(cases["today"])
    with db.tenant(theatre.slug) as conn:
        reported = [_reported(conn, window) for window in (two_days_ago, yesterday, today, both)]
        variance = {day: reports.variance(conn, surgeon, day)["totals"]
                    for day in (cases["today"], cases["today"] - dt.timedelta(days=1))}
    # The case booked two days ago counts on the day it was completed, not the day it was booked.
    assert reported[0] == {}
    assert reported[1] == {cases["next_day"]: "late"}
    assert reported[2] == {cases["same_day"]: "same_day"}
    assert reported[3] == {cases["next_day"]: "late", cases["same_day"]: "same_day"}
    # Booked, in theatre, cancelled, completed then entered in error: no billable work.
    assert not cases["not_billable"] & set(reported[3])
    assert [(t["billable"], t["same_day"], t["late"]) for t in variance.values()] == [(1, 1, 0), (1, 0, 1)]


def test_kpi_8_and_its_drill_down_say_what_the_variance_report_says(db, theatre, cases):
    computation = kpis.computation_of("same_day_charge_capture")
    windows = _days(cases["today"])
    with db.tenant(theatre.slug) as conn:
        figures = computation.compute(conn, windows)
        expected = [_reported(conn, window) for window in windows]
        behind = computation.entries(conn, windows[3], 100)
        kept = dict(conn.execute(sa.text("SELECT root_id, care_day FROM charge_capture")).all())
    assert [(f.numerator, f.denominator) for f in figures] == [
        (sum(outcome == "same_day" for outcome in rows.values()), len(rows)) for rows in expected]
    assert [(f.numerator, f.denominator) for f in figures] == [(0, 0), (0, 1), (1, 1), (1, 2)]
    assert sorted(e["label"] for e in behind) == ["Appendicectomy: charged on a later day",
                                                  "Appendicectomy: charged the same day"]
    assert kept == {cases["same_day"]: cases["today"], cases["next_day"]: cases["today"] - dt.timedelta(days=1)}


def test_t0032_downgrade_takes_the_operations_out_of_the_projection_and_its_upgrade_brings_them_back(
        db, theatre, cases):
    t0032 = importlib.import_module(T0032)
    rows = sa.text("SELECT root_id, entry_id, care_day, charged_day, charge_status FROM charge_capture ORDER BY 1")
    knows = sa.text("SELECT position('surgery' IN prosrc) > 0 FROM pg_proc WHERE proname = 'charge_capture_refresh' "
                    "AND pronamespace = current_schema()::regnamespace")
    with db.tenant(theatre.slug) as conn:
        before = conn.execute(rows).all()
    schema = tenant_schema(theatre.slug)
    with db.control() as conn:  # as the migrations run: the schema's owner, its search path
        conn.execute(sa.text("SELECT set_config('search_path', :schema, true)"), {"schema": schema})
        with Operations.context(MigrationContext.configure(conn)):
            t0032.downgrade()
            downgraded = (conn.execute(rows).all(), conn.execute(knows).scalar())
            t0032.upgrade()
        upgraded = (conn.execute(rows).all(), conn.execute(knows).scalar())
    assert len(before) == 2
    assert downgraded == ([], False)
    assert upgraded == (before, True)
