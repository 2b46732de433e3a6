"""HTTP routes of the operations layer, under /api/t/{tenant}/: wards and the bed board, ADT, the
emergency department, outpatient scheduling and the command center's figures as JSON.

Each route opens one tenant transaction (the unit of work) on a worker thread, calls one service and
shapes the answer through an explicit response model. Refusals are structured `{"status_code",
"detail", "field"?}`: 422 for input that cannot be done as asked, 409 when the facility's state is in
the way (the bed is taken, the slot is booked), 404 for what is not here. Operations staff act for the
institution (a bed manager places any patient), so these routes need no care relationship; every read
and write of patient data is audited by the services.
"""

from __future__ import annotations

import datetime as dt
import functools
import uuid
import zoneinfo
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, TypeVar

import sqlalchemy as sa
from anyio import to_thread
from litestar import Controller, Request, Response, get, post, put
from litestar.datastructures import State
from litestar.exceptions import ValidationException
from litestar.params import FromPath, FromQuery, JSONBody
from litestar.status_codes import HTTP_409_CONFLICT, HTTP_422_UNPROCESSABLE_ENTITY
from sqlalchemy.engine import Connection

from appliance.layers.operations import (
    adt,
    command_center,
    deaths,
    discharge_plan,
    ed,
    pharmacy,
    scheduling,
    service,
)
from appliance.layers.operations.errors import Invalid
from appliance.layers.operations.schemas import (
    AdjustmentIn,
    AdmissionIn,
    AppointmentChangeIn,
    AppointmentOut,
    ArrivalIn,
    BedStateIn,
    BedStateOut,
    BookingIn,
    ClinicOut,
    CommandCenterOut,
    DecisionIn,
    DepartureIn,
    DischargeIn,
    DispenseHistoryOut,
    DispenseIn,
    DispenseOut,
    DispenseReturnIn,
    DispenseReturnOut,
    DispenseReversalIn,
    DispenseReversalOut,
    DrillDownOut,
    EdVisitOut,
    KpiOut,
    PharmacyItemIn,
    PharmacyItemOut,
    QueueItemOut,
    ReceiptIn,
    RescheduleIn,
    SeenIn,
    SlotOut,
    StayOut,
    StockMovementOut,
    TransferIn,
    TriageIn,
    WardBoard,
    WardCensus,
)
from appliance.substrate.db import Database
from appliance.substrate.kpis import KpiDefinition, load_definitions
from appliance.substrate.principal import Principal
from appliance.substrate.problems import invalid_request_detail
from appliance.substrate.record import RecordError
from appliance.substrate.tenancy import facility_timezone, facility_today, facility_today_and_start

Asking = Request[Principal, Any, Any]
Id = FromPath[uuid.UUID]
T = TypeVar("T")


def _problem(status: int, detail: str, **extra: Any) -> Response:
    return Response({"status_code": status, "detail": detail, **extra}, status_code=status)


def _record_error(_: Request, exc: RecordError) -> Response:
    return _problem(exc.status, exc.detail, **exc.extra)


def _invalid_request(_: Request, exc: ValidationException) -> Response:
    errors = exc.extra if isinstance(exc.extra, list) else []
    detail = invalid_request_detail(errors, exc.detail)
    return _problem(HTTP_422_UNPROCESSABLE_ENTITY, detail, errors=errors)


def _integrity(_: Request, exc: sa.exc.IntegrityError) -> Response:
    return _problem(HTTP_409_CONFLICT, "another write got there first; reload and try again")


@functools.cache
def _definitions_at(path: Path) -> tuple[KpiDefinition, ...]:
    return tuple(load_definitions(path))


def kpi_definitions(state: State) -> tuple[KpiDefinition, ...]:
    return _definitions_at(state.settings.policies_dir / "kpis.toml")


def command_center_json(db: Database, state: State, tenant: str) -> dict:
    tz = facility_timezone(db, tenant)
    with db.tenant(tenant) as conn:
        now = conn.execute(sa.select(sa.func.now())).scalar_one()
        figures = command_center.figures(conn, kpi_definitions(state), tz=tz, now=now)
        expected = discharge_plan.outlook(conn)
    return {"facility": tenant, "computed_at": now, "timezone": tz.key, "kpis": figures,
            "expected_discharges": expected}


async def _in_tenant(state: State, tenant: str, work: Callable[[Connection], T]) -> T:
    def run() -> T:
        with state.db.tenant(tenant) as conn:
            return work(conn)

    return await to_thread.run_sync(run)


def _day(value: str | None, tz: zoneinfo.ZoneInfo, field: str = "date") -> dt.date:
    """The day asked for, or the facility's today: the server's clock runs in UTC, and a Nairobi clinic
    asked for its slots after 21:00 UTC would get yesterday's, every one past."""
    if not value:
        return dt.datetime.now(tz).date()
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise Invalid("give the date as YYYY-MM-DD", field=field) from None


def _opt(permission: str) -> dict:
    return {"permission": permission}


class OperationsController(Controller):
    path = "/api/t/{tenant:str}"
    tags = ["operations"]
    exception_handlers = {RecordError: _record_error, ValidationException: _invalid_request,
                          sa.exc.IntegrityError: _integrity}

    # -- wards and beds ----------------------------------------------------------------------------------

    @get("/wards", operation_id="OperationsListWards", opt=_opt("operations.ward.read"))
    async def list_wards(self, tenant: FromPath[str], state: State) -> list[WardCensus]:
        """Each active ward of the facility with its beds by state."""
        rows = await _in_tenant(state, tenant, service.ward_census)
        return [WardCensus.model_validate(row) for row in rows]

    @get("/beds", operation_id="OperationsBedBoard", opt=_opt("operations.bed.read"))
    async def bed_board(self, tenant: FromPath[str], state: State, request: Asking,
                        ward: FromQuery[str | None] = None) -> list[WardBoard]:
        """The bed board: every bed by ward with its state and, if occupied, who is in it since when."""
        rows = await _in_tenant(state, tenant, lambda conn: service.bed_board(conn, request.user, ward or None))
        return [WardBoard.model_validate(row) for row in rows]

    @put("/beds/{bed_code:str}/state", operation_id="OperationsSetBedState", opt=_opt("operations.bed.update"))
    async def set_bed_state(self, tenant: FromPath[str], state: State, request: Asking, bed_code: FromPath[str],
                            data: JSONBody[BedStateIn]) -> BedStateOut:
        """Mark a bed cleaned (available), in cleaning, or blocked; an occupied bed changes only by ADT."""
        row = await _in_tenant(state, tenant,
                               lambda conn: service.set_bed_state(conn, request.user, bed_code, data.state))
        return BedStateOut.model_validate(row)

    # -- admission, transfer, discharge ------------------------------------------------------------------

    @post("/admissions", operation_id="OperationsAdmit", opt=_opt("operations.admission.create"))
    async def admit(self, tenant: FromPath[str], state: State, request: Asking,
                    data: JSONBody[AdmissionIn]) -> StayOut:
        """Admit a patient to a bed (the one named or the ward's first available); from the ED when
        `ed_encounter_id` names the visit. 409 when no bed is free or the bed was just taken."""
        fields = data.model_dump(exclude={"patient_id"})
        row = await _in_tenant(state, tenant, lambda conn: adt.admit(conn, request.user, data.patient_id, **fields))
        return StayOut.model_validate(row)

    @post("/patients/{patient_id:uuid}/transfer", operation_id="OperationsTransfer",
          opt=_opt("operations.admission.update"))
    async def transfer(self, tenant: FromPath[str], state: State, request: Asking, patient_id: Id,
                       data: JSONBody[TransferIn]) -> StayOut:
        row = await _in_tenant(state, tenant, lambda conn: adt.transfer(conn, request.user, patient_id,
                                                                        **data.model_dump()))
        return StayOut.model_validate(row)

    @post("/patients/{patient_id:uuid}/discharge", operation_id="OperationsDischarge",
          opt=_opt("operations.admission.update"))
    async def discharge(self, tenant: FromPath[str], state: State, request: Asking, patient_id: Id,
                        data: JSONBody[DischargeIn]) -> StayOut:
        row = await _in_tenant(state, tenant, lambda conn: adt.discharge(conn, request.user, patient_id,
                                                                         **data.model_dump()))
        return StayOut.model_validate(row)

    # -- emergency department ------------------------------------------------------------------------------

    @post("/ed/arrivals", operation_id="OperationsEdArrival", opt=_opt("operations.ed.create"))
    async def ed_arrival(self, tenant: FromPath[str], state: State, request: Asking,
                         data: JSONBody[ArrivalIn]) -> EdVisitOut:
        fields = data.model_dump(exclude={"patient_id"})
        row = await _in_tenant(state, tenant, lambda conn: ed.arrive(conn, request.user, data.patient_id, **fields))
        return EdVisitOut.model_validate(row)

    @get("/ed/visits", operation_id="OperationsEdBoard", opt=_opt("operations.ed.read"))
    async def ed_board(self, tenant: FromPath[str], state: State, request: Asking) -> list[EdVisitOut]:
        """Who is in the emergency department now, most urgent and longest waiting first."""
        rows = await _in_tenant(state, tenant, lambda conn: ed.board(conn, request.user))
        return [EdVisitOut.model_validate(row) for row in rows]

    @post("/ed/visits/{encounter_id:uuid}/triage", operation_id="OperationsEdTriage", opt=_opt("operations.ed.update"))
    async def ed_triage(self, tenant: FromPath[str], state: State, request: Asking, encounter_id: Id,
                        data: JSONBody[TriageIn]) -> EdVisitOut:
        row = await _in_tenant(state, tenant, lambda conn: ed.triage(conn, request.user, encounter_id,
                                                                     acuity=data.acuity, at=data.at))
        return EdVisitOut.model_validate(row)

    @post("/ed/visits/{encounter_id:uuid}/seen", operation_id="OperationsEdSeen", opt=_opt("operations.ed.update"))
    async def ed_seen(self, tenant: FromPath[str], state: State, request: Asking, encounter_id: Id,
                      data: JSONBody[SeenIn]) -> EdVisitOut:
        row = await _in_tenant(state, tenant, lambda conn: ed.seen(conn, request.user, encounter_id, at=data.at))
        return EdVisitOut.model_validate(row)

    @post("/ed/visits/{encounter_id:uuid}/decision", operation_id="OperationsEdDecision",
          opt=_opt("operations.ed.update"))
    async def ed_decision(self, tenant: FromPath[str], state: State, request: Asking, encounter_id: Id,
                          data: JSONBody[DecisionIn]) -> EdVisitOut:
        row = await _in_tenant(state, tenant, lambda conn: ed.decide(conn, request.user, encounter_id,
                                                                     decision=data.decision, at=data.at))
        return EdVisitOut.model_validate(row)

    @post("/ed/visits/{encounter_id:uuid}/departure", operation_id="OperationsEdDeparture",
          opt=_opt("operations.ed.update"))
    async def ed_departure(self, tenant: FromPath[str], state: State, request: Asking, encounter_id: Id,
                           data: JSONBody[DepartureIn]) -> EdVisitOut:
        """The patient leaves the ED (discharged, transferred, left without being seen, left against
        advice, died); an admitted departure is recorded by admitting the patient."""
        row = await _in_tenant(state, tenant, lambda conn: ed.depart(conn, request.user, None, encounter_id,
                                                                     disposition=data.disposition, at=data.at))
        return EdVisitOut.model_validate(row)

    # -- outpatient scheduling -----------------------------------------------------------------------------

    @get("/clinics", operation_id="OperationsListClinics", opt=_opt("operations.schedule.read"))
    async def list_clinics(self, tenant: FromPath[str], state: State) -> list[ClinicOut]:
        rows = await _in_tenant(state, tenant, scheduling.clinics)
        return [ClinicOut.model_validate(row) for row in rows]

    @get("/clinics/{clinic_code:str}/slots", operation_id="OperationsListSlots", opt=_opt("operations.schedule.read"))
    async def list_slots(self, tenant: FromPath[str], state: State, clinic_code: FromPath[str],
                         date: FromQuery[str | None] = None) -> list[SlotOut]:
        """The clinic's slots on a day (default the facility's today), free or taken."""
        day = _day(date, await to_thread.run_sync(facility_timezone, state.db, tenant))
        rows = await _in_tenant(state, tenant, lambda conn: scheduling.slots(conn, clinic_code, day))
        return [SlotOut.model_validate(row) for row in rows]

    @get("/clinics/{clinic_code:str}/appointments", operation_id="OperationsClinicDay",
         opt=_opt("operations.appointment.read"))
    async def clinic_day(self, tenant: FromPath[str], state: State, request: Asking, clinic_code: FromPath[str],
                         date: FromQuery[str | None] = None) -> list[AppointmentOut]:
        day = _day(date, await to_thread.run_sync(facility_timezone, state.db, tenant))
        rows = await _in_tenant(state, tenant,
                                lambda conn: scheduling.day_list(conn, request.user, clinic_code, day))
        return [AppointmentOut.model_validate(row) for row in rows]

    @post("/appointments", operation_id="OperationsBook", opt=_opt("operations.appointment.create"))
    async def book(self, tenant: FromPath[str], state: State, request: Asking,
                   data: JSONBody[BookingIn]) -> AppointmentOut:
        """Book a slot; 409 if it is taken (also when another booking took it a moment ago)."""
        row = await _in_tenant(state, tenant, lambda conn: scheduling.book(conn, request.user, data.patient_id,
                                                                           data.slot_id, data.reason))
        return AppointmentOut.model_validate(row)

    @get("/appointments/cancelled-by-withdrawn-death", operation_id="OperationsAppointmentsToRebook",
         opt=_opt("operations.appointment.read"))
    async def cancelled_by_withdrawn_death(self, tenant: FromPath[str], state: State,
                                           request: Asking) -> list[AppointmentOut]:
        """Appointments cancelled because their person was recorded deceased, whose death certificate has since been
        marked entered in error: nothing was reopened, so these are the desk's to rebook with the patient, soonest
        first (at most 200). Each patient listed is audited as a read."""
        rows = await _in_tenant(state, tenant, lambda conn: deaths.cancelled_by_withdrawn_death(conn, request.user))
        return [AppointmentOut.model_validate(row) for row in rows]

    @post("/appointments/{appointment_id:uuid}/reschedule", operation_id="OperationsReschedule",
          opt=_opt("operations.appointment.update"))
    async def reschedule(self, tenant: FromPath[str], state: State, request: Asking, appointment_id: Id,
                         data: JSONBody[RescheduleIn]) -> AppointmentOut:
        row = await _in_tenant(state, tenant, lambda conn: scheduling.reschedule(
            conn, request.user, appointment_id, data.slot_id, data.reason))
        return AppointmentOut.model_validate(row)

    @post("/appointments/{appointment_id:uuid}/status", operation_id="OperationsChangeAppointment",
          opt=_opt("operations.appointment.update"))
    async def change_appointment(self, tenant: FromPath[str], state: State, request: Asking, appointment_id: Id,
                                 data: JSONBody[AppointmentChangeIn]) -> AppointmentOut:
        """Cancel, check in, or mark a no-show (only once the slot has begun)."""
        row = await _in_tenant(state, tenant, lambda conn: scheduling.change(
            conn, request.user, appointment_id, data.action, data.reason))
        return AppointmentOut.model_validate(row)

    # -- the pharmacy ----------------------------------------------------------------------------------------

    @get("/pharmacy/items", operation_id="OperationsPharmacyStock", opt=_opt("operations.pharmacy.stock.read"))
    async def pharmacy_stock(self, tenant: FromPath[str], state: State,
                             status: FromQuery[Literal["ok", "low", "out"] | None] = None) -> list[PharmacyItemOut]:
        """Every item the pharmacy stocks with its stock on hand by batch (earliest expiry first); `status=low`
        lists those at or below their reorder level, `status=out` those with nothing usable left."""
        today = await to_thread.run_sync(facility_today, state.db, tenant)
        rows = await _in_tenant(state, tenant, lambda conn: pharmacy.stock(conn, today, status))
        return [PharmacyItemOut.model_validate(row) for row in rows]

    @post("/pharmacy/items", operation_id="OperationsPharmacyCreateItem", opt=_opt("operations.pharmacy.item.create"))
    async def pharmacy_create_item(self, tenant: FromPath[str], state: State, request: Asking,
                                   data: JSONBody[PharmacyItemIn]) -> PharmacyItemOut:
        """A medicine the pharmacy stocks, named as prescriptions name it; 409 if it is already stocked."""
        row = await _in_tenant(state, tenant, lambda conn: pharmacy.create_item(conn, request.user,
                                                                                **data.model_dump()))
        return PharmacyItemOut.model_validate(row)

    @get("/pharmacy/items/{item_id:uuid}", operation_id="OperationsPharmacyItem",
         opt=_opt("operations.pharmacy.stock.read"))
    async def pharmacy_item(self, tenant: FromPath[str], state: State, item_id: Id) -> PharmacyItemOut:
        today = await to_thread.run_sync(facility_today, state.db, tenant)
        row = await _in_tenant(state, tenant, lambda conn: pharmacy.item_stock(conn, item_id, today))
        return PharmacyItemOut.model_validate(row)

    @post("/pharmacy/items/{item_id:uuid}/receipts", operation_id="OperationsPharmacyReceive",
          opt=_opt("operations.pharmacy.stock.create"))
    async def pharmacy_receive(self, tenant: FromPath[str], state: State, request: Asking, item_id: Id,
                               data: JSONBody[ReceiptIn]) -> StockMovementOut:
        """Goods received: a batch with its expiry and the delivery's reference."""
        today = await to_thread.run_sync(facility_today, state.db, tenant)
        row = await _in_tenant(state, tenant, lambda conn: pharmacy.receive(conn, request.user, item_id, today=today,
                                                                            **data.model_dump()))
        return StockMovementOut.model_validate(row)

    @post("/pharmacy/items/{item_id:uuid}/adjustments", operation_id="OperationsPharmacyAdjust",
          opt=_opt("operations.pharmacy.stock.update"))
    async def pharmacy_adjust(self, tenant: FromPath[str], state: State, request: Asking, item_id: Id,
                              data: JSONBody[AdjustmentIn]) -> StockMovementOut:
        """A batch's stock corrected: expired or damaged units out, a count's difference in or out (409 below
        nothing)."""
        if data.quantity == 0:
            raise Invalid("an adjustment changes the stock: give a quantity other than 0", field="quantity")
        row = await _in_tenant(state, tenant, lambda conn: pharmacy.adjust(conn, request.user, item_id,
                                                                           **data.model_dump()))
        return StockMovementOut.model_validate(row)

    @get("/pharmacy/queue", operation_id="OperationsPharmacyQueue", opt=_opt("operations.pharmacy.dispense.read"))
    async def pharmacy_queue(self, tenant: FromPath[str], state: State, request: Asking) -> list[QueueItemOut]:
        """Active outpatient prescriptions not yet dispensed in full, today's first, with the items that fill them."""
        _, start = await to_thread.run_sync(facility_today_and_start, state.db, tenant)
        rows = await _in_tenant(state, tenant, lambda conn: pharmacy.queue(conn, request.user, start))
        return [QueueItemOut.model_validate(row) for row in rows]

    @post("/pharmacy/dispenses", operation_id="OperationsPharmacyDispense",
          opt=_opt("operations.pharmacy.dispense.create"))
    async def pharmacy_dispense(self, tenant: FromPath[str], state: State, request: Asking,
                                data: JSONBody[DispenseIn]) -> DispenseOut:
        """Hand over a quantity against a prescription from a batch (the earliest expiry if none is named).
        Without `quantity`, the rest of the course is proposed and handed over: the dose in the item's unit
        (500 mg of a 500 mg capsule is one capsule; a dose in the item's own unit as written) × the doses a day
        the frequency means as the ward's drug round reads it (tds: 3, every 6 hours: 4, weekly: 1/7; stat: a
        single dose) × the days prescribed, rounded up to whole units, less what was already dispensed;
        `quantity_proposed` says so. 422 (field `quantity`) when the course cannot be counted (as needed, no
        duration, a dose in another unit): give the quantity. 409, writing nothing, when the stock is short
        (saying what is left); `partial` keeps it on the queue."""
        today = await to_thread.run_sync(facility_today, state.db, tenant)
        row = await _in_tenant(state, tenant, lambda conn: pharmacy.dispense_medicine(
            conn, request.user, today=today, **data.model_dump()))
        return DispenseOut.model_validate(row)

    @post("/pharmacy/dispenses/{dispense_id:uuid}/reversal", operation_id="OperationsPharmacyReverseDispense",
          opt=_opt("operations.pharmacy.dispense.reverse"))
    async def pharmacy_reverse_dispense(self, tenant: FromPath[str], state: State, request: Asking, dispense_id: Id,
                                        data: JSONBody[DispenseReversalIn]) -> DispenseReversalOut:
        """Reverse a dispense recorded by mistake today, saying why: the dispense is entered in error (the record
        keeps both versions), its quantity goes back into its batch and its charge is credited. 409 if it was
        already reversed, if some of it was brought back, or if it was handed over on an earlier day of the
        facility (record a return of what comes back: of its whole quantity, reason "wrong patient", for one
        recorded on the wrong patient); 404 for a dispense this facility does not hold."""
        _, start = await to_thread.run_sync(facility_today_and_start, state.db, tenant)
        row = await _in_tenant(state, tenant, lambda conn: pharmacy.reverse_dispense(
            conn, request.user, dispense_id, reason=data.reason, today_start=start))
        return DispenseReversalOut.model_validate(row)

    @post("/pharmacy/dispenses/{dispense_id:uuid}/returns", operation_id="OperationsPharmacyReturnDispense",
          opt=_opt("operations.pharmacy.dispense.return"))
    async def pharmacy_return_dispense(self, tenant: FromPath[str], state: State, request: Asking, dispense_id: Id,
                                       data: JSONBody[DispenseReturnIn]) -> DispenseReturnOut:
        """Medicine a patient brings back against a dispense, on any day: the quantity (at most what the dispense
        handed over less what was brought back before: 422 saying how much is still out), its condition (`fit`:
        back into its batch; `not_fit`: quarantined, out of stock; a batch now expired is not fit, 422) and why.
        A record entry of its own; the returned quantity's charge is credited on the patient's account. 409 for
        a dispense reversed or brought back whole; 404 for a dispense this facility does not hold."""
        today = await to_thread.run_sync(facility_today, state.db, tenant)
        row = await _in_tenant(state, tenant, lambda conn: pharmacy.return_dispense(
            conn, request.user, dispense_id, today=today, **data.model_dump()))
        return DispenseReturnOut.model_validate(row)

    @get("/patients/{patient_id:uuid}/dispenses", operation_id="OperationsPharmacyHistory",
         opt=_opt("operations.pharmacy.dispense.read"))
    async def pharmacy_history(self, tenant: FromPath[str], state: State, request: Asking,
                               patient_id: Id) -> list[DispenseHistoryOut]:
        """What the pharmacy handed this patient, latest first."""
        rows = await _in_tenant(state, tenant, lambda conn: pharmacy.dispensing_history(conn, request.user,
                                                                                        patient_id))
        return [DispenseHistoryOut.model_validate(row) for row in rows]

    # -- command center ------------------------------------------------------------------------------------

    @get("/command-center", operation_id="OperationsCommandCenter", opt=_opt("operations.kpi.read"))
    async def command_center(self, tenant: FromPath[str], state: State) -> CommandCenterOut:
        """The eight KPIs and the companion figures now, with targets and 14-day trends, and the admitted patients
        expected home today, tomorrow and overdue per ward: the figures the command center page shows, computed from
        the live record on every call."""
        document = await to_thread.run_sync(command_center_json, state.db, state, tenant)
        return CommandCenterOut.model_validate({**document, "kpis": [KpiOut.model_validate(k)
                                                                     for k in document["kpis"]]})

    @get("/command-center/{kpi_id:str}/entries", operation_id="OperationsKpiEntries",
         opt=_opt("operations.kpi.drilldown"))
    async def kpi_entries(self, tenant: FromPath[str], state: State, request: Asking, kpi_id: FromPath[str],
                          day: FromQuery[str | None] = None) -> DrillDownOut:
        """The entries behind a KPI's value now, or behind one day of its trend (`day=YYYY-MM-DD`)."""
        definition = command_center.definition_of(kpi_definitions(state), kpi_id)
        tz = await to_thread.run_sync(facility_timezone, state.db, tenant)
        on = _day(day, tz, "day") if day else None
        drilled = await _in_tenant(state, tenant, lambda conn: command_center.drilldown(
            conn, request.user, definition, tz=tz, day=on))
        return DrillDownOut.model_validate(drilled)
