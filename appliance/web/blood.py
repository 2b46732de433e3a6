"""The blood bank in the tenant portal, under `/t/{tenant}/blood`: the stock by component and group (units
expiring within 3 days flagged), receiving a unit and discarding one with the reason; the requests for blood still
to answer, each with its patient's recorded group, a form to reserve a unit after the crossmatch (the emergency's
reason for a patient with no group), each reserved unit's Issue and Release, and an issued unit's Returned unused
(released back to stock with why) — a request every unit of which is issued stays listed while one of them is not
yet started, since this page is where the blood bank, which opens no chart, takes back a bag the ward did not hang;
and the transfusion reactions of the last month (the nursing layer's `transfusion.reactions`), a unit the ward stopped
for one and a reaction noticed after a unit was given, which the blood bank learned of only from the ward before.

It keeps the portal's rules as the laboratory bench does (appliance/web/lab.py, whose form handling it shares,
appliance/web/bench.py): server-rendered, no script, each route declares the permission the blood bank's API
declares for the same act (ACC-029's `clinical.blood.*`), forms carry the CSRF token and Post/Redirect/Get, and a
refusal (an incompatible or expired unit, the wrong component) is the page again with its sentence at the top and
beside the field, everything typed kept, nothing written. No page here is a patient's: a request shows the
patient's name, MRN, sex, age and recorded group, and links to no chart.
"""

from __future__ import annotations

import datetime as dt

from litestar import Response, Router, get, post
from litestar.response import Template
from pydantic import ValidationError

from appliance.layers.clinical import blood
from appliance.layers.clinical.blood_schemas import BloodUnitIn, DiscardIn, ReleaseIn, ReservationIn
from appliance.layers.nursing import transfusion
from appliance.substrate.tenancy import facility_today
from appliance.web import portal
from appliance.web.bench import BenchPage
from appliance.web.portal import Asking, FormData, Id, Tenant, form_values, page, people_named

# Beside the lab's worklist, never instead of it: a lab technician lands on the worklist whichever room registered
# its item first.
portal.NAV.append(portal.NavItem("Laboratory", "blood", "Blood bank", "/blood", "clinical.blood.read", lands=False))
portal.NOTICES.update({
    "unit-received": "Unit received into stock.",
    "unit-discarded": "Unit discarded; its reason is kept in its history.",
    "unit-reserved": "Unit reserved for the patient after the crossmatch.",
    "unit-issued": "Unit issued to the ward: the nurse checks it against the patient at the bedside.",
    "unit-released": "Unit released back to stock.",
})
COMPONENTS = [(c, words.capitalize()) for c, words in blood.COMPONENT_WORDS.items()]


def _bank_page(request: Asking, tenant: str, _state: str | None = None, *, status: int = 200,
               refusal: str | None = None, form: str = "", values: dict | None = None,
               errors: dict | None = None) -> Template:
    today = facility_today(request.app.state.db, tenant)
    with request.app.state.db.tenant(tenant) as conn:
        stock = blood.stock(conn, request.user, today=today)
        requests = blood.open_requests(conn, request.user, today=today)
        reactions = transfusion.reactions(conn, request.user, now=dt.datetime.now(dt.UTC))
    return page(request, "blood/bank.html", status=status, active="blood", stock=stock, requests=requests,
                reactions=reactions, reactions_days=transfusion.REACTIONS_SHOWN_DAYS,
                names=people_named(request.app.state.db, {r["requested_by"] for r in requests}
                                   | {r["recorded_by"] for r in reactions}),
                components=COMPONENTS, component_words=blood.COMPONENT_WORDS, abo=blood.ABO, rhd=blood.RHD,
                expiring_days=blood.EXPIRING_WITHIN_DAYS, emergency_units=blood.EMERGENCY_UNITS, refusal=refusal,
                form=form, values=values or {}, errors=errors or {})


PAGE = BenchPage("/blood", (), _bank_page)


@get("/blood", operation_id="PortalBloodBank", opt={"permission": "clinical.blood.read"}, sync_to_thread=True,
     include_in_schema=False)
def bank_page(request: Asking, tenant: Tenant) -> Template:
    """The stock, and the requests still to answer or with a unit at the ward not yet started."""
    return _bank_page(request, tenant)


@post("/blood/units", operation_id="PortalReceiveBloodUnit", opt={"permission": "clinical.blood.stock"},
      sync_to_thread=True, include_in_schema=False)
def receive(request: Asking, tenant: Tenant, data: FormData) -> Response:
    values = form_values(data)
    try:
        asked = BloodUnitIn.model_validate({k: values.get(k) or "" for k in BloodUnitIn.model_fields})
    except ValidationError as exc:
        return PAGE.refused_fields(request, tenant, exc, form="receive", values=values)
    return PAGE.act(request, tenant, lambda conn: blood.receive_unit(
                        conn, request.user, asked, today=facility_today(request.app.state.db, tenant)),
                    "unit-received", form="receive", values=values, field_of=lambda exc: exc.extra.get("field"))


@post("/blood/units/{unit_id:uuid}/discard", operation_id="PortalDiscardBloodUnit",
      opt={"permission": "clinical.blood.stock"}, sync_to_thread=True, include_in_schema=False)
def discard(request: Asking, tenant: Tenant, unit_id: Id, data: FormData) -> Response:
    return PAGE.undo(request, tenant, form_values(data), DiscardIn, lambda conn, reason: blood.discard_unit(
        conn, request.user, unit_id, reason, today=facility_today(request.app.state.db, tenant)), "unit-discarded",
                     form=f"discard-{unit_id}")


@post("/blood/requests/{request_id:uuid}/reservations", operation_id="PortalReserveBloodUnit",
      opt={"permission": "clinical.blood.crossmatch"}, sync_to_thread=True, include_in_schema=False)
def reserve(request: Asking, tenant: Tenant, request_id: Id, data: FormData) -> Response:
    values = form_values(data)
    form = f"reserve-{request_id}"
    try:
        asked = ReservationIn.model_validate({"unit_number": values.get("unit_number") or "",
                                              "emergency_reason": values.get("emergency_reason")})
    except ValidationError as exc:
        return PAGE.refused_fields(request, tenant, exc, form=form, values=values)
    return PAGE.act(request, tenant, lambda conn: blood.reserve(
        conn, request.user, request_id, asked.unit_number, asked.emergency_reason,
        today=facility_today(request.app.state.db, tenant)), "unit-reserved", form=form, values=values,
                    field_of=lambda exc: exc.extra.get("field"))


@post("/blood/units/{unit_id:uuid}/issue", operation_id="PortalIssueBloodUnit",
      opt={"permission": "clinical.blood.crossmatch"}, sync_to_thread=True, include_in_schema=False)
def issue(request: Asking, tenant: Tenant, unit_id: Id, data: FormData) -> Response:
    return PAGE.act(request, tenant, lambda conn: blood.issue(
        conn, request.user, unit_id, today=facility_today(request.app.state.db, tenant)), "unit-issued")


@post("/blood/units/{unit_id:uuid}/release", operation_id="PortalReleaseBloodUnit",
      opt={"permission": "clinical.blood.crossmatch"}, sync_to_thread=True, include_in_schema=False)
def release(request: Asking, tenant: Tenant, unit_id: Id, data: FormData) -> Response:
    return PAGE.undo(request, tenant, form_values(data), ReleaseIn, lambda conn, reason: blood.release(
        conn, request.user, unit_id, reason, today=facility_today(request.app.state.db, tenant)), "unit-released",
                     form=f"release-{unit_id}")


ROUTES = [bank_page, receive, discard, reserve, issue, release]

blood_router = Router(path="/t/{tenant:str}", route_handlers=ROUTES, exception_handlers=portal.EXCEPTION_HANDLERS,
                      tags=["portal"], include_in_schema=False)
