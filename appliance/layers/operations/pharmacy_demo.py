"""Synthetic outpatient pharmacy data for a facility that holds a demo population: the pharmacy stocks
the medicines the demo's clinics prescribe (two batches each, earliest expiry first), and over the last
`DAYS_BACK` days (the queue's window) most clinic prescriptions still active were dispensed within the hour
or two after they were written,
through the pharmacy's own dispensing (`pharmacy.dispense_medicine`: the `dispense` entry, the ledger, the
reactions). Deterministic from a seed, written once.

So the pharmacy has a story to show: amoxicillin is stocked short of a course, so a patient prescribed it
stays on the queue; ibuprofen has a batch past its expiry on the shelf, to adjust out; today's
prescriptions wait on the queue.
"""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

import sqlalchemy as sa

from appliance.layers.operations import pharmacy
from appliance.layers.operations.demo import DEMO_NAMESPACE
from appliance.layers.operations.errors import Conflict
from appliance.layers.operations.models import pharmacy_item
from appliance.substrate.db import Database
from appliance.substrate.demo import demo_author, demo_stream
from appliance.substrate.principal import Principal
from appliance.substrate.tenancy import facility_timezone

DAYS_BACK = pharmacy.QUEUE_DAYS
# What the demo's clinics prescribe (appliance/layers/clinical/demo.py), as the pharmacy stocks it: drug, form,
# strength, its unit, the unit handed over, the reorder level, and what a course of the demo's regimen is.
ITEMS = [
    ("Artemether-lumefantrine", "tablet", None, None, "tablet", 120, 24),
    ("Paracetamol", "tablet", 500, "mg", "tablet", 200, 24),
    ("Oral rehydration salts + zinc", "sachet", None, None, "sachet", 50, 10),
    ("Amoxicillin", "capsule", 500, "mg", "capsule", 100, 15),
    ("Nitrofurantoin", "tablet", 100, "mg", "tablet", 40, 10),
    ("Amlodipine", "tablet", 5, "mg", "tablet", 90, 30),
    ("Metformin", "tablet", 500, "mg", "tablet", 120, 60),
    ("Tenofovir/lamivudine/dolutegravir", "tablet", None, None, "tablet", 90, 30),
    ("Ferrous sulfate + folic acid", "tablet", None, None, "tablet", 90, 30),
    ("Omeprazole", "capsule", 20, "mg", "capsule", 28, 14),
    ("Ibuprofen", "tablet", 400, "mg", "tablet", 60, 15),
    ("Hydrocortisone 1% cream", "cream", None, None, "tube", 5, 1),
    ("Aspirin", "tablet", 75, "mg", "tablet", 60, 30),
    ("Methyldopa", "tablet", 250, "mg", "tablet", 60, 30),
]
SHORT = "Amoxicillin"  # stocked short: it runs out
EXPIRED = "Ibuprofen"  # a batch past its expiry still on the shelf

_PRESCRIBED = sa.text("""
    SELECT e.root_id AS id, f.occurred_at AS prescribed_at, mr.drug
    FROM entry e JOIN medication_request mr ON mr.entry_id = e.id JOIN entry f ON f.id = e.root_id
    JOIN encounter enc ON enc.id = e.encounter_id AND enc.encounter_class = 'outpatient'
    WHERE e.kind = 'medication_request' AND mr.status = 'active' AND f.occurred_at >= :since
      AND f.occurred_at < :until AND NOT EXISTS (SELECT 1 FROM entry s WHERE s.supersedes = e.id)
    ORDER BY f.occurred_at, e.root_id
""")


def demo_principal(slug: str) -> Principal:
    return demo_author(DEMO_NAMESPACE, slug, "pharmacy", "pharmacist")


def generate_pharmacy_demo(db: Database, slug: str, seed: int = 2026, as_of: dt.datetime | None = None) -> dict:
    """Stock facility `slug`'s pharmacy and dispense its recent clinic prescriptions (see the module
    docstring). Returns what was written by kind: nothing if the pharmacy already stocks anything."""
    principal = demo_principal(slug)
    rng = demo_stream("pharmacy", seed, slug)
    tz = facility_timezone(db, slug)
    with db.tenant(slug) as conn:
        if conn.execute(sa.select(pharmacy_item.c.id).limit(1)).first() is not None:
            return {}
        now = as_of or conn.execute(sa.select(sa.func.now())).scalar_one()
        today = now.astimezone(tz).date()
        today_start = dt.datetime.combine(today, dt.time(), tzinfo=tz)
        prescriptions = conn.execute(_PRESCRIBED, {"since": today_start - dt.timedelta(days=DAYS_BACK),
                                                   "until": now}).mappings().all()
        wanted: dict[str, int] = {}
        for row in prescriptions:
            wanted[row["drug"].lower()] = wanted.get(row["drug"].lower(), 0) + 1
        items: dict[str, tuple[uuid.UUID, int]] = {}
        counts = {"pharmacy_item": 0, "received": 0, "dispense": 0, "out_of_stock": 0}
        long_ago = today - dt.timedelta(days=240)
        delivered = today_start - dt.timedelta(days=DAYS_BACK + 1)  # the stock was in before the fortnight began
        for drug, form, strength, strength_unit, unit, reorder, course in ITEMS:
            item_id = pharmacy.create_item(
                conn, principal, drug=drug, form=form, unit=unit, reorder_level=Decimal(reorder),
                strength=Decimal(strength) if strength else None, strength_unit=strength_unit)["id"]
            items[drug.lower()] = (item_id, course)
            counts["pharmacy_item"] += 1
            code = "".join(ch for ch in drug.upper() if ch.isalpha())[:4]
            # Enough for the month's courses and more; the short item less than one course.
            need = wanted.get(drug.lower(), 0) * course
            first = course * 2 // 3 if drug == SHORT else need + reorder * 2 + rng.randint(0, 4) * course
            batches = [(f"{code}-{rng.randint(1000, 9999)}A", today + dt.timedelta(days=rng.randint(120, 200)), first)]
            if drug != SHORT:
                batches.append((f"{code}-{rng.randint(1000, 9999)}B", today + dt.timedelta(days=rng.randint(400, 700)),
                                reorder * 2))
            for batch, expires, quantity in batches:
                pharmacy.receive(conn, principal, item_id, batch=batch, expires_on=expires, quantity=Decimal(quantity),
                                 reference=f"KEMSA-{rng.randint(10000, 99999)}", today=long_ago, at=delivered)
                counts["received"] += 1
            if drug == EXPIRED:
                pharmacy.receive(conn, principal, item_id, batch=f"{code}-{rng.randint(1000, 9999)}X",
                                 expires_on=today - dt.timedelta(days=rng.randint(3, 20)), quantity=Decimal(course * 2),
                                 reference="KEMSA-OLD", today=long_ago, at=delivered)
                counts["received"] += 1
        for row in prescriptions:
            found = items.get(row["drug"].lower())
            if found is None or row["prescribed_at"] >= today_start or rng.random() > 0.85:
                continue  # today's wait on the queue; a few patients never came to the window
            handed = min(row["prescribed_at"] + dt.timedelta(minutes=rng.randint(10, 120)), now)
            try:
                pharmacy.dispense_medicine(conn, principal, medication_request_id=row["id"], item_id=found[0],
                                           quantity=Decimal(found[1]), today=handed.astimezone(tz).date(), at=handed)
            except Conflict as refused:
                if refused.extra.get("field") != "medication_request_id":
                    counts["out_of_stock"] += 1  # ran out: the patient is still on the queue
                continue
            counts["dispense"] += 1
        return counts
