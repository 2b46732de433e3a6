"""The record as FHIR R4 resources: one function per resource type, from the rows the clinical
services return (entry fields and detail together) to the resource's JSON.

Ids are the record's: a patient's id, an encounter's id, and for every entry-backed resource the
record's root id (the same across its versions); `meta.versionId` is the current version's entry id
and `meta.lastUpdated` when it was recorded. A record marked entered in error keeps its last detail
and carries FHIR's `entered-in-error` status. Code systems are the ones the record codes in: ICD-10
(WHO) for conditions, LOINC for orders, results and vital signs, UCUM units.
"""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

from appliance.layers.clinical import icd10
from appliance.layers.clinical.immunization_schedule import Schedule
from appliance.layers.nursing.diet import DIET_WORDS, IDDSI

ICD10 = "http://hl7.org/fhir/sid/icd-10"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
SNOMED = "http://snomed.info/sct"
TERMINOLOGY = "http://terminology.hl7.org/CodeSystem/"
# Identifier systems of the record have no public URI: they are named in our own URN namespace.
IDENTIFIER_PREFIX = "urn:healthos:identifier:"
MRN_SYSTEM = IDENTIFIER_PREFIX + "mrn"
ACCOUNT_SYSTEM = "urn:healthos:account"  # the appliance's account ids: who wrote an entry

ENCOUNTER_CLASS = {"outpatient": ("AMB", "ambulatory"), "emergency": ("EMER", "emergency"),
                   "inpatient": ("IMP", "inpatient encounter")}
ENCOUNTER_STATUS = {"planned": "planned", "arrived": "arrived", "in_progress": "in-progress",
                    "finished": "finished", "cancelled": "cancelled"}
SERVICE_CATEGORY = {"lab": ("108252007", "Laboratory procedure"), "imaging": ("363679005", "Imaging")}
INTERPRETATION = {"N": "Normal", "L": "Low", "H": "High", "LL": "Critical low", "HH": "Critical high",
                  "A": "Abnormal", "AA": "Critical abnormal"}


class VitalSign:
    """One measurement of a `vital_signs` entry as a LOINC-coded component: a quantity in `ucum` (taken
    also in each of `other_units`, times its factor), or a finding coded by `answers` (the record's value
    to its coding) — and where the record keeps a grade of the finding in `grade_column`, coded by `grades`
    (the grade to its coding) in its stead — or else text."""

    def __init__(self, column: str, loinc: str, display: str, unit: str | None, ucum: str | None, *,
                 text: str | None = None, other_units: dict[str, Decimal] | None = None,
                 answers: dict[Any, tuple[str, str, str]] | None = None, grade_column: str | None = None,
                 grades: dict[int, tuple[str, str, str]] | None = None):
        self.column, self.loinc, self.display, self.unit, self.ucum = column, loinc, display, unit, ucum
        self.text = text or display
        self.other_units = other_units or {}
        self.answers = answers
        self.grade_column, self.grades = grade_column, grades or {}

    def coding_of(self, row: dict) -> tuple[str, str, str]:
        """The coding of a finding in `row`: its grade's where it was graded, else its value's."""
        grade = row.get(self.grade_column) if self.grade_column else None
        return self.grades[grade] if grade in self.grades else (self.answers or {})[row[self.column]]


VITAL_SIGNS_PANEL = ("85353-1", "Vital signs, weight, height, head circumference, oxygen saturation and BMI panel")
VITAL_SIGNS = [
    VitalSign("systolic_mmhg", "8480-6", "Systolic blood pressure", "mmHg", "mm[Hg]"),
    VitalSign("diastolic_mmhg", "8462-4", "Diastolic blood pressure", "mmHg", "mm[Hg]"),
    VitalSign("heart_rate_bpm", "8867-4", "Heart rate", "beats/minute", "/min"),
    VitalSign("respiratory_rate", "9279-1", "Respiratory rate", "breaths/minute", "/min"),
    VitalSign("temperature_c", "8310-5", "Body temperature", "Cel", "Cel"),
    VitalSign("spo2_percent", "59408-5", "Oxygen saturation in Arterial blood by Pulse oximetry", "%", "%"),
    # A weight kept to the gram (appliance/substrate/body_weight.py), so a newborn's taken in grams too.
    VitalSign("weight_kg", "29463-7", "Body weight", "kg", "kg", other_units={"g": Decimal("0.001")}),
    VitalSign("height_cm", "8302-2", "Body height", "cm", "cm"),
    VitalSign("oxygen_l_min", "3151-8", "Inhaled oxygen flow rate", "L/min", "L/min"),
    VitalSign("consciousness", "67775-7", "Level of responsiveness (ACVPU)", None, None),
    # A child's malnutrition screening (clinical/growth.py). MUAC: LOINC's mid-upper-arm circumference (its
    # name says the right arm; WHO measures the left, and no LOINC term names it), kept in whole mm as the
    # tape reads and taken in cm too.
    VitalSign("muac_mm", "56072-2", "Circumference Mid upper arm - right", "mm", "mm",
              text="Mid-upper-arm circumference (MUAC)", other_units={"cm": Decimal(10)}),
    # Bilateral pitting oedema: present or absent, and where it was graded its WHO grade (+, ++, +++). LOINC
    # 44966-0 "Edema", valued by SNOMED CT's Present (52101004) and Absent (2667000) qualifiers — the code as a
    # vital-signs Observation in the InteropEHRate Cross Border Data Exchange IG (Observation/1116,
    # "Peripheral Edema", build.fhir.org/ig/InteropEHRate-project/cross-border-data-exchange) — and a grade by
    # the presence findings below Present of three pluses: 441614007 / 441517005 / 441521003 "Present one /
    # two / three plus out of three plus". Present, absent and the three grades are all in the International
    # Patient Summary's presence/absence value sets (hl7.org/fhir/uv/ips 1.1.0,
    # ValueSet/results-presence-absence-snomed-ct-ips-free-set, which lists the three; 2.0.1,
    # ValueSet/results-presence-absence-uv-ips: the descendants of 260411009 |Presence findings| and 272519000
    # |Absence findings|). Not IHE's Edema.VS (420829009 1+ ... 421129002 4+ pitting edema): four grades of
    # pit depth, not WHO's three of extent.
    VitalSign("oedema", "44966-0", "Edema", None, None, text="Bilateral pitting oedema",
              answers={True: (SNOMED, "52101004", "Present"), False: (SNOMED, "2667000", "Absent")},
              grade_column="oedema_grade",
              grades={1: (SNOMED, "441614007", "Present one plus out of three plus"),
                      2: (SNOMED, "441517005", "Present two plus out of three plus"),
                      3: (SNOMED, "441521003", "Present three plus out of three plus")}),
]
# Codes a client may send for one measurement (SpO2 is also coded 2708-6 by many systems).
VITAL_SIGN_BY_CODE = {v.loinc: v for v in VITAL_SIGNS} | {"2708-6": VITAL_SIGNS[5]}


def _instant(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _number(value: Decimal | int | float | None) -> int | float | None:
    """A JSON number: FHIR decimals travel as numbers, never as strings."""
    if value is None:
        return None
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


def _coding(system: str, code: str, display: str | None = None) -> dict:
    return {k: v for k, v in {"system": system, "code": code, "display": display}.items() if v is not None}


def _concept(system: str, code: str, display: str | None = None) -> dict:
    return {"coding": [_coding(system, code, display)]}


def reference(resource_type: str, resource_id: uuid.UUID | str | None) -> dict | None:
    return {"reference": f"{resource_type}/{resource_id}"} if resource_id is not None else None


def _author(row: dict) -> dict | None:
    """Who recorded it — the record's first author (the prescriber of a prescription stopped since, not who
    stopped it) — by the account's id: a logical reference, since the facade serves no Practitioner a
    literal one could point at."""
    author = row.get("record_author_id") or row.get("author_id")
    return {"type": "Practitioner", "identifier": {"system": ACCOUNT_SYSTEM, "value": str(author)}} if author else None


def _meta(row: dict) -> dict:
    return {"versionId": str(row["id"]), "lastUpdated": _instant(row["recorded_at"])}


def _entry_base(resource_type: str, row: dict) -> dict:
    return {"resourceType": resource_type, "id": str(row["root_id"]), "meta": _meta(row)}


def _clean(resource: dict) -> dict:
    """Drop empty elements: FHIR forbids `null`, empty strings, lists and objects."""
    cleaned: dict = {}
    for key, value in resource.items():
        if isinstance(value, dict):
            value = _clean(value)
        elif isinstance(value, list):
            value = [_clean(v) if isinstance(v, dict) else v for v in value]
            value = [v for v in value if v not in (None, "", {}, [])]
        if value not in (None, "", {}, []):
            cleaned[key] = value
    return cleaned


def _retracted(row: dict) -> bool:
    return row.get("entry_status") == "entered_in_error"


# -- Patient -----------------------------------------------------------------------------------------


def patient(row: dict) -> dict:
    address = row.get("address") or {}
    telecom = [{"system": "phone", "value": row["phone"], "use": "mobile"}] if row.get("phone") else []
    telecom += [{"system": "email" if c.get("kind") == "email" else "phone", "value": c["value"]}
                for c in row.get("contacts") or []]
    return _clean({
        "resourceType": "Patient", "id": str(row["id"]),
        "meta": {"versionId": str(row["version_id"]), "lastUpdated": _instant(row["updated_at"])},
        "identifier": [{"use": "usual", "system": MRN_SYSTEM, "value": row["mrn"],
                        "type": _concept(TERMINOLOGY + "v2-0203", "MR", "Medical record number")}]
        + [{"system": IDENTIFIER_PREFIX + i["system"], "value": i["value"]} for i in row.get("identifiers") or []],
        "active": True,
        "name": [{"use": "official", "family": row["family_name"], "given": row["given_names"].split(),
                  "text": f"{row['given_names']} {row['family_name']}"}],
        "telecom": telecom,
        "gender": row["sex"],
        "birthDate": row["birth_date"].isoformat(),
        # Recorded deceased at any facility of the appliance (one identity), when a death certificate says so.
        "deceasedDateTime": _instant(row.get("deceased_at")),
        "address": [{"line": [address["line"]] if address.get("line") else [], "city": address.get("village"),
                     "district": address.get("district"), "state": address.get("region"),
                     "country": address.get("country")}],
        "contact": [{"relationship": [{"text": k["relationship"]}], "name": {"text": k["name"]},
                     "telecom": [{"system": "phone", "value": k["phone"]}] if k.get("phone") else []}
                    for k in row.get("next_of_kin") or []],
    })


# -- Encounter ---------------------------------------------------------------------------------------


def encounter(row: dict) -> dict:
    code, display = ENCOUNTER_CLASS[row["encounter_class"]]
    return _clean({
        "resourceType": "Encounter", "id": str(row["id"]),
        "status": ENCOUNTER_STATUS[row["status"]],
        "class": _coding(TERMINOLOGY + "v3-ActCode", code, display),
        "subject": reference("Patient", row["patient_id"]),
        "period": {"start": _instant(row.get("started_at") or row.get("planned_for")),
                   "end": _instant(row.get("ended_at"))},
        "reasonCode": [{"text": row["reason"]}] if row.get("reason") else [],
        "location": [{"location": {"display": f"ward {row['ward_code']}"}}] if row.get("ward_code") else [],
    })


# -- Condition ---------------------------------------------------------------------------------------


def condition(row: dict) -> dict:
    retracted = _retracted(row)
    return _clean({
        **_entry_base("Condition", row),
        # FHIR (con-5): a condition entered in error carries no clinical status.
        "clinicalStatus": None if retracted else _concept(TERMINOLOGY + "condition-clinical", row["clinical_status"]),
        "verificationStatus": _concept(TERMINOLOGY + "condition-ver-status",
                                       "entered-in-error" if retracted else row["verification"]),
        "category": [_concept(TERMINOLOGY + "condition-category", "problem-list-item", "Problem List Item")],
        "code": {"coding": [_coding(ICD10, row["code"], row["display"])], "text": row["display"]},
        "subject": reference("Patient", row["patient_id"]),
        "encounter": reference("Encounter", row.get("encounter_id")),
        "onsetDateTime": row["onset_date"].isoformat() if row.get("onset_date") else None,
        "abatementDateTime": row["resolved_date"].isoformat() if row.get("resolved_date") else None,
        "recordedDate": _instant(row["occurred_at"]),
        "recorder": _author(row),
        "note": [{"text": row["note"]}] if row.get("note") else [],
    })


# -- AllergyIntolerance ------------------------------------------------------------------------------


def allergy(row: dict) -> dict:
    retracted = _retracted(row)
    reaction = []
    if row.get("reaction") or row.get("severity"):
        reaction = [{"manifestation": [{"text": row.get("reaction") or "reaction not described"}],
                     "severity": row.get("severity")}]
    return _clean({
        **_entry_base("AllergyIntolerance", row),
        "clinicalStatus": None if retracted else _concept(TERMINOLOGY + "allergyintolerance-clinical",
                                                          row["clinical_status"]),
        "verificationStatus": _concept(TERMINOLOGY + "allergyintolerance-verification",
                                       "entered-in-error" if retracted else "confirmed"),
        # FHIR has no "other" category: such an allergy is sent without one.
        "category": [row["category"]] if row["category"] in {"medication", "food", "environment"} else [],
        "criticality": row["criticality"].replace("_", "-"),
        "code": {"text": row["substance"]},
        "patient": reference("Patient", row["patient_id"]),
        "encounter": reference("Encounter", row.get("encounter_id")),
        "recordedDate": _instant(row["occurred_at"]),
        "reaction": reaction,
        "note": [{"text": row["note"]}] if row.get("note") else [],
    })


# -- MedicationRequest -------------------------------------------------------------------------------


def medication_request(row: dict) -> dict:
    dose = _number(row["dose"])
    return _clean({
        **_entry_base("MedicationRequest", row),
        "status": "entered-in-error" if _retracted(row) else row["status"],
        "intent": "order",
        "medicationCodeableConcept": {"text": row["drug"]},
        "subject": reference("Patient", row["patient_id"]),
        "encounter": reference("Encounter", row.get("encounter_id")),
        "authoredOn": _instant(row["occurred_at"]),
        "requester": _author(row),
        "dosageInstruction": [{
            "text": f"{dose} {row['dose_unit']} {row['route']} {row['frequency']}",
            "patientInstruction": row.get("instructions"),
            "timing": {"code": {"text": row["frequency"]}},
            "route": {"text": row["route"]},
            "doseAndRate": [{"doseQuantity": {"value": dose, "unit": row["dose_unit"]}}],
        }],
        "dispenseRequest": {"expectedSupplyDuration": {
            "value": row["duration_days"], "unit": "days", "system": UCUM, "code": "d"}}
        if row.get("duration_days") else None,
        "note": [{"text": f"allergy alert overridden: {row['allergy_override_reason']}"}]
        if row.get("allergy_override_reason") else [],
    })


# -- ServiceRequest ----------------------------------------------------------------------------------


def service_request(row: dict) -> dict:
    category = SERVICE_CATEGORY.get(row["category"])
    return _clean({
        **_entry_base("ServiceRequest", row),
        "status": "entered-in-error" if _retracted(row) else row["status"],
        "intent": "order",
        "category": [_concept(SNOMED, *category)] if category else [],
        "priority": row["priority"],
        "code": {"coding": [_coding(LOINC, row["code"], row["display"])], "text": row["display"]},
        "subject": reference("Patient", row["patient_id"]),
        "encounter": reference("Encounter", row.get("encounter_id")),
        "authoredOn": _instant(row["occurred_at"]),
        "requester": _author(row),
        "note": [{"text": row["clinical_info"]}] if row.get("clinical_info") else [],
    })


# -- Observation: laboratory results and vital signs -------------------------------------------------


def _observation_status(row: dict) -> str:
    return {"entered_in_error": "entered-in-error", "amended": "amended"}.get(row.get("entry_status"), "final")


def _category(code: str, display: str) -> list[dict]:
    return [_concept(TERMINOLOGY + "observation-category", code, display)]


def _quantity(value: Any, unit: str | None, ucum: str | None = None) -> dict:
    return {"value": _number(value), "unit": unit, "system": UCUM if ucum or unit else None, "code": ucum or unit}


def result(row: dict) -> dict:
    unit = row.get("unit")
    low, high = row.get("reference_low"), row.get("reference_high")
    value: dict = {}
    if row.get("value_numeric") is not None:
        value["valueQuantity"] = _quantity(row["value_numeric"], unit)
    elif row.get("value_text") is not None:
        value["valueString"] = row["value_text"]
    flag = row.get("flag")
    return _clean({
        **_entry_base("Observation", row),
        "status": _observation_status(row),
        "category": _category("laboratory", "Laboratory"),
        "code": {"coding": [_coding(LOINC, row["code"], row["display"])], "text": row["display"]},
        "subject": reference("Patient", row["patient_id"]),
        "encounter": reference("Encounter", row.get("encounter_id")),
        "basedOn": [reference("ServiceRequest", row["service_request_id"])] if row.get("service_request_id") else [],
        "effectiveDateTime": _instant(row["occurred_at"]),
        "issued": _instant(row["recorded_at"]),
        **value,
        "interpretation": [_concept(TERMINOLOGY + "v3-ObservationInterpretation", flag, INTERPRETATION.get(flag))]
        if flag else [],
        "referenceRange": [{"low": _quantity(low, unit) if low is not None else None,
                            "high": _quantity(high, unit) if high is not None else None}]
        if low is not None or high is not None else [],
        "note": [{"text": row["note"]}] if row.get("note") else [],
    })


def vital_signs(row: dict) -> dict:
    components = []
    for sign in VITAL_SIGNS:
        value = row.get(sign.column)
        if value is None:
            continue
        if sign.unit:
            measured = {"valueQuantity": _quantity(value, sign.unit, sign.ucum)}
        elif sign.answers is not None:
            system, code, display = sign.coding_of(row)
            measured = {"valueCodeableConcept": {"coding": [_coding(system, code, display)], "text": display}}
        else:
            measured = {"valueCodeableConcept": {"text": value}}
        components.append({"code": {"coding": [_coding(LOINC, sign.loinc, sign.display)], "text": sign.text},
                           **measured})
    return _clean({
        **_entry_base("Observation", row),
        "status": _observation_status(row),
        "category": _category("vital-signs", "Vital Signs"),
        "code": {"coding": [_coding(LOINC, *VITAL_SIGNS_PANEL)], "text": "Vital signs"},
        "subject": reference("Patient", row["patient_id"]),
        "encounter": reference("Encounter", row.get("encounter_id")),
        "effectiveDateTime": _instant(row["occurred_at"]),
        "issued": _instant(row["recorded_at"]),
        "performer": [_author(row)],
        "component": components,
    })



# -- Immunization ------------------------------------------------------------------------------------

CVX = "http://hl7.org/fhir/sid/cvx"
# The record's own vaccine codes (policies/immunization.toml's `code`), named in our URN namespace: they are the
# ministry's, editable, and every dose carries one, so every vaccineCode holds it.
VACCINE_SYSTEM = "urn:healthos:vaccine"
# Beside ours, the vaccine's CVX code (CDC's vaccine administered codes, the value set R4 binds vaccineCode to as its
# example, http://hl7.org/fhir/ValueSet/vaccine-code), so a receiving EHR or registry codes the dose without our
# table: read from the schedule itself (policies/immunization.toml's `cvx`, `cvx_name`, which says why CVX), the one
# table the HL7 v2 feed reads too. A vaccine the schedule gives no CVX code goes out with our code alone.
# Why a dose due was not given, as R4's immunization-status-reason value set codes it (v3 ActReason); "other" goes
# as text alone. An unwell child is a medical precaution, as a contraindication is.
NOT_DONE_REASON = {"refused": ("PATOBJ", "patient objection"),
                   "contraindicated": ("MEDPREC", "medical precaution"),
                   "child_unwell": ("MEDPREC", "medical precaution"),
                   "out_of_stock": ("OSTOCK", "product out of stock"),
                   "already_immune": ("IMMUNE", "immunity")}
# Where and how it was given, by R4's example value sets (v3 ActSite, v3 RouteOfAdministration); the mouth, for an
# oral vaccine, is no ActSite: text alone.
VACCINE_SITE = {"left_thigh": ("LT", "left thigh"), "right_thigh": ("RT", "right thigh"),
                "left_upper_arm": ("LA", "left arm"), "right_upper_arm": ("RA", "right arm")}
VACCINE_ROUTE = {"intramuscular": ("IM", "Injection, intramuscular"),
                 "subcutaneous": ("SQ", "Injection, subcutaneous"),
                 "intradermal": ("IDINJ", "Injection, intradermal"), "oral": ("PO", "Swallow, oral")}


def _vaccine(row: dict, schedule: Schedule) -> dict:
    vaccine = schedule.by_code.get(row["vaccine"])
    cvx = (vaccine.cvx, vaccine.cvx_name) if vaccine is not None and vaccine.cvx is not None else None
    name = row.get("vaccine_name") or (cvx[1] if cvx else row["vaccine"])
    return {"coding": [_coding(VACCINE_SYSTEM, row["vaccine"], row.get("vaccine_name")),
                       *([_coding(CVX, *cvx)] if cvx else [])], "text": name}


def _coded_or_text(value: str | None, codes: dict[str, tuple[str, str]], system: str) -> dict | None:
    if value is None:
        return None
    if value in codes:
        code, display = codes[value]
        return {"coding": [_coding(system, code, display)], "text": value.replace("_", " ")}
    return {"text": value.replace("_", " ")}


def immunization(row: dict, schedule: Schedule) -> dict:
    """A dose given, or due and not given (`not-done` with its reason), its vaccine coded by `schedule`. A dose
    read from the child's card or another facility's record (`historical`) is not from its primary source:
    `primarySource` false, its origin a written record, and no performer (who recorded it did not give it). The
    time is the dose's own — the current version's, since a correction may correct the day (`given_at`, when
    the caller read it apart)."""
    retracted = _retracted(row)
    historical = row["source"] == "historical"
    not_done = row["status"] == "not_done"
    reason = NOT_DONE_REASON.get(row.get("not_done_reason") or "")
    return _clean({
        **_entry_base("Immunization", row),
        "status": "entered-in-error" if retracted else "not-done" if not_done else "completed",
        "statusReason": {"coding": [_coding(TERMINOLOGY + "v3-ActReason", *reason)] if reason else [],
                         "text": row["not_done_reason"].replace("_", " ")} if not_done else None,
        "vaccineCode": _vaccine(row, schedule),
        "patient": reference("Patient", row["patient_id"]),
        "encounter": reference("Encounter", row.get("encounter_id")),
        "occurrenceDateTime": _instant(row.get("given_at") or row["occurred_at"]),
        "recorded": _instant(row["recorded_at"]),
        "primarySource": not historical,
        "reportOrigin": _concept(TERMINOLOGY + "immunization-origin", "record", "Written Record")
        if historical else None,
        "lotNumber": row.get("lot_number"),
        "expirationDate": row["expiry_date"].isoformat() if row.get("expiry_date") else None,
        "site": _coded_or_text(row.get("site"), VACCINE_SITE, TERMINOLOGY + "v3-ActSite"),
        "route": _coded_or_text(row.get("route"), VACCINE_ROUTE, TERMINOLOGY + "v3-RouteOfAdministration"),
        "performer": [{"function": _concept(TERMINOLOGY + "v2-0443", "AP", "Administering Provider"),
                       "actor": _author(row)}] if not historical and not not_done and _author(row) else [],
        "note": [{"text": row["note"]}] if row.get("note") else [],
        # The dose's place in the vaccine's series; a campaign or extra dose has none and says so in no number.
        "protocolApplied": [{"doseNumberPositiveInt": row["dose_number"]}] if row.get("dose_number") else [],
    })


# -- Procedure: an operation -------------------------------------------------------------------------

# The facility's procedure list codes (the tenant file's `[[procedures]]`, also its fee items' codes) have no
# public URI: they are the facility's own, named in our URN namespace.
PROCEDURE_SYSTEM = "urn:healthos:procedure"
# A case's state as R4's event-status: booked, it is being prepared; cancelled before anything was done beyond
# the preparation, it was not done.
PROCEDURE_STATUS = {"scheduled": "preparation", "in_theatre": "in-progress", "completed": "completed",
                    "cancelled": "not-done"}
SURGICAL_PROCEDURE = ("387713003", "Surgical procedure")  # SNOMED CT, R4's example procedure-category value set


def _operation_note_text(note: dict) -> str:
    parts = [("Procedure performed", note["procedure_performed"]), ("Findings", note["findings"]),
             ("Estimated blood loss", f"{note['blood_loss_ml']} ml"), ("Implants", note.get("implants")),
             ("Specimens", note.get("specimens"))]
    return "\n".join(f"{label}: {text}" for label, text in parts if text)


def procedure(row: dict) -> dict:
    """An operation booked on the record (clinical/surgery.py), in the state its case is in, with the theatre
    team as performers (by name: the team is written as words, not as accounts) and, once signed, its operation
    note: what was done and found as the note, complications and post-operative instructions in their own
    elements. `row["operation_note"]` is the case's current note, where it has one."""
    note = row.get("operation_note")
    team = [("Surgeon", row["surgeon"]), ("Anaesthetist", row.get("anaesthetist"))]
    return _clean({
        **_entry_base("Procedure", row),
        "status": "entered-in-error" if _retracted(row) else PROCEDURE_STATUS[row["status"]],
        "statusReason": {"text": row["cancel_reason"]} if row["status"] == "cancelled" else None,
        "category": _concept(SNOMED, *SURGICAL_PROCEDURE),
        "code": {"coding": [_coding(PROCEDURE_SYSTEM, row["procedure_code"])] if row.get("procedure_code") else [],
                 "text": row["procedure"]},
        "subject": reference("Patient", row["patient_id"]),
        "encounter": reference("Encounter", row.get("encounter_id")),
        # From into theatre to completed; a case still in theatre has begun and not ended.
        "performedPeriod": {"start": _instant(row.get("started_at")), "end": _instant(row.get("ended_at"))}
        if row.get("started_at") else None,
        "recorder": _author(row),
        "performer": [{"function": {"text": function}, "actor": {"display": name}} for function, name in team if name],
        "note": [{"authorReference": _author(note), "time": _instant(note["recorded_at"]),
                  "text": _operation_note_text(note)}] if note else [],
        "complication": [{"text": note["complications"]}] if note and note.get("complications") else [],
        "followUp": [{"text": note["post_op_instructions"]}] if note else [],
    })


# -- DocumentReference: a document filed on the chart ------------------------------------------------

# The appliance's document categories (appliance/layers/clinical/documents.py) have no public code system: named in
# our URN namespace, their words as display.
DOCUMENT_CATEGORY_SYSTEM = "urn:healthos:document-category"


def document_reference(row: dict) -> dict:
    """A scan or photograph filed on the chart: its category, title (`description`) and the date on it
    (`attachment.creation`), who filed it and when, and the file by reference — `attachment.url` the audited route
    that serves it, with its type, size and hash (R4's Attachment.hash: SHA-1, base64). A record's current version
    is `current`; one marked entered in error says so, and its file is no longer served."""
    return _clean({
        **_entry_base("DocumentReference", row),
        "status": "entered-in-error" if _retracted(row) else "current",
        "type": {"text": row["category_words"]},
        "category": [_concept(DOCUMENT_CATEGORY_SYSTEM, row["category"], row["category_words"])],
        "subject": reference("Patient", row["patient_id"]),
        "date": _instant(row["recorded_at"]),
        "author": [_author(row)],
        "description": row["title"],
        "content": [{"attachment": {
            "contentType": row["media_type"], "url": row["url"], "size": row["size"], "hash": row["sha1_base64"],
            "title": row["title"],
            "creation": row["document_date"].isoformat() if row.get("document_date") else None}}],
        "context": {"encounter": [reference("Encounter", row.get("encounter_id"))]},
    })


# -- EpisodeOfCare: a TB treatment, and its Condition -----------------------------------------------

# The facility's TB register numbers ("2026/0001") are given in sequence at each facility: the system names it.
TB_REGISTER_PREFIX = "urn:healthos:tb-register:"
TB_CONDITION_ID = "tb"  # the Condition contained in the EpisodeOfCare: the case the treatment treats
# A pulmonary case by its bacteriology at registration (WHO ICD-10's A15 and A16). An extrapulmonary case is not
# coded: the register keeps no organ, and each of A17 (nervous system), A18 (other organs) and A19 (miliary) says one.
TB_PULMONARY_ICD10 = {"bacteriologically_confirmed": "A15", "clinically_diagnosed": "A16"}
TB_VERIFICATION = {"bacteriologically_confirmed": "confirmed", "clinically_diagnosed": "provisional"}
TB_RESOLVED = ("cured", "treatment_completed")  # the outcomes WHO counts as treatment success


def tb_condition(row: dict) -> dict:
    """The TB case a treatment treats, as classified at registration (WHO 2013): ICD-10 A15 or A16 for a pulmonary
    case by its bacteriology (displayed as the WHO list displays it), confirmed or provisional by the
    same; onset the day treatment started, resolved on the day of a cure or a completed treatment. The HIV status
    recorded at the start is not here: it is readable only with the ART register's permission."""
    retracted = _retracted(row)
    pulmonary = row["site"] == "pulmonary"
    code = TB_PULMONARY_ICD10[row["bacteriology"]] if pulmonary else None
    resolved = row.get("outcome") in TB_RESOLVED
    return _clean({
        "resourceType": "Condition", "id": TB_CONDITION_ID,
        "clinicalStatus": None if retracted else _concept(TERMINOLOGY + "condition-clinical",
                                                          "resolved" if resolved else "active"),
        "verificationStatus": _concept(TERMINOLOGY + "condition-ver-status",
                                       "entered-in-error" if retracted else TB_VERIFICATION[row["bacteriology"]]),
        "category": [_concept(TERMINOLOGY + "condition-category", "problem-list-item", "Problem List Item")],
        "code": {"coding": [_coding(ICD10, code, icd10.lookup(code).display)] if code else [],
                 "text": f"{'Pulmonary' if pulmonary else 'Extrapulmonary'} tuberculosis, "
                         f"{row['bacteriology'].replace('_', ' ')}"},
        "subject": reference("Patient", row["patient_id"]),
        "onsetDateTime": row["started_on"].isoformat(),
        "abatementDateTime": row["outcome_on"].isoformat() if resolved else None,
    })


def episode_of_care(row: dict, facility: str) -> dict:
    """A TB treatment on the facility's register (clinical/tuberculosis.py): its register number, active until an
    outcome is assigned and finished then, from the day it started to the outcome's day, with the case it treats
    as its diagnosis (a contained Condition, `tb_condition`). Never the HIV status recorded at its start."""
    retracted = _retracted(row)
    return _clean({
        **_entry_base("EpisodeOfCare", row),
        "contained": [tb_condition(row)],
        "identifier": [{"system": TB_REGISTER_PREFIX + facility, "value": row["register_number"]}],
        "status": "entered-in-error" if retracted else "finished" if row.get("outcome") else "active",
        "type": [{"text": "Tuberculosis treatment"}],
        "diagnosis": [{"condition": {"reference": f"#{TB_CONDITION_ID}"}, "rank": 1}],
        "patient": reference("Patient", row["patient_id"]),
        "period": {"start": row["started_on"].isoformat(),
                   "end": row["outcome_on"].isoformat() if row.get("outcome_on") else None},
    })


# -- NutritionOrder: a diet order --------------------------------------------------------------------

# The kitchen's diets (appliance/layers/nursing/diet.py) have no public code system: named in our URN namespace, their
# words as display; no SNOMED CT code is claimed for them.
DIET_SYSTEM = "urn:healthos:diet"
# IDDSI publishes no FHIR code system URI: its framework's address names it, the level number the code.
IDDSI_SYSTEM = "https://iddsi.org/framework"
IDDSI_DRINKS, IDDSI_FOODS = range(0, 5), range(3, 8)  # levels 0-4 thicken drinks, 3-7 modify foods


def _diet(code: str) -> dict:
    return {"coding": [_coding(DIET_SYSTEM, code, DIET_WORDS[code])], "text": DIET_WORDS[code]}


def nutrition_order(row: dict, now: dt.datetime | None = None) -> dict:
    """An inpatient's diet order (the nursing layer's `diet_order`) as last written: `active`, `completed` once it
    has ended, `entered-in-error` once withdrawn; the diet and those combined with it as the oral diet's types
    (tube feeding as the enteral formula), from its start to its end, and the IDDSI level as the texture of foods
    (levels 3-7) and the consistency of drinks (0-4). Food to exclude is named only where the order names it, and it
    names none: the patient's allergies are AllergyIntolerance's, not copied here."""
    ended = row.get("ends_at") is not None and row["ends_at"] <= (now or dt.datetime.now(dt.UTC))
    period = {"repeat": {"boundsPeriod": {"start": _instant(row["starts_at"]), "end": _instant(row.get("ends_at"))}}}
    level = row.get("iddsi_level")
    iddsi = _concept(IDDSI_SYSTEM, str(level), IDDSI[level].split(" ", 1)[1]) if level is not None else None
    enteral = row["diet"] == "enteral"
    return _clean({
        **_entry_base("NutritionOrder", row),
        "status": "entered-in-error" if _retracted(row) else "completed" if ended else "active",
        "intent": "order",
        "patient": reference("Patient", row["patient_id"]),
        "encounter": reference("Encounter", row.get("encounter_id")),
        "dateTime": _instant(row["recorded_at"]),
        "orderer": _author(row),
        "oralDiet": None if enteral else {
            "type": [_diet(code) for code in [row["diet"], *(row.get("also") or [])]],
            "schedule": [period],
            "texture": [{"modifier": iddsi}] if iddsi and level in IDDSI_FOODS else [],
            "fluidConsistencyType": [iddsi] if iddsi and level in IDDSI_DRINKS else []},
        "enteralFormula": {"baseFormulaType": _diet(row["diet"]), "administration": [{"schedule": period}]}
        if enteral else None,
        "note": [{"text": row["note"]}] if row.get("note") else [],
    })
