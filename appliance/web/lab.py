"""The laboratory bench in the tenant portal, under `/t/{tenant}/lab`: the facility's open lab orders (those
still to work first, STAT then the oldest), filtered by state, with a button to receive each one's specimen,
the form to enter the results of its test's components once received, and a form to correct a result, waiting
for sign-off or signed off (the orders signed off of late have their own tab).

It keeps the portal's rules (appliance/web/portal.py): server-rendered, no script, each route declares the
permission the laboratory API declares for the same act (ACC-021's `clinical.lab.*`), forms carry the CSRF
token and Post/Redirect/Get, and a refusal is the page again with its sentence at the top and beside the
component at fault, everything typed kept (409, 422), nothing written. The record is read and written only
through the clinical layer's `lab` service, which audits each patient listed and each act. No page here is
a patient's: the bench shows name, MRN, sex and age beside the test, and links to no chart (a laboratory
technician may open none; a clinician finds the chart from their own pages).
"""

from __future__ import annotations

from typing import Annotated

from litestar import Response, Router, get, post
from litestar.params import QueryParameter
from litestar.response import Template
from pydantic import ValidationError

from appliance.layers.clinical import lab, service
from appliance.layers.clinical.schemas import BenchResultsIn, ResultCorrectionIn, SpecimenRejectionIn
from appliance.substrate.tenancy import facility_today
from appliance.web import portal
from appliance.web.bench import BenchPage
from appliance.web.errors import error_page
from appliance.web.portal import (
    HELPERS,
    Asking,
    FormData,
    Id,
    Tenant,
    form_values,
    page,
    people_named,
)

portal.NAV.append(portal.NavItem("Laboratory", "lab", "Lab worklist", "/lab", "clinical.lab.read"))
portal.NOTICES.update({
    "specimen-received": "Specimen received: the order waits for its results.",
    "specimen-rejected": "Specimen rejected: the order waits for another, and the ward is asked to collect it.",
    "lab-resulted": "Results recorded; they wait for the clinician's review and sign-off.",
    "lab-resulted-critical": "Results recorded, and at least one is critical (flagged Critical low or Critical high "
                             "under Resulted): it heads every clinician's Results to review, but a list is not a call: "
                             "telephone the clinician who ordered it, or the ward, now.",
    "lab-corrected": "Result corrected; the corrected value waits for review again, the earlier one kept in its "
                     "history.",
    "lab-corrected-critical": "Result corrected, and the corrected value is critical (flagged Critical low or "
                              "Critical high): it heads every clinician's Results to review, but a list is not a "
                              "call: telephone the clinician who ordered it, or the ward, now.",
})


def _worklist_page(request: Asking, tenant: str, state: str | None = None, *, status: int = 200,
                   refusal: str | None = None, form: str = "", values: dict | None = None,
                   errors: dict | None = None) -> Template:
    with request.app.state.db.tenant(tenant) as conn:
        listed = lab.worklist(conn, request.user, today=facility_today(request.app.state.db, tenant), state=state)
    names = people_named(request.app.state.db, {o["ordered_by"] for o in listed["orders"]}
                         | {o["received_by"] for o in listed["orders"]})
    return page(request, "lab/worklist.html", status=status, active="lab", listed=listed, state=state,
                states=lab.LISTS, state_words=lab.STATE_WORDS, names=names, refusal=refusal, form=form,
                window_days=lab.BENCH_WINDOW_DAYS, resulted_days=lab.RESULTED_SHOWN_DAYS,
                values=values or {}, errors=errors or {}, **HELPERS)


@get("/lab", operation_id="PortalLabWorklist", opt={"permission": "clinical.lab.read"}, sync_to_thread=True,
     include_in_schema=False)
def worklist_page(request: Asking, tenant: Tenant,
                  order_state: Annotated[str, QueryParameter(name="state")] = "") -> Template | Response:
    """The facility's open lab orders; `?state=` keeps awaiting_specimen, specimen_received or resulted, or lists
    those signed off of late."""
    state = order_state.strip()
    if state and state not in lab.LISTS:
        return error_page(request, 400, f"show the orders {', '.join(lab.STATE_WORDS[s].lower() for s in lab.LISTS)}"
                                        f" or all of them; the address asked for {state[:40]!r}")
    return _worklist_page(request, tenant, state or None)


PAGE = BenchPage("/lab", lab.LISTS, _worklist_page)


@post("/lab/orders/{order_id:uuid}/receipt", operation_id="PortalLabReceiveSpecimen",
      opt={"permission": "clinical.lab.receive"}, sync_to_thread=True, include_in_schema=False)
def receive(request: Asking, tenant: Tenant, order_id: Id, data: FormData) -> Response:
    values = form_values(data)
    note = values.get("note")
    if isinstance(note, str) and len(note) > 500:
        return _worklist_page(request, tenant, PAGE.tab(values), status=422,
                              refusal="Say the specimen's state in at most 500 characters.")
    return PAGE.act(request, tenant, lambda conn: lab.receive_specimen(
                        conn, request.user, order_id, note=note, today=facility_today(request.app.state.db, tenant)),
                    "specimen-received", values=values)


@post("/lab/orders/{order_id:uuid}/rejection", operation_id="PortalLabRejectSpecimen",
      opt={"permission": "clinical.lab.receive"}, sync_to_thread=True, include_in_schema=False)
def reject(request: Asking, tenant: Tenant, order_id: Id, data: FormData) -> Response:
    """The specimen cannot be tested: why, beside the field; the ward is asked for another."""
    return PAGE.undo(request, tenant, form_values(data), SpecimenRejectionIn, lambda conn, reason: lab.reject_specimen(
        conn, request.user, order_id, reason=reason, today=facility_today(request.app.state.db, tenant)),
                     "specimen-rejected", form=f"reject-{order_id}")


@post("/lab/orders/{order_id:uuid}/results", operation_id="PortalLabEnterResults",
      opt={"permission": "clinical.lab.result"}, sync_to_thread=True, include_in_schema=False)
def enter_results(request: Asking, tenant: Tenant, order_id: Id, data: FormData) -> Response:
    """Every component typed, recorded together or not at all; a component left blank was not done."""
    values = form_values(data)
    form = f"results-{order_id}"
    given = [{"code": key.removeprefix("v."), "value": value} for key, value in values.items()
             if key.startswith("v.") and value not in (None, "")]
    if not given:
        return _worklist_page(request, tenant, PAGE.tab(values), status=422, form=form, values=values,
                              refusal="Enter a value for at least one of the test's results.")
    try:
        asked = BenchResultsIn.model_validate({"results": given, "note": values.get("note")})
    except ValidationError as exc:
        return _worklist_page(request, tenant, PAGE.tab(values), status=422, form=form, values=values,
                              refusal=" ".join(portal.field_errors(exc).values()))
    return PAGE.act(request, tenant, lambda conn: lab.enter_results(conn, request.user, order_id, asked,
                                                                    today=facility_today(request.app.state.db, tenant)),
                    _resulted, form=form, values=values,
                    field_of=lambda exc: f"v.{exc.extra['component']}" if exc.extra.get("component") else None)


def _resulted(order: dict) -> str:
    """The notice of results just recorded: one critical among them asks for a call, not only a place on a list."""
    critical = any(r["flag"] in service.CRITICAL_FLAGS for r in order["results"])
    return "lab-resulted-critical" if critical else "lab-resulted"


@post("/lab/results/{result_id:uuid}/correction", operation_id="PortalLabCorrectResult",
      opt={"permission": "clinical.lab.result"}, sync_to_thread=True, include_in_schema=False)
def correct(request: Asking, tenant: Tenant, result_id: Id, data: FormData) -> Response:
    values = form_values(data)
    form = f"correct-{result_id}"
    try:
        # A field left blank is sent as nothing: '' keeps the refusal the field's own ("Give at least 3
        # characters"), where None read "Input should be a valid string".
        asked = ResultCorrectionIn.model_validate({"value": values.get("value") or "",
                                                   "reason": values.get("reason") or "", "note": values.get("note")})
    except ValidationError as exc:
        return PAGE.refused_fields(request, tenant, exc, form=form, values=values)
    return PAGE.act(request, tenant, lambda conn: lab.correct_result(
                        conn, request.user, result_id, asked, today=facility_today(request.app.state.db, tenant)),
                    _corrected, form=form, values=values, field_of=lambda exc: "value")


def _corrected(order: dict) -> str:
    """The notice of a correction: a value corrected to a critical one asks for a call as a critical result does,
    whatever the value it replaced (a clinician told the earlier one is to hear the one that stands)."""
    (written,) = (r for r in order["results"] if r["id"] == order["correction"])
    return "lab-corrected-critical" if written["flag"] in service.CRITICAL_FLAGS else "lab-corrected"


ROUTES = [worklist_page, receive, reject, enter_results, correct]

lab_router = Router(path="/t/{tenant:str}", route_handlers=ROUTES, exception_handlers=portal.EXCEPTION_HANDLERS,
                    tags=["portal"], include_in_schema=False)
