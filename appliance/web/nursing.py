"""The nursing pages of the tenant portal: the ward worklist, the drug round and the shift handover, and on each
patient's chart the observations (vital signs with NEWS2 and its charts, or MEOWS in pregnancy and the
puerperium, or PEWS for a child), the medication administration record, the care plans and the fluid
balance chart; the diet pages (`diet.py`) are mounted here too.

They keep the portal's rules (see `portal.py`): each page declares its permission; patient pages pass
the same care-relationship guard (break-the-glass carried on every link and form); patient data is read
and written only through the layers' services, which audit every access; bad input gets the page back
with the message by the field (422); Post/Redirect/Get. Their navigation, chart tabs, notices and
timeline kinds are added to the portal's lists when this module is imported.
"""

from __future__ import annotations

import datetime as dt
import uuid
import zoneinfo
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from anyio import to_thread
from litestar import Response, Router, get, post
from litestar.params import FromQuery
from litestar.response import Template
from pydantic import ValidationError
from sqlalchemy.engine import Connection

from appliance.layers.clinical import drugs, growth, reconciliation
from appliance.layers.clinical import service as clinical
from appliance.layers.clinical import worklist as clinical_worklist
from appliance.layers.clinical.models import vital_signs
from appliance.layers.clinical.schemas import ReconciliationIn, VitalSignsIn
from appliance.layers.nursing import access, fluid, service, views, ward
from appliance.layers.nursing.errors import Conflict
from appliance.layers.nursing.models import fluid as fluid_line
from appliance.layers.nursing.models import medication_administration
from appliance.layers.nursing.schemas import AdministrationIn, CarePlanIn, HandoverIn, HandoverPatient, Retraction
from appliance.layers.operations import discharge_plan
from appliance.substrate import retraction
from appliance.substrate.db import Database
from appliance.substrate.principal import Principal
from appliance.substrate.record import RecordError
from appliance.substrate.tenancy import facility_timezone
from appliance.web import diet as diet_pages
from appliance.web import plots, portal
from appliance.web.portal import (
    HELPERS,
    PATIENT,
    Asking,
    ChartTab,
    Clock,
    FormData,
    Id,
    NavItem,
    Tenant,
    TimelineSource,
    VitalsAddition,
    banner,
    field_errors,
    form_values,
    page,
    people_named,
    see_other,
)

RISK_LABELS = {"high": "High", "medium": "Medium", "low_medium": "Low–medium", "low": "Low"}
PARAMETER_LABELS = {"respiration": "Resp. rate", "spo2": "SpO₂", "air_or_oxygen": "Air or oxygen",
                    "systolic": "Systolic BP", "diastolic": "Diastolic BP", "pulse": "Pulse",
                    "consciousness": "Consciousness", "temperature": "Temperature",
                    "oxygen_therapy": "Oxygen therapy", "capillary_refill": "Capillary refill",
                    "respiratory_effort": "Respiratory effort"}
ACVPU_LABELS = [("A", "A — alert"), ("C", "C — new confusion"), ("V", "V — responds to voice"),
                ("P", "P — responds to pain"), ("U", "U — unresponsive")]
DOSE_STATES = {"due": ("due", "status-planned"), "due_now": ("due now", "status-pending"),
               "late": ("late", "flag-critical"), "given": ("given", "status-finished"),
               "given_late": ("given late", "override"), "held": ("held", "status-cancelled"),
               "refused": ("refused", "flag-high"), "missed": ("missed", "flag-critical")}
OBSERVATION_FIELDS = ["respiratory_rate", "spo2_percent", "spo2_scale", "supplemental_oxygen", "oxygen_l_min",
                      "systolic_mmhg", "diastolic_mmhg", "heart_rate_bpm", "consciousness", "temperature_c",
                      "weight_kg", "muac_mm", "oedema", "encounter_id"]
# A child's weight and screening for acute malnutrition, taken with the observations: the weight a sick child's
# feeds, fluids and growth chart are read by, mid-upper-arm circumference in mm and bilateral pitting oedema,
# absent or its grade, as the clinic's arrival form takes them (portal.OEDEMA_CHOICES).
MUAC_HINT = (f"Read against the acute malnutrition cut-offs from {growth.ACUTE_FROM_MONTHS} to "
             f"{growth.ACUTE_TO_MONTHS} months: under {growth.MUAC_SEVERE_BELOW_MM} mm severe, "
             f"{growth.MUAC_SEVERE_BELOW_MM}–{growth.MUAC_MODERATE_BELOW_MM - 1} mm moderate.")
DOSE_OUTCOMES = [("given", "Given"), ("held", "Held"), ("refused", "Refused"), ("missed", "Missed")]


def duration(minutes: int) -> str:
    """'45 min', '17 h 29 min', '2 h': a dose charted the next morning read as '1049 min late'."""
    hours, rest = divmod(minutes, 60)
    if not hours:
        return f"{rest} min"
    return f"{hours} h {rest} min" if rest else f"{hours} h"


def lateness(minutes: int) -> str:
    return f"{duration(minutes)} late"


def minutes_since(moment: dt.datetime, now: dt.datetime) -> int:
    return max(0, int((now - moment).total_seconds() // 60))


# How the round and the handover head a match by its kind (drugs.check): a drug of the allergy's class, or one that
# can cross-react with it, is not the allergy's own drug, and the nurse reads which it is before she gives it.
ALLERGY_MATCH_KINDS = {"substance": "matches the allergy to", "class": "same class as the allergy to",
                       "cross-reactivity": "cross-reactivity with the allergy to"}


def allergy_matches(drug: str, substances: list[str]) -> list[dict]:
    """The recorded allergies a drug matches (the prescriber's check, drugs.check): each its substance, its kind
    (substance, class, cross-reactivity) and the check's sentence why."""
    return [m.as_dict() for m in drugs.check(drug, [("", substance) for substance in substances])]


NURSING_HELPERS = {**HELPERS, "risk_labels": RISK_LABELS, "parameter_labels": PARAMETER_LABELS,
                   "dose_states": DOSE_STATES, "acvpu": ACVPU_LABELS, "dose_outcomes": DOSE_OUTCOMES,
                   "lateness": lateness, "duration": duration, "minutes_since": minutes_since,
                   "allergy_matches": allergy_matches, "muac_hint": MUAC_HINT, "vitals_text": portal.vitals_text,
                   "allergy_match_kinds": ALLERGY_MATCH_KINDS}

portal.NAV.append(NavItem("Nursing", "ward", "Ward worklist", "/ward", "nursing.worklist.read", worklist=True))
portal.NAV.append(NavItem("Nursing", "handover", "Shift handover", "/ward/handover", "nursing.handover.read"))
portal.NAV.append(NavItem("Nursing", "round", "Drug round", "/ward/round", "nursing.mar.read"))
portal.CHART_TABS[-1:-1] = [
    ChartTab("observations", "Observations", "/observations", "nursing.news2.read"),
    ChartTab("mar", "Medications given", "/mar", "nursing.mar.read"),
    ChartTab("care-plans", "Care plans", "/care-plans", "nursing.careplan.read"),
    ChartTab("fluids", "Fluid balance", "/fluids", "nursing.fluid.read"),
    ChartTab("reconciliation", "Medicines on admission", "/reconciliation", "clinical.reconciliation.read"),
]


def _chart_warning(conn: Connection, principal: Principal, patient_id: uuid.UUID, _clock: Clock) -> dict:
    now = _now()
    warning = service.current_warning(conn, principal, patient_id, now)
    due = warning["observations_due_at"]
    return {**warning, "risk_labels": RISK_LABELS, "parameter_labels": PARAMETER_LABELS,
            "overdue": bool(due and due < now)}


portal.VITALS_ADDITIONS.append(
    VitalsAddition("nursing.news2.read", "portal/nursing/_chart_warning.html", _chart_warning))
portal.NOTICES.update({
    "vitals": "Vital signs recorded and scored.", "dose": "Dose recorded on the MAR.",
    "task": "Task done.", "deferred": "Task deferred.", "care-plan": "Care plan saved.",
    "evaluated": "Care plan evaluated.", "handover": "Handover recorded.", "fluid": "Fluid charted.",
    "reconciled": "Decisions recorded. Medicines continued are on the MAR from now; those held stay off it.",
})
portal.TIMELINE_SOURCES.extend([
    TimelineSource("nursing", "news2", "Early warning scores", "nursing.news2.read",
                   lambda c, p, i: service.list_scores(c, p, i, limit=1000),
                   lambda r: (f"NEWS2 {r['total']} ({RISK_LABELS[r['risk']].lower()})",
                              r["response"] if r["escalation"] else "")),
    TimelineSource("nursing", "meows", "Maternity early warning scores", "nursing.news2.read",
                   lambda c, p, i: service.list_scores(c, p, i, "meows", limit=1000),
                   lambda r: (f"MEOWS: {r['summary']}", r["response"] if r["escalation"] else "")),
    TimelineSource("nursing", "pews", "Paediatric early warning scores", "nursing.news2.read",
                   lambda c, p, i: service.list_scores(c, p, i, "pews", limit=1000),
                   lambda r: (f"PEWS {r['total']} ({r['age_label']})", r["response"] if r["escalation"] else "")),
    TimelineSource("nursing", "medication_administration", "Doses", "nursing.mar.read",
                   lambda c, p, i: service.list_administrations(c, p, i),
                   lambda r: (f"{r['drug']} {r['outcome']}" + (f" ({lateness(r['minutes_late'])})"
                                                                if r["minutes_late"] else ""), r["reason"] or "")),
    TimelineSource("nursing", "care_plan", "Care plans", "nursing.careplan.read",
                   lambda c, p, i: service.list_care_plans(c, p, i),
                   lambda r: (f"Care plan: {r['problem']}", f"{r['goal']}; {r['status']}")),
])


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


async def _in_thread(work):
    return await to_thread.run_sync(work)


# -- the ward --------------------------------------------------------------------------------------


def _ward_context(db: Database, principal: Principal, tenant: str, ward_code: str) -> tuple[dict, list[dict]]:
    with db.tenant(tenant) as conn:
        wards = views.wards(conn)
        # Someone not tied to a ward starts on the facility's busiest general ward, not the first by code
        # (often the emergency department, whose patients are on the ED board instead).
        first = views.main_ward(conn) or (wards[0]["code"] if wards else "")
        chosen = ward_code or (principal.ward if principal.ward_scoped else first)
        return access.ward_for(conn, principal, chosen), wards


def _worklist_context(db: Database, principal: Principal, tenant: str, ward_code: str) -> dict:
    found, wards = _ward_context(db, principal, tenant, ward_code)
    tz, now = facility_timezone(db, tenant), _now()
    with db.tenant(tenant) as conn:
        listed = ward.worklist(conn, principal, found, now=now, tz=tz)
        names = {p["patient_id"]: p["name"] for p in listed["patients"]}
        critical = (clinical_worklist.critical_unreviewed(conn, principal, list(names))
                    if principal.can("clinical.result.read") else [])
    for row in critical:
        row["name"] = names[row["patient_id"]]
    for listed_patient in listed["patients"]:  # the bed board's words for the day they are expected home
        listed_patient["expectation"] = discharge_plan.expectation(listed_patient["expected_discharge_on"],
                                                                   now.astimezone(tz).date())
    return {"worklist": listed, "wards": wards, "critical_results": critical}


@get("/ward", operation_id="PortalWardWorklist", opt={"permission": "nursing.worklist.read"},
     include_in_schema=False)
async def worklist_page(request: Asking, tenant: Tenant, ward_code: FromQuery[str] = "") -> Template:
    """The ward's patients, escalations first: NEWS2 and the response it calls for, observations due,
    open tasks (done or deferred from here), doses due and late."""
    db: Database = request.app.state.db
    context = await _in_thread(lambda: _worklist_context(db, request.user, tenant, ward_code.strip()))
    return page(request, "nursing/ward.html", active="ward", **context, now=_now(), refused_task={},
                defer_choices=DEFER_CHOICES, **NURSING_HELPERS)


def _worklist_url(tenant: str, ward_code: str, done: str) -> str:
    return f"/t/{tenant}/ward?{'ward_code=' + ward_code + '&' if ward_code else ''}done={done}"


async def _task_action(request: Asking, tenant: Tenant, entry_id: uuid.UUID, values: dict, action: str,
                       act: Any, problem: str | None = None) -> Response:
    """Run a worklist task's action (`act`, in a tenant transaction) and go back to the worklist; a refusal
    (or the form's own `problem`) comes back on the worklist beside the task, with what was chosen and typed."""
    db: Database = request.app.state.db
    ward_code = values.get("ward") or ""
    status = 422
    if problem is None:
        try:
            await _in_thread(act)
        except RecordError as exc:
            if exc.status not in (409, 422):
                raise
            problem, status = exc.detail[:1].upper() + exc.detail[1:] + ".", exc.status
    if problem is None:
        return see_other(request, _worklist_url(tenant, ward_code, "deferred" if action == "defer" else "task"))
    context = await _in_thread(lambda: _worklist_context(db, request.user, tenant, ward_code))
    # A task closed meanwhile (by another nurse, by its result) is no longer listed: the refusal is said
    # above the list instead of nowhere.
    listed = any(t["id"] == entry_id for p in context["worklist"]["patients"] for t in p["tasks"])
    return page(request, "nursing/ward.html", status=status, active="ward", **context, now=_now(),
                refused_task={"task_id": str(entry_id), "action": action, "problem": problem, "listed": listed,
                              "minutes": values.get("minutes"), "note": values.get("note") or ""},
                defer_choices=DEFER_CHOICES, **NURSING_HELPERS)


@post(PATIENT + "/tasks/{entry_id:uuid}/done", operation_id="PortalCloseTask",
      opt={"permission": "nursing.task.update", "care_relationship": True}, include_in_schema=False)
async def close_task(request: Asking, tenant: Tenant, patient_id: Id, entry_id: Id, data: FormData) -> Response:
    """A task done (an escalation: with who was told and what was done)."""
    values = form_values(data)
    db: Database = request.app.state.db

    def work() -> None:
        with db.tenant(tenant) as conn:
            service.set_task_status(conn, request.user, patient_id, entry_id, "done", values.get("note"), now=_now())

    return await _task_action(request, tenant, entry_id, values, "done", work)


# How long a task may be put off from the worklist: a ward's usual "after the round", "this afternoon".
DEFER_CHOICES = [("30", "30 min"), ("60", "1 hour"), ("120", "2 hours"), ("240", "4 hours"), ("480", "8 hours")]


@post(PATIENT + "/tasks/{entry_id:uuid}/defer", operation_id="PortalDeferTask",
      opt={"permission": "nursing.task.update", "care_relationship": True}, include_in_schema=False)
async def defer_task(request: Asking, tenant: Tenant, patient_id: Id, entry_id: Id, data: FormData) -> Response:
    """A task that cannot be done now (the patient is in theatre), due later with why."""
    values = form_values(data)
    db: Database = request.app.state.db
    minutes = values.get("minutes") if values.get("minutes") in dict(DEFER_CHOICES) else None

    def work() -> None:
        with db.tenant(tenant) as conn:
            now = _now()
            service.defer_task(conn, request.user, patient_id, entry_id, now + dt.timedelta(minutes=int(minutes)),
                               values.get("note"), now=now, tz=facility_timezone(db, tenant))

    return await _task_action(request, tenant, entry_id, values, "defer", work,
                              None if minutes else "Choose how long the task waits.")


def _handover_context(db: Database, principal: Principal, tenant: str, ward_code: str) -> dict:
    found, wards = _ward_context(db, principal, tenant, ward_code)
    with db.tenant(tenant) as conn:
        summary = ward.handover_summary(conn, principal, found, now=_now(), tz=facility_timezone(db, tenant))
        recent = ward.recent_handovers(conn, principal, found["code"], limit=3)
    # What was handed over, as it was: the incoming shift reads the last shift's patients, not only
    # its note (the summary is kept as JSON; its times come back as times).
    for kept in recent:
        kept["patients"] = [HandoverPatient.model_validate(p).model_dump() for p in kept["summary"]]
    names = people_named(db, {h["author_id"] for h in recent})
    return {"handover": summary, "wards": wards, "recent": recent, "names": names}


@get("/ward/handover", operation_id="PortalWardHandover", opt={"permission": "nursing.handover.read"},
     include_in_schema=False)
async def handover_page(request: Asking, tenant: Tenant, ward_code: FromQuery[str] = "") -> Template:
    """The shift's handover, per patient, built from the record; recorded with the nurse's note."""
    db: Database = request.app.state.db
    context = await _in_thread(lambda: _handover_context(db, request.user, tenant, ward_code.strip()))
    return page(request, "nursing/handover.html", active="handover", **context, values={}, errors={},
                **NURSING_HELPERS)


@post("/ward/handover", operation_id="PortalRecordHandover", opt={"permission": "nursing.handover.create"},
      include_in_schema=False)
async def record_handover(request: Asking, tenant: Tenant, data: FormData) -> Response:
    values = form_values(data)
    db: Database = request.app.state.db
    try:
        note = HandoverIn.model_validate({"note": (values.get("note") or "").strip() or None}).note
    except ValidationError as exc:
        # A long night's note was cut at 4,000 characters without a word, its end lost: it comes back whole.
        context = await _in_thread(lambda: _handover_context(db, request.user, tenant, values.get("ward") or ""))
        return page(request, "nursing/handover.html", status=422, active="handover", **context, values=values,
                    errors=field_errors(exc), **NURSING_HELPERS)

    def work() -> str:
        found, _ = _ward_context(db, request.user, tenant, values.get("ward") or "")
        with db.tenant(tenant) as conn:
            ward.record_handover(conn, request.user, found, now=_now(), tz=facility_timezone(db, tenant),
                                 shift_start=None, shift_end=None, note=note)
        return found["code"]

    code = await _in_thread(work)
    return see_other(request, f"/t/{tenant}/ward/handover?ward_code={code}&done=handover")


# -- the drug round -------------------------------------------------------------------------------


def _round_context(db: Database, principal: Principal, tenant: str, ward_code: str) -> dict:
    found, wards = _ward_context(db, principal, tenant, ward_code)
    with db.tenant(tenant) as conn:
        listed = ward.drug_round(conn, principal, found, now=_now(), tz=facility_timezone(db, tenant))
    authors = {d["slot"]["administration"]["author_id"] for p in listed["patients"] for d in p["doses"]
               if d["slot"]["administration"]}
    return {"round": listed, "wards": wards, "names": people_named(db, authors)}


@get("/ward/round", operation_id="PortalWardDrugRound", opt={"permission": "nursing.mar.read"},
     include_in_schema=False)
async def round_page(request: Asking, tenant: Tenant, ward_code: FromQuery[str] = "") -> Template:
    """The ward's drug round on one page: every dose due now or late, by bed, overdue first, with each
    patient's allergies beside their doses and the MAR's form to record each (given, held, refused)."""
    db: Database = request.app.state.db
    context = await _in_thread(lambda: _round_context(db, request.user, tenant, ward_code.strip()))
    return page(request, "nursing/round.html", active="round", **context, problem=None, refused={},
                **NURSING_HELPERS)


# -- observations ----------------------------------------------------------------------------------


def news2_chart(rows: list[dict], clock: Clock) -> Any:
    points = [plots.Point(clock.local(r["occurred_at"]), float(r["news2"]["total"]),
                          label=f"{clock.when(r['occurred_at'])}: NEWS2 {r['news2']['total']} "
                                f"({RISK_LABELS[r['news2']['risk']].lower()})",
                          abnormal=r["news2"]["escalation"])
              for r in rows if r["news2"]]
    description = plots.describe_trend("NEWS2", points, "", (0, 4)) if points else "No scores yet."
    return plots.time_chart([plots.Series("NEWS2", points, "s4")], ident="news2", title="NEWS2 over time",
                            description=description + " Scores above 4, or 3 in one parameter, call for a review.",
                            band=(0, 4), width=720, height=220)


# The observation chart's columns and the score parameters each shows (blood pressure: both pressures).
CHART_COLUMNS = {"respiration": ("respiration",), "spo2": ("spo2",), "air_or_oxygen": ("air_or_oxygen",),
                 "bp": ("systolic", "diastolic"), "pulse": ("pulse",), "consciousness": ("consciousness",),
                 "temperature": ("temperature",)}


# A PEWS item's points as the chart's cell classes (its 4, the gravest, is NEWS2's 3), and the column it sits in.
PEWS_MARKS = {0: 0, 1: 1, 2: 2, 4: 3}
PEWS_COLUMNS = {"oxygen_therapy": "air_or_oxygen"}


def chart_marks(row: dict) -> dict[str, str]:
    """Each chart cell's class: its NEWS2 or PEWS points (p1–p3, from the first parameter it shows) or its
    MEOWS trigger (m-yellow, m-red: the worse of its parameters')."""
    points = row["news2"]["scores"] if row["news2"] else {}
    if row.get("pews"):
        points = {PEWS_COLUMNS.get(name, name): PEWS_MARKS[value] for name, value in row["pews"]["scores"].items()}
    triggers = row["meows"]["triggers"] if row["meows"] else {}
    marks = {}
    for column, parameters in CHART_COLUMNS.items():
        mark = f"p{points.get(parameters[0], '')}"
        hit = {triggers.get(name) for name in parameters}
        if "red" in hit or "yellow" in hit:
            mark += " m-red" if "red" in hit else " m-yellow"
        marks[column] = mark
    return marks


# The trend of a stay on a ward starts this long before it (the emergency department's sets, the clinic's
# that sent the patient in): a clinic set from August put three months on the axis and squeezed the night's
# sets into a line at its right edge.
TREND_BEFORE_STAY = dt.timedelta(hours=48)


def _trend_since(encounters: list[dict], now: dt.datetime) -> dt.datetime | None:
    """Where the charts start: 48 hours before the open stay on a ward began, or None (every set) for a
    patient on no ward."""
    stays = [e["started_at"] for e in encounters if e.get("ward_code") and e.get("started_at")]
    return min(stays) - TREND_BEFORE_STAY if stays else None


# What the observation chart's columns show (a child's weight and screening with them): a set with none of it is
# not a row.
CHARTED = ("respiratory_rate", "spo2_percent", "supplemental_oxygen", "systolic_mmhg", "diastolic_mmhg",
           "heart_rate_bpm", "consciousness", "temperature_c", "muac_mm", "oedema")
CHARTED_OF_A_CHILD = (*CHARTED, "weight_kg")


def _observations_context(db: Database, principal: Principal, tenant: str, patient_id: uuid.UUID) -> dict:
    clock = Clock(facility_timezone(db, tenant))
    now = _now()
    with db.tenant(tenant) as conn:
        top = banner(conn, principal, patient_id)
        rows = service.observations(conn, principal, patient_id)
        # A set marked entered in error is off the scores and charts, and listed struck through, with why.
        withdrawn = clinical.list_withdrawn(conn, principal, patient_id, vital_signs, "vital_signs")
        # The sets this person may mark entered in error: a clinician any, a nurse those she charted within the
        # hours (ACC-035); the substrate's one rule, which the withdrawal itself asks again.
        withdrawable = retraction.withdrawable(conn, principal, [r["id"] for r in rows])
        exclusion = service.news2_exclusion(conn, patient_id, now)
        due = service.observations_due(conn, principal, patient_id)
    # A time in the past read as 'Next observations due 03:24' at 06:14, three hours after a MEOWS of two
    # reds asked for sets every 15 minutes: the page says the set is overdue, and by how long.
    overdue = minutes_since(due, now) if due and due < now else 0
    adult = not service.is_child(top["patient"]["birth_date"], clock.today)
    scored = [r for r in rows if r["news2"]]
    # The chart's rows are sets of observations: an adult's weight (or height) alone, taken with none of them, was
    # an empty row among the sets; it is on the chart summary's tiles and its weight chart. A child's chart has a
    # weight column: the ward weighs a sick child with the observations.
    charted = CHARTED if adult else CHARTED_OF_A_CHILD
    shown = [r | {"marks": chart_marks(r)} for r in rows if any(r[name] is not None for name in charted)][:30]
    trend_since = _trend_since(top["open_encounters"], now)
    trend = [r for r in rows if trend_since is None or r["occurred_at"] >= trend_since]
    return {**top, "rows": shown, "latest": scored[0] if scored else None, "exclusion": exclusion,
            "observations_due_at": due, "observations_overdue": overdue > 0, "overdue_minutes": overdue,
            "latest_meows": next((r for r in rows if r["meows"]), None), "trend_since": trend_since,
            "latest_pews": next((r for r in rows if r["pews"]), None),
            # A woman scored by MEOWS, or a child, has no NEWS2 trend to follow: an old score would mislead.
            "news2_svg": news2_chart(trend, clock) if any(r["news2"] for r in trend) and exclusion is None else None,
            "charts": portal.vitals_charts([r | {"weight_kg": None} for r in trend], clock, adult),
            "last_scale": next((r["spo2_scale"] for r in rows if r["spo2_scale"]), 1),
            # Under 16 neither NEWS2's SpO2 scale 2 nor ACVPU is asked: PEWS uses neither (MEOWS, which a
            # girl in pregnancy is charted on, does use consciousness).
            "asks_scale": not (exclusion and exclusion.child),
            "asks_acvpu": not (exclusion and exclusion.child and not exclusion.maternity),
            # MUAC and oedema on a child's chart only: the record refuses them of an adult (service.py).
            "asks_screening": bool(exclusion and exclusion.child), "withdrawn": withdrawn,
            "withdrawable": withdrawable, "own_retraction_hours": retraction.OWN_RETRACTION_HOURS,
            "names": people_named(db, {r["author_id"] for r in rows[:30]} | {w["withdrawn_by"] for w in withdrawn})}


@get(PATIENT + "/observations", operation_id="PortalObservations", opt={"permission": "nursing.news2.read"},
     include_in_schema=False)
async def observations_page(request: Asking, tenant: Tenant, patient_id: Id) -> Template:
    """Record a set of vital signs; NEWS2 of each set, its response and charts of every parameter."""
    db: Database = request.app.state.db
    context = await _in_thread(lambda: _observations_context(db, request.user, tenant, patient_id))
    # Air and "alert" are not assumed: a set of a pulse and a temperature stored 'air, A' as if both had been
    # looked at, and its NEWS2 counted them as recorded. Each is chosen, or the set says it was not.
    values = {"spo2_scale": str(context["last_scale"])} if context["asks_scale"] else {}
    return page(request, "nursing/observations.html", active="patients", patient_id=patient_id,
                tab="observations", **context, values=values, errors={}, form="", **NURSING_HELPERS)


def _observations_page(request: Asking, tenant: str, patient_id: uuid.UUID, *, status: int, form: str,
                       values: dict, errors: dict) -> Template:
    """The page again with a form's refusal: `form` names the one posted (a set's "entered in error"; blank for
    the form recording a set)."""
    context = _observations_context(request.app.state.db, request.user, tenant, patient_id)
    return page(request, "nursing/observations.html", status=status, active="patients", patient_id=patient_id,
                tab="observations", **context, values=values, errors=errors, form=form, **NURSING_HELPERS)


portal.RETRACTION_TABS["vital_signs"] = portal.RetractionTab("set of vital signs", "/observations",
                                                             _observations_page)


def _vitals_in(values: dict) -> VitalSignsIn:
    fields = {k: values[k] for k in OBSERVATION_FIELDS if values.get(k) not in (None, "") and k != "oedema"}
    if "supplemental_oxygen" in fields:
        fields["supplemental_oxygen"] = fields["supplemental_oxygen"] == "true"
    if "spo2_scale" in fields:
        fields["spo2_scale"] = 2 if fields["spo2_scale"] == "2" else 1
    # Absent or a grade; anything else is refused by the schema, not read as a finding.
    return VitalSignsIn.model_validate(fields | portal.oedema_fields(values.get("oedema")))


@post(PATIENT + "/observations", operation_id="PortalRecordObservations", opt={"permission": "clinical.vitals.create"},
      include_in_schema=False)
async def record_observations(request: Asking, tenant: Tenant, patient_id: Id, data: FormData) -> Response:
    values = form_values(data)
    db: Database = request.app.state.db
    errors: dict[str, str] = {}
    try:
        vitals = _vitals_in(values)
    except ValidationError as exc:
        errors = field_errors(exc, {("oedema_grade",): "oedema"})
        if "form" in errors or "vitals" in errors or not set(errors) & set(OBSERVATION_FIELDS):
            errors = {"form": next(iter(errors.values()))}
    if not errors:
        def work() -> None:
            # A MUAC or oedema of an adult is refused by the set's scoring reaction (service.refuse_adult_screening).
            with db.tenant(tenant) as conn:
                clinical.record_vitals(conn, request.user, patient_id, vitals)

        try:
            await _in_thread(work)
        except RecordError as exc:
            if exc.status != 422:
                raise
            # A form from before the page hid what does not apply (a child's scale 2, an adult's MUAC): said
            # beside the form.
            errors = {"form": exc.detail[:1].upper() + exc.detail[1:] + "."}
    if errors:
        return await _in_thread(lambda: _observations_page(request, tenant, patient_id, status=422, form="",
                                                           values=values, errors=errors))
    return see_other(request, f"/t/{tenant}/patients/{patient_id}/observations?done=vitals")


# -- the medication administration record ---------------------------------------------------------


def _mar_context(db: Database, principal: Principal, tenant: str, patient_id: uuid.UUID, day: str) -> dict:
    tz = facility_timezone(db, tenant)
    now = _now()
    try:
        shown = dt.date.fromisoformat(day) if day else now.astimezone(tz).date()
    except ValueError:
        shown = now.astimezone(tz).date()
    start = dt.datetime.combine(shown, dt.time(), tzinfo=tz)
    with db.tenant(tenant) as conn:
        top = banner(conn, principal, patient_id)
        chart = service.mar(conn, principal, patient_id, window_start=start,
                            window_end=start + dt.timedelta(days=1), now=now, tz=tz)
        recorded = [d["administration"] for line in chart["lines"] for d in line["doses"] if d["administration"]]
        recorded += [g for line in chart["lines"] for g in line["unscheduled"]]
        # The doses this person may mark entered in error: a clinician any, a nurse those she recorded within the
        # hours (ACC-035); the substrate's one rule, which the withdrawal itself asks again.
        withdrawable = retraction.withdrawable(conn, principal, [a["id"] for a in recorded])
        # A dose marked entered in error is off the day's doses (open again), and listed struck through, with why.
        withdrawn = clinical.list_withdrawn(conn, principal, patient_id, medication_administration,
                                            "medication_administration")
    # The drug–allergy check runs when a drug is prescribed, so a prescription written before the allergy
    # was recorded (or over it, with the prescriber's reason) reaches the round unchecked: the nurse giving
    # it is the last one who can stop it, and sees the match beside the drug, not only in the banner.
    allergies = [(a["root_id"], a["substance"]) for a in top["allergies"] or []]
    for line in chart["lines"]:
        line["allergy_matches"] = drugs.check(line["drug"], allergies)
    return {**top, "mar": chart, "day": shown, "previous": shown - dt.timedelta(days=1),
            "next": shown + dt.timedelta(days=1), "withdrawn": withdrawn, "now": now, **_withdrawal(withdrawable),
            "names": people_named(db, {a["author_id"] for a in recorded} | {w["withdrawn_by"] for w in withdrawn})}


def _withdrawal(withdrawable: set[uuid.UUID], form: str = "", values: dict | None = None,
                errors: dict | None = None) -> dict:
    """What the MAR's and the fluid chart's entered-in-error forms need: which rows offer one, and the one posted
    (`form`) with what was typed and its refusal."""
    return {"withdrawable": withdrawable, "own_retraction_hours": retraction.OWN_RETRACTION_HOURS,
            "withdraw_form": form, "withdraw_values": values or {}, "withdraw_errors": errors or {}}


@get(PATIENT + "/mar", operation_id="PortalMar", opt={"permission": "nursing.mar.read"}, include_in_schema=False)
async def mar_page(request: Asking, tenant: Tenant, patient_id: Id, day: FromQuery[str] = "") -> Template:
    """One day of the MAR: each prescription's doses and what happened to each, with the forms to record
    the doses still open."""
    db: Database = request.app.state.db
    context = await _in_thread(lambda: _mar_context(db, request.user, tenant, patient_id, day.strip()))
    return page(request, "nursing/mar.html", active="patients", patient_id=patient_id, tab="mar", **context,
                problem=None, refused={}, **NURSING_HELPERS)


def given_at(clock_time: str, now: dt.datetime, tz: zoneinfo.ZoneInfo) -> dt.datetime:
    """The moment a dose was given, from the time of day the nurse typed (HH:MM, facility time): the last
    time the clock showed it, so a dose charted after midnight for 23:40 is yesterday's 23:40. A nurse
    charting at the end of a round gives the time each dose went in; without it the record would say
    every dose was given when it was typed, and call the punctual ones late. A time a few minutes ahead
    (a ward clock running fast) stays today's, as the service tolerates it."""
    moment = dt.datetime.combine(now.astimezone(tz).date(), dt.time.fromisoformat(clock_time.strip()), tzinfo=tz)
    return moment - dt.timedelta(days=1) if moment > now + service.FUTURE_TOLERANCE else moment


@post(PATIENT + "/mar", operation_id="PortalRecordDose", opt={"permission": "nursing.mar.record"},
      include_in_schema=False)
async def record_dose(request: Asking, tenant: Tenant, patient_id: Id, data: FormData) -> Response:
    values = form_values(data)
    db: Database = request.app.state.db
    day = values.get("day") or ""
    problem = None
    try:
        fields = {k: values.get(k) for k in ("medication_request_id", "scheduled_for", "outcome", "reason")}
        if values.get("given_at") and fields["outcome"] == "given":
            fields["administered_at"] = given_at(values["given_at"], _now(), facility_timezone(db, tenant))
        dose = AdministrationIn.model_validate({k: v for k, v in fields.items() if v})
    except (ValidationError, ValueError) as exc:
        problem = (next(iter(field_errors(exc).values())) if isinstance(exc, ValidationError)
                   else "Give the time the dose was given as HH:MM.")
    if problem is None:
        def work() -> None:
            with db.tenant(tenant) as conn:
                service.record_administration(conn, request.user, patient_id, dose, now=_now(),
                                              tz=facility_timezone(db, tenant))
        try:
            await _in_thread(work)
        except RecordError as exc:
            if exc.status not in (409, 422):
                raise
            problem = exc.detail[:1].upper() + exc.detail[1:] + "."
    # A dose recorded from the drug round (its form names the round's ward) goes back to the round.
    round_ward = values.get("round_ward")
    if problem is not None and round_ward is not None:
        context = await _in_thread(lambda: _round_context(db, request.user, tenant, round_ward.strip()))
        still_open = any(str(d["medication_request_id"]) == values.get("medication_request_id")
                         and d["slot"]["scheduled_for"].isoformat() == values.get("scheduled_for")
                         and not d["slot"]["administration"] for p in context["round"]["patients"] for d in p["doses"])
        return page(request, "nursing/round.html", status=422, active="round", **context, problem=problem,
                    refused=values if still_open else {}, **NURSING_HELPERS)
    if problem is not None:
        context = await _in_thread(lambda: _mar_context(db, request.user, tenant, patient_id, day))
        # The refused dose's row keeps what the nurse chose and typed, and says what is wrong beside it; a
        # dose no longer open (recorded meanwhile) or not on the page has the problem said above the MAR.
        still_open = any(str(line["medication_request_id"]) == values.get("medication_request_id")
                         and d["scheduled_for"].isoformat() == values.get("scheduled_for") and not d["administration"]
                         for line in context["mar"]["lines"] for d in line["doses"])
        return page(request, "nursing/mar.html", status=422, active="patients", patient_id=patient_id, tab="mar",
                    **context, problem=problem, refused=values if still_open else {}, **NURSING_HELPERS)
    if round_ward is not None:
        return see_other(request, f"/t/{tenant}/ward/round?ward_code={quote(round_ward.strip())}&done=dose")
    return see_other(request, f"/t/{tenant}/patients/{patient_id}/mar?{'day=' + day + '&' if day else ''}done=dose")


# -- medicines reconciliation on admission ---------------------------------------------------------

# A decision's field in the API, by the prefix of its input on the form (`reason-<prescription id>`).
_FORM_PREFIX = {"medication_request_id": "decision", "decision": "decision", "reason": "reason",
                "allergy_override_reason": "override"}
RECONCILE_CHOICES = [("continue", "Continue in hospital"), ("hold", "Hold (keep for discharge)"), ("stop", "Stop")]


def _reconciliation_context(db: Database, principal: Principal, tenant: str, patient_id: uuid.UUID) -> dict:
    with db.tenant(tenant) as conn:
        top = banner(conn, principal, patient_id)
        found = reconciliation.medicines(conn, principal, patient_id)
    authors = {m["decision"]["author_id"] for m in found["medicines"] if m["decision"]}
    return {**top, "reconciliation": found, "names": people_named(db, authors)}


@get(PATIENT + "/reconciliation", operation_id="PortalMedicationReconciliation",
     opt={"permission": "clinical.reconciliation.read"}, include_in_schema=False)
async def reconciliation_page(request: Asking, tenant: Tenant, patient_id: Id) -> Template:
    """An admitted patient's medicines from before the stay, each to continue, hold or stop on the ward."""
    db: Database = request.app.state.db
    context = await _in_thread(lambda: _reconciliation_context(db, request.user, tenant, patient_id))
    return page(request, "nursing/reconciliation.html", active="patients", patient_id=patient_id,
                tab="reconciliation", **context, values={}, errors={}, choices=RECONCILE_CHOICES, **NURSING_HELPERS)


def _decisions_posted(values: dict) -> list[dict]:
    """The decisions of the form, one per medicine given one (`decision-<id>`, with `reason-<id>` and
    `override-<id>`), in the order posted."""
    return [{"medication_request_id": key.removeprefix("decision-"), "decision": value,
             "reason": values.get(f"reason-{key.removeprefix('decision-')}"),
             "allergy_override_reason": values.get(f"override-{key.removeprefix('decision-')}")}
            for key, value in values.items() if key.startswith("decision-") and value]


@post(PATIENT + "/reconciliation", operation_id="PortalReconcileMedications",
      opt={"permission": "clinical.reconciliation.create"}, include_in_schema=False)
async def reconcile_medications(request: Asking, tenant: Tenant, patient_id: Id, data: FormData) -> Response:
    """Record the decisions chosen, all or none; a refusal comes back beside the medicine it is about,
    with what was chosen and typed kept."""
    values = form_values(data)
    db: Database = request.app.state.db
    decisions = _decisions_posted(values)
    errors: dict[str, str] = {}
    status = 422
    if not decisions:
        errors["form"] = "Choose continue, hold or stop for at least one medicine."
    else:
        def work() -> None:
            with db.tenant(tenant) as conn:
                reconciliation.reconcile(conn, request.user, patient_id,
                                         ReconciliationIn.model_validate({"decisions": decisions}))
        try:
            await _in_thread(work)
        except ValidationError as exc:
            # Each complaint beside the medicine it is about: decisions[i].reason is that medicine's reason.
            errors = field_errors(exc, {("decisions", index, name): f"{prefix}-{d['medication_request_id']}"
                                        for index, d in enumerate(decisions)
                                        for name, prefix in _FORM_PREFIX.items()})
        except RecordError as exc:
            if exc.status not in (409, 422):
                raise
            status = exc.status
            field = str(exc.extra.get("field", ""))
            message = exc.detail[:1].upper() + exc.detail[1:] + "."
            if field.startswith("decisions["):
                index, _, part = field.removeprefix("decisions[").partition("].")
                root = decisions[int(index)]["medication_request_id"]
                errors[f"{_FORM_PREFIX.get(part, 'decision')}-{root}"] = message
            else:
                errors["form"] = message
        else:
            return see_other(request, f"/t/{tenant}/patients/{patient_id}/reconciliation?done=reconciled")
    context = await _in_thread(lambda: _reconciliation_context(db, request.user, tenant, patient_id))
    return page(request, "nursing/reconciliation.html", status=status, active="patients", patient_id=patient_id,
                tab="reconciliation", **context, values=values, errors=errors, choices=RECONCILE_CHOICES,
                **NURSING_HELPERS)


# -- care plans ------------------------------------------------------------------------------------


def _plans_context(db: Database, principal: Principal, tenant: str, patient_id: uuid.UUID) -> dict:
    with db.tenant(tenant) as conn:
        top = banner(conn, principal, patient_id)
        plans = service.list_care_plans(conn, principal, patient_id)
    return {**top, "plans": plans, "names": people_named(db, {p["author_id"] for p in plans})}


def _plan_in(values: dict, **extra: Any) -> CarePlanIn:
    lines = [line for line in (values.get("interventions") or "").splitlines() if line.strip()]
    return CarePlanIn.model_validate({"problem": values.get("problem") or "", "goal": values.get("goal") or "",
                                      "interventions": lines, **extra})


@get(PATIENT + "/care-plans", operation_id="PortalCarePlans", opt={"permission": "nursing.careplan.read"},
     include_in_schema=False)
async def care_plans_page(request: Asking, tenant: Tenant, patient_id: Id) -> Template:
    db: Database = request.app.state.db
    context = await _in_thread(lambda: _plans_context(db, request.user, tenant, patient_id))
    return page(request, "nursing/care_plans.html", active="patients", patient_id=patient_id, tab="care-plans",
                **context, values={}, errors={}, evaluating={}, **NURSING_HELPERS)


@post(PATIENT + "/care-plans", operation_id="PortalAddCarePlan", opt={"permission": "nursing.careplan.create"},
      include_in_schema=False)
async def add_care_plan(request: Asking, tenant: Tenant, patient_id: Id, data: FormData) -> Response:
    values = form_values(data)
    db: Database = request.app.state.db
    try:
        plan = _plan_in(values)
    except ValidationError as exc:
        context = await _in_thread(lambda: _plans_context(db, request.user, tenant, patient_id))
        return page(request, "nursing/care_plans.html", status=422, active="patients", patient_id=patient_id,
                    tab="care-plans", **context, values=values, errors=field_errors(exc), evaluating={},
                    **NURSING_HELPERS)

    def work() -> None:
        with db.tenant(tenant) as conn:
            service.add_care_plan(conn, request.user, patient_id, plan)

    await _in_thread(work)
    return see_other(request, f"/t/{tenant}/patients/{patient_id}/care-plans?done=care-plan")


@post(PATIENT + "/care-plans/{entry_id:uuid}/evaluate", operation_id="PortalEvaluateCarePlan",
      opt={"permission": "nursing.careplan.update"}, include_in_schema=False)
async def evaluate_care_plan(request: Asking, tenant: Tenant, patient_id: Id, entry_id: Id,
                             data: FormData) -> Response:
    """An evaluation of a care plan, and whether it goes on; a refusal comes back beside the plan with the
    evaluation as typed (it was an error page, the text lost)."""
    values = form_values(data)
    db: Database = request.app.state.db

    def work() -> None:
        with db.tenant(tenant) as conn:
            current = next((p for p in service.care_plans_of(conn, [patient_id]) if p["id"] == entry_id), None)
            if current is None:
                raise Conflict("this care plan has changed since you loaded it; reload the page")
            status = values.get("status") if values.get("status") in {"active", "achieved", "discontinued"} \
                else "active"
            plan = CarePlanIn.model_validate({
                "problem": current["problem"], "goal": current["goal"], "interventions": current["interventions"],
                "evaluation": values.get("evaluation"), "status": status, "review_due": current["review_due"]})
            service.update_care_plan(conn, request.user, patient_id, entry_id, plan, "care plan evaluated")

    try:
        await _in_thread(work)
    except ValidationError as exc:
        problem, status = next(iter(field_errors(exc).values())), 422
    except RecordError as exc:
        if exc.status not in (409, 422):
            raise
        problem, status = exc.detail[:1].upper() + exc.detail[1:] + ".", exc.status
    else:
        return see_other(request, f"/t/{tenant}/patients/{patient_id}/care-plans?done=evaluated")
    context = await _in_thread(lambda: _plans_context(db, request.user, tenant, patient_id))
    listed = any(p["id"] == entry_id for p in context["plans"])
    return page(request, "nursing/care_plans.html", status=status, active="patients", patient_id=patient_id,
                tab="care-plans", **context, values={}, errors={}, **NURSING_HELPERS,
                evaluating={"plan_id": str(entry_id), "listed": listed, "kept": values,
                            "errors": {"evaluation": problem}})


# -- the fluid balance chart -----------------------------------------------------------------------

# The quick-entry form's one choice of what was charted, "direction:route", intake first as the chart reads.
FLUID_CHOICES = {"Intake": [(f"intake:{route}", fluid.ROUTE_LABELS[route]) for route in fluid.ROUTES["intake"]],
                 "Output": [(f"output:{route}", fluid.ROUTE_LABELS[route]) for route in fluid.ROUTES["output"]]}


def _fluids_context(db: Database, principal: Principal, tenant: str, patient_id: uuid.UUID) -> dict:
    tz = facility_timezone(db, tenant)
    with db.tenant(tenant) as conn:
        top = banner(conn, principal, patient_id)
        chart = fluid.chart(conn, principal, patient_id, now=_now(), tz=tz)
        # Today's lines this person may mark entered in error (ACC-035, as the MAR's doses).
        withdrawable = retraction.withdrawable(conn, principal, [line["id"] for line in chart["days"][0]["entries"]])
        # A line marked entered in error is off the totals and the lines, and listed struck through, with why.
        withdrawn = clinical.list_withdrawn(conn, principal, patient_id, fluid_line, "fluid")
    authors = {line["author_id"] for line in chart["days"][0]["entries"]} | {w["withdrawn_by"] for w in withdrawn}
    return {**top, "fluids": chart, "fluid_choices": FLUID_CHOICES, "route_labels": fluid.ROUTE_LABELS,
            "withdrawn": withdrawn, "names": people_named(db, authors), **_withdrawal(withdrawable)}


@get(PATIENT + "/fluids", operation_id="PortalFluidBalance", opt={"permission": "nursing.fluid.read"},
     include_in_schema=False)
async def fluids_page(request: Asking, tenant: Tenant, patient_id: Id) -> Template:
    """Today's fluid balance, running, with the urine output judged for oliguria; the days before; a quick
    entry for the bedside."""
    db: Database = request.app.state.db
    context = await _in_thread(lambda: _fluids_context(db, request.user, tenant, patient_id))
    return page(request, "nursing/fluids.html", active="patients", patient_id=patient_id, tab="fluids", **context,
                values={}, errors={}, **NURSING_HELPERS)


@post(PATIENT + "/fluids", operation_id="PortalRecordFluid", opt={"permission": "nursing.fluid.write"},
      include_in_schema=False)
async def record_fluid(request: Asking, tenant: Tenant, patient_id: Id, data: FormData) -> Response:
    """One line from the bedside: what (intake or output and its route), how much, and the time if not now."""
    values = form_values(data)
    db: Database = request.app.state.db
    errors: dict[str, str] = {}
    direction, _, route = (values.get("line") or "").partition(":")
    volume = (values.get("volume_ml") or "").strip()
    if not volume.isdigit():
        errors["volume_ml"] = "Give the volume in whole millilitres."
    at = None
    if values.get("at"):
        try:
            at = given_at(values["at"], _now(), facility_timezone(db, tenant))
        except ValueError:
            errors["at"] = "Give the time as HH:MM, or leave it empty for now."
    if not errors:
        def work() -> None:
            with db.tenant(tenant) as conn:
                fluid.record_line(conn, request.user, patient_id, direction=direction, route=route,
                                  volume_ml=int(volume), occurred_at=at, note=(values.get("note") or "").strip(),
                                  now=_now())

        try:
            await _in_thread(work)
        except RecordError as exc:
            if exc.status != 422:
                raise
            field = {"direction": "line", "route": "line", "occurred_at": "at"}.get(exc.extra.get("field"), "volume_ml")
            errors[field] = exc.detail[:1].upper() + exc.detail[1:] + "."
    if errors:
        context = await _in_thread(lambda: _fluids_context(db, request.user, tenant, patient_id))
        return page(request, "nursing/fluids.html", status=422, active="patients", patient_id=patient_id,
                    tab="fluids", **context, values=values, errors=errors, **NURSING_HELPERS)
    return see_other(request, f"/t/{tenant}/patients/{patient_id}/fluids?done=fluid")


# -- a dose or a fluid line marked entered in error -------------------------------------------------


async def _withdraw(request: Asking, tenant: str, patient_id: uuid.UUID, entry_id: uuid.UUID, data: FormData, *,
                    kind: str, withdraw: Callable[..., dict], shown: Callable[[int, dict], Template],
                    done: str) -> Response:
    """Mark a dose or a fluid line (a record of `kind`) entered in error from its page by `withdraw` (its service,
    which asks `retraction.require`: its author within the hours, or a clinician; anyone else gets the 403 page saying
    who can): back to `done`, or the page `shown(422, withdrawal)` with the reason's refusal beside it. The record is
    looked up first: a guessed id is the 404 page whatever reason was typed, where it was a 422 page with no row to
    show the refusal by."""
    db: Database = request.app.state.db

    def found() -> None:
        with db.tenant(tenant) as conn:
            service.require_version(conn, patient_id, entry_id, kind)

    await _in_thread(found)
    values = form_values(data)
    try:
        reason = Retraction.model_validate({"reason": values.get("reason") or ""}).reason
    except ValidationError as exc:
        refused = {"form": f"retract-{entry_id}", "values": values, "errors": field_errors(exc)}
        return await _in_thread(lambda: shown(422, refused))

    def work() -> None:
        with db.tenant(tenant) as conn:
            withdraw(conn, request.user, patient_id, entry_id, reason)

    await _in_thread(work)
    return see_other(request, done)


@post(PATIENT + "/mar/{entry_id:uuid}/entered-in-error", operation_id="PortalWithdrawDose",
      opt={"permission": "nursing.mar.retract_own"}, include_in_schema=False)
async def withdraw_dose(request: Asking, tenant: Tenant, patient_id: Id, entry_id: Id, data: FormData) -> Response:
    """The MAR's form on a dose recorded in error (ACC-035): the dose is open again, the record kept in its history
    with the reason. Back to the day's page."""
    db: Database = request.app.state.db
    day = (form_values(data).get("day") or "").strip()

    def shown(status: int, withdrawal: dict) -> Template:
        context = _mar_context(db, request.user, tenant, patient_id, day)
        context |= _withdrawal(context["withdrawable"], **withdrawal)
        return page(request, "nursing/mar.html", status=status, active="patients", patient_id=patient_id,
                    tab="mar", **context, problem=None, refused={}, **NURSING_HELPERS)

    return await _withdraw(request, tenant, patient_id, entry_id, data, kind="medication_administration",
                           withdraw=service.retract_administration, shown=shown,
                           done=f"/t/{tenant}/patients/{patient_id}/mar?{'day=' + quote(day) + '&' if day else ''}"
                                "done=retracted")


@post(PATIENT + "/fluids/{entry_id:uuid}/entered-in-error", operation_id="PortalWithdrawFluid",
      opt={"permission": "nursing.fluid.retract_own"}, include_in_schema=False)
async def withdraw_fluid(request: Asking, tenant: Tenant, patient_id: Id, entry_id: Id, data: FormData) -> Response:
    """The fluid chart's form on a line charted in error (ACC-035): it leaves the day's totals, and stays in its
    history with the reason."""
    db: Database = request.app.state.db

    def shown(status: int, withdrawal: dict) -> Template:
        context = _fluids_context(db, request.user, tenant, patient_id)
        context |= _withdrawal(context["withdrawable"], **withdrawal)
        return page(request, "nursing/fluids.html", status=status, active="patients", patient_id=patient_id,
                    tab="fluids", **context, values={}, errors={}, **NURSING_HELPERS)

    return await _withdraw(request, tenant, patient_id, entry_id, data, kind="fluid", withdraw=fluid.retract_line,
                           shown=shown, done=f"/t/{tenant}/patients/{patient_id}/fluids?done=retracted")


ROUTES = [worklist_page, close_task, defer_task, handover_page, record_handover, observations_page, record_observations,
          mar_page, record_dose, reconciliation_page, reconcile_medications, care_plans_page, add_care_plan,
          evaluate_care_plan, fluids_page, record_fluid, round_page, withdraw_dose, withdraw_fluid, *diet_pages.ROUTES]

nursing_router = Router(path="/t/{tenant:str}", route_handlers=ROUTES, exception_handlers=portal.EXCEPTION_HANDLERS,
                        guards=[portal.care_relationship_guard], tags=["portal"], include_in_schema=False)
