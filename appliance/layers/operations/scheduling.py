"""Outpatient scheduling: clinics and their weekly sessions (from the tenant file), cut into slots of
one patient each; book, reschedule, cancel, check in, mark a no-show.

Each act is an entry: the booking is an `appointment` entry (whose id is the appointment's), every
later change an `appointment_status` entry; `appointment` is their projection. A slot holds one live
appointment: the slot row is locked while booking, and the partial unique index
`appointment_live_slot_key` refuses a second live appointment even to a transaction that raced past
the lock — so of parallel bookings of one slot exactly one succeeds; the others get 409.

Checking in starts the patient's outpatient visit: an `encounter` entry (arrived) of the clinical record,
named on the appointment, unless an outpatient visit of theirs is already open, which the check-in joins.

Slots are generated from the sessions on demand (`ensure_slots`), for the days asked about, with ids
derived from clinic and start time so regenerating them is idempotent.
"""

from __future__ import annotations

import datetime as dt
import uuid
import zoneinfo

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection

from appliance.layers.operations.errors import Conflict, Invalid, NotFound
from appliance.layers.operations.models import appointment, clinic, slot
from appliance.layers.operations.service import encounter, moment, patient, require_patient
from appliance.substrate import deaths, record
from appliance.substrate.principal import Principal

SLOT_NAMESPACE = uuid.UUID("0b6f1a52-7d0e-4c35-9a55-52d1f0b0e7a1")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MAX_DAYS = 62  # how far one request may ask slots to be cut
APPOINTMENT_COLUMNS = (appointment.c.id, appointment.c.patient_id, appointment.c.slot_id, appointment.c.clinic_code,
                       appointment.c.starts_at, appointment.c.status, appointment.c.reason, appointment.c.encounter_id)
# A check-in joins the patient's open outpatient visit only if it began this recently: one left open
# since an earlier day is that day's, not today's.
VISIT_JOINED_WITHIN = dt.timedelta(hours=12)
# Which status each act leads from and to.
STEPS = {"cancelled": ("cancelled", {"booked"}), "checked_in": ("checked_in", {"booked"}),
         "no_show": ("no_show", {"booked"})}
# How each act is named on the audit seam, and so in the patient's access log (patient/portal.py says them in
# words), whoever did it: the entry's kind says only "appointment" or "appointment_status", which read as
# "recorded an appointment" or "recorded an appointment's progress" whatever was done.
AUDITED_AS = {"booked": "appointment_booking", "rescheduled": "appointment_move",
              "cancelled": "appointment_cancellation", "checked_in": "appointment_check_in",
              "no_show": "appointment_no_show"}


def clinics(conn: Connection) -> list[dict]:
    return [dict(r) for r in conn.execute(
        sa.select(clinic.c.code, clinic.c.name, clinic.c.slot_minutes, clinic.c.sessions)
        .where(clinic.c.active).order_by(clinic.c.code)).mappings()]


def _clinic(conn: Connection, code: str) -> dict:
    row = conn.execute(sa.select(clinic).where(clinic.c.code == code, clinic.c.active)).mappings().first()
    if row is None:
        raise NotFound(f"no clinic {code} at this facility", clinic_code=code)
    return dict(row)


def ensure_slots(conn: Connection, clinic_code: str, first_day: dt.date, days: int = 1) -> None:
    """Cut the clinic's sessions into slots for `days` days from `first_day` (facility-local dates)."""
    found = _clinic(conn, clinic_code)
    tz = zoneinfo.ZoneInfo(found["timezone"])
    step = dt.timedelta(minutes=found["slot_minutes"])
    rows = []
    for offset in range(max(1, min(days, MAX_DAYS))):
        day = first_day + dt.timedelta(days=offset)
        for session in found["sessions"]:
            if WEEKDAYS[day.weekday()] not in session["weekdays"]:
                continue
            start = dt.datetime.combine(day, dt.time.fromisoformat(session["start"]), tzinfo=tz)
            end = dt.datetime.combine(day, dt.time.fromisoformat(session["end"]), tzinfo=tz)
            while start + step <= end:
                rows.append({"id": uuid.uuid5(SLOT_NAMESPACE, f"{clinic_code}:{start.isoformat()}"),
                             "clinic_code": clinic_code, "starts_at": start, "ends_at": start + step})
                start += step
    if rows:
        conn.execute(postgresql.insert(slot).values(rows).on_conflict_do_nothing())


def slots(conn: Connection, clinic_code: str, day: dt.date, days: int = 1) -> list[dict]:
    """The clinic's slots on a day (or `days` days from it, at most MAX_DAYS), each free or taken (without
    saying by whom: no patient data)."""
    days = max(1, min(days, MAX_DAYS))
    ensure_slots(conn, clinic_code, day, days)
    tz = zoneinfo.ZoneInfo(_clinic(conn, clinic_code)["timezone"])
    start = dt.datetime.combine(day, dt.time(0), tzinfo=tz)
    taken = sa.select(appointment.c.id).where(appointment.c.slot_id == slot.c.id,
                                              appointment.c.status != "cancelled").exists()
    return [dict(r) for r in conn.execute(
        sa.select(slot.c.id, slot.c.clinic_code, slot.c.starts_at, slot.c.ends_at, sa.not_(taken).label("free"))
        .where(slot.c.clinic_code == clinic_code, slot.c.starts_at >= start,
               slot.c.starts_at < start + dt.timedelta(days=days))
        .order_by(slot.c.starts_at)).mappings()]


def _claim_slot(conn: Connection, slot_id: uuid.UUID, backdated: bool = False) -> dict:
    row = conn.execute(sa.select(slot.c.id, slot.c.clinic_code, slot.c.starts_at)
                       .where(slot.c.id == slot_id).with_for_update()).mappings().first()
    if row is None:
        raise Invalid(f"there is no slot {slot_id}", field="slot_id")
    live = conn.execute(sa.select(appointment.c.id).where(appointment.c.slot_id == slot_id,
                                                          appointment.c.status != "cancelled")).first()
    if live is not None:
        raise Conflict("that slot is already booked; choose another", field="slot_id")
    now = conn.execute(sa.select(sa.func.now())).scalar_one()
    if not backdated and row["starts_at"] < now - dt.timedelta(hours=1):
        raise Invalid("that slot is in the past", field="slot_id")
    return dict(row)


def _slot_taken(exc: sa.exc.IntegrityError) -> Conflict:
    if "appointment_live_slot_key" in str(exc.orig):
        return Conflict("that slot was booked by someone else a moment ago; choose another", field="slot_id")
    raise exc


def book(conn: Connection, principal: Principal, patient_id: uuid.UUID, slot_id: uuid.UUID,
         reason: str | None = None, *, at: dt.datetime | None = None, backdated: bool = False,
         clinic_code: str | None = None) -> dict:
    """Book a free slot; of clinic `clinic_code` when one is named (a referral's), else 422. `backdated`
    (imports, the demo generator; no route offers it) records a booking of a slot already past, as a booking
    made at `at`."""
    require_patient(conn, patient_id)
    deaths.refuse_if_deceased(conn, patient_id, "an appointment")  # before the slot's row is written
    when = moment(conn, at)
    claimed = _claim_slot(conn, slot_id, backdated)
    if clinic_code is not None and claimed["clinic_code"] != clinic_code:
        raise Invalid(f"that slot is in clinic {claimed['clinic_code']}; choose one of clinic {clinic_code}",
                      field="slot_id")
    appointment_id = uuid.uuid4()
    try:
        with conn.begin_nested():
            conn.execute(appointment.insert().values(
                id=appointment_id, patient_id=patient_id, slot_id=slot_id, clinic_code=claimed["clinic_code"],
                starts_at=claimed["starts_at"], status="booked", reason=reason))
    except sa.exc.IntegrityError as exc:
        raise _slot_taken(exc) from None
    record.append(conn, principal, "appointment", patient_id=patient_id, entry_id=appointment_id, occurred_at=when,
                  audited_as=AUDITED_AS["booked"], detail={"appointment_id": appointment_id, "slot_id": slot_id,
                                                          "action": "booked", "from_slot_id": None, "reason": reason})
    return appointment_of(conn, appointment_id)


def upcoming_of_patient(conn: Connection, principal: Principal, patient_id: uuid.UUID) -> list[dict]:
    """The patient's appointments still to come (booked, or checked in today), soonest first, with the
    clinic's name: for the patient's own view."""
    rows = [dict(r) for r in conn.execute(
        sa.select(appointment.c.id, appointment.c.starts_at, appointment.c.status, clinic.c.name.label("clinic"),
                  appointment.c.clinic_code, clinic.c.timezone)
        .select_from(appointment.join(clinic, clinic.c.code == appointment.c.clinic_code))
        .where(appointment.c.patient_id == patient_id, appointment.c.status.in_(("booked", "checked_in")),
               appointment.c.starts_at >= sa.func.now() - sa.text("interval '12 hours'"))
        .order_by(appointment.c.starts_at)).mappings()]
    for row in rows:
        row["local_start"] = row["starts_at"].astimezone(zoneinfo.ZoneInfo(row.pop("timezone")))
    record.note_access(conn, principal, "read", patient_id, "appointment", [r["id"] for r in rows])
    return rows


def appointment_of(conn: Connection, appointment_id: uuid.UUID) -> dict:
    row = conn.execute(sa.select(*APPOINTMENT_COLUMNS).where(appointment.c.id == appointment_id)).mappings().first()
    if row is None:
        raise NotFound(f"no appointment {appointment_id} at this facility", appointment_id=str(appointment_id))
    return dict(row)


def appointment_with_patient(conn: Connection, principal: Principal, appointment_id: uuid.UUID) -> dict:
    """One appointment with who it is for and the clinic's name, as the front desk sees it (audited)."""
    row = conn.execute(
        sa.select(*APPOINTMENT_COLUMNS, patient.c.mrn, patient.c.family_name, patient.c.given_names,
                  clinic.c.name.label("clinic_name"), clinic.c.timezone)
        .select_from(appointment.join(patient, patient.c.id == appointment.c.patient_id)
                     .join(clinic, clinic.c.code == appointment.c.clinic_code))
        .where(appointment.c.id == appointment_id)).mappings().first()
    if row is None:
        raise NotFound(f"no appointment {appointment_id} at this facility", appointment_id=str(appointment_id))
    record.note_access(conn, principal, "read", row["patient_id"], "appointment", (row["id"],))
    return dict(row)


def _locked(conn: Connection, appointment_id: uuid.UUID) -> dict:
    row = conn.execute(sa.select(*APPOINTMENT_COLUMNS).where(appointment.c.id == appointment_id)
                       .with_for_update()).mappings().first()
    if row is None:
        raise NotFound(f"no appointment {appointment_id} at this facility", appointment_id=str(appointment_id))
    return dict(row)


def reschedule(conn: Connection, principal: Principal, appointment_id: uuid.UUID, slot_id: uuid.UUID,
               reason: str | None = None) -> dict:
    current = _locked(conn, appointment_id)
    if current["status"] != "booked":
        raise Conflict(f"an appointment that is {current['status'].replace('_', ' ')} cannot be rescheduled",
                       field="status")
    if slot_id == current["slot_id"]:
        raise Invalid("that is the slot the appointment already has", field="slot_id")
    claimed = _claim_slot(conn, slot_id)
    try:
        with conn.begin_nested():
            conn.execute(sa.update(appointment).where(appointment.c.id == appointment_id).values(
                slot_id=slot_id, clinic_code=claimed["clinic_code"], starts_at=claimed["starts_at"],
                updated_at=sa.func.now()))
    except sa.exc.IntegrityError as exc:
        raise _slot_taken(exc) from None
    record.append(conn, principal, "appointment_status", patient_id=current["patient_id"],
                  audited_as=AUDITED_AS["rescheduled"],
                  detail={"appointment_id": appointment_id, "slot_id": slot_id, "action": "rescheduled",
                          "from_slot_id": current["slot_id"], "reason": reason})
    return appointment_of(conn, appointment_id)


def change(conn: Connection, principal: Principal, appointment_id: uuid.UUID, action: str,
           reason: str | None = None, at: dt.datetime | None = None) -> dict:
    """Cancel, check in or mark a no-show. A no-show can only be marked once the slot has begun."""
    if action not in STEPS:
        raise Invalid("the action is cancelled, checked_in or no_show", field="action")
    to_status, allowed_from = STEPS[action]
    current = _locked(conn, appointment_id)
    if current["status"] not in allowed_from:
        raise Conflict(f"an appointment that is {current['status'].replace('_', ' ')} cannot become "
                       f"{to_status.replace('_', ' ')}", field="status", current_status=current["status"])
    when = moment(conn, at)
    if action == "no_show" and when < current["starts_at"]:
        raise Conflict("a no-show can be marked only after the appointment's time", field="action")
    visit = _open_visit(conn, principal, current, when) if action == "checked_in" else None
    record.append(conn, principal, "appointment_status", patient_id=current["patient_id"], occurred_at=when,
                  encounter_id=visit, audited_as=AUDITED_AS[action], detail={
                      "appointment_id": appointment_id, "slot_id": current["slot_id"], "action": action,
                      "from_slot_id": None, "reason": reason})
    conn.execute(sa.update(appointment).where(appointment.c.id == appointment_id)
                 .values(status=to_status, updated_at=sa.func.now(),
                         encounter_id=visit if visit is not None else appointment.c.encounter_id))
    return appointment_of(conn, appointment_id)


def _open_visit(conn: Connection, principal: Principal, booked: dict, when: dt.datetime) -> uuid.UUID:
    """The outpatient visit a check-in starts: the patient's open outpatient encounter if the front desk
    opened one already today (one visit, not two), else a new one, arrived now — an `encounter` entry of
    the clinical record, as an ED arrival is. Its end bills the consultation (financial layer)."""
    already = conn.execute(
        sa.select(encounter.c.id).where(encounter.c.patient_id == booked["patient_id"],
                                        encounter.c.encounter_class == "outpatient",
                                        encounter.c.status.in_(("arrived", "in_progress")),
                                        encounter.c.started_at > when - VISIT_JOINED_WITHIN)
        .order_by(encounter.c.started_at.desc().nulls_last()).limit(1)).scalar()
    if already is not None:
        return already
    clinic_name = conn.execute(sa.select(clinic.c.name).where(clinic.c.code == booked["clinic_code"])).scalar()
    visit = uuid.uuid4()
    record.append(conn, principal, "encounter", patient_id=booked["patient_id"], encounter_id=visit, occurred_at=when,
                  detail={"id": visit, "patient_id": booked["patient_id"], "encounter_class": "outpatient",
                          "status": "arrived", "reason": booked["reason"] or f"{clinic_name} appointment",
                          "ward_code": None, "planned_for": booked["starts_at"], "started_at": when})
    return visit


def day_list(conn: Connection, principal: Principal, clinic_code: str, day: dt.date) -> list[dict]:
    """The clinic's appointments on a day with who is coming and, once checked in, where their visit
    stands (arrived, in progress, finished) (audited)."""
    tz = zoneinfo.ZoneInfo(_clinic(conn, clinic_code)["timezone"])
    start = dt.datetime.combine(day, dt.time(0), tzinfo=tz)
    rows = [dict(r) for r in conn.execute(
        sa.select(*APPOINTMENT_COLUMNS, patient.c.mrn, patient.c.family_name, patient.c.given_names,
                  encounter.c.status.label("visit_status"))
        .select_from(appointment.join(patient, patient.c.id == appointment.c.patient_id)
                     .outerjoin(encounter, encounter.c.id == appointment.c.encounter_id))
        .where(appointment.c.clinic_code == clinic_code, appointment.c.starts_at >= start,
               appointment.c.starts_at < start + dt.timedelta(days=1))
        .order_by(appointment.c.starts_at)).mappings()]
    for row in rows:
        record.note_access(conn, principal, "read", row["patient_id"], "appointment", (row["id"],))
    return rows


def expected_on(conn: Connection, principal: Principal, day: dt.date, tz: zoneinfo.ZoneInfo) -> list[dict]:
    """Appointments at any of the facility's clinics on a (facility-local) day that are still booked: the
    patients expected who have not yet been checked in (a check-in opens their visit, which the clinical
    list shows from then on). By time, each with its clinic's name (audited, as `day_list`)."""
    start = dt.datetime.combine(day, dt.time(0), tzinfo=tz)
    rows = [dict(r) for r in conn.execute(
        sa.select(*APPOINTMENT_COLUMNS, clinic.c.name.label("clinic_name"), patient.c.mrn, patient.c.family_name,
                  patient.c.given_names, patient.c.birth_date, patient.c.sex)
        .select_from(appointment.join(patient, patient.c.id == appointment.c.patient_id)
                     .join(clinic, clinic.c.code == appointment.c.clinic_code))
        .where(appointment.c.status == "booked", appointment.c.starts_at >= start,
               appointment.c.starts_at < start + dt.timedelta(days=1))
        .order_by(appointment.c.starts_at, patient.c.family_name, appointment.c.id)).mappings()]
    record.note_list_read(conn, principal, "appointment", rows)
    return rows
