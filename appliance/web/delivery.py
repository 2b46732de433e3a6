"""The tenant portal's birth pages: "Record delivery" from the mother's chart (a form a midwife fills on a
phone: the babies after the first behind a disclosure, no script), the delivery with a link to each live-born
baby's chart, its correction with a reason, and its withdrawal (entered in error, recorded on the wrong woman).

It keeps the portal's rules (see `portal.py`): each route declares the permission the API declares for the same
act (`clinical.delivery.read`, `clinical.delivery.write`); patient pages pass the care-relationship guard; the
record is read and written only through the clinical layer (appliance/layers/clinical/delivery.py, and the API's
`delivery_routes.record`, which registers the babies as registration does); what is refused comes back next to
its field with what was typed kept (422); Post/Redirect/Get.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Callable
from typing import Any

from litestar import Response, Router, get, post
from litestar.response import Template
from pydantic import ValidationError

from appliance.layers.clinical import delivery
from appliance.layers.clinical.delivery_routes import record
from appliance.layers.clinical.schemas import DeliveryCorrection, DeliveryEnteredInError, DeliveryIn
from appliance.substrate.db import Database
from appliance.substrate.principal import Principal
from appliance.substrate.record import RecordError
from appliance.web import portal
from appliance.web.portal import (
    HELPERS,
    PATIENT,
    Asking,
    Clock,
    FormData,
    Id,
    Tenant,
    banner,
    facility_clock,
    field_errors,
    form_values,
    page,
    people_named,
    see_other,
    template_message,
)

portal.NOTICES.update({
    "delivery-recorded": "Delivery recorded. Each baby born alive is registered here as a patient, its birth weight "
                         "on its chart.",
    "delivery-corrected": "Delivery corrected; the previous version stays in its history.",
    "delivery-withdrawn": "Delivery marked entered in error, with your reason; it stays in its history. "
                          + delivery.NEXT_STEPS,
})



def _timeline_words(row: dict) -> tuple[str, str]:
    babies = ", ".join(f"{delivery.OUTCOMES[b['outcome']].lower()} {b['weight_g']} g" for b in row["babies"])
    return (f"Delivery: {delivery.MODES[row['mode']].lower()} at {row['gestation_weeks']}+{row['gestation_days']} "
            f"weeks", f"{babies}; blood loss {row['blood_loss_ml']} ml")


# On the mother's timeline at the time of birth (a correction may correct it).
portal.TIMELINE_SOURCES.append(portal.TimelineSource("clinical", "delivery", "Deliveries", "clinical.delivery.read",
                                                     delivery.deliveries, _timeline_words,
                                                     lambda row: row["born_at"]))

MAX_BABIES = 4
_BABY_FIELD = re.compile(r"^babies\.(\d+)\.(\w+)$")
_BABY_KEYS = ("outcome", "sex", "weight_g", "apgar_1", "apgar_5", "resuscitation", "patient_id")
# How far back the form offers babies' charts left born to no one (a delivery on the wrong woman is found out in
# days, not months).
UNLINKED_SINCE = dt.timedelta(days=42)
# Pydantic's locations of the form's fields where their names differ.
_RENAMED = {("born_at",): "born_on", **{("babies", n, key): f"b{n}_{key}" for n in range(MAX_BABIES)
                                       for key in _BABY_KEYS}}


def _form_field(field: str | None) -> str:
    """A refusal's field in the API's words, as the form names it."""
    if not field:
        return "form"
    if field == "born_at":
        return "born_on"
    if match := _BABY_FIELD.match(field):
        return f"b{match.group(1)}_{match.group(2)}"
    return field


def _how_many(values: dict) -> int:
    try:
        return min(max(int(values.get("number_of_babies") or 1), 1), MAX_BABIES)
    except ValueError:
        return 1


def _body(values: dict, clock: Clock) -> tuple[dict, dict[str, str]]:
    """The API's body from the form, and what the form itself gets wrong (a time that is not one)."""
    errors: dict[str, str] = {}
    born_at: str | None = None
    try:
        day = dt.date.fromisoformat(values.get("born_on") or "")
        moment = dt.time.fromisoformat(values.get("born_time") or "")
        born_at = dt.datetime.combine(day, moment, tzinfo=clock.tz).isoformat()
    except ValueError:
        errors["born_on"] = "Give the date and the time of birth (the time as the clock read, e.g. 04:30)."
    babies = [{key: values.get(f"b{n}_{key}") for key in _BABY_KEYS} for n in range(_how_many(values))]
    for baby in babies:
        baby["resuscitation"] = baby["resuscitation"] or "none"
        baby["patient_id"] = baby["patient_id"] or None
    body = {"born_at": born_at, "gestation_weeks": values.get("gestation_weeks"),
            "gestation_days": values.get("gestation_days") or 0, "mode": values.get("mode"), "babies": babies,
            "blood_loss_ml": values.get("blood_loss_ml"), "uterotonic": values.get("uterotonic")}
    return body, errors


def _values_of(found: dict, clock: Clock) -> dict:
    """The form's fields from a delivery (for its correction)."""
    local = clock.local(found["born_at"])
    values: dict[str, Any] = {"born_on": local.date().isoformat(), "born_time": local.strftime("%H:%M"),
                              "number_of_babies": str(len(found["babies"])), "version_id": str(found["id"])}
    for key in ("gestation_weeks", "gestation_days", "mode", "blood_loss_ml", "uterotonic"):
        values[key] = str(found[key])
    for n, baby in enumerate(found["babies"]):
        for key in _BABY_KEYS:
            values[f"b{n}_{key}"] = None if baby[key] is None else str(baby[key])
    return values


def _chart_label(chart: dict, clock: Clock) -> str:
    sex, born = delivery.SEXES.get(chart["sex"], chart["sex"]).lower(), clock.day(chart["birth_date"])
    return f"{chart['mrn']} · {chart['given_names']} {chart['family_name']}, {sex}, born {born}"


def _form_page(request: Asking, tenant: str, patient_id: uuid.UUID, *, status: int = 200, values: dict | None = None,
               errors: dict | None = None, correcting: dict | None = None) -> Template:
    principal: Principal = request.user
    db: Database = request.app.state.db
    clock = facility_clock(request, tenant)
    with db.tenant(tenant) as conn:
        top = banner(conn, principal, patient_id)
        # A delivery marked entered in error on another woman left these babies' charts: the form names them.
        unlinked = [] if correcting is not None else delivery.unlinked_charts(conn, principal,
                                                                               clock.today - UNLINKED_SINCE)
    if correcting is not None and values is None:
        values = _values_of(correcting, clock)
    values = values or {"born_on": clock.today.isoformat(), "number_of_babies": "1", "gestation_days": "0"}
    return page(request, "delivery_form.html", status=status, active="patients", patient_id=patient_id,
                tab="summary", **top, values=values, errors=errors or {}, correcting=correcting,
                babies=range(MAX_BABIES), shown=_how_many(values), modes=delivery.MODES, outcomes=delivery.OUTCOMES,
                sexes=delivery.SEXES, resuscitations=delivery.RESUSCITATIONS, uterotonics=delivery.UTEROTONICS,
                unlinked=[(str(c["id"]), _chart_label(c, clock)) for c in unlinked], **HELPERS)


@get(PATIENT + "/deliveries/new", operation_id="PortalDeliveryForm", opt={"permission": "clinical.delivery.write"},
     sync_to_thread=True, include_in_schema=False)
def delivery_form(request: Asking, tenant: Tenant, patient_id: Id) -> Template:
    """Record delivery: the form, today's date and one baby filled in."""
    return _form_page(request, tenant, patient_id)


def _write(request: Asking, tenant: str, patient_id: uuid.UUID, values: dict, *, done: str,
           act: Callable[[dict], dict], correcting: dict | None = None) -> Response | Template:
    clock = facility_clock(request, tenant)
    body, errors = _body(values, clock)
    status = 422
    if not errors:
        try:
            written = act(body)
        except ValidationError as exc:
            errors = field_errors(exc, rename=_RENAMED)
        except RecordError as exc:
            if exc.status not in {409, 422}:
                raise
            where = _form_field(exc.extra.get("field")) if exc.status == 422 else "form"
            errors, status = {where: template_message(exc.detail)}, exc.status
        else:
            return see_other(request, f"/t/{tenant}/patients/{patient_id}/deliveries/{written['root_id']}?done={done}")
    return _form_page(request, tenant, patient_id, status=status, values=values, errors=errors, correcting=correcting)


@post(PATIENT + "/deliveries", operation_id="PortalRecordDelivery", opt={"permission": "clinical.delivery.write"},
      sync_to_thread=True, include_in_schema=False)
def record_delivery(request: Asking, tenant: Tenant, patient_id: Id, data: FormData) -> Response | Template:
    """Record the delivery; each baby born alive is registered here."""
    return _write(request, tenant, patient_id, form_values(data), done="delivery-recorded",
                  act=lambda body: record(request.app.state, request, tenant, patient_id,
                                          DeliveryIn.model_validate(body)))


def _found(request: Asking, tenant: str, patient_id: uuid.UUID, delivery_id: uuid.UUID) -> dict:
    with request.app.state.db.tenant(tenant) as conn:
        return delivery.get_delivery(conn, request.user, patient_id, delivery_id)


def _delivery_page(request: Asking, tenant: str, patient_id: uuid.UUID, delivery_id: uuid.UUID, *, status: int = 200,
                   values: dict | None = None, errors: dict | None = None) -> Template:
    principal: Principal = request.user
    db: Database = request.app.state.db
    with db.tenant(tenant) as conn:
        top = banner(conn, principal, patient_id)
        found = delivery.get_delivery(conn, principal, patient_id, delivery_id)
        # Her deliveries marked entered in error (one recorded twice, say): by whom and why.
        withdrawn = delivery.withdrawn_deliveries(conn, principal, patient_id)
    names = people_named(db, {found["author_id"]} | {w["withdrawn_by"] for w in withdrawn})
    return page(request, "delivery.html", status=status, active="patients", patient_id=patient_id, tab="summary",
                **top, delivery=found, withdrawn=withdrawn, names=names, modes=delivery.MODES,
                outcomes=delivery.OUTCOMES, sexes=delivery.SEXES, resuscitations=delivery.RESUSCITATIONS,
                uterotonics=delivery.UTEROTONICS, values=values or {}, errors=errors or {}, **HELPERS)


@get(PATIENT + "/deliveries/{delivery_id:uuid}", operation_id="PortalDelivery",
     opt={"permission": "clinical.delivery.read"}, sync_to_thread=True, include_in_schema=False)
def delivery_page(request: Asking, tenant: Tenant, patient_id: Id, delivery_id: Id) -> Template:
    """The delivery as recorded: the birth, the mother's blood loss, and each baby, a live-born one linked to its
    chart."""
    return _delivery_page(request, tenant, patient_id, delivery_id)


@post(PATIENT + "/deliveries/{delivery_id:uuid}/entered-in-error", operation_id="PortalWithdrawDelivery",
      opt={"permission": "clinical.delivery.write"}, sync_to_thread=True, include_in_schema=False)
def withdraw(request: Asking, tenant: Tenant, patient_id: Id, delivery_id: Id, data: FormData) -> Response | Template:
    """Mark the delivery entered in error (recorded on the wrong woman, or twice), with a reason, as the API's
    route does; the chart then says what becomes of the babies' charts and what to do next."""
    values = form_values(data)
    try:
        reason = DeliveryEnteredInError.model_validate({"reason": values.get("reason") or ""}).reason
        with request.app.state.db.tenant(tenant) as conn:
            delivery.enter_in_error(conn, request.user, patient_id, delivery_id, reason)
    except ValidationError:
        error = "Say why the delivery is entered in error (at least 3 characters)."
    except RecordError as exc:
        if exc.status not in {409, 422}:
            raise
        error = template_message(exc.detail)
    else:
        return see_other(request, f"/t/{tenant}/patients/{patient_id}/chart?done=delivery-withdrawn")
    return _delivery_page(request, tenant, patient_id, delivery_id, status=422, values=values,
                          errors={"reason": error})


@get(PATIENT + "/deliveries/{delivery_id:uuid}/correction", operation_id="PortalDeliveryCorrectionForm",
     opt={"permission": "clinical.delivery.write"}, sync_to_thread=True, include_in_schema=False)
def correction_form(request: Asking, tenant: Tenant, patient_id: Id, delivery_id: Id) -> Template:
    """The delivery in force in the form, to correct with a reason."""
    return _form_page(request, tenant, patient_id, correcting=_found(request, tenant, patient_id, delivery_id))


@post(PATIENT + "/deliveries/{delivery_id:uuid}/correction", operation_id="PortalCorrectDelivery",
      opt={"permission": "clinical.delivery.write"}, sync_to_thread=True, include_in_schema=False)
def correct(request: Asking, tenant: Tenant, patient_id: Id, delivery_id: Id, data: FormData) -> Response | Template:
    """Correct the delivery: a new version with the reason; the version the form was loaded from must still be the
    current one (409 otherwise)."""
    values = form_values(data)
    current = _found(request, tenant, patient_id, delivery_id)
    reason = (values.get("reason") or "").strip()
    if len(reason) < 3:
        return _form_page(request, tenant, patient_id, status=422, values=values, correcting=current,
                          errors={"reason": "Say why the delivery is corrected (at least 3 characters)."})
    state = request.app.state

    def act(body: dict) -> dict:
        data = DeliveryCorrection.model_validate(
            {**body, "reason": reason, "version_id": values.get("version_id") or current["id"]})
        with state.db.tenant(tenant) as conn:
            return delivery.correct(conn, request.user, patient_id, data.version_id,
                                    DeliveryIn.model_validate(body), data.reason, delivery_id=delivery_id)

    return _write(request, tenant, patient_id, values, done="delivery-corrected", correcting=current, act=act)


ROUTES = [delivery_form, record_delivery, delivery_page, correction_form, correct, withdraw]

delivery_router = Router(path="/t/{tenant:str}", route_handlers=ROUTES, exception_handlers=portal.EXCEPTION_HANDLERS,
                         guards=[portal.care_relationship_guard], tags=["portal"], include_in_schema=False)
