"""The bedside record of the demo's past transfusions (`healthos up --demo`), written after the blood bank's demo
(appliance/layers/clinical/blood_demo.py) issued its units: each unit issued before today is started half an hour
after it left the blood bank, after the two-person check with one of the facility's demo ward nurses (demo members of
staff on its first inpatient ward, created once by e-mail and never enrolled, as the roster's are), observed at 15
minutes and ended within three hours, each with its vital signs; one of them stopped for a febrile reaction, whose
escalation task was answered within the hour. Today's unit, issued and waiting, is left for the ward to start.
Written through this layer's transfusion service at the times the acts happened, so each is an entry of the one
record with its reactions (the unit transfused, the task raised) and its audit event. Deterministic from the seed and
the facility; skipped where the facility has transfusions already.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from decimal import Decimal

import sqlalchemy as sa

from appliance.layers.nursing import service, transfusion
from appliance.layers.nursing.demo import demo_principal
from appliance.layers.nursing.schemas import (
    TransfusionEndIn,
    TransfusionObservationIn,
    TransfusionStartIn,
    TransfusionVitalsIn,
)
from appliance.substrate import identity
from appliance.substrate.db import Database
from appliance.substrate.demo import demo_stream
from appliance.substrate.policy import AccessPolicy
from appliance.substrate.tenancy import facility_timezone

SECOND_CHECKERS = ("Nurse Akinyi Otieno", "Nurse Joseph Kamau", "Midwife Fatuma Ali")
# The blood bank's units issued before the facility's today and not yet transfused (its tables, read by SQL: layers
# never import each other), oldest first.
_ISSUED_BEFORE = sa.text("""
    SELECT u.unit_number, u.volume_ml, ev.patient_id, ev.recorded_at AS issued_at
    FROM blood_unit u JOIN LATERAL (SELECT * FROM blood_unit_event e WHERE e.unit_id = u.id ORDER BY e.seq DESC
                                    LIMIT 1) ev ON ev.kind = 'issued'
    WHERE ev.recorded_at < :today_starts ORDER BY ev.recorded_at""")
# The operations layer's ward the demo's second checkers work on (its table, read by SQL): a nurse's membership names
# an inpatient ward, as every demo nurse's does.
_FIRST_WARD = sa.text("SELECT code FROM ward WHERE active AND kind IN ('inpatient', 'maternity', 'paediatric', "
                      "'icu', 'surgical') ORDER BY code LIMIT 1")


def _vitals(draw, *, febrile: bool = False) -> TransfusionVitalsIn:
    return TransfusionVitalsIn(temperature_c=Decimal("38.7") if febrile else Decimal(f"36.{draw.randrange(4, 9)}"),
                               heart_rate_bpm=draw.randrange(76, 98) + (22 if febrile else 0),
                               systolic_mmhg=draw.randrange(104, 132), diastolic_mmhg=draw.randrange(62, 84),
                               respiratory_rate=draw.randrange(14, 20) + (4 if febrile else 0),
                               spo2_percent=draw.randrange(95, 100))


def _second_checkers(db: Database, policy: AccessPolicy, slug: str, ward: str | None) -> list:
    """The demo's second checkers at `slug`, made once by e-mail: nurses of its `ward`."""
    domain = slug.replace("_", "-")
    made = []
    with db.control() as conn:
        for n, name in enumerate(SECOND_CHECKERS, start=1):
            email = f"bedside.check{n}@{domain}.demo"
            found = identity.account_by_email(conn, email)
            made.append(found.id if found is not None else identity.create_account(
                conn, policy, kind="staff", email=email, display_name=name, role="nurse", tenant=slug,
                ward=ward).account_id)
    return made


def generate_transfusion_demo(db: Database, policy: AccessPolicy, slug: str, seed: int = 2026,
                              as_of: dt.datetime | None = None) -> int:
    """Start, observe and end each unit issued before today at `slug`; how many were transfused."""
    author = demo_principal(slug)
    zone: zoneinfo.ZoneInfo = facility_timezone(db, slug)
    now = (as_of or dt.datetime.now(dt.UTC)).astimezone(zone)
    today_starts = dt.datetime.combine(now.date(), dt.time(0), zone)
    draw = demo_stream("transfusion", seed, slug)
    given = 0
    with db.tenant(slug) as conn:
        if conn.execute(sa.text("SELECT to_regclass('blood_unit') IS NULL")).scalar():
            return 0
        if conn.execute(sa.text("SELECT 1 FROM entry WHERE kind = 'transfusion' LIMIT 1")).first():
            return 0
        issued = [dict(r) for r in conn.execute(_ISSUED_BEFORE, {"today_starts": today_starts}).mappings()]
        ward = conn.execute(_FIRST_WARD).scalar()
    if not issued:
        return 0
    checkers = _second_checkers(db, policy, slug, ward)
    staff = transfusion.colleagues(db, policy, slug)
    with db.tenant(slug) as conn:
        for number, unit in enumerate(issued):
            febrile = number == 1
            started_at = unit["issued_at"] + dt.timedelta(minutes=30)
            started = transfusion.start(conn, author, unit["patient_id"], TransfusionStartIn(
                unit_number=unit["unit_number"], checked_by_account_id=draw.choice(checkers), started_at=started_at,
                vitals=_vitals(draw)), now=started_at, zone=zone, staff=staff)
            observed_at = started_at + dt.timedelta(minutes=15)
            transfusion.observe(conn, author, unit["patient_id"], started["id"], TransfusionObservationIn(
                observed_at=observed_at, vitals=_vitals(draw)), now=observed_at, zone=zone)
            ended_at = started_at + dt.timedelta(minutes=70 if febrile else draw.randrange(150, 180))
            ended = transfusion.end(conn, author, unit["patient_id"], started["id"], TransfusionEndIn(
                ended_at=ended_at, volume_ml=90 if febrile else unit["volume_ml"],
                reaction="febrile" if febrile else "none",
                reaction_note="Temperature 38.7 with rigors at 55 minutes; stopped, doctor informed, paracetamol given"
                if febrile else None, vitals=_vitals(draw, febrile=febrile)), now=ended_at, zone=zone)
            if febrile:
                for task in service.tasks_of(conn, [unit["patient_id"]], open_only=True, codes=["escalation"]):
                    if task["source_id"] == ended["id"]:
                        service.close_task(conn, author, task, "done", "Doctor reviewed at the bedside; bag returned "
                                           "to the blood bank", occurred_at=ended_at + dt.timedelta(minutes=25))
            given += 1
    return given
