"""The operating theatre in the tenant portal: the day's theatre list at `/t/{tenant}/theatre` (by theatre, in time
order, each case's state and checklist progress), a case's page with the WHO Surgical Safety Checklist's phases as
forms, its moves and its operation note, and "Book surgery" from the patient's chart.

It keeps the portal's rules (see `portal.py`): server-rendered, no script; each route declares the permission the
theatre API declares for the same act (`clinical.surgery.read`, `.write`, `.checklist`); the list and the case are
the theatre's, case-scoped as the API's are (no chart is opened from them; the case shows the record's active
allergies, which the Sign In asks about), and booking is a chart page behind the care-relationship guard; forms
carry the CSRF token and Post/Redirect/Get; a refusal is the page again with its sentence at the top and beside the
field at fault, what was typed kept, nothing written. The record is read and written only through the clinical
layer's `surgery` service (and its allergies through `service`), which audit each patient listed and each act.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from typing import Annotated

from litestar import Response, Router, get, post
from litestar.params import FromPath, QueryParameter
from litestar.response import Template
from pydantic import ValidationError

from appliance.layers.clinical import service, surgery
from appliance.layers.clinical.surgery_schemas import OperationNoteCorrection, OperationNoteIn, PhaseIn, SurgeryIn
from appliance.substrate.record import RecordError
from appliance.web import portal
from appliance.web.errors import error_page, sentence
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
    see_other,
)

portal.NAV.append(portal.NavItem("Clinical", "theatre", "Theatre list", "/theatre", "clinical.surgery.read"))
portal.NOTICES.update({
    "surgery-booked": "Operation booked: it is on the theatre list for its day.",
    "phase-recorded": "Checklist phase recorded.",
    "case-moved": "The case's state is changed.",
    "note-signed": "Operation note signed.",
    "note-corrected": "Operation note corrected; the earlier version stays in its history.",
    "booking-corrected": "Booking corrected; the earlier version stays in the case's history. A case moved to "
                         "another day or theatre says its Sign In again.",
    "case-withdrawn": "The case is marked entered in error: it has left the list, and any charge of it is credited.",
})
URGENCIES = {"elective": "Elective", "urgent": "Urgent", "emergency": "Emergency"}
ANAESTHESIA = {"general": "General", "spinal": "Spinal", "epidural": "Epidural", "regional_block": "Regional block",
               "local": "Local", "sedation": "Sedation"}


def _timeline_words(row: dict) -> tuple[str, str]:
    detail = f"{row['theatre_name'] or row['theatre']}, {row['surgeon']}; checklist {row['phases_done']}/3"
    if row["cancel_reason"]:
        detail += f"; cancelled: {row['cancel_reason']}"
    return f"Operation: {row['procedure']} ({surgery.STATUS_WORDS[row['status']]})", detail


# On the patient's timeline at the time the operation was planned for (or began, once it did).
portal.TIMELINE_SOURCES.append(portal.TimelineSource("clinical", "surgery", "Operations", "clinical.surgery.read",
                                                     surgery.patient_cases, _timeline_words,
                                                     lambda row: row["started_at"] or row["planned_at"]))
NOTE_FIELDS = ("procedure_performed", "findings", "complications", "blood_loss_ml", "implants", "specimens",
               "post_op_instructions")


@get("/theatre", operation_id="PortalTheatreList", opt={"permission": "clinical.surgery.read"}, sync_to_thread=True,
     include_in_schema=False)
def theatre_list(request: Asking, tenant: Tenant,
                 day: Annotated[str, QueryParameter(description="YYYY-MM-DD")] = "") -> Template:
    """The day's cases by theatre (today unless `?day=`)."""
    clock = facility_clock(request, tenant)
    try:
        shown = dt.date.fromisoformat(day) if day else clock.today
    except ValueError:
        return error_page(request, 400, f"give the day as YYYY-MM-DD; the address asked for {day[:20]!r}")
    with request.app.state.db.tenant(tenant) as conn:
        listed = surgery.theatre_list(conn, request.user, shown, clock.tz)
    return page(request, "theatre/list.html", active="theatre", listed=listed,
                previous=shown - dt.timedelta(days=1), following=shown + dt.timedelta(days=1),
                statuses=surgery.STATUS_WORDS, urgencies=URGENCIES, **HELPERS)


def _case_page(request: Asking, tenant: str, case_id: uuid.UUID, *, status: int = 200, refusal: str | None = None,
               form: str = "", values: dict | None = None, errors: dict | None = None) -> Template:
    with request.app.state.db.tenant(tenant) as conn:
        found = surgery.case(conn, request.user, case_id)
        theatres, procedures = surgery.theatres(conn), surgery.procedures(conn)
        # The Sign In asks the team whether the patient has a known allergy: the record's answer is beside it (the
        # read audited), where the theatre nurse had only the patient's word.
        allergies = service.list_allergies(conn, request.user, found["patient_id"], active_only=True) \
            if request.user.can("clinical.allergy.read") else None
    note = found["note"]
    names = portal.people_named(request.app.state.db, {note["author_id"]} if note else set())
    return page(request, "theatre/case.html", status=status, active="theatre", case=found, allergies=allergies,
                refusal=refusal, form=form, values=values or {}, errors=errors or {}, names=names,
                statuses=surgery.STATUS_WORDS,
                urgencies=URGENCIES, anaesthesia=ANAESTHESIA, theatres=theatres, procedures=procedures,
                booked=_booked_values(found, facility_clock(request, tenant)), **HELPERS)


@get("/theatre/cases/{case_id:uuid}", operation_id="PortalTheatreCase", opt={"permission": "clinical.surgery.read"},
     sync_to_thread=True, include_in_schema=False)
def case_page(request: Asking, tenant: Tenant, case_id: Id) -> Template:
    """One case: what was booked, the checklist's phases, its moves and its operation note."""
    return _case_page(request, tenant, case_id)


def _act(request: Asking, tenant: str, case_id: uuid.UUID, act: Callable, done: str, *, form: str,
         values: dict) -> Response | Template:
    """A case form's act in one transaction; refused (409, 422), the case again with the sentence at its top and
    beside the field it names; done, the case with the notice."""
    try:
        with request.app.state.db.tenant(tenant) as conn:
            act(conn)
    except RecordError as exc:
        if exc.status not in {409, 422}:
            raise
        field = exc.extra.get("field")
        return _case_page(request, tenant, case_id, status=exc.status, refusal=sentence(exc.detail), form=form,
                          values=values, errors={field: sentence(exc.detail)} if field else {})
    return see_other(request, f"/t/{tenant}/theatre/cases/{case_id}?done={done}")


def _refused(request: Asking, tenant: str, case_id: uuid.UUID, exc: ValidationError, form: str,
             values: dict) -> Template:
    named = field_errors(exc)
    return _case_page(request, tenant, case_id, status=422, form=form, values=values, errors=named,
                      refusal=" ".join(f"{k.replace('_', ' ').capitalize()}: {v}" for k, v in named.items()))


@post("/theatre/cases/{case_id:uuid}/checklist/{phase:str}", operation_id="PortalRecordChecklistPhase",
      opt={"permission": "clinical.surgery.checklist"}, sync_to_thread=True, include_in_schema=False)
def record_phase(request: Asking, tenant: Tenant, case_id: Id, phase: FromPath[str],
                 data: FormData) -> Response | Template:
    """A phase of the checklist: each item's box ticked as it is confirmed aloud."""
    values = form_values(data)
    form = f"phase-{phase}"
    found = surgery.PHASES.get(phase)
    confirmed = [key for key, _ in found.items if values.get(f"c_{key}") == "yes"] if found else []
    try:
        asked = PhaseIn.model_validate({"confirmed": confirmed, "note": values.get("note"),
                                        "version_id": values.get("version_id")})
    except ValidationError as exc:
        return _refused(request, tenant, case_id, exc, form, values)
    return _act(request, tenant, case_id, lambda conn: surgery.record_phase(conn, request.user, case_id, phase, asked),
                "phase-recorded", form=form, values=values)


@post("/theatre/cases/{case_id:uuid}/status", operation_id="PortalMoveSurgery",
      opt={"permission": "clinical.surgery.write"}, sync_to_thread=True, include_in_schema=False)
def move(request: Asking, tenant: Tenant, case_id: Id, data: FormData) -> Response | Template:
    """Into theatre, completed, or cancelled with a reason."""
    values = form_values(data)
    to = values.get("to") or ""
    form = f"move-{to}"
    if to == "cancelled" and len(values.get("reason") or "") < 3:
        return _case_page(request, tenant, case_id, status=422, form=form, values=values,
                          refusal="Say why the case is cancelled.",
                          errors={"reason": "Say why the case is cancelled (at least 3 characters)."})
    if to not in ("in_theatre", "completed", "cancelled"):
        return _case_page(request, tenant, case_id, status=422, refusal="Choose what happens to the case.")
    return _act(request, tenant, case_id, lambda conn: surgery.move(
        conn, request.user, case_id, to, reason=values.get("reason"),
        version_id=uuid.UUID(values["version_id"]) if values.get("version_id") else None),
                "case-moved", form=form, values=values)


def _note_body(values: dict) -> dict:
    # A field left blank is sent as nothing, so its refusal is the field's own ("This is required.").
    return {key: values.get(key) or ("" if key in ("procedure_performed", "findings", "post_op_instructions")
                                      else None) for key in NOTE_FIELDS}


@post("/theatre/cases/{case_id:uuid}/note", operation_id="PortalWriteOperationNote",
      opt={"permission": "clinical.surgery.write"}, sync_to_thread=True, include_in_schema=False)
def write_note(request: Asking, tenant: Tenant, case_id: Id, data: FormData) -> Response | Template:
    """The operation note, signed by the one sending it."""
    values = form_values(data)
    try:
        asked = OperationNoteIn.model_validate(_note_body(values))
    except ValidationError as exc:
        return _refused(request, tenant, case_id, exc, "note", values)
    return _act(request, tenant, case_id, lambda conn: surgery.write_note(conn, request.user, case_id, asked),
                "note-signed", form="note", values=values)


@post("/theatre/cases/{case_id:uuid}/note/correction", operation_id="PortalCorrectOperationNote",
      opt={"permission": "clinical.surgery.write"}, sync_to_thread=True, include_in_schema=False)
def correct_note(request: Asking, tenant: Tenant, case_id: Id, data: FormData) -> Response | Template:
    """The note's correction, with the reason."""
    values = form_values(data)
    try:
        asked = OperationNoteCorrection.model_validate(
            _note_body(values) | {"reason": values.get("reason") or "", "version_id": values.get("version_id")})
    except ValidationError as exc:
        return _refused(request, tenant, case_id, exc, "correct-note", values)
    body = OperationNoteIn.model_validate(asked.model_dump(exclude={"reason", "version_id"}))
    return _act(request, tenant, case_id, lambda conn: surgery.correct_note(
        conn, request.user, case_id, body, asked.reason, asked.version_id), "note-corrected", form="correct-note",
                values=values)


# -- booking, from the chart ---------------------------------------------------------------------------


def _booking_page(request: Asking, tenant: str, patient_id: uuid.UUID, *, status: int = 200,
                  values: dict | None = None, errors: dict | None = None) -> Template:
    clock = facility_clock(request, tenant)
    with request.app.state.db.tenant(tenant) as conn:
        top = banner(conn, request.user, patient_id)
        theatres, procedures = surgery.theatres(conn), surgery.procedures(conn)
    values = values or {"planned_on": clock.today.isoformat(), "urgency": "elective", "anaesthesia": "general"}
    return page(request, "theatre/book.html", status=status, active="patients", patient_id=patient_id,
                tab="summary", **top, values=values, errors=errors or {}, theatres=theatres, procedures=procedures,
                urgencies=URGENCIES, anaesthesia=ANAESTHESIA, **HELPERS)


@get(PATIENT + "/surgery/new", operation_id="PortalBookSurgeryForm", opt={"permission": "clinical.surgery.write"},
     sync_to_thread=True, include_in_schema=False)
def booking_form(request: Asking, tenant: Tenant, patient_id: Id) -> Template:
    """Book surgery: the form, today's date filled in."""
    return _booking_page(request, tenant, patient_id)


def _booking(values: dict, clock: Clock) -> SurgeryIn:
    """The API's booking from the form; raises ValidationError, or ValueError for a day or time that is not one."""
    planned_at = dt.datetime.combine(dt.date.fromisoformat(values.get("planned_on") or ""),
                                     dt.time.fromisoformat(values.get("planned_time") or ""), clock.tz)
    body = {key: values.get(key) for key in ("procedure", "procedure_code", "theatre", "surgeon", "anaesthetist",
                                             "urgency", "anaesthesia", "encounter_id")}
    # A required field left blank is sent as '', so its refusal is the field's own ("This is required.").
    required = {key: body[key] or "" for key in ("procedure", "surgeon", "theatre")}
    return SurgeryIn.model_validate({**body, **required, "planned_at": planned_at})


_UNTIMED = "Give the day and the time the case is planned to start (e.g. 09:30)."


def _booked_values(found: dict, clock: Clock) -> dict:
    """The booking form's fields from the case in force (for its correction)."""
    local = clock.local(found["planned_at"])
    return {"procedure": found["procedure"], "procedure_code": found["procedure_code"] or "",
            "planned_on": local.date().isoformat(), "planned_time": local.strftime("%H:%M"),
            "theatre": found["theatre"], "surgeon": found["surgeon"], "anaesthetist": found["anaesthetist"] or "",
            "urgency": found["urgency"], "anaesthesia": found["anaesthesia"]}


@post(PATIENT + "/surgery", operation_id="PortalBookSurgery", opt={"permission": "clinical.surgery.write"},
      sync_to_thread=True, include_in_schema=False)
def book(request: Asking, tenant: Tenant, patient_id: Id, data: FormData) -> Response | Template:
    """Book the operation; the case's page follows."""
    values = form_values(data)
    try:
        asked = _booking(values, facility_clock(request, tenant))
        with request.app.state.db.tenant(tenant) as conn:
            booked = surgery.book(conn, request.user, patient_id, asked)
    except ValidationError as exc:
        return _booking_page(request, tenant, patient_id, status=422, values=values, errors=field_errors(exc))
    except ValueError:
        return _booking_page(request, tenant, patient_id, status=422, values=values, errors={"planned_on": _UNTIMED})
    except RecordError as exc:
        if exc.status not in {409, 422}:
            raise
        return _booking_page(request, tenant, patient_id, status=exc.status, values=values,
                             errors={exc.extra.get("field") or "form": sentence(exc.detail)})
    return see_other(request, f"/t/{tenant}/theatre/cases/{booked['root_id']}?done=surgery-booked")


@post("/theatre/cases/{case_id:uuid}/correction", operation_id="PortalCorrectSurgery",
      opt={"permission": "clinical.surgery.write"}, sync_to_thread=True, include_in_schema=False)
def correct_booking(request: Asking, tenant: Tenant, case_id: Id, data: FormData) -> Response | Template:
    """Correct what was booked, with the reason; the case's state and checklist are kept."""
    values = form_values(data)
    reason = values.get("reason") or ""
    if len(reason) < 3:
        return _case_page(request, tenant, case_id, status=422, form="correct", values=values,
                          refusal="Say why the booking is corrected.",
                          errors={"reason": "Say why the booking is corrected (at least 3 characters)."})
    try:
        asked = _booking(values, facility_clock(request, tenant))
    except ValidationError as exc:
        return _refused(request, tenant, case_id, exc, "correct", values)
    except ValueError:
        return _case_page(request, tenant, case_id, status=422, form="correct", values=values, refusal=_UNTIMED,
                          errors={"planned_on": _UNTIMED})
    version = uuid.UUID(values["version_id"]) if values.get("version_id") else uuid.UUID(int=0)
    return _act(request, tenant, case_id, lambda conn: surgery.correct(conn, request.user, case_id, asked, reason,
                                                                      version), "booking-corrected", form="correct",
                values=values)


@post("/theatre/cases/{case_id:uuid}/entered-in-error", operation_id="PortalRetractSurgery",
      opt={"permission": "clinical.surgery.write"}, sync_to_thread=True, include_in_schema=False)
def retract(request: Asking, tenant: Tenant, case_id: Id, data: FormData) -> Response | Template:
    """Mark the case entered in error, with the reason; the theatre list follows."""
    values = form_values(data)
    reason = values.get("reason") or ""
    if len(reason) < 3:
        return _case_page(request, tenant, case_id, status=422, form="retract", values=values,
                          refusal="Say why the case is entered in error.",
                          errors={"reason": "Say why the case is entered in error (at least 3 characters)."})
    with request.app.state.db.tenant(tenant) as conn:
        surgery.retract(conn, request.user, case_id, reason)
    return see_other(request, f"/t/{tenant}/theatre?done=case-withdrawn")


ROUTES = [theatre_list, case_page, record_phase, move, write_note, correct_note, correct_booking, retract]
CHART_ROUTES = [booking_form, book]

theatre_router = Router(path="/t/{tenant:str}", route_handlers=ROUTES, exception_handlers=portal.EXCEPTION_HANDLERS,
                        tags=["portal"], include_in_schema=False)
booking_router = Router(path="/t/{tenant:str}", route_handlers=CHART_ROUTES,
                        exception_handlers=portal.EXCEPTION_HANDLERS, guards=[portal.care_relationship_guard],
                        tags=["portal"], include_in_schema=False)
