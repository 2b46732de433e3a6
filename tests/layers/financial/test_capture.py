"""Charge capture as a reaction: a billable act and its charge are written in one transaction."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
import sqlalchemy as sa

from appliance.layers.clinical import service as clinical
from appliance.layers.financial import service
from appliance.layers.financial.errors import Conflict
from appliance.layers.financial.models import account, charge
from appliance.substrate import record
from appliance.substrate.record import entry
from tests.layers.financial.conftest import CHEST_XRAY, FULL_BLOOD_COUNT, GLUCOSE, MALARIA_SMEAR, order, visit


def charges_for(conn, root_id) -> list[dict]:
    return [dict(r) for r in conn.execute(
        sa.select(entry.c.id, entry.c.root_id, entry.c.recorded_at, charge)
        .select_from(entry.join(charge, charge.c.entry_id == entry.c.id))
        .where(charge.c.source_root_id == root_id).order_by(entry.c.recorded_at, charge.c.quantity.desc())
    ).mappings()]


def test_a_lab_order_is_charged_in_its_own_transaction_at_the_self_pay_price(db, facility, clinician):
    with db.tenant(facility.slug) as conn:
        patient, encounter = visit(conn, clinician)
        placed = order(conn, clinician, patient, encounter, FULL_BLOOD_COUNT)
        [captured] = charges_for(conn, placed["root_id"])
        same_transaction = conn.execute(sa.text("SELECT now()")).scalar()
    assert captured["status"] == "posted" and captured["amount"] == Decimal("450.00")
    assert captured["source_entry_id"] == placed["id"] and captured["price_list"] == "CASH"
    assert captured["department"] == "LAB" and captured["currency"] == "KES"
    assert captured["recorded_at"] == same_transaction  # now() is the transaction's start: one transaction


def test_an_imaging_order_without_encounter_lands_on_the_patients_own_account(db, facility, clinician):
    with db.tenant(facility.slug) as conn:
        patient, _ = visit(conn, clinician)
        placed = order(conn, clinician, patient, None, CHEST_XRAY)
        [captured] = charges_for(conn, placed["root_id"])
    assert captured["amount"] == Decimal("1500.00") and captured["department"] == "RAD"


def test_an_item_without_price_is_captured_unpriced_never_dropped(db, facility, clinician):
    with db.tenant(facility.slug) as conn:
        patient, encounter = visit(conn, clinician)
        placed = order(conn, clinician, patient, encounter, GLUCOSE)
        [captured] = charges_for(conn, placed["root_id"])
    assert captured["status"] == "unpriced" and captured["amount"] is None
    assert GLUCOSE in captured["unpriced_reason"] and "CASH" in captured["unpriced_reason"]


def test_a_failing_charge_insert_takes_the_order_with_it(db, facility, clinician):
    """A real constraint in this test's tenant refuses the charge of one test; the order placed in the
    same transaction is not saved either."""
    schema = f"t_{facility.slug}"
    with db.control() as conn:
        conn.exec_driver_sql(f'ALTER TABLE "{schema}".charge ADD CONSTRAINT test_refuse_smear '
                             f"CHECK (item_code <> '{MALARIA_SMEAR}')")
    try:
        with db.tenant(facility.slug) as conn:
            patient, encounter = visit(conn, clinician)
        with pytest.raises(sa.exc.IntegrityError, match="test_refuse_smear"), db.tenant(facility.slug) as conn:
            order(conn, clinician, patient, encounter, MALARIA_SMEAR)
        with db.tenant(facility.slug) as conn:
            orders = conn.execute(sa.select(sa.func.count()).select_from(entry).where(
                entry.c.patient_id == patient["id"], entry.c.kind.in_(["service_request", "charge"]))).scalar()
        assert orders == 0
    finally:
        with db.control() as conn:
            conn.exec_driver_sql(f'ALTER TABLE "{schema}".charge DROP CONSTRAINT test_refuse_smear')


def test_entered_in_error_credits_the_charge_exactly_once(db, facility, clinician):
    with db.tenant(facility.slug) as conn:
        patient, encounter = visit(conn, clinician)
        placed = order(conn, clinician, patient, encounter, FULL_BLOOD_COUNT)
        clinical.retract_entry(conn, clinician, patient["id"], placed["id"], "wrong patient")
        billed, credit = charges_for(conn, placed["root_id"])
    assert credit["reverses"] == billed["root_id"] and credit["amount"] == -billed["amount"]
    assert credit["quantity"] == -1 and credit["service_date"] == billed["service_date"]
    assert billed["amount"] + credit["amount"] == 0


def test_an_amendment_that_changes_nothing_billable_charges_nothing_more(db, facility, clinician):
    with db.tenant(facility.slug) as conn:
        patient, encounter = visit(conn, clinician)
        placed = order(conn, clinician, patient, encounter, FULL_BLOOD_COUNT)
        record.append(conn, clinician, "service_request", patient_id=patient["id"], supersedes=placed["id"],
                      reason="now urgent", detail={**{k: placed[k] for k in (
                          "category", "code", "display", "status", "clinical_info", "order_set")}, "priority": "stat"})
        assert len(charges_for(conn, placed["root_id"])) == 1
        revoked = record.append(conn, clinician, "service_request", patient_id=patient["id"],
                                supersedes=record.history(conn, placed["id"])[-1].id, reason="not needed",
                                detail={**{k: placed[k] for k in ("category", "code", "display", "clinical_info",
                                                                  "order_set", "priority")}, "status": "revoked"})
        after = charges_for(conn, placed["root_id"])
    assert [c["quantity"] for c in after] == [1, -1] and after[1]["source_entry_id"] == revoked.id


def test_insured_patients_are_charged_on_their_payers_price_list(db, facility, clinician, clerk):
    with db.tenant(facility.slug) as conn:
        patient, encounter = visit(conn, clinician)
        service.add_coverage(conn, clerk, patient["id"], payer_code="NHIF", member_number="NH-123",
                             valid_from=dt.date(2020, 1, 1), valid_to=None)
        placed = order(conn, clinician, patient, encounter, FULL_BLOOD_COUNT)
        [captured] = charges_for(conn, placed["root_id"])
        owner = conn.execute(sa.select(account.c.payer_code).where(account.c.id == captured["account_id"])).scalar()
    assert captured["price_list"] == "NHI" and captured["amount"] == Decimal("380.00") and owner == "NHIF"


def test_finishing_an_encounter_charges_the_consultation(db, facility, clinician):
    with db.tenant(facility.slug) as conn:
        patient, encounter = visit(conn, clinician)
        clinical.transition_encounter(conn, clinician, patient["id"], encounter["id"], "in_progress")
        clinical.transition_encounter(conn, clinician, patient["id"], encounter["id"], "finished")
        rows = conn.execute(sa.select(charge).where(charge.c.item_kind == "consultation",
                                                    charge.c.source_kind == "encounter_status")
                            .join(entry, entry.c.id == charge.c.entry_id)
                            .where(entry.c.encounter_id == encounter["id"])).mappings().all()
    assert [(r["item_code"], r["amount"], r["department"]) for r in rows] == [
        ("outpatient", Decimal("300.00"), "OPD")]


def test_pricing_an_unpriced_charge_is_a_new_version_and_leaves_the_worklist(db, facility, clinician, clerk):
    with db.tenant(facility.slug) as conn:
        patient, encounter = visit(conn, clinician)
        placed = order(conn, clinician, patient, encounter, GLUCOSE)
        [unpriced] = charges_for(conn, placed["root_id"])
        assert unpriced["id"] in {c["id"] for c in service.unpriced_charges(conn, clerk)}
        priced = service.price_charge(conn, clerk, unpriced["id"], Decimal("120.00"), "price list to be updated")
        assert priced["root_id"] == unpriced["root_id"] and priced["amount"] == Decimal("120.00")
        assert unpriced["id"] not in {c["id"] for c in service.unpriced_charges(conn, clerk)}
        with pytest.raises(Conflict):
            service.price_charge(conn, clerk, priced["id"], Decimal("1"), "twice")


def test_insurance_recorded_after_the_account_opened_moves_the_account_to_the_insurer(db, facility, clinician, clerk):
    with db.tenant(facility.slug) as conn:
        patient, encounter = visit(conn, clinician)
        first = order(conn, clinician, patient, encounter, FULL_BLOOD_COUNT)
        [self_paid] = charges_for(conn, first["root_id"])
        service.add_coverage(conn, clerk, patient["id"], payer_code="NHIF", member_number="NH-LATE",
                             valid_from=dt.date(2020, 1, 1), valid_to=None)
        second = order(conn, clinician, patient, encounter, CHEST_XRAY)
        [insured] = charges_for(conn, second["root_id"])
        payer = conn.execute(sa.select(account.c.payer_code).where(account.c.id == self_paid["account_id"])).scalar()
    assert self_paid["price_list"] == "CASH" and insured["price_list"] == "NHI"
    assert insured["account_id"] == self_paid["account_id"] and payer == "NHIF"


def test_the_bulk_path_charges_each_entry_once_in_one_batch(db, facility, clinician):
    """`record.append_many` (imports, demo data) runs the batch reaction: the same charges, ids and account
    as one append at a time would give, written together."""
    with db.tenant(facility.slug) as conn:
        patient, encounter = visit(conn, clinician)
        detail = {"category": "lab", "display": "x", "priority": "routine", "status": "active",
                  "clinical_info": None, "order_set": None}
        orders = record.append_many(conn, clinician, [
            record.NewEntry(kind="service_request", patient_id=patient["id"], encounter_id=encounter["id"],
                            detail={**detail, "code": code}) for code in (FULL_BLOOD_COUNT, GLUCOSE, MALARIA_SMEAR)])
        billed = [charges_for(conn, o.root_id) for o in orders]
        accounts = conn.execute(sa.select(sa.func.count()).select_from(account).where(
            account.c.patient_id == patient["id"])).scalar()
        single = order(conn, clinician, patient, encounter, CHEST_XRAY)
        [alone] = charges_for(conn, single["root_id"])
    assert [len(b) for b in billed] == [1, 1, 1] and accounts == 1
    assert [(b[0]["status"], b[0]["amount"]) for b in billed] == [
        ("posted", Decimal("450.00")), ("unpriced", None), ("posted", Decimal("200.50"))]
    assert {b[0]["account_id"] for b in billed} == {alone["account_id"]}
