"""Patient safety incidents (operations layer): staff report what went wrong or nearly did, and the quality
manager reviews it. The words follow WHO's Conceptual Framework for the International Classification for Patient
Safety (ICPS v1.1, 2009, WHO/IER/PSP/2010.2): its incident types (a short list drawn from them), its degree of harm
(none, mild, moderate, severe, death) and near miss ("an incident which did not reach the patient"), its
contributing factors; and WHO's "Patient safety incident reporting and learning systems: technical report and
guidance" (2020): a report is short and open to every member of staff, may be anonymous, and comes back to its
reporter as a status and, once closed, what was learned.

- `report`: any facility role (`operations.incident.report`). The report is kept as given (`incident`, never
  rewritten). Naming a patient is optional, and only a patient the reporter may read (the web room registers
  what that means, `register_patient_reader`: the clinical layer's care relationship); the report is then patient
  data: its writing and every read of it are on that patient's access log (`incident`). It is a quality record,
  not the chart: no chart page shows it.
- Anonymous: the table keeps no reporter (`reported_by`, `reporter_name` empty, a check says so); the reporter is
  named only in the audit event of the report (`operations.incident.report`), encrypted, which no facility page
  or API reads: the regulator, with their key, can. The event on the patient's access log of an anonymous report
  names no one (the appliance records it), or the patient would learn what the facility cannot. Nor does its time
  name anyone: every page and API gives an anonymous report's time to the hour only (`shown`), since the minute,
  set beside the audit log's times of who was signed in and busy, can single out who filed it. Nor its number: a
  running number orders the reports, and an anonymous one's place between two named reports, whose times are exact
  and whose reporters are named, would say when it was filed to the minute; so an anonymous report has no number
  (it is the anonymous report, with its id), and the named reports are numbered by a counter of their own (t0045),
  so theirs run on without a gap where an anonymous one was filed. When it happened
  (`occurred_at`) stays exact: only the quality manager reads an anonymous report, and needs the time to review it;
  and an hour, or a shift, on the same ward names the same staff from the roster as the minute does.
- Review (`operations.incident.review`, the quality manager): append-only events (`incident_review`): notes,
  contributing factors, actions with owner and due date, the severity confirmed, and the closing with its learning
  summary (once, after a severity is confirmed). The status is read from them: open, under review, closed.
  Severe harm or death (reported, or confirmed) flags an incident for immediate review until it is closed.
"""

from __future__ import annotations

import datetime as dt
import uuid
import zoneinfo
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from appliance.layers.operations.errors import Conflict, Invalid, NotFound
from appliance.layers.operations.models import incident, incident_review, ward
from appliance.substrate import audit, record
from appliance.substrate.principal import Principal

REPORT_PERMISSION = "operations.incident.report"
REVIEW_PERMISSION = "operations.incident.review"

# ICPS incident types (its 13 classes, those a district hospital meets, and the two it reports most under names
# of their own: pressure injury and patient identification); t0035's check holds the same codes.
INCIDENT_TYPES = {
    "fall": "Fall",
    "medication": "Medication or IV fluids",
    "pressure_injury": "Pressure injury",
    "clinical_process": "Clinical process or procedure",
    "infection": "Healthcare-associated infection",
    "blood": "Blood or blood products",
    "medical_device": "Medical device or equipment",
    "documentation": "Documentation",
    "patient_identification": "Patient identification",
    "behaviour": "Behaviour or violence",
    "other": "Other",
}
# ICPS's near miss, and its degree of harm for an incident that reached the patient.
OUTCOMES = {
    "near_miss": "Near miss: did not reach the patient",
    "none": "Reached the patient: no harm",
    "mild": "Mild harm: minimal or short-term, little or no treatment",
    "moderate": "Moderate harm: needed treatment, a longer stay, or lasting harm",
    "severe": "Severe harm: life-saving treatment, or major lasting harm",
    "death": "Death: caused or brought forward by the incident",
}
HARM_WORDS = {"near_miss": "near miss", "none": "no harm", "mild": "mild harm", "moderate": "moderate harm",
              "severe": "severe harm", "death": "death"}
IMMEDIATE_REVIEW = ("severe", "death")
# ICPS's contributing factors/hazards, its classes as a reviewer ticks them.
CONTRIBUTING_FACTORS = {
    "staff": "Staff: knowledge, attention, fatigue, behaviour",
    "communication": "Communication: handover, orders, with the patient",
    "patient": "Patient: condition, understanding, behaviour",
    "environment": "Work environment: surroundings, staffing, workload",
    "organisation": "Organisation: policies, procedures, culture",
    "external": "External: outside the facility's control",
    "other": "Other",
}
REVIEW_KINDS = ("note", "contributing_factors", "action", "severity_confirmed", "closed")
STATUSES = {"open": "Open", "under_review": "Under review", "closed": "Closed"}
LIST_LIMIT = 500
NAMED_NUMBERS = "incident_named_number_seq"  # the named reports' running numbers (t0045)
# A report tells of something seen or found out lately; one dated decades back is a mistyped year (and 0001-01-01 at
# +14:00 is before the year 1 in UTC, which no reader of the list could then read back).
OLDEST_REPORTED = dt.timedelta(days=10 * 366)
# The months the list and the counts are asked for: those of this appliance's records, as the TB register's years.
MONTH_YEARS = (2000, 2100)

PatientReader = Callable[[Connection, Principal, uuid.UUID], bool]
_PATIENT_READERS: list[PatientReader] = []


def register_patient_reader(reader: PatientReader) -> None:
    """Say who may name a patient in a report: `reader(conn, principal, patient_id)` is whether this person may read
    that patient. The operations layer cannot ask the clinical layer's care relationship itself; the web room
    registers it. None registered: no report names a patient (refused, never unchecked)."""
    if reader not in _PATIENT_READERS:
        _PATIENT_READERS.append(reader)


def _tenant(conn: Connection) -> str:
    return conn.info["healthos_tenant"]


def _event(conn: Connection, principal: Principal | None, event_type: str, action: str, incident_id: uuid.UUID,
           detail: dict) -> None:
    audit.append(conn, tenant=_tenant(conn), principal=principal, event_type=event_type, action=action,
                 entity={"kind": "incident", "ids": [str(incident_id)], "count": 1}, detail=detail)


# -- choices -------------------------------------------------------------------------------------------


def wards(conn: Connection) -> list[dict]:
    """Where an incident can happen: the facility's active wards and departments, as its tenant file names them."""
    return [dict(r) for r in conn.execute(sa.select(ward.c.code, ward.c.name).where(ward.c.active)
                                          .order_by(ward.c.name)).mappings()]


def patient_by_mrn(conn: Connection, principal: Principal, mrn: str) -> uuid.UUID:
    """The patient of this MRN, if the reporter may read them; one refusal for nobody and for someone not theirs,
    so the form tells no one who is a patient here."""
    patient = sa.table("patient", sa.column("id", sa.Uuid), sa.column("mrn", sa.Text))
    found = conn.execute(sa.select(patient.c.id).where(sa.func.upper(patient.c.mrn) == mrn.strip().upper())).scalar()
    if found is None or not _may_read(conn, principal, found):
        raise Invalid(f"no patient with MRN {mrn.strip()} is in your care here; leave it empty and describe the "
                      "patient in words if you must", field="patient_mrn")
    return found


def _may_read(conn: Connection, principal: Principal, patient_id: uuid.UUID) -> bool:
    return bool(_PATIENT_READERS) and all(reader(conn, principal, patient_id) for reader in _PATIENT_READERS)


# -- the report ------------------------------------------------------------------------------------------


def report(conn: Connection, principal: Principal, data: Any, *, at: dt.datetime | None = None) -> dict:
    """Record a report (`IncidentIn`), audited; refusals (422 with the field: a time to come or more than ten years
    past, a ward not here, a patient not in the reporter's care) leave nothing written. `at`: when it was reported,
    now unless the demo's history says otherwise."""
    now = conn.execute(sa.select(sa.func.now())).scalar_one()
    if data.occurred_at > now + dt.timedelta(minutes=5):
        raise Invalid("the incident cannot have happened in the future: give when it happened", field="occurred_at")
    if data.occurred_at < (at or now) - OLDEST_REPORTED:
        raise Invalid(f"{data.occurred_at:%Y-%m-%d} is more than ten years before this report: check the year and give "
                      "when it happened", field="occurred_at")
    if conn.execute(sa.select(ward.c.code).where(ward.c.code == data.ward_code, ward.c.active)).scalar() is None:
        raise Invalid(f"{data.ward_code} is not a ward or department of this facility", field="ward_code")
    if data.patient_id is not None:
        exists = conn.execute(sa.text("SELECT EXISTS (SELECT 1 FROM patient WHERE id = :p)"),
                              {"p": data.patient_id}).scalar()
        if not exists or not _may_read(conn, principal, data.patient_id):
            raise Invalid("that patient is not one in your care here; leave the patient out and describe them in "
                          "words if you must", field="patient_id")
    row = {"id": uuid.uuid4(), "occurred_at": data.occurred_at, "ward_code": data.ward_code,
           "incident_type": data.incident_type, "description": data.description, "outcome": data.outcome,
           "immediate_action": data.immediate_action, "patient_id": data.patient_id, "anonymous": data.anonymous,
           "reported_by": None if data.anonymous else principal.account_id,
           "reporter_name": None if data.anonymous else principal.display_name, "reported_at": at or now}
    # A named report takes the next of the named reports' own numbers; an anonymous one none (t0045).
    numbered = {} if data.anonymous else {"number": sa.func.nextval(NAMED_NUMBERS)}
    number, reported_at = conn.execute(incident.insert().values(**row, **numbered)
                                       .returning(incident.c.number, incident.c.reported_at)).one()
    # The reporter is named here even when anonymous: this event is sealed under the facility's data key and read by
    # no facility page or API, only in the regulator's evidence.
    _event(conn, principal, "operations.incident.report", "C", row["id"],
           {"anonymous": data.anonymous, "type": data.incident_type, "outcome": data.outcome})
    if data.patient_id is not None:
        detail = {"incident": "a patient safety report (a quality record, not the chart)"}
        if data.anonymous:
            audit.append(conn, tenant=_tenant(conn), principal=None, **record.access_event(
                "create", data.patient_id, "incident", (row["id"],), detail={**detail, "reported": "anonymously"}))
        else:
            record.note_access(conn, principal, "create", data.patient_id, "incident", (row["id"],), detail=detail)
    return shown({**row, "number": number, "reported_at": reported_at, "status": "open", "confirmed_harm": None,
                  "closed_at": None, "immediate_review": data.outcome in IMMEDIATE_REVIEW, "learning_summary": None})


def shown(row: dict) -> dict:
    """An incident as it leaves this room: an anonymous report's time truncated to the hour (UTC) (it has no number:
    t0045); a named one's as stored (its reporter is named beside it anyway). The table keeps the exact time, for
    the month's counts."""
    if row["anonymous"]:
        return {**row, "number": None, "reported_at": row["reported_at"].astimezone(dt.UTC).replace(
            minute=0, second=0, microsecond=0)}
    return row


_WITH_STATUS = """
    SELECT i.id, i.number, i.occurred_at, i.ward_code, w.name AS ward_name, i.incident_type, i.outcome,
           i.anonymous, i.reporter_name, i.reported_at, i.patient_id IS NOT NULL AS names_patient,
           coalesce(r.status, 'open') AS status, r.confirmed_harm, r.closed_at,
           coalesce(r.confirmed_harm, i.outcome) IN ('severe', 'death') AND coalesce(r.status, 'open') <> 'closed'
             AS immediate_review
    FROM incident i JOIN ward w ON w.code = i.ward_code
    LEFT JOIN LATERAL (
        SELECT CASE WHEN bool_or(v.kind = 'closed') THEN 'closed' ELSE 'under_review' END AS status,
               (array_agg(v.harm ORDER BY v.at DESC) FILTER (WHERE v.kind = 'severity_confirmed'))[1] AS confirmed_harm,
               max(v.at) FILTER (WHERE v.kind = 'closed') AS closed_at
        FROM incident_review v WHERE v.incident_id = i.id HAVING count(*) > 0) r ON true
"""


def month_bounds(month: str | None, tz: zoneinfo.ZoneInfo, field: str = "month") -> tuple[dt.datetime, dt.datetime]:
    """A calendar month of the facility's (`YYYY-MM`; this month when not given) as [start, end)."""
    if month:
        try:
            first = dt.date.fromisoformat(f"{month}-01")
        except ValueError:
            raise Invalid("give the month as YYYY-MM", field=field) from None
        if not MONTH_YEARS[0] <= first.year <= MONTH_YEARS[1]:
            raise Invalid(f"give a month from {MONTH_YEARS[0]} to {MONTH_YEARS[1]}, as YYYY-MM", field=field)
    else:
        first = dt.datetime.now(tz).date().replace(day=1)
    following = (first + dt.timedelta(days=32)).replace(day=1)
    return (dt.datetime.combine(first, dt.time(), tzinfo=tz), dt.datetime.combine(following, dt.time(), tzinfo=tz))


def review_list(conn: Connection, tz: zoneinfo.ZoneInfo, *, status: str | None = None, incident_type: str | None = None,
                outcome: str | None = None, ward_code: str | None = None, month: str | None = None) -> list[dict]:
    """The quality manager's list: those for immediate review first, then the latest. Names no patient (only
    whether one is named), so nobody's access log is touched by it."""
    for value, known, field in ((status, STATUSES, "status"), (incident_type, INCIDENT_TYPES, "incident_type"),
                                (outcome, OUTCOMES, "outcome")):
        if value and value not in known:
            raise Invalid(f"{field} must be one of {', '.join(known)}", field=field)
    start, end = month_bounds(month, tz) if month else (None, None)
    rows = conn.execute(sa.text(f"""SELECT * FROM ({_WITH_STATUS}) x
        WHERE (CAST(:status AS text) IS NULL OR x.status = :status)
          AND (CAST(:type AS text) IS NULL OR x.incident_type = :type)
          AND (CAST(:outcome AS text) IS NULL OR coalesce(x.confirmed_harm, x.outcome) = :outcome)
          AND (CAST(:ward AS text) IS NULL OR x.ward_code = :ward)
          AND (CAST(:start AS timestamptz) IS NULL OR (x.occurred_at >= :start AND x.occurred_at < :end))
        ORDER BY x.immediate_review DESC, x.occurred_at DESC LIMIT :limit"""),  # noqa: S608 -- a constant of this module
                        {"status": status or None, "type": incident_type or None, "outcome": outcome or None,
                         "ward": ward_code or None, "start": start, "end": end, "limit": LIST_LIMIT}).mappings()
    return [shown(dict(r)) for r in rows]


def immediate_review_count(conn: Connection) -> int:
    """How many incidents await immediate review (severe harm or death, not closed): the navigation's badge."""
    return conn.execute(sa.text(f"SELECT count(*) FROM ({_WITH_STATUS}) x WHERE x.immediate_review")).scalar_one()  # noqa: S608 -- a constant


def my_reports(conn: Connection, principal: Principal) -> list[dict]:
    """The reporter's own named reports with their status, latest first (an anonymous one is nobody's)."""
    rows = conn.execute(sa.text(f"SELECT x.* FROM ({_WITH_STATUS}) x JOIN incident i ON i.id = x.id "  # noqa: S608 -- a constant
                                "WHERE i.reported_by = :me ORDER BY x.reported_at DESC LIMIT :limit"),
                        {"me": principal.account_id, "limit": LIST_LIMIT}).mappings()
    return [shown(dict(r)) for r in rows]


def get(conn: Connection, principal: Principal, incident_id: uuid.UUID) -> dict:
    """One incident: the whole report and its review to the quality manager; to its reporter, the report, its
    status and, once closed, the learning summary. Anyone else, and another facility's id: 404, the same answer
    as an id that does not exist. A read of an incident naming a patient is on that patient's access log."""
    found = conn.execute(sa.text(f"SELECT x.*, i.description, i.immediate_action, i.patient_id, i.reported_by "  # noqa: S608 -- a constant
                                 f"FROM ({_WITH_STATUS}) x JOIN incident i ON i.id = x.id WHERE x.id = :id"),
                         {"id": incident_id}).mappings().first()
    reviewer = principal.can(REVIEW_PERMISSION)
    if found is None or not (reviewer or (found["reported_by"] is not None
                                          and found["reported_by"] == principal.account_id)):
        raise NotFound(f"no incident report {incident_id} of yours here", incident_id=str(incident_id))
    out = shown(dict(found))
    out.pop("reported_by")
    events = [dict(r) for r in conn.execute(
        sa.select(incident_review).where(incident_review.c.incident_id == incident_id)
        .order_by(incident_review.c.at, incident_review.c.id)).mappings()]
    closing = next((e for e in events if e["kind"] == "closed"), None)
    out["learning_summary"] = closing["note"] if closing else None
    out["review"] = events if reviewer else []
    if out["patient_id"] is not None:
        patient = sa.table("patient", sa.column("id", sa.Uuid), sa.column("mrn", sa.Text),
                           sa.column("family_name", sa.Text), sa.column("given_names", sa.Text))
        out["patient"] = dict(conn.execute(sa.select(patient.c.id, patient.c.mrn, patient.c.family_name,
                                                     patient.c.given_names)
                                           .where(patient.c.id == out["patient_id"])).mappings().one())
        record.note_access(conn, principal, "read", out["patient_id"], "incident", (incident_id,),
                           detail={"incident": "a patient safety report (a quality record, not the chart)"})
    else:
        out["patient"] = None
    return out


# -- the review ------------------------------------------------------------------------------------------


def add_review(conn: Connection, principal: Principal, incident_id: uuid.UUID, data: Any, *,
               at: dt.datetime | None = None) -> dict:
    """Append one review event (`ReviewEventIn`). A closed incident takes no more (409); closing needs a severity
    confirmed first (409) and a learning summary (422). Audited, and on the patient's access log if one is named."""
    # Two reviewers appending at once take turns, so each sees the other's events (closing after the severity). An
    # advisory lock: the tenant role may not lock the report's row, which it may not update.
    conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtextextended(CAST(:id AS text), 35))"), {"id": incident_id})
    target = conn.execute(sa.select(incident.c.id, incident.c.patient_id).where(incident.c.id == incident_id)).first()
    if target is None:
        raise NotFound(f"no incident report {incident_id} here", incident_id=str(incident_id))
    kinds = set(conn.execute(sa.select(incident_review.c.kind).where(incident_review.c.incident_id == incident_id))
                .scalars())
    if "closed" in kinds:
        raise Conflict("this incident is closed; its review can no longer change", field="kind")
    if data.kind == "closed" and "severity_confirmed" not in kinds:
        raise Conflict("confirm the severity before closing the incident", field="kind")
    values = {"id": uuid.uuid4(), "incident_id": incident_id, "kind": data.kind, "note": None, "factors": None,
              "action": None, "action_owner": None, "action_due": None, "harm": None,
              "by_account": principal.account_id, "by_name": principal.display_name}
    missing = None
    if data.kind in ("note", "closed"):
        values["note"] = data.note
        missing = None if data.note else ("note", "write the learning summary: what happened, why, and what changes"
                                          if data.kind == "closed" else "write the note")
    elif data.kind == "contributing_factors":
        values["factors"] = list(dict.fromkeys(data.factors or []))
        missing = None if values["factors"] else ("factors", "tick at least one contributing factor")
    elif data.kind == "action":
        values.update(action=data.action, action_owner=data.action_owner, action_due=data.action_due)
        for field, sentence in (("action", "say what is to be done"), ("action_owner", "say who owns the action"),
                                ("action_due", "give the date it is due")):
            if not values[field]:
                missing = (field, sentence)
                break
    elif data.kind == "severity_confirmed":
        values["harm"] = data.harm
        missing = None if data.harm else ("harm", "choose the severity the review confirms")
    if missing is not None:
        raise Invalid(missing[1], field=missing[0])
    at = conn.execute(incident_review.insert().values(**values, at=at or sa.func.clock_timestamp())
                      .returning(incident_review.c.at)).scalar_one()
    _event(conn, principal, "operations.incident.review", "U", incident_id, {"kind": data.kind})
    if target.patient_id is not None:
        record.note_access(conn, principal, "update", target.patient_id, "incident", (incident_id,),
                           detail={"review": data.kind})
    return {**values, "at": at}


# -- figures (the command center) ---------------------------------------------------------------------------


def month_summary(conn: Connection, tz: zoneinfo.ZoneInfo, month: str | None = None) -> dict:
    """Incidents reported in a calendar month (by when they were reported, facility time) by type and by harm
    (near miss, or the degree of harm reported): counts only, naming no one."""
    start, end = month_bounds(month, tz)
    rows = conn.execute(sa.select(incident.c.incident_type, incident.c.outcome, sa.func.count().label("n"))
                        .where(incident.c.reported_at >= start, incident.c.reported_at < end)
                        .group_by(incident.c.incident_type, incident.c.outcome)).all()
    by_type = {code: {outcome: 0 for outcome in OUTCOMES} for code in INCIDENT_TYPES}
    for incident_type, outcome, n in rows:
        by_type[incident_type][outcome] = n
    return {"month": start.strftime("%Y-%m"), "start": start, "end": end, "total": sum(n for *_, n in rows),
            "by_type": [{"incident_type": code, "label": INCIDENT_TYPES[code], "total": sum(counts.values()),
                         "by_outcome": counts} for code, counts in by_type.items()],
            "by_outcome": {outcome: sum(by_type[code][outcome] for code in by_type) for outcome in OUTCOMES}}
