"""Immunizations in the tenant portal: a patient's "Immunizations" chart tab — the schedule as a card (each dose
given, due, overdue, not yet due or no longer given), the form a nurse records a dose with (given, or due and
not given and why), and the doses in force with their corrections and those marked entered in error — and the
facility's list of children due or overdue, the list a vaccinator traces defaulters from.

It keeps the portal's rules (appliance/web/portal.py): server-rendered, no script, each route declares the
permission the immunization API declares for the same act (`clinical.immunization.read` / `.write`: clinicians
and nurses, ACC-002 and ACC-023), patient pages pass the care-relationship guard, forms carry the CSRF token and
Post/Redirect/Get, and a refusal is the page again with its sentence beside the field and everything typed
kept (422), nothing written. The record is read and written only through the clinical layer's `immunization`
service, which audits each read and write and each child the list names.
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

from appliance.layers.clinical import immunization
from appliance.layers.clinical.errors import NotFound
from appliance.layers.clinical.immunization_routes import schedule_of
from appliance.layers.clinical.immunization_schedule import STATE_WORDS
from appliance.layers.clinical.schemas import ImmunizationAmend, ImmunizationIn, Retraction
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

READ, WRITE = "clinical.immunization.read", "clinical.immunization.write"
# Before "Registration", the tab list's last.
portal.CHART_TABS.insert(len(portal.CHART_TABS) - 1,
                         ChartTab("immunizations", "Immunizations", "/immunizations", READ))
portal.NAV.append(NavItem("Clinical", "immunizations", "Children due vaccines", "/immunizations/due", READ))
portal.NOTICES.update({
    "dose-counts": "Dose recorded: it counts on the schedule.",
    "dose-too-early": "Dose recorded, but it was given too early and does not count: the dose stays due (see why "
                      "on the schedule).",
    "dose-not-given": "Recorded as not given, with the reason; the dose stays owed.",
    "dose-extra": "Recorded as a campaign or extra dose: it counts for no dose of the series.",
    "dose-corrected": "Dose corrected; the earlier version stays in its history with your reason.",
    "dose-withdrawn": "Dose marked entered in error, with your reason; the schedule no longer counts it.",
})
FIELDS = ["vaccine", "dose_number", "given_on", "status", "not_done_reason", "lot_number", "expiry_date", "site",
          "route", "source", "note"]
CHOICES = {
    "status": [("completed", "Given"), ("not_done", "Due but not given")],
    "not_done_reason": [(k, v[0].upper() + v[1:]) for k, v in immunization.NOT_DONE_WORDS.items()],
    "source": [("administered", "Given here"), ("historical", "From the child's card or another facility")],
    "site": [("left_thigh", "Left thigh"), ("right_thigh", "Right thigh"), ("left_upper_arm", "Left upper arm"),
             ("right_upper_arm", "Right upper arm"), ("mouth", "Mouth (oral)")],
    "route": [("intramuscular", "Intramuscular"), ("subcutaneous", "Subcutaneous"), ("intradermal", "Intradermal"),
              ("oral", "Oral")],
}
DUE_STATES = ("due", "overdue")


def _timeline_doses(conn: Connection, principal: Principal, patient_id: uuid.UUID) -> list[dict]:
    rows = immunization.current_doses(conn, [patient_id])
    note_access(conn, principal, "read", patient_id, immunization.KIND, [r["id"] for r in rows])
    return rows


def _timeline_words(row: dict) -> tuple[str, str]:
    dose = f", dose {row['dose_number']}" if row["dose_number"] else " (campaign or extra dose)"
    if row["status"] == "not_done":
        return f"Vaccine {row['vaccine']}{dose} not given", immunization.NOT_DONE_WORDS[row["not_done_reason"]]
    return f"Vaccine {row['vaccine']}{dose}", "given here" if row["source"] == "administered" else "from the card"


# On the patient's timeline at the dose's own day: a correction may correct the day, so not the first version's.
portal.TIMELINE_SOURCES.append(TimelineSource("clinical", immunization.KIND, "Immunizations", READ, _timeline_doses,
                                              _timeline_words, lambda row: row["occurred_at"]))


def _page(request: Asking, tenant: str, patient_id: uuid.UUID, *, status: int = 200, values: dict | None = None,
          errors: dict | None = None, form: str = "dose", correcting: dict | None = None) -> Template:
    clock = facility_clock(request, tenant)
    schedule = schedule_of(request.app.state)
    with request.app.state.db.tenant(tenant) as conn:
        top = banner(conn, request.user, patient_id)
        found = immunization.patient_immunizations(conn, request.user, patient_id, schedule=schedule,
                                                   today=clock.today, tz=clock.tz)
    names = people_named(request.app.state.db, {d["author_id"] for d in found["doses"]}
                         | {w["withdrawn_by"] for w in found["withdrawn"]})
    return page(request, "immunization/immunizations.html", status=status, active="patients", patient_id=patient_id,
                tab="immunizations", found=found, schedule=schedule, state_words=STATE_WORDS, choices=CHOICES,
                not_done_words=immunization.NOT_DONE_WORDS, names=names, form=form, correcting=correcting,
                values=values or {"given_on": clock.today.isoformat(), "status": "completed",
                                  "source": "administered"},
                errors=errors or {}, **top, **HELPERS)


@get(PATIENT + "/immunizations", operation_id="PortalImmunizations", opt={"permission": READ},
     sync_to_thread=True, include_in_schema=False)
def immunizations_page(request: Asking, tenant: Tenant, patient_id: Id) -> Template:
    """The patient's schedule, the form to record a dose, and the doses with their corrections."""
    return _page(request, tenant, patient_id)


def _dose_in(values: dict, model: type[ImmunizationIn] = ImmunizationIn) -> ImmunizationIn:
    return model.model_validate({k: v for k, v in values.items() if k in [*FIELDS, "reason"] and v not in ("", None)})


def _write(request: Asking, tenant: str, patient_id: uuid.UUID, values: dict, act: Callable[[Connection], Any],
           done: Callable[[Any], str], *, form: str = "dose", correcting: dict | None = None) -> Response:
    """One form's write in a tenant transaction; what the schema or the layer refuses (422) comes back beside the
    field it names with the form as sent; done, the tab with what happened."""
    try:
        with request.app.state.db.tenant(tenant) as conn:
            outcome = act(conn)
    except ValidationError as exc:
        errors = field_errors(exc)
        if "form" in errors:  # the rules across fields are about the reason a dose was not given
            errors["not_done_reason"] = errors.pop("form")
    except RecordError as exc:
        if exc.status != 422:
            raise
        errors = {exc.extra.get("field") or "form": template_message(exc.detail)}
    else:
        return see_other(request, f"/t/{tenant}/patients/{patient_id}/immunizations?done={done(outcome)}")
    return _page(request, tenant, patient_id, status=422, values=values, errors=errors, form=form,
                 correcting=correcting)


def _recorded_notice(outcome: dict) -> str:
    if outcome["immunization"]["status"] == "not_done":
        return "dose-not-given"
    return {True: "dose-counts", False: "dose-too-early", None: "dose-extra"}[outcome["counts"]]


@post(PATIENT + "/immunizations", operation_id="PortalRecordImmunization", opt={"permission": WRITE},
      sync_to_thread=True, include_in_schema=False)
def record_dose(request: Asking, tenant: Tenant, patient_id: Id, data: FormData) -> Response:
    """Record a dose (given, or due and not given); one given too early is recorded and the page says it does not
    count."""
    values = form_values(data)
    clock = facility_clock(request, tenant)
    return _write(request, tenant, patient_id, values, lambda conn: immunization.record_dose(
        conn, request.user, patient_id, _dose_in(values), schedule=schedule_of(request.app.state),
        today=clock.today, tz=clock.tz), _recorded_notice)


def _current_dose(request: Asking, tenant: str, patient_id: uuid.UUID, entry_id: uuid.UUID) -> dict:
    """The dose in force named by `entry_id` (read through the patient's doses: a guessed id or a version since
    replaced is not one of them)."""
    clock = facility_clock(request, tenant)
    with request.app.state.db.tenant(tenant) as conn:
        found = immunization.patient_immunizations(conn, request.user, patient_id,
                                                   schedule=schedule_of(request.app.state), today=clock.today,
                                                   tz=clock.tz)
    dose = next((d for d in found["doses"] if d["id"] == entry_id), None)
    if dose is None:
        raise NotFound(f"no dose {entry_id} in force on this patient's chart", entry_id=str(entry_id))
    return dose


@get(PATIENT + "/immunizations/{entry_id:uuid}/correct", operation_id="PortalCorrectImmunizationForm",
     opt={"permission": WRITE}, sync_to_thread=True, include_in_schema=False)
def correct_form(request: Asking, tenant: Tenant, patient_id: Id, entry_id: Id) -> Template:
    """The form to correct a dose, filled with it as it stands."""
    dose = _current_dose(request, tenant, patient_id, entry_id)
    values = {k: ("" if dose.get(k) is None else str(dose[k])) for k in FIELDS}
    values["given_on"] = dose["given_on"].isoformat()
    return _page(request, tenant, patient_id, values=values, form="correct", correcting=dose)


@post(PATIENT + "/immunizations/{entry_id:uuid}", operation_id="PortalCorrectImmunization",
      opt={"permission": WRITE}, sync_to_thread=True, include_in_schema=False)
def correct_dose(request: Asking, tenant: Tenant, patient_id: Id, entry_id: Id, data: FormData) -> Response:
    """A corrected version of the dose, with the reason; the earlier one stays in its history."""
    values = form_values(data)
    clock = facility_clock(request, tenant)
    correcting = {"id": entry_id}

    def act(conn: Connection) -> dict:
        amended = _dose_in(values, ImmunizationAmend)
        return immunization.correct_dose(conn, request.user, patient_id, entry_id, amended, amended.reason,
                                         schedule=schedule_of(request.app.state), today=clock.today, tz=clock.tz)

    return _write(request, tenant, patient_id, values, act, lambda _: "dose-corrected", form="correct",
                  correcting=correcting)


@post(PATIENT + "/immunizations/{entry_id:uuid}/entered-in-error", operation_id="PortalWithdrawImmunization",
      opt={"permission": WRITE}, sync_to_thread=True, include_in_schema=False)
def withdraw_dose(request: Asking, tenant: Tenant, patient_id: Id, entry_id: Id, data: FormData) -> Response:
    """Mark a dose entered in error, with the reason."""
    values = form_values(data)
    return _write(request, tenant, patient_id, values, lambda conn: immunization.withdraw_dose(
        conn, request.user, patient_id, entry_id, Retraction.model_validate({"reason": values.get("reason")}).reason),
        lambda _: "dose-withdrawn", form=f"withdraw-{entry_id}")


@get("/immunizations/due", operation_id="PortalChildrenDue", opt={"permission": READ},
     sync_to_thread=True, include_in_schema=False)
def children_due(request: Asking, tenant: Tenant,
                 only: Annotated[str, QueryParameter(name="state")] = "") -> Template | Response:
    """The facility's children with a dose due or overdue, longest overdue first; `?state=` keeps due or overdue."""
    only = only.strip()
    if only and only not in DUE_STATES:
        return error_page(request, 400, f"show the children due, overdue or both; the address asked for {only[:40]!r}")
    clock = facility_clock(request, tenant)
    with request.app.state.db.tenant(tenant) as conn:
        listed = immunization.due_list(conn, request.user, schedule=schedule_of(request.app.state),
                                       today=clock.today, tz=clock.tz, only=only or None)
    return page(request, "immunization/due.html", active="immunizations", listed=listed, only=only,
                states=DUE_STATES, state_words=STATE_WORDS, **HELPERS)


ROUTES = [immunizations_page, record_dose, correct_form, correct_dose, withdraw_dose, children_due]

immunization_router = Router(path="/t/{tenant:str}", route_handlers=ROUTES,
                             exception_handlers=portal.EXCEPTION_HANDLERS, guards=[portal.care_relationship_guard],
                             tags=["portal"], include_in_schema=False)
