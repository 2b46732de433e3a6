"""Family planning in the tenant portal: a client's "Family planning" chart tab — her current method, the implants
and IUDs in place, when her next re-supply, injection or replacement is due (overdue flagged), the form a nurse
records a visit with (a method provided, or a device removed), and the visits with their corrections and those
marked entered in error — and the facility's list of clients due this week or overdue, the list a nurse traces
defaulters from.

It keeps the portal's rules (appliance/web/portal.py): server-rendered, no script, each route declares the
permission the family planning API declares for the same act (`clinical.family_planning.read` / `.write`:
clinicians and nurses, ACC-002 and ACC-030), patient pages pass the care-relationship guard, forms carry the CSRF
token and Post/Redirect/Get, and a refusal is the page again with its sentence beside the field and everything
typed kept (422), nothing written. The record is read and written only through the clinical layer's
`family_planning` service, which audits each read and write and each client the list names.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Annotated, Any

from litestar import Response, Router, get, post
from litestar.params import QueryParameter
from litestar.response import Template
from pydantic import ValidationError
from sqlalchemy.engine import Connection

from appliance.layers.clinical import family_planning
from appliance.layers.clinical.errors import NotFound
from appliance.layers.clinical.family_planning_policy import CLASS_WORDS, CLIENT_TYPES, REMOVAL_REASONS
from appliance.layers.clinical.family_planning_routes import programme_of
from appliance.layers.clinical.family_planning_schemas import FamilyPlanningAmend, FamilyPlanningIn
from appliance.layers.clinical.schemas import Retraction
from appliance.substrate.principal import Principal
from appliance.substrate.record import RecordError, note_access
from appliance.web import portal
from appliance.web.errors import error_page
from appliance.web.portal import (
    HELPERS,
    PATIENT,
    Asking,
    ChartTab,
    FormData,
    Id,
    NavItem,
    Tenant,
    TimelineSource,
    banner,
    facility_clock,
    field_errors,
    form_values,
    page,
    people_named,
    see_other,
    template_message,
)

READ, WRITE = "clinical.family_planning.read", "clinical.family_planning.write"
# Before "Registration", the tab list's last.
portal.CHART_TABS.insert(len(portal.CHART_TABS) - 1,
                         ChartTab("family-planning", "Family planning", "/family-planning", READ))
portal.NAV.append(NavItem("Clinical", "family-planning", "FP clients due", "/family-planning/due", READ))
portal.NOTICES.update({
    "fp-recorded": "Family planning visit recorded.",
    "fp-corrected": "Visit corrected; the earlier version stays in its history with your reason.",
    "fp-withdrawn": "Visit marked entered in error, with your reason; it no longer counts.",
})
FIELDS = ["method", "service", "quantity", "client_type", "removal_reason", "counselled", "given_on", "note"]
CHOICES = {
    "service": [("provided", "Method provided"), ("removal", "Implant or IUD removed")],
    "client_type": [(k, v[0].upper() + v[1:]) for k, v in CLIENT_TYPES.items()],
    "removal_reason": [(k, v[0].upper() + v[1:]) for k, v in REMOVAL_REASONS.items()],
}
STATE_WORDS = {"not_yet_due": "Not yet due", "due": "Due", "overdue": "Overdue", "lost": "Lost to follow-up"}
DUE_STATES = ("due", "overdue")


def _timeline_visits(conn: Connection, principal: Principal, patient_id: uuid.UUID) -> list[dict]:
    rows = family_planning.current_visits(conn, [patient_id])
    note_access(conn, principal, "read", patient_id, family_planning.KIND, [r["id"] for r in rows])
    return rows


def _timeline_words(row: dict) -> tuple[str, str]:
    if row["service"] == "removal":
        return f"Family planning: {row['method']} removed", REMOVAL_REASONS[row["removal_reason"]]
    return f"Family planning: {row['method']} × {row['quantity']}", CLIENT_TYPES[row["client_type"]]


# On the patient's timeline at the visit's own day: a correction may correct the day, so not the first version's.
portal.TIMELINE_SOURCES.append(TimelineSource("clinical", family_planning.KIND, "Family planning", READ,
                                              _timeline_visits, _timeline_words, lambda row: row["occurred_at"]))


def _page(request: Asking, tenant: str, patient_id: uuid.UUID, *, status: int = 200, values: dict | None = None,
          errors: dict | None = None, form: str = "visit", correcting: dict | None = None) -> Template:
    clock = facility_clock(request, tenant)
    programme = programme_of(request.app.state)
    with request.app.state.db.tenant(tenant) as conn:
        top = banner(conn, request.user, patient_id)
        found = family_planning.patient_family_planning(conn, request.user, patient_id, programme=programme,
                                                        today=clock.today, tz=clock.tz)
    names = people_named(request.app.state.db, {v["author_id"] for v in found["visits"]}
                         | {w["withdrawn_by"] for w in found["withdrawn"]})
    return page(request, "family_planning/family_planning.html", status=status, active="patients",
                patient_id=patient_id, tab="family-planning", found=found, programme=programme,
                state_words=STATE_WORDS, class_words=CLASS_WORDS, client_types=CLIENT_TYPES,
                removal_reasons=REMOVAL_REASONS, choices=CHOICES, names=names, form=form, correcting=correcting,
                values=values or {"given_on": clock.today.isoformat(), "service": "provided", "quantity": "1"},
                errors=errors or {}, **top, **HELPERS)


@get(PATIENT + "/family-planning", operation_id="PortalFamilyPlanning", opt={"permission": READ},
     sync_to_thread=True, include_in_schema=False)
def family_planning_page(request: Asking, tenant: Tenant, patient_id: Id) -> Template:
    """The client's current method and next due day, the form to record a visit, and the visits."""
    return _page(request, tenant, patient_id)


def _visit_in(values: dict, model: type[FamilyPlanningIn] = FamilyPlanningIn) -> FamilyPlanningIn:
    sent = {k: v for k, v in values.items() if k in [*FIELDS, "reason"] and v not in ("", None)}
    sent["counselled"] = values.get("counselled") == "yes"  # an unticked box sends nothing
    if sent.get("service") == "removal":  # the form shows every field; a removal's provision fields mean nothing
        sent.pop("quantity", None)
        sent.pop("client_type", None)
    return model.model_validate(sent)


def _write(request: Asking, tenant: str, patient_id: uuid.UUID, values: dict, act: Callable[[Connection], Any],
           done: str, *, form: str = "visit", correcting: dict | None = None) -> Response:
    """One form's write in a tenant transaction; what the schema or the layer refuses (422) comes back beside the
    field it names with the form as sent; done, the tab with what happened."""
    try:
        with request.app.state.db.tenant(tenant) as conn:
            act(conn)
    except ValidationError as exc:
        errors = field_errors(exc)  # a rule across fields (what a removal carries) is the form's: "form"
    except RecordError as exc:
        if exc.status != 422:
            raise
        errors = {exc.extra.get("field") or "form": template_message(exc.detail)}
    else:
        return see_other(request, f"/t/{tenant}/patients/{patient_id}/family-planning?done={done}")
    return _page(request, tenant, patient_id, status=422, values=values, errors=errors, form=form,
                 correcting=correcting)


@post(PATIENT + "/family-planning", operation_id="PortalRecordFamilyPlanning", opt={"permission": WRITE},
      sync_to_thread=True, include_in_schema=False)
def record_visit(request: Asking, tenant: Tenant, patient_id: Id, data: FormData) -> Response:
    """Record a visit: a method provided, or an implant or IUD removed."""
    values = form_values(data)
    clock = facility_clock(request, tenant)
    return _write(request, tenant, patient_id, values, lambda conn: family_planning.record_visit(
        conn, request.user, patient_id, _visit_in(values), programme=programme_of(request.app.state),
        today=clock.today, tz=clock.tz), "fp-recorded")


@get(PATIENT + "/family-planning/{entry_id:uuid}/correct", operation_id="PortalCorrectFamilyPlanningForm",
     opt={"permission": WRITE}, sync_to_thread=True, include_in_schema=False)
def correct_form(request: Asking, tenant: Tenant, patient_id: Id, entry_id: Id) -> Template:
    """The form to correct a visit, filled with it as it stands (a guessed id or a replaced version: 404)."""
    clock = facility_clock(request, tenant)
    with request.app.state.db.tenant(tenant) as conn:
        found = family_planning.patient_family_planning(conn, request.user, patient_id,
                                                        programme=programme_of(request.app.state),
                                                        today=clock.today, tz=clock.tz)
    visit = next((v for v in found["visits"] if v["id"] == entry_id), None)
    if visit is None:
        raise NotFound(f"no family planning visit {entry_id} in force on this patient's chart",
                                       entry_id=str(entry_id))
    values = {k: ("" if visit.get(k) is None else str(visit[k])) for k in FIELDS}
    values["given_on"] = visit["given_on"].isoformat()
    values["counselled"] = "yes" if visit["counselled"] else ""
    return _page(request, tenant, patient_id, values=values, form="correct", correcting=visit)


@post(PATIENT + "/family-planning/{entry_id:uuid}", operation_id="PortalCorrectFamilyPlanning",
      opt={"permission": WRITE}, sync_to_thread=True, include_in_schema=False)
def correct_visit(request: Asking, tenant: Tenant, patient_id: Id, entry_id: Id, data: FormData) -> Response:
    """A corrected version of the visit, with the reason; the earlier one stays in its history."""
    values = form_values(data)
    clock = facility_clock(request, tenant)

    def act(conn: Connection) -> dict:
        amended = _visit_in(values, FamilyPlanningAmend)
        return family_planning.correct_visit(conn, request.user, patient_id, entry_id, amended, amended.reason,
                                             programme=programme_of(request.app.state), today=clock.today,
                                             tz=clock.tz)

    return _write(request, tenant, patient_id, values, act, "fp-corrected", form="correct",
                  correcting={"id": entry_id})


@post(PATIENT + "/family-planning/{entry_id:uuid}/entered-in-error", operation_id="PortalWithdrawFamilyPlanning",
      opt={"permission": WRITE}, sync_to_thread=True, include_in_schema=False)
def withdraw_visit(request: Asking, tenant: Tenant, patient_id: Id, entry_id: Id, data: FormData) -> Response:
    """Mark a visit entered in error, with the reason."""
    values = form_values(data)
    return _write(request, tenant, patient_id, values, lambda conn: family_planning.withdraw_visit(
        conn, request.user, patient_id, entry_id, Retraction.model_validate({"reason": values.get("reason")}).reason),
        "fp-withdrawn", form=f"withdraw-{entry_id}")


@get("/family-planning/due", operation_id="PortalFamilyPlanningDue", opt={"permission": READ},
     sync_to_thread=True, include_in_schema=False)
def clients_due(request: Asking, tenant: Tenant,
                only: Annotated[str, QueryParameter(name="state")] = "") -> Template | Response:
    """The facility's clients due back this week or overdue, the most overdue first; `?state=` keeps one."""
    only = only.strip()
    if only and only not in DUE_STATES:
        return error_page(request, 400, f"show the clients due, overdue or both; the address asked for {only[:40]!r}")
    clock = facility_clock(request, tenant)
    with request.app.state.db.tenant(tenant) as conn:
        listed = family_planning.due_list(conn, request.user, programme=programme_of(request.app.state),
                                          today=clock.today, tz=clock.tz, only=only or None)
    return page(request, "family_planning/due.html", active="family-planning", listed=listed, only=only,
                states=DUE_STATES, state_words=STATE_WORDS, **HELPERS)


ROUTES = [family_planning_page, record_visit, correct_form, correct_visit, withdraw_visit, clients_due]

family_planning_router = Router(path="/t/{tenant:str}", route_handlers=ROUTES,
                                exception_handlers=portal.EXCEPTION_HANDLERS,
                                guards=[portal.care_relationship_guard], tags=["portal"], include_in_schema=False)
