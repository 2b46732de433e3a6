"""The bedside transfusion record: a `transfusion` entry on the patient's record for each unit given, kept by the
nurse who hangs it (tenant t0036).

It follows the bedside steps of WHO's "Clinical transfusion practice" (2013) and the BSH 2017 administration
guideline:

1. **start**, after the bedside check: the unit number on the bag, typed or scanned, and the second member of staff
   who checked the patient's identity and the unit with the nurse: a staff account of this facility, not the nurse,
   whose role may check blood (`nursing.transfusion.check`: nurses and clinicians, policies/access.toml), kept by
   account on the record and in the audit event (before t0042 a name typed in a box, which old rows keep, with no
   account); the facility's own day of the start, on which the unit's expiry is judged; the vital signs before
   (temperature, pulse, blood pressure, respiratory rate), recorded as a `vital_signs` entry. The clinical
   layer's blood bank refuses (its reaction, `blood.hang_unit`; layers meet in the record) a unit not issued to
   THIS patient, naming the mismatch without naming the other patient, an expired one, or one unknown: the whole
   act is refused, nothing written. Accepted, the unit is transfused.
2. **15 minutes**: the vital signs again (most severe reactions show in the first 15 minutes).
3. **end**: the end time, the volume given, the vital signs at the end, and the reaction: none, or febrile,
   allergic, suspected haemolytic, TACO (circulatory overload), TRALI (lung injury), other. A suspected reaction
   stops the transfusion (status stopped) and raises the ward's escalation task, "inform the doctor now", by the
   task path NEWS2 uses (`service.new_task`, code escalation). A reaction seen at any time is recorded by ending
   the transfusion there, with the volume given so far.
4. **a reaction after the end**: one noticed once the unit had run through (TACO or TRALI within about 6 to 12
   hours, a febrile reaction an hour later, a delayed haemolytic reaction days later, SHOT's definitions), recorded
   on the completed transfusion by a nurse or a clinician (ACC-038): its kind, when it began (not before the start,
   not still to come), its severity (ISBT's grades) and what was seen and done. A new version supersedes the
   completed one, so the record keeps both; it raises the ward's escalation task as a stop does. One reaction per
   transfusion: a second, or one on a transfusion still running (stopped with the end instead) or stopped already,
   is refused 409.

The blood bank sees every reaction, one that stopped a unit or one after it (`reactions`, its haemovigilance list),
and answers it: the bag back, the investigation, the report to the national haemovigilance scheme.

Each step is a new version of the one record, so who started it, who observed and who ended it stay in its history.
The vital signs are `vital_signs` entries, scored by NEWS2 (or MEOWS, PEWS) as any set is.
"""

from __future__ import annotations

import datetime as dt
import uuid
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from appliance.layers.nursing import fluid, service
from appliance.layers.nursing.errors import Conflict, Invalid, NotFound
from appliance.layers.nursing.models import transfusion
from appliance.substrate import identity, record
from appliance.substrate.db import Database
from appliance.substrate.policy import AccessPolicy, grants
from appliance.substrate.principal import Principal
from appliance.substrate.record import Entry, entry, note_access, note_list_read

REACTIONS = {"none": "No reaction", "febrile": "Febrile (non-haemolytic) reaction", "allergic": "Allergic reaction",
             "haemolytic": "Suspected haemolytic reaction", "taco": "TACO (transfusion-associated circulatory "
             "overload)", "trali": "TRALI (transfusion-related acute lung injury)", "other": "Other reaction"}
FIELDS = [c.name for c in transfusion.c if c.name != "entry_id"]
SEVERITIES = {"non_severe": "Non-severe", "severe": "Severe (needed treatment or a longer stay)",
              "life_threatening": "Life-threatening"}  # ISBT's grades, 2011 (death is the record's, not a grade here)
FUTURE_TOLERANCE = service.FUTURE_TOLERANCE
REACTIONS_SHOWN_DAYS = 30  # the blood bank's list: a month of reactions, a delayed haemolytic one within it
LONGEST = dt.timedelta(hours=6)  # a unit is hung within 4 hours of leaving the fridge; a record longer is a mistake
CHECK_PERMISSION = "nursing.transfusion.check"  # who may be the second person of the bedside check
REACTION_PERMISSION = "nursing.transfusion.reaction"  # a reaction after the end: a nurse or a clinician (ACC-038)


@dataclass(frozen=True)
class Colleague:
    """A member of the facility's staff as the control schema knows them, for the bedside check: whether one of
    their roles may check blood, and the wards those memberships are limited to (None: not limited)."""

    account_id: uuid.UUID
    name: str
    may_check: bool
    wards: frozenset[str | None]


def colleagues(db: Database, policy: AccessPolicy, tenant: str) -> dict[uuid.UUID, Colleague]:
    """The facility's working staff (a disabled account checks nothing), read in a control transaction of its own
    (a tenant transaction sees only its schema)."""
    with db.control() as conn:
        rows = identity.staff_of(conn, tenant)
    people: dict[uuid.UUID, dict] = {}
    for row in rows:
        if row["state"] == "disabled":
            continue
        person = people.setdefault(row["account_id"], {"name": row["name"], "may_check": False, "wards": set()})
        if grants(policy.permissions_of(row["role"]), CHECK_PERMISSION):
            person["may_check"] = True
            person["wards"].add(row["ward"])
    return {account: Colleague(account, p["name"], p["may_check"], frozenset(p["wards"]))
            for account, p in people.items()}


def second_checkers(staff: Mapping[uuid.UUID, Colleague], principal: Principal) -> list[Colleague]:
    """Whom the nurse may pick as the second checker, by name: those who may check, not the nurse, on the nurse's
    ward (or on none) when the nurse's membership is limited to one."""
    return sorted((c for c in staff.values() if c.may_check and c.account_id != principal.account_id
                   and (principal.ward is None or c.wards & {principal.ward, None})),
                  key=lambda c: c.name.casefold())


def _second_checker(staff: Mapping[uuid.UUID, Colleague], principal: Principal, account_id: uuid.UUID) -> Colleague:
    if account_id == principal.account_id:
        raise Invalid("the bedside check is made by two people: choose the second member of staff, not yourself",
                      field="checked_by_account_id")
    found = staff.get(account_id)
    # An account of another facility reads as unknown here: this facility does not say who works elsewhere.
    if found is None:
        raise Invalid(f"no member of this facility's staff has the account {account_id}: choose the second checker "
                      "from the ward's staff", field="checked_by_account_id")
    if not found.may_check:
        raise Invalid(f"{found.name} holds no role that checks blood at the bedside: the second checker is a nurse "
                      "or a clinician", field="checked_by_account_id")
    return found


def _vitals(conn: Connection, principal: Principal, patient_id: uuid.UUID, encounter_id: uuid.UUID | None,
            vitals, at: dt.datetime) -> uuid.UUID:
    """A set of vital signs taken at `at`: the clinical layer's `vital_signs` entry, scored as any set is."""
    return record.append(conn, principal, "vital_signs", patient_id=patient_id, encounter_id=encounter_id,
                         occurred_at=at, detail=vitals.model_dump(exclude_none=True)).id


def _clock(at: dt.datetime, zone: zoneinfo.ZoneInfo) -> str:
    # The ward's clock, as the nurse typed it: a refusal in UTC ('02:10 UTC is before 05:05') reads as nonsense.
    return f"{at.astimezone(zone):%d %b %Y %H:%M}"


def _span(length: dt.timedelta) -> str:
    hours, minutes = divmod(int(length.total_seconds()) // 60, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min"


def _when(at: dt.datetime | None, now: dt.datetime, zone: zoneinfo.ZoneInfo, field: str,
          after: dt.datetime | None = None, after_words: str = "", *, within_a_unit: bool = True) -> dt.datetime:
    at = at or now
    if at > now + FUTURE_TOLERANCE:
        raise Invalid(f"{_clock(at, zone)} is still to come: give the time it happened", field=field)
    if after is not None and at < after:
        raise Invalid(f"{_clock(at, zone)} is before {after_words} ({_clock(after, zone)})", field=field)
    if after is not None and within_a_unit and at - after > LONGEST:
        raise Invalid(f"{_clock(at, zone)} is {_span(at - after)} after {after_words} ({_clock(after, zone)}): a "
                      f"unit is given within 4 hours of leaving the fridge; give the time it happened", field=field)
    return at


def start(conn: Connection, principal: Principal, patient_id: uuid.UUID, data, *, now: dt.datetime,
          zone: zoneinfo.ZoneInfo, staff: Mapping[uuid.UUID, Colleague]) -> dict:
    """The unit hung after the bedside check: the first version, in progress, with the vital signs before. The
    second checker is one of `staff` (`colleagues`) who may check, not the caller (422 on checked_by_account_id);
    the unit's expiry is judged on the facility's day (`zone`) of the start."""
    service._require_patient(conn, patient_id)
    checker = _second_checker(staff, principal, data.checked_by_account_id)
    at = _when(data.started_at, now, zone, "started_at")
    if at < now - LONGEST:
        raise Invalid(f"{_clock(at, zone)} is {_span(now - at)} ago, longer than a unit runs: record a transfusion "
                      "as it happens", field="started_at")
    encounter_id = fluid._open_encounter(conn, patient_id)
    before = _vitals(conn, principal, patient_id, encounter_id, data.vitals, at)
    appended = record.append(conn, principal, "transfusion", patient_id=patient_id, encounter_id=encounter_id,
                             occurred_at=at, detail={
                                 "unit_number": data.unit_number, "checked_by": checker.name,
                                 "checked_by_account": checker.account_id, "status": "in_progress",
                                 "started_at": at, "started_on": at.astimezone(zone).date(), "ended_at": None,
                                 "vitals_before_id": before, "vitals_15min_id": None, "vitals_end_id": None,
                                 "volume_ml": None, "reaction": None, "reaction_note": None,
                                 "reaction_onset_at": None, "reaction_severity": None})
    return _view(appended)


def _current(conn: Connection, patient_id: uuid.UUID, transfusion_id: uuid.UUID) -> Entry:
    found = conn.execute(
        sa.select(entry.c.id).where(entry.c.root_id == transfusion_id, entry.c.patient_id == patient_id,
                                    entry.c.kind == "transfusion", record.current_clause())
    ).scalar()
    if found is None:
        raise NotFound(f"no transfusion {transfusion_id} on this patient's record",
                       transfusion_id=str(transfusion_id))
    current = record.get_entry(conn, found)
    if current.status == "entered_in_error":
        raise NotFound(f"no transfusion {transfusion_id} on this patient's record",
                       transfusion_id=str(transfusion_id))
    return current


def observe(conn: Connection, principal: Principal, patient_id: uuid.UUID, transfusion_id: uuid.UUID, data, *,
            now: dt.datetime, zone: zoneinfo.ZoneInfo) -> dict:
    """The vital signs at 15 minutes: the next version. Ended already, or observed at 15 minutes already: 409."""
    current = _current(conn, patient_id, transfusion_id)
    detail = {name: current.detail[name] for name in FIELDS}
    if detail["status"] != "in_progress":
        raise Conflict(f"this transfusion was {detail['status']} at {_clock(detail['ended_at'], zone)}: it has no "
                       "more observations")
    if detail["vitals_15min_id"] is not None:
        raise Conflict("the 15-minute observations of this transfusion are recorded already")
    at = _when(data.observed_at, now, zone, "observed_at", detail["started_at"], "the transfusion started")
    detail["vitals_15min_id"] = _vitals(conn, principal, patient_id, current.encounter_id, data.vitals, at)
    return _view(record.append(conn, principal, "transfusion", patient_id=patient_id, supersedes=current.id,
                               occurred_at=at, detail=detail, reason="observed at 15 minutes"))


def end(conn: Connection, principal: Principal, patient_id: uuid.UUID, transfusion_id: uuid.UUID, data, *,
        now: dt.datetime, zone: zoneinfo.ZoneInfo) -> dict:
    """The transfusion ended, or stopped by a suspected reaction: the end time, the volume given, the vital signs at
    the end and the reaction. A reaction other than none stops it and raises the escalation task (the reaction
    `escalate_reaction`). Ended already: 409."""
    current = _current(conn, patient_id, transfusion_id)
    detail = {name: current.detail[name] for name in FIELDS}
    if detail["status"] != "in_progress":
        raise Conflict(f"this transfusion was {detail['status']} already")
    if data.reaction != "none" and not data.reaction_note:
        raise Invalid("say what was seen (the signs of the reaction) and what was done", field="reaction_note")
    at = _when(data.ended_at, now, zone, "ended_at", detail["started_at"], "the transfusion started")
    detail |= {"vitals_end_id": _vitals(conn, principal, patient_id, current.encounter_id, data.vitals, at),
               "ended_at": at, "volume_ml": data.volume_ml, "reaction": data.reaction,
               "reaction_note": data.reaction_note, "status": "completed" if data.reaction == "none" else "stopped"}
    return _view(record.append(conn, principal, "transfusion", patient_id=patient_id, supersedes=current.id,
                               occurred_at=at, detail=detail,
                               reason="ended" if data.reaction == "none" else f"stopped: {REACTIONS[data.reaction]}"))


def report_reaction(conn: Connection, principal: Principal, patient_id: uuid.UUID, transfusion_id: uuid.UUID, data,
                    *, now: dt.datetime, zone: zoneinfo.ZoneInfo) -> dict:
    """A reaction noticed after the transfusion was completed: the next version, still completed, with the kind, the
    onset (not before the start, not to come; no bound after the end, a delayed haemolytic reaction shows days
    later), the severity and what was seen and done. It raises the escalation task (`escalate_reaction`). Still
    running, stopped, or with a reaction recorded already: 409."""
    current = _current(conn, patient_id, transfusion_id)
    detail = {name: current.detail[name] for name in FIELDS}
    if detail["status"] == "in_progress":
        raise Conflict("this transfusion is still running: stop it for the reaction with its end form, which records "
                       "the volume given and the vital signs")
    if detail["status"] == "stopped":
        raise Conflict(f"this transfusion was stopped at {_clock(detail['ended_at'], zone)} for a suspected "
                       f"reaction ({REACTIONS[detail['reaction']]}): that reaction is on the record")
    if detail["reaction"] != "none":
        raise Conflict(f"a reaction is recorded on this transfusion already ({REACTIONS[detail['reaction']]}, "
                       f"beginning {_clock(detail['reaction_onset_at'], zone)})")
    at = _when(data.onset_at, now, zone, "onset_at", detail["started_at"], "the transfusion started",
               within_a_unit=False)
    detail |= {"reaction": data.reaction, "reaction_note": data.reaction_note, "reaction_onset_at": at,
               "reaction_severity": data.severity}
    return _view(record.append(conn, principal, "transfusion", patient_id=patient_id, supersedes=current.id,
                               occurred_at=at, detail=detail,
                               reason=f"reaction after the transfusion: {REACTIONS[data.reaction]}"))


def escalate_reaction(conn: Connection, principal: Principal, version: Entry) -> None:
    """A suspected reaction, stopping the unit or noticed after it: the ward's escalation task, due at once, on
    NEWS2's task path."""
    reaction = version.detail.get("reaction")
    if version.status == "entered_in_error" or reaction in (None, "none") or version.patient_id is None:
        return
    unit = version.detail["unit_number"]
    title = (f"{REACTIONS[reaction]} after unit {unit} was given — inform the doctor now and tell the blood bank"
             if version.detail["status"] == "completed" else
             f"{REACTIONS[reaction]} to unit {unit}: transfusion stopped — inform the doctor now, keep the line "
             "open, return the bag to the blood bank")
    service.new_task(conn, principal, version.patient_id, code="escalation", encounter_id=version.encounter_id,
                     due_at=version.occurred_at, source=version, title=title)


def _view(version: Entry) -> dict:
    return {"id": version.root_id, "version_id": version.id, "patient_id": version.patient_id,
            "recorded_by": version.author_id, **{name: version.detail.get(name) for name in FIELDS},
            "checked_by_account_id": version.detail.get("checked_by_account"),
            "reaction_words": REACTIONS.get(version.detail.get("reaction") or ""),
            "severity_words": SEVERITIES.get(version.detail.get("reaction_severity") or "")}


_OF_PATIENT = sa.text("""
    SELECT e.id, e.root_id, e.patient_id, e.author_id, t.*
    FROM entry e JOIN transfusion t ON t.entry_id = e.id
    WHERE e.patient_id = :patient AND e.kind = 'transfusion' AND e.status <> 'entered_in_error'
      AND NOT EXISTS (SELECT 1 FROM entry s WHERE s.supersedes = e.id)
    ORDER BY t.started_at DESC""")
_VITALS = sa.text("""
    SELECT entry_id AS id, temperature_c, heart_rate_bpm, systolic_mmhg, diastolic_mmhg, respiratory_rate,
           spo2_percent
    FROM vital_signs WHERE entry_id = ANY(:ids)""")


def of_patient(conn: Connection, principal: Principal, patient_id: uuid.UUID) -> list[dict]:
    """The patient's transfusions, newest first, each with its three sets of vital signs; the read audited."""
    service._require_patient(conn, patient_id)
    rows = [dict(r) for r in conn.execute(_OF_PATIENT, {"patient": patient_id}).mappings()]
    ids = [r[k] for r in rows for k in ("vitals_before_id", "vitals_15min_id", "vitals_end_id") if r[k]]
    vitals = {v["id"]: dict(v) for v in conn.execute(_VITALS, {"ids": ids}).mappings()} if ids else {}
    shown = []
    for row in rows:
        view = {"id": row["root_id"], "version_id": row["id"], "patient_id": row["patient_id"],
                "recorded_by": row["author_id"], "author_id": row["author_id"], **{name: row[name] for name in FIELDS},
                "checked_by_account_id": row["checked_by_account"],
                "reaction_words": REACTIONS.get(row["reaction"] or ""),
                "severity_words": SEVERITIES.get(row["reaction_severity"] or "")}
        for stage in ("before", "15min", "end"):
            view[f"vitals_{stage}"] = vitals.get(row[f"vitals_{stage}_id"])
        shown.append(view)
    note_access(conn, principal, "read", patient_id, "transfusion", [r["id"] for r in rows])
    if ids:
        note_access(conn, principal, "read", patient_id, "vital_signs", ids)
    return shown


_REACTIONS = sa.text("""
    SELECT e.root_id AS id, e.patient_id, e.author_id AS recorded_by, t.unit_number, t.status, t.started_at,
           t.ended_at, t.volume_ml, t.reaction, t.reaction_note, t.reaction_severity,
           coalesce(t.reaction_onset_at, t.ended_at) AS onset_at, p.mrn, p.family_name, p.given_names
    FROM entry e JOIN transfusion t ON t.entry_id = e.id JOIN patient p ON p.id = e.patient_id
    WHERE e.kind = 'transfusion' AND e.status <> 'entered_in_error' AND t.reaction <> 'none'
      AND NOT EXISTS (SELECT 1 FROM entry s WHERE s.supersedes = e.id)
      AND coalesce(t.reaction_onset_at, t.ended_at) >= :since
    ORDER BY coalesce(t.reaction_onset_at, t.ended_at) DESC""")


def reactions(conn: Connection, principal: Principal, *, now: dt.datetime) -> list[dict]:
    """The blood bank's haemovigilance list: every suspected reaction of the last `REACTIONS_SHOWN_DAYS`, one that
    stopped a unit or one noticed after it, newest first, with the patient's label (name, MRN: the blood bank opens
    no chart), the unit, the kind, severity and what was seen. Each patient listed is audited."""
    rows = [dict(r) | {"reaction_words": REACTIONS[r["reaction"]],
                       "severity_words": SEVERITIES.get(r["reaction_severity"] or "")}
            for r in conn.execute(_REACTIONS, {"since": now - dt.timedelta(days=REACTIONS_SHOWN_DAYS)}).mappings()]
    note_list_read(conn, principal, "transfusion", rows, detail={"list": "transfusion reactions"})
    return rows


record.register_reaction("transfusion", escalate_reaction)
