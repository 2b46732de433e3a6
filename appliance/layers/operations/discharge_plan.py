"""The expected discharge date of an admission: the day the ward expects the patient to go home, which the bed
manager plans tomorrow's beds by.

A clinician or a nurse sets it on the stay (`set_expected`) and changes it as the stay goes. Each is an
`expected_discharge` entry on the inpatient encounter, a change a new version superseding the last (the record's
chain, so `history` says who expected which day, and when); the stay's projection (`inpatient_stay`) keeps the
current date, in the same transaction, for the bed board, the ward list and the command centre to read. A day before
the admission (on the facility's calendar), or more than a year ahead (a mistyped year), is refused with nothing
written, as is a ward-scoped nurse's date for a patient of another ward.

`outlook` counts each inpatient ward's stays expected home today and tomorrow, those overdue (their day gone by, the
patient still in) and those with no date: the command centre's figures and each ward page's come from this one
query, so the wards add up to the facility. Counts only, no one named: nothing to audit.
"""

from __future__ import annotations

import datetime as dt
import uuid

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from appliance.layers.operations.errors import Invalid, NotFound, Refused
from appliance.layers.operations.models import INPATIENT_WARD_KINDS, expected_discharge, inpatient_stay, ward
from appliance.substrate import record
from appliance.substrate.principal import Principal
from appliance.substrate.tenancy import facility_day

PERMISSION = "operations.discharge_plan.write"
# A date further ahead than this is a mistyped year (2062 for 2026), not a plan: the bed manager would never see it.
FURTHEST_AHEAD = dt.timedelta(days=366)
COUNTS = ("today", "tomorrow", "overdue", "not_set")


def expectation(expected_on: dt.date | None, today: dt.date) -> str:
    """Where a stay's expected discharge date stands on the facility's `today`: one of COUNTS, or "later"."""
    if expected_on is None:
        return "not_set"
    if expected_on < today:
        return "overdue"
    if expected_on == today:
        return "today"
    return "tomorrow" if expected_on == today + dt.timedelta(days=1) else "later"


def _open_stay(conn: Connection, patient_id: uuid.UUID, *, lock: bool) -> dict:
    query = (sa.select(inpatient_stay.c.id, inpatient_stay.c.patient_id, inpatient_stay.c.encounter_id,
                       inpatient_stay.c.ward_code, inpatient_stay.c.bed_code, inpatient_stay.c.admitted_at,
                       inpatient_stay.c.expected_discharge_on, inpatient_stay.c.expected_discharge_entry_id,
                       facility_day(inpatient_stay.c.admitted_at).label("admitted_on"),
                       facility_day(sa.func.now()).label("today"))
             .where(inpatient_stay.c.patient_id == patient_id, inpatient_stay.c.discharged_at.is_(None)))
    # Two changes at once queue on the stay's row: the second then supersedes the first's version, not the one before.
    row = conn.execute(query.with_for_update(of=inpatient_stay) if lock else query).mappings().first()
    if row is None:
        raise NotFound("this patient is not admitted here", patient_id=str(patient_id))
    return dict(row)


def _note_of(conn: Connection, entry_id: uuid.UUID | None) -> str | None:
    if entry_id is None:
        return None
    return conn.execute(sa.select(expected_discharge.c.note).where(expected_discharge.c.entry_id == entry_id)).scalar()


def set_expected(conn: Connection, principal: Principal, patient_id: uuid.UUID, *, expected_on: dt.date,
                 note: str | None = None) -> dict:
    """Set or change the day the admitted patient is expected home, with what it waits on if said."""
    stay = _open_stay(conn, patient_id, lock=True)
    if principal.ward_scoped and principal.ward and principal.ward != stay["ward_code"]:
        raise Refused(f"you plan the discharges of {principal.ward}'s patients: this patient lies on "
                      f"{stay['ward_code']}, whose nurses or a clinician set it", field="patient_id")
    if expected_on < stay["admitted_on"]:
        raise Invalid(f"the expected discharge date, {expected_on:%d %B %Y}, is before the admission on "
                      f"{stay['admitted_on']:%d %B %Y}: give the day of the admission or a later one",
                      field="expected_on")
    if expected_on > stay["today"] + FURTHEST_AHEAD:
        raise Invalid(f"the expected discharge date, {expected_on:%d %B %Y}, is more than a year ahead: check the "
                      "year, or leave it unset until the team can say", field="expected_on")
    note = (note or "").strip() or None
    current = stay["expected_discharge_entry_id"]
    if expected_on == stay["expected_discharge_on"] and note == _note_of(conn, current):
        raise Invalid(f"{expected_on:%d %B %Y} is already the expected discharge date", field="expected_on")
    appended = record.append(conn, principal, "expected_discharge", patient_id=patient_id,
                             encounter_id=stay["encounter_id"], supersedes=current, detail={
                                 "encounter_id": stay["encounter_id"], "expected_on": expected_on, "note": note})
    conn.execute(sa.update(inpatient_stay).where(inpatient_stay.c.id == stay["id"]).values(
        expected_discharge_on=expected_on, expected_discharge_entry_id=appended.id))
    return {"entry_id": appended.id, "stay_id": stay["id"], "patient_id": patient_id,
            "encounter_id": stay["encounter_id"], "ward_code": stay["ward_code"], "bed_code": stay["bed_code"],
            "admitted_at": stay["admitted_at"], "expected_on": expected_on, "note": note,
            "expectation": expectation(expected_on, stay["today"])}


def history(conn: Connection, principal: Principal, patient_id: uuid.UUID) -> dict:
    """The admitted patient's expected discharge date now and every version of it in this stay, oldest first, with
    who set each and when (audited as a read of each version, or of the stay when none is set)."""
    stay = _open_stay(conn, patient_id, lock=False)
    versions = (record.history(conn, stay["expected_discharge_entry_id"])
                if stay["expected_discharge_entry_id"] is not None else [])
    record.note_access(conn, principal, "read", patient_id, "expected_discharge",
                       [v.id for v in versions] or [stay["id"]])
    return {"stay_id": stay["id"], "patient_id": patient_id, "encounter_id": stay["encounter_id"],
            "ward_code": stay["ward_code"], "bed_code": stay["bed_code"], "admitted_at": stay["admitted_at"],
            "expected_on": stay["expected_discharge_on"], "note": _note_of(conn, stay["expected_discharge_entry_id"]),
            "expectation": expectation(stay["expected_discharge_on"], stay["today"]),
            "versions": [{"entry_id": v.id, "expected_on": v.detail["expected_on"], "note": v.detail.get("note"),
                          "status": v.status, "author_id": v.author_id, "recorded_at": v.recorded_at}
                         for v in versions]}


def outlook(conn: Connection, ward_code: str | None = None) -> dict:
    """Per active inpatient ward (or the one named), its admitted patients and how many of them are expected home
    today, tomorrow, overdue, or have no date, on the facility's day; and the facility's totals of each."""
    today = conn.execute(sa.select(facility_day(sa.func.now()))).scalar_one()
    open_stay = sa.and_(inpatient_stay.c.ward_code == ward.c.code, inpatient_stay.c.discharged_at.is_(None))
    on = inpatient_stay.c.expected_discharge_on
    query = (sa.select(ward.c.code, ward.c.name, sa.func.count(inpatient_stay.c.id).label("admitted"),
                       sa.func.count(inpatient_stay.c.id).filter(on == today).label("today"),
                       sa.func.count(inpatient_stay.c.id).filter(on == today + dt.timedelta(days=1)).label("tomorrow"),
                       sa.func.count(inpatient_stay.c.id).filter(on < today).label("overdue"),
                       sa.func.count(inpatient_stay.c.id).filter(on.is_(None)).label("not_set"))
             .select_from(ward.outerjoin(inpatient_stay, open_stay))
             .where(ward.c.active, ward.c.kind.in_(INPATIENT_WARD_KINDS))
             .group_by(ward.c.code).order_by(ward.c.code))
    if ward_code is not None:
        query = query.where(ward.c.code == ward_code)
    wards = [dict(row) for row in conn.execute(query).mappings()]
    totals = {name: sum(w[name] for w in wards) for name in ("admitted", *COUNTS)}
    return {"day": today, "wards": wards, **totals}
