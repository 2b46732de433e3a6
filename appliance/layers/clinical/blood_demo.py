"""The demo's blood banks (`healthos up --demo`): at the demo hospitals, a stock of units across components and
groups (one expiring within days, so the page's flag shows), a few units given over the past year, and today's
work: a request with a unit crossmatched and reserved, and one with its unit issued to the ward, waiting at the
bedside. The patients are adults of the demo population the laboratory grouped (the antenatal profile's
"Blood group and Rhesus", LOINC 882-1), so each unit is crossmatched against a recorded group, and each is
of the patient's own group. Everything goes through the blood bank's service as the technician's and clinician's
acts do, at the times they happened; the bedside record of the past units is the nursing demo's
(appliance/layers/nursing/transfusion_demo.py), which starts each unit issued before today. Deterministic from the
seed and the facility; skipped where the blood bank has stock already.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from appliance.layers.clinical import blood
from appliance.layers.clinical.blood_schemas import BloodRequestIn, BloodUnitIn
from appliance.layers.clinical.demo import demo_principal
from appliance.layers.clinical.models import blood_unit
from appliance.substrate.db import Database
from appliance.substrate.demo import demo_stream
from appliance.substrate.tenancy import facility_timezone

DEMO_HOSPITALS = ("lakeshore_district", "riverside_referral")
# The stock on the shelf: (component, ABO, RhD, how many, days left before expiry).
STOCK = (("red_cells", "O", "positive", 4, 30), ("red_cells", "O", "negative", 2, 25),
         ("red_cells", "A", "positive", 3, 2), ("red_cells", "B", "positive", 2, 21),
         ("red_cells", "AB", "positive", 1, 28), ("whole_blood", "O", "positive", 2, 18),
         ("plasma", "A", "positive", 2, 300), ("plasma", "AB", "negative", 1, 320),
         ("platelets", "O", "positive", 1, 4))
PAST_DAYS = (300, 210, 120, 45)  # units given over the year, this many days before today
INDICATIONS = ("Postpartum haemorrhage, Hb 6.4 g/dl", "Severe anaemia, Hb 5.1 g/dl, breathless",
               "Bleeding at caesarean section, estimated loss 1,200 ml", "Malaria with severe anaemia, Hb 4.8 g/dl")
RED_CELL_SHELF_DAYS = 35  # red cells in CPDA-1 keep 35 days

# Adults the laboratory grouped, on a ward now (`:on_ward`) or not: today's units go to a ward's patients, whose
# nurses see them; the past year's to patients on no ward now, whose old observations schedule nothing today.
_GROUPED = sa.text("""
    SELECT DISTINCT e.patient_id FROM entry e JOIN result r ON r.entry_id = e.id JOIN patient p ON p.id = e.patient_id
    WHERE r.code = :code AND e.kind = 'result' AND p.birth_date <= current_date - interval '18 years'
      AND NOT EXISTS (SELECT 1 FROM entry d WHERE d.patient_id = p.id AND d.kind = 'death')
      AND EXISTS (SELECT 1 FROM encounter en WHERE en.patient_id = p.id AND en.ward_code IS NOT NULL
                  AND en.status IN ('arrived', 'in_progress')) = :on_ward
    ORDER BY e.patient_id""")


def generate_blood_demo(db: Database, slugs: list[str], seed: int = 2026, as_of: dt.datetime | None = None,
                        hospitals: tuple[str, ...] = DEMO_HOSPITALS) -> dict[str, int]:
    """The demo blood bank at each of the `hospitals` among `slugs`; how many units were received, reserved,
    issued (today's and the past year's)."""
    counts = {"received": 0, "reserved": 0, "issued": 0}
    for slug in (s for s in hospitals if s in slugs):
        author = demo_principal(slug, "blood bank")
        zone = facility_timezone(db, slug)
        now = (as_of or dt.datetime.now(dt.UTC)).astimezone(zone)
        today = now.date()
        draw = demo_stream("blood", seed, slug)
        prefix = "".join(part[0] for part in slug.split("_")).upper()
        numbers = iter(f"{prefix}{today:%y} {n:06d}" for n in range(1, 10_000))
        with db.tenant(slug) as conn:
            if conn.execute(sa.select(blood_unit.c.id).limit(1)).first() is not None:
                continue
            # As many of each as the population has (a small one may have fewer grouped adults than the plan).
            past, present = (_grouped(conn, on_ward) for on_ward in (False, True))
            past = draw.sample(past, min(len(past), len(PAST_DAYS)))
            present = draw.sample(present, min(len(present), 2))
            for component, abo, rhd, many, left in STOCK:
                for _ in range(many):
                    _receive(conn, author, next(numbers), component, abo, rhd, today, left)
                    counts["received"] += 1
            # The past year's units, each of its patient's own group, given on the ward that day (nursing demo).
            for days, (patient_id, group) in zip(PAST_DAYS, past, strict=False):
                day = today - dt.timedelta(days=days)
                at = dt.datetime.combine(day, dt.time(9, draw.randrange(60)), zone)
                unit = _receive(conn, author, next(numbers), "red_cells", group["abo"], group["rhd"], day,
                                RED_CELL_SHELF_DAYS - 5, at=at - dt.timedelta(days=5))
                request = _request(conn, author, patient_id, draw.choice(INDICATIONS), "urgent", at)
                blood.reserve(conn, author, request, unit["unit_number"], None, today=day,
                              at=at + dt.timedelta(minutes=40))
                blood.issue(conn, author, unit["id"], today=day, at=at + dt.timedelta(minutes=70))
                counts["reserved"] += 1
                counts["issued"] += 1
            # Today: one request with a unit reserved, one with its unit issued and waiting at the bedside. Each
            # act today, however early it is: in the first two hours after midnight the hours before now are
            # shrunk to those since midnight (at 00:30 the unit was issued yesterday, and the bedside demo, which
            # starts what was issued before today, transfused it).
            since_midnight = now - dt.datetime.combine(today, dt.time(0), zone)
            scale = min(1.0, since_midnight / dt.timedelta(hours=2))
            for (patient_id, group), issued in zip(present, (True, False), strict=False):
                at = now - dt.timedelta(hours=2 if issued else 1) * scale
                unit = _receive(conn, author, next(numbers), "red_cells", group["abo"], group["rhd"], today, 20)
                request = _request(conn, author, patient_id, draw.choice(INDICATIONS), "urgent", at, units=2)
                blood.reserve(conn, author, request, unit["unit_number"], None, today=today,
                              at=at + dt.timedelta(minutes=30) * scale)
                counts["reserved"] += 1
                if issued:
                    blood.issue(conn, author, unit["id"], today=today, at=at + dt.timedelta(minutes=50) * scale)
                    counts["issued"] += 1
    return counts


def _grouped(conn, on_ward: bool) -> list[tuple]:
    """The adults grouped once, or always alike, with their group."""
    found = [(p, blood.patient_group(conn, p)) for p in conn.execute(
        _GROUPED, {"code": blood.GROUPING_LOINC, "on_ward": on_ward}).scalars()]
    return [(p, g) for p, g in found if g["abo"] and not g["conflict"]]


def _receive(conn, author, number: str, component: str, abo: str, rhd: str, day: dt.date, left: int, *,
             at: dt.datetime | None = None) -> dict:
    shelf = 365 if component == "plasma" else 5 if component == "platelets" else RED_CELL_SHELF_DAYS
    expires = day + dt.timedelta(days=left)
    collected = max(expires - dt.timedelta(days=shelf), day - dt.timedelta(days=shelf - left))
    return blood.receive_unit(conn, author, BloodUnitIn(
        unit_number=number, component=component, abo=abo, rhd=rhd,
        volume_ml=280 if component == "red_cells" else 450 if component == "whole_blood" else 220,
        collected_on=min(collected, day), expires_on=expires), today=day, at=at)


def _request(conn, author, patient_id, indication: str, urgency: str, at: dt.datetime, units: int = 1):
    return blood.request_blood(conn, author, patient_id, BloodRequestIn(
        component="red_cells", units=units, indication=indication, urgency=urgency), at=at)["id"]
