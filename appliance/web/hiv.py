"""HIV care in the tenant portal: a patient's "HIV care" chart tab — the care card (the enrolment with its ART number,
the regimen history, visits and pick-ups, viral loads with the one due, where the person stands) with the forms a
clinician enrols, starts or changes ART, records a viral load or the status in care with, and a nurse or clinician
records a visit or ARV pick-up with, and marking a record entered in error — and the facility's ART register: every
person by ART number, their status and viral load due, and the people to trace (interruptions in treatment).

It keeps the portal's rules (appliance/web/portal.py): server-rendered, no script, each route declares the
permission the HIV API declares for the same act (`clinical.hiv.read`, `.write`, `.visit`, `.register`; nurses read
and record visits by ACC-032, the register is the clinicians'), patient pages pass the care-relationship guard (a
ward nurse reads the tab of her ward's patients only), forms carry the CSRF token and Post/Redirect/Get, and a
refusal is the page again with its sentence beside the field and everything typed kept (422), nothing written. The
record is read and written only through the clinical layer's `hiv` service, which audits each read and write and
each person the register lists.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from litestar import Response, Router, get, post
from litestar.response import Template
from pydantic import ValidationError
from sqlalchemy.engine import Connection

from appliance.layers.clinical import antenatal, hiv
from appliance.layers.clinical.hiv_routes import programme_of
from appliance.layers.clinical.hiv_schemas import HivEnrolmentIn, HivRegimenIn, HivStatusIn, HivViralLoadIn, HivVisitIn
from appliance.layers.clinical.schemas import Retraction
from appliance.substrate.record import RecordError
from appliance.web import portal
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

READ, WRITE, VISIT, REGISTER = "clinical.hiv.read", "clinical.hiv.write", "clinical.hiv.visit", "clinical.hiv.register"
ANTENATAL_READ = "clinical.antenatal.read"
# Before "Registration", the tab list's last.
portal.CHART_TABS.insert(len(portal.CHART_TABS) - 1, ChartTab("hiv", "HIV care", "/hiv", READ))
portal.NAV.append(NavItem("Clinical", "art-register", "ART register", "/hiv/register", REGISTER))
portal.NOTICES.update({
    "hiv-enrolled": "Enrolled in HIV care, with the facility's next ART number.",
    "hiv-regimen": "Regimen recorded.",
    "hiv-visit": "Visit recorded.",
    "hiv-viral-load": "Viral load recorded.",
    "hiv-status": "Status in care recorded; the earlier version stays in its history.",
    "hiv-withdrawn": "Marked entered in error, with your reason; the register and the national count no longer "
                     "count it.",
})
CHOICES = {
    "tb_screening": list(hiv.TB_SCREENING_WORDS.items()),
    "adherence": list(hiv.ADHERENCE_WORDS.items()),
    "change": [(k, v) for k, v in hiv.CHANGE_WORDS.items() if k != "initiation"],
    "status": [(k, v) for k, v in hiv.CARE_STATUS_WORDS.items()],
    "who_stage": [(str(n), f"Stage {n}") for n in range(1, 5)],
    "indication": list(hiv.INDICATION_WORDS.items()),
}
SUPPRESSION_WORDS = {"undetectable": "Undetectable", "suppressed": "Suppressed", "unsuppressed": "Unsuppressed"}
WORDS = {"status": hiv.STATUS_WORDS, "tb": hiv.TB_SCREENING_WORDS, "adherence": hiv.ADHERENCE_WORDS,
         "change": hiv.CHANGE_WORDS, "suppression": SUPPRESSION_WORDS, "indication": hiv.INDICATION_WORDS}


def _page(request: Asking, tenant: str, patient_id: uuid.UUID, *, status: int = 200, values: dict | None = None,
          errors: dict | None = None, form: str = "") -> Template:
    clock = facility_clock(request, tenant)
    programme = programme_of(request.app.state)
    with request.app.state.db.tenant(tenant) as conn:
        top = banner(conn, request.user, patient_id)
        found = hiv.card(conn, request.user, patient_id, programme=programme, today=clock.today)
        pregnancy = _pregnancy(conn, request, patient_id, top["patient"], clock) if found["care"] else None
    care = found["care"]
    authors = {w["withdrawn_by"] for w in found["withdrawn"]} | ({care["record_author_id"]} if care else set())
    return page(request, "hiv/card.html", status=status, active="patients", patient_id=patient_id, tab="hiv",
                found=found, care=care, pregnancy=pregnancy, regimens=programme.regimen, choices=CHOICES, words=WORDS,
                names=people_named(request.app.state.db, authors), form=form, values=values or {},
                errors=errors or {}, **top, **HELPERS)


def _pregnancy(conn: Connection, request: Asking, patient_id: uuid.UUID, person: dict, clock: Any) -> dict | None:
    """A woman's ongoing pregnancy, as her antenatal card dates it, for a reader of that card (its read noted there):
    the ART clinician sees she is pregnant without leaving the HIV card."""
    if person["sex"] != "female" or not request.user.can(ANTENATAL_READ):
        return None
    ongoing = antenatal.card(conn, request.user, patient_id, today=clock.today, tz=clock.tz, noting_none=False)
    return next((p for p in ongoing["pregnancies"] if p["status"] == "open"), None)


@get(PATIENT + "/hiv", operation_id="PortalHivCard", opt={"permission": READ}, sync_to_thread=True,
     include_in_schema=False)
def card_page(request: Asking, tenant: Tenant, patient_id: Id) -> Template:
    """The person's HIV care card and its forms."""
    return _page(request, tenant, patient_id)


def _write(request: Asking, tenant: str, patient_id: uuid.UUID, values: dict, act: Callable[[Connection], Any],
           done: str, form: str) -> Response:
    """One form's write in a tenant transaction; what the schema or the layer refuses (422, 409) comes back beside
    the field it names with the form as sent; done, the tab with what happened."""
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
        return see_other(request, f"/t/{tenant}/patients/{patient_id}/hiv?done={done}")
    return _page(request, tenant, patient_id, status=422, values=values, errors=errors, form=form)


def _form(route: str, model: Any, service: Callable[..., dict], done: str, form: str, permission: str,
          operation_id: str) -> Any:
    """A POST route of one of the card's forms on an enrolment: the form's fields validated by the API's model and
    written by the service the API calls."""

    @post(PATIENT + "/hiv/{care_id:uuid}/" + route, operation_id=operation_id, opt={"permission": permission},
          sync_to_thread=True, include_in_schema=False)
    def write(request: Asking, tenant: Tenant, patient_id: Id, care_id: Id, data: FormData) -> Response:
        values = form_values(data)
        clock = facility_clock(request, tenant)
        return _write(request, tenant, patient_id, values, lambda conn: service(
            conn, request.user, patient_id, care_id, model.model_validate(filled(values, model.model_fields)),
            programme=programme_of(request.app.state), today=clock.today), done, form)

    write.__doc__ = f"Record the card's {form} form."
    return write


@post(PATIENT + "/hiv", operation_id="PortalEnrolHiv", opt={"permission": WRITE}, sync_to_thread=True,
      include_in_schema=False)
def enrol(request: Asking, tenant: Tenant, patient_id: Id, data: FormData) -> Response:
    """Enrol the person in HIV care."""
    values = form_values(data)
    clock = facility_clock(request, tenant)
    return _write(request, tenant, patient_id, values, lambda conn: hiv.enrol(
        conn, request.user, patient_id, HivEnrolmentIn.model_validate(filled(values, HivEnrolmentIn.model_fields)),
        programme=programme_of(request.app.state), today=clock.today), "hiv-enrolled", "enrol")


regimen = _form("regimens", HivRegimenIn, hiv.change_regimen, "hiv-regimen", "regimen", WRITE,
                "PortalChangeHivRegimen")
visit = _form("visits", HivVisitIn, hiv.record_visit, "hiv-visit", "visit", VISIT, "PortalRecordHivVisit")
viral_load = _form("viral-loads", HivViralLoadIn, hiv.record_viral_load, "hiv-viral-load", "viral-load", WRITE,
                   "PortalRecordHivViralLoad")
status = _form("status", HivStatusIn, hiv.change_status, "hiv-status", "status", WRITE, "PortalChangeHivStatus")


@post(PATIENT + "/hiv/{entry_id:uuid}/entered-in-error", operation_id="PortalWithdrawHiv",
      opt={"permission": WRITE}, sync_to_thread=True, include_in_schema=False)
def withdraw(request: Asking, tenant: Tenant, patient_id: Id, entry_id: Id, data: FormData) -> Response:
    """Mark an enrolment, regimen, visit or viral load entered in error, with the reason."""
    values = form_values(data)
    return _write(request, tenant, patient_id, values, lambda conn: hiv.withdraw(
        conn, request.user, patient_id, entry_id, Retraction.model_validate({"reason": values.get("reason")}).reason),
        "hiv-withdrawn", f"withdraw-{entry_id}")


@get("/hiv/register", operation_id="PortalHivRegister", opt={"permission": REGISTER}, sync_to_thread=True,
     include_in_schema=False)
def register_page(request: Asking, tenant: Tenant) -> Template:
    """The facility's ART register and the people to trace."""
    clock = facility_clock(request, tenant)
    with request.app.state.db.tenant(tenant) as conn:
        listed = hiv.register(conn, request.user, programme=programme_of(request.app.state), today=clock.today)
    return page(request, "hiv/register.html", active="art-register", listed=listed, words=WORDS, **HELPERS)


ROUTES = [card_page, enrol, regimen, visit, viral_load, status, withdraw, register_page]

hiv_router = Router(path="/t/{tenant:str}", route_handlers=ROUTES, exception_handlers=portal.EXCEPTION_HANDLERS,
                    guards=[portal.care_relationship_guard], tags=["portal"], include_in_schema=False)
