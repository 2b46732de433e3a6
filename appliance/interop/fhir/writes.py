"""Writes of the FHIR facade: a resource a client creates, a transaction Bundle, a bundle imported in
bulk — each validated against the FHIR R4B models first, then turned into the clinical layer's own
request shapes (`PatientIn`, `ConditionIn`, `AllergyIn`, `VitalSignsIn`, `ImmunizationIn`) and written through
its services and the record, in one tenant transaction: all of a bundle, or none of it. A vaccine dose (POST
Immunization, or an entry of a transaction Bundle, as an EPI app or a DHIS2 Tracker-style client sends a session's
doses) is written by the immunization service, so the national schedule judges it as it judges one recorded on the
chart; a bulk import, which has no schedule to hand, counts it skipped.

Three kinds of "no": a resource the record cannot hold (a type it has no place for, a condition coded
only in SNOMED CT, a vital sign it does not chart) is `Unsupported` — a 422 to an API client, a
skipped resource counted by a bulk import; an element of a resource the record would not keep (what
each type keeps is `KEPT`, next to the function that reads it) is named in `Write.not_kept` — a 422
naming each to an API client, nothing written, and counted by a bulk import, which takes the resource
in without it; a resource that is wrong (an ICD-10 code not in the WHO list, a heart rate of 900) is a
`FhirError` and refuses the whole bundle.

Past care keeps its time: an encounter's period and a vital signs set's effective time are the
entries' `occurred_at` (written through `record.append`, as the clinical service writes them, since
its functions record the present); a condition keeps its onset and abatement dates.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
import zoneinfo
from collections import Counter
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from pydantic import BaseModel, ValidationError
from sqlalchemy.engine import Connection

from appliance.interop.fhir import elements, resources
from appliance.interop.fhir.elements import ENTIRE, REFERENCE, Kept
from appliance.interop.fhir.errors import FhirError, of_record_error, of_validation
from appliance.layers.clinical import access, immunization, service
from appliance.layers.clinical.immunization_schedule import Schedule, Vaccine
from appliance.layers.clinical.schemas import AllergyIn, ConditionIn, ImmunizationIn, PatientIn, VitalSignsIn
from appliance.substrate import record
from appliance.substrate.body_weight import KEPT_PLACES
from appliance.substrate.db import Database
from appliance.substrate.principal import Principal
from appliance.substrate.record import RecordError

ICD10_SYSTEMS = {resources.ICD10, "http://hl7.org/fhir/sid/icd-10-cm"}
# What a client may create, alone (POST /{type}) or in a bundle; written in this order so that a
# bundle's references point backwards (a patient before its encounters, encounters before the rest).
CREATABLE = ("Patient", "Encounter", "Condition", "AllergyIntolerance", "Observation", "Immunization")
PATIENT_ELEMENT = ("AllergyIntolerance", "Immunization")  # types naming their patient `patient`, not `subject`
# A sender's clock may run a little ahead of ours; further ahead is a mistake.
CLOCK_SKEW = dt.timedelta(minutes=10)


class Unsupported(Exception):  # a verdict on a resource, not a failure: named for what it says
    """A resource the record has no place for: skipped by a bulk import, 422 to an API client."""

    def __init__(self, resource_type: str, why: str):
        super().__init__(f"{resource_type}: {why}")
        self.resource_type = resource_type
        self.why = why


@dataclass
class Write:
    """One resource to create, converted to the clinical layer's shape; references still to resolve."""

    resource_type: str
    where: str  # the FHIRPath of the resource in the request, for refusals (`Condition`, `Bundle.entry[2].resource`)
    data: Any
    full_url: str | None = None
    patient_ref: str | None = None
    encounter_ref: str | None = None
    occurred_at: dt.datetime | None = None
    sources: int = 1  # how many resources of the request it holds (vital signs taken together: several)
    not_kept: list[elements.NotKept] = field(default_factory=list)  # what of the resource the record would not keep


def validate(resource: Any, resource_type: str | None, where: str) -> dict:
    """The resource, checked against its FHIR R4B model; a wrong type or shape is refused naming the element."""
    if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
        raise FhirError(400, "structure", "the body is not a FHIR resource (no resourceType)",
                        expression=f"{where}.resourceType")
    if resource_type is not None and resource["resourceType"] != resource_type:
        raise FhirError(400, "invalid", f"this address takes a {resource_type}, not a {resource['resourceType']}",
                        expression=f"{where}.resourceType")
    try:
        model = get_fhir_model_class(resource["resourceType"])
    except KeyError:
        raise FhirError(400, "not-supported", f"{resource['resourceType']} is not a FHIR R4B resource type",
                        expression=f"{where}.resourceType") from None
    try:
        validated = model.model_validate(resource)
    except ValidationError as exc:
        raise of_validation(exc, resource["resourceType"], where) from None
    number = _time_given_as_a_number(resource, validated, where)
    if number is not None:
        raise FhirError(400, "structure", f"{number}: a FHIR date or time is written as text (YYYY-MM-DD, or "
                                          "YYYY-MM-DDThh:mm:ss with its zone), not a number", expression=number)
    return resource


def _time_given_as_a_number(raw: Any, validated: Any, where: str) -> str | None:
    """The first date, dateTime, instant or time element sent as something other than text, by its path. The
    R4B models read such a number as seconds since 1970 (pydantic's leniency, not FHIR's JSON, whose dates are
    strings), and everything after them here reads the element's text."""
    if isinstance(validated, dt.date | dt.time):
        return None if isinstance(raw, str) else where
    if isinstance(validated, BaseModel) and isinstance(raw, dict):
        names = {(info.alias or name): name for name, info in type(validated).model_fields.items()}
        for key, value in raw.items():
            if key in names:
                found = _time_given_as_a_number(value, getattr(validated, names[key]), f"{where}.{key}")
                if found:
                    return found
    elif isinstance(validated, list) and isinstance(raw, list):
        for index, (value, item) in enumerate(zip(raw, validated, strict=False)):
            found = _time_given_as_a_number(value, item, f"{where}[{index}]")
            if found:
                return found
    return None


def _model(schema: type[BaseModel], values: dict, where: str, elements: dict[str, str],
           described: dict[str, str] | None = None) -> Any:
    """The clinical layer's request model; its refusal named by the FHIR element the field came from, and
    by what the field holds where `described` says (a component's measurement and the unit it is kept in)."""
    try:
        return schema.model_validate(values)
    except ValidationError as exc:
        first = exc.errors()[0]
        name = str(first["loc"][0]) if first["loc"] else ""
        element = elements.get(name, name)
        what = f"{described[name]}: " if described and name in described else ""
        raise FhirError(422, "value", f"{element or 'resource'}: {what}{first['msg']}",
                        expression=f"{where}.{element}" if element else where) from None


def _code_of(concept: dict | None) -> str | None:
    for coding in (concept or {}).get("coding", []):
        if coding.get("code"):
            return coding["code"]
    return None


def _text_of(concept: dict | None) -> str | None:
    concept = concept or {}
    return concept.get("text") or next((c.get("display") or c.get("code") for c in concept.get("coding", [])
                                        if c.get("display") or c.get("code")), None)


def _date(value: str | None) -> str | None:
    return value[:10] if value else None


def _instant(value: str | None, where: str) -> dt.datetime | None:
    if not value:
        return None
    try:
        when = dt.datetime.fromisoformat(value if len(value) > 10 else value + "T00:00:00+00:00")
    except ValueError:
        raise FhirError(422, "value", f"{value!r} is not a date and time", expression=where) from None
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


# -- Patient -----------------------------------------------------------------------------------------

IDENTIFIER_TYPES = {"SS": "national_id", "NI": "national_id", "NNKEN": "national_id", "PPN": "passport",
                    "DL": "driving_licence", "MR": "source_mrn", "BCT": "birth_certificate"}
PATIENT_ELEMENTS = {"family_name": "name.family", "given_names": "name.given", "birth_date": "birthDate",
                    "sex": "gender", "phone": "telecom", "contacts": "telecom", "address": "address",
                    "identifiers": "identifier", "next_of_kin": "contact"}


def _identifier_system(identifier: dict) -> str | None:
    system = identifier.get("system") or ""
    if system.startswith(resources.IDENTIFIER_PREFIX):
        name = system.removeprefix(resources.IDENTIFIER_PREFIX)
        return None if name == "mrn" else name  # our own MRN is assigned here, never taken from a client
    code = _code_of(identifier.get("type"))
    return IDENTIFIER_TYPES.get(code or "", "source_id")


def _human_name(name: dict) -> str:
    return name.get("text") or " ".join([*name.get("given", []), name.get("family") or ""]).strip()


def _the_name(resource: dict) -> dict:
    """The one name a registration keeps: the official one, else the first."""
    names = resource.get("name") or []
    return next((n for n in names if n.get("use") == "official"), names[0] if names else {})


def _first_of_its_system(identifier: dict, patient: dict) -> bool:
    """An identifier kept: one the record has a system for (not this appliance's own MRN), with a value,
    and the first the patient carries in that system."""
    system = _identifier_system(identifier)
    if system is None or not identifier.get("value"):
        return False
    return next(i for i in patient.get("identifier") or [] if _identifier_system(i) == system) is identifier


def _words(text: str) -> set[str]:
    return set(re.findall(r"\w+", text.lower()))


TELECOM_SYSTEMS = ("phone", "email", "sms", None)
PHONE = ("phone", None)
PATIENT_KEPT: dict[str, Kept] = {
    "identifier": Kept(parts={"system": ENTIRE, "value": ENTIRE, "type": ENTIRE,
                              "use": Kept(when=lambda use, _: use in ("usual", "official"),
                                          why="the record keeps identifiers in use, not old, temporary or "
                                              "secondary ones")},
                       when=_first_of_its_system,
                       why=f"the record keeps one identifier per system, never an MRN in {resources.MRN_SYSTEM} "
                           "(this facility assigns its own; send another facility's as type MR)"),
    "active": Kept(when=lambda value, _: value is True, why="a registration is active; an inactive one is not kept"),
    "name": Kept(parts={"use": ENTIRE, "family": ENTIRE, "given": ENTIRE,
                        "text": Kept(when=lambda text, name: _words(text) <= _words(
                            " ".join([*name.get("given", []), name.get("family") or ""])),
                            why="the record keeps the name as its family and given names, and this text says more")},
                 when=lambda name, patient: name is _the_name(patient),
                 why="the record keeps one name (the official one, else the first)"),
    "telecom": Kept(parts={"system": ENTIRE, "value": ENTIRE,
                           "use": Kept(when=lambda use, _: use == "mobile",
                                       why="the record keeps a phone number, not whether it is home or work")},
                    items=11, when=lambda t, _: bool(t.get("value")) and t.get("system") in TELECOM_SYSTEMS,
                    why="the record keeps phone numbers and e-mail addresses, the registration's phone and ten more"),
    "gender": ENTIRE,
    "birthDate": ENTIRE,
    "address": Kept(parts={"line": ENTIRE, "city": ENTIRE, "district": ENTIRE, "state": ENTIRE,
                           "country": Kept(when=lambda c, _: len(c) == 2 and c.isupper(),
                                           why="the record keeps a country as its ISO 3166 two-letter code (KE)")},
                    items=1, why="the record keeps one address"),
    "contact": Kept(parts={"name": Kept(parts={"text": ENTIRE, "family": ENTIRE, "given": ENTIRE}),
                           "relationship": Kept(items=1, why="the record keeps one relationship per contact"),
                           "telecom": Kept(parts={"system": ENTIRE, "value": ENTIRE}, items=1,
                                           when=lambda t, _: bool(t.get("value")) and t.get("system") in PHONE,
                                           why="the record keeps one phone number per contact")}),
}


def patient_in(resource: dict, where: str) -> PatientIn:
    name = _the_name(resource)
    telecom = [t for t in resource.get("telecom") or []
               if t.get("value") and t.get("system") in ("phone", "email", "sms", None)]
    phone = next((t for t in telecom if t.get("system") != "email"), None)  # the registration's phone
    address = (resource.get("address") or [{}])[0]
    country = address.get("country")
    identifiers: dict[str, str] = {}
    for identifier in resource.get("identifier") or []:
        system = _identifier_system(identifier)
        if system and identifier.get("value") and system not in identifiers:
            identifiers[system] = identifier["value"]
    values = {
        "family_name": name.get("family"), "given_names": " ".join(name.get("given") or []) or None,
        "birth_date": resource.get("birthDate"), "sex": resource.get("gender"),
        "phone": phone["value"] if phone else None,
        "contacts": [{"kind": t.get("system") or "phone", "value": t["value"]} for t in telecom if t is not phone][:10],
        "address": {"line": " ".join(address.get("line") or []) or None, "village": address.get("city"),
                    "district": address.get("district"), "region": address.get("state"),
                    "country": country if country and len(country) == 2 and country.isupper() else None},
        "identifiers": [{"system": s, "value": v} for s, v in identifiers.items()],
        "next_of_kin": [{"name": _human_name(c.get("name") or {}),
                         "relationship": _text_of((c.get("relationship") or [{}])[0]) or "contact",
                         "phone": next((t["value"] for t in c.get("telecom") or [] if t.get("value")), None)}
                        for c in resource.get("contact") or []],
    }
    return _model(PatientIn, values, where, PATIENT_ELEMENTS)


# -- Encounter ---------------------------------------------------------------------------------------

ENCOUNTER_CLASSES = {"AMB": "outpatient", "VR": "outpatient", "HH": "outpatient", "FLD": "outpatient",
                     "PRENC": "outpatient", "EMER": "emergency", "IMP": "inpatient", "ACUTE": "inpatient",
                     "NONAC": "inpatient", "OBSENC": "inpatient", "SS": "inpatient"}
ENCOUNTER_STATUSES = {"planned": "planned", "arrived": "arrived", "triaged": "arrived",
                      "in-progress": "in_progress", "onleave": "in_progress", "finished": "finished",
                      "cancelled": "cancelled"}


ENCOUNTER_KEPT: dict[str, Kept] = {
    "status": ENTIRE, "class": ENTIRE, "subject": REFERENCE, "period": Kept(parts={"start": ENTIRE, "end": ENTIRE}),
    "reasonCode": Kept(items=1, why="the record keeps one reason for a visit"),
}


def encounter_detail(resource: dict, where: str) -> dict:
    code = (resource.get("class") or {}).get("code")
    if code not in ENCOUNTER_CLASSES:
        raise Unsupported("Encounter", f"class {code!r} is not one the record holds (it keeps outpatient, "
                                       f"emergency and inpatient: {', '.join(sorted(ENCOUNTER_CLASSES))})")
    status = ENCOUNTER_STATUSES.get(resource.get("status"))
    if status is None:
        raise Unsupported("Encounter", f"status {resource.get('status')!r} is not recorded")
    period = resource.get("period") or {}
    start = _instant(period.get("start"), f"{where}.period.start")
    end = _instant(period.get("end"), f"{where}.period.end")
    if start and end and end < start:
        raise FhirError(422, "value", "the encounter ends before it starts", expression=f"{where}.period.end")
    now = dt.datetime.now(dt.UTC)
    reason = _text_of((resource.get("reasonCode") or [None])[0])
    return {"encounter_class": ENCOUNTER_CLASSES[code], "status": status, "reason": reason[:500] if reason else None,
            "ward_code": None, "planned_for": start if status == "planned" else None,
            "started_at": None if status == "planned" else (start or now),
            "ended_at": (end or now) if status in ("finished", "cancelled") else None}


# -- Condition ---------------------------------------------------------------------------------------

CONDITION_CLINICAL = {"active": "active", "recurrence": "active", "relapse": "active", "inactive": "inactive",
                      "remission": "inactive", "resolved": "resolved"}
CONDITION_VERIFICATION = {"confirmed": "confirmed", "provisional": "provisional", "unconfirmed": "provisional",
                          "differential": "differential"}


# The record's conditions are its problem list, each linked to the encounter that found it where one is named.
CONDITION_CATEGORIES = {"problem-list-item", "encounter-diagnosis"}
NOTE = Kept(parts={"text": ENTIRE}, items=1, why="the record keeps one note")
CONDITION_KEPT: dict[str, Kept] = {
    "clinicalStatus": ENTIRE, "verificationStatus": ENTIRE,
    "category": Kept(when=lambda concept, _: {c.get("code") for c in concept.get("coding", [])} <= CONDITION_CATEGORIES,
                     why="the record keeps conditions as problems (problem-list-item or encounter-diagnosis)"),
    "code": ENTIRE, "subject": REFERENCE, "encounter": REFERENCE,
    "onsetDateTime": ENTIRE, "abatementDateTime": ENTIRE, "note": NOTE,
}


def condition_in(resource: dict, where: str) -> ConditionIn:
    icd10 = next((c for c in (resource.get("code") or {}).get("coding", [])
                  if c.get("system") in ICD10_SYSTEMS and c.get("code")), None)
    if icd10 is None:
        raise Unsupported("Condition", "not coded in ICD-10 (the record codes diagnoses in ICD-10 only)")
    verification = _code_of(resource.get("verificationStatus")) or "confirmed"
    if verification not in CONDITION_VERIFICATION:
        raise Unsupported("Condition", f"verification status {verification!r} is not recorded")
    clinical = _code_of(resource.get("clinicalStatus"))
    if clinical is None:
        clinical = "resolved" if resource.get("abatementDateTime") else "active"
    if clinical not in CONDITION_CLINICAL:
        raise FhirError(422, "code-invalid", f"clinical status {clinical!r} is not a FHIR condition status",
                        expression=f"{where}.clinicalStatus")
    values = {"code": icd10["code"], "clinical_status": CONDITION_CLINICAL[clinical],
              "verification": CONDITION_VERIFICATION[verification],
              "onset_date": _date(resource.get("onsetDateTime")),
              "resolved_date": _date(resource.get("abatementDateTime")),
              "note": (resource.get("note") or [{}])[0].get("text")}
    return _model(ConditionIn, values, where, {"code": "code.coding.code", "onset_date": "onsetDateTime",
                                              "resolved_date": "abatementDateTime", "note": "note"})


# -- AllergyIntolerance ------------------------------------------------------------------------------


ALLERGY_CATEGORIES = ("medication", "food", "environment")
ALLERGY_KEPT: dict[str, Kept] = {
    "clinicalStatus": ENTIRE, "verificationStatus": ENTIRE,
    "category": Kept(items=1, when=lambda category, _: category in ALLERGY_CATEGORIES,
                     why="the record keeps one category: medication, food or environment"),
    "criticality": ENTIRE, "code": ENTIRE, "patient": REFERENCE, "encounter": REFERENCE, "note": NOTE,
    "reaction": Kept(parts={"manifestation": Kept(items=1, why="the record keeps one manifestation"),
                            "severity": ENTIRE}, items=1, why="the record keeps one reaction"),
}


def allergy_in(resource: dict, where: str) -> AllergyIn:
    substance = _text_of(resource.get("code"))
    if not substance:
        raise FhirError(422, "required", "an allergy names its substance (code.text or a coding's display)",
                        expression=f"{where}.code")
    verification = _code_of(resource.get("verificationStatus")) or "confirmed"
    if verification in ("refuted", "entered-in-error"):
        raise Unsupported("AllergyIntolerance", f"verification status {verification!r} is not recorded")
    categories = [c for c in resource.get("category") or [] if c in ALLERGY_CATEGORIES]
    reaction = (resource.get("reaction") or [{}])[0]
    values = {"substance": substance[:200], "category": categories[0] if categories else "other",
              "reaction": _text_of((reaction.get("manifestation") or [None])[0]),
              "severity": reaction.get("severity"),
              "criticality": (resource.get("criticality") or "unable-to-assess").replace("-", "_"),
              "clinical_status": _code_of(resource.get("clinicalStatus")) or "active",
              "note": (resource.get("note") or [{}])[0].get("text")}
    return _model(AllergyIn, values, where, {"substance": "code", "reaction": "reaction.manifestation",
                                            "severity": "reaction.severity", "criticality": "criticality",
                                            "clinical_status": "clinicalStatus", "category": "category"})


# -- Observation: vital signs ------------------------------------------------------------------------

WHOLE = {"systolic_mmhg", "diastolic_mmhg", "heart_rate_bpm", "respiratory_rate", "spo2_percent", "muac_mm"}


def _answer(sign: resources.VitalSign, holder: dict, where: str) -> dict[str, Any]:
    """A coded finding (oedema) as the record's fields: a grade the sender coded among `sign.grades` (the
    finding present, with that grade), else the value of the coding it chose among `sign.answers`."""
    codings = (holder.get("valueCodeableConcept") or {}).get("coding") or []

    def chosen(system: str, code: str) -> bool:
        return any(c.get("system") == system and c.get("code") == code for c in codings)

    for grade, (system, code, _) in sign.grades.items():
        if chosen(system, code):
            return {sign.column: True, sign.grade_column: grade}
    for value, (system, code, _) in (sign.answers or {}).items():
        if chosen(system, code):
            return {sign.column: value}
    said = " or ".join(f"{system}|{code} ({display})"
                       for system, code, display in [*(sign.answers or {}).values(), *sign.grades.values()])
    raise FhirError(422, "value", f"{sign.text} is recorded as {said} in valueCodeableConcept",
                    expression=f"{where}.valueCodeableConcept")


def _measure(sign: resources.VitalSign, holder: dict, where: str) -> dict[str, Any]:
    """One measurement as the record's fields (a graded finding is two)."""
    if sign.answers is not None:
        return _answer(sign, holder, where)
    return {sign.column: _quantity_or_text(sign, holder, where)}


def _quantity_or_text(sign: resources.VitalSign, holder: dict, where: str) -> Any:
    if sign.unit is None:  # consciousness: a code or text of A, C, V, P, U
        return _code_of(holder.get("valueCodeableConcept")) or _text_of(holder.get("valueCodeableConcept"))
    quantity = holder.get("valueQuantity")
    if not quantity or quantity.get("value") is None:
        raise FhirError(422, "required", f"{sign.display} needs a valueQuantity", expression=f"{where}.valueQuantity")
    unit = quantity.get("code") or quantity.get("unit")
    factor = Decimal(1) if unit in (sign.ucum, sign.unit) else sign.other_units.get(unit)
    if factor is None:
        units = " or ".join([sign.ucum or "", *sign.other_units])
        raise FhirError(422, "value", f"{sign.display} is recorded in {units}, got {unit!r}",
                        expression=f"{where}.valueQuantity.code")
    try:
        value = Decimal(str(quantity["value"])) * factor
    except InvalidOperation:
        raise FhirError(422, "value", f"{sign.display}: not a number", expression=f"{where}.valueQuantity") from None
    # The record keeps whole numbers of beats, breaths, mmHg and %, a weight to the gram, and tenths of the rest.
    if sign.column in WHOLE:
        return int(value.quantize(Decimal(1), ROUND_HALF_UP))
    return value.quantize(Decimal(1).scaleb(-KEPT_PLACES) if sign.column == "weight_kg" else Decimal("0.1"),
                          ROUND_HALF_UP)


QUANTITY = Kept(parts={"value": ENTIRE, "unit": ENTIRE, "system": ENTIRE, "code": ENTIRE})
VITAL_SIGNS_KEPT: dict[str, Kept] = {
    "status": Kept(when=lambda status, _: status in ("final", "amended", "corrected"),
                   why="the record keeps vital signs as taken (final)"),
    "category": ENTIRE, "code": ENTIRE, "subject": REFERENCE, "encounter": REFERENCE, "effectiveDateTime": ENTIRE,
    "valueQuantity": QUANTITY, "valueCodeableConcept": ENTIRE,
    "component": Kept(parts={"code": ENTIRE, "valueQuantity": QUANTITY, "valueCodeableConcept": ENTIRE}),
}


def vital_signs_in(resource: dict, where: str) -> VitalSignsIn:
    categories = {c.get("code") for cat in resource.get("category") or [] for c in cat.get("coding", [])}
    if "vital-signs" not in categories:
        raise Unsupported("Observation", "only vital signs are created through FHIR (category vital-signs); "
                                         "laboratory results come with their orders")
    values: dict[str, Any] = {}
    elements: dict[str, str] = {}
    code = _code_of(resource.get("code"))
    components = resource.get("component") or []
    if components:
        for i, component in enumerate(components):
            component_code = _code_of(component.get("code"))
            sign = resources.VITAL_SIGN_BY_CODE.get(component_code or "")
            if sign is None:
                raise Unsupported("Observation", f"vital sign {component_code} ({_text_of(component.get('code'))}) "
                                                 "is not one the record charts")
            measured = _measure(sign, component, f"{where}.component[{i}]")
            values |= measured
            elements |= dict.fromkeys(measured, f"component[{i}]")
    else:
        sign = resources.VITAL_SIGN_BY_CODE.get(code or "")
        if sign is None:
            raise Unsupported("Observation", f"vital sign {code} ({_text_of(resource.get('code'))}) is not one the "
                                             "record charts")
        measured = _measure(sign, resource, where)
        values |= measured
        elements |= dict.fromkeys(measured, "value")
    described = {v.column: f"{v.display}" + (f" in {v.ucum}" if v.ucum else "") for v in resources.VITAL_SIGNS}
    return _model(VitalSignsIn, values, where, elements, described)


# -- Immunization: a vaccine dose -------------------------------------------------------------------


@dataclass(frozen=True)
class DoseRules:
    """What recording a dose needs besides the resource: the national schedule, which names the vaccines and
    judges each dose, and the facility's time zone, in which a dose's day is its day."""

    schedule: Schedule
    tz: zoneinfo.ZoneInfo


# The reverse of the read's codings (`resources`): a medical precaution is read back as a contraindication, the
# wider of the two reasons that share it.
NOT_DONE_OF_CODE = {code: ours for ours, (code, _) in resources.NOT_DONE_REASON.items() if ours != "child_unwell"}
SITE_OF_CODE = {code: ours for ours, (code, _) in resources.VACCINE_SITE.items()}
ROUTE_OF_CODE = {code: ours for ours, (code, _) in resources.VACCINE_ROUTE.items()}
IMMUNIZATION_KEPT: dict[str, Kept] = {
    "status": Kept(when=lambda status, _: status in ("completed", "not-done"),
                   why="the record keeps doses given or not given; a dose recorded in error is withdrawn on the chart"),
    "statusReason": ENTIRE, "vaccineCode": ENTIRE, "patient": REFERENCE, "encounter": REFERENCE,
    "occurrenceDateTime": ENTIRE, "primarySource": ENTIRE,
    "reportOrigin": Kept(when=lambda _, dose: dose.get("primarySource") is False,
                         why="the record keeps where a dose was read from only for a dose it did not give "
                             "(primarySource false), as from a written record"),
    "lotNumber": ENTIRE, "expirationDate": ENTIRE, "site": ENTIRE, "route": ENTIRE, "note": NOTE,
    "protocolApplied": Kept(parts={"doseNumberPositiveInt": ENTIRE}, items=1,
                            why="the record keeps a dose's place in its vaccine's series, as a number"),
}
IMMUNIZATION_ELEMENTS = {"vaccine": "vaccineCode", "dose_number": "protocolApplied[0].doseNumberPositiveInt",
                         "given_on": "occurrenceDateTime", "lot_number": "lotNumber", "expiry_date": "expirationDate",
                         "not_done_reason": "statusReason", "site": "site", "route": "route", "note": "note"}


def _vaccine_of(concept: dict | None, schedule: Schedule, where: str) -> Vaccine:
    """The schedule's vaccine a vaccineCode names: by the schedule's own code or by its CVX code, as the read codes
    it (and as the HL7 feed takes it); any other is refused, naming what was sent and what the schedule has."""
    sent = []
    for coding in (concept or {}).get("coding", []):
        code, system = (coding.get("code") or "").strip(), coding.get("system")
        if not code:
            continue
        found = (schedule.by_code.get(code.upper()) if system == resources.VACCINE_SYSTEM
                 else schedule.vaccine_of_cvx(code) if system == resources.CVX else None)
        if found is not None:
            return found
        sent.append(f"{system or '(no system)'}|{code}")
    known = ", ".join(v.code + (f" (CVX {v.cvx})" if v.cvx else "") for v in schedule.vaccine)
    how = (f"the schedule's code ({resources.VACCINE_SYSTEM}) or its CVX code ({resources.CVX}); the schedule has "
           f"{known}")
    if not sent:
        raise FhirError(422, "required", f"vaccineCode names the vaccine by {how}", expression=f"{where}.vaccineCode")
    raise FhirError(422, "code-invalid", f"vaccineCode {' or '.join(sent)} is not a vaccine of the national "
                                         f"immunization schedule: send {how}", expression=f"{where}.vaccineCode")


def _ours(concept: dict | None, by_code: dict[str, str], words: tuple[str, ...], where: str, element: str,
          *, otherwise: str | None = None) -> str | None:
    """A coded element (site, route, why not given) as the record's word: by the code the read sends, else by
    its text in the record's words; `otherwise` for anything else where the record has such a word."""
    if concept is None:
        return None
    for coding in concept.get("coding", []):
        if coding.get("code") in by_code:
            return by_code[coding["code"]]
    text = "_".join((concept.get("text") or "").lower().split())
    if text in words:
        return text
    if otherwise is not None:
        return otherwise
    raise FhirError(422, "code-invalid", f"{element} is not one the record keeps: send "
                                         f"{', '.join(sorted(by_code))} or, as text, {', '.join(words)}",
                    expression=f"{where}.{element}")


def _dose_day(value: str | None, tz: zoneinfo.ZoneInfo, where: str) -> dt.date:
    """occurrenceDateTime's day at the facility: a date as it is, an instant in the facility's zone."""
    if not value:
        raise FhirError(422, "required", "a dose names the day it was given (or was due and not given): "
                                         "occurrenceDateTime", expression=f"{where}.occurrenceDateTime")
    if len(value) < 10:
        raise FhirError(422, "value", f"occurrenceDateTime {value!r} is not a full date: the day of a dose is needed",
                        expression=f"{where}.occurrenceDateTime")
    if len(value) == 10:
        return dt.date.fromisoformat(value)
    given = dt.datetime.fromisoformat(value)  # the R4B model has checked its form
    return (given if given.tzinfo else given.replace(tzinfo=tz)).astimezone(tz).date()


def immunization_in(resource: dict, where: str, rules: DoseRules) -> ImmunizationIn:
    """A dose as the clinical layer's request: the vaccine by the schedule, given (completed) or due and not
    given (not-done, with its reason), from the caller (primarySource) or from a card or another facility."""
    vaccine = _vaccine_of(resource.get("vaccineCode"), rules.schedule, where)
    not_done = resource.get("status") == "not-done"
    reason = resource.get("statusReason")
    why = _ours(reason, NOT_DONE_OF_CODE, tuple(immunization.NOT_DONE_WORDS), where, "statusReason",
                otherwise="other") if not_done and reason else None
    # A reason of its own (recorded as "other") keeps the sender's words in the note, where the chart says why.
    notes = [reason.get("text") if why == "other" and reason else None, (resource.get("note") or [{}])[0].get("text")]
    dose = (resource.get("protocolApplied") or [{}])[0]
    values = {"vaccine": vaccine.code, "dose_number": dose.get("doseNumberPositiveInt"),
              "given_on": _dose_day(resource.get("occurrenceDateTime"), rules.tz, where),
              "status": "not_done" if not_done else "completed", "not_done_reason": why,
              "lot_number": resource.get("lotNumber"), "expiry_date": resource.get("expirationDate"),
              "site": _ours(resource.get("site"), SITE_OF_CODE, (*SITE_OF_CODE.values(), "mouth"), where, "site"),
              "route": _ours(resource.get("route"), ROUTE_OF_CODE, tuple(ROUTE_OF_CODE.values()), where, "route"),
              "source": "historical" if resource.get("primarySource") is False else "administered",
              "note": "; ".join(n for n in notes if n) or None}
    return _model(ImmunizationIn, values, where, IMMUNIZATION_ELEMENTS)


def _record_dose(conn: Connection, principal: Principal, patient_id: uuid.UUID, data: ImmunizationIn,
                 rules: DoseRules, where: str) -> dict:
    """The dose written as the chart writes one (`immunization.record_dose`: the schedule's checks, audited). A dose
    without its number is the next the schedule expects of the patient, as the HL7 feed takes one."""
    today = dt.datetime.now(rules.tz).date()
    if data.dose_number is None:
        birth = service.patient_of(conn, patient_id)["birth_date"]
        in_force = immunization.current_doses(conn, [patient_id])
        if in_force:  # read to know the next dose of the series
            record.note_access(conn, principal, "read", patient_id, immunization.KIND, [r["id"] for r in in_force])
        vaccine = rules.schedule.by_code[data.vaccine]
        number = immunization.next_dose_number(vaccine, birth, in_force, today, rules.tz)
        if number is None:
            raise FhirError(422, "required", f"{vaccine.name}'s series of {vaccine.doses} is complete for this "
                                             "patient: name the dose (protocolApplied.doseNumberPositiveInt)",
                            expression=f"{where}.protocolApplied")
        data = data.model_copy(update={"dose_number": number})
    written = immunization.record_dose(conn, principal, patient_id, data, schedule=rules.schedule, today=today,
                                       tz=rules.tz)
    # As a read shapes it (which reads no schedule name beside the code), so the 201 and a read say the same.
    row = {key: value for key, value in written["immunization"].items() if key != "vaccine_name"}
    return resources.immunization({**row, "patient_id": patient_id}, rules.schedule)


# What a create keeps of each type it takes; anything else is named and refused (see `elements`).
KEPT: dict[str, dict[str, Kept]] = {"Patient": PATIENT_KEPT, "Encounter": ENCOUNTER_KEPT,
                                    "Condition": CONDITION_KEPT, "AllergyIntolerance": ALLERGY_KEPT,
                                    "Observation": VITAL_SIGNS_KEPT, "Immunization": IMMUNIZATION_KEPT}


# -- planning ----------------------------------------------------------------------------------------


def _reference(resource: dict, *keys: str) -> str | None:
    for key in keys:
        value = (resource.get(key) or {}).get("reference")
        if value:
            return value
    return None


def plan(resource: dict, where: str, full_url: str | None = None, *, rules: DoseRules | None = None) -> Write:
    """One validated resource as the write it becomes (Unsupported when the record cannot hold it), with
    the elements of it the record would not keep (`Write.not_kept`: a create refuses them, `refuse_not_kept`).
    A vaccine dose is planned only with the schedule's `rules` (a create or a transaction has them; a bulk import
    does not)."""
    resource_type = resource["resourceType"]
    if resource_type not in CREATABLE:
        raise Unsupported(resource_type, "the record has no place for this resource type")
    write = Write(resource_type, where, None, full_url=full_url, patient_ref=_reference(resource, "subject", "patient"),
                  encounter_ref=_reference(resource, "encounter"),
                  not_kept=elements.not_kept(resource, KEPT[resource_type], where))
    if resource_type == "Patient":
        write.data = patient_in(resource, where)
        return write
    if write.patient_ref is None:
        raise FhirError(422, "required", f"a {resource_type} names its patient",
                        expression=f"{where}.{'patient' if resource_type in PATIENT_ELEMENT else 'subject'}")
    if resource_type == "Encounter":
        write.data = encounter_detail(resource, where)
    elif resource_type == "Condition":
        write.data = condition_in(resource, where)
    elif resource_type == "AllergyIntolerance":
        write.data = allergy_in(resource, where)
    elif resource_type == "Immunization":
        if rules is None:
            raise Unsupported(resource_type, "a vaccine dose is created through the facade (POST Immunization or "
                                             "a transaction), where the national schedule judges it, not imported "
                                             "in bulk")
        write.data = immunization_in(resource, where, rules)
    else:
        write.data = vital_signs_in(resource, where)
        write.occurred_at = _instant(resource.get("effectiveDateTime"), f"{where}.effectiveDateTime")
        if write.occurred_at is not None and write.occurred_at > dt.datetime.now(dt.UTC) + CLOCK_SKEW:
            raise FhirError(422, "value", "vital signs cannot be taken in the future",
                            expression=f"{where}.effectiveDateTime")
    return write


def refuse_not_kept(planned: list[Write]) -> None:
    """A create or a transaction is refused, naming each element, when the record would not keep all of it."""
    found = [n for write in planned for n in write.not_kept]
    if found:
        raise elements.refusal(found)


@dataclass
class BundlePlan:
    writes: list[Write] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)  # "Type: why" -> how many
    # fullUrls of skipped entries: a reference to a skipped encounter is dropped, not a dangling one.
    skipped_urls: set[str] = field(default_factory=set)


def plan_bundle(bundle: Any, *, strict: bool, rules: DoseRules | None = None) -> BundlePlan:
    """A transaction Bundle (strict: every entry a POST the record can hold; its vaccine doses judged by `rules`),
    or for a bulk import a transaction or collection bundle whose resources the record cannot hold are counted as
    skipped."""
    validate(bundle, "Bundle", "Bundle")
    kinds = ("transaction",) if strict else ("transaction", "collection", "batch")
    if bundle.get("type") not in kinds:
        raise FhirError(400, "not-supported", f"a bundle of type {bundle.get('type')!r} is not accepted here "
                                              f"({' or '.join(kinds)})", expression="Bundle.type")
    planned = BundlePlan()
    for i, item in enumerate(bundle.get("entry") or []):
        where = f"Bundle.entry[{i}].resource"
        resource = item.get("resource")
        if resource is None:
            raise FhirError(400, "required", "a bundle entry carries its resource", expression=f"Bundle.entry[{i}]")
        request = item.get("request") or {}
        if strict and (request.get("method") != "POST" or request.get("ifNoneExist")):
            raise FhirError(422, "not-supported", "a transaction here creates resources: each entry's request is a "
                                                  "POST without conditions", expression=f"Bundle.entry[{i}].request")
        try:
            write = plan(resource, where, item.get("fullUrl"), rules=rules)
        except Unsupported as exc:
            if strict:
                raise FhirError(422, "not-supported", str(exc), expression=where) from None
            planned.skipped[str(exc)] += 1
            if item.get("fullUrl"):
                planned.skipped_urls.add(item["fullUrl"])
            continue
        planned.writes.append(write)
        if not strict:  # imported without them, and counted: the operator is told what was left out
            for element, why in {(n.element, n.why) for n in write.not_kept}:
                planned.skipped[f"{element}: {why} (the resource was imported without it)"] += 1
    if strict:
        refuse_not_kept(planned.writes)
    return planned



def sets_of_vital_signs(planned: list[Write]) -> list[Write]:
    """Vital signs a sender wrote one Observation each (Synthea: height, weight, pulse, breathing, blood
    pressure, each at the visit's time) as the sets the record keeps: one `vital_signs` entry per patient,
    encounter and time, scored once, instead of one entry and one early warning score per measurement.
    A measurement taken twice at one time starts another set."""
    merged: list[Write] = []
    open_sets: dict[tuple, Write] = {}
    for write in planned:
        if write.resource_type != "Observation" or write.occurred_at is None:
            merged.append(write)
            continue
        key = (write.patient_ref, write.encounter_ref, write.occurred_at)
        measured = write.data.model_dump(exclude={"encounter_id"}, exclude_none=True)
        current = open_sets.get(key)
        if current is not None and not set(measured) & set(current.data.model_dump(exclude_none=True)):
            try:
                current.data = VitalSignsIn.model_validate({**current.data.model_dump(exclude_none=True), **measured})
            except ValidationError:
                pass  # together they are not one plausible set: each stays its own
            else:
                current.sources += write.sources
                continue
        open_sets[key] = write
        merged.append(write)
    return merged


def link_subjects(db: Database, tenant: str, principal: Principal, writes: list[Write], chart_conn: Connection) -> None:
    """Each new patient linked to their one-identity subject, and the facility noted as holding their
    chart, as the JSON API's registration does (its own control transaction, undone if the writes' transaction,
    `chart_conn`, rolls back: a bundle refused at any entry leaves no subject behind). The
    registration's question (`service.link_registration`: a national ID whose holder at another facility was
    born on another day or is of another sex) has no element to answer it in, so the write is refused
    (422 business-rule, `national-id-holder-differs`, naming only what differs) for the sender to check; asked too
    often this hour, 429 throttled (`national-id-asked-too-often`)."""
    for write in writes:
        if write.resource_type == "Patient":
            try:  # an ID a patient of this facility holds is refused before a person is made of it
                write.data = service.link_registration(db, principal, write.data, tenant=tenant, chart_conn=chart_conn)
            except service.NationalIdHolderDiffers as asked:
                raise FhirError(422, "business-rule", service.national_id_question(asked.extra["differs"])
                                + " Nothing was written.", expression=f"{write.where}.identifier",
                                details="national-id-holder-differs") from None
            except service.NationalIdAskedTooOften as refused:
                raise FhirError(429, "throttled", refused.detail, expression=f"{write.where}.identifier",
                                details="national-id-asked-too-often") from None
            except RecordError as exc:
                raise of_record_error(exc, write.resource_type, write.where) from None


# -- applying ----------------------------------------------------------------------------------------


def _resolve(reference: str | None, created: dict[str, tuple[str, uuid.UUID]], resource_type: str,
             where: str) -> uuid.UUID | None:
    if reference is None:
        return None
    if reference in created:
        kind, new_id = created[reference]
        if kind != resource_type:
            raise FhirError(422, "invalid", f"{reference} is a {kind}, not a {resource_type}", expression=where)
        return new_id
    if reference.startswith("urn:uuid:"):
        raise FhirError(422, "not-found", f"{reference} is not the fullUrl of an earlier entry of this bundle",
                        expression=where)
    try:
        return uuid.UUID(reference.removeprefix(f"{resource_type}/"))
    except ValueError:
        raise FhirError(422, "invalid", f"{reference!r} does not name a {resource_type} of this facility",
                        expression=where) from None


def _entry_row(appended: record.Entry) -> dict:
    return {"id": appended.id, "root_id": appended.root_id, "entry_status": appended.status,
            "patient_id": appended.patient_id, "encounter_id": appended.encounter_id,
            "author_id": appended.author_id, "record_author_id": appended.author_id,
            "occurred_at": appended.occurred_at, "recorded_at": appended.recorded_at, **appended.detail}


def apply(conn: Connection, principal: Principal, writes: list[Write], break_glass_reason: str | None = None,
          skipped_urls: set[str] | frozenset[str] = frozenset(), *, rules: DoseRules | None = None) -> list[dict]:
    """Write every resource in the caller's tenant transaction, in dependency order, resolving
    references between them; returns the resources as written, in the order given. A refusal of any
    raises (and the caller's transaction undoes the others). An encounter reference to an entry a
    bulk import skipped (`skipped_urls`) is dropped: the resource is kept without its encounter."""
    created: dict[str, tuple[str, uuid.UUID]] = {}
    opened: set[uuid.UUID] = set()
    written: dict[int, dict] = {}
    order = sorted(range(len(writes)), key=lambda i: CREATABLE.index(writes[i].resource_type))
    for i in order:
        write = writes[i]
        try:
            if write.encounter_ref in skipped_urls:
                write.encounter_ref = None
            resource = _apply_one(conn, principal, write, created, opened, break_glass_reason, rules)
        except RecordError as exc:
            raise of_record_error(exc, write.resource_type, write.where) from None
        if write.full_url:
            created[write.full_url] = (write.resource_type, uuid.UUID(resource["id"]))
        written[i] = resource
    return [written[i] for i in range(len(writes))]


def _apply_one(conn: Connection, principal: Principal, write: Write, created: dict, opened: set,
               break_glass_reason: str | None, rules: DoseRules | None) -> dict:
    if write.resource_type == "Patient":
        row = service.register_patient(conn, principal, write.data)
        opened.add(row["id"])
        return resources.patient(row)
    subject = "patient" if write.resource_type in PATIENT_ELEMENT else "subject"
    patient_id = _resolve(write.patient_ref, created, "Patient", f"{write.where}.{subject}")
    if patient_id not in opened:
        # A resource written on an existing chart opens it as a read would: care, or a stated reason.
        access.open_chart(conn, principal, patient_id, break_glass_reason)
        opened.add(patient_id)
    encounter_id = _resolve(write.encounter_ref, created, "Encounter", f"{write.where}.encounter")
    if write.resource_type == "Encounter":
        service.require_patient(conn, patient_id)
        new_id = uuid.uuid4()
        detail = {"id": new_id, "patient_id": patient_id, **write.data}
        record.append(conn, principal, "encounter", patient_id=patient_id, encounter_id=new_id, detail=detail,
                      occurred_at=detail["started_at"] or detail["planned_for"])
        return resources.encounter(detail)
    if write.resource_type == "Condition":
        data = write.data.model_copy(update={"encounter_id": encounter_id})
        return resources.condition({**service.add_condition(conn, principal, patient_id, data),
                                    "patient_id": patient_id})
    if write.resource_type == "Immunization":
        if rules is None:  # `plan` refuses a dose without them; a caller that planned one passes them on
            raise FhirError(422, "not-supported", "a vaccine dose is created through the facade (POST Immunization "
                                                  "or a transaction)", expression=write.where)
        return _record_dose(conn, principal, patient_id, write.data.model_copy(update={"encounter_id": encounter_id}),
                            rules, write.where)
    if write.resource_type == "AllergyIntolerance":
        data = write.data.model_copy(update={"encounter_id": encounter_id})
        return resources.allergy({**service.add_allergy(conn, principal, patient_id, data), "patient_id": patient_id})
    data = write.data.model_copy(update={"encounter_id": encounter_id})
    if write.occurred_at is None:
        return resources.vital_signs({**service.record_vitals(conn, principal, patient_id, data),
                                      "patient_id": patient_id})
    service.require_chart(conn, patient_id, encounter_id)
    appended = record.append(conn, principal, "vital_signs", patient_id=patient_id, encounter_id=encounter_id,
                             detail=data.model_dump(exclude={"encounter_id"}), occurred_at=write.occurred_at)
    return resources.vital_signs(_entry_row(appended))


def location(resource: dict) -> str:
    """`Type/id/_history/version`, what a 201 names in Location and a transaction response in `location`."""
    version = resource.get("meta", {}).get("versionId")
    return f"{resource['resourceType']}/{resource['id']}" + (f"/_history/{version}" if version else "")

