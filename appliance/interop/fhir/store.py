"""Reads of the FHIR facade: a resource by its id, a search, a patient's `$everything` — each from the
clinical layer's services, inside the caller's tenant transaction, and each audited.

Lists come from the services that already note their access (`service.list_conditions` and the rest);
the two reads they have no function for — one record by its root id, including a record marked
entered in error, and the vital signs sets of a patient — are written here and note their access on
the record's seam (`record.note_access`) like every other read. Any resource of a patient opens only
as the patient's chart would (`access.open_chart`: a care relationship or a stated break-the-glass
reason), decided after its patient is found from the resource's own id.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from appliance.interop.fhir import resources
from appliance.interop.fhir.errors import FhirError
from appliance.layers.clinical import access, service
from appliance.layers.clinical.errors import NotFound
from appliance.layers.clinical.models import (
    allergy,
    condition,
    encounter,
    medication_request,
    patient,
    result,
    service_request,
    vital_signs,
)
from appliance.substrate.principal import Principal
from appliance.substrate.record import current_clause, entry, note_access

# Entry kinds behind each entry-backed resource type, their tables and their FHIR shape.
KINDS: dict[str, tuple[str, ...]] = {
    "Condition": ("condition",),
    "AllergyIntolerance": ("allergy",),
    "MedicationRequest": ("medication_request",),
    "ServiceRequest": ("service_request",),
    "Observation": ("result", "vital_signs"),
}
TABLES = {"condition": condition, "allergy": allergy, "medication_request": medication_request,
          "service_request": service_request, "result": result, "vital_signs": vital_signs}
SHAPES: dict[str, Callable[[dict], dict]] = {
    "condition": resources.condition, "allergy": resources.allergy,
    "medication_request": resources.medication_request, "service_request": resources.service_request,
    "result": resources.result, "vital_signs": resources.vital_signs,
}
ENCOUNTERS = 1000  # a patient's encounters in one search (the JSON API lists the latest 50)


def _uuid(resource_type: str, resource_id: str) -> uuid.UUID:
    try:
        return uuid.UUID(resource_id)
    except ValueError:
        # A guessed or malformed id is answered as any unknown id is: not found, nothing more.
        raise NotFound(f"no {resource_type} {resource_id} at this facility") from None


# -- read by id --------------------------------------------------------------------------------------


def read(conn: Connection, principal: Principal, resource_type: str, resource_id: str,
         break_glass_reason: str | None) -> dict:
    """One resource by its id, opened as its patient's chart would be, and audited."""
    wanted = _uuid(resource_type, resource_id)
    if resource_type == "Patient":
        # As the JSON API's patient read: demographics open without a care relationship (the
        # registration desk's read), audited.
        return resources.patient(service.get_patient(conn, principal, wanted))
    if resource_type == "Encounter":
        row = conn.execute(sa.select(*service.ENCOUNTER_COLUMNS).where(encounter.c.id == wanted)).mappings().first()
        if row is None:
            raise NotFound(f"no Encounter {resource_id} at this facility")
        access.open_chart(conn, principal, row["patient_id"], break_glass_reason)
        note_access(conn, principal, "read", row["patient_id"], "encounter", (wanted,))
        return resources.encounter(dict(row))
    kinds = KINDS[resource_type]
    found = conn.execute(sa.select(entry.c.patient_id, entry.c.kind)
                         .where(entry.c.root_id == wanted, entry.c.kind.in_(kinds)).limit(1)).first()
    if found is None:
        raise NotFound(f"no {resource_type} {resource_id} at this facility")
    access.open_chart(conn, principal, found.patient_id, break_glass_reason)
    row = current_version(conn, found.kind, wanted)
    note_access(conn, principal, "read", found.patient_id, found.kind, (row["id"],))
    return SHAPES[found.kind](row)


def current_version(conn: Connection, kind: str, root_id: uuid.UUID) -> dict:
    """The current version of a record with its detail; a record entered in error keeps the detail of
    the version it withdrew (the retraction itself has none). Not audited: callers are."""
    table = TABLES[kind]
    detail_of = sa.case((entry.c.status == "entered_in_error", entry.c.supersedes), else_=entry.c.id)
    columns = service._detail_columns(table)  # the service's one list of a detail's columns
    row = conn.execute(
        sa.select(*service.ENTRY_COLUMNS, entry.c.patient_id, *columns)
        .select_from(entry.join(table, table.c.entry_id == detail_of))
        .where(entry.c.root_id == root_id, entry.c.kind == kind, current_clause())
    ).mappings().one()
    return dict(row)


# -- search ------------------------------------------------------------------------------------------

Token = tuple[str | None, str]


def _codings(concept: dict | None) -> list[Token]:
    return [(c.get("system"), c["code"]) for c in (concept or {}).get("coding", []) if c.get("code")]


def _codes(resource: dict) -> list[Token]:
    found = _codings(resource.get("code"))
    for component in resource.get("component", []):
        found += _codings(component.get("code"))
    return found


def _categories(resource: dict) -> list[Token]:
    found: list[Token] = []
    for category in resource.get("category", []):
        found += [(None, category)] if isinstance(category, str) else _codings(category)
    return found


def _effective(resource: dict) -> str | None:
    return resource.get("effectiveDateTime") or resource.get("period", {}).get("start")


@dataclass(frozen=True)
class SearchParameter:
    name: str
    type: str  # FHIR search parameter type: string, token, date, reference
    description: str
    tokens: Callable[[dict], list[Token]] | None = None  # the token values a resource carries
    date: Callable[[dict], str | None] | None = None


def _status(resource: dict) -> list[Token]:
    return [(None, resource["status"])]


PATIENT_REFERENCE = SearchParameter("patient", "reference", "whose record (required)")
SEARCH_PARAMETERS: dict[str, dict[str, SearchParameter]] = {
    "Patient": {p.name: p for p in [
        SearchParameter("name", "string", "any part of the name (tolerant of misspelling)"),
        SearchParameter("family", "string", "family name, starting with"),
        SearchParameter("given", "string", "a given name, starting with"),
        SearchParameter("identifier", "token", "an identifier or the medical record number, exactly"),
        SearchParameter("birthdate", "date", "date of birth (eq only)"),
        SearchParameter("gender", "token", "female, male, other, unknown",
                        tokens=lambda r: [(None, r["gender"])]),
    ]},
    "Encounter": {p.name: p for p in [
        PATIENT_REFERENCE,
        SearchParameter("status", "token", "planned, arrived, in-progress, finished, cancelled", tokens=_status),
        SearchParameter("class", "token", "AMB, EMER, IMP", tokens=lambda r: [(r["class"].get("system"),
                                                                             r["class"]["code"])]),
        SearchParameter("date", "date", "when it started", date=_effective),
    ]},
    "Condition": {p.name: p for p in [
        PATIENT_REFERENCE,
        SearchParameter("clinical-status", "token", "active, resolved, inactive",
                        tokens=lambda r: _codings(r.get("clinicalStatus"))),
        SearchParameter("code", "token", "ICD-10 code", tokens=_codes),
    ]},
    "AllergyIntolerance": {p.name: p for p in [
        PATIENT_REFERENCE,
        SearchParameter("clinical-status", "token", "active, inactive, resolved",
                        tokens=lambda r: _codings(r.get("clinicalStatus"))),
        SearchParameter("category", "token", "medication, food, environment", tokens=_categories),
    ]},
    "MedicationRequest": {p.name: p for p in [
        PATIENT_REFERENCE,
        SearchParameter("status", "token", "active, completed, stopped", tokens=_status),
    ]},
    "ServiceRequest": {p.name: p for p in [
        PATIENT_REFERENCE,
        SearchParameter("status", "token", "active, revoked", tokens=_status),
        SearchParameter("code", "token", "LOINC code", tokens=_codes),
        SearchParameter("category", "token", "SNOMED CT 108252007 (laboratory) or 363679005 (imaging)",
                        tokens=_categories),
    ]},
    "Observation": {p.name: p for p in [
        PATIENT_REFERENCE,
        SearchParameter("category", "token", "laboratory or vital-signs", tokens=_categories),
        SearchParameter("code", "token", "LOINC code (of the observation or one of its components)",
                        tokens=_codes),
        SearchParameter("status", "token", "final, amended", tokens=_status),
        SearchParameter("date", "date", "when it was taken", date=_effective),
    ]},
}


def parse_query(resource_type: str, query: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    """The search's parameters, refusing any the facade does not implement (never silently ignored)."""
    known = SEARCH_PARAMETERS[resource_type]
    params: dict[str, list[str]] = {}
    for name, value in query:
        if name not in known:
            raise FhirError(400, "not-supported",
                            f"search parameter {name!r} is not supported for {resource_type}; supported: "
                            f"{', '.join(sorted(known))}", expression=name)
        if not value.strip():
            raise FhirError(400, "invalid", f"search parameter {name!r} has no value", expression=name)
        params.setdefault(name, []).append(value.strip())
    return params


def _token(value: str) -> Token:
    system, bar, code = value.partition("|")
    return (system or None, code) if bar else (None, value)


def _token_matches(wanted: str, carried: list[Token]) -> bool:
    """One token parameter value (`code`, `system|code`, or several joined by commas, any of which)."""
    for alternative in wanted.split(","):
        system, code = _token(alternative)
        if any(c.lower() == code.lower() and (system is None or s == system) for s, c in carried):
            return True
    return False


DATE_PREFIXES = {"eq": lambda a, b: a == b, "ge": lambda a, b: a >= b, "le": lambda a, b: a <= b,
                 "gt": lambda a, b: a > b, "lt": lambda a, b: a < b}


def _date_test(name: str, value: str) -> Callable[[dt.date], bool]:
    prefix = value[:2] if value[:2] in DATE_PREFIXES else "eq"
    text = value[2:] if value[:2] in DATE_PREFIXES else value
    try:
        day = dt.date.fromisoformat(text[:10])
    except ValueError:
        raise FhirError(400, "invalid", f"{name}={value!r} is not a date (YYYY-MM-DD, optionally prefixed with "
                                        "eq, ge, le, gt or lt)", expression=name) from None
    return lambda when: DATE_PREFIXES[prefix](when, day)


def _filter(resource_type: str, found: list[dict], params: dict[str, list[str]]) -> list[dict]:
    known = SEARCH_PARAMETERS[resource_type]
    for name, values in params.items():
        parameter = known[name]
        for value in values:
            if parameter.tokens is not None:
                found = [r for r in found if _token_matches(value, parameter.tokens(r))]
            elif parameter.date is not None:
                test = _date_test(name, value)
                found = [r for r in found if (d := parameter.date(r)) and test(dt.date.fromisoformat(d[:10]))]
    return found


def patient_of_reference(value: str) -> uuid.UUID:
    reference = value.removeprefix("Patient/")
    try:
        return uuid.UUID(reference)
    except ValueError:
        raise NotFound(f"no Patient {reference} at this facility") from None


def search(conn: Connection, principal: Principal, resource_type: str, params: dict[str, list[str]],
           break_glass_reason: str | None) -> list[dict]:
    """The resources matching `params` (already checked by `parse_query`); the reads are audited."""
    if resource_type == "Patient":
        return _search_patients(conn, principal, params)
    if "patient" not in params:
        raise FhirError(400, "required", f"a {resource_type} search names the patient (patient=<id>): a search "
                                         "across every patient's record is not offered", expression="patient")
    if len(params["patient"]) > 1 or "," in params["patient"][0]:
        raise FhirError(400, "not-supported", "search one patient's record at a time", expression="patient")
    patient_id = patient_of_reference(params["patient"][0])
    access.open_chart(conn, principal, patient_id, break_glass_reason)
    rest = {name: values for name, values in params.items() if name != "patient"}
    return _filter(resource_type, _of_patient(conn, principal, resource_type, patient_id, rest), rest)


def _of_patient(conn: Connection, principal: Principal, resource_type: str, patient_id: uuid.UUID,
                params: dict[str, list[str]]) -> list[dict]:
    """One patient's resources of a type, through the service list that notes its own access."""
    def shaped(kind: str, rows: list[dict]) -> list[dict]:
        return [SHAPES[kind]({**row, "patient_id": patient_id}) for row in rows]

    if resource_type == "Encounter":
        return [resources.encounter(r) for r in service.list_encounters(conn, principal, patient_id,
                                                                        limit=ENCOUNTERS)]
    if resource_type == "Condition":
        return shaped("condition", service.list_conditions(conn, principal, patient_id))
    if resource_type == "AllergyIntolerance":
        return shaped("allergy", service.list_allergies(conn, principal, patient_id))
    if resource_type == "MedicationRequest":
        return shaped("medication_request", service.list_medications(conn, principal, patient_id))
    if resource_type == "ServiceRequest":
        return shaped("service_request", service.list_orders(conn, principal, patient_id))
    # Observation: read (and audit) only the kinds the category asks for.
    wanted = {_token(v)[1] for value in params.get("category", []) for v in value.split(",")}
    found: list[dict] = []
    if not wanted or "laboratory" in wanted:
        found += shaped("result", service.list_results(conn, principal, patient_id))
    if not wanted or "vital-signs" in wanted:
        found += shaped("vital_signs", vital_signs_of(conn, principal, patient_id))
    return found


def vital_signs_of(conn: Connection, principal: Principal, patient_id: uuid.UUID) -> list[dict]:
    """A patient's current vital signs sets, newest first, audited (the clinical service has no list)."""
    rows = service.current_rows(conn, vital_signs, patient_id)
    note_access(conn, principal, "read", patient_id, "vital_signs", [r["id"] for r in rows])
    return rows


def _search_patients(conn: Connection, principal: Principal, params: dict[str, list[str]]) -> list[dict]:
    """Patients through the clinical search (audited as a search of the patients it found), narrowed
    by the parameters it does not take itself (family, given, gender, an identifier's system)."""
    for name in ("name", "family", "given", "identifier", "birthdate"):
        if len(params.get(name, [])) > 1:
            raise FhirError(400, "not-supported", f"give {name} once", expression=name)
    name = " ".join(params.get("name", []) + params.get("given", []) + params.get("family", []))
    identifier = params.get("identifier", [None])[0]
    system = None
    if identifier is not None:
        system, identifier = _token(identifier)
    birth_date = None
    if "birthdate" in params:
        value = params["birthdate"][0]
        if value[:2] in DATE_PREFIXES and value[:2] != "eq":
            raise FhirError(400, "not-supported", "birthdate is searched by an exact date (eq) only",
                            expression="birthdate")
        try:
            birth_date = dt.date.fromisoformat(value.removeprefix("eq"))
        except ValueError:
            raise FhirError(400, "invalid", f"birthdate={value!r} is not a date (YYYY-MM-DD)",
                            expression="birthdate") from None
    if not (name or identifier or birth_date):
        raise FhirError(400, "required", "search patients by name, family, given, identifier or birthdate "
                                         "(gender only narrows such a search)", expression="name")
    matches = service.search_patients(conn, principal, name=name or None, identifier=identifier,
                                      birth_date=birth_date, limit=100)
    # The matches' whole registrations in one statement (the search noted its access, naming them).
    rows = {r["id"]: r for r in conn.execute(sa.select(*service.PATIENT_COLUMNS).where(
        patient.c.id.in_([m["id"] for m in matches]))).mappings()} if matches else {}
    found = [resources.patient(dict(rows[m["id"]])) for m in matches]

    def starts(names: list[str], prefix: str) -> bool:
        return any(n.lower().startswith(prefix.lower()) for n in names)

    for family in params.get("family", []):
        found = [r for r in found if starts([r["name"][0]["family"]], family)]
    for given in params.get("given", []):
        found = [r for r in found if starts(r["name"][0].get("given", []), given)]
    if system is not None:
        found = [r for r in found if any(i["system"] == system and i["value"] == identifier
                                         for i in r.get("identifier", []))]
    return _filter("Patient", found, {k: v for k, v in params.items() if k == "gender"})


# -- $everything -------------------------------------------------------------------------------------

EVERYTHING_LIMIT = 10_000  # per kind: a chart's whole history, not the chart summary's latest few


def everything(conn: Connection, principal: Principal, patient_id: uuid.UUID, break_glass_reason: str | None
               ) -> list[dict]:
    """The patient and every resource of theirs the facade serves. Read with the services' unaudited
    readers (`current_rows`, `orders_of`, `results_of`: "callers are") and noted once on the audit seam
    as a read of the chart naming every id, as the chart summary is: one event where the per-kind
    lists would append seven, each taking the facility's audit chain in turn."""
    access.open_chart(conn, principal, patient_id, break_glass_reason)
    patient_row = service.patient_of(conn, patient_id)
    encounters = [dict(r) for r in conn.execute(
        sa.select(*service.ENCOUNTER_COLUMNS).where(encounter.c.patient_id == patient_id)
        .order_by(sa.func.coalesce(encounter.c.started_at, encounter.c.planned_for).desc().nulls_last())
        .limit(EVERYTHING_LIMIT)).mappings()]
    by_kind = {
        "condition": service.current_rows(conn, condition, patient_id, limit=EVERYTHING_LIMIT),
        "allergy": service.current_rows(conn, allergy, patient_id, limit=EVERYTHING_LIMIT),
        "medication_request": service.current_rows(conn, medication_request, patient_id, limit=EVERYTHING_LIMIT),
        "service_request": service.orders_of(conn, patient_id, limit=EVERYTHING_LIMIT),
        "result": service.results_of(conn, patient_id, limit=EVERYTHING_LIMIT),
        "vital_signs": service.current_rows(conn, vital_signs, patient_id, limit=EVERYTHING_LIMIT),
    }
    ids = [patient_id, *(r["id"] for r in encounters), *(r["id"] for rows in by_kind.values() for r in rows)]
    note_access(conn, principal, "read", patient_id, "chart", ids, detail={"interface": "FHIR Patient/$everything"})
    found = [resources.patient(patient_row), *(resources.encounter(r) for r in encounters)]
    for kind, rows in by_kind.items():
        found += [SHAPES[kind]({**row, "patient_id": patient_id}) for row in rows]
    return found
