"""What a death changes in the operations layer, and the deaths at this facility still to certify.

- The guards (`record.register_guard`): no new appointment and no admission for a person recorded deceased at
  any facility (`substrate.deaths`); `scheduling.book` and `adt.admit` also ask first, before they write their
  own rows, so a refusal leaves nothing behind.
- The reaction to a new `death` certificate (clinical), in its transaction: the person's appointments still
  booked from the time of death on are cancelled (reason: deceased), and an open ED visit departs with
  disposition `died` (at the time of death, or the arrival for one brought in dead). An inpatient still
  admitted is not discharged here: the bed manager discharges with disposition `died`, which frees the bed.
- `to_certify`: stays and ED visits here that ended with disposition `died` whose person has no death
  certificate in force, for the clinicians to certify; `uncertified_death`, the one of a chart, which its banner
  shows until the death is certified.
- `cancelled_by_withdrawn_death`: the appointments desk's list of appointments cancelled because their person was
  recorded deceased who no longer is (the certificate marked entered in error). A withdrawn certificate reopens
  nothing (a clerk decides with the family what still stands), so this is where the desk finds what to rebook.

The clinical package is never imported: the `death` kind is named, and the patient's chart read by SQL.
"""

from __future__ import annotations

import datetime as dt
import uuid

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from appliance.layers.operations import ed, scheduling
from appliance.layers.operations.models import appointment, ed_visit
from appliance.substrate import deaths, record
from appliance.substrate.principal import Principal
from appliance.substrate.record import Entry

# The reason a booked appointment is cancelled for, when its person died.
CANCELLED_FOR = "deceased"

_DIED_UNCERTIFIED = """
    SELECT d.patient_id, d.encounter_id, d.place, d.ended_at, p.mrn, p.family_name, p.given_names, p.sex,
           p.birth_date
    FROM (SELECT s.patient_id, s.encounter_id, 'ward ' || s.ward_code AS place, s.discharged_at AS ended_at
          FROM inpatient_stay s WHERE s.disposition = 'died'
          UNION ALL
          -- The visit's patient through its encounter (same id), whose patient index finds one chart's.
          SELECT e.patient_id, v.id, 'emergency department', v.departed_at
          FROM ed_visit v JOIN encounter e ON e.id = v.id WHERE v.disposition = 'died') d
    JOIN patient p ON p.id = d.patient_id
    WHERE NOT EXISTS (SELECT 1 FROM control.subject_death_of(p.subject_id, p.id))
"""
_TO_CERTIFY = sa.text(_DIED_UNCERTIFIED + "ORDER BY d.ended_at DESC LIMIT :limit")
_UNCERTIFIED_OF = sa.text(_DIED_UNCERTIFIED + "AND d.patient_id = :patient_id ORDER BY d.ended_at DESC LIMIT 1")


def to_certify(conn: Connection, principal: Principal, *, limit: int = 200) -> list[dict]:
    """Deaths here still to certify, latest first: each stay or ED visit that ended `died` whose person has no
    certificate in force (here or at another facility: a certificate marks the person, `substrate.deaths`).
    Each patient listed is audited as a read."""
    rows = [dict(r) for r in conn.execute(_TO_CERTIFY, {"limit": limit}).mappings()]
    record.note_list_read(conn, principal, "encounter", rows, id_key="encounter_id",
                          detail={"list": "deaths to certify"})
    return rows


def uncertified_death(conn: Connection, principal: Principal, patient_id: uuid.UUID) -> dict | None:
    """The patient's latest stay or ED visit here that ended `died`, while no death certificate is in force for them
    (`to_certify`'s, for one chart): what the chart shows, 'death not yet certified', until a clinician certifies
    it. Audited as a read of that encounter when there is one."""
    row = conn.execute(_UNCERTIFIED_OF, {"patient_id": patient_id}).mappings().first()
    if row is None:
        return None
    record.note_access(conn, principal, "read", patient_id, "encounter", (row["encounter_id"],),
                       detail={"died_uncertified": True})
    return dict(row)


# Cancelled for a death (the reason this reaction gives) and the person no longer recorded deceased at any facility.
_CANCELLED_BY_WITHDRAWN_DEATH = sa.text("""
    SELECT a.id, a.patient_id, a.slot_id, a.clinic_code, a.starts_at, a.status, a.reason, a.encounter_id, p.mrn,
           p.family_name, p.given_names
    FROM appointment a
    JOIN patient p ON p.id = a.patient_id
    WHERE a.status = 'cancelled'
      AND EXISTS (SELECT 1 FROM appointment_change ch
                  WHERE ch.appointment_id = a.id AND ch.action = 'cancelled' AND ch.reason = :reason)
      AND NOT EXISTS (SELECT 1 FROM control.subject_death_of(p.subject_id, p.id))
    ORDER BY a.starts_at
    LIMIT :limit
""")


def cancelled_by_withdrawn_death(conn: Connection, principal: Principal, *, limit: int = 200) -> list[dict]:
    """Appointments here cancelled because their person was recorded deceased, whose death is no longer recorded
    (the certificate marked entered in error), soonest first, with who they are for. Each is audited as a read."""
    rows = [dict(r) for r in conn.execute(_CANCELLED_BY_WITHDRAWN_DEATH,
                                          {"reason": CANCELLED_FOR, "limit": limit}).mappings()]
    for row in rows:
        record.note_access(conn, principal, "read", row["patient_id"], "appointment", (row["id"],))
    return rows


def refuse_appointment(conn: Connection, patient_id: uuid.UUID | None) -> None:
    deaths.refuse_if_deceased(conn, patient_id, "an appointment")


def refuse_admission(conn: Connection, patient_id: uuid.UUID | None) -> None:
    deaths.refuse_if_deceased(conn, patient_id, "an admission")


def on_death(conn: Connection, principal: Principal, appended: Entry) -> None:
    """A new certificate: the person's booked appointments from the time of death on are cancelled, and an open
    ED visit departs `died`. A correction or a retraction of the certificate changes neither back."""
    if appended.status != "final":
        return
    died_at: dt.datetime = appended.detail["died_at"]
    booked = conn.execute(sa.select(appointment.c.id).where(
        appointment.c.patient_id == appended.patient_id, appointment.c.status == "booked",
        appointment.c.starts_at >= died_at).order_by(appointment.c.starts_at)).scalars().all()
    for appointment_id in booked:
        scheduling.change(conn, principal, appointment_id, "cancelled", reason=CANCELLED_FOR)
    visit = conn.execute(sa.select(ed_visit.c.id, ed_visit.c.arrived_at).where(
        ed_visit.c.patient_id == appended.patient_id, ed_visit.c.departed_at.is_(None))).first()
    if visit is not None:
        now = conn.execute(sa.select(sa.func.now())).scalar_one()
        ed.depart(conn, principal, appended.patient_id, visit.id, disposition="died",
                  at=min(max(died_at, visit.arrived_at), now))


record.register_guard("appointment", refuse_appointment)
record.register_guard("admission", refuse_admission)
record.register_reaction("death", on_death)
