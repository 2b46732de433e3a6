"""KPI 8 (same-day charge capture) read from its projection equals the variance report's own count:
billable entries charged the same day, the next day, never, reversed, unpriced then priced, amended,
a dose and a consultation — for day windows, a two-day window, the 30 days now and a trend; the
drill-down names the same entries with the same outcomes; the migration's backfill rebuilds what the
reactions kept, and its refresh function is the SQL capture.py composes; a new facility time zone moves
the kept days."""

from __future__ import annotations

import datetime as dt
import importlib.util
import re
import zoneinfo
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa

from appliance.layers.clinical import service as clinical
from appliance.layers.clinical.schemas import MedicationIn
from appliance.layers.financial import capture, charges, reactions, reports, schedule, service
from appliance.layers.nursing import service as nursing
from appliance.layers.nursing.schemas import AdministrationIn
from appliance.substrate import kpis, record
from tests.layers.financial.conftest import (
    CHEST_XRAY,
    FINANCIAL_CONFIG,
    FULL_BLOOD_COUNT,
    GLUCOSE,
    MALARIA_SMEAR,
    order,
    visit,
)

NAIROBI = zoneinfo.ZoneInfo("Africa/Nairobi")
MIGRATION = (Path(__file__).resolve().parents[3] / "appliance" / "substrate" / "migrations" / "tenant" / "versions"
             / "t0008_kpi_window_reads.py")


@pytest.fixture(scope="module")
def capture_facility(tenant_factory):
    return tenant_factory(name="Capture Facility", timezone="Africa/Nairobi", **FINANCIAL_CONFIG)


@pytest.fixture(scope="module")
def scenario(db, capture_facility, clinician, clerk):
    today = dt.datetime.now(NAIROBI).date()
    yesterday_noon = dt.datetime.combine(today - dt.timedelta(days=1), dt.time(12), NAIROBI)
    with db.tenant(capture_facility.slug) as conn:
        patient, encounter = visit(conn, clinician)
        same_day = order(conn, clinician, patient, encounter, FULL_BLOOD_COUNT)
        next_day = record.append(conn, clinician, "service_request", patient_id=patient["id"],
                                 occurred_at=yesterday_noon, encounter_id=encounter["id"], detail={
                                     "category": "lab", "code": MALARIA_SMEAR, "display": "Malaria smear",
                                     "priority": "routine", "status": "active", "clinical_info": None,
                                     "order_set": None})
        small_hours = record.append(conn, clinician, "service_request", patient_id=patient["id"],
                                    occurred_at=dt.datetime.combine(today, dt.time(1), NAIROBI),
                                    encounter_id=encounter["id"], detail={
                                        "category": "lab", "code": FULL_BLOOD_COUNT, "display": "Full blood count",
                                        "priority": "stat", "status": "active", "clinical_info": None,
                                        "order_set": None})
        reactions.unregister()
        try:
            never = order(conn, clinician, patient, encounter, FULL_BLOOD_COUNT)
        finally:
            reactions.register()
        # Revoked: credited and no longer billable. Credited while still active: billable, not charged.
        revoked = order(conn, clinician, patient, encounter, CHEST_XRAY)
        current = record.get_entry(conn, revoked["id"])
        record.append(conn, clinician, "service_request", patient_id=patient["id"], supersedes=revoked["id"],
                      detail={**current.detail, "status": "revoked"})
        credited = order(conn, clinician, patient, encounter, MALARIA_SMEAR)
        charges.reverse_charges(conn, clinician, record.get_entry(conn, credited["id"]))
        retracted = order(conn, clinician, patient, encounter, FULL_BLOOD_COUNT)
        clinical.retract_entry(conn, clinician, patient["id"], retracted["id"], "wrong patient")
        unpriced = order(conn, clinician, patient, encounter, GLUCOSE)
        priced_later = order(conn, clinician, patient, encounter, GLUCOSE)
        [waiting] = [c for c in service.unpriced_charges(conn, clerk) if c["source_root_id"] == priced_later["root_id"]]
        service.price_charge(conn, clerk, waiting["id"], Decimal("120.00"), "manager's price")
        amended = order(conn, clinician, patient, encounter, CHEST_XRAY)
        current = record.get_entry(conn, amended["id"])
        record.append(conn, clinician, "service_request", patient_id=patient["id"], supersedes=amended["id"],
                      detail={**current.detail, "priority": "urgent"})
        prescribed = clinical.request_medication(conn, clinician, patient["id"], MedicationIn(
            drug="Ceftriaxone", dose=Decimal(1), dose_unit="g", route="IV", frequency="as needed",
            encounter_id=encounter["id"])).placed[0]
        dose = nursing.record_administration(conn, clinician, patient["id"], AdministrationIn(
            medication_request_id=prescribed["id"], outcome="given"), now=dt.datetime.now(dt.UTC), tz=NAIROBI)
        for step in ("in_progress", "finished"):
            clinical.transition_encounter(conn, clinician, patient["id"], encounter["id"], step)
    return {"today": today, "same_day": same_day["root_id"], "next_day": next_day.id, "never": never["root_id"],
            "revoked": revoked["root_id"], "credited": credited["root_id"], "retracted": retracted["root_id"],
            "unpriced": unpriced["root_id"], "priced_later": priced_later["root_id"], "amended": amended["root_id"],
            "dose": dose["root_id"], "small_hours": small_hours.id}


def _windows(today: dt.date) -> list[kpis.Window]:
    midnight = dt.datetime.combine(today, dt.time(0), NAIROBI)
    now = dt.datetime.now(NAIROBI)
    days = [kpis.Window(midnight - dt.timedelta(days=n), midnight - dt.timedelta(days=n - 1), NAIROBI)
            for n in (2, 1, 0)]
    return [*days, kpis.Window(midnight - dt.timedelta(days=1), midnight + dt.timedelta(days=1), NAIROBI),
            kpis.Window(now - dt.timedelta(days=30), now + dt.timedelta(minutes=1), NAIROBI)]


def _reported(conn, window: kpis.Window) -> list[reports.BillableEntry]:
    return reports.billable_entries(conn, window.start, window.end, "Africa/Nairobi")


def test_kpi_8_counts_what_the_variance_report_counts(db, capture_facility, scenario):
    computation = kpis.computation_of("same_day_charge_capture")
    windows = _windows(scenario["today"])
    with db.tenant(capture_facility.slug) as conn:
        together = computation.compute(conn, windows)
        alone = [computation.compute(conn, [window])[0] for window in windows]
        expected = []
        for window in windows:
            rows = _reported(conn, window)
            expected.append((sum(1 for r in rows if r.outcome == "same_day"), len(rows)))
    assert together == alone
    assert [(f.numerator, f.denominator) for f in together] == expected
    # By hand, yesterday and today: two blood counts (one at 01:00), priced glucose, amended X-ray, dose,
    # consultation on the day (6); the smear of yesterday charged today, the uncharged and the credited
    # orders, the glucose still unpriced (4 more billable); the revoked and retracted orders are not billable.
    assert expected[3] == (6, 10) and together[3].value == pytest.approx(60.0)
    assert expected[1] == (0, 1)  # yesterday: the smear, charged on a later day


def test_the_drill_down_names_the_reports_entries_with_their_outcomes(db, capture_facility, scenario):
    computation = kpis.computation_of("same_day_charge_capture")
    two_days = _windows(scenario["today"])[3]
    with db.tenant(capture_facility.slug) as conn:
        behind = computation.entries(conn, two_days, 100)
        rows = _reported(conn, two_days)
    assert {e["entry_id"]: e["measure"] for e in behind} == {r.entry_id: int(r.outcome == "same_day") for r in rows}
    labels = {e["entry_id"]: e["label"] for e in behind}
    by_root = {r.root_id: r.entry_id for r in rows}
    assert labels[by_root[scenario["never"]]].endswith("no charge")
    assert labels[by_root[scenario["next_day"]]].endswith("charged on a later day")
    assert labels[by_root[scenario["unpriced"]]].endswith("captured without a price")
    assert scenario["revoked"] not in by_root and scenario["retracted"] not in by_root
    assert by_root[scenario["amended"]] != scenario["amended"]  # the current version is the one listed


def _backfill():
    spec = importlib.util.spec_from_file_location("t0008", MIGRATION)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_migrations_backfill_rebuilds_what_the_reactions_kept(db, capture_facility, scenario):
    migration = _backfill()
    with db.tenant(capture_facility.slug) as conn:
        kept = set(conn.execute(sa.text(f"SELECT {', '.join(migration.COLUMNS)} FROM charge_capture")).all())
        rebuilt = set(conn.execute(sa.text(migration.BACKFILL)).all())
    assert kept == rebuilt and len(kept) == 10


def test_a_new_time_zone_moves_the_kept_days(db, capture_facility, scenario):
    lima = capture_facility.model_copy(update={"timezone": "America/Lima"})
    try:
        with db.tenant(capture_facility.slug) as conn:
            schedule.sync_fee_schedule(conn, lima)
            stale = conn.execute(sa.text(
                "SELECT count(*) FROM charge_capture WHERE care_day <> (occurred_at AT TIME ZONE 'America/Lima')::date "
                "OR charged_day <> (charged_at AT TIME ZONE 'America/Lima')::date")).scalar()
            small_hours = conn.execute(sa.text("SELECT care_day FROM charge_capture WHERE root_id = :root"),
                                       {"root": scenario["small_hours"]}).scalar()
    finally:
        with db.tenant(capture_facility.slug) as conn:
            schedule.sync_fee_schedule(conn, capture_facility)
    assert stale == 0
    # 01:00 in Nairobi is 17:00 the evening before in Lima.
    assert small_hours == scenario["today"] - dt.timedelta(days=1)


def _normalised(sql: str) -> str:
    """Whitespace is not significant, including next to parentheses and before a semicolon."""
    return re.sub(r"\(\s+", "(", re.sub(r"\s+([);])", r"\1", " ".join(sql.split())))


def test_the_installed_refresh_function_is_the_sql_capture_py_composes(db, capture_facility):
    with db.tenant(capture_facility.slug) as conn:
        installed = conn.execute(sa.text(
            "SELECT p.prosrc FROM pg_proc p WHERE p.proname = 'charge_capture_refresh' "
            "AND p.pronamespace = current_schema()::regnamespace")).scalar_one()
    assert _normalised(installed) == f"BEGIN {_normalised(capture.refresh_function_body())}; END", (
        "the variance report's SQL (reports.py) or the projection (capture.py) changed but the function in "
        "the tenant schemas did not: add a tenant migration that replaces charge_capture_refresh(uuid[])")


def test_another_tenants_role_cannot_refresh_this_tenants_projection(db, capture_facility, tenant_factory):
    other = tenant_factory()
    with pytest.raises(sa.exc.ProgrammingError, match="permission denied"), db.tenant(other.slug) as conn:
        conn.execute(sa.text(f"SELECT t_{capture_facility.slug}.charge_capture_refresh(ARRAY[]::uuid[])"))
