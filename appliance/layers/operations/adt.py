"""Admission, transfer and discharge (ADT): where an inpatient lies, as entries of the one record.

How an admission relates to an encounter. An inpatient stay *is* an inpatient encounter of the
clinical record: admitting appends an `encounter` entry (class inpatient, in progress, in the ward)
and an `admission` entry on it, in one transaction, unless the patient already has an open inpatient
encounter with no bed (a planned admission opened at the front desk), which the admission then
uses. Admitting from the emergency department closes the ED visit (`ed_departure`, disposition
admitted) in the same transaction; the ED visit and the inpatient stay are two encounters, as in
FHIR (an emergency encounter, then a hospitalisation). A transfer and a discharge are entries on
the inpatient encounter; the clinical layer reacts to them (clinical/reactions.py) by moving the
encounter to the new ward and finishing it, so care relationships follow the patient.

Placement is serialised twice: the bed row is locked (`service.claim_bed`) and the projection
`inpatient_stay` has unique indexes on the open stay of a bed and of a patient, so of two admissions
racing for one bed exactly one lands and the other is refused (409) with nothing written.
"""

from __future__ import annotations

import datetime as dt
import uuid

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from appliance.layers.operations import ed
from appliance.layers.operations.errors import Conflict, Invalid, NotFound
from appliance.layers.operations.models import DISCHARGE_DISPOSITIONS, bed, inpatient_stay
from appliance.layers.operations.service import claim_bed, encounter, inpatient_ward, moment, require_patient
from appliance.substrate import deaths, record
from appliance.substrate.principal import Principal

STAY_COLUMNS = (inpatient_stay.c.id, inpatient_stay.c.patient_id, inpatient_stay.c.encounter_id,
                inpatient_stay.c.ward_code, inpatient_stay.c.bed_code, inpatient_stay.c.source,
                inpatient_stay.c.admitted_at, inpatient_stay.c.discharged_at, inpatient_stay.c.disposition)


def _integrity(exc: sa.exc.IntegrityError) -> Conflict:
    text = str(exc.orig)
    if "inpatient_stay_open_bed_key" in text:
        return Conflict("that bed was taken by another admission a moment ago; choose another", field="bed_code")
    if "inpatient_stay_open_patient_key" in text or "inpatient_stay_encounter_key" in text:
        return Conflict("this patient was admitted by someone else a moment ago", field="patient_id")
    raise exc


def admit(conn: Connection, principal: Principal, patient_id: uuid.UUID, *, ward_code: str,
          bed_code: str | None = None, source: str = "direct", ed_encounter_id: uuid.UUID | None = None,
          encounter_id: uuid.UUID | None = None, reason: str | None = None,
          at: dt.datetime | None = None) -> dict:
    """Admit a patient to a bed (the one named, or the ward's first available one)."""
    require_patient(conn, patient_id)
    deaths.refuse_if_deceased(conn, patient_id, "an admission")  # before the stay's row is written
    when = moment(conn, at)
    inpatient_ward(conn, ward_code, patient_id=patient_id, at=when)
    open_stay = conn.execute(sa.select(inpatient_stay.c.bed_code).where(
        inpatient_stay.c.patient_id == patient_id, inpatient_stay.c.discharged_at.is_(None))).scalar()
    if open_stay is not None:
        raise Conflict(f"this patient is already admitted (bed {open_stay}): transfer them instead",
                       field="patient_id", bed_code=open_stay)
    visit = None
    if ed_encounter_id is not None:
        visit = ed.open_visit(conn, patient_id, ed_encounter_id, when)
        source = "emergency"
    elif source == "emergency":
        raise Invalid("an admission from the emergency department names the ED visit", field="ed_encounter_id")
    else:
        encounter_id = encounter_id or _unplaced_admission(conn, patient_id)
    if encounter_id is not None:
        found = conn.execute(sa.select(encounter.c.patient_id, encounter.c.encounter_class, encounter.c.status)
                             .where(encounter.c.id == encounter_id)).first()
        if found is None or found.patient_id != patient_id:
            raise Invalid(f"encounter {encounter_id} is not an encounter of this patient", field="encounter_id")
        if found.encounter_class != "inpatient" or found.status not in {"planned", "arrived", "in_progress"}:
            raise Invalid("an admission uses an open inpatient encounter", field="encounter_id")
    placed = claim_bed(conn, ward_code, bed_code)
    try:
        with conn.begin_nested():
            if encounter_id is None:
                encounter_id = uuid.uuid4()
                record.append(conn, principal, "encounter", patient_id=patient_id, encounter_id=encounter_id,
                              occurred_at=when, detail={
                                  "id": encounter_id, "patient_id": patient_id, "encounter_class": "inpatient",
                                  "status": "in_progress", "reason": reason, "ward_code": ward_code,
                                  "planned_for": None, "started_at": when})
            admission_id = uuid.uuid4()
            conn.execute(inpatient_stay.insert().values(
                id=admission_id, patient_id=patient_id, encounter_id=encounter_id, ward_code=ward_code,
                bed_code=placed, source=source, admitted_at=when))
    except sa.exc.IntegrityError as exc:
        raise _integrity(exc) from None
    record.append(conn, principal, "admission", patient_id=patient_id, encounter_id=encounter_id,
                  occurred_at=when, entry_id=admission_id, detail={
                      "encounter_id": encounter_id, "ward_code": ward_code, "bed_code": placed, "source": source,
                      "ed_encounter_id": ed_encounter_id, "reason": reason})
    conn.execute(sa.update(bed).where(bed.c.code == placed).values(state="occupied"))
    if visit is not None:
        ed.depart(conn, principal, patient_id, ed_encounter_id, disposition="admitted", at=when,
                  admitted_encounter_id=encounter_id, via_admission=True)
    return stay_of(conn, admission_id)


def _unplaced_admission(conn: Connection, patient_id: uuid.UUID) -> uuid.UUID | None:
    """The patient's open inpatient encounter with no bed yet (a clinician's or the front desk's admission,
    the latest if several), which an admission naming no encounter takes: a bed board admitting the
    patient a clinician had already admitted opened a second inpatient encounter for the one stay, and
    the first stayed open on the ward's lists after the discharge finished the second."""
    return conn.execute(
        sa.select(encounter.c.id)
        .where(encounter.c.patient_id == patient_id, encounter.c.encounter_class == "inpatient",
               encounter.c.status.in_(("planned", "arrived", "in_progress")),
               ~sa.exists().where(inpatient_stay.c.encounter_id == encounter.c.id))
        .order_by(encounter.c.status == "planned", encounter.c.started_at.desc().nulls_last()).limit(1)
    ).scalar()


def stay_of(conn: Connection, stay_id: uuid.UUID) -> dict:
    row = conn.execute(sa.select(*STAY_COLUMNS).where(inpatient_stay.c.id == stay_id)).mappings().first()
    if row is None:
        raise NotFound(f"no admission {stay_id} at this facility", stay_id=str(stay_id))
    return dict(row)


def _open_stay(conn: Connection, patient_id: uuid.UUID) -> dict:
    row = conn.execute(sa.select(*STAY_COLUMNS).where(
        inpatient_stay.c.patient_id == patient_id, inpatient_stay.c.discharged_at.is_(None)).with_for_update()
    ).mappings().first()
    if row is None:
        raise NotFound("this patient is not admitted here", patient_id=str(patient_id))
    return dict(row)


def transfer(conn: Connection, principal: Principal, patient_id: uuid.UUID, *, ward_code: str,
             bed_code: str | None = None, reason: str | None = None, at: dt.datetime | None = None) -> dict:
    """Move an admitted patient to another bed (in the same or another ward); the bed left needs cleaning."""
    stay = _open_stay(conn, patient_id)  # a guessed patient is not found, whatever ward was (or was not) chosen
    if not ward_code:
        raise Invalid("choose the ward to move the patient to", field="ward_code")
    when = moment(conn, at)
    if when < stay["admitted_at"]:
        raise Invalid("a transfer cannot happen before the admission", field="at")
    inpatient_ward(conn, ward_code, patient_id=patient_id, at=when)
    if bed_code == stay["bed_code"]:
        raise Invalid("the patient is already in that bed", field="bed_code")
    placed = claim_bed(conn, ward_code, bed_code)
    try:
        with conn.begin_nested():
            conn.execute(sa.update(inpatient_stay).where(inpatient_stay.c.id == stay["id"])
                         .values(ward_code=ward_code, bed_code=placed))
    except sa.exc.IntegrityError as exc:
        raise _integrity(exc) from None
    conn.execute(sa.update(bed).where(bed.c.code == stay["bed_code"]).values(state="cleaning"))
    conn.execute(sa.update(bed).where(bed.c.code == placed).values(state="occupied"))
    record.append(conn, principal, "transfer", patient_id=patient_id, encounter_id=stay["encounter_id"],
                  occurred_at=when, detail={
                      "encounter_id": stay["encounter_id"], "from_ward_code": stay["ward_code"],
                      "from_bed_code": stay["bed_code"], "to_ward_code": ward_code, "to_bed_code": placed,
                      "reason": reason})
    return stay_of(conn, stay["id"])


def discharge(conn: Connection, principal: Principal, patient_id: uuid.UUID, *, disposition: str,
              destination: str | None = None, at: dt.datetime | None = None) -> dict:
    """End the stay: with a disposition (home, transfer out, died, left against advice, other). The
    bed goes to cleaning."""
    if disposition not in DISCHARGE_DISPOSITIONS:
        raise Invalid(f"disposition is one of {', '.join(DISCHARGE_DISPOSITIONS)}", field="disposition")
    stay = _open_stay(conn, patient_id)
    when = moment(conn, at)
    if when < stay["admitted_at"]:
        raise Invalid("a discharge cannot happen before the admission", field="at")
    discharged = record.append(conn, principal, "discharge", patient_id=patient_id,
                               encounter_id=stay["encounter_id"], occurred_at=when, detail={
                                   "encounter_id": stay["encounter_id"], "ward_code": stay["ward_code"],
                                   "bed_code": stay["bed_code"], "disposition": disposition,
                                   "destination": destination})
    conn.execute(sa.update(inpatient_stay).where(inpatient_stay.c.id == stay["id"]).values(
        discharged_at=when, disposition=disposition, discharge_entry_id=discharged.id))
    conn.execute(sa.update(bed).where(bed.c.code == stay["bed_code"]).values(state="cleaning"))
    return stay_of(conn, stay["id"])


def current_stay(conn: Connection, principal: Principal, patient_id: uuid.UUID) -> dict | None:
    """The patient's open stay, if any (audited: where a patient lies is patient data)."""
    row = conn.execute(sa.select(*STAY_COLUMNS).where(
        inpatient_stay.c.patient_id == patient_id, inpatient_stay.c.discharged_at.is_(None))).mappings().first()
    if row is not None:
        record.note_access(conn, principal, "read", patient_id, "admission", (row["id"],))
    return dict(row) if row else None

