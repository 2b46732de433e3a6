"""Family planning: the clinical layer's record of contraceptive services (the `family_planning` entry, tenant
revision t0037) — a method provided in its unit (cycles of pills, an injection, an implant or IUD inserted,
condoms, a sterilisation, LAM or fertility awareness), the client new to the programme, new to the method,
continuing or restarting, an implant or IUD removed and why, their correction and withdrawal — and where each
client stands (`family_planning_policy`, `policies/family_planning.toml`): her current method, the devices in
place, her next re-supply, injection or replacement, and the facility's clients due this week or overdue, the
list a nurse traces defaulters from.

A visit's day is the entry's `occurred_at` in the facility's time zone, as a vaccine dose's is
(appliance/layers/clinical/immunization.py): today's stamped now, an earlier day's at noon of that day there.

Family planning is sensitive: writes go through `record.append` (audited as a write of the patient's record);
every read of a client's visits is noted on the audit seam, and the list of clients due notes each client it
names. Logs never carry a method or a client.
"""

from __future__ import annotations

import datetime as dt
import uuid
import zoneinfo
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from appliance.layers.clinical import antenatal, service
from appliance.layers.clinical.errors import Invalid, NotFound
from appliance.layers.clinical.family_planning_policy import (
    CLASS_WORDS,
    CLIENT_TYPES,
    Method,
    Programme,
    Standing,
    Visit,
    cyp,
    standing,
)
from appliance.layers.clinical.family_planning_schemas import FamilyPlanningIn

# A person recorded deceased at any facility is nobody's defaulter: the immunization list's own test of it.
from appliance.layers.clinical.immunization import _LIVING as LIVING
from appliance.layers.clinical.immunization import given_on
from appliance.layers.clinical.models import family_planning, patient
from appliance.substrate import age, deaths, record
from appliance.substrate.principal import Principal
from appliance.substrate.record import current_clause, entry, note_access, note_list_read

KIND = "family_planning"
DUE_LIST = "family_planning_due"  # how the list of clients due reads on each client's access log
# A facility's clients due in one week stay well under this; past it the list says it is cut short.
DUE_LIMIT = 500
# A visit for a child younger than this is a mistyped day or the wrong chart, as antenatal care's youngest (AGES).
YOUNGEST = 10
_NOON = dt.time(12, 0)

_COLUMNS = (entry.c.id, entry.c.root_id, entry.c.patient_id, entry.c.status.label("entry_status"),
            entry.c.encounter_id, entry.c.author_id, service.RECORD_AUTHOR_ID.label("record_author_id"),
            entry.c.occurred_at, entry.c.recorded_at,
            *(c for c in family_planning.c if c.name != "entry_id"))


def current_visits(conn: Connection, patient_ids: Sequence[uuid.UUID] | None) -> list[dict]:
    """The current family planning visits of these patients (None: every patient of the facility), oldest first;
    entries in error left out. Not audited here: the caller notes the read of what it shows."""
    query = (sa.select(*_COLUMNS).select_from(entry.join(family_planning, family_planning.c.entry_id == entry.c.id))
             .where(entry.c.kind == KIND, current_clause())
             .order_by(entry.c.occurred_at, entry.c.recorded_at))
    if patient_ids is not None:
        if not patient_ids:
            return []
        query = query.where(entry.c.patient_id.in_(list(patient_ids)))
    return [dict(r) for r in conn.execute(query).mappings()]


def _visits(rows: Sequence[dict], tz: zoneinfo.ZoneInfo) -> list[Visit]:
    return [Visit(r["id"], r["method"], r["service"], given_on(r["occurred_at"], tz), r["quantity"]) for r in rows]


def _shaped(row: dict, programme: Programme, tz: zoneinfo.ZoneInfo) -> dict:
    method = programme.by_code.get(row["method"])
    figure = cyp(method, row["quantity"]) if method and row["quantity"] else None
    return {**row, "given_on": given_on(row["occurred_at"], tz), "method_name": method.name if method else None,
            "method_class": method.method_class if method else None, "unit": method.unit if method else None,
            "cyp": round(float(figure), 2) if figure is not None else None}


def standing_dict(found: Standing, rows: Sequence[dict], programme: Programme, tz: zoneinfo.ZoneInfo) -> dict:
    by_id = {r["id"]: r for r in rows}
    current = programme.by_code.get(found.current.method) if found.current else None
    return {"current_method": found.current.method if found.current else None,
            "current_method_name": current.name if current else None,
            "current_since": found.current.day if found.current else None,
            "in_place": [_shaped(by_id[v.entry_id], programme, tz) for v in found.in_place],
            "due_on": found.due_on, "due_for": found.due_for, "state": found.state}


# -- one client --------------------------------------------------------------------------------------


def patient_family_planning(conn: Connection, principal: Principal, patient_id: uuid.UUID, *, programme: Programme,
                            today: dt.date, tz: zoneinfo.ZoneInfo) -> dict:
    """A client's visits in force (newest first), those marked entered in error, her current method, devices in
    place and when she is next due. The read is audited."""
    service.patient_of(conn, patient_id)
    rows = current_visits(conn, [patient_id])
    note_access(conn, principal, "read", patient_id, KIND, [r["id"] for r in rows])
    withdrawn = service.list_withdrawn(conn, principal, patient_id, family_planning, KIND)
    return {"patient_id": patient_id, "today": today,
            "standing": standing_dict(standing(programme, _visits(rows, tz), today), rows, programme, tz),
            "visits": [_shaped(r, programme, tz) for r in reversed(rows)],
            "withdrawn": [{**w, "method_name": getattr(programme.by_code.get(w["method"]), "name", None)}
                          for w in withdrawn]}


def own_record(conn: Connection, principal: Principal, patient_id: uuid.UUID, *, programme: Programme,
               today: dt.date, tz: zoneinfo.ZoneInfo) -> dict | None:
    """What the patient's own portal shows (appliance/web/me.py): her visits in force, newest first, and when she is
    next due; None where she has none, and then nothing is noted (a log that said "family planning" of a person who
    never came for it would itself say something)."""
    rows = current_visits(conn, [patient_id])
    if not rows:
        return None
    note_access(conn, principal, "read", patient_id, KIND, [r["id"] for r in rows])
    return {"standing": standing_dict(standing(programme, _visits(rows, tz), today), rows, programme, tz),
            "visits": [_shaped(r, programme, tz) for r in reversed(rows)]}


def _article(method: Method) -> str:
    return method.name[0].lower() + method.name[1:]


def _check(conn: Connection, client: dict, data: FamilyPlanningIn, programme: Programme, others: list[Visit],
           today: dt.date, tz: zoneinfo.ZoneInfo) -> dt.date:
    """The visit's day, after refusing what the programme, the client or the calendar cannot hold (422, naming the
    field). `others` are her other visits in force (a correction's own earlier version left out)."""
    method = programme.by_code.get(data.method)
    if method is None:
        raise Invalid(f"{data.method!r} is not a method of the family planning programme; it has "
                      f"{', '.join(programme.by_code)}", field="method")
    if method.sex is not None and client["sex"] in ("female", "male") and client["sex"] != method.sex:
        raise Invalid(f"{method.name} is given to {'women' if method.sex == 'female' else 'men'}, and this client "
                      f"is recorded {client['sex']}: record the method given to the client themselves",
                      field="method")
    if data.quantity is not None and data.quantity > method.max_quantity:
        raise Invalid(f"{method.quantity_words(data.quantity)} of {_article(method)} is more than one visit gives "
                      f"(at most {method.quantity_words(method.max_quantity)}); check the quantity", field="quantity")
    day = data.given_on or today
    if day > today:
        raise Invalid(f"the visit's day, {day.isoformat()}, is in the future: record a visit once it has happened",
                      field="given_on")
    if day < client["birth_date"]:
        raise Invalid(f"the visit's day, {day.isoformat()}, is before the client's birth on "
                      f"{client['birth_date'].isoformat()}", field="given_on")
    if (years := age.years_on(client["birth_date"], day)) < YOUNGEST:
        raise Invalid(f"this client was {years} years old on {day.isoformat()}: family planning is recorded from "
                      f"{YOUNGEST}; check the day or the chart", field="given_on" if data.given_on else "patient_id")
    death = deaths.death_of(conn, client["id"])
    if death is not None and day >= death.died_at.astimezone(tz).date():
        raise Invalid(f"this person was {deaths.sentence(death)}: no visit on {day.isoformat()} can be recorded",
                      field="given_on")
    before = [v for v in others if v.day <= day]
    in_place = [v for v in standing(programme, before, day).in_place if v.method == method.code]
    if data.service == "removal":
        if not method.removable:
            raise Invalid(f"{method.name} is not removed: a removal is recorded only for an implant or IUD",
                          field="method")
        if not in_place:
            raise Invalid(f"this client has no {_article(method)} in place on {day.isoformat()} to remove: "
                          "record the insertion first, or choose the device she has", field="method")
        return day
    if in_place:
        raise Invalid(f"{method.name} is already in place since {in_place[-1].day.isoformat()}: record its removal "
                      "first, then the new one", field="method")
    if method.method_class == "permanent" and any(v.method == method.code and v.service == "provided" for v in others):
        raise Invalid(f"{method.name} is already recorded for this client: correct that visit instead",
                      field="method")
    if data.client_type == "new_acceptor" and before:
        raise Invalid(f"this client has family planning visits recorded here since {before[0].day.isoformat()}, "
                      "so she is not new to the programme: she is new_to_method, continuing or restart",
                      field="client_type")
    return day


def _occurred_at(day: dt.date, today: dt.date, tz: zoneinfo.ZoneInfo) -> dt.datetime | None:
    """Now for a visit today; noon of its day in the facility's zone for one recorded later."""
    return None if day == today else dt.datetime.combine(day, _NOON, tzinfo=tz)


def _detail(data: FamilyPlanningIn) -> dict:
    return data.model_dump(include={"method", "service", "quantity", "client_type", "removal_reason", "counselled",
                                    "note"})


def _said(visit: dict, found: Standing, programme: Programme) -> str:
    method = programme.by_code[visit["method"]]
    if visit["service"] == "removal":
        done = f"{method.name} removed."
    else:
        done = (f"{method.name}: {method.quantity_words(visit['quantity'])} provided to a "
                f"{CLIENT_TYPES[visit['client_type']]} ({CLASS_WORDS[method.method_class]}).")
    if found.due_on is None:
        return f"{done} No re-supply is due."
    what = "replacement" if found.due_for == "replacement" else "re-supply"
    return f"{done} Next {what} due {found.due_on.isoformat()}."


def _outcome(conn: Connection, principal: Principal, appended: record.Entry, programme: Programme, today: dt.date,
             tz: zoneinfo.ZoneInfo) -> dict:
    rows = current_visits(conn, [appended.patient_id])
    others = [r["id"] for r in rows if r["id"] != appended.id]
    if others:  # the answer's standing is read from her other visits: a read of them
        note_access(conn, principal, "read", appended.patient_id, KIND, others)
    written = next(r for r in rows if r["id"] == appended.id)
    found = standing(programme, _visits(rows, tz), today)
    return {"visit": _shaped(written, programme, tz), "standing": standing_dict(found, rows, programme, tz),
            "detail": _said(written, found, programme)}


def _one_at_a_time(conn: Connection, patient_id: uuid.UUID) -> None:
    """Two visits written for one client at once are checked one after the other (two implants inserted at once, or
    a removal racing its insertion, would otherwise both pass)."""
    service.one_writer_at_a_time(conn, KIND, patient_id)


def record_visit(conn: Connection, principal: Principal, patient_id: uuid.UUID, data: FamilyPlanningIn, *,
                 programme: Programme, today: dt.date, tz: zoneinfo.ZoneInfo) -> dict:
    """Record one visit: a method provided, or an implant or IUD removed."""
    client = service.patient_of(conn, patient_id)
    service.require_chart(conn, patient_id, data.encounter_id)
    _one_at_a_time(conn, patient_id)
    others = _visits(current_visits(conn, [patient_id]), tz)
    day = _check(conn, client, data, programme, others, today, tz)
    appended = record.append(conn, principal, KIND, patient_id=patient_id, encounter_id=data.encounter_id,
                             detail=_detail(data), occurred_at=_occurred_at(day, today, tz))
    return _outcome(conn, principal, appended, programme, today, tz)


def _visit_of(conn: Connection, patient_id: uuid.UUID, entry_id: uuid.UUID) -> None:
    found = conn.execute(sa.select(entry.c.kind).where(entry.c.id == entry_id, entry.c.patient_id == patient_id)
                         ).scalar()
    if found != KIND:
        raise NotFound(f"no family planning visit {entry_id} on this patient's chart", entry_id=str(entry_id))


def correct_visit(conn: Connection, principal: Principal, patient_id: uuid.UUID, entry_id: uuid.UUID,
                  data: FamilyPlanningIn, reason: str, *, programme: Programme, today: dt.date,
                  tz: zoneinfo.ZoneInfo) -> dict:
    """The next version of a visit (a wrong method, quantity, client type or day), with the reason; the earlier one
    stays in its history. A version corrected since: 409."""
    client = service.patient_of(conn, patient_id)
    _visit_of(conn, patient_id, entry_id)
    service.require_chart(conn, patient_id, data.encounter_id)
    _one_at_a_time(conn, patient_id)
    others = [v for v in _visits(current_visits(conn, [patient_id]), tz) if v.entry_id != entry_id]
    day = _check(conn, client, data, programme, others, today, tz)
    appended = record.append(conn, principal, KIND, patient_id=patient_id, encounter_id=data.encounter_id,
                             detail=_detail(data), supersedes=entry_id, reason=reason,
                             occurred_at=_occurred_at(day, today, tz) or dt.datetime.now(tz))
    return _outcome(conn, principal, appended, programme, today, tz)


def withdraw_visit(conn: Connection, principal: Principal, patient_id: uuid.UUID, entry_id: uuid.UUID,
                   reason: str) -> dict:
    """Mark a visit entered in error (the wrong client, never given): nothing is deleted, the mistaken version
    stays readable in its history, and neither her standing nor the national count counts it."""
    service.patient_of(conn, patient_id)
    _visit_of(conn, patient_id, entry_id)
    appended = record.retract(conn, principal, entry_id, reason)
    first = conn.execute(sa.select(entry.c.author_id).where(entry.c.id == appended.root_id)).scalar_one()
    return {"id": appended.id, "root_id": appended.root_id, "kind": appended.kind, "entry_status": appended.status,
            "encounter_id": appended.encounter_id, "author_id": appended.author_id, "record_author_id": first,
            "occurred_at": appended.occurred_at, "recorded_at": appended.recorded_at,
            "supersedes": appended.supersedes, "reason": appended.reason, "detail": {}}


# -- the facility's clients due ----------------------------------------------------------------------


def due_list(conn: Connection, principal: Principal, *, programme: Programme, today: dt.date,
             tz: zoneinfo.ZoneInfo, only: str | None = None, limit: int = DUE_LIMIT) -> dict:
    """The facility's living clients whose next re-supply, injection or replacement is due within the programme's
    `due_soon` or overdue (and not yet lost to follow-up), but for a woman with a pregnancy going on (antenatal.py);
    `only`: "due" or "overdue" keeps those. Longest overdue first: name, MRN, phone, the method and the day. Each
    client listed is audited as read."""
    by_patient: dict[uuid.UUID, list[dict]] = {}
    for row in current_visits(conn, None):
        by_patient.setdefault(row["patient_id"], []).append(row)
    owed: dict[uuid.UUID, tuple[Standing, dict]] = {}
    for patient_id, rows in by_patient.items():
        found = standing(programme, _visits(rows, tz), today)
        if found.state in ("due", "overdue") and (only is None or found.state == only):
            owed[patient_id] = (found, next(r for r in rows if r["id"] == found.current.entry_id))
    # A client whose ANC card has a pregnancy going on is no defaulter: she stopped her method because she is
    # pregnant (or conceived on it), and is followed at the ANC clinic; traced for her injection, she was called in
    # for a contraceptive she must not be given.
    for woman in antenatal.pregnant_today(conn, list(owed), today=today, tz=tz):
        del owed[woman]
    people = {r["id"]: dict(r) for r in conn.execute(
        sa.select(patient.c.id, patient.c.mrn, patient.c.family_name, patient.c.given_names, patient.c.sex,
                  patient.c.phone).where(patient.c.id.in_(list(owed)), LIVING)).mappings()} if owed else {}
    listed: list[dict[str, Any]] = []
    for patient_id, (found, row) in owed.items():
        if patient_id not in people:
            continue
        method = programme.by_code.get(row["method"])
        listed.append({**people[patient_id], "patient_id": patient_id, "id": row["id"], "method": row["method"],
                       "method_name": method.name if method else None, "due_on": found.due_on,
                       "due_for": found.due_for, "state": found.state})
    listed.sort(key=lambda c: (c["due_on"], c["family_name"], c["given_names"]))
    shown = listed[:limit]
    note_list_read(conn, principal, DUE_LIST, shown)
    return {"today": today, "clients": shown,
            "counts": {"due": sum(1 for c in listed if c["state"] == "due"),
                       "overdue": sum(1 for c in listed if c["state"] == "overdue")},
            "truncated": len(listed) > limit}
