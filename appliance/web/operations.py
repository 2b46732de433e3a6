"""The operations pages of the tenant portal, under `/t/{tenant}/`: the bed board (facility and ward)
with admission straight to a free bed, the emergency department board with admission to a bed, the
outpatient clinics' days (booking, moving an appointment to another slot, check-in, cancelling), and the
Operations Command Center (eight KPI tiles and a detail page per KPI with its trend, companions and the
entries behind the number).

They keep the portal's rules (appliance/web/portal.py): server-rendered, work with JavaScript off,
each route declares its permission, forms carry the CSRF token and Post/Redirect/Get, refusals are
pages with a sentence, never a traceback. Patient data is read and written only through the
operations services, which audit every access; the command center's figures come from the same
functions as its JSON API (`OperationsCommandCenter`), so the page and the API never disagree.
"""

from __future__ import annotations

import datetime as dt
import uuid
import zoneinfo
from typing import Any

import sqlalchemy as sa
from anyio import to_thread
from litestar import Response, Router, get, post
from litestar.params import FromPath
from litestar.response import Template
from sqlalchemy.engine import Connection

from appliance.layers.operations import (
    adt,
    command_center,
    deaths,
    discharge_plan,
    ed,
    incidents,
    roster,
    scheduling,
    service,
)
from appliance.layers.operations.errors import Conflict, Invalid, NotFound
from appliance.layers.operations.models import (
    DISCHARGE_DISPOSITIONS,
    ED_DISPOSITIONS,
    INPATIENT_WARD_KINDS,
    bed,
    ed_visit,
    ward,
)
from appliance.layers.operations.roster_routes import staff_of
from appliance.layers.operations.routes import kpi_definitions
from appliance.substrate.record import RecordError, note_patients_found
from appliance.substrate.tenancy import facility_timezone, facility_today
from appliance.web import plots, portal
from appliance.web.portal import Asking, FormData, Id, Query, Tenant, form_values, page, see_other

portal.NAV.extend([
    portal.NavItem("Operations", "beds", "Bed board", "/beds", "operations.bed.read", worklist=True),
    portal.NavItem("Operations", "ed", "Emergency department", "/ed", "operations.ed.read"),
    portal.NavItem("Operations", "clinics", "Clinics", "/clinics", "operations.schedule.read"),
    portal.NavItem("Operations", "command-center", "Command center", "/command-center", "operations.kpi.read"),
])
portal.NOTICES.update({
    "admitted": "Patient admitted; the bed board shows the bed occupied.",
    "transferred": "Patient transferred; the bed left is marked for cleaning.",
    "discharged": "Patient discharged; the bed is marked for cleaning.",
    "expected-discharge": "Expected discharge date saved; the one before is kept in its history.",
    "bed-state": "Bed state changed.",
    "ed-arrival": "Arrival recorded.",
    "ed-updated": "Emergency visit updated.",
    "ed-departed": "Departure recorded.",
    "departed-died": "Recorded as died. The death is not yet certified: a clinician certifies it from the patient's "
                     "chart, or from Deaths to certify.",
    "booked": "Appointment booked.",
    "appointment-updated": "Appointment updated.",
    "rescheduled": "Appointment moved to its new time.",
})

BED_STATE_LABELS = {"available": "Available", "occupied": "Occupied", "cleaning": "Cleaning", "blocked": "Blocked"}
ARRIVAL_MODE_LABELS = {"walk_in": "Walk-in", "ambulance": "Ambulance", "referral": "Referral", "police": "Police",
                       "other": "Other"}
ACUITY = {1: "1 · Resuscitation", 2: "2 · Emergent", 3: "3 · Urgent", 4: "4 · Less urgent", 5: "5 · Non-urgent"}
UNITS = {"percent": "%", "days": "days", "minutes": "min", "ratio": "per bed",
         "per_1000_bed_days": "per 1,000 bed-days"}


def _opts(permission: str) -> dict:
    return {"permission": permission, "care_relationship": False}


def _in_tenant(request: Asking, tenant: str, work) -> Any:
    with request.app.state.db.tenant(tenant) as conn:
        return work(conn)


def fmt(value: float | None, unit: str) -> str:
    """A KPI's value as a tile shows it: whole minutes, one decimal for days and percentages."""
    if value is None:
        return "—"
    if unit == "minutes":
        return f"{value:.0f} min"
    if unit == "percent":
        return f"{value:.1f}%"
    if unit == "days":
        return f"{value:.1f} days"
    if unit == "per_1000_bed_days":
        return f"{value:.2f} per 1,000 bed-days"
    return f"{value:.2f}"


def _minutes_since(then: dt.datetime | None, now: dt.datetime) -> str:
    if then is None:
        return ""
    minutes = int((now - then).total_seconds() // 60)
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{minutes} min"


def _trend_points(trend: list[dict], tz, unit: str, name: str) -> list[plots.Point]:
    return [plots.Point(at=dt.datetime.combine(p["day"], dt.time(12), tzinfo=tz), value=p["value"],
                        label=f"{p['day']:%d %b}: {fmt(p['value'], unit)}")
            for p in trend if p["value"] is not None]


# -- bed board -------------------------------------------------------------------------------------


def _bed_board_page(request: Asking, tenant: str, ward_code: str | None, *, status: int = 200,
                    refusal: str | None = None) -> Template:
    def work(conn: Connection) -> dict:
        wards = service.bed_board(conn, request.user, ward_code)
        targets = conn.execute(sa.select(ward.c.code, ward.c.name, ward.c.kind,
                                         sa.func.count(bed.c.code).label("free"))
                               .select_from(ward.outerjoin(bed, sa.and_(bed.c.ward_code == ward.c.code, bed.c.active,
                                                                        bed.c.state == "available")))
                               .where(ward.c.active, ward.c.kind.in_(INPATIENT_WARD_KINDS))
                               .group_by(ward.c.code).order_by(ward.c.code)).mappings().all()
        # The facility's board lists the ED's patients decided for admission: the bed manager's admissions waiting
        # for a bed, each waiting since that decision (as ED boarding time counts it).
        awaiting = []
        if ward_code is None and request.user.can("operations.ed.read"):
            awaiting = ed.board(conn, request.user, awaiting_bed=True)
            now = conn.execute(sa.select(sa.func.now())).scalar_one()
            for visit in awaiting:
                visit["waiting_for_bed"] = _minutes_since(visit["decided_at"], now)
        # The ED's bays (trolleys, cubicles) hold no stay, so no occupancy: its ward says who is in the department.
        ed_census = ed.census(conn) if any(w["kind"] == "emergency" for w in wards) else None
        # Who is expected home today, tomorrow and overdue: the command centre's counts, of this ward or of them all.
        expected = discharge_plan.outlook(conn, ward_code)
        return {"wards": wards, "transfer_wards": [dict(t) for t in targets], "awaiting": awaiting,
                "ed_census": ed_census, "expected": expected}

    found = _in_tenant(request, tenant, work)
    beds = [b for w in found["wards"] for b in w["bed_list"] if w["kind"] in INPATIENT_WARD_KINDS]
    today = facility_today(request.app.state.db, tenant)
    for placed in beds:  # the transfer list does not offer what the ward would refuse
        placed["maternity_ok"] = service.maternity_may_take(placed.get("sex"), placed.get("birth_date"), today)
        placed["expectation"] = discharge_plan.expectation(placed.get("expected_discharge_on"),
                                                           found["expected"]["day"])
    occupied = sum(1 for b in beds if b["state"] == "occupied")
    staffed = sum(1 for b in beds if b["state"] != "blocked")
    # One ward's page of a ward that is not an inpatient ward (the ED's bays, an outpatient area) has no staffed beds
    # to count occupancy over: it says what its places are instead of "0 of 0 staffed".
    not_inpatient = (next((w for w in found["wards"] if w["kind"] not in INPATIENT_WARD_KINDS), None)
                     if ward_code else None)
    return page(request, "operations/beds.html", status=status, active="beds", ward_code=ward_code, **found,
                refusal=refusal, states=BED_STATE_LABELS, dispositions=DISCHARGE_DISPOSITIONS,
                inpatient_kinds=INPATIENT_WARD_KINDS, acuity=ACUITY, occupied=occupied, not_inpatient=not_inpatient,
                staffed=staffed, occupancy=fmt(occupied / staffed * 100 if staffed else None, "percent"))


@get("/beds", operation_id="PortalBedBoard", opt=_opts("operations.bed.read"), include_in_schema=False)
async def bed_board(request: Asking, tenant: Tenant) -> Template:
    """Every ward's beds, their state and who is in them: the facility's bed board."""
    return await to_thread.run_sync(_bed_board_page, request, tenant, None)


@get("/beds/{ward_code:str}", operation_id="PortalWardBedBoard", opt=_opts("operations.bed.read"),
     include_in_schema=False)
async def ward_bed_board(request: Asking, tenant: Tenant, ward_code: FromPath[str]) -> Template:
    return await to_thread.run_sync(_bed_board_page, request, tenant, ward_code)


@post("/beds/{bed_code:str}/state", operation_id="PortalSetBedState", opt=_opts("operations.bed.update"),
      include_in_schema=False)
async def set_bed_state(request: Asking, tenant: Tenant, bed_code: FromPath[str], data: FormData) -> Response:
    values = form_values(data)
    return await _board_act(request, tenant, values, lambda conn: service.set_bed_state(
        conn, request.user, bed_code, values.get("state") or "")["ward_code"], "bed-state")


async def _board_act(request: Asking, tenant: str, values: dict, act, done: str) -> Response:
    """A bed-board form's act (which returns the ward it left the patient or bed in): back to the board it
    was posted from; refused (409, 422), the facility's board again with the sentence at its top, where
    the bed manager can act on it, rather than an error page away from the board."""
    try:
        ward_code = await to_thread.run_sync(_in_tenant, request, tenant, act)
    except RecordError as exc:
        if exc.status not in {409, 422}:
            raise
        refusal, status = exc.detail[0].upper() + exc.detail[1:] + ".", exc.status
        return await to_thread.run_sync(lambda: _bed_board_page(request, tenant, None, status=status,
                                                                refusal=refusal))
    return see_other(request, _back(tenant, values, ward_code) + f"?done={done}")


def _back(tenant: str, values: dict, ward_code: str | None) -> str:
    """Back to the board the form was on: the ward's page when posted from there, else the facility's."""
    return f"/t/{tenant}/beds/{ward_code}" if values.get("back") == "ward" and ward_code else f"/t/{tenant}/beds"


@post("/beds/patients/{patient_id:uuid}/discharge", operation_id="PortalDischarge",
      opt=_opts("operations.admission.update"), include_in_schema=False)
async def discharge(request: Asking, tenant: Tenant, patient_id: Id, data: FormData) -> Response:
    values = form_values(data)
    died = values.get("disposition") == "died"
    answer = await _board_act(request, tenant, values, lambda conn: adt.discharge(
        conn, request.user, patient_id, disposition=values.get("disposition") or "")["ward_code"],
        "departed-died" if died else "discharged")
    return _on_to_certify(request, tenant, patient_id, answer) if died else answer


def _on_to_certify(request: Asking, tenant: str, patient_id: uuid.UUID, answer: Response) -> Response:
    """After a departure recorded as died (`answer`, back to the board): who may certify the death is taken to the
    certificate's form for that patient instead; anyone else meets the board saying the death is not yet certified
    and where that is done. A refused departure is the board's answer still."""
    if answer.status_code == 303 and request.user.can("clinical.death.write"):
        return see_other(request, f"/t/{tenant}/patients/{patient_id}/death/new")
    return answer


@post("/beds/patients/{patient_id:uuid}/expected-discharge", operation_id="PortalSetExpectedDischarge",
      opt=_opts(discharge_plan.PERMISSION), include_in_schema=False)
async def set_expected_discharge(request: Asking, tenant: Tenant, patient_id: Id, data: FormData) -> Response:
    """The day the ward expects the patient home, set or changed from the bed board (a new version of it)."""
    values = form_values(data)

    def act(conn: Connection) -> str:
        try:
            expected_on = dt.date.fromisoformat(values.get("expected_on") or "")
        except ValueError:
            raise Invalid("give the day the patient is expected home", field="expected_on") from None
        return discharge_plan.set_expected(conn, request.user, patient_id, expected_on=expected_on,
                                           note=values.get("note"))["ward_code"]

    return await _board_act(request, tenant, values, act, "expected-discharge")


@post("/beds/patients/{patient_id:uuid}/transfer", operation_id="PortalTransfer",
      opt=_opts("operations.admission.update"), include_in_schema=False)
async def transfer(request: Asking, tenant: Tenant, patient_id: Id, data: FormData) -> Response:
    values = form_values(data)
    return await _board_act(request, tenant, values, lambda conn: adt.transfer(
        conn, request.user, patient_id, ward_code=values.get("ward_code") or "")["ward_code"], "transferred")


def _admit_to_bed_form(request: Asking, tenant: str, bed_code: str, values: dict, errors: dict,
                       status: int = 200) -> Template:
    def work(conn: Connection) -> Template:
        found = conn.execute(sa.select(bed.c.code, bed.c.ward_code, bed.c.state, ward.c.name, ward.c.kind)
                             .select_from(bed.join(ward, ward.c.code == bed.c.ward_code))
                             .where(bed.c.code == bed_code, bed.c.active, ward.c.active,
                                    ward.c.kind.in_(INPATIENT_WARD_KINDS))).mappings().first()
        if found is None:
            raise NotFound(f"no inpatient bed {bed_code} at this facility", bed_code=bed_code)
        return page(request, "operations/admit_to_bed.html", status=status, active="beds", bed=dict(found),
                    states=BED_STATE_LABELS, values=values, errors=errors)

    return _in_tenant(request, tenant, work)


@get("/beds/{bed_code:str}/admit", operation_id="PortalAdmitToBedPage", opt=_opts("operations.admission.create"),
     include_in_schema=False)
async def admit_to_bed_page(request: Asking, tenant: Tenant, bed_code: FromPath[str]) -> Template:
    """Admit a patient straight to this bed, found by MRN: from a clinic, a referral or a planned admission."""
    return await to_thread.run_sync(_admit_to_bed_form, request, tenant, bed_code, {}, {})


@post("/beds/{bed_code:str}/admit", operation_id="PortalAdmitToBed", opt=_opts("operations.admission.create"),
      include_in_schema=False)
async def admit_to_bed(request: Asking, tenant: Tenant, bed_code: FromPath[str], data: FormData) -> Response:
    values = form_values(data)

    def work(conn: Connection) -> dict:
        ward_code = conn.execute(sa.select(bed.c.ward_code).where(bed.c.code == bed_code, bed.c.active)).scalar()
        if ward_code is None:
            raise NotFound(f"no inpatient bed {bed_code} at this facility", bed_code=bed_code)
        patient_id = patient_by_mrn(conn, request.user, values.get("mrn") or "")
        if conn.execute(sa.select(ed_visit.c.id).where(ed_visit.c.patient_id == patient_id,
                                                       ed_visit.c.departed_at.is_(None))).first() is not None:
            # Admitted from here, the ED visit would stay open on the ED board with the patient upstairs.
            raise Conflict("this patient is in the emergency department: admit them from the emergency "
                           "department's board, which closes their visit there", field="mrn")
        return adt.admit(conn, request.user, patient_id, ward_code=ward_code, bed_code=bed_code,
                         reason=values.get("reason"))

    try:
        stay = await to_thread.run_sync(_in_tenant, request, tenant, work)
    except RecordError as exc:
        if exc.status not in {409, 422}:
            raise
        field = "mrn" if exc.extra.get("field") in {"mrn", "patient_id"} else "form"
        return await to_thread.run_sync(_admit_to_bed_form, request, tenant, bed_code, values,
                                        {field: exc.detail[0].upper() + exc.detail[1:] + "."}, exc.status)
    return see_other(request, f"/t/{tenant}/beds/{stay['ward_code']}?done=admitted")


# -- emergency department --------------------------------------------------------------------------


@get("/ed", operation_id="PortalEdBoard", opt=_opts("operations.ed.read"), include_in_schema=False)
async def ed_board(request: Asking, tenant: Tenant) -> Template:
    """Who is in the emergency department, most urgent and longest waiting first, with the next step."""
    return await to_thread.run_sync(_in_tenant, request, tenant, lambda conn: _ed_board_page(request, conn))


def _ed_board_page(request: Asking, conn: Connection, *, status: int = 200, values: dict | None = None,
                   errors: dict | None = None) -> Template:
    visits = ed.board(conn, request.user)
    now = conn.execute(sa.select(sa.func.now())).scalar_one()
    for visit in visits:
        # Time in the department counts from arrival, as ED length of stay and the four-hour standard do; a patient
        # the ED decided to admit waits for a bed from that decision, as ED boarding time counts it.
        visit["in_department"] = _minutes_since(visit["arrived_at"], now)
        if visit["decision"] == "admit":
            visit["waiting_for_bed"] = _minutes_since(visit["decided_at"], now)
    return page(request, "operations/ed.html", status=status, active="ed", visits=visits, acuity=ACUITY,
                arrival_modes=ARRIVAL_MODE_LABELS,
                dispositions=[d for d in ED_DISPOSITIONS if d != "admitted"], errors=errors or {},
                values=values or {})


def patient_by_mrn(conn: Connection, principal, mrn: str) -> uuid.UUID:
    """The facility's patient with this MRN (the registrar types it from the card); audited as a search."""
    patient = sa.table("patient", sa.column("id", sa.Uuid), sa.column("mrn", sa.Text))
    found = conn.execute(sa.select(patient.c.id).where(patient.c.mrn == mrn.strip())).scalar()
    note_patients_found(conn, principal, [found] if found else [])
    if found is None:
        raise Invalid("no patient with that MRN at this facility: register them first", field="mrn")
    return found


@post("/ed/arrivals", operation_id="PortalEdArrival", opt=_opts("operations.ed.create"), include_in_schema=False)
async def ed_arrival(request: Asking, tenant: Tenant, data: FormData) -> Response:
    values = form_values(data)

    def work(conn: Connection) -> None:
        patient_id = patient_by_mrn(conn, request.user, values.get("mrn") or "")
        ed.arrive(conn, request.user, patient_id, arrival_mode=values.get("arrival_mode") or "walk_in",
                  complaint=values.get("complaint"))

    try:
        await to_thread.run_sync(_in_tenant, request, tenant, work)
    except RecordError as exc:
        if exc.status not in {409, 422}:
            raise
        # A refusal of the patient (unknown, already in the department, in a bed) is said by the MRN that found them.
        key = "mrn" if exc.extra.get("field") in {"mrn", "patient_id"} else "form"
        errors, status = {key: exc.detail[0].upper() + exc.detail[1:] + "."}, exc.status
    else:
        return see_other(request, f"/t/{tenant}/ed?done=ed-arrival")

    return await to_thread.run_sync(_in_tenant, request, tenant, lambda conn: _ed_board_page(
        request, conn, status=status, values=values, errors=errors))


@post("/ed/{encounter_id:uuid}/{step:str}", operation_id="PortalEdStep", opt=_opts("operations.ed.update"),
      include_in_schema=False)
async def ed_step(request: Asking, tenant: Tenant, encounter_id: Id, step: FromPath[str], data: FormData) -> Response:
    """Triage, seen, decision or departure of one ED visit."""
    values = form_values(data)
    departed: list[uuid.UUID] = []

    def work(conn: Connection) -> None:
        if step == "triage":
            try:
                acuity = int(values.get("acuity") or "")
            except ValueError:
                raise Invalid("choose an acuity from 1 to 5", field="acuity") from None
            ed.triage(conn, request.user, encounter_id, acuity=acuity)
        elif step == "seen":
            ed.seen(conn, request.user, encounter_id)
        elif step == "decision":
            ed.decide(conn, request.user, encounter_id, decision=values.get("decision") or "")
        elif step == "departure":
            departed.append(ed.depart(conn, request.user, None, encounter_id,
                                      disposition=values.get("disposition") or "")["patient_id"])
        else:
            raise Invalid(f"unknown step {step!r}", field="step")

    try:
        await to_thread.run_sync(_in_tenant, request, tenant, work)
    except RecordError as exc:
        if exc.status not in {409, 422}:
            raise
        # Back on the board, the sentence at its top: the next step is taken from there.
        errors, status = {"form": exc.detail[0].upper() + exc.detail[1:] + "."}, exc.status
        return await to_thread.run_sync(_in_tenant, request, tenant, lambda conn: _ed_board_page(
            request, conn, status=status, errors=errors))
    if departed and values.get("disposition") == "died":
        return _on_to_certify(request, tenant, departed[0], see_other(request, f"/t/{tenant}/ed?done=departed-died"))
    return see_other(request, f"/t/{tenant}/ed?done={'ed-departed' if step == 'departure' else 'ed-updated'}")


def _admit_form(request: Asking, tenant: str, encounter_id: uuid.UUID, values: dict, errors: dict,
                status: int = 200) -> Template:
    def work(conn: Connection) -> Template:
        visit = next((v for v in ed.board(conn, request.user) if v["id"] == encounter_id), None)
        if visit is None:
            raise NotFound("no patient waiting in the emergency department under that visit",
                           encounter_id=str(encounter_id))
        free = conn.execute(sa.select(bed.c.code, bed.c.ward_code, ward.c.name, ward.c.kind)
                            .select_from(bed.join(ward, ward.c.code == bed.c.ward_code))
                            .where(bed.c.active, ward.c.active, bed.c.state == "available",
                                   ward.c.kind.in_(INPATIENT_WARD_KINDS))
                            .order_by(bed.c.ward_code, bed.c.code)).mappings().all()
        today = facility_today(request.app.state.db, tenant)
        maternity_ok = service.maternity_may_take(visit.get("sex"), visit.get("birth_date"), today)
        wards: dict[str, dict] = {}
        for row in free:
            if row["kind"] == "maternity" and not maternity_ok:
                continue  # the ward would refuse him: its beds are not offered
            wards.setdefault(row["ward_code"], {"code": row["ward_code"], "name": row["name"], "beds": []})
            wards[row["ward_code"]]["beds"].append(row["code"])
        return page(request, "operations/admit.html", status=status, active="ed", visit=visit, acuity=ACUITY,
                    wards=list(wards.values()), values=values, errors=errors)

    return _in_tenant(request, tenant, work)


@get("/ed/{encounter_id:uuid}/admit", operation_id="PortalEdAdmitPage", opt=_opts("operations.admission.create"),
     include_in_schema=False)
async def admit_page(request: Asking, tenant: Tenant, encounter_id: Id) -> Template:
    return await to_thread.run_sync(_admit_form, request, tenant, encounter_id, {}, {})


@post("/ed/{encounter_id:uuid}/admit", operation_id="PortalEdAdmit", opt=_opts("operations.admission.create"),
      include_in_schema=False)
async def admit(request: Asking, tenant: Tenant, encounter_id: Id, data: FormData) -> Response:
    """Admit the ED patient to the bed chosen (or the ward's first free bed)."""
    values = form_values(data)
    bed_code = values.get("bed_code") or None
    ward_code = values.get("ward_code") or (bed_code.rsplit("-", 1)[0] if bed_code else "")

    def work(conn: Connection) -> dict:
        visit = ed.visit_of(conn, encounter_id)
        if bed_code:
            found = conn.execute(sa.select(bed.c.ward_code).where(bed.c.code == bed_code)).scalar()
            chosen_ward = found or ward_code
        else:
            chosen_ward = ward_code
        return adt.admit(conn, request.user, visit["patient_id"], ward_code=chosen_ward, bed_code=bed_code,
                         ed_encounter_id=encounter_id, reason=values.get("reason"))

    try:
        stay = await to_thread.run_sync(_in_tenant, request, tenant, work)
    except RecordError as exc:
        if exc.status not in {409, 422}:
            raise
        # The form chooses a bed (its ward follows): a refusal of either is said beside the bed's list.
        field = "bed_code" if exc.extra.get("field") in {"ward_code", "bed_code"} else "form"
        return await to_thread.run_sync(_admit_form, request, tenant, encounter_id, values,
                                        {field: exc.detail[0].upper() + exc.detail[1:] + "."}, exc.status)
    return see_other(request, f"/t/{tenant}/beds/{stay['ward_code']}?done=admitted")


# -- outpatient clinics ----------------------------------------------------------------------------

APPOINTMENT_ACTIONS = {"checked_in": "Check in", "no_show": "No-show", "cancelled": "Cancel"}
# Where a checked-in patient's visit stands, as the front desk says it.
VISIT_LABELS = {"arrived": "waiting", "in_progress": "with the clinician", "finished": "seen",
                "cancelled": "visit cancelled"}


def _clinic_day(request: Asking, tenant: str, clinic_code: str, day: dt.date, values: dict, errors: dict,
                status: int = 200) -> Template:
    def work(conn: Connection) -> Template:
        clinics = scheduling.clinics(conn)
        chosen = next((c for c in clinics if c["code"] == clinic_code), None)
        if chosen is None:
            raise NotFound(f"no clinic {clinic_code} at this facility", clinic_code=clinic_code)
        slots = scheduling.slots(conn, clinic_code, day)
        booked = {}
        if request.user.can("operations.appointment.read"):
            booked = {a["slot_id"]: a for a in scheduling.day_list(conn, request.user, clinic_code, day)
                      if a["status"] != "cancelled"}
        now = conn.execute(sa.select(sa.func.now())).scalar_one()
        return page(request, "operations/clinic.html", status=status, active="clinics", clinics=clinics,
                    clinic=chosen, day=day, slots=slots, booked=booked, now=now, actions=APPOINTMENT_ACTIONS,
                    visit_labels=VISIT_LABELS,
                    previous=day - dt.timedelta(days=1), next_day=day + dt.timedelta(days=1), values=values,
                    errors=errors)

    return _in_tenant(request, tenant, work)


def _parse_day(request: Asking, tenant: str, value: str) -> dt.date:
    """The day asked for, or the facility's today: the server's clock runs in UTC, and a clinic in Nairobi
    opened after 21:00 UTC would show yesterday's slots, all past and none bookable."""
    if not value:
        return facility_today(request.app.state.db, tenant)
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise Invalid("give the day as YYYY-MM-DD", field="date") from None


@get("/clinics", operation_id="PortalClinics", opt=_opts("operations.schedule.read"), include_in_schema=False)
async def clinics_page(request: Asking, tenant: Tenant) -> Response:
    """The first clinic's day (the page lists the others)."""
    found = await to_thread.run_sync(_in_tenant, request, tenant, scheduling.clinics)
    if not found:
        return await to_thread.run_sync(lambda: page(request, "operations/clinic.html", active="clinics", clinics=[],
                                                     clinic=None, slots=[], booked={}, values={}, errors={}))
    return see_other(request, f"/t/{tenant}/clinics/{found[0]['code']}")


@get("/clinics/{clinic_code:str}", operation_id="PortalClinicDay", opt=_opts("operations.schedule.read"),
     include_in_schema=False)
async def clinic_day(request: Asking, tenant: Tenant, clinic_code: FromPath[str], date: Query = "") -> Template:
    """One clinic's day: every slot, free or booked (and by whom, for those who may see it)."""
    day = _parse_day(request, tenant, date)
    return await to_thread.run_sync(_clinic_day, request, tenant, clinic_code, day, {}, {})


@get("/appointments/to-rebook", operation_id="PortalAppointmentsToRebook", opt=_opts("operations.appointment.read"),
     include_in_schema=False)
async def to_rebook_page(request: Asking, tenant: Tenant) -> Template:
    """Appointments a death certificate cancelled whose certificate was since marked entered in error: nothing
    reopened them (the family decides what still stands), so the desk rebooks from this list. Each row audited."""
    def work(conn: Connection) -> Template:
        rows = deaths.cancelled_by_withdrawn_death(conn, request.user)
        clinic_names = {c["code"]: c["name"] for c in scheduling.clinics(conn)}
        return page(request, "operations/to_rebook.html", active="clinics", rows=rows, clinic_names=clinic_names)

    return await to_thread.run_sync(_in_tenant, request, tenant, work)


@post("/clinics/{clinic_code:str}/appointments", operation_id="PortalBook", opt=_opts("operations.appointment.create"),
      include_in_schema=False)
async def book(request: Asking, tenant: Tenant, clinic_code: FromPath[str], data: FormData) -> Response:
    values = form_values(data)
    day = _parse_day(request, tenant, values.get("date") or "")

    def work(conn: Connection) -> None:
        slot_id = _uuid(values.get("slot_id"))
        patient_id = patient_by_mrn(conn, request.user, values.get("mrn") or "")
        scheduling.book(conn, request.user, patient_id, slot_id, values.get("reason"))

    try:
        await to_thread.run_sync(_in_tenant, request, tenant, work)
    except RecordError as exc:
        if exc.status not in {409, 422}:
            raise
        field = exc.extra.get("field") if exc.extra.get("field") in {"mrn", "slot_id"} else "form"
        return await to_thread.run_sync(_clinic_day, request, tenant, clinic_code, day, values,
                                        {field: exc.detail[0].upper() + exc.detail[1:] + "."}, exc.status)
    return see_other(request, f"/t/{tenant}/clinics/{clinic_code}?date={day.isoformat()}&done=booked")


def _uuid(value: Any) -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise Invalid("choose a slot from the list", field="slot_id") from None


def _reschedule_form(request: Asking, tenant: str, appointment_id: uuid.UUID, day: dt.date | None, errors: dict,
                     status: int = 200) -> Template:
    def work(conn: Connection) -> Template:
        booked = scheduling.appointment_with_patient(conn, request.user, appointment_id)
        tz = zoneinfo.ZoneInfo(booked["timezone"])
        chosen = day or booked["starts_at"].astimezone(tz).date()
        now = conn.execute(sa.select(sa.func.now())).scalar_one()
        return page(request, "operations/reschedule.html", status=status, active="clinics", booked=booked,
                    day=chosen, slots=scheduling.slots(conn, booked["clinic_code"], chosen), now=now,
                    previous=chosen - dt.timedelta(days=1), next_day=chosen + dt.timedelta(days=1), errors=errors)

    return _in_tenant(request, tenant, work)


@get("/appointments/{appointment_id:uuid}/reschedule", operation_id="PortalReschedulePage",
     opt=_opts("operations.appointment.update"), include_in_schema=False)
async def reschedule_page(request: Asking, tenant: Tenant, appointment_id: Id, date: Query = "") -> Template:
    """A booked appointment and its clinic's slots on a day (the appointment's own, unless another is asked
    for), each free one a button that moves the appointment there."""
    day = _parse_day(request, tenant, date) if date else None
    return await to_thread.run_sync(_reschedule_form, request, tenant, appointment_id, day, {})


@post("/appointments/{appointment_id:uuid}/reschedule", operation_id="PortalReschedule",
      opt=_opts("operations.appointment.update"), include_in_schema=False)
async def reschedule(request: Asking, tenant: Tenant, appointment_id: Id, data: FormData) -> Response:
    """Move a booked appointment to the free slot chosen; a refusal comes back on the same page."""
    values = form_values(data)
    day = _parse_day(request, tenant, values.get("date")) if values.get("date") else None

    def work(conn: Connection) -> tuple[dict, dt.date]:
        moved = scheduling.reschedule(conn, request.user, appointment_id, _uuid(values.get("slot_id")),
                                      values.get("reason"))
        return moved, moved["starts_at"].astimezone(facility_timezone(request.app.state.db, tenant)).date()

    try:
        moved, moved_day = await to_thread.run_sync(_in_tenant, request, tenant, work)
    except RecordError as exc:
        if exc.status not in {409, 422}:
            raise
        return await to_thread.run_sync(_reschedule_form, request, tenant, appointment_id, day,
                                        {"form": exc.detail[0].upper() + exc.detail[1:] + "."}, exc.status)
    return see_other(request, f"/t/{tenant}/clinics/{moved['clinic_code']}?date={moved_day.isoformat()}"
                              "&done=rescheduled")


@post("/appointments/{appointment_id:uuid}/{action:str}", operation_id="PortalChangeAppointment",
      opt=_opts("operations.appointment.update"), include_in_schema=False)
async def change_appointment(request: Asking, tenant: Tenant, appointment_id: Id, action: FromPath[str]) -> Response:
    def work() -> tuple[dict, dt.date]:
        changed = _in_tenant(request, tenant,
                             lambda conn: scheduling.change(conn, request.user, appointment_id, action))
        return changed, changed["starts_at"].astimezone(facility_timezone(request.app.state.db, tenant)).date()

    try:
        changed, day = await to_thread.run_sync(work)
    except RecordError as exc:
        if exc.status not in {409, 422}:
            raise
        # Back on the clinic's day the appointment is on, the sentence in its summary.
        errors, status = {"form": exc.detail[0].upper() + exc.detail[1:] + "."}, exc.status

        def again() -> Template:
            booked = _in_tenant(request, tenant, lambda conn: scheduling.appointment_of(conn, appointment_id))
            local = booked["starts_at"].astimezone(facility_timezone(request.app.state.db, tenant)).date()
            return _clinic_day(request, tenant, booked["clinic_code"], local, {}, errors, status)

        return await to_thread.run_sync(again)
    return see_other(request, f"/t/{tenant}/clinics/{changed['clinic_code']}?date={day.isoformat()}"
                              "&done=appointment-updated")


# -- command center --------------------------------------------------------------------------------


@get("/command-center", operation_id="PortalCommandCenter", opt=_opts("operations.kpi.read"),
     include_in_schema=False)
async def command_center_page(request: Asking, tenant: Tenant) -> Template:
    """Eight tiles: the value now, the target, whether it is met and a 14-day sparkline; who is expected home today,
    tomorrow and overdue, ward by ward; the month's incidents and the week's staffing."""

    def work() -> Template:
        tz = facility_timezone(request.app.state.db, tenant)
        staff = staff_of(request.app.state.db, tenant)
        with request.app.state.db.tenant(tenant) as conn:
            figures = command_center.figures(conn, kpi_definitions(request.app.state), tz=tz)
            safety = incidents.month_summary(conn, tz)
            staffing = roster.week_summary(conn, staff=staff, tz=tz)
            expected = discharge_plan.outlook(conn)
        tiles = []
        for item in figures:
            points = _trend_points(item["trend"], tz, item["unit"], item["name"])
            tiles.append({**item, "shown": fmt(item["value"], item["unit"]),
                          "shown_target": fmt(item["target"], item["unit"]) if item["target"] is not None else None,
                          "shown_secondary": fmt(item["secondary"], item["unit"]),
                          "spark": plots.sparkline(points, ident=f"spark-{item['id']}",
                                                   title=f"{item['name']}, last 14 days", width=160, height=36)})
        return page(request, "operations/command_center.html", active="command-center", now=dt.datetime.now(dt.UTC),
                    tiles=[t for t in tiles if not t["companion"]], companions=[t for t in tiles if t["companion"]],
                    safety=safety, harm_words=incidents.HARM_WORDS, week=staffing, expected=expected)

    return await to_thread.run_sync(work)


@get("/command-center/{kpi_id:str}", operation_id="PortalKpiDetail", opt=_opts("operations.kpi.read"),
     include_in_schema=False)
async def kpi_detail(request: Asking, tenant: Tenant, kpi_id: FromPath[str], day: Query = "") -> Template:
    """One KPI: its definition and standard, the value now against the target, the 14-day trend as a
    chart and a table, the companion figures, and — for those allowed — the entries behind it."""

    def work() -> Template:
        definitions = kpi_definitions(request.app.state)
        definition = command_center.definition_of(definitions, kpi_id)
        on = None
        if day:
            try:
                on = dt.date.fromisoformat(day)
            except ValueError:
                raise Invalid("give the day as YYYY-MM-DD", field="day") from None
        tz = facility_timezone(request.app.state.db, tenant)
        with request.app.state.db.tenant(tenant) as conn:
            shown = [definition, *[d for d in definitions if d.companion and d.id != kpi_id]]
            figures = command_center.figures(conn, shown, tz=tz)
            drilled = None
            if request.user.can("operations.kpi.drilldown") and figures[0]["available"]:
                drilled = command_center.drilldown(conn, request.user, definition, tz=tz, day=on)
        item = figures[0]
        points = _trend_points(item["trend"], tz, item["unit"], item["name"])
        chart = plots.time_chart([plots.Series(item["name"], points)], ident=f"trend-{item['id']}",
                                 title=f"{item['name']}, last 14 days",
                                 description=f"Daily {item['name'].lower()} over the last 14 days, facility time.",
                                 unit=UNITS.get(item["unit"], ""), floor=0)  # no KPI is below zero
        return page(request, "operations/kpi.html", active="command-center", kpi=item, chart=chart, fmt=fmt,
                    companions=figures[1:], drilled=drilled, day=on)

    return await to_thread.run_sync(work)


ROUTES = [bed_board, ward_bed_board, set_bed_state, admit_to_bed_page, admit_to_bed, discharge, transfer,
          set_expected_discharge, ed_board,
          ed_arrival, ed_step, admit_page, admit, clinics_page, clinic_day, book, reschedule_page, reschedule,
          change_appointment, command_center_page, kpi_detail, to_rebook_page]

operations_router = Router(path="/t/{tenant:str}", route_handlers=ROUTES,
                           exception_handlers=portal.EXCEPTION_HANDLERS, tags=["portal"], include_in_schema=False)
