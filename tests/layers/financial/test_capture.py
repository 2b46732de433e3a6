"""Charge capture as a reaction: a billable act and its charge are written in one transaction."""

from __future__ import annotations

from decimal import Decimal

import sqlalchemy as sa

from appliance.layers.financial.models import charge
from appliance.substrate.record import entry
from tests.layers.financial.conftest import CHEST_XRAY, FULL_BLOOD_COUNT, GLUCOSE, order, visit


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
    assert captured["status"] == "posted" and captured["amount"] == Decimal("450.000")
    assert captured["source_entry_id"] == placed["id"] and captured["price_list"] == "CASH"
    assert captured["department"] == "LAB" and captured["currency"] == "KES"
    assert captured["recorded_at"] == same_transaction  # now() is the transaction's start: one transaction


def test_an_imaging_order_without_encounter_lands_on_the_patients_own_account(db, facility, clinician):
    with db.tenant(facility.slug) as conn:
        patient, _ = visit(conn, clinician)
        placed = order(conn, clinician, patient, None, CHEST_XRAY)
        [captured] = charges_for(conn, placed["root_id"])
    assert captured["amount"] == Decimal("1500.000") and captured["department"] == "RAD"


def test_an_item_without_price_is_captured_unpriced_never_dropped(db, facility, clinician):
    with db.tenant(facility.slug) as conn:
        patient, encounter = visit(conn, clinician)
        placed = order(conn, clinician, patient, encounter, GLUCOSE)
        [captured] = charges_for(conn, placed["root_id"])
    assert captured["status"] == "unpriced" and captured["amount"] is None
    assert GLUCOSE in captured["unpriced_reason"] and "CASH" in captured["unpriced_reason"]
