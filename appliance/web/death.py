"""The tenant portal's death certification pages: "Record death" from the patient's chart (a form laid out as
the WHO international form of medical certificate of cause of death), the certificate as a printable page,
its correction with a reason, marking it entered in error (wrong patient), the facility's deaths still
to certify, and the correction of a departure recorded as died by mistake (from the form that certifies it).

It keeps the portal's rules (see `portal.py`): each route declares the permission the API declares for the
same act (`clinical.death.read`, `clinical.death.write`, `clinical.entry.retract`); patient pages pass the
care-relationship guard; the record is read and written only through the clinical layer's death service
(appliance/layers/clinical/death.py; every write an entry through `record.append`, audited there); what is
refused comes back next to its field with what was typed kept (422); Post/Redirect/Get. The certificate page
needs no script: the browser's own print command prints it, the portal's navigation left off by its print
stylesheet.
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
from sqlalchemy.engine import Connection

from appliance.layers.clinical import death, service
from appliance.layers.clinical.death_routes import link_to_person
from appliance.layers.clinical.errors import NotFound
from appliance.layers.clinical.schemas import DeathIn, Retraction
from appliance.layers.operations import deaths as operations_deaths
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

portal.NAV.append(portal.NavItem("Clinical", "deaths", "Deaths to certify", "/deaths/to-certify",
                                 "clinical.death.read"))
portal.NOTICES.update({
    "death-certified": "Death certified. The person is recorded deceased at every facility; their booked "
                       "appointments were cancelled and open visits ended. An admitted patient is discharged "
                       "by the bed manager (disposition died).",
    "death-certified-kept": "Death certified on this chart; its booked appointments were cancelled and open visits "
                            "ended. It is not shown at other facilities for now: see below why.",
    "death-corrected": "Certificate corrected; the previous version stays in its history.",
    "departure-corrected": "Departure corrected, with your reason: the patient is no longer recorded as died here "
                           "nor among the deaths to certify. The version recorded as died stays in this history.",
    "death-retracted": "Certificate marked entered in error, with your reason. The person is no longer recorded "
                       "deceased; the certificate stays readable in its history.",
})

PART2_ROWS = 3
# A refusal's field in the API's words, as the form names it.
_LINE_FIELD = re.compile(r"^part1\.([a-d])\.code$")
_PART2_FIELD = re.compile(r"^part2\.(\d+)\.code$")


def _form_field(field: str | None) -> str:
    if not field:
        return "form"
    if field == "died_at":
        return "died_on"
    if match := _LINE_FIELD.match(field):
        return f"{match.group(1)}_code"
    if match := _PART2_FIELD.match(field):
        return f"p2_{match.group(1)}_code"
    return field


def _body(values: dict, clock: Clock) -> tuple[dict, dict[str, str]]:
    """The API's body from the form, and what the form itself gets wrong (a time that is not one, a line of
    Part 1 left empty above a used one)."""
    errors: dict[str, str] = {}
    died_at: str | None = None
    try:
        day = dt.date.fromisoformat(values.get("died_on") or "")
        moment = dt.time.fromisoformat(values.get("died_time") or "")
        died_at = dt.datetime.combine(day, moment, tzinfo=clock.tz).isoformat()
    except ValueError:
        errors["died_on"] = "Give the date and the time of death (the time as the clock read, e.g. 04:30)."
    lines = [line for line in death.LINES if values.get(f"{line}_code")]
    used = death.LINES[:len(lines)]
    if lines != list(used):
        gap = next(line for line in used if line not in lines)
        errors[f"{gap}_code"] = "Leave no line empty above a line you used: each line is due to the one below it."
    if not values.get("a_code"):
        errors.setdefault("a_code", "Give the disease or condition leading directly to death (line a).")
    body = {"died_at": died_at, "place": values.get("place"), "place_other": values.get("place_other"),
            "part1": [{"code": values[f"{line}_code"], "interval": values.get(f"{line}_interval")} for line in lines],
            "part2": [{"code": values[f"p2_{i}_code"], "interval": values.get(f"p2_{i}_interval")}
                      for i in range(PART2_ROWS) if values.get(f"p2_{i}_code")],
            "manner": values.get("manner"), "pregnancy": values.get("pregnancy")}
    return body, errors


def _values_of(certificate: dict, clock: Clock) -> dict:
    """The form's fields from a certificate (for its correction)."""
    local = clock.local(certificate["died_at"])
    values: dict[str, Any] = {"died_on": local.date().isoformat(), "died_time": local.strftime("%H:%M"),
                              "place": certificate["place"], "place_other": certificate["place_other"],
                              "manner": certificate["manner"], "pregnancy": certificate["pregnancy"]}
    for cause in certificate["part1"]:
        values[f"{cause['line']}_code"], values[f"{cause['line']}_interval"] = cause["code"], cause["interval"]
    for i, cause in enumerate(certificate["part2"]):
        values[f"p2_{i}_code"], values[f"p2_{i}_interval"] = cause["code"], cause["interval"]
    return values


def _died_at(died_uncertified: dict | None, clock: Clock) -> dict:
    """The form's first values: the departure's time of death, where one here is recorded as died (the clinician may
    change it), at this facility; else today."""
    if died_uncertified is None:
        return {"died_on": clock.today.isoformat()}
    local = clock.local(died_uncertified["ended_at"])
    return {"died_on": local.date().isoformat(), "died_time": local.strftime("%H:%M"), "place": "this_facility"}


def _form_page(request: Asking, tenant: str, patient_id: uuid.UUID, *, status: int = 200, values: dict | None = None,
               errors: dict | None = None, correcting: dict | None = None,
               departure_values: dict | None = None) -> Template | Response:
    principal: Principal = request.user
    db: Database = request.app.state.db
    clock = facility_clock(request, tenant)
    with db.tenant(tenant) as conn:
        top = banner(conn, principal, patient_id)
        current = death.certificate(conn, principal, patient_id)
    if current is not None and correcting is None:
        return see_other(request, f"/t/{tenant}/patients/{patient_id}/death")  # certified meanwhile: see it
    if correcting is not None and values is None:
        values = _values_of(correcting, clock)
    patient = top["patient"]
    return page(request, "death_form.html", status=status, active="patients", patient_id=patient_id, tab="summary",
                **top, values=values or _died_at(top.get("died_uncertified"), clock), errors=errors or {},
                on_death_form=True, departure_values=departure_values or {},
                departure_dispositions=_departure_dispositions(top.get("died_uncertified")),
                correcting=correcting, part2_rows=range(PART2_ROWS), lines=death.LINES, places=death.PLACES,
                manners=death.MANNERS, pregnancies=death.PREGNANCY,
                asks_pregnancy=patient["sex"] == "female", **HELPERS)


@get(PATIENT + "/death", operation_id="PortalDeathCertificate", opt={"permission": "clinical.death.read"},
     sync_to_thread=True, include_in_schema=False)
def certificate_page(request: Asking, tenant: Tenant, patient_id: Id) -> Template:
    """The patient's death certificate as the WHO form lays it out, printable; or, where there is none here,
    whether another facility recorded the death, and the way to record it."""
    principal: Principal = request.user
    db: Database = request.app.state.db
    with db.tenant(tenant) as conn:
        top = banner(conn, principal, patient_id)
        found = death.state(conn, principal, patient_id)
    certificate = found["certificate"]
    names = people_named(db, ({certificate["certifier_id"]} if certificate else set())
                         | ({found["withdrawn"]["withdrawn_by"]} if found["withdrawn"] else set()))
    return page(request, "death_certificate.html", active="patients", patient_id=patient_id, tab="summary", **top,
                certificate=certificate, state=found, names=names, places=death.PLACES, manners=death.MANNERS,
                pregnancies=death.PREGNANCY, errors={}, values={}, **HELPERS)


@get(PATIENT + "/death/new", operation_id="PortalDeathForm", opt={"permission": "clinical.death.write"},
     sync_to_thread=True, include_in_schema=False)
def death_form(request: Asking, tenant: Tenant, patient_id: Id) -> Template | Response:
    """Record death: the WHO form, empty, today's date filled in."""
    return _form_page(request, tenant, patient_id)


def _write(request: Asking, tenant: str, patient_id: uuid.UUID, values: dict, *, done: str,
           act: Callable[[Connection, DeathIn], dict], correcting: dict | None = None) -> Response:
    clock = facility_clock(request, tenant)
    body, errors = _body(values, clock)
    status = 422
    if not errors:
        try:
            data = DeathIn.model_validate(body)
            with request.app.state.db.tenant(tenant) as conn:
                written = act(conn, data)
            if written.get("kept_to_this_chart"):  # not "at every facility": the page says why (`death.state`)
                done = f"{done}-kept"
        except ValidationError as exc:
            errors = {_form_field(k): v for k, v in field_errors(exc, rename={("died_at",): "died_on"}).items()}
        except RecordError as exc:
            if exc.status not in {409, 422}:
                raise
            where = _form_field(exc.extra.get("field")) if exc.status == 422 else "form"
            errors, status = {where: template_message(exc.detail)}, exc.status
        else:
            return see_other(request, f"/t/{tenant}/patients/{patient_id}/death?done={done}")
    return _form_page(request, tenant, patient_id, status=status, values=values, errors=errors, correcting=correcting)


@post(PATIENT + "/death", operation_id="PortalCertifyDeath", opt={"permission": "clinical.death.write"},
      sync_to_thread=True, include_in_schema=False)
def certify(request: Asking, tenant: Tenant, patient_id: Id, data: FormData) -> Response:
    """Certify the death; the signed-in clinician is the certifier."""
    values = form_values(data)
    try:
        link_to_person(request.app.state, request, tenant, patient_id)
    except service.ChartLeftUnlinked as unlinked:
        return _form_page(request, tenant, patient_id, status=unlinked.status, values=values,
                          errors={"form": template_message(unlinked.detail)})
    return _write(request, tenant, patient_id, values, done="death-certified",
                  act=lambda conn, body: death.certify(conn, request.user, patient_id, body))


def _current(request: Asking, tenant: str, patient_id: uuid.UUID) -> dict:
    with request.app.state.db.tenant(tenant) as conn:
        current = death.certificate(conn, request.user, patient_id)
    if current is None:
        raise NotFound("this patient has no death certificate here to correct", patient_id=str(patient_id))
    return current


@get(PATIENT + "/death/correction", operation_id="PortalDeathCorrectionForm",
     opt={"permission": "clinical.death.write"}, sync_to_thread=True, include_in_schema=False)
def correction_form(request: Asking, tenant: Tenant, patient_id: Id) -> Template | Response:
    """The certificate in force in the form, to correct with a reason."""
    return _form_page(request, tenant, patient_id, correcting=_current(request, tenant, patient_id))


@post(PATIENT + "/death/correction", operation_id="PortalCorrectDeath", opt={"permission": "clinical.death.write"},
      sync_to_thread=True, include_in_schema=False)
def correct(request: Asking, tenant: Tenant, patient_id: Id, data: FormData) -> Response:
    """Correct the certificate: a new version with the reason; the version the form was loaded from must still be
    the current one (409 otherwise)."""
    values = form_values(data)
    current = _current(request, tenant, patient_id)
    reason = (values.get("reason") or "").strip()
    try:
        version = uuid.UUID(values.get("version_id") or "")
    except ValueError:
        version = current["id"]
    if len(reason) < 3:
        return _form_page(request, tenant, patient_id, status=422, values=values, correcting=current,
                          errors={"reason": "Say why the certificate is corrected (at least 3 characters)."})
    return _write(request, tenant, patient_id, values, done="death-corrected", correcting=current,
                  act=lambda conn, body: death.correct(conn, request.user, patient_id, version, body, reason))


@post(PATIENT + "/death/entered-in-error", operation_id="PortalRetractDeath",
      opt={"permission": "clinical.entry.retract"}, sync_to_thread=True, include_in_schema=False)
def retract(request: Asking, tenant: Tenant, patient_id: Id, data: FormData) -> Response:
    """Mark the certificate entered in error (it was written on the wrong patient), with a reason: the person is
    no longer recorded deceased anywhere; the certificate stays readable in its history. The page it leads to lists
    what the certificate had closed (`death.state`'s `withdrawn`), for a clerk to rebook."""
    values = form_values(data)
    _current(request, tenant, patient_id)  # none to mark: 404
    try:
        reason = Retraction.model_validate({"reason": values.get("reason") or ""}).reason
        with request.app.state.db.tenant(tenant) as conn:
            death.withdraw(conn, request.user, patient_id, reason)
    except ValidationError:
        error = "Say why the certificate is entered in error (at least 3 characters)."
    except RecordError as exc:
        if exc.status not in {409, 422}:
            raise
        error = template_message(exc.detail)
    else:
        return see_other(request, f"/t/{tenant}/patients/{patient_id}/death?done=death-retracted")
    return _refused_on_certificate(request, tenant, patient_id, status=422, errors={"reason": error}, values=values)


def _refused_on_certificate(request: Asking, tenant: str, patient_id: uuid.UUID, *, status: int, errors: dict,
                            values: dict) -> Template:
    """The certificate page again, saying what was refused on it (`errors`, by field)."""
    db: Database = request.app.state.db
    with db.tenant(tenant) as conn:
        top = banner(conn, request.user, patient_id)
        found = death.state(conn, request.user, patient_id)
    certifier = {found["certificate"]["certifier_id"]} if found["certificate"] else set()
    return page(request, "death_certificate.html", status=status, active="patients", patient_id=patient_id,
                tab="summary", **top, certificate=found["certificate"], state=found, names=people_named(db, certifier),
                places=death.PLACES, manners=death.MANNERS, pregnancies=death.PREGNANCY, errors=errors, values=values,
                **HELPERS)


# How a corrected departure reads in the form, for a stay (the bed board's words) and an ED visit (the ED board's).
_DISCHARGE_WORDS = {"home": "Discharged home", "transfer_out": "Transferred out",
                    "left_against_advice": "Left against advice", "other": "Other"}
_ED_DEPARTURE_WORDS = {"discharged": "Discharged", "transferred": "Transferred",
                       "left_without_being_seen": "Left without being seen",
                       "left_against_advice": "Left against advice"}


def _departure_dispositions(died_uncertified: dict | None) -> dict[str, str]:
    if died_uncertified is None:
        return {}
    if died_uncertified["place"] == "emergency department":
        return {d: _ED_DEPARTURE_WORDS[d] for d in operations_deaths.CORRECTED_ED_DEPARTURE}
    return {d: _DISCHARGE_WORDS[d] for d in operations_deaths.CORRECTED_DISCHARGE}


@post(PATIENT + "/death/departure-correction", operation_id="PortalCorrectDiedDeparture",
      opt={"permission": "clinical.entry.retract"}, sync_to_thread=True, include_in_schema=False)
def correct_departure(request: Asking, tenant: Tenant, patient_id: Id, data: FormData) -> Response:
    """Not died after all (the wrong row clicked, the patient seen again): the departure recorded as died is corrected
    to how the patient left, with a reason, and the page shows its history. Refused while a certificate is in force."""
    values = form_values(data)
    try:
        encounter_id = uuid.UUID(values.get("encounter_id") or "")
    except ValueError:
        raise NotFound("no departure recorded as died to correct", patient_id=str(patient_id)) from None
    try:
        with request.app.state.db.tenant(tenant) as conn:
            corrected = operations_deaths.correct_died_departure(
                conn, request.user, patient_id, encounter_id, disposition=values.get("disposition") or "",
                reason=values.get("departure_reason") or "")
    except RecordError as exc:
        if exc.status not in {409, 422}:
            raise
        if exc.status == 409:  # certified meanwhile: the certificate's page says what is withdrawn first
            return _refused_on_certificate(request, tenant, patient_id, status=409, values={},
                                           errors={"departure": template_message(exc.detail)})
        where = {"reason": "departure_reason", "disposition": "disposition"}.get(exc.extra.get("field"), "departure")
        return _form_page(request, tenant, patient_id, status=422, departure_values=values,
                          errors={where: template_message(exc.detail)})
    return see_other(request, f"/t/{tenant}/patients/{patient_id}/entries/{corrected['entry_id']}/history"
                              "?done=departure-corrected")


@get("/deaths/to-certify", operation_id="PortalDeathsToCertify", opt={"permission": "clinical.death.read"},
     sync_to_thread=True, include_in_schema=False)
def to_certify_page(request: Asking, tenant: Tenant) -> Template:
    """Deaths here still to certify: stays and ED visits that ended with disposition died, with no certificate."""
    with request.app.state.db.tenant(tenant) as conn:
        rows = operations_deaths.to_certify(conn, request.user)
    return page(request, "deaths_to_certify.html", active="deaths", rows=rows, **HELPERS)


ROUTES = [certificate_page, death_form, certify, correction_form, correct, retract, correct_departure,
          to_certify_page]

death_router = Router(path="/t/{tenant:str}", route_handlers=ROUTES, exception_handlers=portal.EXCEPTION_HANDLERS,
                      guards=[portal.care_relationship_guard], tags=["portal"], include_in_schema=False)
