"""Blood and transfusions on the patient's chart in the tenant portal, under `/t/{tenant}/patients/{id}/transfusions`:
the patient's blood group as the laboratory recorded it, the clinician's form to request blood and the requests with
the units reserved or issued for each (and the clinician's Cancel, with why, which sends the reserved units back to
stock), the units issued and waiting at the bedside, and the nurse's bedside record: start a unit after the
two-person check (the second person chosen from the ward's staff who may check blood; the wrong-patient catch refuses
a unit not issued to this patient, beside the unit number), the 15-minute observations, and the end, or the stop for
a suspected reaction; on a completed transfusion, a reaction noticed after it ended (its kind, onset, severity and
what was done).

It keeps the portal's rules (appliance/web/portal.py): server-rendered, no script, behind the chart's
care-relationship guard, each route declaring the permission the API declares for the same act
(`nursing.transfusion.*`, `clinical.blood.request`), forms with the CSRF token and Post/Redirect/Get, a refusal the
page again with its sentence beside the field, everything typed kept, nothing written. The record is read and
written through the clinical layer's `blood` and the nursing layer's `transfusion` services, which audit each read
and write.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable

from anyio import to_thread
from litestar import Response, Router, get, post
from litestar.response import Template
from pydantic import ValidationError

from appliance.layers.clinical import blood
from appliance.layers.clinical.blood_schemas import BloodRequestIn, CancelRequestIn
from appliance.layers.nursing import transfusion
from appliance.layers.nursing.schemas import (
    TransfusionEndIn,
    TransfusionObservationIn,
    TransfusionReactionIn,
    TransfusionStartIn,
)
from appliance.substrate.db import Database
from appliance.substrate.record import RecordError
from appliance.substrate.tenancy import facility_timezone, facility_today
from appliance.web import portal
from appliance.web.nursing import given_at
from appliance.web.portal import (
    HELPERS,
    PATIENT,
    Asking,
    ChartTab,
    FormData,
    Id,
    Tenant,
    TimelineSource,
    banner,
    field_errors,
    form_values,
    local_moment,
    page,
    people_named,
    see_other,
)

portal.CHART_TABS[-1:-1] = [ChartTab("transfusions", "Blood", "/transfusions", "nursing.transfusion.read")]
portal.NOTICES.update({
    "blood-requested": "Blood requested: the blood bank crossmatches it against the patient's recorded group.",
    "blood-request-cancelled": "Request cancelled: the units reserved for it are back in the blood bank's stock.",
    "transfusion-started": "Transfusion started: record the observations at 15 minutes.",
    "transfusion-observed": "15-minute observations recorded.",
    "transfusion-ended": "Transfusion ended.",
    "transfusion-stopped": "Transfusion stopped for a suspected reaction: the ward's escalation task is raised. "
                           "Inform the doctor now and return the bag to the blood bank.",
    "transfusion-reaction": "Reaction recorded: the ward's escalation task is raised and the blood bank sees it on "
                            "its list of reactions. Inform the doctor now.",
})
VITALS = [("temperature_c", "Temperature", "°C", 'inputmode="decimal"'),
          ("heart_rate_bpm", "Pulse", "/min", 'inputmode="numeric"'),
          ("systolic_mmhg", "Systolic BP", "mmHg", 'inputmode="numeric"'),
          ("diastolic_mmhg", "Diastolic BP", "mmHg", 'inputmode="numeric"'),
          ("respiratory_rate", "Respiratory rate", "/min", 'inputmode="numeric"'),
          ("spo2_percent", "SpO₂", "%", 'inputmode="numeric"')]
portal.TIMELINE_SOURCES.append(TimelineSource(
    "nursing", "transfusion", "Transfusions", "nursing.transfusion.read", transfusion.of_patient,
    lambda r: (f"Transfusion of unit {r['unit_number']}: {r['status'].replace('_', ' ')}", r["reaction_words"] or ""),
    when=lambda r: r["started_at"]))
URGENCIES = [("routine", "Routine"), ("urgent", "Urgent"), ("emergency", "Emergency")]


_TIMES = {"started_at", "observed_at", "ended_at"}


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _context(db: Database, request: Asking, tenant: str, patient_id: uuid.UUID) -> dict:
    principal = request.user
    today = facility_today(request.app.state.db, tenant)
    with db.tenant(tenant) as conn:
        top = banner(conn, principal, patient_id)
        blood_view = blood.patient_blood(conn, principal, patient_id, today=today)
        waiting = blood.issued_to(conn, principal, patient_id, today=today)
        given = transfusion.of_patient(conn, principal, patient_id)
    checkers = (transfusion.second_checkers(transfusion.colleagues(db, request.app.state.policy, tenant), principal)
                if principal.can("nursing.transfusion.write") else [])
    return {**top, "blood": blood_view, "waiting": waiting, "transfusions": given,
            "checkers": [(str(c.account_id), c.name) for c in checkers],
            "names": people_named(db, {t["recorded_by"] for t in given}
                                  | {r["requested_by"] for r in blood_view["requests"]}
                                  | {r["cancelled_by"] for r in blood_view["requests"] if r["cancelled_by"]})}


def _page(request: Asking, tenant: str, patient_id: uuid.UUID, *, status: int = 200, form: str = "",
          values: dict | None = None, errors: dict | None = None) -> Template:
    context = _context(request.app.state.db, request, tenant, patient_id)
    return page(request, "blood/transfusions.html", status=status, active="patients", patient_id=patient_id,
                tab="transfusions", **context, form=form, values=values or {}, errors=errors or {},
                vitals_fields=VITALS, reactions=list(transfusion.REACTIONS.items()), urgencies=URGENCIES,
                severities=list(transfusion.SEVERITIES.items()),
                components=[(c, w.capitalize()) for c, w in blood.COMPONENT_WORDS.items()],
                component_words=blood.COMPONENT_WORDS, **HELPERS)


@get(PATIENT + "/transfusions", operation_id="PortalTransfusions", opt={"permission": "nursing.transfusion.read"},
     include_in_schema=False)
async def transfusions_page(request: Asking, tenant: Tenant, patient_id: Id) -> Template:
    """The patient's group, requests, units waiting and transfusions, with the forms of whoever may act."""
    return await to_thread.run_sync(lambda: _page(request, tenant, patient_id))


def _vitals(values: dict) -> dict:
    return {name: values[name] for name, *_ in VITALS if values.get(name)}


def _when(values: dict, field: str, tenant: str, request: Asking):
    """The time the nurse typed (HH:MM, facility time), else now."""
    if not values.get(field):
        return None
    return given_at(values[field], _now(), facility_timezone(request.app.state.db, tenant))


async def _act(request: Asking, tenant: str, patient_id: uuid.UUID, values: dict, form: str, schema, body: Callable,
               act: Callable, done: Callable[[object], str]) -> Response:
    """A form's act: its fields validated (refused beside each), then `act(conn, asked)` in one transaction,
    refused (409, 422) as the page again with the sentence beside its field, else the page with `done`'s notice."""
    def run() -> Response:
        errors: dict[str, str] = {}
        try:
            asked = schema.model_validate(body())
        except ValidationError as exc:
            errors = field_errors(exc)
        except ValueError:
            errors = {"at": "Give the time as HH:MM, or leave it empty for now."}
        if not errors:
            try:
                with request.app.state.db.tenant(tenant) as conn:
                    answer = act(conn, asked)
                return see_other(request, f"/t/{tenant}/patients/{patient_id}/transfusions?done={done(answer)}")
            except RecordError as exc:
                if exc.status not in (409, 422):
                    raise
                # The service names the time by its API field; the form's is `at`, where the refusal belongs.
                field = exc.extra.get("field") or "form"
                errors = {"at" if field in _TIMES else field: exc.detail[:1].upper() + exc.detail[1:] + "."}
        return _page(request, tenant, patient_id, status=422 if "form" not in errors else 409, form=form,
                     values=values, errors=errors)

    return await to_thread.run_sync(run)


@post(PATIENT + "/transfusions/requests", operation_id="PortalRequestBlood",
      opt={"permission": "clinical.blood.request"}, include_in_schema=False)
async def request_blood(request: Asking, tenant: Tenant, patient_id: Id, data: FormData) -> Response:
    values = form_values(data)
    return await _act(request, tenant, patient_id, values, "request", BloodRequestIn, lambda: {
        "component": values.get("component") or "", "units": values.get("units") or "",
        "indication": values.get("indication") or "", "urgency": values.get("urgency") or ""},
        lambda conn, asked: blood.request_blood(conn, request.user, patient_id, asked), lambda _: "blood-requested")


@post(PATIENT + "/transfusions/requests/{request_id:uuid}/cancel", operation_id="PortalCancelBloodRequest",
      opt={"permission": "clinical.blood.request"}, include_in_schema=False)
async def cancel_request(request: Asking, tenant: Tenant, patient_id: Id, request_id: Id, data: FormData) -> Response:
    values = form_values(data)
    return await _act(request, tenant, patient_id, values, f"cancel-{request_id}", CancelRequestIn,
                      lambda: {"reason": values.get("reason") or ""},
                      lambda conn, asked: blood.cancel_request(conn, request.user, patient_id, request_id, asked.reason,
                                                               today=facility_today(request.app.state.db, tenant)),
                      lambda _: "blood-request-cancelled")


@post(PATIENT + "/transfusions", operation_id="PortalStartTransfusion", opt={"permission": "nursing.transfusion.write"},
      include_in_schema=False)
async def start(request: Asking, tenant: Tenant, patient_id: Id, data: FormData) -> Response:
    values = form_values(data)
    db = request.app.state.db
    # Who works here and the facility's zone are the control schema's: read before the tenant transaction opens.
    staff, zone = await to_thread.run_sync(lambda: (transfusion.colleagues(db, request.app.state.policy, tenant),
                                                    facility_timezone(db, tenant)))
    return await _act(request, tenant, patient_id, values, "start", TransfusionStartIn, lambda: {
        "unit_number": values.get("unit_number") or "",
        "checked_by_account_id": values.get("checked_by_account_id") or "",
        "started_at": _when(values, "at", tenant, request), "vitals": _vitals(values)},
        lambda conn, asked: transfusion.start(conn, request.user, patient_id, asked, now=_now(),
                                              zone=zone, staff=staff),
        lambda _: "transfusion-started")


@post(PATIENT + "/transfusions/{transfusion_id:uuid}/observations", operation_id="PortalObserveTransfusion",
      opt={"permission": "nursing.transfusion.write"}, include_in_schema=False)
async def observe(request: Asking, tenant: Tenant, patient_id: Id, transfusion_id: Id, data: FormData) -> Response:
    values = form_values(data)
    zone = await to_thread.run_sync(lambda: facility_timezone(request.app.state.db, tenant))
    return await _act(request, tenant, patient_id, values, f"observe-{transfusion_id}", TransfusionObservationIn,
                      lambda: {"observed_at": _when(values, "at", tenant, request), "vitals": _vitals(values)},
                      lambda conn, asked: transfusion.observe(conn, request.user, patient_id, transfusion_id, asked,
                                                              now=_now(), zone=zone), lambda _: "transfusion-observed")


@post(PATIENT + "/transfusions/{transfusion_id:uuid}/end", operation_id="PortalEndTransfusion",
      opt={"permission": "nursing.transfusion.write"}, include_in_schema=False)
async def end(request: Asking, tenant: Tenant, patient_id: Id, transfusion_id: Id, data: FormData) -> Response:
    values = form_values(data)
    zone = await to_thread.run_sync(lambda: facility_timezone(request.app.state.db, tenant))
    return await _act(request, tenant, patient_id, values, f"end-{transfusion_id}", TransfusionEndIn, lambda: {
        "ended_at": _when(values, "at", tenant, request), "volume_ml": values.get("volume_ml") or "",
        "reaction": values.get("reaction") or "", "reaction_note": values.get("reaction_note"),
        "vitals": _vitals(values)},
        lambda conn, asked: transfusion.end(conn, request.user, patient_id, transfusion_id, asked, now=_now(),
                                            zone=zone),
        lambda answer: "transfusion-stopped" if answer["status"] == "stopped" else "transfusion-ended")


@post(PATIENT + "/transfusions/{transfusion_id:uuid}/reactions", operation_id="PortalReportTransfusionReaction",
      opt={"permission": transfusion.REACTION_PERMISSION}, include_in_schema=False)
async def report_reaction(request: Asking, tenant: Tenant, patient_id: Id, transfusion_id: Id,
                          data: FormData) -> Response:
    values = form_values(data)
    zone = await to_thread.run_sync(lambda: facility_timezone(request.app.state.db, tenant))

    def onset():
        # Days back, as a delayed reaction is: the day and the time (facility time); one unreadable is left to the
        # schema, which refuses it beside its field.
        try:
            return local_moment(values.get("onset_at"), zone)
        except ValueError:
            return values.get("onset_at")

    return await _act(request, tenant, patient_id, values, f"reaction-{transfusion_id}", TransfusionReactionIn,
                      lambda: {"reaction": values.get("reaction") or "", "onset_at": onset(),
                               "severity": values.get("severity") or "", "reaction_note": values.get("reaction_note")
                               or ""},
                      lambda conn, asked: transfusion.report_reaction(conn, request.user, patient_id, transfusion_id,
                                                                      asked, now=_now(), zone=zone),
                      lambda _: "transfusion-reaction")


ROUTES = [transfusions_page, request_blood, cancel_request, start, observe, end, report_reaction]

transfusion_router = Router(path="/t/{tenant:str}", route_handlers=ROUTES,
                            exception_handlers=portal.EXCEPTION_HANDLERS, guards=[portal.care_relationship_guard],
                            tags=["portal"], include_in_schema=False)
