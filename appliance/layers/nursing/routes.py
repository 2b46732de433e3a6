"""HTTP routes of the nursing layer, under /api/t/{tenant}/.

Per patient: the sets of vital signs with their scores, the NEWS2 history (MEOWS in pregnancy and the
puerperium, PEWS for a child), the medication administration record (read, record a dose's outcome, withdraw
one recorded in error), nursing tasks (add, close, defer), care plans and the fluid balance chart (read the
days' balances, chart a line, correct one, withdraw one charted in error). Per ward: the worklist and the shift
handover. Vital signs are recorded through the clinical layer's route (`POST .../vitals`); their score is
written by this layer's reaction in the same transaction and read here.

Each route opens one tenant transaction, decides the care relationship as its first statement (a
patient's route) or the ward the principal may see (a ward's route), calls one service and answers
through an explicit response model. Refusals are `{"status_code", "detail", ...}` with the field at
fault (422), the record in the way (409), what was not found (404) or why not (403).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from anyio import to_thread
from litestar import Controller, Request, Response, get, post, put
from litestar.connection import ASGIConnection
from litestar.datastructures import State
from litestar.exceptions import ValidationException
from litestar.handlers import BaseRouteHandler
from litestar.params import FromPath, FromQuery, JSONBody
from litestar.status_codes import HTTP_200_OK, HTTP_422_UNPROCESSABLE_ENTITY
from sqlalchemy.engine import Connection

from appliance.layers.nursing import access, diet, fluid, service, transfusion, ward
from appliance.layers.nursing.errors import Invalid
from appliance.layers.nursing.schemas import (
    AdministrationIn,
    AdministrationOut,
    CarePlanIn,
    CarePlanOut,
    CarePlanUpdate,
    DietCorrection,
    DietOrderIn,
    DietOrderOut,
    FluidChartOut,
    FluidCorrection,
    FluidIn,
    FluidLineOut,
    HandoverIn,
    HandoverOut,
    KitchenListOut,
    MarOut,
    MeowsOut,
    News2Out,
    ObservationSetOut,
    PatientDietOut,
    PewsOut,
    Retraction,
    TaskDeferIn,
    TaskIn,
    TaskOut,
    TaskStatusIn,
    TransfusionEndIn,
    TransfusionObservationIn,
    TransfusionOut,
    TransfusionReactionIn,
    TransfusionStartIn,
    WorklistOut,
)
from appliance.substrate.principal import Principal
from appliance.substrate.problems import invalid_request_detail
from appliance.substrate.record import RecordError
from appliance.substrate.tenancy import facility_timezone

PATIENT = "/patients/{patient_id:uuid}"
WARD = "/nursing/wards/{ward_code:str}"
Id = FromPath[uuid.UUID]
Asking = Request[Principal, Any, Any]
T = TypeVar("T")
def _opt(permission: str) -> dict:
    return {"permission": permission}


def _problem(status: int, detail: str, **extra: Any) -> Response:
    return Response({"status_code": status, "detail": detail, **extra}, status_code=status)


def _record_error(_: Request, exc: RecordError) -> Response:
    return _problem(exc.status, exc.detail, **exc.extra)


def _invalid_request(_: Request, exc: ValidationException) -> Response:
    errors = exc.extra if isinstance(exc.extra, list) else []
    # A rule across fields (a refusal without its reason) is said in the rule's own words.
    detail = invalid_request_detail(errors, exc.detail)
    return _problem(HTTP_422_UNPROCESSABLE_ENTITY, detail, errors=errors)


async def care_relationship_guard(connection: ASGIConnection, handler: BaseRouteHandler) -> None:
    """A patient's route needs a care relationship or a stated break-the-glass reason (header
    `X-Break-Glass-Reason`); the decision runs first in the route's own transaction (`_tenant`)."""
    # A coroutine: it does no I/O, and a plain-function guard costs a worker-thread hop per request.
    patient_id = connection.path_params.get("patient_id")
    if patient_id is None:
        return
    # The header only: a reason in the query would sit in the address, and so in logs and history.
    reason = connection.headers.get("x-break-glass-reason")
    connection.scope["healthos_nursing_care"] = (patient_id, reason)  # type: ignore[typeddict-unknown-key]


@contextmanager
def _tenant(state: State, request: Asking, tenant: str) -> Iterator[Connection]:
    with state.db.tenant(tenant) as conn:
        care = request.scope.get("healthos_nursing_care")
        if care is not None:
            access.open_record(conn, request.user, care[0], care[1])
        yield conn


async def _run(state: State, request: Asking, tenant: str, work: Callable[[Connection, dict], T]) -> T:
    """`work(conn, context)` in the route's tenant transaction, off the event loop; `context` holds
    the facility's clock (`now`, `tz`)."""
    def run() -> T:
        context = {"now": dt.datetime.now(dt.UTC), "tz": facility_timezone(state.db, tenant)}
        with _tenant(state, request, tenant) as conn:
            return work(conn, context)

    return await to_thread.run_sync(run)


class NursingController(Controller):
    path = "/api/t/{tenant:str}"
    tags = ["nursing"]
    guards = [care_relationship_guard]
    exception_handlers = {RecordError: _record_error, ValidationException: _invalid_request}

    # -- early warning scores --------------------------------------------------------------------------

    @get(PATIENT + "/news2", operation_id="NursingListNews2", opt=_opt("nursing.news2.read"))
    async def list_news2(self, tenant: FromPath[str], state: State, request: Asking, patient_id: Id,
                         limit: FromQuery[int] = 200) -> list[News2Out]:
        """NEWS2 of each set of vital signs, newest first: the score, each parameter's part, the risk
        band and the response it calls for, and when the next observations are due."""
        rows = await _run(state, request, tenant, lambda conn, _: service.list_scores(
            conn, request.user, patient_id, limit=max(1, min(limit, 1000))))
        return [News2Out.model_validate(r) for r in rows]

    @get(PATIENT + "/meows", operation_id="NursingListMeows", opt=_opt("nursing.news2.read"))
    async def list_meows(self, tenant: FromPath[str], state: State, request: Asking, patient_id: Id,
                         limit: FromQuery[int] = 200) -> list[MeowsOut]:
        """The maternity early warning score (MEOWS) of each set of vital signs taken in pregnancy or the
        puerperium, where NEWS2 is not used, newest first: each parameter's red or yellow trigger, whether
        the set triggered (one red or two yellow) and the response, and when the next observations are
        due. Read under the early warning scores' permission, as NEWS2."""
        rows = await _run(state, request, tenant, lambda conn, _: service.list_scores(
            conn, request.user, patient_id, "meows", limit=max(1, min(limit, 1000))))
        return [MeowsOut.model_validate(r) for r in rows]

    @get(PATIENT + "/pews", operation_id="NursingListPews", opt=_opt("nursing.news2.read"))
    async def list_pews(self, tenant: FromPath[str], state: State, request: Asking, patient_id: Id,
                        limit: FromQuery[int] = 200) -> list[PewsOut]:
        """The paediatric early warning score (Bedside PEWS) of each set of vital signs taken of a child under
        16, where NEWS2 is not used, newest first: the age band it was scored in, each item's sub-score (0, 1,
        2 or 4), the total (8 or more triggers an urgent review) and the response, the items the record does
        not hold (so the total is a lower bound), and when the next observations are due. Read under the
        early warning scores' permission, as NEWS2."""
        rows = await _run(state, request, tenant, lambda conn, _: service.list_scores(
            conn, request.user, patient_id, "pews", limit=max(1, min(limit, 1000))))
        return [PewsOut.model_validate(r) for r in rows]

    @get(PATIENT + "/observations", operation_id="NursingListObservations", opt=_opt("nursing.news2.read"))
    async def list_observations(self, tenant: FromPath[str], state: State, request: Asking, patient_id: Id,
                                limit: FromQuery[int] = 120) -> list[ObservationSetOut]:
        """Each set of vital signs, newest first, as the ward's observation chart shows it: the values measured,
        a child's MUAC and bilateral pitting oedema (with its WHO grade), and the NEWS2, MEOWS or PEWS that
        scored the set. Sets are recorded through ClinicalRecordVitals (`POST .../vitals`), which takes
        `muac_mm`, `oedema` and `oedema_grade` of a child under 16 and refuses them (422, naming the field) of
        anyone older, as the ward's and the clinic's forms do. Read under the early warning scores'
        permission, as the chart's page."""
        rows = await _run(state, request, tenant, lambda conn, _: service.observations(
            conn, request.user, patient_id, limit=max(1, min(limit, 1000))))
        return [ObservationSetOut.model_validate(r) for r in rows]

    # -- the medication administration record ----------------------------------------------------------

    @get(PATIENT + "/mar", operation_id="NursingGetMar", opt=_opt("nursing.mar.read"))
    async def get_mar(self, tenant: FromPath[str], state: State, request: Asking, patient_id: Id,
                      since: FromQuery[dt.datetime | None] = None,
                      until: FromQuery[dt.datetime | None] = None) -> MarOut:
        """Each prescription's doses between `since` and `until` (default: the last 24 hours and the
        next 24), each due, due now, late, given (late or not), held, refused or missed."""
        def work(conn: Connection, context: dict) -> dict:
            now = context["now"]
            return service.mar(conn, request.user, patient_id, window_start=_aware(since, "since") or
                               now - dt.timedelta(hours=24), window_end=_aware(until, "until") or
                               now + dt.timedelta(hours=24), now=now, tz=context["tz"])

        return MarOut.model_validate(await _run(state, request, tenant, work))

    @post(PATIENT + "/mar", operation_id="NursingRecordAdministration", opt=_opt("nursing.mar.record"))
    async def record_administration(self, tenant: FromPath[str], state: State, request: Asking, patient_id: Id,
                                    data: JSONBody[AdministrationIn]) -> AdministrationOut:
        """One dose's outcome: given (when; the dose if not as prescribed, with why), or held, refused or
        missed with the reason. A dose given is a `medication_administration` entry of the record."""
        return AdministrationOut.model_validate(await _run(state, request, tenant, lambda conn, c: (
            service.record_administration(conn, request.user, patient_id, data, now=c["now"], tz=c["tz"]))))

    @post(PATIENT + "/mar/{entry_id:uuid}/entered-in-error", operation_id="NursingRetractAdministration",
          opt=_opt("nursing.mar.retract_own"), status_code=HTTP_200_OK)
    async def retract_administration(self, tenant: FromPath[str], state: State, request: Asking,
                                     patient_id: Id, entry_id: Id, data: JSONBody[Retraction]) -> dict:
        """Withdraw a dose recorded in error (it stays in the history; the dose is open again): the nurse who
        recorded it, within 12 hours, or a clinician at any time (ACC-035); anyone else 403, saying who can."""
        return await _run(state, request, tenant, lambda conn, _: service.retract_administration(
            conn, request.user, patient_id, entry_id, data.reason))

    # -- tasks -----------------------------------------------------------------------------------------

    @get(PATIENT + "/tasks", operation_id="NursingListTasks", opt=_opt("nursing.task.read"))
    async def list_tasks(self, tenant: FromPath[str], state: State, request: Asking, patient_id: Id,
                         open_only: FromQuery[bool] = False) -> list[TaskOut]:
        rows = await _run(state, request, tenant, lambda conn, c: service.list_tasks(
            conn, request.user, patient_id, now=c["now"], open_only=open_only))
        return [TaskOut.model_validate(r) for r in rows]

    @post(PATIENT + "/tasks", operation_id="NursingAddTask", opt=_opt("nursing.task.create"))
    async def add_task(self, tenant: FromPath[str], state: State, request: Asking, patient_id: Id,
                       data: JSONBody[TaskIn]) -> TaskOut:
        return TaskOut.model_validate(await _run(state, request, tenant, lambda conn, c: service.add_task(
            conn, request.user, patient_id, data, now=c["now"])))

    @post(PATIENT + "/tasks/{entry_id:uuid}/status", operation_id="NursingCloseTask",
          opt=_opt("nursing.task.update"), status_code=HTTP_200_OK)
    async def close_task(self, tenant: FromPath[str], state: State, request: Asking, patient_id: Id, entry_id: Id,
                         data: JSONBody[TaskStatusIn]) -> TaskOut:
        """Mark a task done (with a note of how) or cancelled (with why)."""
        return TaskOut.model_validate(await _run(state, request, tenant, lambda conn, c: service.set_task_status(
            conn, request.user, patient_id, entry_id, data.status, data.note, now=c["now"])))

    @post(PATIENT + "/tasks/{entry_id:uuid}/defer", operation_id="NursingDeferTask",
          opt=_opt("nursing.task.update"), status_code=HTTP_200_OK)
    async def defer_task(self, tenant: FromPath[str], state: State, request: Asking, patient_id: Id, entry_id: Id,
                         data: JSONBody[TaskDeferIn]) -> TaskOut:
        """Make an open task due later, saying why (not an observations or escalation task)."""
        return TaskOut.model_validate(await _run(state, request, tenant, lambda conn, c: service.defer_task(
            conn, request.user, patient_id, entry_id, _aware(data.until, "until"), data.note, now=c["now"],
            tz=c["tz"])))

    # -- care plans ------------------------------------------------------------------------------------

    @get(PATIENT + "/care-plans", operation_id="NursingListCarePlans", opt=_opt("nursing.careplan.read"))
    async def list_care_plans(self, tenant: FromPath[str], state: State, request: Asking,
                              patient_id: Id) -> list[CarePlanOut]:
        rows = await _run(state, request, tenant, lambda conn, _: service.list_care_plans(
            conn, request.user, patient_id))
        return [CarePlanOut.model_validate(r) for r in rows]

    @post(PATIENT + "/care-plans", operation_id="NursingAddCarePlan", opt=_opt("nursing.careplan.create"))
    async def add_care_plan(self, tenant: FromPath[str], state: State, request: Asking, patient_id: Id,
                            data: JSONBody[CarePlanIn]) -> CarePlanOut:
        """A problem, the goal, the interventions to reach it; evaluated later (PUT)."""
        return CarePlanOut.model_validate(await _run(state, request, tenant, lambda conn, _: service.add_care_plan(
            conn, request.user, patient_id, data)))

    @put(PATIENT + "/care-plans/{entry_id:uuid}", operation_id="NursingUpdateCarePlan",
         opt=_opt("nursing.careplan.update"))
    async def update_care_plan(self, tenant: FromPath[str], state: State, request: Asking, patient_id: Id,
                               entry_id: Id, data: JSONBody[CarePlanUpdate]) -> CarePlanOut:
        """Evaluate or revise a care plan (its next version; achieved or discontinued needs the evaluation)."""
        return CarePlanOut.model_validate(await _run(state, request, tenant, lambda conn, _: (
            service.update_care_plan(conn, request.user, patient_id, entry_id, data, data.reason))))

    # -- the fluid balance chart ----------------------------------------------------------------------

    @get(PATIENT + "/fluids", operation_id="NursingGetFluidBalance", opt=_opt("nursing.fluid.read"))
    async def get_fluids(self, tenant: FromPath[str], state: State, request: Asking, patient_id: Id,
                         days: FromQuery[int] = fluid.DAYS_SHOWN) -> FluidChartOut:
        """The fluid balance chart by the ward's fluid day (it starts at the tenant file's `[nursing]
        fluid_day_starts`, 07:00 by default, facility time): today's first, then up to 13 days before; each
        day's intake, output and balance, the balance carried across the days shown, its lines with the
        balance running through the day, and the urine of each hour. `urine` judges KDIGO's oliguria (below
        0.5 ml/kg/h over the 6 hours ending at the latest urine measurement, against the latest recorded
        weight); without a weight, or before 6 hours are charted, it says it cannot be judged."""
        return FluidChartOut.model_validate(await _run(state, request, tenant, lambda conn, c: fluid.chart(
            conn, request.user, patient_id, now=c["now"], tz=c["tz"], days=max(1, min(days, 14)))))

    @post(PATIENT + "/fluids", operation_id="NursingRecordFluid", opt=_opt("nursing.fluid.write"))
    async def record_fluid(self, tenant: FromPath[str], state: State, request: Asking, patient_id: Id,
                           data: JSONBody[FluidIn]) -> FluidLineOut:
        """One line of the chart, a `fluid` entry: intake (oral, iv, enteral, blood, other) or output (urine,
        vomit, ng_aspirate, drain, stool, other), 1 to 5000 ml, when (default now; not to come, not over 7
        days ago). Urine found oliguric raises the ward's escalation task, "inform the doctor"."""
        return FluidLineOut.model_validate(await _run(state, request, tenant, lambda conn, c: fluid.record_line(
            conn, request.user, patient_id, direction=data.direction, route=data.route, volume_ml=data.volume_ml,
            occurred_at=_aware(data.occurred_at, "occurred_at"), note=data.note, now=c["now"])))

    @put(PATIENT + "/fluids/{entry_id:uuid}", operation_id="NursingCorrectFluid", opt=_opt("nursing.fluid.write"))
    async def correct_fluid(self, tenant: FromPath[str], state: State, request: Asking, patient_id: Id,
                            entry_id: Id, data: JSONBody[FluidCorrection]) -> FluidLineOut:
        """Correct a line (its next version, with why; the line corrected stays in the history)."""
        return FluidLineOut.model_validate(await _run(state, request, tenant, lambda conn, c: fluid.correct_line(
            conn, request.user, patient_id, entry_id, direction=data.direction, route=data.route,
            volume_ml=data.volume_ml, occurred_at=_aware(data.occurred_at, "occurred_at"), note=data.note,
            reason=data.reason, now=c["now"])))

    @post(PATIENT + "/fluids/{entry_id:uuid}/entered-in-error", operation_id="NursingRetractFluid",
          opt=_opt("nursing.fluid.retract_own"), status_code=HTTP_200_OK)
    async def retract_fluid(self, tenant: FromPath[str], state: State, request: Asking, patient_id: Id,
                            entry_id: Id, data: JSONBody[Retraction]) -> dict:
        """Withdraw a line charted in error: it leaves the totals and stays in the history. The nurse who charted
        it, within 12 hours, or a clinician at any time (ACC-035); anyone else 403, saying who can."""
        return await _run(state, request, tenant, lambda conn, _: fluid.retract_line(
            conn, request.user, patient_id, entry_id, data.reason))

    # -- the bedside transfusion record ---------------------------------------------------------------

    @get(PATIENT + "/transfusions", operation_id="NursingListTransfusions", opt=_opt("nursing.transfusion.read"))
    async def list_transfusions(self, tenant: FromPath[str], state: State, request: Asking,
                                patient_id: Id) -> list[TransfusionOut]:
        """The patient's transfusions, newest first: the unit, the bedside check's second person, start and end,
        the vital signs before, at 15 minutes and at the end, the volume given and the reaction."""
        return [TransfusionOut.model_validate(t) for t in await _run(
            state, request, tenant, lambda conn, _: transfusion.of_patient(conn, request.user, patient_id))]

    @post(PATIENT + "/transfusions", operation_id="NursingStartTransfusion", opt=_opt("nursing.transfusion.write"))
    async def start_transfusion(self, tenant: FromPath[str], state: State, request: Asking, patient_id: Id,
                                data: JSONBody[TransfusionStartIn]) -> TransfusionOut:
        """Start a unit after the bedside check: the unit number on the bag, the second member of staff who checked
        it (their account: of this facility, not the caller, a nurse or a clinician; else 422 on
        checked_by_account_id), the vital signs before. A unit not issued to this patient (the wrong-patient catch),
        expired on the facility's day of the start, or unknown is refused (422 on unit_number, saying what is wrong)
        with nothing written; accepted, the unit is transfused."""
        _aware(data.started_at, "started_at")
        staff = await to_thread.run_sync(lambda: transfusion.colleagues(state.db, state.policy, tenant))
        return TransfusionOut.model_validate(await _run(state, request, tenant, lambda conn, c: transfusion.start(
            conn, request.user, patient_id, data, now=c["now"], zone=c["tz"], staff=staff)))

    @post(PATIENT + "/transfusions/{transfusion_id:uuid}/observations", operation_id="NursingObserveTransfusion",
          opt=_opt("nursing.transfusion.write"), status_code=HTTP_200_OK)
    async def observe_transfusion(self, tenant: FromPath[str], state: State, request: Asking, patient_id: Id,
                                  transfusion_id: Id, data: JSONBody[TransfusionObservationIn]) -> TransfusionOut:
        """The vital signs 15 minutes after the start. Ended, or observed already: 409."""
        _aware(data.observed_at, "observed_at")
        return TransfusionOut.model_validate(await _run(state, request, tenant, lambda conn, c: transfusion.observe(
            conn, request.user, patient_id, transfusion_id, data, now=c["now"], zone=c["tz"])))

    @post(PATIENT + "/transfusions/{transfusion_id:uuid}/end", operation_id="NursingEndTransfusion",
          opt=_opt("nursing.transfusion.write"), status_code=HTTP_200_OK)
    async def end_transfusion(self, tenant: FromPath[str], state: State, request: Asking, patient_id: Id,
                              transfusion_id: Id, data: JSONBody[TransfusionEndIn]) -> TransfusionOut:
        """End the transfusion, or stop it for a suspected reaction: the time, the volume given, the vital signs
        and the reaction (none, febrile, allergic, haemolytic, taco, trali, other, with what was seen). A reaction
        stops it and raises the ward's escalation task. Ended already: 409."""
        _aware(data.ended_at, "ended_at")
        return TransfusionOut.model_validate(await _run(state, request, tenant, lambda conn, c: transfusion.end(
            conn, request.user, patient_id, transfusion_id, data, now=c["now"], zone=c["tz"])))

    @post(PATIENT + "/transfusions/{transfusion_id:uuid}/reactions", operation_id="NursingReportTransfusionReaction",
          opt=_opt(transfusion.REACTION_PERMISSION), status_code=HTTP_200_OK)
    async def report_transfusion_reaction(self, tenant: FromPath[str], state: State, request: Asking, patient_id: Id,
                                          transfusion_id: Id, data: JSONBody[TransfusionReactionIn]) -> TransfusionOut:
        """A reaction noticed after the transfusion was completed, by a nurse or a clinician (ACC-038): its kind,
        when it began (not before the start, not to come: 422 on onset_at), its severity and what was seen and
        done. The transfusion stays completed, the version before kept; the ward's escalation task is raised and
        the blood bank lists it. Still running, stopped, or with a reaction already: 409."""
        _aware(data.onset_at, "onset_at")
        return TransfusionOut.model_validate(await _run(state, request, tenant, lambda conn, c: (
            transfusion.report_reaction(conn, request.user, patient_id, transfusion_id, data, now=c["now"],
                                        zone=c["tz"]))))

    # -- diet orders and the kitchen's list -----------------------------------------------------------

    @get(PATIENT + "/diet", operation_id="NursingGetDiet", opt=_opt("nursing.diet.read"))
    async def get_diet(self, tenant: FromPath[str], state: State, request: Asking, patient_id: Id) -> PatientDietOut:
        """The diet in force now (an order starting later leaves the one before it in force until then), the one to
        come, every version newest first, the record's active allergies (food first) and the nil-by-mouth suggestion
        of an operation booked within the next day: no food from 6 hours before its planned start, clear fluids
        until 2 hours before (ASA 2017)."""
        return PatientDietOut.model_validate(await _run(state, request, tenant, lambda conn, c: diet.of_patient(
            conn, request.user, patient_id, now=c["now"])))

    @post(PATIENT + "/diet", operation_id="NursingOrderDiet", opt=_opt("nursing.diet.write"))
    async def order_diet(self, tenant: FromPath[str], state: State, request: Asking, patient_id: Id,
                         data: JSONBody[DietOrderIn]) -> DietOrderOut:
        """Order a diet for an admitted patient (an outpatient: 422): the diet, those combined with it, the IDDSI
        texture, from (default now) until (default open) and a note. A new order is the next version of the
        patient's order and is followed from its start. An unknown diet, a combination that makes no sense or an
        order ending before it starts: 422 naming the field, nothing written."""
        _aware(data.starts_at, "starts_at")
        _aware(data.ends_at, "ends_at")
        return DietOrderOut.model_validate(await _run(state, request, tenant, lambda conn, c: diet.place(
            conn, request.user, patient_id, data, now=c["now"])))

    @put(PATIENT + "/diet/{entry_id:uuid}", operation_id="NursingCorrectDiet", opt=_opt("nursing.diet.write"))
    async def correct_diet(self, tenant: FromPath[str], state: State, request: Asking, patient_id: Id, entry_id: Id,
                           data: JSONBody[DietCorrection]) -> DietOrderOut:
        """Correct the current version of the order (its next version replaces it, with why; a version that is not
        the current one: 409)."""
        _aware(data.starts_at, "starts_at")
        _aware(data.ends_at, "ends_at")
        return DietOrderOut.model_validate(await _run(state, request, tenant, lambda conn, c: diet.correct(
            conn, request.user, patient_id, entry_id, data, data.reason, now=c["now"])))

    @post(PATIENT + "/diet/{entry_id:uuid}/entered-in-error", operation_id="NursingRetractDiet",
          opt=_opt("nursing.diet.write"), status_code=HTTP_200_OK)
    async def retract_diet(self, tenant: FromPath[str], state: State, request: Asking, patient_id: Id, entry_id: Id,
                           data: JSONBody[Retraction]) -> dict:
        """Withdraw an order entered in error: the patient has no diet order until one is written."""
        return await _run(state, request, tenant, lambda conn, _: diet.retract(
            conn, request.user, patient_id, entry_id, data.reason))

    @get("/kitchen", operation_id="NursingGetKitchenList", opt=_opt("nursing.kitchen.read"))
    async def kitchen(self, tenant: FromPath[str], state: State, request: Asking, meal: FromQuery[str | None] = None,
                      date: FromQuery[dt.date | None] = None, ward: FromQuery[str | None] = None) -> KitchenListOut:
        """The kitchen's list for one meal (breakfast, lunch or supper at the tenant file's `[nursing]` hours;
        default the next one) of one day (default the meal's next serving, facility time), ward by ward (`ward`
        for one; a ward-scoped nurse gets her own): bed, name, the diet in force at the meal, texture, the food
        allergies on the record, nil by mouth flagged (ordered, or fasting for an operation), and those admitted
        without an order counted as 'no diet ordered'. Each patient listed is noted on their access log."""
        def work(conn: Connection, c: dict) -> dict:
            wards = ([access.ward_for(conn, request.user, ward)] if ward or request.user.ward_scoped
                     else diet.kitchen_wards(conn))
            which, day = diet.next_meal(conn, c["now"], c["tz"], meal)
            return diet.kitchen_list(conn, request.user, wards, meal=which, day=date or day, tz=c["tz"])

        return KitchenListOut.model_validate(await _run(state, request, tenant, work))

    # -- the ward --------------------------------------------------------------------------------------

    @get(WARD + "/worklist", operation_id="NursingGetWorklist", opt=_opt("nursing.worklist.read"))
    async def worklist(self, tenant: FromPath[str], state: State, request: Asking,
                       ward_code: FromPath[str]) -> WorklistOut:
        """Every patient on the ward, escalations first: latest NEWS2 and its response, observations due,
        open tasks, doses due and late. A ward-scoped nurse sees her own ward only."""
        def work(conn: Connection, c: dict) -> dict:
            found = access.ward_for(conn, request.user, ward_code)
            return ward.worklist(conn, request.user, found, now=c["now"], tz=c["tz"])

        return WorklistOut.model_validate(await _run(state, request, tenant, work))

    @get(WARD + "/handover", operation_id="NursingGetHandover", opt=_opt("nursing.handover.read"))
    async def handover(self, tenant: FromPath[str], state: State, request: Asking, ward_code: FromPath[str],
                       shift_start: FromQuery[dt.datetime | None] = None,
                       shift_end: FromQuery[dt.datetime | None] = None) -> HandoverOut:
        """The shift handover built from the record (default: the shift now, day 07–19 or night 19–07)."""
        def work(conn: Connection, c: dict) -> dict:
            found = access.ward_for(conn, request.user, ward_code)
            return ward.handover_summary(conn, request.user, found, now=c["now"], tz=c["tz"],
                                         shift_start=_aware(shift_start, "shift_start"),
                                         shift_end=_aware(shift_end, "shift_end"))

        return HandoverOut.model_validate(await _run(state, request, tenant, work))

    @post(WARD + "/handover", operation_id="NursingRecordHandover", opt=_opt("nursing.handover.create"))
    async def record_handover(self, tenant: FromPath[str], state: State, request: Asking, ward_code: FromPath[str],
                              data: JSONBody[HandoverIn]) -> HandoverOut:
        """Keep the handover as given, with the outgoing nurse's note (a `handover` entry)."""
        def work(conn: Connection, c: dict) -> dict:
            found = access.ward_for(conn, request.user, ward_code)
            return ward.record_handover(conn, request.user, found, now=c["now"], tz=c["tz"],
                                        shift_start=_aware(data.shift_start, "shift_start"),
                                        shift_end=_aware(data.shift_end, "shift_end"), note=data.note)

        return HandoverOut.model_validate(await _run(state, request, tenant, work))


def _aware(moment: dt.datetime | None, field: str) -> dt.datetime | None:
    if moment is not None and moment.tzinfo is None:
        raise Invalid("give times with their UTC offset (e.g. 2026-11-26T07:00:00+03:00)", field=field)
    return moment
