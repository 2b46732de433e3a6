"""Patient safety incident pages of the tenant portal, under `/t/{tenant}/incidents`: "Report an incident" (a short
form every member of staff finds in the navigation of every facility page, made to be filled on a phone), "My
reports" (the reporter's own named reports and their status), and the quality manager's list and review
(appliance/layers/operations/incidents.py, which audits every write and every read of a report naming a patient).

The portal's rules hold: server-rendered, no script, forms carry the CSRF token and Post/Redirect/Get, a refusal is
the form again with the sentence beside its field (422, 409). Naming a patient is by MRN, and only a patient in the
reporter's care here (the clinical layer's care relationship, registered with the operations layer below): the
same refusal for an MRN of nobody and of someone not theirs. No chart page shows an incident.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from litestar import Response, Router, get, post
from litestar.response import Template
from pydantic import ValidationError
from sqlalchemy.engine import Connection

from appliance.layers.clinical import access
from appliance.layers.operations import incidents
from appliance.layers.operations.errors import Invalid
from appliance.layers.operations.schemas import IncidentIn, ReviewEventIn
from appliance.substrate.principal import Principal
from appliance.substrate.record import RecordError
from appliance.substrate.tenancy import facility_timezone
from appliance.web import portal
from appliance.web.portal import Asking, FormData, Id, Query, Tenant, field_errors, form_values, page, see_other


def _in_care(conn: Connection, principal: Principal, patient_id: uuid.UUID) -> bool:
    """Who may name a patient in a report: someone who may read the patient and is in their care here."""
    return principal.can("clinical.patient.read") and access.has_care_relationship(conn, principal, patient_id)


def _waiting(db: Any, tenant: str) -> int:
    with db.tenant(tenant) as conn:
        return incidents.immediate_review_count(conn)


incidents.register_patient_reader(_in_care)
portal.NAV.extend([
    # The quality manager's list first: where their "my facility" lands.
    portal.NavItem("Safety", "incident-review", "Incident reviews", "/incidents", incidents.REVIEW_PERMISSION,
                   badge=_waiting),
    portal.NavItem("Safety", "incident-report", "Report an incident", "/incidents/new", incidents.REPORT_PERMISSION,
                   lands=False),
    portal.NavItem("Safety", "incident-mine", "My reports", "/incidents/mine", incidents.REPORT_PERMISSION,
                   lands=False),
])
portal.NOTICES.update({
    "incident-reported": "Thank you: your report is with the quality manager. Its status is under My reports.",
    "incident-reported-anonymously": "Thank you: your anonymous report is with the quality manager. It keeps no "
                                     "name, so it is not under My reports.",
    "incident-reviewed": "Added to the review; the earlier entries stay as they were.",
})
OPTS = {"care_relationship": False}


def _opts(permission: str) -> dict:
    return {"permission": permission, **OPTS}


def _words() -> dict:
    return {"types": incidents.INCIDENT_TYPES, "outcomes": incidents.OUTCOMES, "harm": incidents.HARM_WORDS,
            "factors": incidents.CONTRIBUTING_FACTORS, "statuses": incidents.STATUSES}


# -- the report ------------------------------------------------------------------------------------------


def _report_form(request: Asking, tenant: str, *, status: int = 200, values: dict | None = None,
                 errors: dict | None = None) -> Template:
    with request.app.state.db.tenant(tenant) as conn:
        wards = incidents.wards(conn)
    clock = portal.facility_clock(request, tenant)
    values = values or {"occurred_at": dt.datetime.now(clock.tz).strftime("%Y-%m-%dT%H:%M")}
    return page(request, "incidents/report.html", status=status, active="incident-report", wards=wards,
                values=values, errors=errors or {}, **_words())


@get("/incidents/new", operation_id="PortalIncidentForm", opt=_opts(incidents.REPORT_PERMISSION), sync_to_thread=True,
     include_in_schema=False)
def report_form(request: Asking, tenant: Tenant) -> Template:
    """The report: when, where, what kind, what happened, the harm or a near miss, what was done; a patient and
    anonymity optional."""
    return _report_form(request, tenant)


def _occurred_at(value: str | None, tz) -> dt.datetime:
    if not value:
        raise Invalid("give the day and time it happened", field="occurred_at")
    try:
        return dt.datetime.fromisoformat(value).replace(tzinfo=tz)
    except ValueError:
        raise Invalid("give the day and time it happened (as the clock read it)", field="occurred_at") from None


@post("/incidents/new", operation_id="PortalReportIncident", opt=_opts(incidents.REPORT_PERMISSION),
      sync_to_thread=True, include_in_schema=False)
def report(request: Asking, tenant: Tenant, data: FormData) -> Response:
    values = form_values(data)
    tz = facility_timezone(request.app.state.db, tenant)
    try:
        with request.app.state.db.tenant(tenant) as conn:
            patient_id = (incidents.patient_by_mrn(conn, request.user, values["patient_mrn"])
                          if values.get("patient_mrn") else None)
            asked = IncidentIn.model_validate({
                "occurred_at": _occurred_at(values.get("occurred_at"), tz), "ward_code": values.get("ward_code"),
                "incident_type": values.get("incident_type"), "description": values.get("description"),
                "outcome": values.get("outcome"), "immediate_action": values.get("immediate_action"),
                "patient_id": patient_id, "anonymous": values.get("anonymous") == "yes"})
            incidents.report(conn, request.user, asked)
    except ValidationError as exc:
        return _report_form(request, tenant, status=422, values=values, errors=field_errors(exc))
    except RecordError as exc:
        if exc.status != 422:
            raise
        field = exc.extra.get("field") or "form"
        return _report_form(request, tenant, status=422, values=values,
                            errors={"patient_mrn" if field == "patient_id" else field: _sentence(exc.detail)})
    done = "incident-reported-anonymously" if asked.anonymous else "incident-reported"
    return see_other(request, f"/t/{tenant}/incidents/{'new' if asked.anonymous else 'mine'}?done={done}")


def _sentence(detail: str) -> str:
    detail = detail[0].upper() + detail[1:]
    return detail if detail.endswith(".") else detail + "."


@get("/incidents/mine", operation_id="PortalMyIncidents", opt=_opts(incidents.REPORT_PERMISSION),
     sync_to_thread=True, include_in_schema=False)
def mine(request: Asking, tenant: Tenant) -> Template:
    """The reporter's own named reports and where each stands."""
    with request.app.state.db.tenant(tenant) as conn:
        rows = incidents.my_reports(conn, request.user)
    return page(request, "incidents/mine.html", active="incident-mine", reports=rows, **_words())


# -- the quality manager's list and review --------------------------------------------------------------------


@get("/incidents", operation_id="PortalIncidentReviews", opt=_opts(incidents.REVIEW_PERMISSION), sync_to_thread=True,
     include_in_schema=False)
def review_list(request: Asking, tenant: Tenant, status: Query = "", incident_type: Query = "", outcome: Query = "",
                ward_code: Query = "", month: Query = "") -> Template:
    """Every report, those for immediate review on top; filters by status, type, harm, ward and month."""
    tz = facility_timezone(request.app.state.db, tenant)
    asked = {"status": status.strip(), "incident_type": incident_type.strip(), "outcome": outcome.strip(),
             "ward_code": ward_code.strip(), "month": month.strip()}
    with request.app.state.db.tenant(tenant) as conn:
        wards = incidents.wards(conn)
        rows = incidents.review_list(conn, tz, **{k: v or None for k, v in asked.items()})
    return page(request, "incidents/list.html", active="incident-review", reports=rows, wards=wards, values=asked,
                **_words())


def _incident_page(request: Asking, tenant: str, incident_id: uuid.UUID, *, status: int = 200,
                   values: dict | None = None, errors: dict | None = None, form: str = "") -> Template:
    with request.app.state.db.tenant(tenant) as conn:
        found = incidents.get(conn, request.user, incident_id)
    return page(request, "incidents/incident.html", status=status,
                active="incident-review" if request.user.can(incidents.REVIEW_PERMISSION) else "incident-mine",
                incident=found, values=values or {}, errors=errors or {}, form=form, **_words())


@get("/incidents/{incident_id:uuid}", operation_id="PortalIncident", opt=_opts(incidents.REPORT_PERMISSION),
     sync_to_thread=True, include_in_schema=False)
def incident_page(request: Asking, tenant: Tenant, incident_id: Id) -> Template:
    """One report: whole, with its review and the review's forms, to the quality manager; to its reporter, the
    report, its status and, once closed, what was learned."""
    return _incident_page(request, tenant, incident_id)


@post("/incidents/{incident_id:uuid}/review", operation_id="PortalReviewIncident",
      opt=_opts(incidents.REVIEW_PERMISSION), sync_to_thread=True, include_in_schema=False)
def review(request: Asking, tenant: Tenant, incident_id: Id, data: FormData) -> Response:
    """One review event from one of the page's forms (`kind`): refused, the page again with the sentence beside
    the field of that form."""
    values = form_values(data)
    kind = values.get("kind") or ""
    factors = values.get("f.factors") or []
    try:
        asked = ReviewEventIn.model_validate({
            "kind": kind, "note": values.get("note"), "factors": factors if isinstance(factors, list) else [factors],
            "action": values.get("action"), "action_owner": values.get("action_owner"),
            "action_due": values.get("action_due"), "harm": values.get("harm")})
        with request.app.state.db.tenant(tenant) as conn:
            incidents.add_review(conn, request.user, incident_id, asked)
    except ValidationError as exc:
        errors = {("factors" if key.isdigit() else key): message for key, message in field_errors(exc).items()}
        return _incident_page(request, tenant, incident_id, status=422, values=values, errors=errors, form=kind)
    except RecordError as exc:
        if exc.status not in (409, 422):
            raise
        return _incident_page(request, tenant, incident_id, status=exc.status, values=values,
                              errors={exc.extra.get("field") or "form": _sentence(exc.detail)}, form=kind)
    return see_other(request, f"/t/{tenant}/incidents/{incident_id}?done=incident-reviewed")


ROUTES = [report_form, report, mine, review_list, incident_page, review]

incidents_router = Router(path="/t/{tenant:str}", route_handlers=ROUTES, exception_handlers=portal.EXCEPTION_HANDLERS,
                          tags=["portal"], include_in_schema=False)
