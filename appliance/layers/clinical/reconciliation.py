"""Medicines reconciliation on admission (WHO High 5s, "medication accuracy at transitions of care"): the
admitting clinician reviews each medicine an admitted patient came in on and decides whether the hospital
gives it.

An admitted patient is one with an open inpatient encounter; the stay is that encounter with the
emergency visit the patient was admitted from. A medicine the patient came in on is a prescription still
active that was written before the stay (on an earlier visit, or naming no visit before the stay began)
and had not run its course when the stay began. The ward's medication administration record (the nursing
layer, `nursing/service.py`, `came_in`) gives only the stay's prescriptions; each medicine came in on waits
off it, with no dose due, until a clinician decides:

- **continue**: a new prescription of the stay, written now through the prescriber's path (the drug–allergy
  check included), so its doses start now; a course with a duration keeps what is left of it. The
  prescription came in on stays as it was: it is what the patient takes at home, for discharge.
- **stop**: the prescription is stopped (the clinical record's way, a new version with the reason).
- **hold**: nothing is given in hospital and the prescription is kept for discharge; a held medicine may be
  decided again later in the stay (continued or stopped), a new version of the decision.

Each decision is a `medication_reconciliation` entry on the stay's inpatient encounter naming the
prescription (and, continued, the one that continues it). One reconciliation is one transaction: every
decision it sends lands, or none does (any refusal names the decision's field). Reads and writes are
audited on the record's seam.
"""

from __future__ import annotations

import datetime as dt
import math
import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from appliance.layers.clinical import drugs, service
from appliance.layers.clinical.errors import Conflict, Invalid
from appliance.layers.clinical.models import encounter, medication_reconciliation, medication_request
from appliance.layers.clinical.schemas import MedicationIn, ReconciliationIn
from appliance.substrate import record
from appliance.substrate.principal import Principal
from appliance.substrate.record import entry, note_access

OPEN = ("arrived", "in_progress")
DONE = {"continue": "continued", "stop": "stopped", "hold": "held"}
# The operations layer's emergency visits (t0004): the visit a patient was admitted from is part of the stay.
_ed_visit = sa.table("ed_visit", sa.column("id"), sa.column("admitted_encounter_id"))


def open_stay(conn: Connection, patient_id: uuid.UUID) -> dict | None:
    """The patient's stay, or None when they are not admitted: `id`, the open inpatient encounter (the latest
    begun), `encounter_ids`, it and any other open inpatient encounter and the emergency visit admitted from,
    `started_at` when the first of them began, and the ward. Not audited: callers are."""
    inpatient = sa.select(encounter.c.id).where(encounter.c.patient_id == patient_id,
                                                encounter.c.encounter_class == "inpatient",
                                                encounter.c.status.in_(OPEN))
    rows = conn.execute(
        sa.select(encounter.c.id, encounter.c.encounter_class, encounter.c.started_at, encounter.c.ward_code)
        .where(sa.or_(encounter.c.id.in_(inpatient),
                      encounter.c.id.in_(sa.select(_ed_visit.c.id).where(_ed_visit.c.admitted_encounter_id.in_(
                          inpatient)))))
        .order_by(encounter.c.started_at.desc().nulls_last())
    ).all()
    admission = next((r for r in rows if r.encounter_class == "inpatient"), None)
    if admission is None:
        return None
    began = [r.started_at for r in rows if r.started_at is not None]
    return {"id": admission.id, "encounter_ids": {r.id for r in rows}, "started_at": min(began) if began else None,
            "ward_code": admission.ward_code}


def _of_the_stay(prescription: dict, stay: dict) -> bool:
    """Written in the stay: on one of its encounters, or naming none since it began (the nursing layer's
    `came_in` keeps the same rule)."""
    if prescription["encounter_id"] in stay["encounter_ids"]:
        return True
    return prescription["encounter_id"] is None and stay["started_at"] is not None \
        and prescription["occurred_at"] >= stay["started_at"]


def _ends_at(prescription: dict) -> dt.datetime | None:
    days = prescription["duration_days"]
    return prescription["occurred_at"] + dt.timedelta(days=days) if days else None


def _decisions(conn: Connection, patient_id: uuid.UUID, stay_id: uuid.UUID) -> dict[uuid.UUID, dict]:
    """The decision in force on each medicine reconciled in the stay, by the prescription's root id."""
    rows = service.current_rows(conn, medication_reconciliation, patient_id, entry.c.encounter_id == stay_id,
                                entry.c.status != "entered_in_error", order_by=entry.c.recorded_at)
    return {r["medication_request_id"]: r for r in rows}


def _came_in_on(conn: Connection, patient_id: uuid.UUID, stay: dict) -> tuple[list[dict], dict[uuid.UUID, dict]]:
    """The medicines the patient came in on, oldest first, each with the decision on it in this stay (None:
    to reconcile): the active prescriptions written before the stay that had not run their course when it
    began, and those the stay's decisions name whatever they are now (a stopped one). Not audited."""
    decisions = _decisions(conn, patient_id, stay["id"])
    medicines = []
    for prescription in service.current_rows(conn, medication_request, patient_id,
                                             entry.c.status != "entered_in_error",
                                             order_by=service.RECORD_OCCURRED_AT):
        decision = decisions.get(prescription["root_id"])
        if decision is None:
            if _of_the_stay(prescription, stay) or prescription["status"] != "active":
                continue
            ends = _ends_at(prescription)
            if ends is not None and stay["started_at"] is not None and ends <= stay["started_at"]:
                continue
        medicines.append({**prescription, "decision": decision})
    return medicines, decisions


def medicines(conn: Connection, principal: Principal, patient_id: uuid.UUID) -> dict:
    """The admitted patient's medicines reconciliation: the stay, each medicine they came in on with the
    decision in force on it (None while it waits), and how many wait (`to_reconcile`). A patient not
    admitted has no stay and nothing to reconcile. The reads are audited."""
    service.require_patient(conn, patient_id)
    stay = open_stay(conn, patient_id)
    if stay is None:
        return {"stay": None, "medicines": [], "to_reconcile": 0}
    listed, decisions = _came_in_on(conn, patient_id, stay)
    note_access(conn, principal, "read", patient_id, "encounter", [stay["id"]])
    if listed:
        note_access(conn, principal, "read", patient_id, "medication_request", [m["id"] for m in listed])
    if decisions:
        note_access(conn, principal, "read", patient_id, "medication_reconciliation",
                    [d["id"] for d in decisions.values()])
    return {"stay": {key: stay[key] for key in ("id", "started_at", "ward_code")}, "medicines": listed,
            "to_reconcile": sum(1 for m in listed if m["decision"] is None)}


def to_reconcile_count(conn: Connection, principal: Principal, patient_id: uuid.UUID) -> int:
    """How many medicines the admitted patient came in on wait for a decision (0 when not admitted)."""
    return medicines(conn, principal, patient_id)["to_reconcile"]


def _remaining_days(prescription: dict, now: dt.datetime) -> int | None:
    """What is left of a course with a duration, in whole days (at least one); None: no duration."""
    ends = _ends_at(prescription)
    if ends is None:
        return None
    return max(1, math.ceil((ends - now) / dt.timedelta(days=1)))


def reconcile(conn: Connection, principal: Principal, patient_id: uuid.UUID, data: ReconciliationIn) -> dict:
    """Decide on medicines the admitted patient came in on, all in this transaction or none (see the module
    docstring). Each decision names a prescription (any of its versions) among them; a refusal names the
    decision's field (`decisions[i].…`): 422 for one that is not a medicine came in on, twice named, or a
    stop or hold without a reason; 409 for one already decided (a held one may be continued or stopped), a
    patient not admitted, or a continuation the drug–allergy check blocks without a reason to override it.
    Returns the reconciliation as `medicines` reads it, with what was written (`decided`)."""
    service.require_patient(conn, patient_id)
    stay = open_stay(conn, patient_id)
    if stay is None:
        raise Conflict("this patient is not admitted: medicines are reconciled on admission to a ward",
                       field="patient_id")
    # Two clinicians reconciling one stay at once: the second waits here, then sees the first's decisions.
    conn.execute(sa.select(sa.func.pg_advisory_xact_lock(sa.func.hashtextextended(
        f"healthos.medication_reconciliation.{stay['id']}", 0))))
    listed, _ = _came_in_on(conn, patient_id, stay)
    by_root = {m["root_id"]: m for m in listed}
    named: set[uuid.UUID] = set()
    now = conn.execute(sa.select(sa.func.now())).scalar_one()
    decided = []
    for index, decision in enumerate(data.decisions):
        at = f"decisions[{index}]"
        root = conn.execute(sa.select(entry.c.root_id).where(
            entry.c.id == decision.medication_request_id, entry.c.patient_id == patient_id,
            entry.c.kind == "medication_request")).scalar()
        if root is None:
            raise Invalid(f"no prescription {decision.medication_request_id} on this patient's chart",
                          field=f"{at}.medication_request_id")
        medicine = by_root.get(root)
        if medicine is None:
            raise Invalid("this prescription is not one the patient came in on: it was written in this stay, is "
                          "no longer active, or had run its course before the admission",
                          field=f"{at}.medication_request_id")
        if root in named:
            raise Invalid(f"{medicine['drug']} is named twice in this reconciliation",
                          field=f"{at}.medication_request_id")
        named.add(root)
        previous = medicine["decision"]
        if previous is not None and (previous["decision"] != "hold" or decision.decision == "hold"):
            raise Conflict(f"{medicine['drug']} was already {DONE[previous['decision']]} on this admission, at "
                           f"{previous['recorded_at']:%Y-%m-%d %H:%M} UTC", field=f"{at}.decision",
                           entry_id=str(previous["id"]))
        reason = (decision.reason or "").strip() or None
        if decision.decision in ("stop", "hold") and reason is None:
            raise Invalid(f"say why {medicine['drug']} is {DONE[decision.decision]}", field=f"{at}.reason")
        continued_as = None
        if decision.decision == "continue":
            continued_as = _continue(conn, principal, patient_id, medicine, stay, now, decision.allergy_override_reason,
                                     at)
        elif decision.decision == "stop":
            service.change_medication_status(conn, principal, patient_id, medicine["id"], "stopped", reason)
        appended = record.append(
            conn, principal, "medication_reconciliation", patient_id=patient_id, encounter_id=stay["id"],
            supersedes=previous["id"] if previous is not None else None,
            reason=f"decided again: {decision.decision}" if previous is not None else None,
            detail={"medication_request_id": root, "decision": decision.decision, "continued_as": continued_as,
                    "reason": reason})
        decided.append({"id": appended.id, "root_id": appended.root_id, "medication_request_id": root,
                        "drug": medicine["drug"], "decision": decision.decision, "continued_as": continued_as,
                        "reason": reason, "recorded_at": appended.recorded_at})
    return {**medicines(conn, principal, patient_id), "decided": decided}


def _continue(conn: Connection, principal: Principal, patient_id: uuid.UUID, medicine: dict, stay: dict,
              now: dt.datetime, allergy_override_reason: str | None, at: str) -> uuid.UUID:
    """The prescription of the stay that continues `medicine`, written now; its root id."""
    outcome = service.request_medication(conn, principal, patient_id, MedicationIn(
        drug=medicine["drug"], dose=medicine["dose"], dose_unit=medicine["dose_unit"], route=medicine["route"],
        frequency=medicine["frequency"], duration_days=_remaining_days(medicine, now),
        instructions=medicine["instructions"], allergy_override_reason=allergy_override_reason,
        encounter_id=stay["id"]))
    if outcome.blocked:
        matches: list[Any] = [m for b in outcome.blocked for m in b["matches"]]
        raise Conflict(f"drug–allergy check: {drugs.allergy_refusal(outcome.blocked)}; nothing was reconciled. To "
                       f"continue {medicine['drug']} anyway, say why (allergy_override_reason)",
                       field=f"{at}.allergy_override_reason", requires_override_reason=True, conflicts=matches)
    return outcome.placed[0]["root_id"]
