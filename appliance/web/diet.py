"""The diet pages of the tenant portal: the chart's Diet tab (the order in force, the one to come, nil by mouth before
theatre, the record's allergies, the history; a new order, and the latest one corrected with why or withdrawn as
entered in error) and the kitchen's printable list for a meal, ward by ward.

They keep the portal's rules (see `portal.py`): each page declares its permission; the chart's pages pass the
care-relationship guard of the nursing router they are mounted on; patient data is read and written only through the
nursing layer's `diet` service, which audits every access; bad input gets the page back with the message by the field
(422); Post/Redirect/Get. The kitchen's list is a page to print: print CSS hides the portal around it, no script.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from anyio import to_thread
from litestar import Response, get, post
from litestar.params import FromQuery
from litestar.response import Template
from pydantic import ValidationError

from appliance.layers.nursing import access, diet, service
from appliance.layers.nursing.schemas import DietCorrection, DietOrderIn
from appliance.substrate.db import Database
from appliance.substrate.principal import Principal
from appliance.substrate.record import RecordError
from appliance.substrate.tenancy import facility_timezone
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
    form_values,
    local_moment,
    page,
    people_named,
    see_other,
)

DIET_CHOICES = [(code, words) for code, words in diet.DIET_WORDS.items()]
ALSO_CHOICES = [(code, diet.DIET_WORDS[code]) for code in diet.DIETS
                if code not in diet.NOTHING_ELSE and code != "normal"]
IDDSI_CHOICES = [(str(level), f"IDDSI {words}") for level, words in diet.IDDSI.items()]
MEAL_CHOICES = [(meal, meal.capitalize()) for meal in diet.MEALS]

portal.NAV.append(NavItem("Nursing", "kitchen", "Kitchen list", "/kitchen", "nursing.kitchen.read"))
portal.CHART_TABS[-1:-1] = [ChartTab("diet", "Diet", "/diet", "nursing.diet.read")]
portal.NOTICES.update({"diet": "Diet ordered.", "diet-withdrawn": "Diet order withdrawn as entered in error.",
                       "diet-corrected": "Diet order corrected; the version it replaces stays in the history with "
                                         "your reason."})
MINUTE = "%Y-%m-%dT%H:%M"  # a datetime-local field's value


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _as_form(version: dict, tz) -> dict:
    """An order version as the order form's values: what the correction form opens filled with."""
    def moment(value: dt.datetime | None) -> str:
        return value.astimezone(tz).strftime(MINUTE) if value else ""

    return {"diet": version["diet"], "f.also": list(version["also"]),
            "iddsi_level": "" if version["iddsi_level"] is None else str(version["iddsi_level"]),
            "starts_at": moment(version["starts_at"]), "ends_at": moment(version["ends_at"]),
            "note": version["note"] or ""}


def _diet_context(db: Database, principal: Principal, tenant: str, patient_id: uuid.UUID) -> dict:
    with db.tenant(tenant) as conn:
        top = banner(conn, principal, patient_id)
        shown = diet.of_patient(conn, principal, patient_id, now=_now())
    # Only the latest version of a live order can be corrected or withdrawn (an older one: 409).
    latest = shown["history"][0] if shown["history"] and shown["history"][0]["diet"] else None
    return {**top, "diet": shown, "latest": latest, "diet_choices": DIET_CHOICES, "also_choices": ALSO_CHOICES,
            "latest_values": _as_form(latest, facility_timezone(db, tenant)) if latest else {},
            "iddsi_choices": IDDSI_CHOICES, "names": people_named(db, {v["recorded_by"] for v in shown["history"]})}


async def _diet_page(request: Asking, tenant: str, patient_id: uuid.UUID, *, values: dict, errors: dict,
                     status: int = 200, form: str = "") -> Template:
    """The tab; `form` names the form posted ("order", "correct", "withdraw") whose errors and values come back."""
    db: Database = request.app.state.db
    context = await to_thread.run_sync(lambda: _diet_context(db, request.user, tenant, patient_id))
    return page(request, "nursing/diet.html", status=status, active="patients", patient_id=patient_id, tab="diet",
                **context, values=values, errors=errors, form=form, **HELPERS)


@get(PATIENT + "/diet", operation_id="PortalDiet", opt={"permission": "nursing.diet.read"}, include_in_schema=False)
async def diet_page(request: Asking, tenant: Tenant, patient_id: Id) -> Template:
    """The diet in force, the one to come, nil by mouth before an operation, the allergies; a new order."""
    return await _diet_page(request, tenant, patient_id, values={}, errors={})


async def _write_order(request: Asking, tenant: str, patient_id: uuid.UUID, values: dict, form: str, done: str,
                       model: type[DietOrderIn], write: Any) -> Response:
    """The order form's fields (a new order, or a correction with its reason) validated as the API's model and
    written by `write(conn, order)` in one tenant transaction; what is refused comes back beside its field (422),
    nothing written."""
    db: Database = request.app.state.db
    tz = facility_timezone(db, tenant)
    errors: dict[str, str] = {}
    moments: dict[str, Any] = {}
    for field in ("starts_at", "ends_at"):
        try:
            moments[field] = local_moment(values.get(field), tz)
        except ValueError:
            errors[field] = "Give the date and time, or leave it empty."
    also = values.get("f.also") or []
    also = [also] if isinstance(also, str) else also  # one box ticked arrives as one value
    reason = values.get("reason") or ""
    if model is DietCorrection and len(reason) < 3:
        errors["reason"] = "Say why the order is corrected (at least 3 characters)."
    order = None
    if not errors:
        try:
            order = model.model_validate({
                "diet": values.get("diet") or "", "also": also, "iddsi_level": values.get("iddsi_level"),
                "note": values.get("note"), **moments, **({"reason": reason} if model is DietCorrection else {})})
        except ValidationError as exc:
            errors = {{"also": "f.also"}.get(str(e["loc"][0]), str(e["loc"][0])): "Choose one of the listed options."
                      for e in exc.errors()}
    if order is not None:
        def work() -> None:
            with db.tenant(tenant) as conn:
                write(conn, order)

        try:
            await to_thread.run_sync(work)
        except RecordError as exc:
            if exc.status not in (409, 422):
                raise
            field = {"patient_id": "diet", "also": "f.also"}.get(exc.extra.get("field"), exc.extra.get("field"))
            errors[field or "diet"] = exc.detail[:1].upper() + exc.detail[1:] + "."
    if errors:
        return await _diet_page(request, tenant, patient_id, values=values, errors=errors, status=422, form=form)
    return see_other(request, f"/t/{tenant}/patients/{patient_id}/diet?done={done}")


@post(PATIENT + "/diet", operation_id="PortalOrderDiet", opt={"permission": "nursing.diet.write"},
      include_in_schema=False)
async def order_diet(request: Asking, tenant: Tenant, patient_id: Id, data: FormData) -> Response:
    """A new order from the chart: the diet, those combined with it, the texture, from and until, a note."""
    return await _write_order(request, tenant, patient_id, form_values(data), "order", "diet", DietOrderIn,
                              lambda conn, order: diet.place(conn, request.user, patient_id, order, now=_now()))


@post(PATIENT + "/diet/{entry_id:uuid}", operation_id="PortalCorrectDiet", opt={"permission": "nursing.diet.write"},
      include_in_schema=False)
async def correct_diet(request: Asking, tenant: Tenant, patient_id: Id, entry_id: Id, data: FormData) -> Response:
    """The latest order corrected: its next version replaces it, with why; the one replaced stays in the history."""
    return await _write_order(request, tenant, patient_id, form_values(data), "correct", "diet-corrected",
                              DietCorrection, lambda conn, order: diet.correct(
                                  conn, request.user, patient_id, entry_id, order, order.reason, now=_now()))


@post(PATIENT + "/diet/{entry_id:uuid}/entered-in-error", operation_id="PortalRetractDiet",
      opt={"permission": "nursing.diet.write"}, include_in_schema=False)
async def retract_diet(request: Asking, tenant: Tenant, patient_id: Id, entry_id: Id, data: FormData) -> Response:
    """Withdraw the order as entered in error, with why. The order is looked up first, as the MAR's and the fluid
    chart's withdrawals do (`nursing._withdraw`, which this module, imported by it, cannot call): a guessed id is the
    404 page whatever reason was typed, where it was a 422 page with no form of that order to show the refusal by."""
    values = form_values(data)
    db: Database = request.app.state.db

    def found() -> None:
        with db.tenant(tenant) as conn:
            service.require_version(conn, patient_id, entry_id, "diet_order")

    await to_thread.run_sync(found)
    reason = values.get("reason") or ""
    if len(reason) < 3:
        return await _diet_page(request, tenant, patient_id, values=values, status=422, form="withdraw",
                                errors={"reason": "Say why the order is withdrawn."})

    def work() -> None:
        with db.tenant(tenant) as conn:
            diet.retract(conn, request.user, patient_id, entry_id, reason)

    await to_thread.run_sync(work)
    return see_other(request, f"/t/{tenant}/patients/{patient_id}/diet?done=diet-withdrawn")


def _kitchen_context(db: Database, principal: Principal, tenant: str, meal: str, day: str, ward_code: str) -> dict:
    tz = facility_timezone(db, tenant)
    now = _now()
    with db.tenant(tenant) as conn:
        wards = diet.kitchen_wards(conn)
        chosen = ([access.ward_for(conn, principal, ward_code)] if ward_code or principal.ward_scoped else wards)
        which, next_serving = diet.next_meal(conn, now, tz, meal or None)
        try:
            on = dt.date.fromisoformat(day) if day else next_serving
        except ValueError:
            on = next_serving
        listed = diet.kitchen_list(conn, principal, chosen, meal=which, day=on, tz=tz)
        times = diet.meal_times(conn)
    return {"kitchen": listed, "ward_choices": [(w["code"], w["name"]) for w in wards], "ward_code": ward_code,
            "meal_choices": MEAL_CHOICES,
            "meal_times": times}


@get("/kitchen", operation_id="PortalKitchenList", opt={"permission": "nursing.kitchen.read"},
     include_in_schema=False)
async def kitchen_page(request: Asking, tenant: Tenant, meal: FromQuery[str] = "", date: FromQuery[str] = "",
                       ward: FromQuery[str] = "") -> Template:
    """The kitchen's list for a meal (default the next), ward by ward, to print."""
    db: Database = request.app.state.db
    context = await to_thread.run_sync(lambda: _kitchen_context(db, request.user, tenant, meal.strip(), date.strip(),
                                                                ward.strip()))
    return page(request, "nursing/kitchen.html", active="kitchen", **context, **HELPERS)


ROUTES = [diet_page, order_diet, correct_diet, retract_diet, kitchen_page]
