"""Immunizations: the clinical layer's record of vaccine doses (the `immunization` entry, tenant revision
t0026) — recording a dose given here or read from the child's card, a dose due and not given and why, their
correction and withdrawal — and where each child stands on the national schedule (`immunization_schedule`,
`policies/immunization.toml`): one patient's doses and schedule, and the facility's children due or overdue,
the list a vaccinator traces defaulters from.

A dose's day is the entry's `occurred_at` in the facility's time zone: a dose given today is stamped now, one
given on an earlier day (a card read at a visit, a dose recorded the day after an outreach session) at noon of
that day there, so the day reads back the same wherever the server runs. A correction may correct the day, so
every read takes the current version's own time, not the record's first one.

Writes go through `record.append` (audited as a write of the patient's record); every read of a patient's
doses is noted on the audit seam, and the list of children due notes each child it names.
"""

from __future__ import annotations

import datetime as dt
import uuid
import zoneinfo
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from appliance.layers.clinical import service
from appliance.layers.clinical.errors import Invalid, NotFound
from appliance.layers.clinical.immunization_schedule import (
    DoseStatus,
    RecordedDose,
    Schedule,
    Vaccine,
    counted,
    evaluate,
    evaluate_vaccine,
    outstanding,
)
from appliance.layers.clinical.models import immunization, patient
from appliance.layers.clinical.schemas import ImmunizationIn
from appliance.substrate import deaths, record
from appliance.substrate.age import age_label
from appliance.substrate.principal import Principal
from appliance.substrate.record import current_clause, entry, note_access, note_list_read

KIND = "immunization"
DUE_LIST = "immunization_due"  # how the list of children due reads on each child's access log
NOT_DONE_WORDS = {"refused": "the caregiver refused", "contraindicated": "contraindicated",
                  "out_of_stock": "vaccine out of stock", "child_unwell": "the child was unwell",
                  "already_immune": "already immune (had the disease)", "other": "another reason (see the note)"}
# A facility's children under the tracing age stay well under this; past it the list says it is cut short.
DUE_LIMIT = 500
_NOON = dt.time(12, 0)

_COLUMNS = (entry.c.id, entry.c.root_id, entry.c.patient_id, entry.c.status.label("entry_status"),
            entry.c.encounter_id, entry.c.author_id, service.RECORD_AUTHOR_ID.label("record_author_id"),
            entry.c.occurred_at, entry.c.recorded_at,
            *(c for c in immunization.c if c.name != "entry_id"))


def current_doses(conn: Connection, patient_ids: Sequence[uuid.UUID]) -> list[dict]:
    """The current doses (given or not done) of these patients, oldest first; entries in error left out. Not
    audited here: the caller notes the read of what it shows (`note_access`), as every reader in this module does."""
    if not patient_ids:
        return []
    query = (sa.select(*_COLUMNS).select_from(entry.join(immunization, immunization.c.entry_id == entry.c.id))
             .where(entry.c.patient_id.in_(list(patient_ids)), entry.c.kind == KIND, current_clause())
             .order_by(entry.c.occurred_at, entry.c.recorded_at))
    return [dict(r) for r in conn.execute(query).mappings()]


def given_on(occurred_at: dt.datetime, tz: zoneinfo.ZoneInfo) -> dt.date:
    return occurred_at.astimezone(tz).date()


def _recorded(rows: Sequence[dict], tz: zoneinfo.ZoneInfo) -> list[RecordedDose]:
    return [RecordedDose(r["id"], r["vaccine"], r["dose_number"], given_on(r["occurred_at"], tz), r["status"],
                         r["not_done_reason"], r["expiry_date"]) for r in rows]


def next_dose_number(vaccine: Vaccine, birth: dt.date, rows: Sequence[dict], today: dt.date,
                     tz: zoneinfo.ZoneInfo) -> int | None:
    """The dose of `vaccine`'s series the schedule expects next of a child born on `birth` whose doses in force are
    `rows` (as `current_doses` reads them): the first not yet given and counted; None once the series is complete.
    For a feed that sends a dose without its number (appliance/interop/hl7v2/immunization.py)."""
    for status in evaluate_vaccine(vaccine, birth, _recorded(rows, tz), today):
        if status.state != "given":
            return status.dose_number
    return None


def doses_that_count(conn: Connection, births: Mapping[uuid.UUID, dt.date], *, schedule: Schedule,
                     tz: zoneinfo.ZoneInfo) -> set[uuid.UUID]:
    """The entries among these children's current doses that count on their card (`births`: each child's birth
    date): the schedule's one judgement, so a dose given too early, from an expired lot or as a repeat counts
    nowhere the card does not count it. Whether a dose counts depends on the child's birth and doses, not on the day
    asked (only due and overdue do), so each child is evaluated as of its birth. Not audited here, as
    `current_doses`."""
    by_patient: dict[uuid.UUID, list[dict]] = {}
    for row in current_doses(conn, list(births)):
        by_patient.setdefault(row["patient_id"], []).append(row)
    return {attempt.entry_id for patient_id, rows in by_patient.items()
            for status in evaluate(schedule, births[patient_id], _recorded(rows, tz), births[patient_id])
            for attempt in status.attempts if attempt.counts}


def _shaped(row: dict, schedule: Schedule, tz: zoneinfo.ZoneInfo) -> dict:
    vaccine = schedule.by_code.get(row["vaccine"])
    return {**row, "given_on": given_on(row["occurred_at"], tz), "vaccine_name": vaccine.name if vaccine else None}


def status_dict(status: DoseStatus) -> dict:
    """A dose's place on the schedule as the API answers it (`DoseStatusOut`)."""
    declined = status.not_done
    return {"vaccine": status.vaccine, "vaccine_name": status.vaccine_name, "dose_number": status.dose_number,
            "doses": status.doses, "label": status.label, "state": status.state, "given_on": status.given_on,
            "due_from": status.due_from, "recommended_on": status.recommended_on,
            "overdue_since": status.overdue_since, "no_later_than": status.no_later_than,
            "waiting_for": status.waiting_for,
            "attempts": [{"entry_id": a.entry_id, "given_on": a.given_on, "counts": a.counts, "why": a.why}
                         for a in status.attempts],
            "not_done_reason": declined.not_done_reason if declined else None,
            "not_done_on": declined.given_on if declined else None}


# -- one patient -------------------------------------------------------------------------------------


def patient_immunizations(conn: Connection, principal: Principal, patient_id: uuid.UUID, *, schedule: Schedule,
                          today: dt.date, tz: zoneinfo.ZoneInfo) -> dict:
    """A patient's doses in force (newest first), those marked entered in error, and each dose of the schedule:
    given, due, overdue, not yet due or no longer given. The read is audited."""
    child = service.patient_of(conn, patient_id)
    rows = current_doses(conn, [patient_id])
    note_access(conn, principal, "read", patient_id, KIND, [r["id"] for r in rows])
    withdrawn = service.list_withdrawn(conn, principal, patient_id, immunization, KIND)
    statuses = evaluate(schedule, child["birth_date"], _recorded(rows, tz), today)
    return {"patient_id": patient_id, "birth_date": child["birth_date"], "today": today,
            "schedule": [status_dict(s) for s in statuses],
            "doses": [_shaped(r, schedule, tz) for r in reversed(rows)],
            "withdrawn": [{**w, "vaccine_name": getattr(schedule.by_code.get(w["vaccine"]), "name", None)}
                          for w in withdrawn]}


def _check(conn: Connection, patient_id: uuid.UUID, data: ImmunizationIn, schedule: Schedule, birth: dt.date,
           today: dt.date, tz: zoneinfo.ZoneInfo) -> dt.date:
    """The dose's day, after refusing what the schedule and the calendar cannot hold (422, naming the field): a day
    after the person's death among them (a dose before it, read from a card, may still be recorded)."""
    vaccine = schedule.by_code.get(data.vaccine)
    if vaccine is None:
        raise Invalid(f"{data.vaccine!r} is not a vaccine of the immunization schedule; it has "
                      f"{', '.join(schedule.by_code)}", field="vaccine")
    if data.dose_number is not None and data.dose_number > vaccine.doses:
        raise Invalid(f"{vaccine.name} has {vaccine.doses} dose{'s' if vaccine.doses > 1 else ''} in the schedule, "
                      f"so there is no dose {data.dose_number}; record a campaign or extra dose without a dose number",
                      field="dose_number")
    day = data.given_on or today
    if day > today:
        raise Invalid(f"the dose's day, {day.isoformat()}, is in the future: record a dose once it is given",
                      field="given_on")
    if day < birth:
        raise Invalid(f"the dose's day, {day.isoformat()}, is before the patient's birth on {birth.isoformat()}",
                      field="given_on")
    death = deaths.death_of(conn, patient_id)
    if death is not None and day >= death.died_at.astimezone(tz).date():
        raise Invalid(f"this person was {deaths.sentence(death)}: no dose on {day.isoformat()} can be recorded",
                      field="given_on")
    return day


def _occurred_at(day: dt.date, today: dt.date, tz: zoneinfo.ZoneInfo) -> dt.datetime | None:
    """Now for a dose given today; noon of its day in the facility's zone for one given before."""
    return None if day == today else dt.datetime.combine(day, _NOON, tzinfo=tz)


def _detail(data: ImmunizationIn) -> dict:
    return data.model_dump(include={"vaccine", "dose_number", "status", "not_done_reason", "lot_number",
                                    "expiry_date", "site", "route", "source", "note"})


def _outcome(conn: Connection, principal: Principal, appended: record.Entry, schedule: Schedule,
             birth: dt.date, today: dt.date, tz: zoneinfo.ZoneInfo) -> dict:
    """The dose as written, whether it counts and why not, and its vaccine's doses on the schedule now."""
    rows = current_doses(conn, [appended.patient_id])
    others = [r["id"] for r in rows if r["id"] != appended.id]
    if others:  # the answer shows the patient's other doses of the vaccine: a read of them
        note_access(conn, principal, "read", appended.patient_id, KIND, others)
    written = next(r for r in rows if r["id"] == appended.id)
    vaccine = schedule.by_code[written["vaccine"]]
    statuses = evaluate_vaccine(vaccine, birth, _recorded(rows, tz), today)
    attempt = counted(statuses, appended.id)
    slot = next((s for s in statuses if s.dose_number == written["dose_number"]), None)
    if written["status"] == "not_done":
        counts = None
        standing = (f"was given on {slot.given_on.isoformat()}" if slot and slot.given_on else
                    f"is still {slot.state.replace('_', ' ') if slot else 'owed'}")
        said = (f"Recorded as not given ({NOT_DONE_WORDS[written['not_done_reason']]}); "
                f"{slot.label if slot else vaccine.name} {standing}.")
    elif attempt is None or slot is None:
        counts = None
        said = f"Recorded as a campaign or extra dose of {vaccine.name}: it counts for no dose of the series."
    elif attempt.counts:
        counts = True
        said = f"{slot.label} given: it counts."
    else:
        counts = False
        still = f" from {slot.due_from.isoformat()}" if slot.due_from else ""
        said = f"Recorded, but {attempt.why}: {slot.label} is still {slot.state.replace('_', ' ')}{still}."
    return {"immunization": _shaped(written, schedule, tz), "counts": counts, "detail": said,
            "schedule": [status_dict(s) for s in statuses]}


def record_dose(conn: Connection, principal: Principal, patient_id: uuid.UUID, data: ImmunizationIn, *,
                schedule: Schedule, today: dt.date, tz: zoneinfo.ZoneInfo) -> dict:
    """Record one dose, given or not done. A dose given before its minimum age or interval, or from an expired lot, is
    recorded (the child did get it) and the answer says it does not count and the dose stays due."""
    child = service.patient_of(conn, patient_id)
    service.require_chart(conn, patient_id, data.encounter_id)
    day = _check(conn, patient_id, data, schedule, child["birth_date"], today, tz)
    appended = record.append(conn, principal, KIND, patient_id=patient_id, encounter_id=data.encounter_id,
                             detail=_detail(data), occurred_at=_occurred_at(day, today, tz))
    return _outcome(conn, principal, appended, schedule, child["birth_date"], today, tz)


def _dose_of(conn: Connection, patient_id: uuid.UUID, entry_id: uuid.UUID) -> None:
    found = conn.execute(sa.select(entry.c.kind).where(entry.c.id == entry_id, entry.c.patient_id == patient_id)
                         ).scalar()
    if found != KIND:
        raise NotFound(f"no immunization {entry_id} on this patient's chart", entry_id=str(entry_id))


def correct_dose(conn: Connection, principal: Principal, patient_id: uuid.UUID, entry_id: uuid.UUID,
                 data: ImmunizationIn, reason: str, *, schedule: Schedule, today: dt.date,
                 tz: zoneinfo.ZoneInfo) -> dict:
    """The next version of a dose (a wrong vaccine, dose number, lot or day), with the reason; the earlier one
    stays in its history. A version corrected since: 409."""
    child = service.patient_of(conn, patient_id)
    _dose_of(conn, patient_id, entry_id)
    service.require_chart(conn, patient_id, data.encounter_id)
    day = _check(conn, patient_id, data, schedule, child["birth_date"], today, tz)
    appended = record.append(conn, principal, KIND, patient_id=patient_id, encounter_id=data.encounter_id,
                             detail=_detail(data), supersedes=entry_id, reason=reason,
                             occurred_at=_occurred_at(day, today, tz) or dt.datetime.now(tz))
    return _outcome(conn, principal, appended, schedule, child["birth_date"], today, tz)


def withdraw_dose(conn: Connection, principal: Principal, patient_id: uuid.UUID, entry_id: uuid.UUID,
                  reason: str) -> dict:
    """Mark a dose entered in error (recorded on the wrong child, never given): nothing is deleted, the mistaken
    version stays readable in its history, and the schedule no longer counts it."""
    service.patient_of(conn, patient_id)
    _dose_of(conn, patient_id, entry_id)
    appended = record.retract(conn, principal, entry_id, reason)
    first = conn.execute(sa.select(entry.c.author_id).where(entry.c.id == appended.root_id)).scalar_one()
    return {"id": appended.id, "root_id": appended.root_id, "kind": appended.kind, "entry_status": appended.status,
            "encounter_id": appended.encounter_id, "author_id": appended.author_id, "record_author_id": first,
            "occurred_at": appended.occurred_at, "recorded_at": appended.recorded_at,
            "supersedes": appended.supersedes, "reason": appended.reason, "detail": {}}


# -- the facility's children due ---------------------------------------------------------------------

# A child recorded deceased at any facility (appliance/substrate/deaths.py) is nobody's defaulter: a vaccinator
# tracing the list would call a bereaved family.
_LIVING = sa.text("NOT EXISTS (SELECT 1 FROM control.subject_death_of(patient.subject_id, patient.id))")


def due_list(conn: Connection, principal: Principal, *, schedule: Schedule, today: dt.date,
             tz: zoneinfo.ZoneInfo, only: str | None = None, limit: int = DUE_LIMIT) -> dict:
    """The facility's living children younger than the schedule's `trace_until` with a dose due or overdue (`only`:
    "due" or "overdue" keeps those), longest overdue first: name, MRN, age, the phone and next of kin to trace them
    by, and each dose outstanding, with when it fell due or overdue. Each child listed is audited as read."""
    oldest = today - dt.timedelta(days=int(schedule.trace_until.approx_days) + 2)
    children = [dict(r) for r in conn.execute(
        sa.select(patient.c.id, patient.c.mrn, patient.c.family_name, patient.c.given_names, patient.c.birth_date,
                  patient.c.sex, patient.c.phone, patient.c.next_of_kin)
        .where(patient.c.birth_date > oldest, patient.c.birth_date <= today, _LIVING)
        .order_by(patient.c.birth_date.desc())).mappings()]
    children = [c for c in children if today < schedule.trace_until.after(c["birth_date"])]
    by_patient: dict[uuid.UUID, list[dict]] = {}
    for row in current_doses(conn, [c["id"] for c in children]):
        by_patient.setdefault(row["patient_id"], []).append(row)
    listed: list[dict[str, Any]] = []
    for child in children:
        owed = outstanding(evaluate(schedule, child["birth_date"], _recorded(by_patient.get(child["id"], []), tz),
                                    today))
        doses = [d for d in owed.doses if only is None or d.state == only]
        if not doses:
            continue
        listed.append({**child, "patient_id": child["id"], "age": age_label(child["birth_date"], today),
                       "overdue_since": min((d.overdue_since for d in doses if d.overdue_since), default=None),
                       "doses": [status_dict(d) for d in doses]})
    listed.sort(key=lambda c: (c["overdue_since"] or dt.date.max, c["family_name"], c["given_names"]))
    shown = listed[:limit]
    note_list_read(conn, principal, DUE_LIST, shown)
    return {"today": today, "trace_until": schedule.trace_until.words(), "children": shown,
            "counts": {"due": sum(1 for c in listed if any(d["state"] == "due" for d in c["doses"])),
                       "overdue": sum(1 for c in listed if any(d["state"] == "overdue" for d in c["doses"]))},
            "truncated": len(listed) > limit}
