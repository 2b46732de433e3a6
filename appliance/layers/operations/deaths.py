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
- `correct_died_departure`: a departure recorded as died by mistake (the wrong row clicked, the patient seen again)
  is corrected by a clinician with a reason, a new version of its discharge or ED departure (the record keeps the
  history), which takes it off the deaths to certify; refused while a death certificate is in force.
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
from appliance.layers.operations.errors import Conflict, Invalid, NotFound, Refused
from appliance.layers.operations.models import (
    DISCHARGE_DISPOSITIONS,
    ED_DISPOSITIONS,
    appointment,
    ed_visit,
    inpatient_stay,
)
from appliance.substrate import deaths, record, retraction
from appliance.substrate.principal import Principal
from appliance.substrate.record import Entry

# The reason a booked appointment is cancelled for, when its person died.
CANCELLED_FOR = "deceased"

_DIED_UNCERTIFIED = """
    SELECT d.patient_id, d.encounter_id, d.entry_id, d.place, d.ended_at, p.mrn, p.family_name, p.given_names, p.sex,
           p.birth_date
    FROM (SELECT s.patient_id, s.encounter_id, s.discharge_entry_id AS entry_id, 'ward ' || s.ward_code AS place,
                 s.discharged_at AS ended_at
          FROM inpatient_stay s WHERE s.disposition = 'died'
          UNION ALL
          -- The visit's patient through its encounter (same id), whose patient index finds one chart's.
          SELECT e.patient_id, v.id, v.departure_entry_id, 'emergency department', v.departed_at
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


# What a departure recorded as died may be corrected to: how the patient did leave. Not 'admitted', which only an
# admission records, and not 'died' again.
CORRECTED_DISCHARGE = tuple(d for d in DISCHARGE_DISPOSITIONS if d != "died")
CORRECTED_ED_DEPARTURE = tuple(d for d in ED_DISPOSITIONS if d not in {"died", "admitted"})


def correct_died_departure(conn: Connection, principal: Principal, patient_id: uuid.UUID, encounter_id: uuid.UUID,
                           *, disposition: str, reason: str) -> dict:
    """Correct the patient's stay or ED visit `encounter_id`, which ended `died` by mistake, to `disposition`, with
    `reason`: the discharge or ED departure gets a new version (same time, the reason kept, audited as an amendment)
    and the stay or visit its disposition. A clinician's act (`clinical.entry.retract`, ACC-035's rule for any
    record); refused (409) while a death certificate is in force for the patient, which is withdrawn first. Returns
    the new version's entry id and the disposition."""
    if not principal.can(retraction.RETRACT_ANY):
        raise Refused("your role may not correct a departure recorded as died: a clinician can")
    reason = (reason or "").strip()
    if len(reason) < 3:
        raise Invalid("say why the departure was not a death (at least 3 characters)", field="reason")
    stay = conn.execute(sa.select(inpatient_stay.c.id, inpatient_stay.c.discharge_entry_id).where(
        inpatient_stay.c.encounter_id == encounter_id, inpatient_stay.c.patient_id == patient_id,
        inpatient_stay.c.disposition == "died").with_for_update()).first()
    visit = None if stay is not None else conn.execute(sa.select(ed_visit.c.id, ed_visit.c.seen_at,
                                                                 ed_visit.c.departure_entry_id).where(
        ed_visit.c.id == encounter_id, ed_visit.c.patient_id == patient_id,
        ed_visit.c.disposition == "died").with_for_update()).first()
    if stay is None and visit is None:  # another chart's encounter, a guessed id, or one corrected already
        raise NotFound("this patient has no departure here recorded as died to correct", field="encounter_id",
                       encounter_id=str(encounter_id))
    allowed = CORRECTED_DISCHARGE if stay is not None else CORRECTED_ED_DEPARTURE
    if disposition not in allowed:
        raise Invalid(f"the departure is corrected to one of {', '.join(allowed)}", field="disposition")
    if visit is not None and disposition == "left_without_being_seen" and visit.seen_at is not None:
        raise Invalid("the patient was seen by a clinician: correct it to 'left against advice' instead",
                      field="disposition")
    death = deaths.death_of(conn, patient_id)
    if death is not None:
        raise Conflict(f"this person was {deaths.sentence(death)}, so the departure stays as died: the certificate is "
                       "marked entered in error first (on its page, at the facility that certified it), then the "
                       "departure is corrected", field="disposition")
    current = record.history(conn, stay.discharge_entry_id if stay is not None else visit.departure_entry_id)[-1]
    corrected = record.append(conn, principal, current.kind, patient_id=patient_id, encounter_id=encounter_id,
                              occurred_at=current.occurred_at, supersedes=current.id, reason=reason,
                              detail={**current.detail, "disposition": disposition})
    if stay is not None:
        conn.execute(sa.update(inpatient_stay).where(inpatient_stay.c.id == stay.id).values(
            disposition=disposition, discharge_entry_id=corrected.id))
    else:
        conn.execute(sa.update(ed_visit).where(ed_visit.c.id == visit.id).values(
            disposition=disposition, departure_entry_id=corrected.id))
    return {"entry_id": corrected.id, "encounter_id": encounter_id, "disposition": disposition}


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
