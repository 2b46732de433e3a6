"""A patient's own acts on their clinic appointments, from the patient portal: cancel one, move it to another
free slot of its clinic, book a new one at a clinic that takes bookings from patients — under the portal's
rules (`policies/appointments.toml`: how late, how many, how far ahead).

Each act is the scheduling room's (`scheduling.change`, `reschedule`, `book`), written by the patient's own
account in the facility's transaction, so the entries, the freed or taken slot, the clinic's day list and the
access log's words ("booked an appointment", by the patient) are those of any booking. Every
function takes the patient's charts at the facility (`patient_ids`, from the portal's holdings): an appointment
of anyone else is not found, as one that does not exist.
"""

from __future__ import annotations

import datetime as dt
import functools
import tomllib
import uuid
import zoneinfo
from collections.abc import Collection
from pathlib import Path

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy.engine import Connection

from appliance.layers.operations import scheduling
from appliance.layers.operations.errors import Conflict, Invalid, NotFound, OperationsError
from appliance.layers.operations.models import appointment, clinic, slot
from appliance.substrate import record
from appliance.substrate.principal import Principal
from appliance.substrate.problems import validator_message


class AppointmentRules(BaseModel):
    """`policies/appointments.toml`: APT-001 the cut-off, APT-002 the limit, APT-003 the horizon."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    cancel_cutoff_hours: int = Field(ge=0, le=168)
    live_self_booked: int = Field(ge=1, le=50)
    weeks_ahead: int = Field(ge=1, le=scheduling.MAX_DAYS // 7)

    @property
    def cutoff(self) -> dt.timedelta:
        return dt.timedelta(hours=self.cancel_cutoff_hours)


class AppointmentRulesError(ValueError):
    """The rules file cannot be used; the message names the file and the problem."""


class NotOffered(OperationsError):
    """A clinic that does not take bookings from patients."""

    status = 403


@functools.cache
def load_rules(path: Path) -> AppointmentRules:
    try:
        return AppointmentRules.model_validate(tomllib.loads(path.read_text(encoding="utf-8")))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise AppointmentRulesError(f"{path}: {exc}") from exc
    except ValidationError as exc:
        raise AppointmentRulesError(f"{path}: " + "; ".join(
            f"{'.'.join(map(str, e['loc'])) or '(file)'}: {validator_message(e['msg'])}" for e in exc.errors()
        )) from exc


def _now(conn: Connection) -> dt.datetime:
    return conn.execute(sa.select(sa.func.now())).scalar_one()


def changeable(row: dict, rules: AppointmentRules, now: dt.datetime) -> bool:
    """Whether the patient may still cancel or move this appointment themselves (APT-001)."""
    return row["status"] == "booked" and row["starts_at"] - now >= rules.cutoff


def own(conn: Connection, principal: Principal, patient_ids: Collection[uuid.UUID], appointment_id: uuid.UUID,
        *, lock: bool = False) -> dict:
    """One of the patient's own appointments here, with its clinic's name and time zone (the read audited);
    anyone else's, like one that does not exist, is not found."""
    query = (sa.select(*scheduling.APPOINTMENT_COLUMNS, clinic.c.name.label("clinic"), clinic.c.timezone)
             .select_from(appointment.join(clinic, clinic.c.code == appointment.c.clinic_code))
             .where(appointment.c.id == appointment_id, appointment.c.patient_id.in_(list(patient_ids))))
    row = conn.execute(query.with_for_update(of=appointment) if lock else query).mappings().first()
    if row is None:
        raise NotFound("you have no such appointment at this facility", appointment_id=str(appointment_id))
    found = dict(row)
    found["local_start"] = found["starts_at"].astimezone(zoneinfo.ZoneInfo(found["timezone"]))
    if not lock:  # the acts' own entries record the write
        record.note_access(conn, principal, "read", found["patient_id"], "appointment", (appointment_id,))
    return found


def _still_changeable(conn: Connection, row: dict, rules: AppointmentRules, whom_to_phone: str) -> None:
    if row["status"] != "booked":
        raise Conflict(f"this appointment is {row['status'].replace('_', ' ')}, so it can no longer be changed",
                       field="status", current_status=row["status"])
    if not changeable(row, rules, _now(conn)):
        raise Conflict(f"it is less than {rules.cancel_cutoff_hours} hours before your appointment (or it has "
                       f"begun): to cancel or move it now, phone {whom_to_phone}", field="appointment_id",
                       rule="APT-001")


def cancel(conn: Connection, principal: Principal, patient_ids: Collection[uuid.UUID], appointment_id: uuid.UUID,
           reason: str | None, rules: AppointmentRules, whom_to_phone: str) -> dict:
    """Cancel it, up to the cut-off: the slot is free for others at once. The appointment as it now is, with
    its clinic's name."""
    row = own(conn, principal, patient_ids, appointment_id, lock=True)
    _still_changeable(conn, row, rules, whom_to_phone)
    return {**scheduling.change(conn, principal, appointment_id, "cancelled", reason),
            "clinic": row["clinic"]}


def clinic_zone(conn: Connection, clinic_code: str) -> zoneinfo.ZoneInfo:
    found = conn.execute(sa.select(clinic.c.timezone).where(clinic.c.code == clinic_code, clinic.c.active)).scalar()
    if found is None:
        raise NotFound("that clinic does not see patients here now", clinic_code=clinic_code)
    return zoneinfo.ZoneInfo(found)


def free_slots(conn: Connection, clinic_code: str, rules: AppointmentRules) -> list[tuple[dt.date, list[dict]]]:
    """The clinic's free slots the portal offers, by day (the facility's day), each with its `local_start`: as
    `scheduling.slots` cuts them from the sessions, from the cut-off on (`_offered_slot`) to `weeks_ahead`
    weeks."""
    tz = clinic_zone(conn, clinic_code)
    now = _now(conn)
    today = now.astimezone(tz).date()
    by_day: dict[dt.date, list[dict]] = {}
    for row in scheduling.slots(conn, clinic_code, today, rules.weeks_ahead * 7):
        if row["free"] and row["starts_at"] - now >= rules.cutoff:
            row["local_start"] = row["starts_at"].astimezone(tz)
            by_day.setdefault(row["local_start"].date(), []).append(row)
    return sorted(by_day.items())


def _offered_slot(conn: Connection, slot_id: uuid.UUID, rules: AppointmentRules, whom_to_phone: str) -> dict:
    """A slot the portal offers: one that exists, begins no sooner than the cut-off (APT-001), and begins within
    `weeks_ahead` weeks. A time inside the cut-off is the clinic's to give: booked or moved to on the portal, it
    could not then be cancelled or moved there, so the patient who could not come after all would have to
    phone, as the desk would have been phoned to book it."""
    found = conn.execute(sa.select(slot.c.id, slot.c.clinic_code, slot.c.starts_at)
                         .where(slot.c.id == slot_id)).mappings().first()
    if found is None:
        raise Invalid("there is no such slot: choose one of the times offered", field="slot_id")
    now = _now(conn)
    if found["starts_at"] <= now:
        raise Invalid("that time has passed: choose a later one", field="slot_id")
    if found["starts_at"] - now < rules.cutoff:
        raise Invalid(f"that time begins in less than {rules.cancel_cutoff_hours} hours, too late to cancel or move "
                      f"on the portal once booked: choose a later time, or phone {whom_to_phone} for this one",
                      field="slot_id", rule="APT-001")
    if found["starts_at"] > now + dt.timedelta(weeks=rules.weeks_ahead):
        raise Invalid(f"the portal offers times in the next {rules.weeks_ahead} weeks: choose one of those, or "
                      f"phone {whom_to_phone} for a later one", field="slot_id")
    return dict(found)


def move(conn: Connection, principal: Principal, patient_ids: Collection[uuid.UUID], appointment_id: uuid.UUID,
         slot_id: uuid.UUID, rules: AppointmentRules, whom_to_phone: str) -> dict:
    """Move it to another free slot of the same clinic, up to the cut-off; the slot it had frees at once. The
    appointment as it now is, with its clinic's name."""
    row = own(conn, principal, patient_ids, appointment_id, lock=True)
    _still_changeable(conn, row, rules, whom_to_phone)
    target = _offered_slot(conn, slot_id, rules, whom_to_phone)
    if target["clinic_code"] != row["clinic_code"]:
        raise Invalid(f"that time is at another clinic: an appointment moves to another time of {row['clinic']}; "
                      "to see another clinic, cancel this one and book there", field="slot_id")
    moved = scheduling.reschedule(conn, principal, appointment_id, slot_id)
    return {**moved, "clinic": row["clinic"]}


def live_self_booked(conn: Connection, principal: Principal) -> int:
    """How many appointments still to come this account booked here itself (APT-002 counts them)."""
    return conn.execute(
        sa.select(sa.func.count()).select_from(appointment.join(record.entry, record.entry.c.id == appointment.c.id))
        .where(record.entry.c.author_id == principal.account_id, appointment.c.status == "booked",
               appointment.c.starts_at > sa.func.now())).scalar_one()


def book(conn: Connection, principal: Principal, patient_id: uuid.UUID, slot_id: uuid.UUID, reason: str | None,
         rules: AppointmentRules, bookable: Collection[str], whom_to_phone: str) -> dict:
    """Book a free slot of a clinic that takes bookings from patients (`bookable`, from the tenant file), within
    the limit of appointments the patient booked themselves and has still to come."""
    # One self-booking of this account at a time here, so two at once cannot both pass the limit.
    conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:key))"),
                 {"key": f"healthos.self_booking.{principal.account_id}"})
    target = _offered_slot(conn, slot_id, rules, whom_to_phone)
    if target["clinic_code"] not in bookable:
        raise NotOffered(f"that clinic does not take bookings on the portal: phone {whom_to_phone} to book",
                         field="slot_id", clinic_code=target["clinic_code"])
    if live_self_booked(conn, principal) >= rules.live_self_booked:
        raise Conflict(f"you already have {rules.live_self_booked} appointments to come here that you booked "
                       f"yourself, the most the portal takes: cancel one of them, or phone {whom_to_phone}",
                       field="slot_id", rule="APT-002")
    return scheduling.book(conn, principal, patient_id, slot_id, reason)
