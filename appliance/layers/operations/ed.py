"""The emergency department: arrival, triage (acuity 1-5), seen by a clinician, decision, departure
(including left without being seen), each a timestamped entry of the record.

An ED visit is an emergency encounter of the clinical record: arrival appends the `encounter` entry
(class emergency, arrived, in the facility's emergency ward if it has one) and the `ed_arrival`
entry on it. The later steps are `ed_*` entries on that encounter; `ed_visit` is their projection
(one row per visit with every timestamp), which the ED board and the command center read. The clinical
layer reacts to `ed_seen` (the encounter is in progress) and `ed_departure` (finished).

Times are checked against each other: nothing before the arrival, no departure twice, "left without
being seen" only before being seen. Admission from the ED goes through adt.admit, which departs the
visit as "admitted" in the same transaction.
"""

from __future__ import annotations

import datetime as dt
import uuid

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from appliance.layers.operations.errors import Conflict, Invalid, NotFound
from appliance.layers.operations.models import ED_DECISIONS, ED_DISPOSITIONS, ed_event, ed_visit, inpatient_stay, ward
from appliance.layers.operations.service import moment, patient, require_patient
from appliance.substrate import record
from appliance.substrate.principal import Principal

ARRIVAL_MODES = ("walk_in", "ambulance", "referral", "police", "other")
VISIT_COLUMNS = tuple(c for c in ed_visit.c if c.name not in {"arrival_entry_id", "departure_entry_id"})


def arrive(conn: Connection, principal: Principal, patient_id: uuid.UUID, *, arrival_mode: str = "walk_in",
           complaint: str | None = None, at: dt.datetime | None = None) -> dict:
    """A patient arrives at the emergency department: a new emergency encounter and its arrival entry."""
    if arrival_mode not in ARRIVAL_MODES:
        raise Invalid(f"arrival mode is one of {', '.join(ARRIVAL_MODES)}", field="arrival_mode")
    require_patient(conn, patient_id)
    when = moment(conn, at)
    already = conn.execute(sa.select(ed_visit.c.id).where(
        ed_visit.c.patient_id == patient_id, ed_visit.c.departed_at.is_(None))).scalar()
    if already is not None:
        raise Conflict("this patient is already in the emergency department", field="patient_id",
                       encounter_id=str(already))
    # A patient lying on a ward who also 'arrived' in the ED would be on both boards, and the ED could not admit
    # them (they are admitted): most often the MRN of someone else was typed.
    in_bed = conn.execute(sa.select(inpatient_stay.c.bed_code).where(
        inpatient_stay.c.patient_id == patient_id, inpatient_stay.c.discharged_at.is_(None))).scalar()
    if in_bed is not None:
        raise Conflict(f"this patient is admitted, in bed {in_bed}, not arriving in the emergency department: check "
                       "the MRN, or discharge them from the bed board first", field="patient_id", bed_code=in_bed)
    emergency_ward = conn.execute(sa.select(ward.c.code).where(ward.c.kind == "emergency", ward.c.active)
                                  .order_by(ward.c.code).limit(1)).scalar()
    encounter_id = uuid.uuid4()
    record.append(conn, principal, "encounter", patient_id=patient_id, encounter_id=encounter_id, occurred_at=when,
                  detail={"id": encounter_id, "patient_id": patient_id, "encounter_class": "emergency",
                          "status": "arrived", "reason": complaint, "ward_code": emergency_ward,
                          "planned_for": None, "started_at": when})
    arrival = record.append(conn, principal, "ed_arrival", patient_id=patient_id, encounter_id=encounter_id,
                            occurred_at=when, detail={"encounter_id": encounter_id, "arrival_mode": arrival_mode,
                                                      "complaint": complaint})
    try:
        with conn.begin_nested():
            conn.execute(ed_visit.insert().values(id=encounter_id, patient_id=patient_id,
                                                  arrival_entry_id=arrival.id, arrived_at=when))
    except sa.exc.IntegrityError:
        raise Conflict("this patient's arrival was recorded by someone else a moment ago",
                       field="patient_id") from None
    return visit_of(conn, encounter_id)


def visit_of(conn: Connection, encounter_id: uuid.UUID) -> dict:
    row = conn.execute(sa.select(*VISIT_COLUMNS).where(ed_visit.c.id == encounter_id)).mappings().first()
    if row is None:
        raise NotFound(f"no emergency visit {encounter_id} at this facility", encounter_id=str(encounter_id))
    return dict(row)


def _locked(conn: Connection, encounter_id: uuid.UUID, patient_id: uuid.UUID | None = None) -> dict:
    query = sa.select(*VISIT_COLUMNS).where(ed_visit.c.id == encounter_id).with_for_update()
    row = conn.execute(query).mappings().first()
    if row is None or (patient_id is not None and row["patient_id"] != patient_id):
        raise NotFound(f"no emergency visit {encounter_id} at this facility", encounter_id=str(encounter_id))
    if row["departed_at"] is not None:
        raise Conflict("this patient has already left the emergency department", field="encounter_id",
                       departed_at=row["departed_at"].isoformat())
    return dict(row)


def open_visit(conn: Connection, patient_id: uuid.UUID, encounter_id: uuid.UUID, when: dt.datetime) -> dict:
    """The patient's ED visit, still open, locked (for an admission from the ED)."""
    visit = _locked(conn, encounter_id, patient_id)
    if when < visit["arrived_at"]:
        raise Invalid("the admission cannot be before the ED arrival", field="at")
    return visit


def _stamp(conn: Connection, principal: Principal, visit: dict, kind: str, when: dt.datetime, detail: dict,
           values: dict) -> dict:
    if when < visit["arrived_at"]:
        raise Invalid("that time is before the patient arrived", field="at")
    record.append(conn, principal, kind, patient_id=visit["patient_id"], encounter_id=visit["id"], occurred_at=when,
                  detail={"encounter_id": visit["id"], **detail})
    conn.execute(sa.update(ed_visit).where(ed_visit.c.id == visit["id"]).values(**values))
    return visit_of(conn, visit["id"])


def triage(conn: Connection, principal: Principal, encounter_id: uuid.UUID, *, acuity: int,
           at: dt.datetime | None = None) -> dict:
    """Triage with an acuity from 1 (resuscitation) to 5 (non-urgent); a re-triage replaces the acuity
    shown and keeps both entries."""
    if isinstance(acuity, bool) or not isinstance(acuity, int) or not 1 <= acuity <= 5:
        raise Invalid("acuity is a whole number from 1 (resuscitation) to 5 (non-urgent)", field="acuity")
    visit = _locked(conn, encounter_id)
    when = moment(conn, at)
    values = {"acuity": acuity}
    if visit["triaged_at"] is None:
        values["triaged_at"] = when
    return _stamp(conn, principal, visit, "ed_triage", when, {"acuity": acuity}, values)


def seen(conn: Connection, principal: Principal, encounter_id: uuid.UUID, *, at: dt.datetime | None = None) -> dict:
    visit = _locked(conn, encounter_id)
    if visit["seen_at"] is not None:
        raise Conflict("this patient has already been seen by a clinician", field="encounter_id")
    when = moment(conn, at)
    return _stamp(conn, principal, visit, "ed_seen", when, {}, {"seen_at": when})


def decide(conn: Connection, principal: Principal, encounter_id: uuid.UUID, *, decision: str,
           at: dt.datetime | None = None) -> dict:
    """The decision to admit, discharge or transfer (a changed decision is a new entry; the first time
    a decision was made is kept, which is when boarding starts)."""
    if decision not in ED_DECISIONS:
        raise Invalid(f"decision is one of {', '.join(ED_DECISIONS)}", field="decision")
    visit = _locked(conn, encounter_id)
    when = moment(conn, at)
    values = {"decision": decision}
    if visit["decided_at"] is None:
        values["decided_at"] = when
    return _stamp(conn, principal, visit, "ed_decision", when, {"decision": decision}, values)


def depart(conn: Connection, principal: Principal, patient_id: uuid.UUID | None, encounter_id: uuid.UUID, *,
           disposition: str, at: dt.datetime | None = None, admitted_encounter_id: uuid.UUID | None = None,
           via_admission: bool = False) -> dict:
    """The patient leaves the ED: discharged, transferred, left without being seen, left against
    advice, died — or admitted, which only an admission records (adt.admit, in its transaction)."""
    if disposition not in ED_DISPOSITIONS:
        raise Invalid(f"disposition is one of {', '.join(ED_DISPOSITIONS)}", field="disposition")
    if disposition == "admitted" and not via_admission:
        raise Invalid("admit the patient to a bed to record an admitted departure", field="disposition")
    visit = _locked(conn, encounter_id, patient_id)
    when = moment(conn, at)
    if disposition == "left_without_being_seen" and visit["seen_at"] is not None:
        raise Conflict("the patient was seen by a clinician: record 'left against advice' instead",
                       field="disposition")
    if when < visit["arrived_at"]:
        raise Invalid("that time is before the patient arrived", field="at")
    departure = record.append(conn, principal, "ed_departure", patient_id=visit["patient_id"], encounter_id=visit["id"],
                              occurred_at=when, detail={"encounter_id": visit["id"], "disposition": disposition})
    conn.execute(sa.update(ed_visit).where(ed_visit.c.id == visit["id"]).values(
        departed_at=when, disposition=disposition, departure_entry_id=departure.id,
        admitted_encounter_id=admitted_encounter_id))
    return visit_of(conn, visit["id"])


def census(conn: Connection) -> dict:
    """How many are in the emergency department now and how many of them the ED decided to admit (waiting for a
    ward's bed): counts for the ED's own page of the bed board, whose bays are not inpatient beds. No one is named."""
    row = conn.execute(sa.select(sa.func.count().label("in_department"),
                                 sa.func.count().filter(ed_visit.c.decision == "admit").label("awaiting_bed"))
                       .where(ed_visit.c.departed_at.is_(None))).one()
    return dict(row._mapping)


def board(conn: Connection, principal: Principal, *, awaiting_bed: bool = False) -> list[dict]:
    """Who is in the emergency department now, untriaged and most urgent first, then longest there, with every
    timestamp so far and how they came and why (the arrival's mode and presenting complaint, which triage reads).
    With `awaiting_bed`, only those the ED decided to admit, longest since that decision first: the bed manager's
    admissions waiting for a bed."""
    query = (
        sa.select(*VISIT_COLUMNS, ed_event.c.arrival_mode, ed_event.c.complaint, patient.c.mrn, patient.c.family_name,
                  patient.c.given_names, patient.c.birth_date, patient.c.sex)
        .select_from(ed_visit.join(patient, patient.c.id == ed_visit.c.patient_id)
                     .join(ed_event, ed_event.c.entry_id == ed_visit.c.arrival_entry_id))
        .where(ed_visit.c.departed_at.is_(None)))
    if awaiting_bed:
        query = query.where(ed_visit.c.decision == "admit").order_by(ed_visit.c.decided_at, ed_visit.c.arrived_at)
    else:
        query = query.order_by(ed_visit.c.acuity.asc().nulls_first(), ed_visit.c.arrived_at)
    rows = [dict(r) for r in conn.execute(query).mappings()]
    for row in rows:
        record.note_access(conn, principal, "read", row["patient_id"], "ed_arrival", (row["id"],))
    return rows
