"""Reads of the FHIR facade: a resource by its id, a search, a patient's `$everything` — each from the
clinical layer's statements, inside the caller's tenant transaction, and each audited.

A search is one page at a time (`paging`): its parameters become SQL over the clinical service's
own statements (`service.current_query`, `service.patient_search_query`), so the database filters,
orders and limits, and only the page's rows are read, shaped, and noted on the record's audit seam
(`record.note_access`) as the service lists note theirs. The read of one record by its root id,
including a record marked entered in error, has no service function and is written here, audited
the same way. Any resource of a patient opens only as the patient's chart would (`access.open_chart`:
a care relationship or a stated break-the-glass reason), decided after its patient is found from the
resource's own id — and decided again on every page of a search.
"""

from __future__ import annotations

import datetime as dt
import functools
import operator
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from appliance.interop.fhir import paging, resources
from appliance.interop.fhir.errors import FhirError
from appliance.layers.clinical import access, documents, service
from appliance.layers.clinical.errors import NotFound
from appliance.layers.clinical.immunization_schedule import Schedule
from appliance.layers.clinical.models import (
    allergy,
    condition,
    document,
    document_content,
    encounter,
    immunization,
    medication_request,
    patient,
    patient_identifier,
    result,
    service_request,
    surgery,
    tb_treatment,
    vital_signs,
)
from appliance.layers.clinical.surgery import notes_of
from appliance.layers.clinical.tuberculosis_routes import READ as TB_READ
from appliance.layers.nursing.models import diet_order
from appliance.substrate import deaths, identity
from appliance.substrate.principal import Principal
from appliance.substrate.record import current_clause, entry, note_access, note_patients_found

DIET_READ = "nursing.diet.read"  # the nursing API's read of a patient's diet (appliance/layers/nursing/routes.py)
# Entry kinds behind each entry-backed resource type, their tables and their FHIR shape.
KINDS: dict[str, tuple[str, ...]] = {
    "Condition": ("condition",),
    "AllergyIntolerance": ("allergy",),
    "MedicationRequest": ("medication_request",),
    "ServiceRequest": ("service_request",),
    "Observation": ("result", "vital_signs"),
    "Immunization": ("immunization",),
    "Procedure": ("surgery",),
    "DocumentReference": ("document",),
    "EpisodeOfCare": ("tb_treatment",),
    "NutritionOrder": ("diet_order",),
}
TABLES = {"condition": condition, "allergy": allergy, "medication_request": medication_request,
          "service_request": service_request, "result": result, "vital_signs": vital_signs,
          "immunization": immunization, "surgery": surgery, "document": document, "tb_treatment": tb_treatment,
          "diet_order": diet_order}
SHAPES: dict[str, Callable[[dict], dict]] = {
    "condition": resources.condition, "allergy": resources.allergy,
    "medication_request": resources.medication_request, "service_request": resources.service_request,
    "result": resources.result, "vital_signs": resources.vital_signs, "surgery": resources.procedure,
    "diet_order": resources.nutrition_order,
}


def _shape(kind: str, row: dict, schedule: Schedule, conn: Connection) -> dict:
    """An entry-backed row as its resource; a dose's vaccine is coded from the immunization schedule's table, a
    document's file addressed by the facility's route that serves it, a TB treatment's register number in the
    facility's register."""
    if kind == "document":
        return resources.document_reference(documents.for_interop(row, conn.info["healthos_tenant"]))
    if kind == "tb_treatment":
        return resources.episode_of_care(row, conn.info["healthos_tenant"])
    return resources.immunization(row, schedule) if kind == "immunization" else SHAPES[kind](row)


_WITHDRAWN = entry.alias("withdrawn_version")
# When a dose was given: its current version's own time, not the record's first (`service.RECORD_OCCURRED_AT`),
# since a correction of a dose may correct its day (clinical/immunization.py reads it so too); a dose marked
# entered in error keeps the time of the version it withdrew.
GIVEN_AT = sa.case(
    (entry.c.status == "entered_in_error",
     sa.select(_WITHDRAWN.c.occurred_at).where(_WITHDRAWN.c.id == entry.c.supersedes).scalar_subquery()),
    else_=entry.c.occurred_at)


def _with_operation_notes(conn: Connection, found: list[tuple[str, dict]]) -> list[uuid.UUID]:
    """Each operation of `found` (kind, row) given its current operation note, which its Procedure carries; the
    notes' ids, for the caller to note the read of."""
    cases = [row for kind, row in found if kind == "surgery"]
    notes = notes_of(conn, [row["root_id"] for row in cases])
    for row in cases:
        row["operation_note"] = notes.get(row["root_id"])
    return [note["id"] for note in notes.values()]


# A document's file: its checked type, size and hash, beside its entry's detail.
_FILE_COLUMNS = (document_content.c.media_type, document_content.c.size, document_content.c.sha1_base64)


def _current(kind: str, patient_id: uuid.UUID, *where: sa.ColumnElement[bool]) -> sa.Select:
    """The clinical service's statement of one kind's current records (a dose's own time, a document's file
    added)."""
    query = service.current_query(TABLES[kind], patient_id, *where)
    if kind == "document":
        return query.join(document_content, document_content.c.sha256 == document.c.content_sha256
                          ).add_columns(*_FILE_COLUMNS)
    return query.add_columns(GIVEN_AT.label("given_at")) if kind == "immunization" else query


def _uuid(resource_type: str, resource_id: str) -> uuid.UUID:
    try:
        return uuid.UUID(resource_id)
    except ValueError:
        # A guessed or malformed id is answered as any unknown id is: not found, nothing more.
        raise NotFound(f"no {resource_type} {resource_id} at this facility") from None


# -- read by id --------------------------------------------------------------------------------------


def read(conn: Connection, principal: Principal, resource_type: str, resource_id: str,
         break_glass_reason: str | None, *, schedule: Schedule) -> dict:
    """One resource by its id, opened as its patient's chart would be, and audited."""
    wanted = _uuid(resource_type, resource_id)
    if resource_type == "Patient":
        # As the JSON API's patient read: demographics open without a care relationship (the
        # registration desk's read), audited.
        return _patient_resource(conn, service.get_patient(conn, principal, wanted))
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
    if notes := _with_operation_notes(conn, [(found.kind, row)]):
        note_access(conn, principal, "read", found.patient_id, "operation_note", notes)
    return _shape(found.kind, row, schedule, conn)


def current_version(conn: Connection, kind: str, root_id: uuid.UUID) -> dict:
    """The current version of a record with its detail; a record entered in error keeps the detail of
    the version it withdrew (the retraction itself has none). Not audited: callers are."""
    table = TABLES[kind]
    detail_of = sa.case((entry.c.status == "entered_in_error", entry.c.supersedes), else_=entry.c.id)
    columns = service._detail_columns(table)  # the service's one list of a detail's columns
    given_at = [GIVEN_AT.label("given_at")] if kind == "immunization" else []
    joined = entry.join(table, table.c.entry_id == detail_of)
    if kind == "document":
        joined = joined.join(document_content, document_content.c.sha256 == document.c.content_sha256)
        given_at = list(_FILE_COLUMNS)
    row = conn.execute(
        sa.select(*service.ENTRY_COLUMNS, entry.c.patient_id, *columns, *given_at)
        .select_from(joined)
        .where(entry.c.root_id == root_id, entry.c.kind == kind, current_clause())
    ).mappings().one()
    return dict(row)


# -- search ------------------------------------------------------------------------------------------

Token = tuple[str | None, str]
# One alternative of a token parameter, as SQL over one entry kind's rows (an encounter's "kind" is
# "encounter"); sa.false() where the kind cannot carry it.
TokenClause = Callable[[str, str | None, str], sa.ColumnElement[bool]]


@dataclass(frozen=True)
class SearchParameter:
    name: str
    type: str  # FHIR search parameter type: string, token, date, reference
    description: str
    token: TokenClause | None = None
    when: Callable[[str], sa.ColumnElement] | None = None  # the instant a date parameter compares, per kind


def _lower_is(column: sa.ColumnElement, code: str) -> sa.ColumnElement[bool]:
    return sa.func.lower(column) == code.lower()


def _in_system(system: str | None, *served: str) -> bool:
    """A token's system, where the client named one, is one the record codes this element in."""
    return system is None or system in served


def _entry_status(kind: str, system: str | None, code: str) -> sa.ColumnElement[bool]:
    """A prescription's or an order's status: its own, as `resources` maps it (a record entered in
    error never reaches a search: its retraction has no detail row)."""
    table = TABLES[kind]
    return _lower_is(table.c.status, code) if system is None else sa.false()


def _clinical_status(coded_in: str) -> TokenClause:
    def clause(kind: str, system: str | None, code: str) -> sa.ColumnElement[bool]:
        return _lower_is(TABLES[kind].c.clinical_status, code) if _in_system(system, coded_in) else sa.false()
    return clause


def _observation_status(_kind: str, system: str | None, code: str) -> sa.ColumnElement[bool]:
    if system is not None:
        return sa.false()
    return {"final": entry.c.status == "final", "amended": entry.c.status == "amended"}.get(code.lower(), sa.false())


def _observation_code(kind: str, system: str | None, code: str) -> sa.ColumnElement[bool]:
    """A laboratory result's LOINC code; a vital signs set's panel code or the code of a measurement it holds."""
    if not _in_system(system, resources.LOINC):
        return sa.false()
    if kind == "result":
        return _lower_is(result.c.code, code)
    if code == resources.VITAL_SIGNS_PANEL[0]:
        return sa.true()
    held = [vital_signs.c[sign.column].is_not(None) for sign in resources.VITAL_SIGNS if sign.loinc == code]
    return sa.or_(*held) if held else sa.false()


OBSERVATION_CATEGORY = {"laboratory": "result", "vital-signs": "vital_signs"}


def _observation_category(kind: str, system: str | None, code: str) -> sa.ColumnElement[bool]:
    served = _in_system(system, resources.TERMINOLOGY + "observation-category")
    return sa.true() if served and OBSERVATION_CATEGORY.get(code.lower()) == kind else sa.false()


def _order_category(_kind: str, system: str | None, code: str) -> sa.ColumnElement[bool]:
    named = [ours for ours, (snomed, _) in resources.SERVICE_CATEGORY.items() if snomed == code]
    return service_request.c.category.in_(named) if named and _in_system(system, resources.SNOMED) else sa.false()


IMMUNIZATION_STATUS = {"completed": "completed", "not-done": "not_done"}


def _immunization_status(_kind: str, system: str | None, code: str) -> sa.ColumnElement[bool]:
    ours = IMMUNIZATION_STATUS.get(code.lower())
    return immunization.c.status == ours if ours and system is None else sa.false()


def _vaccine_code(_kind: str, system: str | None, code: str) -> sa.ColumnElement[bool]:
    """A dose's vaccine by the schedule's code (ours); a CVX code was added as ours by `_vaccine_codes_as_ours`."""
    return immunization.c.vaccine == code.upper() if _in_system(system, resources.VACCINE_SYSTEM) else sa.false()


def _vaccine_codes_as_ours(params: dict[str, list[str]], schedule: Schedule) -> dict[str, list[str]]:
    """Each vaccine-code alternative in CVX (or in no system) also as the schedule's code it names: the CVX table
    is the schedule's (policies/immunization.toml), not the database's, so the SQL compares our code."""
    def with_ours(value: str) -> str:
        alternatives = value.split(",")
        for alternative in list(alternatives):
            system, code = _token(alternative)
            vaccine = schedule.vaccine_of_cvx(code) if _in_system(system, resources.CVX) else None
            if vaccine is not None:
                alternatives.append(f"{resources.VACCINE_SYSTEM}|{vaccine.code}")
        return ",".join(alternatives)

    if "vaccine-code" not in params:
        return params
    return {**params, "vaccine-code": [with_ours(v) for v in params["vaccine-code"]]}


def _encounter_status(_kind: str, system: str | None, code: str) -> sa.ColumnElement[bool]:
    ours = [k for k, v in resources.ENCOUNTER_STATUS.items() if v == code.lower()]
    return encounter.c.status.in_(ours) if ours and system is None else sa.false()


def _encounter_class(_kind: str, system: str | None, code: str) -> sa.ColumnElement[bool]:
    ours = [k for k, (v, _) in resources.ENCOUNTER_CLASS.items() if v.lower() == code.lower()]
    served = _in_system(system, resources.TERMINOLOGY + "v3-ActCode")
    return encounter.c.encounter_class.in_(ours) if ours and served else sa.false()


def _encounter_start(_kind: str) -> sa.ColumnElement:
    # updated_at only where neither is set, so the order (and a page's keyset) never meets a NULL.
    return sa.func.coalesce(encounter.c.started_at, encounter.c.planned_for, encounter.c.updated_at)


def _occurred(_kind: str) -> sa.ColumnElement:
    return entry.c.occurred_at


def _document_category(_kind: str, system: str | None, code: str) -> sa.ColumnElement[bool]:
    return document.c.category == code if _in_system(system, resources.DOCUMENT_CATEGORY_SYSTEM) else sa.false()


def _operation_time(_kind: str) -> sa.ColumnElement:
    return sa.func.coalesce(surgery.c.started_at, surgery.c.planned_at)


def _procedure_status(_kind: str, system: str | None, code: str) -> sa.ColumnElement[bool]:
    ours = [k for k, v in resources.PROCEDURE_STATUS.items() if v == code.lower()]
    return surgery.c.status.in_(ours) if ours and system is None else sa.false()


def _procedure_code(_kind: str, system: str | None, code: str) -> sa.ColumnElement[bool]:
    return _lower_is(surgery.c.procedure_code, code) if _in_system(system, resources.PROCEDURE_SYSTEM) else sa.false()


PATIENT_REFERENCE = SearchParameter("patient", "reference", "whose record (required)")
SEARCH_PARAMETERS: dict[str, dict[str, SearchParameter]] = {
    "Patient": {p.name: p for p in [
        SearchParameter("name", "string", "any part of the name (tolerant of misspelling)"),
        SearchParameter("family", "string", "family name, starting with"),
        SearchParameter("given", "string", "a given name, starting with"),
        SearchParameter("identifier", "token", "an identifier or the medical record number, exactly"),
        SearchParameter("birthdate", "date", "date of birth (eq only)"),
        SearchParameter("gender", "token", "female, male, other, unknown",
                        token=lambda _, system, code: _lower_is(patient.c.sex, code) if system is None else sa.false()),
    ]},
    "Encounter": {p.name: p for p in [
        PATIENT_REFERENCE,
        SearchParameter("status", "token", "planned, arrived, in-progress, finished, cancelled",
                        token=_encounter_status),
        SearchParameter("class", "token", "AMB, EMER, IMP", token=_encounter_class),
        SearchParameter("date", "date", "when it started", when=_encounter_start),
    ]},
    "Condition": {p.name: p for p in [
        PATIENT_REFERENCE,
        SearchParameter("clinical-status", "token", "active, resolved, inactive",
                        token=_clinical_status(resources.TERMINOLOGY + "condition-clinical")),
        SearchParameter("code", "token", "ICD-10 code",
                        token=lambda _, system, code: _lower_is(condition.c.code, code)
                        if _in_system(system, resources.ICD10) else sa.false()),
    ]},
    "AllergyIntolerance": {p.name: p for p in [
        PATIENT_REFERENCE,
        SearchParameter("clinical-status", "token", "active, inactive, resolved",
                        token=_clinical_status(resources.TERMINOLOGY + "allergyintolerance-clinical")),
        SearchParameter("category", "token", "medication, food, environment",
                        token=lambda _, system, code: allergy.c.category.in_(
                            {"medication", "food", "environment"} & {code.lower()})
                        if system is None else sa.false()),
    ]},
    "MedicationRequest": {p.name: p for p in [
        PATIENT_REFERENCE,
        SearchParameter("status", "token", "active, completed, stopped", token=_entry_status),
    ]},
    "ServiceRequest": {p.name: p for p in [
        PATIENT_REFERENCE,
        SearchParameter("status", "token", "active, revoked", token=_entry_status),
        SearchParameter("code", "token", "LOINC code",
                        token=lambda _, system, code: _lower_is(service_request.c.code, code)
                        if _in_system(system, resources.LOINC) else sa.false()),
        SearchParameter("category", "token", "SNOMED CT 108252007 (laboratory) or 363679005 (imaging)",
                        token=_order_category),
    ]},
    "Observation": {p.name: p for p in [
        PATIENT_REFERENCE,
        SearchParameter("category", "token", "laboratory or vital-signs", token=_observation_category),
        SearchParameter("code", "token", "LOINC code (of the observation or one of its components)",
                        token=_observation_code),
        SearchParameter("status", "token", "final, amended", token=_observation_status),
        SearchParameter("date", "date", "when it was taken", when=_occurred),
    ]},
    "Immunization": {p.name: p for p in [
        PATIENT_REFERENCE,
        SearchParameter("date", "date", "when the dose was given (or was due and not given)", when=_occurred),
        SearchParameter("status", "token", "completed, not-done", token=_immunization_status),
        SearchParameter("vaccine-code", "token", f"the schedule's vaccine code ({resources.VACCINE_SYSTEM}) or "
                                                 "its CVX code", token=_vaccine_code),
    ]},
    "DocumentReference": {p.name: p for p in [
        PATIENT_REFERENCE,
        SearchParameter("category", "token", f"the document's category ({resources.DOCUMENT_CATEGORY_SYSTEM}): "
                                             f"{', '.join(documents.CATEGORY_WORDS)}", token=_document_category),
        SearchParameter("date", "date", "when it was filed", when=_occurred),
    ]},
    "EpisodeOfCare": {p.name: p for p in [PATIENT_REFERENCE]},
    "NutritionOrder": {p.name: p for p in [PATIENT_REFERENCE]},
    "Procedure": {p.name: p for p in [
        PATIENT_REFERENCE,
        SearchParameter("date", "date", "when the operation began (or, not begun, is planned)", when=_operation_time),
        SearchParameter("status", "token", "preparation, in-progress, completed, not-done", token=_procedure_status),
        SearchParameter("code", "token", f"the facility's procedure code ({resources.PROCEDURE_SYSTEM})",
                        token=_procedure_code),
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
                            f"{', '.join(sorted([*known, *paging.PAGING_PARAMETERS]))}", expression=name)
        if not value.strip():
            raise FhirError(400, "invalid", f"search parameter {name!r} has no value", expression=name)
        params.setdefault(name, []).append(value.strip())
    return params


def _token(value: str) -> Token:
    system, bar, code = value.partition("|")
    return (system or None, code) if bar else (None, value)


DATE_PREFIXES = {"eq": operator.eq, "ge": operator.ge, "le": operator.le, "gt": operator.gt, "lt": operator.lt}


def _date_clause(name: str, value: str, when: sa.ColumnElement) -> sa.ColumnElement[bool]:
    prefix = value[:2] if value[:2] in DATE_PREFIXES else "eq"
    text = value[2:] if value[:2] in DATE_PREFIXES else value
    try:
        day = dt.date.fromisoformat(text[:10])
    except ValueError:
        raise FhirError(400, "invalid", f"{name}={value!r} is not a date (YYYY-MM-DD, optionally prefixed with "
                                        "eq, ge, le, gt or lt)", expression=name) from None
    return DATE_PREFIXES[prefix](sa.cast(when, sa.Date), day)


def _clauses(resource_type: str, kind: str, params: dict[str, list[str]]) -> list[sa.ColumnElement[bool]]:
    """The token and date parameters as SQL over one kind's rows: each value must hold, and a value's
    comma-separated alternatives are any of them."""
    known = SEARCH_PARAMETERS[resource_type]
    clauses = []
    for name, values in params.items():
        parameter = known[name]
        for value in values:
            if parameter.token is not None:
                clauses.append(sa.or_(*(parameter.token(kind, *_token(v)) for v in value.split(","))))
            elif parameter.when is not None:
                clauses.append(_date_clause(name, value, parameter.when(kind)))
    return clauses


def patient_of_reference(value: str) -> uuid.UUID:
    reference = value.removeprefix("Patient/")
    try:
        return uuid.UUID(reference)
    except ValueError:
        raise NotFound(f"no Patient {reference} at this facility") from None


@dataclass(frozen=True)
class _Source:
    """One statement a search pages through: an entry kind's rows (or encounters, or patients), in an order."""

    kind: str
    query: sa.Select
    order: list[sa.UnaryExpression]


def _keyed(source: _Source) -> sa.Select:
    return source.query.add_columns(*(term.element.label(f"page_key_{i}") for i, term in enumerate(source.order)))


def _key(row: dict, width: int) -> tuple:
    return tuple(row[f"page_key_{i}"] for i in range(width))


def _compare(order: list[sa.UnaryExpression], a: tuple, b: tuple, backwards: bool) -> int:
    """-1 where the row keyed `a` comes first in `order` (last, `backwards`)."""
    for term, x, y in zip(order, a, b, strict=True):
        if x != y:
            first = (x > y) if term.modifier is sa.sql.operators.desc_op else (x < y)
            return -1 if first != backwards else 1
    return 0


def _page(conn: Connection, sources: list[_Source], page: paging.Page) -> tuple[list[tuple[str, dict]], paging.Paged]:
    """One page over the sources — each asked for at most count + 1 rows after the cursor, so SQL does
    the limiting — merged in their common order, and the total (a count of each, unless the first page
    is all there is)."""
    def counted() -> int:
        return sum(conn.execute(sa.select(sa.func.count()).select_from(s.query.subquery())).scalar_one()
                   for s in sources)

    if page.count == 0:
        return [], paging.Paged([], counted())
    width = len(sources[0].order)
    found: list[tuple[str, dict]] = []
    for source in sources:
        query = _keyed(source)
        if page.key is not None:
            query = query.where(paging.beyond(source.order, page.key, backwards=page.backwards))
        order = paging.reversed_order(source.order) if page.backwards else source.order
        found += [(source.kind, dict(r)) for r in conn.execute(query.order_by(*order).limit(page.count + 1)).mappings()]
    if len(sources) > 1:
        # Several kinds in one Bundle (Observation, $everything) share one order: merged here.
        found.sort(key=functools.cmp_to_key(lambda a, b: _compare(sources[0].order, _key(a[1], width),
                                                                  _key(b[1], width), page.backwards)))
    more, found = len(found) > page.count, found[:page.count]
    # A first page that holds every match has counted them; only a longer search is counted again.
    paged = paging.Paged([], len(found) if page.key is None and not more else counted())
    if page.backwards:
        found.reverse()
    if found:
        first, last = _key(found[0][1], width), _key(found[-1][1], width)
        paged.next_key = last if more or page.backwards else None
        paged.previous_key = first if (more if page.backwards else page.key is not None) else None
    return found, paged


def search(conn: Connection, principal: Principal, resource_type: str, params: dict[str, list[str]],
           break_glass_reason: str | None, page: paging.Page, *, schedule: Schedule) -> paging.Paged:
    """One page of the resources matching `params` (already checked by `parse_query`), and the total;
    the page's reads are audited as the service lists audit theirs."""
    if resource_type == "Patient":
        return _search_patients(conn, principal, params, page)
    if "patient" not in params:
        raise FhirError(400, "required", f"a {resource_type} search names the patient (patient=<id>): a search "
                                         "across every patient's record is not offered", expression="patient")
    if len(params["patient"]) > 1 or "," in params["patient"][0]:
        raise FhirError(400, "not-supported", "search one patient's record at a time", expression="patient")
    patient_id = patient_of_reference(params["patient"][0])
    access.open_chart(conn, principal, patient_id, break_glass_reason)
    service.require_patient(conn, patient_id)
    rest = _vaccine_codes_as_ours({name: values for name, values in params.items() if name != "patient"}, schedule)
    if resource_type == "Encounter":
        sources = [_Source("encounter", sa.select(*service.ENCOUNTER_COLUMNS).where(
            encounter.c.patient_id == patient_id, *_clauses(resource_type, "encounter", rest)),
            [_encounter_start("encounter").desc(), encounter.c.id.desc()])]
    else:
        sources = [_Source(kind, _current(kind, patient_id, *_clauses(resource_type, kind, rest)),
                           [entry.c.occurred_at.desc(), entry.c.root_id.desc()])
                   for kind in KINDS[resource_type]]
    found, paged = _page(conn, sources, page)
    # One read per kind the page shows (as each service list notes one); a page showing nothing is
    # noted too, as a read of the first kind naming nothing, so every search leaves its trace.
    shown = [s.kind for s in sources if any(kind == s.kind for kind, _ in found)] or [sources[0].kind]
    for shown_kind in shown:
        note_access(conn, principal, "read", patient_id, shown_kind,
                    [row["id"] for kind, row in found if kind == shown_kind])
    if notes := _with_operation_notes(conn, found):
        note_access(conn, principal, "read", patient_id, "operation_note", notes)
    paged.resources = [resources.encounter(row) if kind == "encounter"
                       else _shape(kind, {**row, "patient_id": patient_id}, schedule, conn) for kind, row in found]
    return paged


def _search_patients(conn: Connection, principal: Principal, params: dict[str, list[str]],
                     page: paging.Page) -> paging.Paged:
    """Patients by the clinical search's statement, narrowed in SQL by the parameters it does not take
    itself (family, given, gender, an identifier's system), a page at a time; audited as the clinical
    search is, as a search of the patients it shows."""
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
    query, order = service.patient_search_query(name=name or None, identifier=identifier, birth_date=birth_date)
    # FHIR matches a string "after both have been normalized by case and accent": the parts as the name is.
    for family in params.get("family", []):
        query = query.where(patient.c.family_search.like(f"{_like(identity.search_text(family))}%"))
    for given in params.get("given", []):
        given = _like(identity.search_text(given))
        query = query.where(sa.or_(patient.c.given_search.like(f"{given}%"),
                                   patient.c.given_search.like(f"% {given}%")))
    if system is not None:
        query = query.where(_identifier_in(system, identifier))
    query = query.where(*_clauses("Patient", "patient", {k: v for k, v in params.items() if k == "gender"}))
    found, paged = _page(conn, [_Source("patient", query, order)], page)
    note_patients_found(conn, principal, [row["id"] for _, row in found])
    # The page's whole registrations in one statement.
    rows = {r["id"]: r for r in conn.execute(sa.select(*service.PATIENT_COLUMNS).where(
        patient.c.id.in_([row["id"] for _, row in found]))).mappings()} if found else {}
    paged.resources = [_patient_resource(conn, rows[row["id"]]) for _, row in found]
    return paged


def _patient_resource(conn: Connection, row: Mapping) -> dict:
    """The Patient with its deceasedDateTime when the person is recorded deceased at any facility (the mark is
    the one identity's, in control: one statement a patient, and a page holds few)."""
    death = deaths.death_of(conn, row["id"])
    return resources.patient({**row, "deceased_at": death.died_at if death else None})


def _like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _identifier_in(system: str, value: str) -> sa.ColumnElement[bool]:
    """The patient holds `value` in the identifier system named as `resources` names it (the MRN too)."""
    if system == resources.MRN_SYSTEM:
        return patient.c.mrn == value
    ours = system.removeprefix(resources.IDENTIFIER_PREFIX)
    if ours == system:
        return sa.false()
    return patient.c.id.in_(sa.select(patient_identifier.c.patient_id).where(
        patient_identifier.c.system == ours, patient_identifier.c.value == value))


# -- $everything -------------------------------------------------------------------------------------

# A page of $everything when the client names no _count: a chart's whole history in one Bundle, as
# before paging (a client posting it back as a transaction wants it whole); a longer chart gets a
# `next` link where it used to be cut short.
EVERYTHING_PAGE = 10_000
EVERYTHING_KINDS = ("condition", "allergy", "medication_request", "service_request", "result", "vital_signs",
                    "immunization", "surgery", "document", "tb_treatment", "diet_order")
# Kinds in $everything only for those who may read them through their own resource's routes: documents of every
# category (the desk's narrower view is the documents API's), the TB register's treatments (the TB card's read) and
# diet orders (the ward's read of a patient's diet).
EVERYTHING_ONLY_WITH = {"document": documents.ANY_CATEGORY, "tb_treatment": TB_READ, "diet_order": DIET_READ}


def everything(conn: Connection, principal: Principal, patient_id: uuid.UUID, break_glass_reason: str | None,
               page: paging.Page, since: dt.datetime | None = None, *, schedule: Schedule) -> paging.Paged:
    """The patient and every resource of theirs the facade serves — those last updated at or after
    `since` where given — a page at a time: the patient first, then encounters, then each kind,
    each newest first. Read with the services' statements and noted once on the audit seam as a read
    of the chart naming every id the page shows, as the chart summary is: one event where the
    per-kind lists would append seven, each taking the facility's audit chain in turn."""
    access.open_chart(conn, principal, patient_id, break_glass_reason)
    service.require_patient(conn, patient_id)

    def changed(column: sa.ColumnElement) -> list[sa.ColumnElement[bool]]:
        return [column >= since] if since is not None else []

    def ranked(rank: int, *order: sa.UnaryExpression) -> list[sa.UnaryExpression]:
        # The rank keeps the kinds apart in one order (and in the page's keyset), patient first.
        return [sa.literal(rank).asc(), *order]

    sources = [
        _Source("patient", sa.select(*service.PATIENT_COLUMNS).where(patient.c.id == patient_id,
                                                                     *changed(patient.c.updated_at)),
                ranked(0, patient.c.updated_at.desc(), patient.c.id.desc())),
        _Source("encounter", sa.select(*service.ENCOUNTER_COLUMNS).where(encounter.c.patient_id == patient_id,
                                                                         *changed(encounter.c.updated_at)),
                ranked(1, _encounter_start("encounter").desc(), encounter.c.id.desc())),
        *(_Source(kind, _current(kind, patient_id, *changed(entry.c.recorded_at)),
                  ranked(2 + n, entry.c.occurred_at.desc(), entry.c.root_id.desc()))
          for n, kind in enumerate(EVERYTHING_KINDS)
          if kind not in EVERYTHING_ONLY_WITH or principal.can(EVERYTHING_ONLY_WITH[kind])),
    ]
    found, paged = _page(conn, sources, page)
    notes = _with_operation_notes(conn, found)
    note_access(conn, principal, "read", patient_id, "chart", [*(row["id"] for _, row in found), *notes],
                detail={"interface": "FHIR Patient/$everything"})
    paged.resources = [_patient_resource(conn, row) if kind == "patient" else resources.encounter(row)
                       if kind == "encounter" else _shape(kind, {**row, "patient_id": patient_id}, schedule, conn)
                       for kind, row in found]
    return paged
