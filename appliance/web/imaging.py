"""The imaging department's bench in the tenant portal, under `/t/{tenant}/imaging`: the facility's open imaging
orders (those still to work first, STAT then the oldest), filtered by state, with the form to record each study
performed (and how: views, contrast), the form to report it once performed, and a form to correct a report,
reviewed or not (the orders signed off of late have their own tab).

It keeps the portal's rules as the laboratory's page does (lab.py; the forms' refusals and redirects are
bench.py's): server-rendered, no script, each route declares the permission the imaging API declares for the
same act (ACC-022's `clinical.imaging.*`), forms carry the CSRF token and Post/Redirect/Get, and a refusal is the
page again with its sentence at the top and beside the field at fault, everything typed kept, nothing written.
The record is read and written only through the clinical layer's `imaging` service, which audits each patient
listed and each act. No page here is a patient's: the bench shows name, MRN, sex and age beside the study and its
indication, and links to no chart (a radiographer may open none; a clinician finds it from their own pages).
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from litestar import Response, Router, get, post
from litestar.params import QueryParameter
from litestar.response import Template
from pydantic import ValidationError

from appliance.layers.clinical import bench, imaging
from appliance.layers.clinical.schemas import (
    ImagingReportCorrectionIn,
    ImagingReportIn,
    StudyPerformedIn,
    StudyPerformedInErrorIn,
)
from appliance.substrate.tenancy import facility_today
from appliance.web import portal
from appliance.web.bench import BenchPage
from appliance.web.errors import error_page
from appliance.web.portal import HELPERS, Asking, FormData, Id, Tenant, form_values, page, people_named

portal.NAV.append(portal.NavItem("Imaging", "imaging", "Imaging worklist", "/imaging", "clinical.imaging.read"))
portal.NOTICES.update({
    "study-performed": "Study recorded as performed: the order waits for its report.",
    "performed-withdrawn": "'Performed' entered in error: the order awaits its study again.",
    "study-reported": "Report signed; it waits for the ordering clinician's review.",
    "study-reported-critical": "Report signed, with a critical finding: it heads every clinician's Results to "
                               "review and its ward's worklist, but a list is not a call: telephone the clinician "
                               "who ordered it, or the ward, now.",
    "report-corrected": "Report corrected; the corrected report waits for review again, the earlier one kept in "
                        "its history.",
    "report-corrected-critical": "Report corrected, and the corrected report has a critical finding: it heads every "
                                 "clinician's Results to review and its ward's worklist, but a list is not a call: "
                                 "telephone the clinician who ordered it, or the ward, now.",
})


def _worklist_page(request: Asking, tenant: str, state: str | None = None, *, status: int = 200,
                   refusal: str | None = None, form: str = "", values: dict | None = None,
                   errors: dict | None = None) -> Template:
    with request.app.state.db.tenant(tenant) as conn:
        listed = imaging.worklist(conn, request.user, today=facility_today(request.app.state.db, tenant), state=state)
    names = people_named(request.app.state.db, {who for o in listed["orders"] for who in (
        o["ordered_by"], o["performed_by"], *(r["reported_by"] for r in o["reports"]))})
    return page(request, "imaging/worklist.html", status=status, active="imaging", listed=listed, state=state,
                states=imaging.LISTS, state_words=imaging.STATE_WORDS, names=names, refusal=refusal, form=form,
                window_days=bench.BENCH_WINDOW_DAYS, reported_days=bench.RESULTED_SHOWN_DAYS,
                values=values or {}, errors=errors or {}, **HELPERS)


PAGE = BenchPage("/imaging", imaging.LISTS, _worklist_page)


@get("/imaging", operation_id="PortalImagingWorklist", opt={"permission": "clinical.imaging.read"},
     sync_to_thread=True, include_in_schema=False)
def worklist_page(request: Asking, tenant: Tenant,
                  order_state: Annotated[str, QueryParameter(name="state")] = "") -> Template | Response:
    """The facility's open imaging orders; `?state=` keeps awaiting_study, performed or reported, or lists those
    signed off of late."""
    state = order_state.strip()
    if state and state not in imaging.LISTS:
        words = ", ".join(imaging.STATE_WORDS[s].lower() for s in imaging.LISTS)
        return error_page(request, 400, f"show the orders {words} or all of them; the address asked for "
                                        f"{state[:40]!r}")
    return _worklist_page(request, tenant, state or None)


def performed_at(values: dict, clock: portal.Clock) -> dt.datetime | None:
    """When the study was performed, from the form's day and time (facility time): neither, now; a time alone,
    the last time the clock showed it (a study at 23:40 recorded at 07:00 is last night's). ValueError: the
    sentence for the time field."""
    day, moment = (values.get("performed_on") or "").strip(), (values.get("performed_time") or "").strip()
    if not day and not moment:
        return None
    try:
        clock_time = dt.time.fromisoformat(moment)
    except ValueError:
        raise ValueError("Give the time the study was performed as the clock read it (e.g. 23:40).") from None
    if not day:
        now = dt.datetime.now(clock.tz)
        today = dt.datetime.combine(now.date(), clock_time, tzinfo=clock.tz)
        return today - dt.timedelta(days=1) if today > now + bench.CLOCK_SKEW else today
    try:
        return dt.datetime.combine(dt.date.fromisoformat(day), clock_time, tzinfo=clock.tz)
    except ValueError:
        raise ValueError("Give the day the study was performed as a date.") from None


@post("/imaging/orders/{order_id:uuid}/performed", operation_id="PortalImagingRecordPerformed",
      opt={"permission": "clinical.imaging.perform"}, sync_to_thread=True, include_in_schema=False)
def performed(request: Asking, tenant: Tenant, order_id: Id, data: FormData) -> Response:
    """The study performed, now or at the day and time given (facility time), and how."""
    values = form_values(data)
    form = f"performed-{order_id}"
    try:
        at = performed_at(values, portal.facility_clock(request, tenant))
    except ValueError as exc:
        return PAGE.render(request, tenant, PAGE.tab(values), status=422, refusal=str(exc), form=form,
                           values=values, errors={"performed_time": str(exc)})
    try:
        asked = StudyPerformedIn.model_validate({"note": values.get("note"), "performed_at": at})
    except ValidationError as exc:
        return PAGE.refused_fields(request, tenant, exc, form=form, values=values)
    return PAGE.act(request, tenant, lambda conn: imaging.record_performed(
        conn, request.user, order_id, note=asked.note, performed_at=asked.performed_at,
        today=facility_today(request.app.state.db, tenant)), "study-performed", form=form, values=values,
                    field_of=_beside_time)


def _beside_time(exc) -> str | None:
    # A time refused (still to come, before the order) is said beside the time; a 409 is of the order.
    return "performed_time" if exc.extra.get("field") == "performed_at" else None


@post("/imaging/orders/{order_id:uuid}/performed/entered-in-error", operation_id="PortalImagingRetractPerformed",
      opt={"permission": "clinical.imaging.perform"}, sync_to_thread=True, include_in_schema=False)
def performed_in_error(request: Asking, tenant: Tenant, order_id: Id, data: FormData) -> Response:
    """'Performed' recorded on the wrong order: why, beside the field; the order awaits its study again."""
    return PAGE.undo(request, tenant, form_values(data), StudyPerformedInErrorIn,
                     lambda conn, reason: imaging.performed_in_error(
                         conn, request.user, order_id, reason=reason,
                         today=facility_today(request.app.state.db, tenant)),
                     "performed-withdrawn", form=f"unperform-{order_id}")


def _beside_impression(exc) -> str | None:
    # What the record refuses of a report is its value, the impression (a study the catalogue reports as one of
    # its choices); a 409 is of the order, said at the page's top.
    return "impression" if exc.status == 422 else None


def _report(values: dict) -> dict:
    # A field left blank is sent as nothing: '' keeps the refusal the field's own ("Give at least 1
    # character"), where None read "Input should be a valid string".
    return {"findings": values.get("findings") or "", "impression": values.get("impression") or "",
            "critical": values.get("finding") == "critical", "unexpected": values.get("finding") == "unexpected"}


@post("/imaging/orders/{order_id:uuid}/report", operation_id="PortalImagingReport",
      opt={"permission": "clinical.imaging.report"}, sync_to_thread=True, include_in_schema=False)
def report(request: Asking, tenant: Tenant, order_id: Id, data: FormData) -> Response:
    """Findings, impression and whether a finding is critical or unexpected, signed by the one sending it."""
    values = form_values(data)
    form = f"report-{order_id}"
    try:
        asked = ImagingReportIn.model_validate(_report(values))
    except ValidationError as exc:
        return PAGE.refused_fields(request, tenant, exc, form=form, values=values)
    return PAGE.act(request, tenant, lambda conn: imaging.report(
        conn, request.user, order_id, asked, today=facility_today(request.app.state.db, tenant)),
                    _reported, form=form, values=values, field_of=_beside_impression)


@post("/imaging/results/{result_id:uuid}/correction", operation_id="PortalImagingCorrectReport",
      opt={"permission": "clinical.imaging.report"}, sync_to_thread=True, include_in_schema=False)
def correct(request: Asking, tenant: Tenant, result_id: Id, data: FormData) -> Response:
    values = form_values(data)
    form = f"correct-{result_id}"
    try:
        asked = ImagingReportCorrectionIn.model_validate(_report(values) | {"reason": values.get("reason") or ""})
    except ValidationError as exc:
        return PAGE.refused_fields(request, tenant, exc, form=form, values=values)
    return PAGE.act(request, tenant, lambda conn: imaging.correct_report(
        conn, request.user, result_id, asked, today=facility_today(request.app.state.db, tenant)),
                    _corrected, form=form, values=values, field_of=_beside_impression)


def _reported(order: dict) -> str:
    """The notice of a report just signed: a critical finding asks for a call, not only a place on a list."""
    return "study-reported-critical" if any(r["critical"] for r in order["reports"]) else "study-reported"


def _corrected(order: dict) -> str:
    """The notice of a correction: a corrected report with a critical finding asks for a call as a new one does,
    whatever the report it replaced said."""
    (written,) = (r for r in order["reports"] if r["id"] == order["correction"])
    return "report-corrected-critical" if written["critical"] else "report-corrected"


ROUTES = [worklist_page, performed, performed_in_error, report, correct]

imaging_router = Router(path="/t/{tenant:str}", route_handlers=ROUTES, exception_handlers=portal.EXCEPTION_HANDLERS,
                        tags=["portal"], include_in_schema=False)
