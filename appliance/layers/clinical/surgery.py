"""The operating theatre: the clinical layer's `surgery` entry, an operation booked on the patient's record and
taken through the WHO Surgical Safety Checklist, and its `operation_note`.

A case is booked by a clinician for a theatre of the facility (the tenant file's `[[theatres]]`) at a time, with
the procedure in words and, where the facility's procedure list (`[[procedures]]`) has it, its code, which is
also the fee schedule's `procedure` item code. Its state moves scheduled -> in theatre -> completed, or to
cancelled with a reason; each move, each checklist phase and each correction is a new version of the one record.
A case for a person recorded deceased is refused as an encounter is (`record.register_guard`).

The checklist is the WHO Surgical Safety Checklist (first edition 2008, revised 1/2009), nineteen checks in three
phases, each said aloud and confirmed by the checklist coordinator (a theatre nurse): Sign In, before induction
of anaesthesia (7); Time Out, before skin incision (7); Sign Out, before the patient leaves the operating room
(5). Sources read: WHO Patient Safety, "Surgical Safety Checklist" (Safe Surgery Saves Lives, 2009), as set out
at https://www.medicalalgorithms.com/who-surgical-safety-checklist and
https://frcamindmaps.org/mindmaps/guidelines/whochecklist/whochecklist-assets/whochecklist-outline.html, and
the account of its nineteen checks in A. Gawande, The Checklist Manifesto (2009), ch. 7. The items below say
each check in our words; an item the WHO form allows "not applicable" says so. A phase is recorded only with
all its items confirmed, by whom and when. The case does not go into theatre without Sign In, nor is it
completed without Time Out and Sign Out (422 naming the phase missing).

The operation note (procedure performed, findings, complications, estimated blood loss, implants, specimens,
post-operative instructions) is signed by its author, the entry's; a correction is its next version, with the
reason. A specimen named in the note is not ordered here: a laboratory order names a test of the catalogue
(LOINC) and histology is not among them, so the surgeon orders what the laboratory offers from the chart.

Completing a case is what bills it: the financial layer's reaction to `surgery` prices the procedure code.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from appliance.layers.clinical import catalogue, service
from appliance.layers.clinical.errors import Conflict, Invalid, NotFound
from appliance.layers.clinical.models import operation_note, patient, surgery, surgical_procedure, theatre
from appliance.layers.clinical.surgery_schemas import OperationNoteIn, PhaseIn, SurgeryIn
from appliance.substrate import deaths, record
from appliance.substrate.principal import Principal
from appliance.substrate.record import entry, note_access, note_list_read
from appliance.substrate.tenancy import facility_timezone_of, register_config_applier
from appliance.substrate.tenant_config import TenantConfig


@dataclass(frozen=True)
class Phase:
    key: str
    title: str
    when: str
    items: tuple[tuple[str, str], ...]


CHECKLIST = (
    Phase("sign_in", "Sign In", "before induction of anaesthesia", (
        ("identity_consent", "The patient has confirmed their identity, the site, the procedure and consent"),
        ("site_marked", "The site is marked (or marking is not applicable)"),
        ("anaesthesia_check", "The anaesthesia machine and medication check is complete"),
        ("pulse_oximeter", "The pulse oximeter is on the patient and functioning"),
        ("allergy", "Known allergies have been asked about and are known to the team"),
        ("airway", "Difficult airway or aspiration risk assessed; if present, equipment and assistance are available"),
        ("blood_loss_risk", "Risk of more than 500 mL blood loss (7 mL/kg in children) assessed; if present, two IVs "
                            "or central access and fluids are planned"),
    )),
    Phase("time_out", "Time Out", "before skin incision", (
        ("team_introduced", "All team members have introduced themselves by name and role"),
        ("patient_procedure_site", "The patient's name, the procedure and where the incision will be made are "
                                   "confirmed"),
        ("antibiotic_prophylaxis", "Antibiotic prophylaxis has been given within the last 60 minutes (or is not "
                                   "applicable)"),
        ("surgeon_review", "The surgeon has reviewed critical or non-routine steps, the case's length and the "
                           "anticipated blood loss"),
        ("anaesthetist_review", "The anaesthetist has reviewed any patient-specific concerns"),
        ("nursing_review", "The nursing team has confirmed sterility (including indicator results) and raised any "
                           "equipment issues"),
        ("imaging_displayed", "Essential imaging is displayed (or is not applicable)"),
    )),
    Phase("sign_out", "Sign Out", "before the patient leaves the operating room", (
        ("procedure_recorded", "The name of the procedure performed is confirmed"),
        ("counts_complete", "Instrument, sponge and needle counts are complete (or not applicable)"),
        ("specimens_labelled", "Specimens are labelled, the labels read aloud with the patient's name"),
        ("equipment_problems", "Any equipment problems to be addressed are named"),
        ("recovery_concerns", "Surgeon, anaesthetist and nurse have reviewed the key concerns for recovery and "
                              "management of this patient"),
    )),
)
PHASES = {phase.key: phase for phase in CHECKLIST}
STATUS_WORDS = {"scheduled": "scheduled", "in_theatre": "in theatre", "completed": "completed",
                "cancelled": "cancelled"}
# What a case may become from each state, and the checklist phases it needs first.
_MOVES = {("scheduled", "in_theatre"): ("sign_in",), ("in_theatre", "completed"): ("time_out", "sign_out"),
          ("scheduled", "cancelled"): (), ("in_theatre", "cancelled"): ()}
# The phase before which a phase cannot be recorded, and the state the case must be in.
_PHASE_NEEDS = {"sign_in": (None, "scheduled"), "time_out": ("sign_in", "in_theatre"),
                "sign_out": ("time_out", "in_theatre")}


# -- the facility's theatres and procedure list ------------------------------------------------------


@register_config_applier
def sync_theatre_configuration(conn: Connection, config: TenantConfig) -> None:
    catalogue.sync_codes(conn, theatre, [{"code": t.code, "name": t.name, "active": True} for t in config.theatres])
    catalogue.sync_codes(conn, surgical_procedure,
                         [{"code": p.code, "name": p.name, "active": True} for p in config.procedures])


def theatres(conn: Connection) -> list[dict]:
    return [dict(r) for r in conn.execute(sa.select(theatre.c.code, theatre.c.name).where(theatre.c.active)
                                          .order_by(theatre.c.code)).mappings()]


def procedures(conn: Connection) -> list[dict]:
    return [dict(r) for r in conn.execute(
        sa.select(surgical_procedure.c.code, surgical_procedure.c.name).where(surgical_procedure.c.active)
        .order_by(surgical_procedure.c.name)).mappings()]


# No theatre list is planned further ahead: a case booked beyond it is a mistyped year (2027 for 2026), which would
# sit unseen on a list nobody opens while the patient waits.
FURTHEST_AHEAD = dt.timedelta(days=366)


def _checked_booking(conn: Connection, patient_id: uuid.UUID, data: SurgeryIn) -> dict:
    service.require_chart(conn, patient_id, data.encounter_id)
    known = {t["code"] for t in theatres(conn)}
    if data.theatre not in known:
        raise Invalid(f"{data.theatre!r} is not a theatre of this facility"
                      + (f" (its theatres: {', '.join(sorted(known))})" if known else
                         " (its tenant file names no theatres)"), field="theatre")
    if data.planned_at > dt.datetime.now(dt.UTC) + FURTHEST_AHEAD:
        raise Invalid(f"the case is planned for {data.planned_at.astimezone(facility_timezone_of(conn)):%d %B %Y}, "
                      "more than a year ahead: check the year", field="planned_at")
    code = data.procedure_code or None
    if code is not None and code not in {p["code"] for p in procedures(conn)}:
        raise Invalid(f"{code!r} is not on this facility's procedure list: book it in words without a code, or "
                      "pick a code from the list", field="procedure_code")
    return {"procedure": data.procedure, "procedure_code": code, "planned_at": data.planned_at,
            "theatre": data.theatre, "surgeon": data.surgeon, "anaesthetist": data.anaesthetist or None,
            "urgency": data.urgency, "anaesthesia": data.anaesthesia}


def refuse_surgery_for_deceased(conn: Connection, patient_id: uuid.UUID | None) -> None:
    """No operation is booked for a person recorded deceased at any facility."""
    deaths.refuse_if_deceased(conn, patient_id, "an operation")


record.register_guard("surgery", refuse_surgery_for_deceased)


# -- the case ----------------------------------------------------------------------------------------

_CASE_COLUMNS = (entry.c.id, entry.c.root_id, entry.c.patient_id, entry.c.encounter_id,
                 entry.c.status.label("entry_status"), *(c for c in surgery.c if c.name != "entry_id"),
                 sa.func.concat(patient.c.given_names, " ", patient.c.family_name).label("patient_name"),
                 patient.c.mrn, theatre.c.name.label("theatre_name"),
                 surgical_procedure.c.name.label("procedure_name"))
_CASES = (entry.join(surgery, surgery.c.entry_id == entry.c.id).join(patient, patient.c.id == entry.c.patient_id)
          .outerjoin(theatre, theatre.c.code == surgery.c.theatre)
          .outerjoin(surgical_procedure, surgical_procedure.c.code == surgery.c.procedure_code))


def _current(conn: Connection, case_id: uuid.UUID) -> dict:
    """The current version of the case `case_id` (its root id, or any version's id), or 404."""
    root = sa.select(entry.c.root_id).where(entry.c.id == case_id, entry.c.kind == "surgery").scalar_subquery()
    query = sa.select(*_CASE_COLUMNS).select_from(_CASES).where(entry.c.root_id == root, record.current_clause())
    row = conn.execute(query).mappings().first()
    if row is None:
        # A case entered in error has no detail in its current version: it is gone from the theatre's view.
        raise NotFound(f"no operation {case_id} at this facility", case_id=str(case_id))
    return dict(row)


def checklist_phases(done: dict) -> list[dict]:
    """The checklist's phases and items, with who recorded each phase `done` names, and when."""
    return [{"phase": p.key, "title": p.title, "when": p.when, "checks": [{"key": k, "text": t} for k, t in p.items],
             "recorded": p.key in done,
             **({"by_name": done[p.key].get("by_name"), "note": done[p.key].get("note"),
                 "at": dt.datetime.fromisoformat(done[p.key]["at"])} if p.key in done else {})}
            for p in CHECKLIST]


def _shaped(row: dict, note: dict | None = None) -> dict:
    done = row["checklist"] or {}
    return {**row, "checklist": checklist_phases(done), "phases_done": len(done), "note": note}


def _version_check(current: dict, version_id: uuid.UUID | None) -> None:
    if version_id is not None and version_id != current["id"]:
        raise Conflict("this case was changed by someone else since you loaded it; reload it and try again",
                       case_id=str(current["root_id"]))


def _detail_of(current: dict) -> dict:
    return {c.name: current[c.name] for c in surgery.c if c.name != "entry_id"}


def _next_version(conn: Connection, principal: Principal, current: dict, changes: dict,
                  reason: str | None = None) -> dict:
    appended = record.append(conn, principal, "surgery", patient_id=current["patient_id"],
                             detail=_detail_of(current) | changes, supersedes=current["id"], reason=reason)
    return case(conn, principal, appended.root_id, audited=False)


def book(conn: Connection, principal: Principal, patient_id: uuid.UUID, data: SurgeryIn) -> dict:
    """Book an operation for the patient; the caller is its booking clinician (the entry's author)."""
    detail = _checked_booking(conn, patient_id, data) | {
        "status": "scheduled", "cancel_reason": None, "checklist": {}, "started_at": None, "ended_at": None}
    appended = record.append(conn, principal, "surgery", patient_id=patient_id, encounter_id=data.encounter_id,
                             detail=detail)
    return case(conn, principal, appended.root_id, audited=False)


def correct(conn: Connection, principal: Principal, case_id: uuid.UUID, data: SurgeryIn, reason: str,
            version_id: uuid.UUID) -> dict:
    """Correct what was booked (procedure, time, theatre, team...), with the reason; its state and checklist
    are kept, but for a case still scheduled moved to another day or theatre (postponed), whose Sign In is said
    again: it confirms the patient, the consent and the anaesthesia machine just before induction, and Monday's
    check in Theatre 1 says nothing of Wednesday's in Theatre 2. A case completed or cancelled is history: 409."""
    current = _current(conn, case_id)
    _version_check(current, version_id)
    if current["status"] in ("completed", "cancelled"):
        raise Conflict(f"this case is {STATUS_WORDS[current['status']]}: what was booked is no longer corrected; "
                       "the operation note says what was done", field="status")
    changes = _checked_booking(conn, current["patient_id"], data)
    if current["status"] == "scheduled" and current["checklist"]:
        zone = facility_timezone_of(conn)
        if (changes["theatre"] != current["theatre"]
                or changes["planned_at"].astimezone(zone).date() != current["planned_at"].astimezone(zone).date()):
            changes["checklist"] = {}
    return _next_version(conn, principal, current, changes, reason)


def move(conn: Connection, principal: Principal, case_id: uuid.UUID, to: str, *, reason: str | None = None,
         version_id: uuid.UUID | None = None, at: dt.datetime | None = None) -> dict:
    """Take the case into theatre, complete it or cancel it (with a reason). Into theatre needs Sign In, completed
    needs Time Out and Sign Out (422 naming the phase missing); a move the state does not allow is 409."""
    current = _current(conn, case_id)
    _version_check(current, version_id)
    needs = _MOVES.get((current["status"], to))
    if needs is None:
        raise Conflict(f"this case is {STATUS_WORDS[current['status']]}: it cannot be "
                       f"{'taken into theatre' if to == 'in_theatre' else STATUS_WORDS[to]} now", field="to",
                       case_status=current["status"])
    missing = [PHASES[p].title for p in needs if p not in (current["checklist"] or {})]
    if missing:
        act = "taken into theatre" if to == "in_theatre" else "completed"
        raise Invalid(f"the case cannot be {act}: the checklist's {' and '.join(missing)} "
                      f"{'has' if len(missing) == 1 else 'have'} not been recorded", field="checklist",
                      missing=missing)
    now = at or conn.execute(sa.select(sa.func.now())).scalar_one()
    changes: dict = {"status": to}
    if to == "in_theatre":
        changes["started_at"] = now
    elif to == "completed":
        changes["ended_at"] = now
    else:
        changes["cancel_reason"] = reason
    return _next_version(conn, principal, current, changes, reason if to == "cancelled" else None)


def record_phase(conn: Connection, principal: Principal, case_id: uuid.UUID, phase: str, data: PhaseIn, *,
                 at: dt.datetime | None = None) -> dict:
    """Record one phase of the checklist, every item confirmed, by the caller now (or `at`, as `move` takes it: the
    demo's cases, whose phases are said before their moves)."""
    found = PHASES.get(phase)
    if found is None:
        raise NotFound(f"no checklist phase {phase!r}: the phases are sign_in, time_out and sign_out")
    current = _current(conn, case_id)
    _version_check(current, data.version_id)
    done = dict(current["checklist"] or {})
    if phase in done:
        raise Conflict(f"the {found.title} of this case was recorded already", field="phase")
    before, state = _PHASE_NEEDS[phase]
    if before is not None and before not in done:
        raise Invalid(f"record the {PHASES[before].title} before the {found.title}", field="phase",
                      missing=[PHASES[before].title])
    if current["status"] != state:
        raise Conflict(f"the {found.title} is recorded while the case is {STATUS_WORDS[state]}; this one is "
                       f"{STATUS_WORDS[current['status']]}", field="phase", case_status=current["status"])
    keys = [key for key, _ in found.items]
    unknown = sorted(set(data.confirmed) - set(keys))
    if unknown:
        raise Invalid(f"{', '.join(unknown)} {'is' if len(unknown) == 1 else 'are'} not an item of the "
                      f"{found.title}", field="confirmed")
    unconfirmed = [text for key, text in found.items if key not in data.confirmed]
    if unconfirmed:
        raise Invalid(f"the {found.title} is recorded only with every item confirmed; not confirmed: "
                      + "; ".join(unconfirmed), field="confirmed", unconfirmed=[
                          key for key in keys if key not in data.confirmed])
    now = at or conn.execute(sa.select(sa.func.now())).scalar_one()
    done[phase] = {"items": keys, "by": str(principal.account_id), "by_name": principal.display_name,
                   "at": now.isoformat(), "note": data.note or None}
    return _next_version(conn, principal, current, {"checklist": done})


def retract(conn: Connection, principal: Principal, case_id: uuid.UUID, reason: str) -> dict:
    """Mark the case entered in error (booked on the wrong patient, twice): it leaves the theatre list, any
    charge of it is credited, and its versions stay in the record's history."""
    current = _current(conn, case_id)
    appended = record.retract(conn, principal, current["id"], reason)
    return {"id": appended.id, "root_id": appended.root_id, "entry_status": appended.status,
            "reason": appended.reason}


# -- the operation note ------------------------------------------------------------------------------

_NOTE_COLUMNS = (entry.c.id, entry.c.root_id, entry.c.status.label("entry_status"), entry.c.author_id,
                 entry.c.recorded_at, entry.c.reason, *(c for c in operation_note.c if c.name != "entry_id"))


def notes_of(conn: Connection, surgery_roots: list[uuid.UUID]) -> dict[uuid.UUID, dict]:
    """The current operation note of each case named (by its root id) that has one, by case. Not audited: the
    caller notes the read of what it shows."""
    if not surgery_roots:
        return {}
    rows = conn.execute(
        sa.select(*_NOTE_COLUMNS).select_from(entry.join(operation_note, operation_note.c.entry_id == entry.c.id))
        .where(operation_note.c.surgery_id.in_(surgery_roots), record.current_clause())).mappings()
    return {row["surgery_id"]: dict(row) for row in rows}


def _note_of(conn: Connection, surgery_root: uuid.UUID) -> dict | None:
    return notes_of(conn, [surgery_root]).get(surgery_root)


def _note_detail(root_id: uuid.UUID, data: OperationNoteIn) -> dict:
    return {"surgery_id": root_id, **data.model_dump(include={
        "procedure_performed", "findings", "complications", "blood_loss_ml", "implants", "specimens",
        "post_op_instructions"}), "complications": data.complications or None, "implants": data.implants or None,
        "specimens": data.specimens or None}


def write_note(conn: Connection, principal: Principal, case_id: uuid.UUID, data: OperationNoteIn) -> dict:
    """The operation note, signed by the caller: once the case is in theatre, one per case (correct it after). A
    case cancelled after it went into theatre (abandoned after induction or on opening) has one too: what was
    found and why it stopped are what the ward and the next surgeon need."""
    current = _current(conn, case_id)
    if current["started_at"] is None:
        raise Conflict(f"this case is {STATUS_WORDS[current['status']]}"
                       + (" and never went into theatre: there was no operation to write a note of"
                          if current["status"] == "cancelled" else
                          ": the operation note is written once it is in theatre"), field="status")
    if _note_of(conn, current["root_id"]) is not None:
        raise Conflict("this case has its operation note already: correct it, saying why", field="note")
    record.append(conn, principal, "operation_note", patient_id=current["patient_id"],
                  encounter_id=current["encounter_id"], detail=_note_detail(current["root_id"], data))
    return case(conn, principal, current["root_id"], audited=False)


def correct_note(conn: Connection, principal: Principal, case_id: uuid.UUID, data: OperationNoteIn, reason: str,
                 version_id: uuid.UUID) -> dict:
    """The note's next version, signed by the caller, with the reason; the corrected one stays in its history."""
    current = _current(conn, case_id)
    note = _note_of(conn, current["root_id"])
    if note is None:
        raise NotFound("this case has no operation note to correct", case_id=str(case_id))
    if note["id"] != version_id:
        raise Conflict("the operation note was corrected by someone else since you loaded it; reload it",
                       field="version_id")
    record.append(conn, principal, "operation_note", patient_id=current["patient_id"], supersedes=note["id"],
                  detail=_note_detail(current["root_id"], data), reason=reason)
    return case(conn, principal, current["root_id"], audited=False)


# -- reading -----------------------------------------------------------------------------------------


def case(conn: Connection, principal: Principal, case_id: uuid.UUID, *, audited: bool = True) -> dict:
    """One case as the theatre sees it, with its checklist and operation note; audited as a read of both
    (a write's answer is audited by its write)."""
    current = _current(conn, case_id)
    note = _note_of(conn, current["root_id"])
    if audited:
        note_access(conn, principal, "read", current["patient_id"], "surgery", [current["id"]])
        if note is not None:
            note_access(conn, principal, "read", current["patient_id"], "operation_note", [note["id"]])
    return _shaped(current, note)


def patient_cases(conn: Connection, principal: Principal, patient_id: uuid.UUID, *, noting_none: bool = True,
                  with_notes: bool = False) -> list[dict]:
    """The patient's operations, newest planned first (cancelled ones too), audited as read; `noting_none=False`
    (the chart's summary, which asks of every chart) notes nothing where there is none. `with_notes` carries each
    case's operation note, its read audited too (the ward reads the post-operative instructions from the chart)."""
    service.require_patient(conn, patient_id)
    rows = [dict(r) for r in conn.execute(
        sa.select(*_CASE_COLUMNS).select_from(_CASES)
        .where(entry.c.patient_id == patient_id, record.current_clause())
        .order_by(surgery.c.planned_at.desc())).mappings()]
    if rows or noting_none:
        note_access(conn, principal, "read", patient_id, "surgery", [r["id"] for r in rows])
    notes = notes_of(conn, [r["root_id"] for r in rows]) if with_notes else {}
    if notes:
        note_access(conn, principal, "read", patient_id, "operation_note", [n["id"] for n in notes.values()])
    return [_shaped(r, notes.get(r["root_id"])) for r in rows]


# A case left in these states past its day is an operation nobody closed: it is never billed, and a patient
# still "in theatre" at midnight is a record that lies.
OPEN_STATUSES = ("scheduled", "in_theatre")


def theatre_list(conn: Connection, principal: Principal, day: dt.date, timezone: dt.tzinfo) -> dict:
    """The day's cases by theatre (the facility's theatres, then any a case names that the file has since
    dropped), each theatre's in time order; each patient listed is audited as read. Today's list also carries,
    first and marked `unclosed`, every case of a day before still scheduled or in theatre, so the theatre nurse
    sees it and closes it (completes or cancels it); a past day's list stays as that day was booked."""
    start = dt.datetime.combine(day, dt.time(0), timezone)
    on_the_day = sa.and_(surgery.c.planned_at >= start, surgery.c.planned_at < start + dt.timedelta(days=1))
    if day == dt.datetime.now(timezone).date():
        on_the_day = sa.or_(on_the_day, sa.and_(surgery.c.planned_at < start, surgery.c.status.in_(OPEN_STATUSES)))
    rows = [dict(r) for r in conn.execute(
        sa.select(*_CASE_COLUMNS).select_from(_CASES)
        .where(on_the_day, record.current_clause())
        .order_by(surgery.c.planned_at, entry.c.root_id)).mappings()]
    note_list_read(conn, principal, "surgery", rows)
    listed = {t["code"]: {**t, "cases": []} for t in theatres(conn)}
    for row in rows:
        shaped = _shaped(row) | {"unclosed": row["planned_at"] < start}
        listed.setdefault(row["theatre"], {"code": row["theatre"], "name": row["theatre_name"] or row["theatre"],
                                           "cases": []})["cases"].append(shaped)
    return {"day": day, "theatres": list(listed.values())}
