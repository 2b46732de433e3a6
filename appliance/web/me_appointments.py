"""The patient's own appointments, `/me/appointments` (pages) and `/api/me/appointments` (JSON, for an app):
cancel one, move it to another free time of its clinic, book a new one at a clinic that takes bookings from
patients — at a facility that holds the patient's record, under the portal's rules (`policies/appointments.toml`,
applied by `appliance/layers/operations/self_booking.py`).

As on the rest of `/me`, nothing here takes a patient id: the patient's charts at a facility come from their
session's subject (the portal's holdings), so an appointment id of anyone else's is not found. The acts are
written in the facility's transaction by the patient's own account and audited there as theirs. A patient
has no API token: the JSON API's writes take the session cookie with the CSRF token in the `x-csrf-token`
header (the `healthos_csrf` cookie's value), as a page's form carries it in a field (see web/auth.py); a
facility's API token is refused here, as on every page of the appliance's own.
"""

from __future__ import annotations

import datetime as dt
import uuid
import zoneinfo
from typing import Any

import sqlalchemy as sa
from litestar import Request, Response, Router, get, post
from litestar.datastructures import State
from litestar.exceptions import ValidationException
from litestar.params import FromPath, FromQuery, JSONBody
from litestar.response import Redirect, Template
from pydantic import BaseModel, ConfigDict, Field, field_validator

from appliance.layers.operations import scheduling, self_booking
from appliance.layers.operations.errors import NotFound
from appliance.layers.patient import portal as patient_portal
from appliance.substrate import tenancy
from appliance.substrate.problems import invalid_request_detail
from appliance.substrate.record import RecordError
from appliance.web.errors import error_page, problem, sentence
from appliance.web.portal import FormData, form_values

DONE = {"cancelled": "Your appointment is cancelled; its time is free for someone else.",
        "moved": "Your appointment is moved.", "booked": "Your appointment is booked."}
# Booked or moved, the patient reads when and where, as they would write it down: 'booked.' alone sent them
# looking for which of the list was the new one.
DONE_WHEN = {"moved": "Your appointment is moved to {when}, {clinic}, {facility}.",
             "booked": "Your appointment is booked: {when}, {clinic}, {facility}."}


def rules_of(state: State) -> self_booking.AppointmentRules:
    return self_booking.load_rules(state.settings.policies_dir / "appointments.toml")


def _holdings(state: State, request: Request) -> list[patient_portal.Holding]:
    return patient_portal.records_of(state.db, request.user)


def _at(state: State, request: Request, facility: str) -> tuple[patient_portal.Holding, list[uuid.UUID]]:
    """The facility's charts of this patient (the first one's holding names the facility), or not found."""
    charts = [h for h in _holdings(state, request) if h.tenant == facility]
    if not charts:
        # Named as the patient knows it, not by the address's code; a facility the appliance has none of, not at all.
        refusal = "no facility at this address holds a record of you"
        if state.db.tenant_exists(facility):
            refusal = f"{tenancy.facility_name(state.db, facility)} holds no record of you: its front desk registers " \
                "you first"
        raise NotFound(refusal, facility=facility)
    return charts[0], [h.patient_id for h in charts]


def _bookable(state: State, facility: str) -> dict[str, str]:
    """The facility's clinics that take bookings from patients (`self_booking` in its tenant file): code → name."""
    return {c.code: c.name for c in tenancy.applied_config(state.db, facility).clinics if c.self_booking}


def _overview(state: State, request: Request) -> list[dict]:
    """Each facility holding the patient's record: their appointments to come (each saying whether they may
    still change it themselves), the clinics they may book at, and how many they booked themselves."""
    rules = rules_of(state)
    by_facility: dict[str, list[patient_portal.Holding]] = {}
    for holding in _holdings(state, request):
        by_facility.setdefault(holding.tenant, []).append(holding)
    facilities = []
    for facility, charts in by_facility.items():
        with state.db.tenant(facility) as conn:
            now = conn.execute(sa.select(sa.func.now())).scalar_one()
            appointments = sorted((row for h in charts
                                   for row in scheduling.upcoming_of_patient(conn, request.user, h.patient_id)),
                                  key=lambda row: row["starts_at"])
            self_booked = self_booking.live_self_booked(conn, request.user)
        for row in appointments:
            row["changeable"] = self_booking.changeable(row, rules, now)
        facilities.append({"holding": charts[0], "appointments": appointments, "bookable": _bookable(state, facility),
                           "self_booked": self_booked, "now": now})
    return facilities


# -- the JSON API --------------------------------------------------------------------------------------


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    @field_validator("reason", mode="after", check_fields=False)
    @classmethod
    def _storable(cls, value: str | None) -> str | None:
        # PostgreSQL text cannot hold NUL (no person types one); a blank reason is none given.
        return value.replace("\x00", "").strip() or None if value is not None else None


class CancelIn(_In):
    reason: str | None = Field(default=None, max_length=500, description="why, for the clinic (optional)")


class MoveIn(_In):
    slot_id: uuid.UUID = Field(description="a free slot of the same clinic, as the move's slots list gives it")


class BookIn(_In):
    facility: str = Field(min_length=1, max_length=40, description="a facility that holds your record")
    slot_id: uuid.UUID = Field(description="a free slot of a clinic that takes bookings, as its slots list gives it")
    reason: str | None = Field(default=None, max_length=500, description="what it is for (optional)")


class AppointmentOut(BaseModel):
    """One of your appointments; times are the facility's own (with their offset from UTC)."""

    facility: str
    facility_name: str
    id: uuid.UUID
    clinic_code: str
    clinic: str
    starts_at: dt.datetime
    status: str
    changeable: bool = Field(description="whether you may still cancel or move it yourself (APT-001)")
    change_until: dt.datetime | None = Field(description="the last moment you may cancel or move it yourself")


class ClinicOut(BaseModel):
    facility: str
    facility_name: str
    clinic_code: str
    clinic: str


class RulesOut(BaseModel):
    cancel_cutoff_hours: int
    live_self_booked: int
    weeks_ahead: int


class AppointmentsOut(BaseModel):
    appointments: list[AppointmentOut]
    bookable: list[ClinicOut] = Field(description="clinics where you may book, at facilities that hold your record")
    rules: RulesOut


class SlotOut(BaseModel):
    id: uuid.UUID
    starts_at: dt.datetime
    ends_at: dt.datetime


class DayOut(BaseModel):
    day: dt.date
    slots: list[SlotOut]


class SlotsOut(BaseModel):
    facility: str
    clinic_code: str
    clinic: str
    time_zone: str
    days: list[DayOut] = Field(description="free times from the cut-off (APT-001: a time booked or moved to must be "
                                           "one the patient could still cancel) to the portal's horizon, by the "
                                           "facility's day")


def _appointment_out(holding: patient_portal.Holding, row: dict, clinic: str,
                     rules: self_booking.AppointmentRules, now: dt.datetime) -> AppointmentOut:
    local = row["starts_at"].astimezone(zoneinfo.ZoneInfo(holding.timezone))
    return AppointmentOut(facility=holding.tenant, facility_name=holding.facility, id=row["id"],
                          clinic_code=row["clinic_code"], clinic=clinic, starts_at=local, status=row["status"],
                          changeable=self_booking.changeable(row, rules, now),
                          change_until=local - rules.cutoff if row["status"] == "booked" else None)


def _slots_out(holding: patient_portal.Holding, clinic_code: str, clinic: str,
               days: list[tuple[dt.date, list[dict]]]) -> SlotsOut:
    zone = zoneinfo.ZoneInfo(holding.timezone)
    return SlotsOut(facility=holding.tenant, clinic_code=clinic_code, clinic=clinic, time_zone=holding.timezone,
                    days=[DayOut(day=day, slots=[SlotOut(id=s["id"], starts_at=s["starts_at"].astimezone(zone),
                                                         ends_at=s["ends_at"].astimezone(zone)) for s in free])
                          for day, free in days])


def _now(conn) -> dt.datetime:
    return conn.execute(sa.select(sa.func.now())).scalar_one()


@get("/appointments", operation_id="PatientListAppointments", opt={"permission": "patient.appointment.read"},
     sync_to_thread=True)
def list_appointments(request: Request, state: State) -> AppointmentsOut:
    """Your appointments still to come at every facility that holds your record, whether you may still cancel
    or move each yourself, and the clinics where you may book."""
    rules = rules_of(state)
    appointments, bookable = [], []
    for facility in _overview(state, request):
        holding = facility["holding"]
        appointments += [_appointment_out(holding, a, a["clinic"], rules, facility["now"])
                         for a in facility["appointments"]]
        bookable += [ClinicOut(facility=holding.tenant, facility_name=holding.facility, clinic_code=code, clinic=name)
                     for code, name in facility["bookable"].items()]
    return AppointmentsOut(appointments=appointments, bookable=bookable, rules=RulesOut(**rules.model_dump()))


def _move_slots(state: State, request: Request, facility: str, appointment_id: uuid.UUID
                ) -> tuple[patient_portal.Holding, dict, list[tuple[dt.date, list[dict]]]]:
    holding, charts = _at(state, request, facility)
    with state.db.tenant(facility) as conn:
        found = self_booking.own(conn, request.user, charts, appointment_id)
        days = self_booking.free_slots(conn, found["clinic_code"], rules_of(state))
    return holding, found, days


@get("/appointments/{facility:str}/{appointment_id:uuid}/slots", operation_id="PatientListMoveSlots",
     opt={"permission": "patient.appointment.read"}, sync_to_thread=True)
def move_slots(request: Request, state: State, facility: FromPath[str],
               appointment_id: FromPath[uuid.UUID]) -> SlotsOut:
    """The free times of your appointment's clinic you may move it to, by day (the facility's time)."""
    holding, found, days = _move_slots(state, request, facility, appointment_id)
    return _slots_out(holding, found["clinic_code"], found["clinic"], days)


def _book_slots(state: State, request: Request, facility: str, clinic_code: str
                ) -> tuple[patient_portal.Holding, str, list[tuple[dt.date, list[dict]]]]:
    holding, _ = _at(state, request, facility)
    bookable = _bookable(state, facility)
    if clinic_code not in bookable:
        raise self_booking.NotOffered("that clinic does not take bookings on the portal: phone "
                                      f"{holding.whom_to_phone} to book", clinic_code=clinic_code)
    with state.db.tenant(facility) as conn:
        days = self_booking.free_slots(conn, clinic_code, rules_of(state))
    return holding, bookable[clinic_code], days


@get("/clinics/{facility:str}/{clinic_code:str}/slots", operation_id="PatientListBookableSlots",
     opt={"permission": "patient.appointment.read"}, sync_to_thread=True)
def book_slots(request: Request, state: State, facility: FromPath[str], clinic_code: FromPath[str]) -> SlotsOut:
    """The free times of a clinic that takes bookings from patients, by day (the facility's time)."""
    holding, clinic, days = _book_slots(state, request, facility, clinic_code)
    return _slots_out(holding, clinic_code, clinic, days)


def _cancel(state: State, request: Request, facility: str, appointment_id: uuid.UUID, reason: str | None
            ) -> AppointmentOut:
    holding, charts = _at(state, request, facility)
    rules = rules_of(state)
    with state.db.tenant(facility) as conn:
        row = self_booking.cancel(conn, request.user, charts, appointment_id, reason, rules, holding.whom_to_phone)
        return _appointment_out(holding, row, row["clinic"], rules, _now(conn))


@post("/appointments/{facility:str}/{appointment_id:uuid}/cancel", operation_id="PatientCancelAppointment",
      opt={"permission": "patient.appointment.cancel"}, sync_to_thread=True, status_code=200)
def cancel_appointment(request: Request, state: State, facility: FromPath[str], appointment_id: FromPath[uuid.UUID],
                       data: JSONBody[CancelIn]) -> AppointmentOut:
    """Cancel one of your appointments, up to the cut-off before it begins (APT-001; later, 409: phone the
    clinic). Its time is free for others at once."""
    return _cancel(state, request, facility, appointment_id, data.reason)


def _move(state: State, request: Request, facility: str, appointment_id: uuid.UUID, slot_id: uuid.UUID
          ) -> AppointmentOut:
    holding, charts = _at(state, request, facility)
    rules = rules_of(state)
    with state.db.tenant(facility) as conn:
        row = self_booking.move(conn, request.user, charts, appointment_id, slot_id, rules, holding.whom_to_phone)
        return _appointment_out(holding, row, row["clinic"], rules, _now(conn))


@post("/appointments/{facility:str}/{appointment_id:uuid}/move", operation_id="PatientMoveAppointment",
      opt={"permission": "patient.appointment.move"}, sync_to_thread=True, status_code=200)
def move_appointment(request: Request, state: State, facility: FromPath[str], appointment_id: FromPath[uuid.UUID],
                     data: JSONBody[MoveIn]) -> AppointmentOut:
    """Move one of your appointments to another free time of its clinic, up to the cut-off (409 after it, and
    for a time someone else has)."""
    return _move(state, request, facility, appointment_id, data.slot_id)


def _book(state: State, request: Request, facility: str, slot_id: uuid.UUID, reason: str | None) -> AppointmentOut:
    holding, _ = _at(state, request, facility)
    rules = rules_of(state)
    bookable = _bookable(state, facility)
    with state.db.tenant(facility) as conn:
        row = self_booking.book(conn, request.user, holding.patient_id, slot_id, reason, rules, bookable,
                                holding.whom_to_phone)
        return _appointment_out(holding, row, bookable[row["clinic_code"]], rules, _now(conn))


@post("/appointments", operation_id="PatientBookAppointment", opt={"permission": "patient.appointment.book"},
      sync_to_thread=True)
def book_appointment(request: Request, state: State, data: JSONBody[BookIn]) -> AppointmentOut:
    """Book a free time at a clinic that takes bookings from patients, at a facility that holds your record:
    at most a few still to come that you booked yourself (APT-002; more is a 409)."""
    return _book(state, request, data.facility, data.slot_id, data.reason)


def _api_refusal(_: Request, exc: RecordError) -> Response:
    return problem(exc.status, exc.detail, **exc.extra)


def _api_invalid(_: Request, exc: ValidationException) -> Response:
    errors = exc.extra if isinstance(exc.extra, list) else []
    return problem(422, invalid_request_detail(errors, exc.detail), errors=errors)


api_router = Router(path="/api/me", route_handlers=[list_appointments, move_slots, book_slots, cancel_appointment,
                                                    move_appointment, book_appointment],
                    exception_handlers={RecordError: _api_refusal, ValidationException: _api_invalid},
                    tags=["patient"])


# -- the pages -----------------------------------------------------------------------------------------


def _done(done: str | None, appointment: str | None, facilities: list[dict]) -> str | None:
    """What was done, said at the top of the list: a booking or a move names its day, time (the facility's, as
    the list's) and clinic, found among the patient's own appointments to come (an id of anyone else's is not)."""
    found = next(((f["holding"], a) for f in facilities for a in f["appointments"]
                  if str(a["id"]) == appointment), None)
    if done in DONE_WHEN and found is not None:
        holding, row = found
        return DONE_WHEN[done].format(when=row["local_start"].strftime("%A %d %B %Y at %H:%M"), clinic=row["clinic"],
                                      facility=holding.facility)
    return DONE.get(done or "")


@get("/", operation_id="PatientAppointmentsPage", opt={"permission": "patient.appointment.read"},
     sync_to_thread=True, include_in_schema=False)
def appointments_page(request: Request, state: State, done: FromQuery[str | None] = None,
                      appointment: FromQuery[str | None] = None) -> Template:
    facilities = _overview(state, request)
    return Template("me_appointments.html", context={
        "principal": request.user, "tab": "appointments", "facilities": facilities,
        "rules": rules_of(state), "done": _done(done, appointment, facilities)})


def _slots_page(request: Request, state: State, *, holding: patient_portal.Holding, clinic: str, action: str,
                days: list, moving: dict | None = None, refusal: str | None = None, status: int = 200,
                reason: str | None = None) -> Template:
    return Template("me_slots.html", status_code=status, context={
        "principal": request.user, "tab": "appointments", "holding": holding, "clinic": clinic, "action": action,
        "days": days, "moving": moving, "rules": rules_of(state), "refusal": refusal, "reason": reason})


@get("/{facility:str}/{appointment_id:uuid}/move", operation_id="PatientMoveAppointmentPage",
     opt={"permission": "patient.appointment.read"}, sync_to_thread=True, include_in_schema=False)
def move_page(request: Request, state: State, facility: FromPath[str], appointment_id: FromPath[uuid.UUID]) -> Template:
    return _move_page(request, state, facility, appointment_id)


def _move_page(request: Request, state: State, facility: str, appointment_id: uuid.UUID, *,
               refusal: str | None = None, status: int = 200) -> Template:
    holding, found, days = _move_slots(state, request, facility, appointment_id)
    return _slots_page(request, state, holding=holding, clinic=found["clinic"], days=days, moving=found,
                       action=f"/me/appointments/{facility}/{appointment_id}/move", refusal=refusal, status=status)


def _refused_on_slots(act, slots_again, done: str) -> Response:
    """`act`, then the list saying it was `done` and when the appointment now is; or, refused as a person can
    answer by choosing again (a time taken meanwhile, none chosen, the limit reached: 409, 422), the free times
    again with the refusal at their top: a page saying only 'choose another' left a patient on their phone with
    nothing to choose from."""
    try:
        made: AppointmentOut = act()
    except (RecordError, ValidationException) as exc:
        status = exc.status if isinstance(exc, RecordError) else 422
        if status not in (409, 422):
            raise
        return slots_again(sentence(exc.detail), status)
    return Redirect(f"/me/appointments?done={done}&appointment={made.id}", status_code=303)


def _slot_of(values: dict[str, Any]) -> uuid.UUID:
    try:
        return uuid.UUID(values.get("slot_id") or "")
    except ValueError:
        raise ValidationException("choose a time first") from None


@post("/{facility:str}/{appointment_id:uuid}/move", operation_id="PatientMoveAppointmentForm",
      opt={"permission": "patient.appointment.move"}, sync_to_thread=True, include_in_schema=False)
def move_form(request: Request, state: State, facility: FromPath[str], appointment_id: FromPath[uuid.UUID],
              data: FormData) -> Response:
    values = form_values(data)
    return _refused_on_slots(
        lambda: _move(state, request, facility, appointment_id, _slot_of(values)),
        lambda refusal, status: _move_page(request, state, facility, appointment_id, refusal=refusal, status=status),
        "moved")


@post("/{facility:str}/{appointment_id:uuid}/cancel", operation_id="PatientCancelAppointmentForm",
      opt={"permission": "patient.appointment.cancel"}, sync_to_thread=True, include_in_schema=False)
def cancel_form(request: Request, state: State, facility: FromPath[str], appointment_id: FromPath[uuid.UUID],
                data: FormData) -> Redirect:
    reason = form_values(data).get("reason")
    if reason is not None and len(reason) > 500:
        raise ValidationException("say why in at most 500 characters")
    _cancel(state, request, facility, appointment_id, reason)
    return Redirect("/me/appointments?done=cancelled", status_code=303)


@get("/{facility:str}/book/{clinic_code:str}", operation_id="PatientBookAppointmentPage",
     opt={"permission": "patient.appointment.read"}, sync_to_thread=True, include_in_schema=False)
def book_page(request: Request, state: State, facility: FromPath[str], clinic_code: FromPath[str]) -> Template:
    return _book_page(request, state, facility, clinic_code)


def _book_page(request: Request, state: State, facility: str, clinic_code: str, *, refusal: str | None = None,
               status: int = 200, reason: str | None = None) -> Template:
    holding, clinic, days = _book_slots(state, request, facility, clinic_code)
    return _slots_page(request, state, holding=holding, clinic=clinic, days=days, reason=reason,
                       action=f"/me/appointments/{facility}/book/{clinic_code}", refusal=refusal, status=status)


@post("/{facility:str}/book/{clinic_code:str}", operation_id="PatientBookAppointmentForm",
      opt={"permission": "patient.appointment.book"}, sync_to_thread=True, include_in_schema=False)
def book_form(request: Request, state: State, facility: FromPath[str], clinic_code: FromPath[str],
              data: FormData) -> Response:
    values = form_values(data)
    reason = values.get("reason")
    if reason is not None and len(reason) > 500:
        raise ValidationException("say what it is for in at most 500 characters")
    return _refused_on_slots(
        lambda: _book(state, request, facility, _slot_of(values), reason),
        lambda refusal, status: _book_page(request, state, facility, clinic_code, refusal=refusal, status=status,
                                           reason=reason),
        "booked")


def _page_refusal(request: Request, exc: RecordError) -> Response:
    return error_page(request, exc.status, exc.detail)


def _page_invalid(request: Request, exc: ValidationException) -> Response:
    return error_page(request, 422, exc.detail)


pages_router = Router(path="/me/appointments", route_handlers=[appointments_page, move_page, move_form, cancel_form,
                                                               book_page, book_form],
                      exception_handlers={RecordError: _page_refusal, ValidationException: _page_invalid},
                      tags=["patient"])

ROUTES = [api_router, pages_router]
