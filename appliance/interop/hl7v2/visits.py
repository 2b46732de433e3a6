"""ADT messages: A04 registers and opens the visit, A01 admits (to a bed through operations' ADT when PV1-3
names an inpatient ward), A08 corrects the registration, A03 discharges."""

from __future__ import annotations

import uuid

import hl7
import sqlalchemy as sa

from appliance.interop.hl7v2 import messages
from appliance.interop.hl7v2.act import Act, refusals
from appliance.interop.hl7v2.messages import (
    TABLE_VALUE_NOT_FOUND,
    UNKNOWN_KEY_IDENTIFIER,
    not_applied,
    value,
)
from appliance.interop.hl7v2.patients import (
    PID_FIELDS,
    find_patient,
    known_patient,
    national_id_asked,
    patient_data,
    patient_identifiers,
    register_or_find,
)
from appliance.layers.clinical import service
from appliance.layers.clinical.schemas import EncounterIn, PatientIn
from appliance.layers.operations import adt, ed
from appliance.layers.operations.errors import NotFound as NoEmergencyVisit
from appliance.layers.operations.models import ed_visit
from appliance.substrate.record import note_access

PATIENT_CLASSES = {"O": "outpatient", "E": "emergency", "I": "inpatient"}
DISPOSITIONS = {"01": "home", "02": "transfer_out", "03": "transfer_out", "04": "transfer_out",
                "05": "transfer_out", "06": "home", "07": "left_against_advice", "20": "died"}
ED_DISPOSITIONS = {"home": "discharged", "transfer_out": "transferred", "died": "died",
                   "left_against_advice": "left_against_advice", "other": "discharged"}

PV1_FIELDS = {"ward_code": (3, "assigned location (ward)"), "bed_code": (3, "assigned location (bed)"),
              "encounter_class": (2, "patient class"), "disposition": (36, "discharge disposition"),
              "patient_id": (3, "assigned location"), "status": (2, "patient class")}


def _patient_class(pv1: hl7.Segment) -> str:
    code = value(pv1, 2).upper()
    if code not in PATIENT_CLASSES:
        raise not_applied(TABLE_VALUE_NOT_FOUND, "is not one this facility records: O (outpatient), E "
                          "(emergency) or I (inpatient)", location=("PV1", 1, 2), label="patient class",
                          value=code or "(empty)")
    return PATIENT_CLASSES[code]


def _admit_reason(act: Act) -> str | None:
    """PV2-3, the admit reason (its text, else its code)."""
    pv2 = messages.segments(act.message, "PV2")
    if not pv2:
        return None
    return (value(pv2[0], 3, 2) or value(pv2[0], 3, 1))[:500] or None


def _open_visit(act: Act, patient_id: uuid.UUID, encounter_class: str, pv1: hl7.Segment) -> None:
    with refusals("PV1", 1, PV1_FIELDS):
        if encounter_class == "emergency":
            # An emergency visit is the ED's: the arrival puts the patient on the ED board.
            act.require("operations.ed.create", "record emergency arrivals")
            visit = ed.arrive(act.conn, act.principal, patient_id, complaint=_admit_reason(act))
            act.made("encounter", visit["id"])
            return
        act.require("clinical.encounter.create", "open encounters")
        status = "in_progress" if encounter_class == "inpatient" else "arrived"
        opened = service.open_encounter(act.conn, act.principal, patient_id,
                                        EncounterIn(encounter_class=encounter_class, status=status))
        act.made("encounter", opened["id"])


def register(act: Act) -> None:
    """A04: the patient registered (or found) and the visit opened."""
    patient_id = register_or_find(act)
    pv1 = messages.one_segment(act.message, "PV1")
    _open_visit(act, patient_id, _patient_class(pv1), pv1)


def admit(act: Act) -> None:
    """A01: an inpatient admitted — to a bed when PV1-3 names a ward of this facility (the bed PV1-3.3, or
    the ward's first free one), else an inpatient encounter awaiting a bed. Other classes: a visit."""
    patient_id = register_or_find(act)
    pv1 = messages.one_segment(act.message, "PV1")
    encounter_class = _patient_class(pv1)
    ward = value(pv1, 3, 1)
    if encounter_class != "inpatient" or not ward:
        _open_visit(act, patient_id, encounter_class, pv1)
        return
    act.require("operations.admission.create", "admit patients")
    # A patient still in the emergency department is admitted from it: the ED visit closes (admitted).
    from_ed = act.conn.execute(sa.select(ed_visit.c.id).where(
        ed_visit.c.patient_id == patient_id, ed_visit.c.departed_at.is_(None))).scalar()
    if from_ed is not None:  # that the patient is in the ED is patient data: read as the ED board reads it
        note_access(act.conn, act.principal, "read", patient_id, "ed_arrival", (from_ed,))
    with refusals("PV1", 1, PV1_FIELDS):
        stay = adt.admit(act.conn, act.principal, patient_id, ward_code=ward, bed_code=value(pv1, 3, 3) or None,
                         reason=_admit_reason(act), ed_encounter_id=from_ed)
    act.made("encounter", stay["encounter_id"])
    act.made("admission", stay["id"])


def update(act: Act) -> None:
    """A08: the registration corrected from PID; what the message leaves out (address, phone, identifiers
    of other systems, next of kin) stays as it was. A corrected national ID relinks the chart to that ID's
    person (`service.update_patient`)."""
    pid = messages.one_segment(act.message, "PID")
    identifiers = patient_identifiers(act, pid)
    data = patient_data(act, pid, identifiers)
    patient = find_patient(act, identifiers)
    if patient is None:
        raise not_applied(UNKNOWN_KEY_IDENTIFIER, "match no patient of this facility: nothing to update",
                          location=("PID", 1, 3), label="patient identifiers")
    act.require("clinical.patient.update", "correct registrations")
    if not value(pid, 8):  # PID-8 left empty corrects nothing
        data["sex"] = patient["sex"]
    sent = {i["system"] for i in data["identifiers"]}
    data["identifiers"] = [i for i in patient["identifiers"] if i["system"] not in sent] + data["identifiers"]
    for kept in ("phone", "address", "next_of_kin", "contacts"):
        if kept not in data and patient.get(kept):
            data[kept] = patient[kept]
    with refusals("PID", 1, PID_FIELDS), national_id_asked():
        corrected = service.update_patient(act.conn, act.principal, patient["id"], PatientIn.model_validate(data),
                                           reason=f"HL7 {act.header.message_type} from {act.header.sender}, "
                                                  f"message {act.header.control_id}", db=act.db)
    act.after_commit.append(lambda: service.release_unlinked_subject(act.db, act.tenant, act.principal, corrected))
    act.made("patient", patient["id"])


def discharge(act: Act) -> None:
    """A03: an admitted patient discharged from their bed (PV1-36 the disposition); an ED patient departs;
    another open visit is finished."""
    patient = known_patient(act)
    pv1 = messages.one_segment(act.message, "PV1")
    code = value(pv1, 36)
    disposition = DISPOSITIONS.get(code, "other") if code else "home"
    conn, principal = act.conn, act.principal
    with refusals("PV1", 1, PV1_FIELDS):
        act.require("clinical.encounter.read", "read encounters")
        stay = adt.current_stay(conn, principal, patient["id"])
        if stay is not None:
            act.require("operations.admission.update", "discharge patients")
            adt.discharge(conn, principal, patient["id"], disposition=disposition)
            act.made("encounter", stay["encounter_id"])
            return
        open_visits = [e for e in service.list_encounters(conn, principal, patient["id"])
                       if e["status"] in {"arrived", "in_progress"}]
        if not open_visits:
            raise not_applied(UNKNOWN_KEY_IDENTIFIER, "has no open visit at this facility to discharge",
                              location=("PID", 1, 3), label="patient")
        visit = open_visits[0]
        departed = False
        if visit["encounter_class"] == "emergency":
            act.require("operations.ed.update", "record emergency departures")
            try:
                ed.depart(conn, principal, patient["id"], visit["id"], disposition=ED_DISPOSITIONS[disposition])
                departed = True
            except NoEmergencyVisit:  # an emergency encounter opened without an ED arrival: finished below
                pass
        if not departed:
            act.require("clinical.encounter.update", "finish encounters")
            if visit["status"] == "arrived":
                service.transition_encounter(conn, principal, patient["id"], visit["id"], "in_progress")
            service.transition_encounter(conn, principal, patient["id"], visit["id"], "finished")
        act.made("encounter", visit["id"])
