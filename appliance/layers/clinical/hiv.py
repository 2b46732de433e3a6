"""HIV care and treatment: the clinical layer's ART register (tenant revision t0039) — a person enrolled in HIV care
(`hiv_care`: the facility's unique ART number, the day HIV was confirmed, WHO clinical stage, baseline CD4, TB
screening; their status in care a later version), ART started and each regimen change (`hiv_regimen`), clinical
visits and ARV pick-ups (`hiv_visit`: days of ARVs dispensed, adherence, the next appointment) and viral load
results (`hiv_viral_load`), their withdrawal — and where each person stands, the facility's ART register and the
list of people to trace.

Where a person stands is computed, never stored (`standing`, pure), from these definitions:

- **Interruption in treatment (IIT)**: PEPFAR's Monitoring, Evaluation and Reporting (MER 2.6/2.7) indicator
  TX_ML: no clinical contact or ARV pick-up for more than 28 days since the last expected contact or pick-up.
  The last expected contact is the later of the last visit's next appointment and the day the ARVs it dispensed
  run out (visit day + days dispensed): a person who missed a clinic day holding pills is still on treatment.
  Before any visit is recorded, the day ART started is the last contact (record the initiation's pick-up as a
  visit). The 29th day after it is the first day of the interruption; a person transferred out, stopped or dead
  is not interrupted.
- **Active on ART** (what TX_CURR counts): ART started, in care here, not interrupted. A person whose death is
  certified (at any facility, appliance/substrate/deaths.py) stands as died from its day though their status in care
  was never changed here: not active, not counted, not on the list to trace (which would send a tracer to a bereaved
  family).
- **Viral load** (WHO, Consolidated guidelines on HIV prevention, testing, treatment, service delivery and
  monitoring, July 2021, section 4.5, and the 2023 policy brief on viral suppression): measured 6 months after ART
  starts, at 12 months, then every 12 months; after a result of 1000 copies/mL or more, again 3 months later,
  after enhanced adherence counselling. A result below 1000 copies/mL is **suppressed** (the threshold MER's
  TX_PVLS counts), 50 or fewer is **undetectable** (0 records "target not detected"), 1000 or more
  **unsuppressed**, flagged on the card and the register. Each result carries its **indication** (MER TX_PVLS's
  split, tenant revision t0043): **routine**, the schedule's, or **targeted**, for suspected treatment failure; as
  the clinician says, else by the schedule (`indication_of`). One recorded before t0043 has none (not documented).

The ART number is the facility's, given in sequence ("ART-00001") from `hiv_art_sequence` moved on under its row
lock (registers.next_number, the TB register's counter): two enrolments at once never share a number and a
refused one gives none back. One enrolment in force per person at a facility (returning after a transfer out,
their status is corrected back to in care). Viral load is recorded here, not as a laboratory result: no
facility's catalogue orders one (samples go to a hub laboratory), and the programme reads it by the sample's day.

Writes go through `record.append` (audited as writes of the patient's record); every read of a card is noted on
the audit seam, and the register notes each person it lists on their access log.
"""

from __future__ import annotations

import datetime as dt
import functools
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.engine import Connection

from appliance.layers.clinical import service
from appliance.layers.clinical.errors import Conflict, Invalid, NotFound
from appliance.layers.clinical.immunization_schedule import Span, read_policy
from appliance.layers.clinical.models import hiv_art_sequence, hiv_care, hiv_regimen, hiv_viral_load, hiv_visit, patient
from appliance.layers.clinical.registers import (
    RegimenFile,
    lock_patient,
    next_number,
    refuse_hiv_diagnosis_against_tb_register,
)
from appliance.substrate import deaths, record
from appliance.substrate.principal import Principal
from appliance.substrate.record import current_clause, entry, note_access, note_list_read

KIND, REGIMEN, VISIT, VIRAL_LOAD = "hiv_care", "hiv_regimen", "hiv_visit", "hiv_viral_load"
KINDS = (KIND, REGIMEN, VISIT, VIRAL_LOAD)
REGISTER = "hiv_register"  # how the facility's ART register reads on each listed person's access log
IIT_AFTER_DAYS = 28  # PEPFAR MER: more than 28 days since the last expected contact or pick-up
SUPPRESSED_BELOW = 1000  # copies/mL: MER TX_PVLS; WHO 2021's treatment-failure threshold
UNDETECTABLE_AT_MOST = 50  # copies/mL (WHO 2023 policy brief: not detected by the assays in use)
FIRST_VL_MONTHS, SECOND_VL_MONTHS, ROUTINE_VL_MONTHS, REPEAT_VL_MONTHS = 6, 12, 12, 3
REGISTER_LIMIT = 5000  # people in care at one facility; a large ART clinic follows a few thousand
STATUS_WORDS = {"active": "Active on ART", "iit": "Interruption in treatment", "not_on_art": "Enrolled, ART not "
                "started", "transferred_out": "Transferred out", "stopped": "Stopped ART", "died": "Died"}
CARE_STATUS_WORDS = {"in_care": "In care", "transferred_out": "Transferred out", "stopped": "Stopped ART",
                     "died": "Died"}
TB_SCREENING_WORDS = {"no_signs": "No signs of TB", "presumptive_tb": "Presumptive TB (investigate)",
                      "on_tb_treatment": "On TB treatment", "not_screened": "Not screened"}
ADHERENCE_WORDS = {"good": "Good (95% or more of doses)", "fair": "Fair (85-94%)", "poor": "Poor (below 85%)",
                   "not_assessed": "Not assessed"}
CHANGE_WORDS = {"initiation": "ART started", "substitution": "Substitution (same line)",
                "switch": "Switch (to a later line)"}
LINES = ("first", "second", "third")
INDICATION_WORDS = {"routine": "Routine (on schedule)", "targeted": "Targeted (suspected treatment failure)"}
# A sample taken up to this many days before the schedule's day is still the scheduled (routine) one: it is drawn at
# the clinic visit nearest the day, and a month's refill is the shortest interval between visits.
ROUTINE_EARLY_DAYS = 30


# -- the regimens (policies/hiv.toml) ------------------------------------------------------------------------------


class ProgrammeError(ValueError):
    """policies/hiv.toml cannot be used; the message names the file and the regimen at fault."""


class Regimen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    code: str = Field(min_length=2, max_length=40)
    name: str = Field(min_length=2, max_length=200)
    line: Literal["first", "second", "third"]

    @property
    def medicines(self) -> str:
        """The drugs, as the person taking them reads them: the name before its colon, after which the guidelines'
        place for the regimen ('preferred first line, adults and adolescents') is words for the clinician."""
        return self.name.split(":", 1)[0].strip()


class Programme(RegimenFile):
    regimen: tuple[Regimen, ...] = Field(min_length=1)


@functools.cache
def load_programme(path: Path) -> Programme:
    return read_policy(path, Programme, ProgrammeError, "regimen")


def months_after(day: dt.date, months: int) -> dt.date:
    return Span(months, "m").after(day)


# -- where a person stands, without the database -------------------------------------------------------------------


@dataclass(frozen=True)
class Visit:
    visit_on: dt.date
    arv_days: int
    next_appointment_on: dt.date


def last_expected_contact(art_started_on: dt.date, visits: Iterable[Visit]) -> dt.date:
    """The later of the last visit's next appointment and the day its ARVs run out; the day ART started when no
    visit is recorded."""
    last = max(visits, key=lambda v: v.visit_on, default=None)
    if last is None:
        return art_started_on
    return max(last.next_appointment_on, last.visit_on + dt.timedelta(days=last.arv_days))


def interrupted_from(expected: dt.date) -> dt.date:
    """The first day of an interruption in treatment: more than 28 days after the last expected contact."""
    return expected + dt.timedelta(days=IIT_AFTER_DAYS + 1)


def suppression(copies_per_ml: int) -> str:
    if copies_per_ml <= UNDETECTABLE_AT_MOST:
        return "undetectable"
    return "suppressed" if copies_per_ml < SUPPRESSED_BELOW else "unsuppressed"


def viral_load_due_on(art_started_on: dt.date, results: Iterable[tuple[dt.date, int]]) -> dt.date:
    """The day the next viral load is due: 6 months after ART started; at 12 months after a result before then;
    12 months after the last one; 3 months after an unsuppressed one (WHO 2021). Results before ART are not
    counted."""
    since = sorted((r for r in results if r[0] >= art_started_on), key=lambda r: r[0])
    if not since:
        return months_after(art_started_on, FIRST_VL_MONTHS)
    sampled_on, copies = since[-1]
    if copies >= SUPPRESSED_BELOW:
        return months_after(sampled_on, REPEAT_VL_MONTHS)
    if sampled_on < months_after(art_started_on, SECOND_VL_MONTHS):
        return months_after(art_started_on, SECOND_VL_MONTHS)
    return months_after(sampled_on, ROUTINE_VL_MONTHS)


def indication_of(given: str | None, sampled_on: dt.date, art_started_on: dt.date | None,
                  earlier: Iterable[tuple[dt.date, int]]) -> str | None:
    """Why the viral load was taken, as MER's TX_PVLS splits it: as the clinician said; else routine where the
    monitoring schedule had one due by the sample's day (from ROUTINE_EARLY_DAYS before it; the repeat 3 months after
    an unsuppressed result is the schedule's too), targeted where it had not (a sample off the schedule is one taken
    for suspected treatment failure). Before ART there is no schedule: None (not documented) unless said."""
    if given is not None:
        return given
    if art_started_on is None or sampled_on < art_started_on:
        return None
    due_on = viral_load_due_on(art_started_on, [r for r in earlier if r[0] < sampled_on])
    return "routine" if sampled_on >= due_on - dt.timedelta(days=ROUTINE_EARLY_DAYS) else "targeted"


def standing(*, care_status: str, art_started_on: dt.date | None, visits: Sequence[Visit],
             results: Sequence[tuple[dt.date, int]], today: dt.date) -> dict:
    """Where a person stands on `today`: their status (active, iit, not_on_art, or their status in care), the
    last expected contact and the day an interruption began, the viral load due and whether it is due, and the
    last result's suppression."""
    # Of two results of one day, the one recorded later, as the schedule (viral_load_due_on) and the national count
    # read it.
    last_vl = sorted(results, key=lambda r: r[0])[-1] if results else None
    shown: dict[str, Any] = {"expected_contact_on": None, "interrupted_from": None, "viral_load_due_on": None,
                             "viral_load_due": False,
                             "last_viral_load": None if last_vl is None else {
                                 "sampled_on": last_vl[0], "copies_per_ml": last_vl[1],
                                 "suppression": suppression(last_vl[1])},
                             "unsuppressed": last_vl is not None and last_vl[1] >= SUPPRESSED_BELOW}
    if care_status != "in_care":
        return {**shown, "status": care_status}
    if art_started_on is None:
        return {**shown, "status": "not_on_art"}
    expected = last_expected_contact(art_started_on, visits)
    due_on = viral_load_due_on(art_started_on, results)
    iit = today >= interrupted_from(expected)
    return {**shown, "status": "iit" if iit else "active", "expected_contact_on": expected,
            "interrupted_from": interrupted_from(expected) if iit else None,
            "viral_load_due_on": due_on, "viral_load_due": today >= due_on}


def change_refusal(change: str, current: Regimen, new: Regimen) -> str | None:
    """Why `change` from `current` to `new` is not what WHO calls it (a sentence), or None: a substitution stays
    in the line, a switch moves to a later one."""
    if new.code == current.code:
        return f"the person is on {current.code} already"
    step = LINES.index(new.line) - LINES.index(current.line)
    if change == "substitution" and step != 0:
        return (f"a substitution replaces a drug within the same line; {new.code} is {new.line} line and "
                f"{current.code} {current.line}: a move to a later line is a switch (WHO 2021)")
    if change == "switch" and step <= 0:
        return (f"a switch moves to a later line after treatment failure; {new.code} is {new.line} line, as "
                f"{current.code} is {current.line}: record a substitution (WHO 2021)")
    return None


# -- reading the record ------------------------------------------------------------------------------------------

_TABLES = {KIND: hiv_care, REGIMEN: hiv_regimen, VISIT: hiv_visit, VIRAL_LOAD: hiv_viral_load}
_ORDER = {REGIMEN: hiv_regimen.c.started_on, VISIT: hiv_visit.c.visit_on, VIRAL_LOAD: hiv_viral_load.c.sampled_on}


def _rows(conn: Connection, kind: str, *where: Any) -> list[dict]:
    table = _TABLES[kind]
    query = (sa.select(*service.ENTRY_COLUMNS, entry.c.patient_id, *(c for c in table.c if c.name != "entry_id"))
             .select_from(entry.join(table, table.c.entry_id == entry.c.id))
             .where(entry.c.kind == kind, entry.c.status != "entered_in_error", current_clause(), *where))
    if kind in _ORDER:
        query = query.order_by(_ORDER[kind], entry.c.recorded_at)
    return [dict(r) for r in conn.execute(query).mappings()]


def _of_care(conn: Connection, care_ids: Sequence[uuid.UUID]) -> dict[str, dict[uuid.UUID, list[dict]]]:
    """Each care record's regimens, visits and viral loads, oldest first."""
    found: dict[str, dict[uuid.UUID, list[dict]]] = {k: {} for k in (REGIMEN, VISIT, VIRAL_LOAD)}
    if not care_ids:
        return found
    for kind in found:
        for row in _rows(conn, kind, _TABLES[kind].c.care_id.in_(list(care_ids))):
            found[kind].setdefault(row["care_id"], []).append(row)
    return found


def _shaped(care: dict, regimens: list[dict], visits: list[dict], loads: list[dict], programme: Programme,
            today: dt.date, died_on: dt.date | None) -> dict:
    """`died_on`, the day of a death certificate in force (at any facility): a person still in care here by the card
    stands as died from it, not active nor to trace."""
    started = regimens[0]["started_on"] if regimens else None
    current = regimens[-1] if regimens else None
    if care["status"] == "in_care" and died_on is not None:
        care = {**care, "status": "died", "status_on": died_on}
    where = standing(care_status=care["status"], art_started_on=started,
                     visits=[Visit(v["visit_on"], v["arv_days"], v["next_appointment_on"]) for v in visits],
                     results=[(r["sampled_on"], r["copies_per_ml"]) for r in loads], today=today)
    known = programme.by_code.get(current["regimen"]) if current else None
    return {**care, **where, "art_started_on": started, "regimen": current["regimen"] if current else None,
            "regimen_name": known.name if known else None, "line": known.line if known else None,
            "regimens": regimens, "visits": visits,
            "viral_loads": [{**r, "suppression": suppression(r["copies_per_ml"])} for r in loads]}


def _care_of(conn: Connection, patient_id: uuid.UUID) -> dict | None:
    found = _rows(conn, KIND, entry.c.patient_id == patient_id)
    return found[0] if found else None


def _current(conn: Connection, principal: Principal, patient_id: uuid.UUID, programme: Programme,
             today: dt.date) -> dict | None:
    """The enrolment in force with its regimens, visits and viral loads, where the person stands; the read noted
    once, as the card's, naming every row shown."""
    care = _care_of(conn, patient_id)
    if care is None:
        note_access(conn, principal, "read", patient_id, KIND, [])
        return None
    of = _of_care(conn, [care["root_id"]])
    mine = {kind: of[kind].get(care["root_id"], []) for kind in of}
    note_access(conn, principal, "read", patient_id, KIND,
                [care["id"], *(row["id"] for rows in mine.values() for row in rows)])
    return _shaped(care, mine[REGIMEN], mine[VISIT], mine[VIRAL_LOAD], programme, today,
                   deaths.days_of_death(conn, [patient_id]).get(patient_id))


def card(conn: Connection, principal: Principal, patient_id: uuid.UUID, *, programme: Programme,
         today: dt.date) -> dict:
    """The person's HIV care card: the enrolment here with its status, regimen history, visits and viral loads,
    where they stand; and what was marked entered in error. The read is audited."""
    service.require_patient(conn, patient_id)
    shaped = _current(conn, principal, patient_id, programme, today)
    # Only the kinds with a record withdrawn are read (and noted) for the list of them: most cards have none. Each
    # keeps its kind, which says what it was (an enrolment, a regimen, a visit, a viral load).
    withdrawn_kinds = conn.execute(sa.select(entry.c.kind).distinct().where(
        entry.c.patient_id == patient_id, entry.c.kind.in_(KINDS), entry.c.status == "entered_in_error")).scalars()
    withdrawn = [{**w, "kind": kind} for kind in sorted(withdrawn_kinds)
                 for w in service.list_withdrawn(conn, principal, patient_id, _TABLES[kind], kind)]
    return {"patient_id": patient_id, "today": today, "care": shaped, "withdrawn": withdrawn}


def own_record(conn: Connection, principal: Principal, patient_id: uuid.UUID, *, programme: Programme,
               today: dt.date) -> dict | None:
    """What the person's own portal shows (appliance/web/me.py): their ART number, status in care, regimen and
    since when, the next appointment and the day their ARVs run out, the next viral load's day; never a viral load's
    value (the release rule for its code keeps a result to be given in person). None where they are not enrolled here,
    and then nothing is noted (a log that named HIV care of someone never in it would itself say something)."""
    if _care_of(conn, patient_id) is None:
        return None
    shaped = _current(conn, principal, patient_id, programme, today)
    last = shaped["visits"][-1] if shaped["visits"] else None
    return {"art_number": shaped["art_number"], "in_care": shaped["status"] in ("active", "iit", "not_on_art"),
            "status": CARE_STATUS_WORDS.get(shaped["status"]),
            "status_on": shaped["status_on"], "art_started_on": shaped["art_started_on"],
            "regimen": shaped["regimen"], "regimen_name": known.medicines if (
                known := programme.by_code.get(shaped["regimen"])) else None,
            "next_appointment_on": last["next_appointment_on"] if last else None,
            "arvs_until": last["visit_on"] + dt.timedelta(days=last["arv_days"]) if last else None,
            "viral_load_due_on": shaped["viral_load_due_on"]}


def _answer(conn: Connection, principal: Principal, patient_id: uuid.UUID, programme: Programme,
            today: dt.date) -> dict:
    """The enrolment as it now stands, after a write (a read of it, noted)."""
    answered = _current(conn, principal, patient_id, programme, today)
    if answered is None:
        raise NotFound("no HIV care enrolment in force on this patient's chart")
    return answered


# -- writing -------------------------------------------------------------------------------------------------------


def _not_future(day: dt.date, today: dt.date, what: str, field: str) -> None:
    if day > today:
        raise Invalid(f"{what}, {day.isoformat()}, is in the future", field=field)


def _care(conn: Connection, patient_id: uuid.UUID, care_id: uuid.UUID, *, lock: bool = False) -> dict:
    """The enrolment in force of the record `care_id` names (any version) on this patient's chart, or 404."""
    root = conn.execute(sa.select(entry.c.root_id).where(entry.c.id == care_id, entry.c.patient_id == patient_id,
                                                         entry.c.kind == KIND)).scalar()
    if root is not None and lock:
        lock_patient(conn, patient_id)
    found = _rows(conn, KIND, entry.c.root_id == root) if root is not None else []
    if not found:
        raise NotFound(f"no HIV care enrolment {care_id} in force on this patient's chart", entry_id=str(care_id))
    return found[0]


def _in_care(care: dict, act: str) -> None:
    if care["status"] != "in_care":
        raise Invalid(f"{act} is not recorded for a person {CARE_STATUS_WORDS[care['status']].lower()} on "
                      f"{care['status_on'].isoformat()}: correct their status first", field="status")


_ENROLMENT = ("enrolled_on", "diagnosed_on", "who_stage", "cd4_baseline", "tb_screening", "note")


def enrol(conn: Connection, principal: Principal, patient_id: uuid.UUID, data: Any, *, programme: Programme,
          today: dt.date) -> dict:
    """Enrol a person in HIV care: the next ART number of the facility. Refused (409) while they are enrolled here;
    (422) a day in the future, a diagnosis after the enrolment or before birth, or on or before the start of a TB
    treatment here recorded other than HIV-positive (registers.py), a person recorded deceased."""
    service.require_chart(conn, patient_id, data.encounter_id)
    _not_future(data.enrolled_on, today, "the enrolment's day", "enrolled_on")
    if data.diagnosed_on > data.enrolled_on:
        raise Invalid(f"HIV must be confirmed before enrolment in care: the diagnosis's day, "
                      f"{data.diagnosed_on.isoformat()}, is after the enrolment's", field="diagnosed_on")
    born = conn.execute(sa.select(patient.c.birth_date).where(patient.c.id == patient_id)).scalar()
    if born is not None and data.diagnosed_on < born:
        raise Invalid(f"the diagnosis cannot be before the person's birth on {born.isoformat()}",
                      field="diagnosed_on")
    refuse_hiv_diagnosis_against_tb_register(conn, principal, patient_id, data.diagnosed_on)
    deaths.refuse_if_deceased(conn, patient_id, "an enrolment in HIV care")
    lock_patient(conn, patient_id)
    if (enrolled := _care_of(conn, patient_id)) is not None:
        raise Conflict(f"this person is enrolled in HIV care here already (ART number {enrolled['art_number']}, "
                       f"{enrolled['enrolled_on'].isoformat()}): a returning person's status is corrected back "
                       "to in care", field="patient_id", care_id=str(enrolled["root_id"]))
    number = next_number(conn, hiv_art_sequence, register="art")
    record.append(conn, principal, KIND, patient_id=patient_id, encounter_id=data.encounter_id,
                  detail={**data.model_dump(include=set(_ENROLMENT)), "art_number": f"ART-{number:05d}",
                          "status": "in_care", "status_on": None})
    return _answer(conn, principal, patient_id, programme, today)


def _regimen(programme: Programme, code: str) -> Regimen:
    found = programme.by_code.get(code)
    if found is None:
        raise Invalid(f"{code!r} is not a regimen of this appliance's HIV programme; it has "
                      f"{', '.join(programme.by_code)}", field="regimen")
    return found


def change_regimen(conn: Connection, principal: Principal, patient_id: uuid.UUID, care_id: uuid.UUID, data: Any,
                   *, programme: Programme, today: dt.date) -> dict:
    """Start ART (change "initiation") or change the regimen (a substitution within the line, a switch to a later
    one, with the reason). Refused (409) a second initiation; (422) a change before ART started, a regimen not in
    policies/hiv.toml, a substitution across lines or a switch within one, a day in the future, before the
    enrolment or before the regimen it replaces, a person no longer in care."""
    care = _care(conn, patient_id, care_id, lock=True)
    _in_care(care, "a regimen")
    new = _regimen(programme, data.regimen)
    _not_future(data.started_on, today, "the regimen's first day", "started_on")
    if data.started_on < care["enrolled_on"]:
        raise Invalid(f"the regimen's first day is before the enrolment on {care['enrolled_on'].isoformat()}",
                      field="started_on")
    history = _of_care(conn, [care["root_id"]])[REGIMEN].get(care["root_id"], [])
    if data.change == "initiation":
        if history:
            raise Conflict(f"ART was started on {history[0]['started_on'].isoformat()} ({history[0]['regimen']}): "
                           "record a substitution or switch", field="change")
    else:
        if not history:
            raise Invalid("ART has not been started: record its initiation first", field="change")
        if not data.reason:
            raise Invalid("say why the regimen changes (toxicity, stock-out, treatment failure...)", field="reason")
        if data.started_on < history[-1]["started_on"]:
            raise Invalid(f"the change's day is before the current regimen's first day, "
                          f"{history[-1]['started_on'].isoformat()}", field="started_on")
        refusal = change_refusal(data.change, _regimen(programme, history[-1]["regimen"]), new)
        if refusal is not None:
            raise Invalid(refusal[0].upper() + refusal[1:], field="change")
    record.append(conn, principal, REGIMEN, patient_id=patient_id, encounter_id=data.encounter_id,
                  detail={"care_id": care["root_id"], "started_on": data.started_on, "regimen": new.code,
                          "change": data.change, "reason": data.reason if data.change != "initiation" else None})
    return _answer(conn, principal, patient_id, programme, today)


def record_visit(conn: Connection, principal: Principal, patient_id: uuid.UUID, care_id: uuid.UUID, data: Any, *,
                 programme: Programme, today: dt.date) -> dict:
    """Record a clinical visit or ARV pick-up. Refused (422): a day in the future or before the enrolment, ARVs
    dispensed before ART started, a next appointment not after the visit, a person no longer in care."""
    care = _care(conn, patient_id, care_id)
    _in_care(care, "a visit")
    _not_future(data.visit_on, today, "the visit's day", "visit_on")
    if data.visit_on < care["enrolled_on"]:
        raise Invalid(f"the visit's day is before the enrolment on {care['enrolled_on'].isoformat()}",
                      field="visit_on")
    if data.next_appointment_on <= data.visit_on:
        raise Invalid("the next appointment must be after the visit", field="next_appointment_on")
    started = _of_care(conn, [care["root_id"]])[REGIMEN].get(care["root_id"], [])
    if data.arv_days and (not started or started[0]["started_on"] > data.visit_on):
        raise Invalid("ARVs are dispensed from the day ART starts: record the initiation first, or dispense none",
                      field="arv_days")
    record.append(conn, principal, VISIT, patient_id=patient_id, encounter_id=data.encounter_id,
                  detail={**data.model_dump(include={"visit_on", "arv_days", "adherence", "next_appointment_on",
                                                     "note"}), "care_id": care["root_id"]})
    return _answer(conn, principal, patient_id, programme, today)


def record_viral_load(conn: Connection, principal: Principal, patient_id: uuid.UUID, care_id: uuid.UUID, data: Any,
                      *, programme: Programme, today: dt.date) -> dict:
    """Record a viral load result by its sample's day and why it was taken (routine or targeted; when not said, as
    the schedule had it, `indication_of`). Refused (422): a sample in the future or before HIV was diagnosed."""
    care = _care(conn, patient_id, care_id)
    _not_future(data.sampled_on, today, "the sample's day", "sampled_on")
    if data.sampled_on < care["diagnosed_on"]:
        raise Invalid(f"the sample's day is before HIV was diagnosed on {care['diagnosed_on'].isoformat()}",
                      field="sampled_on")
    of = _of_care(conn, [care["root_id"]])
    started = of[REGIMEN].get(care["root_id"], [])
    indication = indication_of(data.indication, data.sampled_on, started[0]["started_on"] if started else None,
                               [(r["sampled_on"], r["copies_per_ml"]) for r in of[VIRAL_LOAD].get(care["root_id"], [])])
    record.append(conn, principal, VIRAL_LOAD, patient_id=patient_id, encounter_id=data.encounter_id,
                  detail={**data.model_dump(include={"sampled_on", "copies_per_ml", "note"}),
                          "indication": indication, "care_id": care["root_id"]})
    return _answer(conn, principal, patient_id, programme, today)


def change_status(conn: Connection, principal: Principal, patient_id: uuid.UUID, care_id: uuid.UUID, data: Any, *,
                  programme: Programme, today: dt.date) -> dict:
    """A new version of the enrolment with the person's status in care: transferred out, stopped or died with the
    day, or back in care. Refused (409) the status they have, or a version changed since; (422) a day in the
    future or before the enrolment, in care with a day, a death recorded and another status."""
    care = _care(conn, patient_id, care_id, lock=True)
    if data.version_id is not None and data.version_id != care["id"]:
        raise Conflict("this enrolment was changed since you loaded it; reload it and try again",
                       field="version_id", current=str(care["id"]))
    if data.status == care["status"]:
        raise Conflict(f"the person's status is {CARE_STATUS_WORDS[care['status']].lower()} already",
                       field="status")
    if data.status == "in_care":
        if data.status_on is not None:
            raise Invalid("back in care takes no day: the next visit records the return", field="status_on")
        if (death := deaths.death_of(conn, patient_id)) is not None:
            raise Invalid(f"this person was {deaths.sentence(death)}", field="status")
    else:
        if data.status_on is None:
            raise Invalid("give the day of the change", field="status_on")
        _not_future(data.status_on, today, "the day of the change", "status_on")
        if data.status_on < care["enrolled_on"]:
            raise Invalid(f"the day is before the enrolment on {care['enrolled_on'].isoformat()}", field="status_on")
    detail = {k: care[k] for k in (*_ENROLMENT, "art_number")}
    record.append(conn, principal, KIND, patient_id=patient_id, supersedes=care["id"], reason=data.reason,
                  detail={**detail, "status": data.status, "status_on": data.status_on})
    return _answer(conn, principal, patient_id, programme, today)


def withdraw(conn: Connection, principal: Principal, patient_id: uuid.UUID, entry_id: uuid.UUID,
             reason: str) -> dict:
    """Mark an enrolment, regimen, visit or viral load entered in error: nothing is deleted; the card, the register
    and the national count no longer count it. An enrolment's ART number is not given again."""
    # Any version of the record names it (the card shows a record by its root id): the one in force is withdrawn.
    current = conn.execute(
        sa.select(entry.c.id).where(entry.c.root_id == sa.select(entry.c.root_id).where(
            entry.c.id == entry_id, entry.c.patient_id == patient_id, entry.c.kind.in_(KINDS)).scalar_subquery(),
            entry.c.status != "entered_in_error", current_clause())).scalar()
    if current is None:
        raise NotFound(f"no HIV care record {entry_id} in force on this patient's chart", entry_id=str(entry_id))
    return service.retraction_of(conn, record.retract(conn, principal, current, reason))


# -- the facility's ART register -----------------------------------------------------------------------------------


def register(conn: Connection, principal: Principal, *, programme: Programme, today: dt.date) -> dict:
    """The facility's ART register: every person enrolled here, by ART number, with their regimen, status, the viral
    load due and the last result; the people to trace (an interruption in treatment, longest first), and the
    counts by status. Each person listed is audited on their access log."""
    cares = sorted(_rows(conn, KIND), key=lambda c: c["art_number"])[:REGISTER_LIMIT]
    people = {r["id"]: dict(r) for r in conn.execute(
        sa.select(patient.c.id, patient.c.mrn, patient.c.family_name, patient.c.given_names, patient.c.sex,
                  patient.c.birth_date).where(patient.c.id.in_({c["patient_id"] for c in cares}))).mappings()}
    of = _of_care(conn, [c["root_id"] for c in cares])
    died = deaths.days_of_death(conn, list(people))
    note_list_read(conn, principal, REGISTER, cares)
    rows = []
    for care in cares:
        root = care["root_id"]
        shaped = _shaped(care, of[REGIMEN].get(root, []), of[VISIT].get(root, []), of[VIRAL_LOAD].get(root, []),
                         programme, today, died.get(care["patient_id"]))
        shaped["patient"] = people[care["patient_id"]]
        rows.append(shaped)
    to_trace = sorted((r for r in rows if r["status"] == "iit"), key=lambda r: r["interrupted_from"])
    counts = {status: sum(1 for r in rows if r["status"] == status) for status in STATUS_WORDS}
    return {"today": today, "people": rows, "to_trace": to_trace, "counts": counts,
            "viral_load_due": sum(1 for r in rows if r["viral_load_due"]),
            "unsuppressed": sum(1 for r in rows if r["unsuppressed"] and r["status"] in ("active", "iit"))}
