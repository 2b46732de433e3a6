"""The discharge summary's pages of the tenant portal: the form a clinician opens from an inpatient stay on
the chart, pre-filled from the record of the stay (`clinical.discharge.draft`), that signs it; the signed
summary as a page to read and print; and its correction, by the clinician who signed it, with a reason.

It keeps the portal's rules (see `portal.py`): each route declares the permission the clinical API
declares for the same act; patient pages pass the care-relationship guard; the record is read and
written only through the clinical layer (`clinical/discharge.py`), which audits each read and write; a
refused form comes back with the message by its field and what was typed kept (422); Post/Redirect/Get.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from litestar import Response, Router, get, post
from litestar.params import FromQuery
from litestar.response import Template
from pydantic import ValidationError
from sqlalchemy.engine import Connection

from appliance.layers.clinical import catalogue, discharge, service
from appliance.layers.clinical.errors import Invalid
from appliance.layers.clinical.schemas import Retraction
from appliance.layers.operations import service as operations
from appliance.substrate.db import Database
from appliance.substrate.principal import Principal
from appliance.substrate.record import RecordError
from appliance.substrate.tenancy import facility_timezone
from appliance.web import portal
from appliance.web.portal import (
    HELPERS,
    PATIENT,
    Asking,
    FormData,
    Id,
    Tenant,
    banner,
    form_values,
    page,
    people_named,
    see_other,
    template_message,
)

portal.NOTICES.update({
    "discharge-signed": "Discharge summary signed. It is on the patient's record and, unless said below, their portal; "
                        "print it below.",
    "discharge-corrected": "Discharge summary corrected; the earlier version stays in its history with your reason.",
    "discharge-withdrawn": "Discharge summary marked entered in error, with your reason; it stays readable in its "
                           "history, and the stay can be summarised again.",
})

FIELDS = [f.key for f in discharge.TEMPLATE.fields]
HINTS = {"diagnoses": "From the diagnoses recorded in this stay; one a line. Check and edit.",
         "results": "The latest of each test taken in this stay. Keep those that matter.",
         "medications": "The medicines active now: what the patient goes home on. Stop any they do not.",
         "allergies": "The active allergies on the record.",
         "follow_up": "e.g. Medical outpatient clinic, in two weeks"}


def ward_names(conn: Connection) -> dict[str, str]:
    """Ward codes as the facility names them (no patient data: the wards and their beds)."""
    return {w["code"]: w["name"] for w in operations.ward_census(conn)}


def _fields_of(values: dict[str, Any]) -> dict[str, Any]:
    return {key: values[key] for key in FIELDS if values.get(key) is not None}


def _errors(exc: RecordError, values: dict[str, Any]) -> dict[str, str]:
    """Every field the template refuses, by field, at once; any other refusal under its own field."""
    field = exc.extra.get("field") or "form"
    if field.startswith("fields."):
        problems = catalogue.note_field_problems(discharge.TEMPLATE, _fields_of(values))
        if problems:
            return {p.extra["field"].removeprefix("fields."): template_message(p.detail) for p in problems}
    return {field.removeprefix("fields."): template_message(exc.detail)}


def _form(request: Asking, tenant: str, patient_id: uuid.UUID, *, stay: dict, values: dict, errors: dict,
          status: int = 200, correcting: dict | None = None, held_back: list[dict] | None = None) -> Template:
    with request.app.state.db.tenant(tenant) as conn:
        top = banner(conn, request.user, patient_id)
        wards = ward_names(conn)
    return page(request, "discharge_form.html", status=status, active="patients", patient_id=patient_id,
                tab="summary", **top, stay=stay, wards=wards, template=discharge.TEMPLATE, values=values,
                errors=errors, hints=HINTS, correcting=correcting, held_back=held_back or [], **HELPERS)


@get(PATIENT + "/discharge-summaries/new", operation_id="PortalDischargeSummaryPage",
     opt={"permission": "clinical.discharge.create"}, sync_to_thread=True, include_in_schema=False)
def new_page(request: Asking, tenant: Tenant, patient_id: Id,
             encounter_id: FromQuery[uuid.UUID | None] = None) -> Response:
    """The form for a stay (`encounter_id`, else the open one, else the latest), pre-filled from its record;
    a stay already summarised opens its summary. A result to be given in person, not given yet, is left out
    of the results, and the form names it and says why."""
    tz = facility_timezone(request.app.state.db, tenant)
    with request.app.state.db.tenant(tenant) as conn:
        draft = discharge.draft(conn, request.user, patient_id, encounter_id, tz=tz,
                                in_person=request.app.state.release_rules.in_person_rule)
    if draft["summary_id"] is not None:
        return see_other(request, f"/t/{tenant}/patients/{patient_id}/discharge-summaries/{draft['summary_id']}")
    return _form(request, tenant, patient_id, stay=draft["stay"], values=draft["fields"], errors={},
                 held_back=draft["held_back"])


@post(PATIENT + "/discharge-summaries", operation_id="PortalSignDischargeSummary",
      opt={"permission": "clinical.discharge.create"}, sync_to_thread=True, include_in_schema=False)
def sign(request: Asking, tenant: Tenant, patient_id: Id, data: FormData) -> Response:
    """Sign the summary; what the template refuses comes back next to its field, with what was typed."""
    values = form_values(data)
    try:
        stay_id = uuid.UUID(str(values.get("encounter_id")))
    except ValueError:
        stay_id = None
    db: Database = request.app.state.db
    try:
        with db.tenant(tenant) as conn:
            if stay_id is None:
                raise Invalid("choose the stay this summary closes", field="encounter_id")
            signed = discharge.sign(conn, request.user, patient_id, stay_id, _fields_of(values))
    except RecordError as exc:
        if exc.status not in (409, 422) or exc.extra.get("field") == "encounter_id":
            raise
        if exc.status == 409:  # signed by someone else meanwhile: theirs is the one in force
            return see_other(request, f"/t/{tenant}/patients/{patient_id}/discharge-summaries/{exc.extra['entry_id']}")
        with db.tenant(tenant) as conn:
            stay = discharge.stay_of(conn, patient_id, stay_id)
        return _form(request, tenant, patient_id, stay=stay, values=values, errors=_errors(exc, values), status=422)
    return see_other(request, f"/t/{tenant}/patients/{patient_id}/discharge-summaries/{signed['id']}"
                              "?done=discharge-signed")


def _summary_page(request: Asking, tenant: str, patient_id: uuid.UUID, entry_id: uuid.UUID, *, status: int = 200,
                  values: dict | None = None, errors: dict | None = None, refusal: str | None = None) -> Template:
    principal: Principal = request.user
    db: Database = request.app.state.db
    with db.tenant(tenant) as conn:
        top = banner(conn, principal, patient_id)
        summary = discharge.get_summary(conn, principal, patient_id, entry_id)
        held = discharge.held_from_portal(conn, principal, patient_id, [summary],
                                          request.app.state.release_rules.in_person_rule)
        wards = ward_names(conn)
    return page(request, "discharge_summary.html", status=status, active="patients", patient_id=patient_id,
                tab="summary", **top, summary=summary, held=bool(held), wards=wards, template=discharge.TEMPLATE,
                iso_date=dt.date.fromisoformat, values=values or {}, errors=errors or {}, refusal=refusal,
                names=people_named(db, {summary["record_author_id"], summary["author_id"]}), **HELPERS)


@get(PATIENT + "/discharge-summaries/{entry_id:uuid}", operation_id="PortalDischargeSummary",
     opt={"permission": "clinical.note.read"}, sync_to_thread=True, include_in_schema=False)
def summary_page(request: Asking, tenant: Tenant, patient_id: Id, entry_id: Id) -> Template:
    """The signed summary as it stands, laid out to print (the print leaves the portal's navigation off)."""
    return _summary_page(request, tenant, patient_id, entry_id)


@post(PATIENT + "/discharge-summaries/{entry_id:uuid}/entered-in-error", operation_id="PortalWithdrawDischargeSummary",
      opt={"permission": "clinical.entry.retract"}, sync_to_thread=True, include_in_schema=False)
def withdraw(request: Asking, tenant: Tenant, patient_id: Id, entry_id: Id, data: FormData) -> Response:
    """Mark the summary entered in error (signed on the wrong patient or stay), with the reason: it leaves the
    chart and the patient's portal, stays readable in its history, and the stay can be summarised again."""
    values = form_values(data)
    try:
        reason = Retraction.model_validate({"reason": values.get("reason") or ""}).reason
    except ValidationError:
        return _summary_page(request, tenant, patient_id, entry_id, status=422, values=values, errors={
            "reason": "Say why the summary is entered in error (at least 3 characters), e.g. signed on the wrong "
                      "patient."})
    with request.app.state.db.tenant(tenant) as conn:
        discharge.get_summary(conn, request.user, patient_id, entry_id)  # a discharge summary of this patient's
        service.retract_entry(conn, request.user, patient_id, entry_id, reason)  # 409 if corrected meanwhile
    return see_other(request, f"/t/{tenant}/patients/{patient_id}/chart?done=discharge-withdrawn")


def _current_values(summary: dict) -> dict[str, Any]:
    return {key: str(value) for key, value in summary["fields"].items()}


@get(PATIENT + "/discharge-summaries/{entry_id:uuid}/correct", operation_id="PortalCorrectDischargeSummaryPage",
     opt={"permission": "clinical.discharge.update"}, sync_to_thread=True, include_in_schema=False)
def correct_page(request: Asking, tenant: Tenant, patient_id: Id, entry_id: Id) -> Template:
    """The summary's form filled with what it says now, to correct with a reason. Another clinician (a link
    passed on, a bookmark) is told on the summary that only its author corrects it, before typing a
    correction that would be refused (409)."""
    with request.app.state.db.tenant(tenant) as conn:
        summary = discharge.get_summary(conn, request.user, patient_id, entry_id)
    try:
        discharge.require_author(request.user, summary)
    except RecordError as refused:
        return _summary_page(request, tenant, patient_id, summary["id"], status=refused.status,
                             refusal=template_message(refused.detail))
    return _form(request, tenant, patient_id, stay=summary["stay"], values=_current_values(summary), errors={},
                 correcting=summary)


@post(PATIENT + "/discharge-summaries/{entry_id:uuid}/correct", operation_id="PortalCorrectDischargeSummary",
      opt={"permission": "clinical.discharge.update"}, sync_to_thread=True, include_in_schema=False)
def correct(request: Asking, tenant: Tenant, patient_id: Id, entry_id: Id, data: FormData) -> Response:
    """A correction by the clinician who signed it, with the reason; refused, it comes back by its field
    with what was typed (a correction by someone else, or of a version since corrected, says so above)."""
    values = form_values(data)
    db: Database = request.app.state.db
    with db.tenant(tenant) as conn:
        summary = discharge.get_summary(conn, request.user, patient_id, entry_id)
    errors: dict[str, str] = {}
    reason = None
    try:
        reason = Retraction.model_validate({"reason": values.get("reason") or ""}).reason
    except ValidationError:
        errors["reason"] = "Say why the summary is corrected (at least 3 characters); it is kept with the correction."
    if reason is not None:
        try:
            with db.tenant(tenant) as conn:
                discharge.correct(conn, request.user, patient_id, entry_id, _fields_of(values), reason)
        except RecordError as exc:
            if exc.status not in (409, 422):
                raise
            errors = _errors(exc, values) if exc.status == 422 else {"form": template_message(exc.detail)}
    if errors:
        return _form(request, tenant, patient_id, stay=summary["stay"], values=values, errors=errors,
                     status=409 if "form" in errors else 422, correcting=summary)
    return see_other(request, f"/t/{tenant}/patients/{patient_id}/discharge-summaries/{entry_id}"
                              "?done=discharge-corrected")


ROUTES = [new_page, sign, summary_page, withdraw, correct_page, correct]

discharge_router = Router(path="/t/{tenant:str}", route_handlers=ROUTES, exception_handlers=portal.EXCEPTION_HANDLERS,
                          guards=[portal.care_relationship_guard], tags=["portal"], include_in_schema=False)
