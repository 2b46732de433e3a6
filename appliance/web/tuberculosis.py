"""TB in the tenant portal: a patient's "TB" chart tab — the TB treatment card (each treatment's registration, its
follow-up months due from the start, the follow-ups recorded, the outcome), the forms a clinician registers a case
and assigns its outcome with and a nurse or clinician records a follow-up with, and marking one entered in error —
and the facility's TB register of a year: every case by register number, its follow-ups overdue and outcome, and
each quarter's cohort table with treatment success (each case's HIV status only to those who may read the ART
register); a died outcome on the card points to the death certificate, or to certifying it when none is recorded.

It keeps the portal's rules (appliance/web/portal.py): server-rendered, no script, each route declares the
permission the TB API declares for the same act (`clinical.tb.read`, `.write`, `.follow_up`: clinicians, and
nurses for reading and follow-ups, ACC-002 and ACC-027), patient pages pass the care-relationship guard, forms carry
the CSRF token and Post/Redirect/Get, and a refusal is the page again with its sentence beside the field and
everything typed kept (422), nothing written. The record is read and written only through the clinical layer's
`tuberculosis` service, which audits each read and write and each case the register lists. A registration (and
its outcome) is corrected on the card with a reason; correcting a follow-up is the API's (PUT .../tb/follow-ups/{id}):
a mistyped result is withdrawn and recorded again here.
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

from appliance.layers.clinical import tuberculosis
from appliance.layers.clinical.errors import NotFound
from appliance.layers.clinical.schemas import Retraction
from appliance.layers.clinical.tuberculosis_routes import disclosure_threshold_of, regimens_of
from appliance.layers.clinical.tuberculosis_schemas import TbCorrection, TbFollowUpIn, TbOutcomeIn, TbRegistrationIn
from appliance.substrate.record import RecordError
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
    banner,
    facility_clock,
    field_errors,
    filled,
    form_values,
    page,
    people_named,
    see_other,
    template_message,
)

READ, WRITE, FOLLOW_UP = "clinical.tb.read", "clinical.tb.write", "clinical.tb.follow_up"
# Before "Registration", the tab list's last.
portal.CHART_TABS.insert(len(portal.CHART_TABS) - 1, ChartTab("tb", "TB", "/tb", READ))
portal.NAV.append(NavItem("Clinical", "tb-register", "TB register", "/tb/register", READ))
portal.NOTICES.update({
    "tb-registered": "TB case registered on treatment, with the next number of the year's register.",
    "tb-follow-up": "Follow-up recorded.",
    "tb-outcome": "Treatment outcome recorded.",
    "tb-withdrawn": "Marked entered in error, with your reason; the register and the cohort no longer count it.",
    "tb-corrected": "Treatment corrected; the earlier version stays in its history with your reason.",
})
CHOICES = {
    "site": list(tuberculosis.SITE_WORDS.items()),
    "bacteriology": list(tuberculosis.BACTERIOLOGY_WORDS.items()),
    "history": list(tuberculosis.HISTORY_WORDS.items()),
    "hiv_status": list(tuberculosis.HIV_WORDS.items()),
    "outcome": list(tuberculosis.OUTCOME_WORDS.items()),
    "smear": [("not_done", "Not done"), ("negative", "Negative"), ("positive", "Positive")],
    "xpert": [("not_done", "Not done"), ("mtb_not_detected", "MTB not detected"), ("mtb_detected", "MTB detected")],
}
DUE_WORDS = {"done": "Done", "due": "Due", "overdue": "Overdue", "not_yet_due": "Not yet due",
             "not_needed": "Not needed"}
WORDS = {"outcome": tuberculosis.OUTCOME_WORDS, "site": tuberculosis.SITE_WORDS,
         "bacteriology": tuberculosis.BACTERIOLOGY_WORDS, "history": tuberculosis.HISTORY_WORDS,
         "hiv": tuberculosis.HIV_WORDS, "result": tuberculosis.RESULT_WORDS, "due": DUE_WORDS}


def _page(request: Asking, tenant: str, patient_id: uuid.UUID, *, status: int = 200, values: dict | None = None,
          errors: dict | None = None, form: str = "", correcting: uuid.UUID | None = None) -> Template:
    clock = facility_clock(request, tenant)
    regimens = regimens_of(request.app.state)
    with request.app.state.db.tenant(tenant) as conn:
        top = banner(conn, request.user, patient_id)
        found = tuberculosis.card(conn, request.user, patient_id, regimens=regimens, today=clock.today)
    if correcting is not None and not any(t["id"] == correcting for t in found["treatments"]):
        raise NotFound(f"no TB treatment {correcting} in force on this patient's chart", entry_id=str(correcting))
    names = people_named(request.app.state.db, {t["record_author_id"] for t in found["treatments"]}
                         | {w["withdrawn_by"] for w in found["withdrawn"]})
    return page(request, "tb/card.html", status=status, active="patients", patient_id=patient_id, tab="tb",
                found=found, regimens=regimens.regimen, choices=CHOICES, words=WORDS, names=names, form=form,
                correcting=correcting, values=values or {}, errors=errors or {}, **top, **HELPERS)


@get(PATIENT + "/tb", operation_id="PortalTbCard", opt={"permission": READ}, sync_to_thread=True,
     include_in_schema=False)
def card_page(request: Asking, tenant: Tenant, patient_id: Id) -> Template:
    """The patient's TB treatment card and its forms."""
    return _page(request, tenant, patient_id)


def _write(request: Asking, tenant: str, patient_id: uuid.UUID, values: dict, act: Callable[[Connection], Any],
           done: str, form: str, *, correcting: uuid.UUID | None = None) -> Response:
    """One form's write in a tenant transaction; what the schema or the layer refuses (422) comes back beside the
    field it names with the form as sent; done, the tab with what happened."""
    try:
        with request.app.state.db.tenant(tenant) as conn:
            act(conn)
    except ValidationError as exc:
        errors = field_errors(exc)
    except RecordError as exc:
        if exc.status not in (409, 422):
            raise
        errors = {exc.extra.get("field") or "form": template_message(exc.detail)}
    else:
        return see_other(request, f"/t/{tenant}/patients/{patient_id}/tb?done={done}")
    return _page(request, tenant, patient_id, status=422, values=values, errors=errors, form=form,
                 correcting=correcting)


@post(PATIENT + "/tb", operation_id="PortalRegisterTb", opt={"permission": WRITE}, sync_to_thread=True,
      include_in_schema=False)
def register(request: Asking, tenant: Tenant, patient_id: Id, data: FormData) -> Response:
    """Register a TB case on treatment."""
    values = form_values(data)
    clock = facility_clock(request, tenant)
    return _write(request, tenant, patient_id, values, lambda conn: tuberculosis.register(
        conn, request.user, patient_id, TbRegistrationIn.model_validate(filled(values, TbRegistrationIn.model_fields)),
        regimens=regimens_of(request.app.state), today=clock.today), "tb-registered", "register")


@post(PATIENT + "/tb/{treatment_id:uuid}/follow-ups", operation_id="PortalRecordTbFollowUp",
      opt={"permission": FOLLOW_UP}, sync_to_thread=True, include_in_schema=False)
def follow_up(request: Asking, tenant: Tenant, patient_id: Id, treatment_id: Id, data: FormData) -> Response:
    """Record a follow-up of the treatment."""
    values = form_values(data)
    clock = facility_clock(request, tenant)
    return _write(request, tenant, patient_id, values, lambda conn: tuberculosis.record_follow_up(
        conn, request.user, patient_id, treatment_id,
        TbFollowUpIn.model_validate(filled(values, TbFollowUpIn.model_fields)),
        regimens=regimens_of(request.app.state), today=clock.today), "tb-follow-up", f"follow-up-{treatment_id}")


@post(PATIENT + "/tb/{treatment_id:uuid}/outcome", operation_id="PortalRecordTbOutcome", opt={"permission": WRITE},
      sync_to_thread=True, include_in_schema=False)
def outcome(request: Asking, tenant: Tenant, patient_id: Id, treatment_id: Id, data: FormData) -> Response:
    """Assign the treatment's outcome; one the WHO definitions refuse comes back beside the field with the rule."""
    values = form_values(data)
    clock = facility_clock(request, tenant)
    return _write(request, tenant, patient_id, values, lambda conn: tuberculosis.record_outcome(
        conn, request.user, patient_id, treatment_id,
        TbOutcomeIn.model_validate(filled(values, TbOutcomeIn.model_fields)),
        regimens=regimens_of(request.app.state), today=clock.today), "tb-outcome", f"outcome-{treatment_id}")


_CORRECTED = ("started_on", "site", "bacteriology", "history", "regimen", "hiv_status", "weight_kg", "note", "outcome",
              "outcome_on")


@get(PATIENT + "/tb/{treatment_id:uuid}/correct", operation_id="PortalCorrectTbForm", opt={"permission": WRITE},
     sync_to_thread=True, include_in_schema=False)
def correct_form(request: Asking, tenant: Tenant, patient_id: Id, treatment_id: Id) -> Template:
    """The form to correct a treatment's registration and outcome, filled with the version in force (a version
    replaced since, or a guessed id, is 404)."""
    clock = facility_clock(request, tenant)
    with request.app.state.db.tenant(tenant) as conn:
        found = tuberculosis.card(conn, request.user, patient_id, regimens=regimens_of(request.app.state),
                                  today=clock.today)
    treatment = next((t for t in found["treatments"] if t["id"] == treatment_id), None)
    if treatment is None:
        raise NotFound(f"no TB treatment {treatment_id} in force on this patient's chart", entry_id=str(treatment_id))
    values = {k: "" if treatment[k] is None else str(treatment[k]) for k in _CORRECTED}
    return _page(request, tenant, patient_id, values=values, form="correct", correcting=treatment_id)


@post(PATIENT + "/tb/{treatment_id:uuid}", operation_id="PortalCorrectTb", opt={"permission": WRITE},
      sync_to_thread=True, include_in_schema=False)
def correct(request: Asking, tenant: Tenant, patient_id: Id, treatment_id: Id, data: FormData) -> Response:
    """A corrected version of the treatment, with the reason; the outcome rules apply to the corrected outcome."""
    values = form_values(data)
    clock = facility_clock(request, tenant)
    sent = {**filled(values, TbCorrection.model_fields), "version_id": treatment_id}
    return _write(request, tenant, patient_id, values, lambda conn: tuberculosis.correct_treatment(
        conn, request.user, patient_id, treatment_id, TbCorrection.model_validate(sent),
        regimens=regimens_of(request.app.state), today=clock.today), "tb-corrected", "correct",
        correcting=treatment_id)


@post(PATIENT + "/tb/{entry_id:uuid}/entered-in-error", operation_id="PortalWithdrawTb", opt={"permission": WRITE},
      sync_to_thread=True, include_in_schema=False)
def withdraw(request: Asking, tenant: Tenant, patient_id: Id, entry_id: Id, data: FormData) -> Response:
    """Mark a registration or a follow-up entered in error, with the reason."""
    values = form_values(data)
    return _write(request, tenant, patient_id, values, lambda conn: tuberculosis.withdraw(
        conn, request.user, patient_id, entry_id, Retraction.model_validate({"reason": values.get("reason")}).reason),
        "tb-withdrawn", f"withdraw-{entry_id}")


@get("/tb/register", operation_id="PortalTbRegister", opt={"permission": READ}, sync_to_thread=True,
     include_in_schema=False)
def register_page(request: Asking, tenant: Tenant,
                  year: Annotated[str, QueryParameter(name="year")] = "") -> Template | Response:
    """The facility's TB register of a year and its quarterly cohorts."""
    clock = facility_clock(request, tenant)
    year = year.strip()
    if year and not (year.isdigit() and 2000 <= int(year) <= clock.today.year):
        return error_page(request, 400, f"show a year's register from 2000 to {clock.today.year}; the address asked "
                                        f"for {year[:20]!r}")
    with request.app.state.db.tenant(tenant) as conn:
        listed = tuberculosis.register_of_year(conn, request.user, int(year) if year else clock.today.year,
                                               regimens=regimens_of(request.app.state), today=clock.today,
                                               threshold=disclosure_threshold_of(request.app.state))
    return page(request, "tb/register.html", active="tb-register", listed=listed, words=WORDS,
                outcomes=tuberculosis.OUTCOME_WORDS, years=range(clock.today.year, clock.today.year - 5, -1),
                **HELPERS)


ROUTES = [card_page, register, follow_up, outcome, correct_form, correct, withdraw, register_page]

tb_router = Router(path="/t/{tenant:str}", route_handlers=ROUTES, exception_handlers=portal.EXCEPTION_HANDLERS,
                   guards=[portal.care_relationship_guard], tags=["portal"], include_in_schema=False)
