"""Charges for the nursing and operations layers' acts: a dose given (not one held), a medicine dispensed
(credited when the dispense is reversed, or for what the patient brings back, and counted by KPI 8, same-day
charge capture), and bed-days
accrued at the census from admissions, transfers and discharges — read through the record."""

from __future__ import annotations

import dataclasses
import datetime as dt
import zoneinfo
from decimal import Decimal

import sqlalchemy as sa

from appliance.layers.clinical import service as clinical
from appliance.layers.clinical.schemas import MedicationIn
from appliance.layers.financial import accrual, reactions
from appliance.layers.financial.models import bed_day_accrual, charge
from appliance.layers.nursing import service as nursing
from appliance.layers.nursing.schemas import AdministrationIn
from appliance.layers.operations import adt
from appliance.substrate import kpis
from appliance.substrate.record import entry
from tests.layers.financial.conftest import visit

NAIROBI = zoneinfo.ZoneInfo("Africa/Nairobi")


def _charges(conn, **where) -> list[dict]:
    query = sa.select(entry.c.id, entry.c.encounter_id, charge).select_from(
        entry.join(charge, charge.c.entry_id == entry.c.id))
    for column, value in where.items():
        query = query.where(charge.c[column] == value)
    return [dict(r) for r in conn.execute(query.order_by(charge.c.service_date, entry.c.recorded_at)).mappings()]


def test_a_dose_given_is_charged_per_unit_and_a_held_one_is_not(db, facility, clinician, policy):
    now = dt.datetime.now(dt.UTC)
    with db.tenant(facility.slug) as conn:
        patient, encounter = visit(conn, clinician)
        prescribed = clinical.request_medication(conn, clinician, patient["id"], MedicationIn(
            drug="Ceftriaxone", dose=Decimal(2), dose_unit="g", route="IV", frequency="as needed",
            encounter_id=encounter["id"])).placed[0]
        given = nursing.record_administration(conn, clinician, patient["id"], AdministrationIn(
            medication_request_id=prescribed["id"], outcome="given"), now=now, tz=NAIROBI)
        [captured] = _charges(conn, source_root_id=given["root_id"])
        # Withdrawn as the clinician's route would (ACC-035 asks the role's permissions).
        doctor = dataclasses.replace(clinician, permissions=policy.permissions_of("clinician"))
        nursing.retract_administration(conn, doctor, patient["id"], given["id"], "charted on the wrong patient")
        after = _charges(conn, source_root_id=given["root_id"])
    assert captured["item_kind"] == "medication" and captured["quantity"] == 2
    assert captured["amount"] == Decimal("700.00") and captured["department"] == "PHARMACY"
    assert [c["amount"] for c in after] == [Decimal("700.00"), Decimal("-700.00")]


def test_a_dose_in_tablets_is_priced_per_tablet_and_one_in_another_unit_waits(db, facility, clinician):
    now = dt.datetime.now(dt.UTC)
    with db.tenant(facility.slug) as conn:
        patient, encounter = visit(conn, clinician)
        charged = []
        for dose, unit in ((Decimal(2), "Tablets"), (Decimal(1), "tablet"), (Decimal(500), "mg")):
            prescribed = clinical.request_medication(conn, clinician, patient["id"], MedicationIn(
                drug="Artemether-lumefantrine", dose=dose, dose_unit=unit, route="oral", frequency="as needed",
                encounter_id=encounter["id"])).placed[0]
            given = nursing.record_administration(conn, clinician, patient["id"], AdministrationIn(
                medication_request_id=prescribed["id"], outcome="given"), now=now, tz=NAIROBI)
            [captured] = _charges(conn, source_root_id=given["root_id"])
            charged.append((captured["status"], captured["quantity"], captured["amount"], captured["unpriced_reason"]))
    assert charged[:2] == [("posted", 2, Decimal("80.00"), None), ("posted", 1, Decimal("40.00"), None)]
    assert charged[2][0] == "unpriced" and "priced per 1 tablet, the dose was in mg" in charged[2][3]


def test_a_dispense_counts_in_same_day_charge_capture_captured_or_missed(db, facility, clinician):
    """KPI 8 counts what the pharmacy hands over: charged as it is handed over, captured the same day; with
    its charge absent (charging switched off for it), missed; reversed, its charge credited and no longer
    billable, out of the count."""
    from appliance.layers.operations import pharmacy

    today = dt.date.today()
    computation = kpis.computation_of("same_day_charge_capture")
    with db.tenant(facility.slug) as conn:
        patient, encounter = visit(conn, clinician)
        item = pharmacy.create_item(conn, clinician, drug="Artemether-lumefantrine", form="dispersible tablet",
                                    unit="tablet")["id"]
        pharmacy.receive(conn, clinician, item, batch="AL1", expires_on=today + dt.timedelta(days=300),
                         quantity=Decimal(100), reference=None, today=today)

        def handed_over(quantity: int) -> dict:
            prescribed = clinical.request_medication(conn, clinician, patient["id"], MedicationIn(
                drug="Artemether-lumefantrine", dose=Decimal(4), dose_unit="tablet", route="oral",
                frequency="twice daily", duration_days=3, encounter_id=encounter["id"])).placed[0]
            return pharmacy.dispense_medicine(conn, clinician, medication_request_id=prescribed["id"], item_id=item,
                                              quantity=Decimal(quantity), today=today)

        window = kpis.Window(dt.datetime.now(dt.UTC) - dt.timedelta(hours=1),
                             dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5))
        before = computation.compute(conn, [window])[0]
        captured = handed_over(24)
        reactions.unregister()
        try:
            missed = handed_over(12)
        finally:
            reactions.register()
        reversed_ = handed_over(6)
        pharmacy.reverse_dispense(conn, clinician, reversed_["id"], reason="the patient left without it",
                                 today_start=dt.datetime.now(dt.UTC) - dt.timedelta(hours=1))
        after = computation.compute(conn, [window])[0]
        behind = {e["entry_id"]: e for e in computation.entries(conn, window, 500)}
        credited = _charges(conn, source_root_id=reversed_["id"])
    assert behind[captured["id"]]["measure"] == 1
    assert behind[captured["id"]]["label"] == "Artemether-lumefantrine (dispensed): charged the same day"
    assert behind[missed["id"]]["measure"] == 0 and behind[missed["id"]]["label"].endswith("no charge")
    assert reversed_["id"] not in behind
    assert (after.numerator - before.numerator, after.denominator - before.denominator) == (1, 2)
    assert [c["amount"] for c in credited] == [Decimal("240.00"), Decimal("-240.00")]


def test_bed_days_accrue_once_per_census_by_ward_kind_and_stop_at_discharge(db, facility, clinician):
    with db.tenant(facility.slug) as conn:
        patient, _ = visit(conn, clinician)
        three_days_ago = dt.datetime.now(NAIROBI).replace(hour=10, minute=0, second=0, microsecond=0) \
            - dt.timedelta(days=3)
        stay = adt.admit(conn, clinician, patient["id"], ward_code="GEN", at=three_days_ago)
        adt.discharge(conn, clinician, patient["id"], disposition="home", at=three_days_ago + dt.timedelta(days=2))
        first = accrual.accrue_bed_days(conn, clinician)
        again = accrual.accrue_bed_days(conn, clinician)
        admission_root = conn.execute(sa.select(entry.c.root_id).where(
            entry.c.kind == "admission", entry.c.patient_id == patient["id"])).scalar_one()
        days = _charges(conn, source_root_id=admission_root)
        accrued = conn.execute(sa.select(sa.func.count()).select_from(bed_day_accrual).where(
            bed_day_accrual.c.admission_root_id == admission_root)).scalar()
    assert stay is not None and again == 0 and first >= 2 and accrued == 2
    # censuses at midnight after admission day and the next: two bed-days, on the general ward's price
    assert [c["service_date"] for c in days] == [(three_days_ago + dt.timedelta(days=n)).date() for n in (1, 2)]
    assert {(c["item_code"], c["amount"], c["department"]) for c in days} == {("inpatient", Decimal("2000.00"),
                                                                               "GEN")}


def test_a_medicine_dispensed_is_charged_in_its_fees_unit(db, facility, clinician):
    """The outpatient pharmacy's `dispense` (operations layer): two 1 g vials of ceftriaxone, priced per g, are
    2 g; 24 tablets of artemether-lumefantrine, priced per tablet, are 24 tablets."""
    from appliance.layers.operations import pharmacy

    today = dt.date.today()
    with db.tenant(facility.slug) as conn:
        patient, encounter = visit(conn, clinician)
        charged = []
        for drug, form, strength, unit, quantity in (("Ceftriaxone", "powder for injection", Decimal(1), "g", 2),
                                                     ("Artemether-lumefantrine", "tablet", None, None, 24)):
            item = pharmacy.create_item(conn, clinician, drug=drug, form=form, strength=strength, strength_unit=unit,
                                        unit="vial" if strength else "tablet")["id"]
            pharmacy.receive(conn, clinician, item, batch="B1", expires_on=today + dt.timedelta(days=300),
                             quantity=Decimal(50), reference=None, today=today)
            prescribed = clinical.request_medication(conn, clinician, patient["id"], MedicationIn(
                drug=drug, dose=Decimal(1), dose_unit=unit or "tablet", route="oral", frequency="daily",
                encounter_id=encounter["id"])).placed[0]
            handed = pharmacy.dispense_medicine(conn, clinician, medication_request_id=prescribed["id"], item_id=item,
                                                quantity=Decimal(quantity), today=today)
            charged += _charges(conn, source_root_id=handed["id"])
    assert [(c["quantity"], c["amount"], c["department"]) for c in charged] == [
        (2, Decimal("700.00"), "PHARMACY"), (24, Decimal("960.00"), "PHARMACY")]
    assert all(c["encounter_id"] == encounter["id"] for c in charged)


def test_medicine_brought_back_is_credited_for_what_came_back_fit_or_not(db, facility, clinician):
    """24 tablets of artemether-lumefantrine at 40.00 each (960.00) handed over: 6 brought back fit, the account
    is credited 240.00 (the charge credited and the 18 kept billed, at the dispense's price); the last 18
    brought back not fit, credited too (quarantined medicine is not the patient's to pay for), and the
    dispense, all of it back, leaves KPI 8's count as a reversed one does."""
    from appliance.layers.operations import pharmacy

    today = dt.date.today()
    computation = kpis.computation_of("same_day_charge_capture")
    with db.tenant(facility.slug) as conn:
        patient, encounter = visit(conn, clinician)
        item = pharmacy.create_item(conn, clinician, drug="Artemether-lumefantrine", form="coated tablet",
                                    unit="tablet")["id"]
        pharmacy.receive(conn, clinician, item, batch="ALR", expires_on=today + dt.timedelta(days=300),
                         quantity=Decimal(50), reference=None, today=today)
        prescribed = clinical.request_medication(conn, clinician, patient["id"], MedicationIn(
            drug="Artemether-lumefantrine", dose=Decimal(4), dose_unit="tablet", route="oral",
            frequency="twice daily", duration_days=3, encounter_id=encounter["id"])).placed[0]
        handed = pharmacy.dispense_medicine(conn, clinician, medication_request_id=prescribed["id"], item_id=item,
                                            quantity=Decimal(24), today=today)
        pharmacy.return_dispense(conn, clinician, handed["id"], quantity=Decimal(6), condition="fit",
                                 reason="vomited nothing, felt better", today=today)
        after_part = _charges(conn, source_root_id=handed["id"])
        window = kpis.Window(dt.datetime.now(dt.UTC) - dt.timedelta(hours=1),
                             dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5))
        counted_while_kept = handed["id"] in {e["entry_id"] for e in computation.entries(conn, window, 500)}
        pharmacy.return_dispense(conn, clinician, handed["id"], quantity=Decimal(18), condition="not_fit",
                                 reason="wrong patient", today=today)
        after_all = _charges(conn, source_root_id=handed["id"])
        counted_when_all_back = handed["id"] in {e["entry_id"] for e in computation.entries(conn, window, 500)}
    assert [(c["quantity"], c["amount"]) for c in after_part] == [(24, Decimal("960.00")), (-24, Decimal("-960.00")),
                                                                  (18, Decimal("720.00"))]
    assert sum(c["amount"] for c in after_part) == Decimal("720.00")  # 6 × 40.00 credited
    assert after_part[1]["reverses"] == after_part[0]["id"] and after_part[2]["reverses"] is None
    assert all(c["account_id"] == after_part[0]["account_id"] for c in after_part)
    assert sum(c["amount"] for c in after_all) == 0 and len(after_all) == 4
    assert counted_while_kept and not counted_when_all_back
