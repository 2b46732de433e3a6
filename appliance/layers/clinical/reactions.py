"""What the clinical layer does when another layer's entry is appended (in the same transaction):
it keeps the `encounter` projection in step with where the patient is, so care relationships
(clinical/access.py: an encounter in the nurse's ward) follow the patient through the hospital.

- `admission` (operations): the inpatient encounter is in the admitting ward, in progress (an encounter
  planned at the front desk starts when the patient is given a bed);
- `transfer` (operations): the inpatient encounter moves to the new ward;
- `discharge` (operations): the inpatient encounter is finished at the discharge time;
- `ed_seen` (operations): the emergency encounter is in progress;
- `ed_departure` (operations): the emergency encounter is finished at the departure time.

Each status change is also an `encounter_status` entry, as when a clinician changes it by hand.
The kinds are named, not imported: the clinical layer does not know the operations layer.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from appliance.layers.clinical.models import encounter
from appliance.substrate import record
from appliance.substrate.principal import Principal
from appliance.substrate.record import Entry


def _move_status(conn: Connection, principal: Principal, appended: Entry, to_status: str) -> None:
    encounter_id = appended.detail.get("encounter_id") or appended.encounter_id
    row = conn.execute(sa.select(encounter.c.status, encounter.c.started_at)
                       .where(encounter.c.id == encounter_id).with_for_update()).first()
    if row is None or row.status == to_status or row.status in {"finished", "cancelled"}:
        return
    values: dict = {"status": to_status, "updated_at": sa.func.now()}
    if row.started_at is None:
        values["started_at"] = appended.occurred_at
    if to_status == "finished":
        values["ended_at"] = appended.occurred_at
    conn.execute(sa.update(encounter).where(encounter.c.id == encounter_id).values(**values))
    record.append(conn, principal, "encounter_status", patient_id=appended.patient_id, encounter_id=encounter_id,
                  occurred_at=appended.occurred_at,
                  detail={"encounter_id": encounter_id, "from_status": row.status, "to_status": to_status})


def on_admission(conn: Connection, principal: Principal, appended: Entry) -> None:
    conn.execute(sa.update(encounter).where(encounter.c.id == appended.detail["encounter_id"],
                                            encounter.c.ward_code.is_distinct_from(appended.detail["ward_code"]))
                 .values(ward_code=appended.detail["ward_code"], updated_at=sa.func.now()))
    _move_status(conn, principal, appended, "in_progress")


def on_transfer(conn: Connection, principal: Principal, appended: Entry) -> None:
    conn.execute(sa.update(encounter).where(encounter.c.id == appended.detail["encounter_id"])
                 .values(ward_code=appended.detail["to_ward_code"], updated_at=sa.func.now()))


def on_discharge(conn: Connection, principal: Principal, appended: Entry) -> None:
    _move_status(conn, principal, appended, "finished")


def on_ed_seen(conn: Connection, principal: Principal, appended: Entry) -> None:
    _move_status(conn, principal, appended, "in_progress")


def on_ed_departure(conn: Connection, principal: Principal, appended: Entry) -> None:
    _move_status(conn, principal, appended, "finished")


record.register_reaction("admission", on_admission)
record.register_reaction("transfer", on_transfer)
record.register_reaction("discharge", on_discharge)
record.register_reaction("ed_seen", on_ed_seen)
record.register_reaction("ed_departure", on_ed_departure)
