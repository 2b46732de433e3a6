"""Discharge summaries: what an inpatient leaves hospital with, written and signed by a clinician.

A discharge summary is a note (the `note` kind, one entry) written from the appliance's own template
(`TEMPLATE`, code "discharge"), on the inpatient encounter it closes. What the record already knows of
the stay is offered pre-filled (`draft`): the diagnoses recorded in the stay, the results taken in it,
the medicines active now (what the patient goes home on) and the active allergies; the clinician checks
and edits those, and writes the hospital course, the condition at discharge, the instructions and the
follow-up. A result a release rule keeps to be given to the patient in person (an HIV test, REL-001) and not
recorded as given yet is left out of the pre-filled results and named apart, for the clinician to give first:
the summary is printed for the patient and shown on their portal, and the portal holds back any summary
signed while such a result was on the record until it is given (`held_from_portal`). Signing appends the
note through `record.append`, which audits the write; a stay has one discharge summary in force, and a
correction is a new version of it by its author with a reason (the record's rule: the earlier version stays
in its history). Every read of patient data here is noted on the audit seam.

The template is the appliance's, not a facility's: the stay's facts it is pre-filled with are read by
this code, so its fields cannot vary by facility. Its code is lower case, which a facility's template
codes never are (`tenant_config.Code`), so no facility template can be mistaken for it, and the notes
API (which looks templates up in the facility's configuration) cannot write one around this module.
"""

from __future__ import annotations

import datetime as dt
import uuid
import zoneinfo
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from appliance.layers.clinical import catalogue, service
from appliance.layers.clinical.errors import Conflict, Invalid, NotFound
from appliance.layers.clinical.models import (
    allergy,
    condition,
    encounter,
    medication_reconciliation,
    medication_request,
    note,
    result,
    result_disclosure,
)
from appliance.substrate import record
from appliance.substrate.principal import Principal
from appliance.substrate.record import current_clause, entry, note_access
from appliance.substrate.tenant_config import NoteTemplateConfig

CODE = "discharge"
TITLE = "Discharge summary"
# What the audit trail names a summary's reads and writes: it is stored as a note, but the patient's access log
# should say "your discharge summary", and an auditor should see which note it was.
AUDITED_AS = "discharge_summary"
CONDITIONS = ["recovered", "improved", "unchanged", "deteriorated"]
TEMPLATE = NoteTemplateConfig.model_validate({
    "code": "DISCHARGE", "name": TITLE, "specialty": "general", "fields": [
        {"key": "diagnoses", "label": "Diagnoses", "type": "text", "required": True},
        {"key": "hospital_course", "label": "Hospital course", "type": "text", "required": True},
        {"key": "results", "label": "Key results", "type": "text"},
        {"key": "medications", "label": "Medicines on discharge", "type": "text", "required": True},
        {"key": "allergies", "label": "Allergies", "type": "text", "required": True},
        {"key": "condition", "label": "Condition at discharge", "type": "choice", "required": True,
         "choices": CONDITIONS},
        {"key": "instructions", "label": "Discharge instructions", "type": "text", "required": True},
        {"key": "follow_up", "label": "Follow-up (when and where)", "type": "text", "required": True},
        {"key": "follow_up_date", "label": "Follow-up date", "type": "date"},
    ]}).model_copy(update={"code": CODE})  # validated as a facility's would be, then given the appliance's code
# The fields `draft` fills from the record; the clinician writes the others.
FROM_THE_RECORD = ("diagnoses", "results", "medications", "allergies")
# An inpatient encounter a summary can close: one that began (a planned admission has no stay yet).
STAY_STATUSES = ("arrived", "in_progress", "finished")
# A LOINC code → the release rule (REL-001...) keeping its results to be given in person, None for none: the
# release rules' evaluation (`ReleaseRules.in_person_rule`), handed in by the caller, as layers import no other.
InPerson = Callable[[str], str | None]
RESULT_FLAGS = {"H": "high", "L": "low", "HH": "critical high", "LL": "critical low", "A": "abnormal", "AA": "critical"}

_STAY_COLUMNS = (encounter.c.id, encounter.c.encounter_class, encounter.c.status, encounter.c.reason,
                 encounter.c.ward_code, encounter.c.started_at, encounter.c.ended_at)


# -- the stay ----------------------------------------------------------------------------------------


def _stays(conn: Connection, patient_id: uuid.UUID) -> list[dict]:
    """The patient's inpatient stays that began, the open one first, then the latest; not audited."""
    return [dict(r) for r in conn.execute(
        sa.select(*_STAY_COLUMNS)
        .where(encounter.c.patient_id == patient_id, encounter.c.encounter_class == "inpatient",
               encounter.c.status.in_(STAY_STATUSES))
        .order_by((encounter.c.status == "finished").asc(), encounter.c.started_at.desc().nulls_last())
    ).mappings()]


def stay_of(conn: Connection, patient_id: uuid.UUID, encounter_id: uuid.UUID | None) -> dict:
    """The stay a summary closes: `encounter_id`, which must be an inpatient stay of this patient that
    began, or (None) the patient's open stay, else their latest. A 422 naming `encounter_id` otherwise."""
    if encounter_id is None:
        stays = _stays(conn, patient_id)
        if not stays:
            raise Invalid("this patient has no inpatient stay to write a discharge summary for: a discharge "
                          "summary closes an inpatient admission", field="encounter_id")
        return stays[0]
    found = conn.execute(sa.select(*_STAY_COLUMNS).where(encounter.c.id == encounter_id,
                                                         encounter.c.patient_id == patient_id)).mappings().first()
    if found is None:
        raise Invalid(f"encounter {encounter_id} is not an encounter of this patient", field="encounter_id")
    if found["encounter_class"] != "inpatient":
        raise Invalid(f"a discharge summary closes an inpatient admission; encounter {encounter_id} is an "
                      f"{found['encounter_class']} visit", field="encounter_id")
    if found["status"] not in STAY_STATUSES:
        raise Invalid(f"this admission is {found['status']}: a discharge summary is written for a stay that "
                      "began", field="encounter_id")
    return dict(found)


# -- what the record says of the stay ---------------------------------------------------------------


def _plain(value: Decimal) -> str:
    return format(value, "f")


def _condition_line(row: dict) -> str:
    status = "" if row["verification"] == "confirmed" else f", {row['verification']}"
    return f"{row['display']} ({row['code']}){status}"


def _medication_line(row: dict) -> str:
    line = f"{row['drug']} {_plain(row['dose'])} {row['dose_unit']} {row['route']}, {row['frequency']}"
    if row["duration_days"]:
        line += f", for {row['duration_days']} days"
    return line + (f". {row['instructions']}" if row["instructions"] else "")


def _allergy_line(row: dict) -> str:
    line = row["substance"] + (f": {row['reaction']}" if row["reaction"] else "")
    return line + (f" ({row['severity']})" if row["severity"] else "")


def _result_line(row: dict, tz: zoneinfo.ZoneInfo) -> str:
    if row["value_numeric"] is not None:
        value = f"{_plain(row['value_numeric'])} {row['unit'] or ''}".strip()
    else:
        value = row["value_text"] or ""
    flag = f" ({RESULT_FLAGS[row['flag']]})" if row["flag"] in RESULT_FLAGS else ""
    return f"{row['display']} {value}{flag}, {row['occurred_at'].astimezone(tz):%d %b %Y}"


def _in_stay(row: dict, stay: dict, now: dt.datetime) -> bool:
    """Written on the stay, or taken while the patient was in (a laboratory's result often names no
    encounter)."""
    if row["encounter_id"] == stay["id"]:
        return True
    began = stay["started_at"]
    return began is not None and began <= row["occurred_at"] <= (stay["ended_at"] or now)


def _not_given(row: dict, in_person: InPerson, now: dt.datetime) -> bool:
    disclosed = row["disclosed_at"]
    return in_person(row["code"]) is not None and (disclosed is None or disclosed > now)


def draft(conn: Connection, principal: Principal, patient_id: uuid.UUID, encounter_id: uuid.UUID | None, *,
          tz: zoneinfo.ZoneInfo, in_person: InPerson) -> dict:
    """A discharge summary of the stay as the record has it, to check and complete before signing: the
    stay, the template, and its fields filled from the record (FROM_THE_RECORD), one line each: the
    diagnoses recorded in the stay (else the active problems), the latest result of each test taken in
    it, the medicines active now and the active allergies. `summary_id` names the summary in force for
    the stay, if one was signed. `held_back` names the latest results a release rule keeps to be given in
    person (`in_person`) that no clinician has recorded as given: left out of the results, for the form to
    say why. Each kind read is audited."""
    service.require_patient(conn, patient_id)
    stay = stay_of(conn, patient_id, encounter_id)
    now = dt.datetime.now(dt.UTC)
    conditions = service.current_rows(conn, condition, patient_id)
    diagnoses = [c for c in conditions if c["encounter_id"] == stay["id"]] or \
        [c for c in conditions if c["clinical_status"] == "active"]
    medications = _one_line_per_medicine(conn, principal, patient_id, service.current_rows(
        conn, medication_request, patient_id, medication_request.c.status == "active"))
    allergies = service.current_rows(conn, allergy, patient_id, allergy.c.clinical_status == "active")
    latest: dict[str, dict] = {}
    for taken in service.results_of(conn, patient_id, limit=1000):  # newest first: the first of each code
        if _in_stay(taken, stay, now):
            latest.setdefault(taken["code"], taken)
    stay_results = sorted(latest.values(), key=lambda r: r["display"])
    held_back = [r for r in stay_results if _not_given(r, in_person, now)]
    results = [r for r in stay_results if r not in held_back]
    note_access(conn, principal, "read", patient_id, "encounter", [stay["id"]])
    for kind, rows in (("condition", diagnoses), ("medication_request", medications), ("allergy", allergies),
                       ("result", stay_results)):
        if rows:
            note_access(conn, principal, "read", patient_id, kind, [r["id"] for r in rows])
    in_force = _in_force(conn, patient_id, stay["id"])
    return {
        "stay": stay, "template": TEMPLATE.model_dump(mode="json"),
        "summary_id": in_force["id"] if in_force else None,
        "held_back": [{"id": r["id"], "test": r["display"], "taken_at": r["occurred_at"],
                       "rule_id": in_person(r["code"])} for r in held_back],
        "fields": {
            "diagnoses": "\n".join(_condition_line(c) for c in diagnoses),
            "results": "\n".join(_result_line(r, tz) for r in results),
            "medications": "\n".join(_medication_line(m) for m in medications) or "No medicines.",
            "allergies": "\n".join(_allergy_line(a) for a in allergies) or "No known allergies.",
        },
    }


def _one_line_per_medicine(conn: Connection, principal: Principal, patient_id: uuid.UUID,
                           medications: list[dict]) -> list[dict]:
    """The active prescriptions less those the stay continued (medicines reconciliation): a medicine the
    patient came in on stays active (it is what they take at home), and the stay's prescription continuing
    it is the same medicine, so the discharge lists the continuation only. The decisions read are audited."""
    continued = conn.execute(
        sa.select(entry.c.id, medication_reconciliation.c.medication_request_id)
        .select_from(entry.join(medication_reconciliation, medication_reconciliation.c.entry_id == entry.c.id))
        .where(entry.c.patient_id == patient_id, current_clause(), entry.c.status != "entered_in_error",
               medication_reconciliation.c.decision == "continue",
               medication_reconciliation.c.continued_as.in_([m["root_id"] for m in medications]))
    ).all()
    if continued:
        note_access(conn, principal, "read", patient_id, "medication_reconciliation", [row.id for row in continued])
    origins = {row.medication_request_id for row in continued}
    return [m for m in medications if m["root_id"] not in origins]


# -- signing, reading and correcting ----------------------------------------------------------------


def _summaries(conn: Connection, patient_id: uuid.UUID, *where: Any) -> list[dict]:
    """Discharge summaries in force, newest first, each with the reason of its last correction; not audited."""
    query = service.current_query(note, patient_id, note.c.template_code == CODE, *where) \
        .add_columns(entry.c.reason).order_by(service.RECORD_OCCURRED_AT.desc())
    return [dict(r) for r in conn.execute(query).mappings()]


def _in_force(conn: Connection, patient_id: uuid.UUID, encounter_id: uuid.UUID) -> dict | None:
    found = _summaries(conn, patient_id, entry.c.encounter_id == encounter_id)
    return found[0] if found else None


def _with_stays(conn: Connection, rows: list[dict]) -> list[dict]:
    stays = {s["id"]: s for s in conn.execute(
        sa.select(*_STAY_COLUMNS).where(encounter.c.id.in_({r["encounter_id"] for r in rows}))).mappings()}
    return [{**r, "stay": dict(stays[r["encounter_id"]])} for r in rows]


def sign(conn: Connection, principal: Principal, patient_id: uuid.UUID, encounter_id: uuid.UUID,
         fields: dict[str, Any]) -> dict:
    """Sign the discharge summary of a stay: one note entry on the stay's encounter, its fields checked
    against the template (a required field missing is a 422 naming it). A stay with a summary in force is
    refused (409): the summary is corrected, not written twice."""
    service.require_patient(conn, patient_id)
    stay = stay_of(conn, patient_id, encounter_id)
    clean = catalogue.validate_note_fields(TEMPLATE, fields)
    # Two clinicians signing the same stay at once sign it once: the second waits here, then finds the first's.
    # (A lock, not a unique index: a summary marked entered in error may be written again.)
    conn.execute(sa.select(sa.func.pg_advisory_xact_lock(sa.func.hashtextextended(
        f"healthos.discharge_summary.{stay['id']}", 0))))
    signed = _in_force(conn, patient_id, stay["id"])
    if signed is not None:
        raise Conflict(f"this stay's discharge summary was signed at {signed['recorded_at']:%Y-%m-%d %H:%M} UTC; "
                       "correct it rather than sign a second one", entry_id=str(signed["id"]))
    appended = record.append(conn, principal, "note", patient_id=patient_id, encounter_id=stay["id"],
                             audited_as=AUDITED_AS,
                             detail={"template_code": CODE, "title": TITLE, "fields": clean, "text": None})
    return {"id": appended.id, "root_id": appended.root_id, "entry_status": appended.status,
            "encounter_id": appended.encounter_id, "author_id": appended.author_id,
            "record_author_id": appended.author_id, "occurred_at": appended.occurred_at,
            "recorded_at": appended.recorded_at, "reason": None, "stay": stay, **appended.detail}


def list_summaries(conn: Connection, principal: Principal, patient_id: uuid.UUID) -> list[dict]:
    """The patient's discharge summaries in force, newest first, each with its stay; the read is audited."""
    service.require_patient(conn, patient_id)
    rows = _summaries(conn, patient_id)
    note_access(conn, principal, "read", patient_id, AUDITED_AS, [r["id"] for r in rows])
    return _with_stays(conn, rows) if rows else []


def get_summary(conn: Connection, principal: Principal, patient_id: uuid.UUID, entry_id: uuid.UUID) -> dict:
    """The discharge summary `entry_id` names (any of its versions) as it stands now, with its stay: a link
    kept from before a correction opens the corrected summary. 404 for anything else, or for a summary
    marked entered in error. The read is audited."""
    found = _in_force_of(conn, patient_id, entry_id)
    note_access(conn, principal, "read", patient_id, AUDITED_AS, [found["id"]])
    return _with_stays(conn, [found])[0]


def _in_force_of(conn: Connection, patient_id: uuid.UUID, entry_id: uuid.UUID) -> dict:
    """The summary in force of which `entry_id` is a version; a 404 otherwise. Not audited."""
    root = conn.execute(sa.select(entry.c.root_id).where(entry.c.id == entry_id, entry.c.patient_id == patient_id,
                                                         entry.c.kind == "note")).scalar()
    rows = _summaries(conn, patient_id, entry.c.root_id == root) if root is not None else []
    if not rows:
        raise NotFound(f"no discharge summary {entry_id} on this patient's chart", entry_id=str(entry_id))
    return rows[0]


def require_author(principal: Principal, summary: dict) -> None:
    """As with any note, another clinician does not rewrite someone's signed summary (409)."""
    if summary["record_author_id"] != principal.account_id:
        raise Conflict("a discharge summary is corrected only by the clinician who signed it; write a note of your "
                       "own to add to it", field="form", entry_id=str(summary["id"]))


def correct(conn: Connection, principal: Principal, patient_id: uuid.UUID, entry_id: uuid.UUID,
            fields: dict[str, Any], reason: str) -> dict:
    """A corrected version of the summary, by its author, with the reason; the version corrected must be the
    one in force (409 if another correction came first), and the earlier versions stay in its history; only its
    author corrects it (`require_author`)."""
    current = get_summary(conn, principal, patient_id, entry_id)
    if current["id"] != entry_id:
        raise Conflict("this discharge summary was corrected since you opened it; open it again and correct the "
                       "version in force", entry_id=str(current["id"]))
    require_author(principal, current)
    clean = catalogue.validate_note_fields(TEMPLATE, fields)
    appended = record.append(conn, principal, "note", patient_id=patient_id, encounter_id=current["encounter_id"],
                             supersedes=entry_id, reason=reason, audited_as=AUDITED_AS,
                             detail={"template_code": CODE, "title": TITLE, "fields": clean, "text": None})
    return {**current, "id": appended.id, "entry_status": appended.status, "author_id": appended.author_id,
            "recorded_at": appended.recorded_at, "reason": reason, **appended.detail}


def held_from_portal(conn: Connection, principal: Principal, patient_id: uuid.UUID, summaries: list[dict],
                     in_person: InPerson) -> set[uuid.UUID]:
    """Of these summaries in force, those the patient's portal holds back: each signed (or last corrected) once a
    result a release rule keeps to be given in person was on the record, that no clinician has recorded as given
    yet. Such a summary may tell the result (typed into its key results or its course), and a screen is not where
    the patient learns it; once the result is given, the summary shows. A summary signed before any such result was
    recorded cannot tell it, and shows. The results found are noted as read, with the summaries they hold back."""
    if not summaries:
        return set()
    codes = conn.execute(sa.select(result.c.code).distinct().select_from(
        entry.join(result, result.c.entry_id == entry.c.id)).where(entry.c.patient_id == patient_id)).scalars()
    kept = [code for code in codes if in_person(code) is not None]
    if not kept:
        return set()
    first, teller = entry.alias("first_version"), entry.alias("teller")
    given = sa.exists().select_from(teller.join(result_disclosure, result_disclosure.c.entry_id == teller.c.id)) \
        .where(result_disclosure.c.result_id == entry.c.id, current_clause(teller))
    # A result corrected since is counted from its first version's recording: a summary may tell the first.
    untold = conn.execute(
        sa.select(entry.c.id, first.c.recorded_at)
        .select_from(entry.join(result, result.c.entry_id == entry.c.id).join(first, first.c.id == entry.c.root_id))
        .where(entry.c.patient_id == patient_id, result.c.code.in_(kept), current_clause(),
               entry.c.status != "entered_in_error", ~given)
    ).all()
    if not untold:
        return set()
    since = min(recorded for _, recorded in untold)
    held = {s["id"] for s in summaries if s["recorded_at"] >= since}
    if held:
        note_access(conn, principal, "read", patient_id, "result", [row.id for row in untold],
                    detail={"discharge_summaries_held_from_portal": sorted(str(h) for h in held)})
    return held


def patients_own(conn: Connection, principal: Principal, patient_id: uuid.UUID, in_person: InPerson, *,
                 entry_id: uuid.UUID | None = None) -> list[dict]:
    """The patient's own summaries in force (the one `entry_id` names, else all), newest first, with their stays, for
    their portal: each `held` when the portal holds it back (`held_from_portal`, which notes what it read). The read
    of those shown is audited (of the list, even of none, as `list_summaries`); one held is not read by the patient,
    and is not noted as read."""
    rows = [_in_force_of(conn, patient_id, entry_id)] if entry_id is not None else _summaries(conn, patient_id)
    held = held_from_portal(conn, principal, patient_id, rows, in_person)
    shown = [r["id"] for r in rows if r["id"] not in held]
    if shown or entry_id is None:
        note_access(conn, principal, "read", patient_id, AUDITED_AS, shown)
    return [{**r, "held": r["id"] in held} for r in _with_stays(conn, rows)] if rows else []


def in_force_by_stay(conn: Connection, principal: Principal, patient_id: uuid.UUID) -> dict[uuid.UUID, dict]:
    """The summary in force of each stay that has one, by encounter id, for a chart listing the stays; the
    read is audited when there is one."""
    rows = _summaries(conn, patient_id)
    if rows:
        note_access(conn, principal, "read", patient_id, AUDITED_AS, [r["id"] for r in rows])
    return {r["encounter_id"]: r for r in reversed(rows)}  # the newest of a stay's wins, were there two

