"""The tenant portal: the pages facility staff work in, under `/t/{tenant}/`.

Server-rendered with Jinja2 (`templates/portal/`), one stylesheet and a little of our own script that
only enhances; every page reads and every form posts with JavaScript off. The rules each page keeps:

- It declares the permission it needs, named as the clinical API names it; the one guard checks that
  and that the session is working in `{tenant}` (another facility's session gets 403).
- Patient data is read and written only through the clinical layer's service functions, which note
  every access on the audit seam. This module never queries a clinical table itself.
- It shows only what the role may see: a section or an action whose permission the principal lacks is
  not rendered (and its route would refuse it anyway).
- Bad input gets the same page back with the message next to the field (422); a refusal the
  clinician can act on — the drug–allergy check — gets a form asking for what is missing (409); a
  guessed id gets 404; nothing gets a 500 page with a traceback.
- Post/Redirect/Get: a form that succeeds redirects (303) to a page that says what happened.

Later layers add their pages here: `NAV` lists the navigation by layer, and `TIMELINE_SOURCES` the
entry kinds the chart's timeline shows.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
import zoneinfo
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Any
from urllib.parse import quote, unquote

import sqlalchemy as sa
import structlog
from anyio import to_thread
from litestar import Request, Response, Router, get, post
from litestar.connection import ASGIConnection
from litestar.enums import RequestEncodingType
from litestar.exceptions import HTTPException, ValidationException
from litestar.handlers import BaseRouteHandler
from litestar.params import Body, FromPath, FromQuery
from litestar.response import Redirect, Template
from pydantic import ValidationError
from sqlalchemy.engine import Connection

from appliance.layers.clinical import (
    access,
    catalogue,
    chart,
    death,
    delivery,
    discharge,
    drugs,
    growth,
    service,
    surgery,
)
from appliance.layers.clinical.errors import NotFound
from appliance.layers.clinical.models import medication_request, result, service_request, vital_signs
from appliance.layers.clinical.models import note as note_table
from appliance.layers.clinical.schemas import (
    EncounterIn,
    MedicationIn,
    MedicationStatusIn,
    NoteIn,
    OrderSetIn,
    PatientIn,
    ResultIn,
    Retraction,
    ServiceRequestIn,
)
from appliance.layers.nursing import service as nursing
from appliance.layers.operations import deaths as operations_deaths
from appliance.layers.operations import service as operations
from appliance.layers.patient import portal as patient_portal
from appliance.substrate import deaths, identity
from appliance.substrate.age import age_label
from appliance.substrate.body_weight import weight_text
from appliance.substrate.db import Database
from appliance.substrate.principal import Principal
from appliance.substrate.problems import validator_message
from appliance.substrate.record import RecordError, note_access
from appliance.substrate.tenancy import facility_name, facility_timezone, facility_today
from appliance.substrate.tenant_config import OrderableConfig
from appliance.web import plots
from appliance.web.errors import error_page, sign_in_first
from appliance.web.navigation import NAV, NavItem, landing, navigation  # noqa: F401  (NAV: re-exported)

log = structlog.get_logger(__name__)

Asking = Request[Principal, Any, Any]
FormData = Annotated[dict[str, Any], Body(media_type=RequestEncodingType.URL_ENCODED)]
Tenant = FromPath[str]
Id = FromPath[uuid.UUID]
Query = FromQuery[str]
PATIENT = "/patients/{patient_id:uuid}"
OPEN_ENCOUNTER = ("in_progress", "arrived", "planned")


def _page_opts(permission: str, *, care_relationship: bool = True) -> dict:
    return {"permission": permission, "care_relationship": care_relationship}


# -- the facility, its clock, and the people named on a page ---------------------------------------


@dataclass(frozen=True)
class Facility:
    slug: str
    name: str
    timezone: zoneinfo.ZoneInfo


def facility_of(db: Database, slug: str) -> Facility:
    """The facility's name and time zone, cached a few minutes: every page header shows them, and they
    change only when hospital IT applies a new tenant file. The zone is the substrate's (`facility_timezone`),
    the one every layer's "today" is read in, so a page and the API never disagree on the day."""
    return Facility(slug, facility_name(db, slug), facility_timezone(db, slug))


class Clock:
    """Times shown in the facility's own time zone, whatever the server's."""

    def __init__(self, tz: zoneinfo.ZoneInfo):
        self.tz = tz
        self.today = dt.datetime.now(tz).date()

    def local(self, value: dt.datetime) -> dt.datetime:
        return value.astimezone(self.tz)

    def when(self, value: dt.datetime | None) -> str:
        return self.local(value).strftime("%d %b %Y %H:%M") if value else ""

    def day(self, value: dt.date | dt.datetime | str | None) -> str:
        """The day, in the facility's zone for a moment; a date or moment kept as ISO text (a referral's letter keeps
        its chart items so) is read first, so a letter's dates read as every page's do."""
        if not value:
            return ""
        if isinstance(value, str):
            value = dt.datetime.fromisoformat(value) if len(value) > 10 else dt.date.fromisoformat(value)
        if isinstance(value, dt.datetime):
            value = self.local(value).date()
        return value.strftime("%d %b %Y")

    def iso(self, value: dt.datetime | None) -> str:
        return self.local(value).isoformat(timespec="minutes") if value else ""

    def age(self, birth: dt.date | str, on: dt.date | None = None) -> str:
        """The age today, or on the day given (a deceased patient's is their age at death, a letter's the age it was
        sent at)."""
        return age_label(dt.date.fromisoformat(birth) if isinstance(birth, str) else birth, on or self.today)


def people_named(db: Database, ids: set) -> dict:
    """Display names of the accounts that authored or signed what a page shows."""
    ids = {i for i in ids if i is not None}
    if not ids:
        return {}
    with db.control() as conn:
        rows = conn.execute(sa.select(identity.account.c.id, identity.account.c.display_name)
                            .where(identity.account.c.id.in_(ids))).all()
    return {row.id: row.display_name for row in rows}


# NavItem, NAV and navigation live in appliance/web/navigation.py; the layers' modules add to portal.NAV.


@dataclass(frozen=True)
class ChartTab:
    key: str
    label: str
    path: str  # under /t/{tenant}/patients/{id}
    permission: str
    # Whether the tab can apply to this patient (the banner's patient, the facility's today): a tab that cannot
    # (antenatal care on a man's record) is left off, and its page says why when opened by its address.
    applies: Callable[[dict, dt.date], bool] | None = None


CHART_TABS = [
    ChartTab("summary", "Summary", "/chart", "clinical.chart.read"),
    ChartTab("timeline", "Timeline", "/timeline", "clinical.chart.read"),
    ChartTab("results", "Results", "/results", "clinical.result.read"),
    ChartTab("orders", "Orders", "/orders", "clinical.order.read"),
    ChartTab("notes", "Notes", "/notes", "clinical.note.read"),
    ChartTab("patient", "Registration", "", "clinical.patient.read"),
]


@dataclass(frozen=True)
class VitalsAddition:
    """What another layer shows in the chart summary's vital signs card (nursing: the early warning
    score), read in the page's transaction for those with `permission` and shown by `template`, which
    finds what `read` returned as `addition`. `read` is given the page's clock, whose day is the
    facility's (a child's age is counted on it)."""
    permission: str
    template: str
    read: Callable[[Connection, Principal, uuid.UUID, Clock], dict]


VITALS_ADDITIONS: list[VitalsAddition] = []


@dataclass(frozen=True)
class RetractionTab:
    """The chart tab that lists a kind of record and offers to mark it entered in error (`ui.entered_in_error`,
    posted to `problems.retract_entry`, the one handler for them all): `noun` names the kind in a refusal, `path`
    is where the tab is under the patient, and `render(request, tenant, patient_id, status=, form=, values=,
    errors=)` shows it again with the form's refusal next to its reason."""
    noun: str
    path: str
    render: Callable[..., Template]


# Each module adds the kinds its tabs list (problems.py its own; nursing.py the vital signs), keyed by the kind.
RETRACTION_TABS: dict[str, RetractionTab] = {}


def chart_tabs(principal: Principal, tenant: str, patient_id: uuid.UUID, patient: dict | None = None,
               today: dt.date | None = None) -> list[dict]:
    return [{"key": t.key, "label": t.label, "href": f"/t/{tenant}/patients/{patient_id}{t.path}"}
            for t in CHART_TABS if principal.can(t.permission)
            and (t.applies is None or patient is None or t.applies(patient, today or dt.date.today()))]


def patient_home(principal: Principal, tenant: str, patient_id: uuid.UUID) -> str:
    """Where a patient link takes this role: the chart for those who may read it, else registration."""
    suffix = "/chart" if principal.can("clinical.chart.read") else ""
    return f"/t/{tenant}/patients/{patient_id}{suffix}"


# What a redirect after a successful post says on the page it lands on (never text from the request).
NOTICES = {
    "registered": "Patient registered.",
    "registration-corrected": "Registration corrected; the earlier version is kept in its history.",
    "encounter-started": "Encounter started.",
    "encounter-updated": "Encounter updated.",
    "order-set": "Order set placed.",
    "order-set-override": "Order set placed; the allergy override and its reason are on the record.",
    "order-set-without": "Order set placed without the drug the patient is allergic to.",
    "ordered": "Test ordered.",
    "prescribed": "Prescription placed.",
    "prescribed-override": "Prescription placed; the allergy override and its reason are on the record.",
    "medication-stopped": "Prescription stopped; it stays in the record's history with your reason.",
    "medication-completed": "Prescription recorded as completed.",
    "note": "Note saved.",
    "note-corrected": "Note corrected; the earlier version stays in its history with your reason.",
    "note-withdrawn": "Note marked entered in error, with your reason; it stays readable in its history.",
    "signed": "Result signed.",
    "result-recorded": "Result recorded; it waits below for review and sign-off.",
    "disclosed": "Recorded as given in person; the result is now on the patient's portal.",
    "withdrawn": "The record of giving it was marked entered in error; the result is off the patient's portal "
                 "until it is given.",
}


def facility_clock(request: Asking, tenant: str) -> Clock:
    """The facility's clock: its days and times in its own zone (a due date, "today", a form's default time).
    A page that needs only the date asks the substrate's `facility_today`, only the zone its `facility_timezone`."""
    return Clock(facility_timezone(request.app.state.db, tenant))


def filled(values: dict, fields: Any) -> dict:
    """A form's answers that name one of `fields` (a model's `model_fields`, or a set of names), blanks left out:
    a field left empty is not given, so the model's default or its "required" sentence applies."""
    return {k: v for k, v in values.items() if k in fields and v not in ("", None)}


def page(request: Asking, template_name: str, *, status: int = 200, active: str = "", **context: Any) -> Template:
    principal: Principal = request.user
    tenant = request.path_params["tenant"]
    facility = facility_of(request.app.state.db, tenant)
    context.update(
        principal=principal, facility=facility, tenant=tenant, clock=Clock(facility.timezone),
        nav=navigation(principal, tenant, request.app.state.db), landing=landing(principal, tenant), active=active,
        can=principal.can,
        notice=NOTICES.get(request.query_params.get("done", "")),
    )
    context["glass"] = request.scope.get(GLASS_SCOPE_KEY)
    if "patient_id" in context:
        chart_base = _patient_path(tenant, context["patient_id"])
        context["chart_url"] = lambda path="": chart_base + path
        context.setdefault("tabs", chart_tabs(principal, tenant, context["patient_id"], context.get("patient"),
                                              context["clock"].today))
    return Template(f"portal/{template_name}", context=context, status_code=status)


def see_other(request: Request, path: str) -> Redirect:
    """After a successful post (Post/Redirect/Get)."""
    return Redirect(path, status_code=303)


# -- care relationships and break-the-glass --------------------------------------------------------
#
# The same rule the clinical API keeps (appliance/layers/clinical/access.py): a chart opens for staff
# with a care relationship to the patient (an encounter here, in their ward for ward-scoped roles);
# anyone else states a reason, the access is allowed and audited as break-the-glass (ETREAT). In a
# browser the reason is posted once (`break_glass`) and kept in a cookie scoped to that patient's pages
# for GLASS_MINUTES, so each page read under it is decided, and audited, as the API decides each call —
# and the reason, patient data, is never in an address (browser history, a shared screen, a proxy's log),
# as it was when it travelled as `?break_glass_reason=`. Registration details and starting an encounter
# opt out: they are how a care relationship begins.

GLASS = "break_glass_reason"
GLASS_COOKIE = "hos_glass"
GLASS_MINUTES = 15
GLASS_SCOPE_KEY = "healthos_break_glass"


def _patient_path(tenant: str, patient_id: object) -> str:
    return f"/t/{tenant}/patients/{patient_id}"


async def care_relationship_guard(connection: ASGIConnection, handler: BaseRouteHandler) -> None:
    patient_id = connection.path_params.get("patient_id")
    if patient_id is None or not handler.opt.get("care_relationship", True):
        return
    reason = unquote(connection.cookies.get(GLASS_COOKIE) or "") or None
    db: Database = connection.app.state.db
    tenant = connection.path_params["tenant"]

    def decide() -> str | None:
        with db.tenant(tenant) as conn:
            return access.open_chart(conn, connection.user, patient_id, reason)

    if await to_thread.run_sync(decide) == access.BREAK_GLASS:
        connection.scope[GLASS_SCOPE_KEY] = " ".join(reason.split())  # type: ignore[literal-required]


def _break_glass_page(request: Request, exc: access.BreakGlassRequired) -> Response:
    """No care relationship: say so, and offer to open the chart with a stated reason (GET pages), or
    send the clinician back to the chart (a form posted without one)."""
    if request.method != "GET":
        return error_page(request, 403, exc.detail)
    asked = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return _glass_form(request, 403, exc.detail, asked=asked, refused=GLASS_COOKIE in request.cookies)


def _glass_form(request: Request, status: int, detail: str, *, asked: str, refused: bool) -> Response:
    tenant, patient_id = request.path_params["tenant"], request.path_params["patient_id"]
    return Template("portal/break_glass.html", status_code=status, context={
        "principal": request.user, "tenant": tenant, "facility": facility_of(request.app.state.db, tenant),
        "nav": navigation(request.user, tenant), "active": "patients", "notice": None,
        "action": f"{_patient_path(tenant, patient_id)}/break-glass", "asked": asked, "detail": detail,
        "refused": refused, "min_reason": access.MIN_REASON, "registration": _patient_path(tenant, patient_id),
        "can": request.user.can,
    })


@post(PATIENT + "/break-glass", operation_id="PortalBreakGlass",
      opt=_page_opts("clinical.chart.read", care_relationship=False), include_in_schema=False)
async def break_glass(request: Asking, tenant: Tenant, patient_id: Id, data: FormData) -> Response:
    """Open a chart with a stated reason: kept in a cookie of this patient's pages for GLASS_MINUTES, then back
    to the page asked for. The access itself is decided and recorded, with the reason, by each page read under
    it (the guard), not here; a reason too short is refused here, beside its field."""
    def exists() -> None:
        with request.app.state.db.tenant(tenant) as conn:
            service.require_patient(conn, patient_id)  # a guessed id is a 404 here, as on every form

    await to_thread.run_sync(exists)
    values = form_values(data)
    reason = " ".join(str(values.get(GLASS) or "").split())
    base = _patient_path(tenant, patient_id)
    asked = str(values.get("next") or "")
    if not (asked == base or asked.startswith((base + "/", base + "?"))):  # only this patient's pages
        asked = f"{base}/chart"
    if len(reason) < access.MIN_REASON:
        return _glass_form(request, 422, f"state the reason in a few words (at least {access.MIN_REASON} characters)",
                           asked=asked, refused=True)
    response = Redirect(asked, status_code=303)
    response.set_cookie(GLASS_COOKIE, quote(reason[:500]), path=base, max_age=GLASS_MINUTES * 60, httponly=True,
                        samesite="strict", secure=request.scope.get("scheme") == "https")
    return response


# -- refusals as pages -----------------------------------------------------------------------------


def _http_refusal(request: Request, exc: HTTPException) -> Response:
    if exc.status_code == 401 and request.method == "GET":
        return sign_in_first(request)
    return error_page(request, exc.status_code, exc.detail)


def _record_refusal(request: Request, exc: RecordError) -> Response:
    return error_page(request, exc.status, exc.detail)


def _unexpected(request: Request, exc: Exception) -> Response:
    log.error("unhandled_error", path=request.scope.get("path_template", ""), exc_info=exc)
    return error_page(request, 500, "The appliance could not complete this request; the error was logged.")


EXCEPTION_HANDLERS = {
    access.BreakGlassRequired: _break_glass_page,
    ValidationException: lambda request, exc: error_page(request, 400, "The request was not understood: "
                                                                        "check what was typed and try again."),
    HTTPException: _http_refusal,
    RecordError: _record_refusal,
    Exception: _unexpected,
}


# -- forms -----------------------------------------------------------------------------------------


def _clean(text: str) -> str:
    # PostgreSQL text cannot hold NUL; no browser sends one, so it is dropped rather than refused.
    return text.replace("\x00", "").strip()


def local_moment(text: str | None, tz: dt.tzinfo) -> dt.datetime | None:
    """A datetime-local field (facility time) as an aware moment; None when empty, ValueError when not a time."""
    return dt.datetime.fromisoformat(text).replace(tzinfo=tz) if text else None


def form_values(data: dict[str, Any]) -> dict[str, Any]:
    """A posted form without its CSRF token, blanks as None and text stripped. Only a template's
    fields (`f.<key>`, where a multiple choice is several values) stay lists; any other field sent
    twice counts once, as its last value, so a doctored form cannot turn a field into a list."""
    values: dict[str, Any] = {}
    for key, value in data.items():
        if key == "_csrf_token":
            continue
        items = [_clean(v) for v in (value if isinstance(value, list) else [value]) if isinstance(v, str)]
        items = [v for v in items if v]
        if key.startswith("f."):
            values[key] = items if isinstance(value, list) else (items[0] if items else None)
        else:
            values[key] = items[-1] if items else None
    return values


_MESSAGES = {
    "missing": "This is required.",
    "string_too_short": "This is required.",
    "uuid_parsing": "Choose one of the listed options.",
    "literal_error": "Choose one of the listed options.",
    "date_from_datetime_parsing": "Give a date as YYYY-MM-DD.",
    "date_parsing": "Give a date as YYYY-MM-DD.",
    "decimal_parsing": "Give a number.",
    "int_parsing": "Give a whole number.",
}


_BOUNDS = {"greater_than": "Give a number above {}.", "greater_than_equal": "Give a number of at least {}.",
           "less_than": "Give a number below {}.", "less_than_equal": "Give a number of at most {}.",
           "string_too_long": "Shorten this to at most {} characters."}


def field_errors(exc: ValidationError, rename: dict[tuple, str] | None = None) -> dict[str, str]:
    """Pydantic's complaints keyed by the form field they belong to, in words a clinician reads."""
    errors: dict[str, str] = {}
    for error in exc.errors():
        loc = tuple(error["loc"])
        key = None
        for length in range(len(loc), 0, -1):
            if rename and loc[:length] in rename:
                key = rename[loc[:length]]
                break
        key = key or (str(loc[-1]) if loc else "form")
        message = validator_message(error["msg"])
        ctx = error.get("ctx", {})
        if error["type"] == "string_too_short" and ctx.get("min_length", 1) > 1:
            message = f"Give at least {ctx['min_length']} characters."
        elif error["type"] in _BOUNDS:
            message = _BOUNDS[error["type"]].format(*ctx.values())
        else:
            message = _MESSAGES.get(error["type"], message)
        if message and message[0].islower():
            message = message[0].upper() + message[1:]
        errors.setdefault(key, message if message.endswith(".") else message + ".")
    return errors


def _uuid_or_none(value: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value)) if value else None
    except ValueError:
        return None


# -- shared pieces of the chart pages --------------------------------------------------------------

FLAGS = {"H": ("High", "flag-high"), "L": ("Low", "flag-low"), "HH": ("Critical high", "flag-critical"),
         "LL": ("Critical low", "flag-critical"), "A": ("Abnormal", "flag-high"),
         "AA": ("Critical", "flag-critical"), "N": ("Normal", "flag-normal")}
ENCOUNTER_CLASSES = {"outpatient": "Outpatient visit", "emergency": "Emergency visit",
                     "inpatient": "Inpatient admission"}
NEXT_STEPS = {"planned": [("arrived", "Mark arrived"), ("cancelled", "Cancel")],
              "arrived": [("in_progress", "Start"), ("cancelled", "Cancel")],
              "in_progress": [("finished", "Finish")]}


def number(value: Decimal | float | int | None) -> str:
    """A value as it was measured: a laboratory's 11.0 keeps its trailing zero (it states precision)."""
    if value is None:
        return ""
    if isinstance(value, Decimal):
        return format(value, "f")
    return plots._format_number(float(value))


def vital_value(column: str | None, value: Decimal | float | int | None) -> str:
    """One vital sign's value as pages show it: a weight to the gram under 10 kg (body_weight.py), the rest as
    measured."""
    return weight_text(value) if column == "weight_kg" else number(value)


_SUPERSCRIPT = str.maketrans("0123456789-", "⁰¹²³⁴⁵⁶⁷⁸⁹⁻")


def unit_label(unit: str | None) -> str:
    """A UCUM unit as people write it: 10*3/uL reads ×10³/µL, umol/L reads µmol/L."""
    if not unit:
        return ""
    text = re.sub(r"10\*(-?\d+)", lambda m: "×10" + m[1].translate(_SUPERSCRIPT), unit)
    return re.sub(r"\bu(L|l|mol|g|U|IU)\b", r"µ\1", text)


def result_value(row: dict) -> str:
    if row.get("value_numeric") is not None:
        return f"{number(row['value_numeric'])} {unit_label(row.get('unit'))}".strip()
    return row.get("value_text") or ""


def _bound(value: Decimal | float) -> str:
    # A range's bounds carry no precision of their own: a catalogue's 150.0 reads 150.
    return plots._format_number(float(value))


def reference_range(row: dict) -> str:
    low, high = row.get("reference_low"), row.get("reference_high")
    if low is None and high is None:
        return ""
    text = f"{_bound(low)}–{_bound(high)}" if low is not None and high is not None else (
        f"≥ {_bound(low)}" if low is not None else f"≤ {_bound(high)}")
    return f"{text} {unit_label(row.get('unit'))}".strip()


IDENTIFIER_SYSTEMS = {"national_id": "National ID", "nhif": "NHIF", "passport": "Passport",
                      "birth_certificate": "Birth certificate"}


# The identifiers the registration form takes besides the national ID: a child has a birth certificate,
# a foreigner a passport, an insured patient an NHIF number.
OTHER_IDENTIFIERS = [(system, label) for system, label in IDENTIFIER_SYSTEMS.items() if system != "national_id"]


def identifier_label(system: str) -> str:
    return IDENTIFIER_SYSTEMS.get(system, system.replace("_", " ").capitalize())


def is_abnormal(row: dict) -> bool:
    return row.get("flag") not in (None, "N")


# Bilateral pitting oedema as the clinic's arrival form and the ward's observation form ask it: one choice
# for the record's two fields, absent or the WHO grade found (a child's management turns on the grade,
# clinical/growth.py); left blank, not examined. Present without a grade is not offered: every finding
# made here is graded.
OEDEMA_CHOICES = [("false", "Absent")] + [(str(grade), f"{sign} {extent}")
                                          for grade, (sign, extent) in growth.OEDEMA_GRADES.items()]


def oedema_fields(choice: str | None) -> dict[str, Any]:
    """The form's choice of oedema as the vital signs' fields. A value not among the choices goes on as the
    grade, which VitalSignsIn refuses ("Choose one of the listed options", to show beside `oedema`), so a
    doctored 'yes' or 'true' is never read as a finding."""
    if choice is None:
        return {}
    if choice == "false":
        return {"oedema": False}
    if choice in {str(grade) for grade in growth.OEDEMA_GRADES}:
        return {"oedema": True, "oedema_grade": int(choice)}
    return {"oedema_grade": choice}


HELPERS = {"number": number, "weight": weight_text, "result_value": result_value, "reference_range": reference_range,
           "unit_label": unit_label, "identifier_label": identifier_label,
           "flags": FLAGS, "encounter_classes": ENCOUNTER_CLASSES, "next_steps": NEXT_STEPS,
           "other_identifiers": OTHER_IDENTIFIERS,
           "is_abnormal": is_abnormal, "critical_flags": service.CRITICAL_FLAGS, "oedema_choices": OEDEMA_CHOICES,
           "oedema_words": growth.oedema_words}


def open_encounters(encounters: list[dict]) -> list[dict]:
    ordered = sorted((e for e in encounters if e["status"] in OPEN_ENCOUNTER),
                     key=lambda e: OPEN_ENCOUNTER.index(e["status"]))
    return ordered


def banner(conn: Connection, principal: Principal, patient_id: uuid.UUID, *, in_care: bool = True) -> dict:
    """What every chart page shows on top: who the patient is, their allergies, their open encounters.
    Pages that open without a care relationship (registration details, starting an encounter) pass
    `in_care=False` unless one exists, and show the demographics alone."""
    found = {"patient": service.get_patient(conn, principal, patient_id), "allergies": None, "encounters": []}
    in_care = in_care or access.has_care_relationship(conn, principal, patient_id)
    if in_care and (principal.can("clinical.chart.read") or principal.can("clinical.allergy.read")):
        found["allergies"] = service.list_allergies(conn, principal, patient_id, active_only=True)
    if in_care and principal.can("clinical.encounter.read"):
        found["encounters"] = service.list_encounters(conn, principal, patient_id, limit=20)
    found["open_encounters"] = open_encounters(found["encounters"])
    found["in_care"] = in_care
    found.update(death_banner(conn, principal, patient_id) if in_care
                 else {"deceased": death.deceased(conn, principal, patient_id)})
    return found


def death_banner(conn: Connection, principal: Principal, patient_id: uuid.UUID) -> dict:
    """The banner's death: 'Deceased <date>' when the person is recorded deceased; else a departure here recorded as
    died (ED board, bed board) and not yet certified, which the banner says, linking the certificate's form."""
    deceased = death.deceased(conn, principal, patient_id)
    return {"deceased": deceased, "died_uncertified": None if deceased is not None
            else operations_deaths.uncertified_death(conn, principal, patient_id)}


def trends_of(results: list[dict], clock: Clock) -> list[dict]:
    """Results grouped by analyte, newest first: the latest value, how many wait for review, and the
    points of its trend (numeric values only)."""
    by_code: dict[str, list[dict]] = defaultdict(list)
    for row in results:
        by_code[row["code"]].append(row)
    trends = []
    for code, rows in by_code.items():
        rows.sort(key=lambda r: r["occurred_at"], reverse=True)
        latest = rows[0]
        band = (None if latest["reference_low"] is None else float(latest["reference_low"]),
                None if latest["reference_high"] is None else float(latest["reference_high"]))
        points = [plots.Point(clock.local(r["occurred_at"]), float(r["value_numeric"]),
                              label=f"{clock.day(r['occurred_at'])}: {result_value(r)}"
                                    + (f" ({FLAGS.get(r['flag'], (r['flag'],))[0]})" if is_abnormal(r) else ""),
                              abnormal=is_abnormal(r))
                  for r in rows if r["value_numeric"] is not None]
        trends.append({
            "code": code, "display": latest["display"], "latest": latest, "rows": rows, "count": len(rows),
            "unsigned": sum(1 for r in rows if r["signed_at"] is None), "points": points, "band": band,
            "unit": unit_label(latest["unit"]),
            "spark": plots.sparkline(points, ident=f"spark-{code}", band=band,
                                     title=f"{latest['display']} trend, {len(points)} values")
            if len(points) >= 2 else None,
        })
    trends.sort(key=lambda t: t["latest"]["occurred_at"], reverse=True)
    return trends


def trend_chart(trend: dict, clock: Clock, *, width: int = 720, height: int = 260) -> Any:
    name = trend["display"]
    return plots.time_chart(
        [plots.Series(name, trend["points"])], ident=f"trend-{trend['code']}", title=f"{name} over time",
        description=plots.describe_trend(name, trend["points"], trend["unit"], trend["band"]),
        unit=trend["unit"], band=trend["band"], width=width, height=height)


# Vital signs drawn on the chart. The bands are adult reference ranges, shown only for adults.
VITALS = [
    ("Blood pressure", "mmHg", [("systolic_mmhg", "Systolic", "s1"), ("diastolic_mmhg", "Diastolic", "s2")],
     (None, None)),
    ("Heart rate", "/min", [("heart_rate_bpm", "Heart rate", "s1")], (60, 100)),
    ("Temperature", "°C", [("temperature_c", "Temperature", "s3")], (36.0, 37.5)),
    ("SpO₂", "%", [("spo2_percent", "SpO₂", "s4")], (94, 100)),
    ("Respiratory rate", "/min", [("respiratory_rate", "Respiratory rate", "s2")], (12, 20)),
    ("Weight", "kg", [("weight_kg", "Weight", "s1")], (None, None)),
]


def vitals_history(conn: Connection, principal: Principal, patient_id: uuid.UUID, limit: int = 60) -> list[dict]:
    # The clinical layer has no list of vital signs yet (only the latest set); this reads the same
    # current rows its other lists read, and notes the access on the audit seam as they do.
    rows = service.current_rows(conn, vital_signs, patient_id, limit=limit)
    note_access(conn, principal, "read", patient_id, "vital_signs", [r["id"] for r in rows])
    return rows


def vitals_tiles(row: dict | None, adult: bool) -> list[dict]:
    """The latest set of vital signs as tiles, each marked when it lies outside the adult range."""
    if row is None:
        return []
    bands = {column: band for _, _, measures, band in VITALS for column, _, _ in measures}
    tiles = []
    if row["systolic_mmhg"] and row["diastolic_mmhg"]:
        tiles.append({"label": "BP", "value": f"{row['systolic_mmhg']}/{row['diastolic_mmhg']}", "unit": "mmHg",
                      "out": False})
    for column, label, unit in (("heart_rate_bpm", "Heart rate", "/min"), ("respiratory_rate", "Resp. rate", "/min"),
                                ("temperature_c", "Temp.", "°C"), ("spo2_percent", "SpO₂", "%"),
                                ("weight_kg", "Weight", "kg"), ("height_cm", "Height", "cm")):
        value = row[column]
        if value is None:
            continue
        low, high = bands.get(column, (None, None))
        out = adult and ((low is not None and value < low) or (high is not None and value > high))
        tiles.append({"label": label, "value": vital_value(column, value), "unit": unit, "out": out})
    return tiles


def vitals_charts(rows: list[dict], clock: Clock, adult: bool) -> list[dict]:
    charts = []
    for index, (title, unit, measures, band) in enumerate(VITALS):
        series, columns = [], {}
        for column, name, css in measures:
            lo, hi = band
            points = []
            for row in rows:
                if row[column] is None:
                    continue
                value = float(row[column])
                out = adult and ((lo is not None and value < lo) or (hi is not None and value > hi))
                label = f"{clock.when(row['occurred_at'])}: {name} {vital_value(column, row[column])} {unit}"
                points.append(plots.Point(clock.local(row["occurred_at"]), value, label=label, abnormal=out))
            if points:
                series.append(plots.Series(name, points, css))
                columns[name] = column
        if not series:
            continue
        shown_band = band if adult and band != (None, None) else None
        count = sum(len(s.points) for s in series)
        latest = max((p for s in series for p in s.points), key=lambda p: p.at)
        description = (f"{count} measurements from {min(p.at for s in series for p in s.points):%d %b %Y} to "
                       f"{latest.at:%d %b %Y}. "
                       + "; ".join(f"latest {s.name.lower()} "
                                   f"{vital_value(columns[s.name], max(s.points, key=lambda p: p.at).value)} {unit}"
                                   for s in series) + ".")
        if shown_band:
            description += f" Adult reference range {number(band[0])}–{number(band[1])} {unit}."
        charts.append({"title": title, "svg": plots.time_chart(
            series, ident=f"vitals-{index}", title=f"{title} over time", description=description, unit=unit,
            band=shown_band, width=480, height=200)})
    return charts


# -- patient search and registration ---------------------------------------------------------------


@get("/", operation_id="PortalFacilityHome", opt=_page_opts("operations.ward.read", care_relationship=False),
     sync_to_thread=False, include_in_schema=False)
def facility_home(request: Asking, tenant: Tenant) -> Redirect:
    """The facility's own address, bookmarked or typed: the first page of the portal this role may open, where
    the home page's button goes (it was a 404). Its permission is the one every facility role holds
    (ACC-001), so anyone working here is sent on and anyone else refused as on any page of the facility."""
    return Redirect(landing(request.user, tenant), status_code=303)


def search_typed(conn: Connection, principal: Principal, typed: str, born: dt.date | None = None) -> list[dict]:
    """What one search box finds (audited): what has a digit is an MRN (leading zeros optional) or an identifier,
    and the phone number of a chart too when it reads as one; anything else a name, tolerant of misspelling."""
    by_identifier = any(ch.isdigit() for ch in typed)
    return service.search_patients(conn, principal, name=None if by_identifier else typed,
                                   identifier=typed if by_identifier else None, birth_date=born,
                                   phone=typed if by_identifier and service.phone_digits(typed) else None)


@get("/patients", operation_id="PortalPatientSearch", opt=_page_opts("clinical.patient.search"),
     sync_to_thread=True, include_in_schema=False)
def patient_search(request: Asking, tenant: Tenant, q: Query = "", birth_date: Query = "") -> Template:
    """Find a patient by name (tolerant of misspelling), MRN or identifier, and birth date."""
    principal: Principal = request.user
    query, born, error, matches = q.strip(), None, None, None
    if birth_date.strip():
        try:
            born = dt.date.fromisoformat(birth_date.strip())
        except ValueError:
            error = ("birth_date", "Give the birth date as YYYY-MM-DD.")
    if (query or born) and error is None:
        try:
            with request.app.state.db.tenant(tenant) as conn:
                matches = search_typed(conn, principal, query, born)
                # A records officer finding a name among many must see who is deceased, and their age then, not today.
                died = deaths.days_of_death(conn, [match["id"] for match in matches])
            for match in matches:
                match["died_on"] = died.get(match["id"])
        except RecordError as exc:
            error = ("q", exc.detail[0].upper() + exc.detail[1:] + ".")
    for match in matches or []:
        match["href"] = patient_home(principal, tenant, match["id"])
    return page(request, "search.html", status=422 if error else 200, active="patients", q=query,
                birth_date=birth_date.strip(), matches=matches, error=error)


REGISTRATION_FIELDS = ["family_name", "given_names", "birth_date", "birth_date_estimated", "sex", "phone",
                       "national_id", "village", "district", "nok_name", "nok_relationship", "nok_phone"]
_REGISTRATION_RENAME = {("identifiers",): "national_id", ("address", "village"): "village",
                        ("address", "district"): "district", ("next_of_kin", 0, "name"): "nok_name",
                        ("next_of_kin", 0, "relationship"): "nok_relationship",
                        ("next_of_kin", 0, "phone"): "nok_phone", ("next_of_kin",): "nok_name"}


_IDENTIFIER_NAMES = {"national_id": "national ID", "nhif": "NHIF number", "passport": "passport number",
                     "birth_certificate": "birth certificate number"}


def _identifiers_in(values: dict[str, Any]) -> list[dict]:
    """The form's national ID and other identifier, national first (`_registration_rename` counts on it)."""
    identifiers = [{"system": "national_id", "value": values["national_id"]}] if values.get("national_id") else []
    if values.get("other_id_value"):
        identifiers.append({"system": values.get("other_id_system") or "", "value": values["other_id_value"]})
    return identifiers


def _registration_rename(values: dict[str, Any]) -> dict[tuple, str]:
    """Pydantic's places for the form's identifiers, which sit in the list in `_identifiers_in`'s order."""
    other = 1 if values.get("national_id") else 0
    return _REGISTRATION_RENAME | {("identifiers", 0): "national_id" if other else "other_id_value",
                                   ("identifiers", other): "other_id_value"}


def _registration_errors(values: dict[str, Any]) -> dict[str, str]:
    """What the form must say before the registration is validated: the kind of an identifier given, an
    age that is a number of years."""
    errors = {}
    if values.get("other_id_value") and values.get("other_id_system") not in dict(OTHER_IDENTIFIERS):
        errors["other_id_system"] = "Choose what kind of identifier this is."
    if values.get("age_years") and not values.get("birth_date") and not (
            str(values["age_years"]).isdigit() and int(values["age_years"]) <= 130):
        errors["age_years"] = "Give the age as a whole number of years, from 0 to 130."
    return errors


def _birth_date_from_age(values: dict[str, Any], today: dt.date) -> dict[str, Any]:
    """A patient who knows only their age ("about 40") is registered born on today's day and month that
    many years ago, the birth date marked estimated, as registers commonly do; a birth date given wins."""
    age = values.get("age_years")
    if values.get("birth_date") or not age or not str(age).isdigit() or int(age) > 130:
        return values
    born = today.replace(year=today.year - int(age)) if (today.month, today.day) != (2, 29) \
        else dt.date(today.year - int(age), 2, 28)
    return {**values, "birth_date": born.isoformat(), "birth_date_estimated": "true"}


def _identifier_taken(exc: RecordError, tenant: str) -> tuple[dict[str, str], str | None]:
    """A registration's identifier another patient of this facility holds: the message at its field, and
    the record that holds it."""
    system = exc.extra.get("system") or "national_id"
    field = "national_id" if system == "national_id" else "other_id_value"
    owner = _uuid_or_none(exc.extra.get("patient_id"))
    message = (f"This {_IDENTIFIER_NAMES.get(system, identifier_label(system))} already belongs to another patient "
               "of this facility: open their record rather than registering them again.")
    return {field: message}, f"/t/{tenant}/patients/{owner}" if owner else None


def _patient_in(values: dict[str, Any]) -> dict:
    fields: dict[str, Any] = {k: values.get(k) for k in ("family_name", "given_names", "birth_date", "sex", "phone")}
    fields = {k: v for k, v in fields.items() if v is not None}
    fields["birth_date_estimated"] = values.get("birth_date_estimated") == "true"
    fields["national_id_confirmed"] = values.get("national_id_checked") == "true"  # `service.link_registration`
    if identifiers := _identifiers_in(values):
        fields["identifiers"] = identifiers
    address = {k: values[k] for k in ("village", "district") if values.get(k)}
    if address:
        fields["address"] = address
    if any(values.get(k) for k in ("nok_name", "nok_relationship", "nok_phone")):
        kin = {"name": values.get("nok_name") or "", "relationship": values.get("nok_relationship") or ""}
        if values.get("nok_phone"):
            kin["phone"] = values["nok_phone"]
        fields["next_of_kin"] = [kin]
    return fields


@get("/patients/new", operation_id="PortalRegisterPatientPage", opt=_page_opts("clinical.patient.create"),
     sync_to_thread=False, include_in_schema=False)
def register_page(request: Asking, tenant: Tenant) -> Template:
    return page(request, "register.html", active="register", values={}, errors={}, owner=None, alike=[],
                other_identifiers=OTHER_IDENTIFIERS)


@post("/patients", operation_id="PortalRegisterPatient", opt=_page_opts("clinical.patient.create"),
      sync_to_thread=True, include_in_schema=False)
def register_patient(request: Asking, tenant: Tenant, data: FormData) -> Response:
    values = form_values(data)
    values = _birth_date_from_age(values, facility_today(request.app.state.db, tenant))
    errors: dict[str, str] = _registration_errors(values)
    owner = None
    try:
        patient_in = PatientIn.model_validate(_patient_in(values))
    except ValidationError as exc:
        errors = field_errors(exc, _registration_rename(values)) | errors
    alike: list[dict] = []
    if not errors and values.get("different_person") != "true":
        alike = _registered_alike(request, tenant, patient_in)
    if alike:
        return page(request, "register.html", status=409, active="register", values=values, errors={},
                    owner=None, alike=alike, other_identifiers=OTHER_IDENTIFIERS)
    if not errors:
        try:
            with request.app.state.db.tenant(tenant) as conn:
                linked = service.link_registration(request.app.state.db, request.user, patient_in, tenant=tenant,
                                                   chart_conn=conn)
                registered = service.register_patient(conn, request.user, linked)
        except service.NationalIdHolderDiffers as asked:
            return page(request, "register.html", status=409, active="register", values=values, owner=None,
                        alike=[], other_identifiers=OTHER_IDENTIFIERS, national_id_check=True,
                        errors=_national_id_asked(asked, "registered"))
        except service.NationalIdAskedTooOften as refused:
            return page(request, "register.html", status=429, active="register", values=values, owner=None,
                        alike=[], other_identifiers=OTHER_IDENTIFIERS, national_id_check=True,
                        errors={"national_id": refused.detail})
        except RecordError as exc:
            if exc.extra.get("field") == "identifiers":
                errors, owner = _identifier_taken(exc, tenant)
            else:
                errors = {"form": exc.detail[0].upper() + exc.detail[1:]}
        except sa.exc.IntegrityError:
            errors = {"form": "Another registration claimed this identifier a moment ago; search for the patient."}
    if errors:
        return page(request, "register.html", status=422, active="register", values=values, errors=errors,
                    owner=owner, alike=[], other_identifiers=OTHER_IDENTIFIERS)
    # The registration page, for every role: it is where the visit starts, and a clinician who has not
    # yet seen the patient has no care relationship that would open the chart without breaking the glass.
    return see_other(request, f"/t/{tenant}/patients/{registered['id']}?done=registered")


def _national_id_asked(asked: service.NationalIdHolderDiffers, done: str) -> dict[str, str]:
    """The desk's question about a national ID whose holder elsewhere differs, at the field, with the box
    (`national_id_check`) that answers it."""
    return {"national_id": f"{service.national_id_question(asked.extra['differs'])} Nothing was {done}."}


def _registered_alike(request: Asking, tenant: str, patient_in: PatientIn) -> list[dict]:
    """Patients of this facility born the same day under a name like this one: likely the same person,
    whose history a second record would split. The desk is asked before registering them again."""
    with request.app.state.db.tenant(tenant) as conn:
        alike = service.search_patients(conn, request.user, name=f"{patient_in.given_names} {patient_in.family_name}",
                                        birth_date=patient_in.birth_date, limit=5)
    for match in alike:  # their registration, to compare identifiers and next of kin (no chart opened)
        match["href"] = f"/t/{tenant}/patients/{match['id']}"
    return alike


def _other_identifier(found: dict) -> dict:
    """The identifier the form shows besides the national ID: the first other one the patient holds."""
    return next((i for i in found["identifiers"] if i["system"] != "national_id"), {})


def _registration_values(found: dict) -> dict[str, Any]:
    """A registration as the form shows it: what `_patient_in` reads back."""
    address, kin = found.get("address") or {}, (found.get("next_of_kin") or [{}])[0]
    other = _other_identifier(found)
    values = {"family_name": found["family_name"], "given_names": found["given_names"],
              "birth_date": found["birth_date"].isoformat(), "sex": found["sex"], "phone": found.get("phone"),
              "birth_date_estimated": "true" if found.get("birth_date_estimated") else None,
              "national_id": next((i["value"] for i in found["identifiers"] if i["system"] == "national_id"), None),
              "other_id_system": other.get("system"), "other_id_value": other.get("value"),
              "village": address.get("village"), "district": address.get("district"),
              "nok_name": kin.get("name"), "nok_relationship": kin.get("relationship"), "nok_phone": kin.get("phone")}
    return {k: v for k, v in values.items() if v is not None}


def _corrected(found: dict, values: dict[str, Any]) -> dict:
    """The form's fields over the registration in force: what the form does not show (other identifiers,
    a second next of kin, contacts, the address's other lines) is kept. The one-identity subject is the
    service's to decide: kept, unless the national ID is corrected (`service.update_patient`)."""
    fields = _patient_in(values)
    shown = {"national_id", _other_identifier(found).get("system")}
    fields["identifiers"] = fields.get("identifiers", []) + [
        i for i in found["identifiers"] if i["system"] not in shown]
    unshown = {k: v for k, v in (found.get("address") or {}).items() if k not in ("village", "district")}
    fields["address"] = unshown | fields.get("address", {})
    fields["next_of_kin"] = fields.get("next_of_kin", []) + (found.get("next_of_kin") or [])[1:]
    fields["contacts"] = found.get("contacts") or []
    return fields


def _correction_form(request: Asking, tenant: str, patient_id: uuid.UUID, values: dict, errors: dict, *,
                     version_id: Any, owner: str | None = None, status: int = 200,
                     national_id_check: bool = False) -> Template:
    with request.app.state.db.tenant(tenant) as conn:
        top = banner(conn, request.user, patient_id, in_care=False)
        versions = service.entry_history(conn, request.user, patient_id, top["patient"]["version_id"])
    return page(request, "registration_form.html", status=status, active="patients", patient_id=patient_id,
                tab="patient", values=values, errors=errors, version_id=version_id, owner=owner,
                national_id_check=national_id_check, versions=list(reversed(versions)),
                names=people_named(request.app.state.db, {v["author_id"] for v in versions}), **top, **HELPERS)


@get(PATIENT + "/registration", operation_id="PortalCorrectRegistrationPage",
     opt=_page_opts("clinical.patient.update", care_relationship=False), sync_to_thread=True,
     include_in_schema=False)
def registration_page(request: Asking, tenant: Tenant, patient_id: Id) -> Template:
    """The registration as it stands, to correct, with every earlier version and why it was changed."""
    with request.app.state.db.tenant(tenant) as conn:
        found = service.get_patient(conn, request.user, patient_id)
    return _correction_form(request, tenant, patient_id, _registration_values(found), {},
                            version_id=found["version_id"])


@post(PATIENT + "/registration", operation_id="PortalCorrectRegistration",
      opt=_page_opts("clinical.patient.update", care_relationship=False), sync_to_thread=True,
      include_in_schema=False)
def correct_registration(request: Asking, tenant: Tenant, patient_id: Id, data: FormData) -> Response:
    """Correct a registration: a new version supersedes the one in force, with the reason; the version the
    form was loaded from must still be in force (someone else's correction is not overwritten)."""
    values = form_values(data)
    db: Database = request.app.state.db
    with db.tenant(tenant) as conn:
        found = service.get_patient(conn, request.user, patient_id)  # a guessed id is a 404 before anything
    loaded = _uuid_or_none(values.get("version_id"))
    errors: dict[str, str] = _registration_errors(values)
    owner, stale, asked, status = None, False, False, None
    try:
        patient_in = PatientIn.model_validate(_corrected(found, values))
    except ValidationError as exc:
        errors = field_errors(exc, _registration_rename(values)) | errors
    if not values.get("reason") or len(values["reason"]) < 3:
        errors["reason"] = "Say why the registration is corrected (at least 3 characters)."
    if not errors:
        try:
            with db.tenant(tenant) as conn:
                corrected = service.update_patient(conn, request.user, patient_id, patient_in, reason=values["reason"],
                                                   version_id=loaded or found["version_id"], db=db)
        except service.NationalIdHolderDiffers as exc:
            errors, asked = _national_id_asked(exc, "corrected"), True
        except service.NationalIdAskedTooOften as exc:
            errors, asked, status = {"national_id": exc.detail}, True, 429
        except RecordError as exc:
            if exc.extra.get("field") == "identifiers":
                errors, owner = _identifier_taken(exc, tenant)
            elif exc.status == 409:
                stale = True
                errors = {"form": "Someone corrected this registration since you opened it. What you typed is "
                                  "below; open the registration again to see their correction, then make yours."}
            else:
                errors = {"form": exc.detail[0].upper() + exc.detail[1:]}
        except sa.exc.IntegrityError:
            errors = {"national_id": "Another registration claimed this national ID a moment ago."}
    if errors:
        return _correction_form(request, tenant, patient_id, values, errors, version_id=values.get("version_id"),
                                owner=owner, status=status or (409 if stale or asked else 422),
                                national_id_check=asked)
    service.release_unlinked_subject(db, tenant, request.user, corrected)
    return see_other(request, f"/t/{tenant}/patients/{patient_id}?done=registration-corrected")


# -- the patient: registration details and encounters ----------------------------------------------


def _wards(conn: Connection, principal: Principal) -> list[dict]:
    return operations.ward_census(conn) if principal.can("operations.ward.read") else []


@get(PATIENT, operation_id="PortalPatient", opt=_page_opts("clinical.patient.read", care_relationship=False),
     sync_to_thread=True, include_in_schema=False)
def patient_page(request: Asking, tenant: Tenant, patient_id: Id) -> Template:
    """Registration details and encounters: what the front desk works with (clinicians see it too)."""
    with request.app.state.db.tenant(tenant) as conn:
        top = banner(conn, request.user, patient_id, in_care=False)
    return page(request, "patient.html", active="patients", patient_id=patient_id, tab="patient",
                portal_account=_has_portal_account(request, top["patient"]), **top, **HELPERS)


def _has_portal_account(request: Asking, found: dict) -> bool:
    """Whether the patient already signs in to the patient portal (so the desk offers no second invitation)."""
    if found.get("subject_id") is None or not request.user.can("clinical.patient.update"):
        return False
    with request.app.state.db.control() as conn:
        return identity.subject_has_account(conn, found["subject_id"])


@post(PATIENT + "/portal-invite", operation_id="PortalInvitePatient",
      opt=_page_opts("clinical.patient.update", care_relationship=False), sync_to_thread=True, include_in_schema=False)
def invite_patient(request: Asking, tenant: Tenant, patient_id: Id, data: FormData) -> Template:
    """An account for the patient in the patient portal, linked to their one-identity subject, and a
    one-time enrolment link to hand them (shown once; the appliance keeps only its digest)."""
    email = str(data.get("email") or "").strip()
    status = 200
    try:
        invite = {"email": email, "link": _invite(request, tenant, patient_id, email)}
    except identity.IdentityError as refused:
        invite = {"email": email, "error": str(refused)[:1].upper() + str(refused)[1:]}
        status = 429 if isinstance(refused, InvitationAskedTooOften) else 422
    with request.app.state.db.tenant(tenant) as conn:
        top = banner(conn, request.user, patient_id, in_care=False)
    return page(request, "patient.html", status=status, active="patients",
                patient_id=patient_id, tab="patient", invite=invite, **top, **HELPERS)


class InvitationAskedTooOften(identity.IdentityError):
    """An invitation not looked at (429): the national-ID question about its person was asked too often this hour."""


INVITATION_ASKED_TOO_OFTEN = (
    "This patient's national ID was asked about too often in the last hour with a birth date or sex its holder does "
    "not have, so whether this chart agrees with that person is not looked at again for now. Try again in an hour, "
    "or ask the records office. Nobody was invited.")


def disputed_link_refusal(differs: list[str]) -> str:
    """Why a chart linked over a differing answer to the national-ID question is not invited, and how the desk
    resolves it: only what differs is said, nothing of the other person. Correcting is the one way, since the desk
    confirming again is what linked it: a registration that agrees with the number's holder, or carries another
    number, is invited as any other."""
    return (f"This chart's national ID was confirmed at registration although the person it belongs to, registered "
            f"at a facility of this appliance, has another {' and '.join(differs)}: an account from this chart would "
            "show this patient that person's records. Check the patient's ID card. If its number is another, correct "
            f"the national ID on this registration; if its {' and '.join(differs)} differs from this registration's, "
            "correct that. If the card agrees with this registration, the record held elsewhere is the one in error: "
            "ask the records office to have it corrected where it was registered. The patient can be invited once "
            "the registrations agree. Nobody was invited.")


def _invite(request: Asking, tenant: str, patient_id: uuid.UUID, email: str) -> str:
    """The patient's account and its enrolment link; IdentityError, with nothing made, when refused."""
    db = request.app.state.db
    identity.checked_email(email)  # the address first: a refused invitation links nothing either
    try:
        found, subject_id = service.subject_of(db, tenant, request.user, patient_id)
    except service.ChartLeftUnlinked as unlinked:
        raise identity.IdentityError(f"{unlinked.detail} Nobody was invited.") from None
    # Whether the chart agrees with its person answers the national-ID question again (correct a chart's birth date,
    # try to invite it, and so on), so it is limited as that question is, the count kept before anything is compared.
    with db.control() as asking:
        holder_id = identity.resolve_subject(asking, subject_id)
        allowed = identity.national_id_question_allowed(asking, holder_id, by=request.user)
        differs = patient_portal.disputed_link(db, tenant, patient_id, subject_id) if allowed else []
        if differs:
            identity.note_differing_answer(asking, holder_id, by=request.user)
    if not allowed or differs:
        with db.tenant(tenant) as conn:  # the refusal on the chart's access log, with what differed and nothing else
            note_access(conn, request.user, "create", patient_id, "portal_invitation", detail={
                "refused": "national ID confirmed over a differing holder", "differs": differs} if allowed else {
                "refused": "asked too often"})
        if not allowed:
            raise InvitationAskedTooOften(INVITATION_ASKED_TOO_OFTEN)
        raise identity.IdentityError(disputed_link_refusal(differs))
    with db.control() as conn:
        if identity.subject_has_account(conn, subject_id):
            raise identity.IdentityError("this patient already has a patient portal account; if they lost "
                                         "access, the operator can re-enrol it (healthos account reset-mfa)")
        made = identity.create_account(conn, request.app.state.policy, kind="patient", role="patient", email=email,
                                       display_name=f"{found['given_names']} {found['family_name']}",
                                       subject_id=subject_id, invited_from=(tenant, patient_id), by=request.user)
    with db.tenant(tenant) as conn:
        note_access(conn, request.user, "create", patient_id, "portal_invitation", (made.account_id,))
    return f"{str(request.base_url).rstrip('/')}/enrol?code={made.enrolment_code}"


ENCOUNTER_FIELDS = ["encounter_class", "reason", "ward_code", "systolic_mmhg", "diastolic_mmhg", "heart_rate_bpm",
                    "respiratory_rate", "temperature_c", "spo2_percent", "weight_kg", "height_cm", "muac_mm", "oedema"]
VITAL_FIELDS = ENCOUNTER_FIELDS[3:]


def _encounter_form(request: Asking, tenant: str, patient_id: uuid.UUID, values: dict, errors: dict,
                    status: int = 200) -> Template:
    db: Database = request.app.state.db
    today = facility_today(db, tenant)
    with db.tenant(tenant) as conn:
        top = banner(conn, request.user, patient_id, in_care=False)
        wards = _wards(conn, request.user)
    # MUAC and oedema screen a child for acute malnutrition: asked of a child only, as the ward's form asks them,
    # and refused of anyone older by the record (nursing.refuse_adult_screening).
    asks_screening = nursing.is_child(top["patient"]["birth_date"], today)
    return page(request, "encounter_form.html", status=status, active="patients", patient_id=patient_id,
                tab="patient", values=values, errors=errors, wards=wards, asks_screening=asks_screening, **top,
                **HELPERS)


@get(PATIENT + "/encounters/new", operation_id="PortalStartEncounterPage",
     opt=_page_opts("clinical.encounter.create", care_relationship=False), sync_to_thread=True,
     include_in_schema=False)
def encounter_page(request: Asking, tenant: Tenant, patient_id: Id) -> Template:
    return _encounter_form(request, tenant, patient_id, {"encounter_class": "outpatient"}, {})


@post(PATIENT + "/encounters", operation_id="PortalStartEncounter",
      opt=_page_opts("clinical.encounter.create", care_relationship=False), sync_to_thread=True,
      include_in_schema=False)
def start_encounter(request: Asking, tenant: Tenant, patient_id: Id, data: FormData) -> Response:
    """Open a visit or admission (as in progress), with the vital signs taken at arrival if any."""
    values = form_values(data)
    fields: dict[str, Any] = {"encounter_class": values.get("encounter_class"), "status": "in_progress",
                              "reason": values.get("reason"), "ward_code": values.get("ward_code")}
    vitals = ({k: values[k] for k in VITAL_FIELDS if values.get(k) and k != "oedema"}
              | oedema_fields(values.get("oedema")))
    if vitals:
        fields["vitals"] = vitals
    errors: dict[str, str] = {}
    try:
        encounter_in = EncounterIn.model_validate({k: v for k, v in fields.items() if v is not None})
    except ValidationError as exc:
        errors = field_errors(exc, {("vitals",): "vitals", ("vitals", "oedema_grade"): "oedema"}
                              | {("vitals", k): k for k in VITAL_FIELDS})
    if not errors:
        try:
            with request.app.state.db.tenant(tenant) as conn:
                service.open_encounter(conn, request.user, patient_id, encounter_in)
        except RecordError as exc:
            if exc.status == 404:
                raise
            errors = {exc.extra.get("field") or "form": exc.detail}
    if errors:
        return _encounter_form(request, tenant, patient_id, values, errors, status=422)
    return see_other(request, patient_home(request.user, tenant, patient_id) + "?done=encounter-started")


@post(PATIENT + "/encounters/{encounter_id:uuid}/status", operation_id="PortalChangeEncounterStatus",
      opt=_page_opts("clinical.encounter.update"), sync_to_thread=True, include_in_schema=False)
def change_encounter(request: Asking, tenant: Tenant, patient_id: Id, encounter_id: Id,
                     data: FormData) -> Response:
    """Arrive, start, finish or cancel an encounter; a step its status does not allow is refused (409)."""
    to_status = form_values(data).get("status")
    if to_status not in {"arrived", "in_progress", "finished", "cancelled"}:
        return error_page(request, 422, "Choose arrive, start, finish or cancel.")
    with request.app.state.db.tenant(tenant) as conn:
        service.transition_encounter(conn, request.user, patient_id, encounter_id, to_status)
    # Back to the page the button was on: the registration page when it says so, else the patient's home.
    path = f"/t/{tenant}/patients/{patient_id}" if form_values(data).get("back") == "patient" else \
        patient_home(request.user, tenant, patient_id)
    return see_other(request, path + "?done=encounter-updated")


# -- the chart -------------------------------------------------------------------------------------


@get(PATIENT + "/chart", operation_id="PortalChart", opt=_page_opts("clinical.chart.read"), sync_to_thread=True,
     include_in_schema=False)
def chart_page(request: Asking, tenant: Tenant, patient_id: Id) -> Template:
    """The page a clinician opens first: the banner with allergies and alerts, problems, medications,
    results with their flags and trends, vital signs charts, open orders, encounters, recent notes."""
    principal: Principal = request.user
    db: Database = request.app.state.db
    clock = facility_clock(request, tenant)
    with db.tenant(tenant) as conn:
        summary = chart.chart_summary(conn, principal, patient_id)
        deaths_said = death_banner(conn, principal, patient_id)  # "Deceased <date>", or "death not yet certified"
        # A mother's deliveries, linking to her babies; a baby's mother, linking back (noted only where there is one).
        births = delivery.read(conn, principal, patient_id, noting_none=False) \
            if principal.can("clinical.delivery.read") else None
        # A delivery marked entered in error leaves the list above: the card says by whom and why.
        withdrawn_births = delivery.withdrawn_deliveries(conn, principal, patient_id, noting_none=False) \
            if births is not None else []
        # The patient's operations, each linking to its case and carrying the operation note's post-operative
        # instructions: the ward receives the patient back from theatre here, not from the theatre list.
        operations = surgery.patient_cases(conn, principal, patient_id, noting_none=False, with_notes=True) \
            if principal.can("clinical.surgery.read") else []
        held = service.held_on_boards(conn, [e["id"] for e in summary["encounters"]])
        # The summary carries the latest results; a year's trend needs them all.
        results = service.list_results(conn, principal, patient_id, limit=1000) \
            if principal.can("clinical.result.read") else summary["results"]
        vitals = vitals_history(conn, principal, patient_id)
        notes = service.list_notes(conn, principal, patient_id, limit=3) if principal.can("clinical.note.read") \
            else None
        additions = [(a.template, a.read(conn, principal, patient_id, clock)) for a in VITALS_ADDITIONS
                     if vitals and principal.can(a.permission)]
        # Each inpatient stay listed says whether its discharge summary is signed, and opens it.
        summaries = discharge.in_force_by_stay(conn, principal, patient_id) \
            if principal.can("clinical.note.read") and any(e["encounter_class"] == "inpatient"
                                                           for e in summary["encounters"]) else {}
    patient = summary["patient"]
    trends = trends_of(results, clock)
    to_review = [r for r in results if r["signed_at"] is None]
    adult = not nursing.is_child(patient["birth_date"], clock.today)
    names = people_named(db, {n["author_id"] for n in notes or []} | {w["withdrawn_by"] for w in withdrawn_births})
    return page(request, "chart.html", active="patients", patient_id=patient_id, tab="summary",
                patient=patient, allergies=summary["allergies"], problems=summary["problems"],
                medications=summary["medications"], open_orders=summary["open_orders"],
                encounters=[e | {"held_by": held.get(e["id"])} for e in summary["encounters"]],
                open_encounters=open_encounters(summary["encounters"]), trends=trends[:12], to_review=to_review,
                abnormal_to_review=[r for r in to_review if is_abnormal(r)],
                vitals=vitals[:1], vitals_rows=vitals[:10], vitals_charts=vitals_charts(vitals, clock, adult),
                vitals_tiles=vitals_tiles(vitals[0] if vitals else None, adult),
                vitals_additions=additions, notes=notes, names=names, discharge_summaries=summaries, **deaths_said,
                births=births, withdrawn_births=withdrawn_births, delivery_modes=delivery.MODES,
                operations=operations, surgery_statuses=surgery.STATUS_WORDS,
                discharge_stays=discharge.STAY_STATUSES, **HELPERS)


# -- the timeline ----------------------------------------------------------------------------------


def _occurred(row: dict) -> dt.datetime | None:
    return row["occurred_at"]


@dataclass(frozen=True)
class TimelineSource:
    layer: str
    kind: str
    label: str
    permission: str
    read: Callable[[Connection, Principal, uuid.UUID], list[dict]]
    describe: Callable[[dict], tuple[str, str]]  # (what, detail)
    when: Callable[[dict], dt.datetime | None] = _occurred


def vitals_text(row: dict) -> str:
    parts = []
    if row["systolic_mmhg"] and row["diastolic_mmhg"]:
        parts.append(f"BP {row['systolic_mmhg']}/{row['diastolic_mmhg']}")
    for column, label, unit in (("heart_rate_bpm", "HR", ""), ("respiratory_rate", "RR", ""),
                                ("temperature_c", "T", " °C"), ("spo2_percent", "SpO₂", "%"),
                                ("weight_kg", "Wt", " kg")):
        if row[column] is not None:
            parts.append(f"{label} {vital_value(column, row[column])}{unit}")
    return ", ".join(parts)


TIMELINE_SOURCES: list[TimelineSource] = [
    TimelineSource("clinical", "encounter", "Encounters", "clinical.encounter.read",
                   lambda c, p, i: service.list_encounters(c, p, i, limit=500),
                   lambda r: (f"{ENCOUNTER_CLASSES.get(r['encounter_class'], r['encounter_class'])} "
                              f"({r['status'].replace('_', ' ')})", r["reason"] or ""),
                   lambda r: r["started_at"] or r["planned_for"]),
    TimelineSource("clinical", "condition", "Problems", "clinical.problem.read",
                   lambda c, p, i: service.list_conditions(c, p, i),
                   lambda r: (f"Problem {r['code']} {r['display']}", f"{r['clinical_status']}, {r['verification']}")),
    TimelineSource("clinical", "allergy", "Allergies", "clinical.allergy.read",
                   lambda c, p, i: service.list_allergies(c, p, i),
                   lambda r: (f"Allergy to {r['substance']}",
                              ", ".join(x for x in (r["reaction"], r["severity"], r["clinical_status"]) if x))),
    TimelineSource("clinical", "medication_request", "Prescriptions", "clinical.medication.read",
                   lambda c, p, i: service.list_medications(c, p, i),
                   lambda r: (f"Prescribed {r['drug']} {number(r['dose'])} {r['dose_unit']}",
                              f"{r['route']}, {r['frequency']}; {r['status']}"
                              + (f"; allergy overridden: {r['allergy_override_reason']}"
                                 if r["allergy_override_reason"] else ""))),
    TimelineSource("clinical", "service_request", "Orders", "clinical.order.read",
                   lambda c, p, i: service.list_orders(c, p, i),
                   lambda r: (f"Ordered {r['display']}", f"{r['priority']}; {r['status']}"
                              + (f"; order set {r['order_set']}" if r["order_set"] else ""))),
    TimelineSource("clinical", "result", "Results", "clinical.result.read",
                   lambda c, p, i: service.list_results(c, p, i, limit=1000),
                   lambda r: (f"{r['display']} {result_value(r)}",
                              FLAGS.get(r["flag"], ("",))[0] + ("; signed" if r["signed_at"] else "; to review"))),
    TimelineSource("clinical", "note", "Notes", "clinical.note.read",
                   lambda c, p, i: service.list_notes(c, p, i, limit=500),
                   lambda r: (f"Note: {r['title']}", (r["text"] or "")[:160])),
    TimelineSource("clinical", "vital_signs", "Vital signs", "clinical.chart.read",
                   lambda c, p, i: vitals_history(c, p, i, limit=1000),
                   lambda r: ("Vital signs", vitals_text(r))),
]
LAYERS = {"clinical": "Clinical", "nursing": "Nursing", "operations": "Operations", "financial": "Financial"}


@get(PATIENT + "/timeline", operation_id="PortalTimeline", opt=_page_opts("clinical.chart.read"),
     sync_to_thread=True, include_in_schema=False)
def timeline_page(request: Asking, tenant: Tenant, patient_id: Id, layer: Query = "", kind: Query = "") -> Template:
    """Every entry on the patient's record, newest first, filterable by layer and kind."""
    principal: Principal = request.user
    db: Database = request.app.state.db
    clock = facility_clock(request, tenant)
    sources = [s for s in TIMELINE_SOURCES if principal.can(s.permission)]
    layers = [(key, label) for key, label in LAYERS.items() if any(s.layer == key for s in sources)]
    layer = layer if layer in dict(layers) else ""
    kinds = [(s.kind, s.label) for s in sources if not layer or s.layer == layer]
    kind = kind if kind in dict(kinds) else ""
    wanted = [s for s in sources if (not layer or s.layer == layer) and (not kind or s.kind == kind)]
    items = []
    with db.tenant(tenant) as conn:
        top = banner(conn, principal, patient_id)
        read = [(source, row) for source in wanted for row in source.read(conn, principal, patient_id)]
        # A corrected record (a prescription stopped, a problem confirmed) is shown as it is now, at the time
        # it began: its current version was written when corrected, which is not when it was prescribed.
        began = service.first_recorded(conn, [row["root_id"] for _, row in read
                                              if row.get("root_id") not in (None, row.get("id"))])
    for source, row in read:
        at = began.get(row.get("root_id")) if source.when is _occurred else source.when(row)
        at = at or source.when(row)
        if at is None:
            continue
        what, detail = source.describe(row)
        items.append({"at": at, "layer": source.layer, "kind": source.kind, "kind_label": source.label,
                      "what": what, "detail": detail, "amended": row.get("entry_status") == "amended",
                      "corrected_at": row.get("recorded_at") if row.get("entry_status") == "amended" else None,
                      "author_id": row.get("author_id"), "abnormal": source.kind == "result" and is_abnormal(row)})
    items.sort(key=lambda i: i["at"], reverse=True)
    shown = items[:400]
    months: list[dict] = []
    for item in shown:
        label = clock.local(item["at"]).strftime("%B %Y")
        if not months or months[-1]["label"] != label:
            months.append({"label": label, "items": []})
        months[-1]["items"].append(item)
    names = people_named(db, {i["author_id"] for i in shown})
    return page(request, "timeline.html", active="patients", patient_id=patient_id, tab="timeline", **top,
                months=months, total=len(items), shown=len(shown), layers=layers, kinds=kinds, layer=layer,
                kind=kind, names=names, layer_labels=LAYERS, **HELPERS)


# -- results review and sign-off -------------------------------------------------------------------


def _results_page(request: Asking, tenant: str, patient_id: uuid.UUID, *, status: int = 200, form: str = "",
                  values: dict | None = None, errors: dict | None = None) -> Template:
    principal: Principal = request.user
    db: Database = request.app.state.db
    clock = facility_clock(request, tenant)
    with db.tenant(tenant) as conn:
        top = banner(conn, principal, patient_id)
        results = service.list_results(conn, principal, patient_id, limit=1000)
        # What was marked entered in error stays on the page, with why: nothing in the record is deleted.
        withdrawn = service.list_withdrawn(conn, principal, patient_id, result, "result")
    to_review = sorted((r for r in results if r["signed_at"] is None),
                       key=lambda r: (not is_abnormal(r), -r["occurred_at"].timestamp()))
    trends = trends_of(results, clock)
    rules = request.app.state.release_rules
    # Reviewed result → the rule (REL-001...) that keeps it off the patient portal until given in person.
    in_person = {r["id"]: rule for r in results if r["signed_at"] is not None
                 and (rule := rules.in_person_rule(r["code"])) is not None}
    to_give = [r for r in results if r["id"] in in_person and r["disclosed_at"] is None]
    recent_signed = [r for r in results if r["signed_at"] is not None][:20]
    names = people_named(db, {r["signed_by"] for r in [*recent_signed, *to_give]}
                         | {r["disclosed_by"] for r in recent_signed if r["disclosed_by"]}
                         | {w["withdrawn_by"] for w in withdrawn})
    return page(request, "results.html", status=status, active="patients", patient_id=patient_id, tab="results",
                **top, to_review=to_review, trends=trends, recent_signed=recent_signed, to_give=to_give,
                in_person=in_person, withdrawn=withdrawn, names=names, form=form, values=values or {},
                errors=errors or {}, **HELPERS)


@get(PATIENT + "/results", operation_id="PortalResults", opt=_page_opts("clinical.result.read"),
     sync_to_thread=True, include_in_schema=False)
def results_page(request: Asking, tenant: Tenant, patient_id: Id) -> Template:
    """Results awaiting review (abnormal first), each with its sign-off form; reviewed results the release
    rules give only in person and not given yet, each with the form recording that it was; every
    analyte's trend; those marked entered in error (who withdrew each, when and why)."""
    return _results_page(request, tenant, patient_id)


@get(PATIENT + "/results/trend/{code:str}", operation_id="PortalResultTrend", opt=_page_opts("clinical.result.read"),
     sync_to_thread=True, include_in_schema=False)
def trend_page(request: Asking, tenant: Tenant, patient_id: Id, code: FromPath[str]) -> Template:
    """One analyte over time: the chart with its reference range, and every value in a table."""
    principal: Principal = request.user
    db: Database = request.app.state.db
    clock = facility_clock(request, tenant)
    with db.tenant(tenant) as conn:
        top = banner(conn, principal, patient_id)
        results = service.list_results(conn, principal, patient_id, limit=1000)
    trend = next((t for t in trends_of(results, clock) if t["code"] == code), None)
    if trend is None:
        return error_page(request, 404, f"No results for {code} on this patient's chart.")
    names = people_named(db, {r["signed_by"] for r in trend["rows"]})
    return page(request, "trend.html", active="patients", patient_id=patient_id, tab="results", **top,
                trend=trend, chart=trend_chart(trend, clock) if trend["points"] else None, names=names, **HELPERS)


@post(PATIENT + "/results/{entry_id:uuid}/sign", operation_id="PortalSignResult",
      opt=_page_opts("clinical.result.sign"), sync_to_thread=True, include_in_schema=False)
def sign_result(request: Asking, tenant: Tenant, patient_id: Id, entry_id: Id, data: FormData) -> Response:
    """The reviewing clinician signs a result, with an optional comment (a second signature is refused)."""
    comment = form_values(data).get("comment")
    if comment and len(comment) > 2000:
        return error_page(request, 422, "A sign-off comment holds at most 2000 characters.")
    with request.app.state.db.tenant(tenant) as conn:
        service.sign_result(conn, request.user, patient_id, entry_id, comment)
    return see_other(request, f"/t/{tenant}/patients/{patient_id}/results?done=signed")


@post(PATIENT + "/results/{entry_id:uuid}/disclose", operation_id="PortalDiscloseResult",
      opt=_page_opts("clinical.result.sign"), sync_to_thread=True, include_in_schema=False)
def disclose_result(request: Asking, tenant: Tenant, patient_id: Id, entry_id: Id, data: FormData) -> Response:
    """The clinician records that they gave the patient a reviewed result in person; a result the release
    rules give only that way shows on the patient's portal from now (once; a second time is refused)."""
    note = form_values(data).get("note")
    if note and len(note) > 2000:
        return error_page(request, 422, "A note on giving a result holds at most 2000 characters.")
    with request.app.state.db.tenant(tenant) as conn:
        service.disclose_result(conn, request.user, patient_id, entry_id, note)
    return see_other(request, f"/t/{tenant}/patients/{patient_id}/results?done=disclosed")


@post(PATIENT + "/results/{entry_id:uuid}/disclose/withdraw", operation_id="PortalWithdrawDisclosure",
      opt=_page_opts("clinical.entry.retract"), sync_to_thread=True, include_in_schema=False)
def withdraw_disclosure(request: Asking, tenant: Tenant, patient_id: Id, entry_id: Id, data: FormData) -> Response:
    """A result recorded as given in person by mistake (the wrong result, or before the conversation):
    the record is marked entered in error, with the reason, and the result leaves the patient's portal."""
    reason = (form_values(data).get("reason") or "").strip()
    if not reason or len(reason) > 500:
        return error_page(request, 422, "Say why the result was not given in person (at most 500 characters); "
                                        "nothing was changed.")
    with request.app.state.db.tenant(tenant) as conn:
        service.withdraw_disclosure(conn, request.user, patient_id, entry_id, reason)
    return see_other(request, f"/t/{tenant}/patients/{patient_id}/results?done=withdrawn")


# -- orders: order sets, single tests, prescriptions, and the drug–allergy override ----------------


def _orders_context(conn: Connection, principal: Principal, patient_id: uuid.UUID, today: dt.date) -> dict:
    top = banner(conn, principal, patient_id)
    context = dict(top)
    context["orders"] = service.list_orders(conn, principal, patient_id, open_only=True) \
        if principal.can("clinical.order.read") else []
    context["medications"] = service.list_medications(conn, principal, patient_id, active_only=True) \
        if principal.can("clinical.medication.read") else []
    # What was marked entered in error stays on the page, with why: nothing in the record is deleted.
    context["withdrawn_orders"] = service.list_withdrawn(conn, principal, patient_id, service_request,
                                                         "service_request")
    context["withdrawn_medications"] = service.list_withdrawn(conn, principal, patient_id, medication_request,
                                                              "medication_request") \
        if principal.can("clinical.medication.read") else []
    context["order_sets"] = catalogue.list_order_sets(conn)
    context["catalogue"] = catalogue.list_catalogue(conn)
    if principal.can("clinical.result.create"):  # a test since dropped from the catalogue has no form
        tests = {c["code"]: c["definition"] for c in context["catalogue"]}
        # `today` the facility's, the day service.judged_for judges a result taken now by: the form's range is
        # the one judged.
        context["result_forms"] = {o["id"]: analytes_of(catalogue.orderable_of(o["code"], tests[o["code"]]),
                                                        top["patient"], today)
                                   for o in context["orders"] if o["code"] in tests}
    return context


def analytes_of(test: OrderableConfig, patient: dict | None = None, today: dt.date | None = None) -> list[dict]:
    """What a result of a test is entered as, one item per analyte (a panel's components, else the test
    itself): its LOINC code, name, unit and reference range (the band of the `patient`'s sex and age on
    `today` when given), and its choices, or a free-text report for a test that has neither a unit nor
    choices (an imaging study)."""
    analytes = test.components or [test]
    if patient is not None and today is not None:
        analytes = [a.for_patient(patient["sex"], patient["birth_date"], today) for a in analytes]
    return [{"code": a.loinc, "name": a.name, "unit": a.unit, "low": a.low, "high": a.high, "choices": a.choices,
             "band": a.band, "report": not a.choices and a.unit is None and a.low is None and a.high is None}
            for a in analytes]


def _orders_page(request: Asking, tenant: str, patient_id: uuid.UUID, *, status: int = 200,
                 form: str = "", values: dict | None = None, errors: dict | None = None,
                 also_active: bool = False) -> Template:
    today = facility_today(request.app.state.db, tenant)
    with request.app.state.db.tenant(tenant) as conn:
        context = _orders_context(conn, request.user, patient_id, today)
    names = people_named(request.app.state.db, {w["withdrawn_by"] for w in [*context["withdrawn_orders"],
                                                                             *context["withdrawn_medications"]]})
    return page(request, "orders.html", status=status, active="patients", patient_id=patient_id, tab="orders",
                form=form, values=values or {}, errors=errors or {}, also_active=also_active, names=names,
                **context, **HELPERS)


@get(PATIENT + "/orders", operation_id="PortalOrders", opt=_page_opts("clinical.order.read"), sync_to_thread=True,
     include_in_schema=False)
def orders_page(request: Asking, tenant: Tenant, patient_id: Id) -> Template:
    """Open orders and active prescriptions, and the forms to place an order set, a test or a drug."""
    return _orders_page(request, tenant, patient_id)


def _override_page(request: Asking, tenant: str, patient_id: uuid.UUID, *, action: str, blocked: list[dict],
                   values: dict, what: str, errors: dict | None = None, leave_out: list[str] | None = None) -> Template:
    """The drug–allergy check's question: a reason to order anyway, or (for an order set) the rest of the
    set without the drugs it matched."""
    with request.app.state.db.tenant(tenant) as conn:
        top = banner(conn, request.user, patient_id)
    hidden = {k: v for k, v in values.items() if k not in ("allergy_override_reason", "leave_out") and v is not None}
    return page(request, "override.html", status=409, active="patients", patient_id=patient_id, tab="orders",
                action=action, blocked=blocked, hidden=hidden, what=what, errors=errors or {},
                leave_out=leave_out or [], **top, **HELPERS)


def _without_override(fields: dict[str, Any]) -> dict[str, Any]:
    """An order's fields without the reason to give it despite an allergy, when that reason was refused (too
    short): the order goes through the drug–allergy check again, which stops it as it did the first time and
    records the stop, so the question comes back naming the allergies matched and, for an order set, offering
    the rest of the set without those drugs (the page said only "an allergy" and offered nothing else)."""
    return {k: v for k, v in fields.items() if k != "allergy_override_reason"}


def _order_set_named(request: Asking, tenant: str, code: str) -> str:
    """'the order set Suspected malaria', as the orders page names it (the code if it is not configured)."""
    with request.app.state.db.tenant(tenant) as conn:
        try:
            return f"the order set {catalogue.get_order_set(conn, code).name}"
        except RecordError:
            return f"order set {code}"


def _already_prescribed_in_set(request: Asking, tenant: str, patient_id: uuid.UUID, code: str,
                               leave_out: list[str]) -> str | None:
    """What to say when drugs of an order set are already active prescriptions of the patient, as the
    prescribe form says it for one drug; None when none is (or the set is unknown: the service says so)."""
    with request.app.state.db.tenant(tenant) as conn:
        try:
            order_set = catalogue.get_order_set(conn, code)
        except RecordError:
            return None
        if not order_set.medications:
            return None
        active = service.list_medications(conn, request.user, patient_id, active_only=True)
    current = {drugs.normalise(m["drug"]) for m in active}
    left_out = {drugs.normalise(drug) for drug in leave_out}
    if left_out - {drugs.normalise(m.drug) for m in order_set.medications}:
        return None  # a drug the set does not have: the service's refusal says so first
    doubled = [m.drug for m in order_set.medications
               if drugs.normalise(m.drug) in current and drugs.normalise(m.drug) not in left_out]
    if not doubled:
        return None
    names = ", ".join(doubled)
    return (f"{names} {'is' if len(doubled) == 1 else 'are'} already prescribed and active. Stop or complete "
            f"{'it' if len(doubled) == 1 else 'them'} under Active prescriptions, or tick “Prescribe as well” "
            "to give both.")


def _placed_at(request: Asking, tenant: str, values: dict) -> tuple[dict[str, dt.datetime], dict[str, str]]:
    """The order forms' "Placed at" (facility time) as the API's occurred_at, for an order given earlier (by
    telephone, in theatre) written up now: ({}, {}) when left empty, the order's time is then its arrival; else the
    field or the sentence refusing it."""
    try:
        at = local_moment(values.get("occurred_at"), facility_timezone(request.app.state.db, tenant))
    except ValueError:
        return {}, {"occurred_at": "Give the day and time the order was placed, or leave it empty for now."}
    return ({"occurred_at": at} if at else {}), {}


@post(PATIENT + "/order-sets", operation_id="PortalPlaceOrderSet", opt=_page_opts("clinical.order.create"),
      sync_to_thread=True, include_in_schema=False)
def place_order_set(request: Asking, tenant: Tenant, patient_id: Id, data: FormData) -> Response:
    """Every order of one of the facility's order sets, or none; an allergy match asks for a reason."""
    values = form_values(data)
    code = values.get("code") or ""
    # The drugs to leave out, one field each (a form's repeated field; form_values keeps only the last).
    raw = data.get("leave_out")
    leave_out = [d.strip() for d in (raw if isinstance(raw, list) else [raw]) if isinstance(d, str) and d.strip()]
    action = f"/t/{tenant}/patients/{patient_id}/order-sets"
    placed, refused = _placed_at(request, tenant, values)
    if refused:
        return _orders_page(request, tenant, patient_id, status=422, form=f"set-{code}", values=values, errors=refused)
    fields = {k: values.get(k) for k in ("encounter_id", "priority", "clinical_info", "allergy_override_reason")
              if values.get(k)} | {"leave_out": leave_out} | placed
    reason_refused: dict[str, str] = {}
    try:
        order_set_in = OrderSetIn.model_validate(fields)
    except ValidationError as exc:
        errors = field_errors(exc)
        if set(errors) != {"allergy_override_reason"} or "code" not in values:
            return _orders_page(request, tenant, patient_id, status=422, form=f"set-{code}", values=values,
                                errors=errors)
        reason_refused = errors
        order_set_in = OrderSetIn.model_validate(_without_override(fields))
    if values.get("also_active") != "true":
        already = _already_prescribed_in_set(request, tenant, patient_id, code, leave_out)
        if already is not None:
            return _orders_page(request, tenant, patient_id, status=409, form=f"set-{code}", values=values,
                                errors={"form": already}, also_active=True)
    try:
        with request.app.state.db.tenant(tenant) as conn:
            outcome = service.place_order_set(conn, request.user, patient_id, code, order_set_in)
    except RecordError as exc:
        if exc.status == 404 and "order_set" not in exc.extra:
            raise
        field = exc.extra.get("field") or "form"
        message = exc.detail[0].upper() + exc.detail[1:] + ("" if exc.detail.endswith(".") else ".")
        return _orders_page(request, tenant, patient_id, status=422, form=f"set-{code}", values=values,
                            errors={"form" if field == "leave_out" else field: message})
    if outcome.blocked:
        return _override_page(request, tenant, patient_id, action=action, blocked=outcome.blocked, values=values,
                              what=_order_set_named(request, tenant, code), errors=reason_refused,
                              leave_out=[b["drug"] for b in outcome.blocked])
    done = "order-set-override" if order_set_in.allergy_override_reason else (
        "order-set-without" if leave_out else "order-set")
    return see_other(request, f"/t/{tenant}/patients/{patient_id}/orders?done={done}")


@post(PATIENT + "/orders", operation_id="PortalPlaceOrder", opt=_page_opts("clinical.order.create"),
      sync_to_thread=True, include_in_schema=False)
def place_order(request: Asking, tenant: Tenant, patient_id: Id, data: FormData) -> Response:
    """One lab test or imaging study from the facility's catalogue, now or at the time it was placed."""
    values = form_values(data)
    placed, refused = _placed_at(request, tenant, values)
    if refused:
        return _orders_page(request, tenant, patient_id, status=422, form="test", values=values, errors=refused)
    try:
        order_in = ServiceRequestIn.model_validate({k: values.get(k) for k in (
            "code", "encounter_id", "priority", "clinical_info") if values.get(k)} | placed)
        with request.app.state.db.tenant(tenant) as conn:
            service.order_test(conn, request.user, patient_id, order_in)
    except ValidationError as exc:
        return _orders_page(request, tenant, patient_id, status=422, form="test", values=values,
                            errors=field_errors(exc))
    except RecordError as exc:
        if exc.status == 404:
            raise
        return _orders_page(request, tenant, patient_id, status=422, form="test", values=values,
                            errors={exc.extra.get("field") or "form": exc.detail})
    return see_other(request, f"/t/{tenant}/patients/{patient_id}/orders?done=ordered")


@post(PATIENT + "/orders/{entry_id:uuid}/results", operation_id="PortalRecordResult",
      opt=_page_opts("clinical.result.create"), sync_to_thread=True, include_in_schema=False)
def record_result(request: Asking, tenant: Tenant, patient_id: Id, entry_id: Id, data: FormData) -> Response:
    """The result of one open order entered by hand (a point-of-care test, a value the laboratory reads out,
    an imaging report): each analyte given, in one transaction, with the catalogue's unit, range and flag. A
    refusal comes back next to its field with everything typed; nothing is recorded."""
    values = form_values(data)
    form = f"result-{entry_id}"
    with request.app.state.db.tenant(tenant) as conn:
        service.require_patient(conn, patient_id)
        order = next((o for o in service.orders_of(conn, patient_id, open_only=True)
                      if entry_id in (o["id"], o["root_id"])), None)
        if order is None:
            answered = next((o for o in service.orders_of(conn, patient_id) if entry_id in (o["id"], o["root_id"])),
                            None)
            if answered is None:
                raise NotFound(f"no order {entry_id} on this patient's chart", entry_id=str(entry_id))
            return error_page(request, 409, f"{answered['display']} has a result already or was cancelled: its "
                                            "results are on the Results page. Nothing was recorded.")
        analytes = analytes_of(catalogue.get_orderable(conn, order["code"]))
    errors: dict[str, str] = {}
    given: list[ResultIn] = []
    for analyte in analytes:
        raw = values.get(f"v.{analyte['code']}")
        if raw is None:
            continue
        try:
            given.append(ResultIn.model_validate({
                "code": analyte["code"], "value": raw, "service_request_id": order["root_id"],
                "note": values.get("note")}))
        except ValidationError as exc:
            errors[f"v.{analyte['code']}"] = next(iter(field_errors(exc).values()))
    if not given and not errors:
        errors["form"] = "Enter a value for at least one of the test's results."
    if not errors:
        try:
            with request.app.state.db.tenant(tenant) as conn:  # all of them or none
                for result_in in given:
                    try:
                        service.record_result(conn, request.user, patient_id, result_in)
                    except RecordError as exc:
                        exc.extra["field"] = f"v.{result_in.code}" if exc.extra.get("field") in (
                            None, "value", "unit") else "form"
                        raise
        except RecordError as exc:
            if exc.status == 404:
                raise
            errors[exc.extra["field"]] = exc.detail[0].upper() + exc.detail[1:] + (
                "" if exc.detail.endswith(".") else ".")
    if errors:
        return _orders_page(request, tenant, patient_id, status=422, form=form, values=values, errors=errors)
    return see_other(request, f"/t/{tenant}/patients/{patient_id}/results?done=result-recorded")


MEDICATION_FIELDS = ["drug", "dose", "dose_unit", "route", "frequency", "duration_days", "instructions",
                     "encounter_id", "allergy_override_reason"]


def _already_prescribed(request: Asking, tenant: str, patient_id: uuid.UUID, drug: str) -> str | None:
    """What to say when `drug` is already an active prescription of the patient: a second one doubles the
    dose (a refill written as a new prescription, the same drug from two clinicians). None when it is not."""
    with request.app.state.db.tenant(tenant) as conn:
        active = service.list_medications(conn, request.user, patient_id, active_only=True)
    same = next((m for m in active if drugs.normalise(m["drug"]) == drugs.normalise(drug)), None)
    if same is None:
        return None
    clock = facility_clock(request, tenant)
    return (f"{same['drug']} is already prescribed ({number(same['dose'])} {same['dose_unit']} {same['route']}, "
            f"{same['frequency']}, since {clock.day(same['occurred_at'])}). Stop or complete it under Active "
            "prescriptions, or tick “Prescribe it as well” to give both.")


@post(PATIENT + "/medications", operation_id="PortalPrescribe", opt=_page_opts("clinical.medication.create"),
      sync_to_thread=True, include_in_schema=False)
def prescribe(request: Asking, tenant: Tenant, patient_id: Id, data: FormData) -> Response:
    """A prescription, after the drug–allergy check; a match asks for the reason to give it anyway."""
    values = form_values(data)
    action = f"/t/{tenant}/patients/{patient_id}/medications"
    fields = {k: values[k] for k in MEDICATION_FIELDS if values.get(k)}
    reason_refused: dict[str, str] = {}
    try:
        medication_in = MedicationIn.model_validate(fields)
    except ValidationError as exc:
        errors = field_errors(exc)
        if set(errors) != {"allergy_override_reason"}:
            return _orders_page(request, tenant, patient_id, status=422, form="prescribe", values=values,
                                errors=errors)
        reason_refused = errors
        medication_in = MedicationIn.model_validate(_without_override(fields))
    if values.get("also_active") != "true":
        already = _already_prescribed(request, tenant, patient_id, medication_in.drug)
        if already is not None:
            return _orders_page(request, tenant, patient_id, status=409, form="prescribe", values=values,
                                errors={"drug": already}, also_active=True)
    try:
        with request.app.state.db.tenant(tenant) as conn:
            outcome = service.request_medication(conn, request.user, patient_id, medication_in)
    except RecordError as exc:
        if exc.status == 404:
            raise
        return _orders_page(request, tenant, patient_id, status=422, form="prescribe", values=values,
                            errors={exc.extra.get("field") or "form": exc.detail})
    if outcome.blocked:
        return _override_page(request, tenant, patient_id, action=action, blocked=outcome.blocked, values=values,
                              what=medication_in.drug, errors=reason_refused)
    done = "prescribed-override" if medication_in.allergy_override_reason else "prescribed"
    return see_other(request, f"/t/{tenant}/patients/{patient_id}/orders?done={done}")


@post(PATIENT + "/medications/{entry_id:uuid}/status", operation_id="PortalChangeMedicationStatus",
      opt=_page_opts("clinical.medication.update"), sync_to_thread=True, include_in_schema=False)
def change_medication(request: Asking, tenant: Tenant, patient_id: Id, entry_id: Id, data: FormData) -> Response:
    """Stop a prescription (a reaction, a wrong drug) or record its course complete, with the reason: a new
    version of it, the active one kept in its history; one no longer active is refused (409)."""
    values = form_values(data)
    try:
        change = MedicationStatusIn.model_validate({k: values[k] for k in ("status", "reason") if values.get(k)})
    except ValidationError as exc:
        return _orders_page(request, tenant, patient_id, status=422, form=f"med-{entry_id}", values=values,
                            errors=field_errors(exc))
    with request.app.state.db.tenant(tenant) as conn:
        service.change_medication_status(conn, request.user, patient_id, entry_id, change.status, change.reason)
    return see_other(request, f"/t/{tenant}/patients/{patient_id}/orders?done=medication-{change.status}")


# -- notes from the facility's templates -----------------------------------------------------------


@get(PATIENT + "/notes", operation_id="PortalNotes", opt=_page_opts("clinical.note.read"), sync_to_thread=True,
     include_in_schema=False)
def notes_page(request: Asking, tenant: Tenant, patient_id: Id) -> Template:
    """The patient's notes, newest first, those marked entered in error (who withdrew each, when and why), and the
    facility's templates to write the next one from."""
    principal: Principal = request.user
    db: Database = request.app.state.db
    with db.tenant(tenant) as conn:
        top = banner(conn, principal, patient_id)
        notes = service.list_notes(conn, principal, patient_id, limit=100)
        withdrawn = service.list_withdrawn(conn, principal, patient_id, note_table, "note")
        templates = catalogue.list_templates(conn)
    by_specialty: dict[str, list[dict]] = defaultdict(list)
    for template in templates:
        by_specialty[template["specialty"]].append(template)
    labels = {t["code"]: {f["key"]: f for f in t["definition"]["fields"]} for t in templates}
    labels[discharge.CODE] = {f.key: f.model_dump() for f in discharge.TEMPLATE.fields}
    return page(request, "notes.html", active="patients", patient_id=patient_id, tab="notes", **top, notes=notes,
                withdrawn=withdrawn, templates=dict(by_specialty), field_specs=labels,
                names=people_named(db, {n["author_id"] for n in notes} | {w["withdrawn_by"] for w in withdrawn}),
                **HELPERS)


def _note_form(request: Asking, tenant: str, patient_id: uuid.UUID, template_code: str | None, values: dict,
               errors: dict, status: int = 200, correcting: dict | None = None, form: str = "") -> Template:
    """The form that writes a note, or (`correcting`, the note as it stands) the one that corrects it and the one
    that marks it entered in error; `form` names the one whose `errors` these are."""
    with request.app.state.db.tenant(tenant) as conn:
        top = banner(conn, request.user, patient_id)
        template = catalogue.get_template(conn, template_code) if template_code else None
    return page(request, "note_form.html", status=status, active="patients", patient_id=patient_id, tab="notes",
                template=template, values=values, errors=errors, correcting=correcting, form=form, **top, **HELPERS)


@get(PATIENT + "/notes/new", operation_id="PortalWriteNotePage", opt=_page_opts("clinical.note.create"),
     sync_to_thread=True, include_in_schema=False)
def note_page(request: Asking, tenant: Tenant, patient_id: Id, template: Query = "") -> Template:
    """A note form: the template's fields, each rendered by its type, or free text."""
    return _note_form(request, tenant, patient_id, template.strip() or None, {}, {})


def note_fields(template: Any, values: dict[str, Any]) -> dict[str, Any]:
    """The template's fields out of a posted form (`f.<key>`), typed as the template validation expects."""
    fields: dict[str, Any] = {}
    for spec in template.fields:
        raw = values.get(f"f.{spec.key}")
        if spec.type == "multichoice":
            chosen = raw if isinstance(raw, list) else ([raw] if raw else [])
            if chosen:
                fields[spec.key] = chosen
        elif spec.type == "boolean":
            if raw in {"true", "false"}:
                fields[spec.key] = raw == "true"
            elif raw:
                fields[spec.key] = raw
        elif isinstance(raw, list):
            fields[spec.key] = raw[0] if raw else None
        elif raw is not None:
            fields[spec.key] = raw
    return fields


def template_message(detail: str) -> str:
    """The template validation's words, without the field's key (the message sits next to the field):
    "field 'gestational_age' (Gestational age) is required by the Antenatal visit template (ANC)" reads
    "Gestational age is required by the Antenatal visit template (ANC)". A label may hold brackets of its own
    ("Follow-up (when and where)"): it ends at the bracket before the verb, not at its first closing one."""
    text = re.sub(r"^field '[a-z0-9_]+' \((.*?)\) (?=is required |expects )", r"\1 ", detail)
    text = text[0].upper() + text[1:]
    return text if text.endswith(".") else text + "."


@post(PATIENT + "/notes", operation_id="PortalWriteNote", opt=_page_opts("clinical.note.create"),
      sync_to_thread=True, include_in_schema=False)
def write_note(request: Asking, tenant: Tenant, patient_id: Id, data: FormData) -> Response:
    """Save a note; the template's validation speaks next to the field it refused."""
    values = form_values(data)
    template_code = values.get("template_code") if isinstance(values.get("template_code"), str) else None
    errors: dict[str, str] = {}
    template = None
    try:
        with request.app.state.db.tenant(tenant) as conn:
            template = catalogue.get_template(conn, template_code) if template_code else None
            note_in = NoteIn.model_validate({
                "template_code": template_code, "title": values.get("title"), "text": values.get("text"),
                "encounter_id": values.get("encounter_id"),
                "fields": note_fields(template, values) if template else {},
            })
            service.write_note(conn, request.user, patient_id, note_in)
    except ValidationError as exc:
        errors = field_errors(exc)
    except RecordError as exc:
        if exc.status == 404:
            raise
        errors = _note_errors(exc, template, values)
        if "template_code" in errors:
            template_code = None
    if errors:
        return _note_form(request, tenant, patient_id, template_code, values, errors, status=422)
    suffix = "/notes" if request.user.can("clinical.note.read") else (
        "/chart" if request.user.can("clinical.chart.read") else "")
    return see_other(request, f"/t/{tenant}/patients/{patient_id}{suffix}?done=note")


def _note_values(current: dict) -> dict[str, Any]:
    """A note as it stands, as its form's values (a template's fields as `f.<key>`, as they are posted)."""
    values: dict[str, Any] = {"title": current["title"], "text": current["text"]}
    for key, value in (current["fields"] or {}).items():
        if isinstance(value, bool):
            values[f"f.{key}"] = "true" if value else "false"
        elif isinstance(value, list):
            values[f"f.{key}"] = [str(v) for v in value]
        elif value is not None:
            values[f"f.{key}"] = str(value)
    return values


def _note_errors(exc: RecordError, template: Any, values: dict) -> dict[str, str]:
    """The service's refusal of a note, keyed by the form field it names: every template field to fix at
    once, not one per attempt."""
    field = exc.extra.get("field") or "form"
    if field.startswith("fields.") and template is not None:
        problems = catalogue.note_field_problems(template, note_fields(template, values))
        found = {p.extra["field"].removeprefix("fields."): template_message(p.detail) for p in problems}
        if found:
            return found
    return {field.removeprefix("fields."): template_message(exc.detail)}


@get(PATIENT + "/notes/{entry_id:uuid}/correct", operation_id="PortalCorrectNotePage",
     opt=_page_opts("clinical.note.create"), sync_to_thread=True, include_in_schema=False)
def correct_note_page(request: Asking, tenant: Tenant, patient_id: Id, entry_id: Id) -> Template:
    """A note's form filled with what it says now, to correct it with a reason, or mark it entered in error."""
    with request.app.state.db.tenant(tenant) as conn:
        current = service.get_note(conn, request.user, patient_id, entry_id)
    return _note_form(request, tenant, patient_id, current["template_code"], _note_values(current), {},
                      correcting=current)


@post(PATIENT + "/notes/{entry_id:uuid}/correct", operation_id="PortalCorrectNote",
      opt=_page_opts("clinical.note.create"), sync_to_thread=True, include_in_schema=False)
def correct_note(request: Asking, tenant: Tenant, patient_id: Id, entry_id: Id, data: FormData) -> Response:
    """A note corrected by its author, with the reason; the earlier version stays in its history. A refusal
    comes back next to its field with what was typed."""
    values = form_values(data)
    db: Database = request.app.state.db
    with db.tenant(tenant) as conn:
        current = service.get_note(conn, request.user, patient_id, entry_id)
        template = catalogue.get_template(conn, current["template_code"]) if current["template_code"] else None
    errors: dict[str, str] = {}
    note_in = reason = None
    try:
        note_in = NoteIn.model_validate({"title": values.get("title"), "text": values.get("text"),
                                         "fields": note_fields(template, values) if template else {}})
    except ValidationError as exc:
        errors.update(field_errors(exc))
    try:
        reason = Retraction.model_validate({"reason": values.get("reason") or ""}).reason
    except ValidationError:
        errors["reason"] = "Say why the note is corrected (at least 3 characters); it is kept with the correction."
    if note_in is not None and reason is not None:
        try:
            with db.tenant(tenant) as conn:
                service.amend_note(conn, request.user, patient_id, entry_id, note_in, reason)
        except RecordError as exc:
            if exc.status == 404:
                raise
            errors = _note_errors(exc, template, values)
    if errors:
        return _note_form(request, tenant, patient_id, current["template_code"], values, errors, status=422,
                          correcting=current)
    return see_other(request, f"/t/{tenant}/patients/{patient_id}/notes?done=note-corrected")


@post(PATIENT + "/notes/{entry_id:uuid}/entered-in-error", operation_id="PortalWithdrawNote",
      opt=_page_opts("clinical.entry.retract"), sync_to_thread=True, include_in_schema=False)
def withdraw_note(request: Asking, tenant: Tenant, patient_id: Id, entry_id: Id, data: FormData) -> Response:
    """Mark a note entered in error (written on the wrong patient), with the reason: it leaves the notes and
    stays readable in its history."""
    values = form_values(data)
    db: Database = request.app.state.db
    try:
        reason = Retraction.model_validate({"reason": values.get("reason") or ""}).reason
    except ValidationError:
        with db.tenant(tenant) as conn:
            current = service.get_note(conn, request.user, patient_id, entry_id)
        return _note_form(request, tenant, patient_id, current["template_code"],
                          {**_note_values(current), "reason": values.get("reason") or ""}, {
            "reason": "Say why the note is entered in error (at least 3 characters), e.g. written on the "
                      "wrong patient."}, status=422, correcting=current, form="note-withdraw")
    with db.tenant(tenant) as conn:
        service.get_note(conn, request.user, patient_id, entry_id)  # a current note of this patient's
        service.retract_entry(conn, request.user, patient_id, entry_id, reason)
    return see_other(request, f"/t/{tenant}/patients/{patient_id}/notes?done=note-withdrawn")


RETRACTION_TABS.update({
    "medication_request": RetractionTab("prescription", "/orders", _orders_page),
    "service_request": RetractionTab("test order", "/orders", _orders_page),
    "result": RetractionTab("result", "/results", _results_page),
})

ROUTES = [
    break_glass,
    facility_home, patient_search, register_page, register_patient, registration_page, correct_registration,
    patient_page, invite_patient, encounter_page, start_encounter, change_encounter, chart_page, timeline_page,
    results_page, trend_page, sign_result, disclose_result, withdraw_disclosure, orders_page, place_order_set,
    place_order, record_result, prescribe, change_medication, notes_page, note_page, write_note, correct_note_page,
    correct_note, withdraw_note,
]

portal_router = Router(path="/t/{tenant:str}", route_handlers=ROUTES, exception_handlers=EXCEPTION_HANDLERS,
                       guards=[care_relationship_guard], tags=["portal"], include_in_schema=False)
