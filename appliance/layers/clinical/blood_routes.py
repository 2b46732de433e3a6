"""HTTP routes of the blood bank (appliance/layers/clinical/blood.py).

Requesting blood, cancelling a request and reading a patient's group and requests are chart routes, under
/api/t/{tenant}/patients/{patient_id}/blood, behind the care-relationship guard as the chart's are. The blood
bank's own work is unit- and request-scoped, under /api/t/{tenant}/blood: the stock, receiving and discarding
units, the requests to crossmatch, reserving a unit for one, releasing it, issuing it to the ward. The laboratory
works them for the facility as it works its bench (policies/access.toml ACC-029), so these routes open no chart;
each answers with the unit or the request and the patient's label only, audited on the patient's record. Refusals
are the clinical API's: 404 for a unit or request not at this facility, 409 for a unit not in a state to take the
act, 422 naming the field at fault (an incompatible, expired or wrong unit), with nothing written.
"""

from __future__ import annotations

import uuid
from typing import Any

from litestar import Controller, Request, get, post
from litestar.datastructures import State
from litestar.params import FromPath, JSONBody
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED

from appliance.layers.clinical import blood
from appliance.layers.clinical.blood_schemas import (
    BloodRequestIn,
    BloodRequestOut,
    BloodUnitIn,
    BloodUnitOut,
    CancelRequestIn,
    DiscardIn,
    NewBloodRequestOut,
    PatientBloodOut,
    ReleaseIn,
    ReservationIn,
    StockOut,
)
from appliance.layers.clinical.routes import PATIENT, ClinicalController, _opt, _tenant, care_relationship_guard
from appliance.substrate.principal import Principal
from appliance.substrate.tenancy import facility_today

Asking = Request[Principal, Any, Any]
Id = FromPath[uuid.UUID]
READ, STOCK, CROSSMATCH, REQUEST = ("clinical.blood.read", "clinical.blood.stock", "clinical.blood.crossmatch",
                                    "clinical.blood.request")


class PatientBloodController(Controller):
    path = "/api/t/{tenant:str}" + PATIENT + "/blood"
    tags = ["blood bank"]
    guards = [care_relationship_guard]
    exception_handlers = ClinicalController.exception_handlers

    @get("/", operation_id="ClinicalGetPatientBlood", opt=_opt("clinical.result.read"), sync_to_thread=True)
    def patient_blood(self, tenant: FromPath[str], state: State, request: Asking, patient_id: Id) -> PatientBloodOut:
        """The patient's blood group as the laboratory recorded it (LOINC 882-1; a conflict between two groupings
        said in words) and their requests for blood, each with the units reserved, issued or transfused for it."""
        today = facility_today(state.db, tenant)
        with _tenant(state, request, tenant) as conn:
            return PatientBloodOut.model_validate(blood.patient_blood(conn, request.user, patient_id, today=today))

    @post("/requests", operation_id="ClinicalRequestBlood", opt=_opt(REQUEST), sync_to_thread=True,
          status_code=HTTP_201_CREATED)
    def request_blood(self, tenant: FromPath[str], state: State, request: Asking, patient_id: Id,
                      data: JSONBody[BloodRequestIn]) -> NewBloodRequestOut:
        """Ask the blood bank for units of a component for the patient, with the indication and the urgency (a
        `blood_request` entry). The blood bank crossmatches against the patient's recorded group."""
        with _tenant(state, request, tenant) as conn:
            return NewBloodRequestOut.model_validate(blood.request_blood(conn, request.user, patient_id, data))

    @post("/requests/{request_id:uuid}/cancel", operation_id="ClinicalCancelBloodRequest", opt=_opt(REQUEST),
          sync_to_thread=True, status_code=HTTP_200_OK)
    def cancel_request(self, tenant: FromPath[str], state: State, request: Asking, patient_id: Id, request_id: Id,
                       data: JSONBody[CancelRequestIn]) -> BloodRequestOut:
        """Cancel the patient's request for blood, with why (the operation called off): each unit reserved for it
        goes back to stock, its history saying so. Refused with nothing written: a unit of it issued to the ward
        (return it to the blood bank first) or transfused, or cancelled already (409); a request not of this
        patient (404)."""
        today = facility_today(state.db, tenant)
        with _tenant(state, request, tenant) as conn:
            return BloodRequestOut.model_validate(blood.cancel_request(conn, request.user, patient_id, request_id,
                                                                       data.reason, today=today))


class BloodBankController(Controller):
    path = "/api/t/{tenant:str}/blood"
    tags = ["blood bank"]
    exception_handlers = ClinicalController.exception_handlers

    @get("/units", operation_id="ClinicalBloodStock", opt={"permission": READ}, sync_to_thread=True)
    def stock(self, tenant: FromPath[str], state: State, request: Asking) -> StockOut:
        """The units in the blood bank (available, reserved, expired not yet discarded), soonest to expire first,
        those expiring within 3 days flagged, and the available units counted by component and group."""
        today = facility_today(state.db, tenant)
        with state.db.tenant(tenant) as conn:
            return StockOut.model_validate(blood.stock(conn, request.user, today=today))

    @post("/units", operation_id="ClinicalReceiveBloodUnit", opt={"permission": STOCK}, sync_to_thread=True,
          status_code=HTTP_201_CREATED)
    def receive(self, tenant: FromPath[str], state: State, request: Asking,
                data: JSONBody[BloodUnitIn]) -> BloodUnitOut:
        """Take a unit into stock: its number, component, ABO and RhD group, volume, collection and expiry dates.
        A number already in the bank: 409; an expired unit or a collection still to come: 422."""
        today = facility_today(state.db, tenant)
        with state.db.tenant(tenant) as conn:
            return BloodUnitOut.model_validate(blood.receive_unit(conn, request.user, data, today=today))

    @get("/units/{unit_id:uuid}", operation_id="ClinicalGetBloodUnit", opt={"permission": READ}, sync_to_thread=True)
    def get_unit(self, tenant: FromPath[str], state: State, request: Asking, unit_id: Id) -> BloodUnitOut:
        """One unit where it stands, with the patient it is reserved, issued or transfused for."""
        today = facility_today(state.db, tenant)
        with state.db.tenant(tenant) as conn:
            return BloodUnitOut.model_validate(blood.unit(conn, request.user, unit_id, today=today))

    @post("/units/{unit_id:uuid}/discard", operation_id="ClinicalDiscardBloodUnit", opt={"permission": STOCK},
          sync_to_thread=True, status_code=HTTP_200_OK)
    def discard(self, tenant: FromPath[str], state: State, request: Asking, unit_id: Id,
                data: JSONBody[DiscardIn]) -> BloodUnitOut:
        """Take a unit out of stock for good, with the reason. Issued, transfused or discarded already: 409."""
        today = facility_today(state.db, tenant)
        with state.db.tenant(tenant) as conn:
            return BloodUnitOut.model_validate(blood.discard_unit(conn, request.user, unit_id, data.reason,
                                                                  today=today))

    @post("/units/{unit_id:uuid}/release", operation_id="ClinicalReleaseBloodUnit",
          opt={"permission": CROSSMATCH}, sync_to_thread=True, status_code=HTTP_200_OK)
    def release(self, tenant: FromPath[str], state: State, request: Asking, unit_id: Id,
                data: JSONBody[ReleaseIn]) -> BloodUnitOut:
        """A reserved unit, or an issued one the ward returned unused, back to stock, with why. Transfused,
        discarded or in stock already: 409."""
        today = facility_today(state.db, tenant)
        with state.db.tenant(tenant) as conn:
            return BloodUnitOut.model_validate(blood.release(conn, request.user, unit_id, data.reason, today=today))

    @post("/units/{unit_id:uuid}/issue", operation_id="ClinicalIssueBloodUnit", opt={"permission": CROSSMATCH},
          sync_to_thread=True, status_code=HTTP_200_OK)
    def issue(self, tenant: FromPath[str], state: State, request: Asking, unit_id: Id) -> BloodUnitOut:
        """A reserved unit leaves the blood bank for the patient's ward, issued by the caller now. Not reserved:
        409; expired since: 422."""
        today = facility_today(state.db, tenant)
        with state.db.tenant(tenant) as conn:
            return BloodUnitOut.model_validate(blood.issue(conn, request.user, unit_id, today=today))

    @get("/requests", operation_id="ClinicalBloodRequests", opt={"permission": READ}, sync_to_thread=True)
    def requests(self, tenant: FromPath[str], state: State, request: Asking) -> list[BloodRequestOut]:
        """The requests of the last fortnight with units still to issue or a unit issued and not yet started,
        emergencies first, then urgent, then oldest: the patient's label and recorded group, and the units reserved
        or issued. Each patient listed is audited as read."""
        today = facility_today(state.db, tenant)
        with state.db.tenant(tenant) as conn:
            return [BloodRequestOut.model_validate(r) for r in blood.open_requests(conn, request.user, today=today)]

    @get("/requests/{request_id:uuid}", operation_id="ClinicalGetBloodRequest", opt={"permission": READ},
         sync_to_thread=True)
    def get_request(self, tenant: FromPath[str], state: State, request: Asking, request_id: Id) -> BloodRequestOut:
        """One request with its patient's recorded group and its units."""
        today = facility_today(state.db, tenant)
        with state.db.tenant(tenant) as conn:
            return BloodRequestOut.model_validate(blood.one_request(conn, request.user, request_id, today=today))

    @post("/requests/{request_id:uuid}/reservations", operation_id="ClinicalReserveBloodUnit",
          opt={"permission": CROSSMATCH}, sync_to_thread=True, status_code=HTTP_200_OK)
    def reserve(self, tenant: FromPath[str], state: State, request: Asking, request_id: Id,
                data: JSONBody[ReservationIn]) -> BloodRequestOut:
        """Reserve a unit for the request after the crossmatch. Refused with nothing written: a unit not
        compatible with the patient's recorded group (ABO and RhD, by component), expired, of another component,
        not available (409), or a patient with no recorded group, unless the unit is one any group may receive
        (group O RhD-negative red cells, group AB plasma, group AB RhD-negative platelets) and `emergency_reason`
        says why it is issued uncrossmatched (flagged as emergency)."""
        today = facility_today(state.db, tenant)
        with state.db.tenant(tenant) as conn:
            return BloodRequestOut.model_validate(blood.reserve(
                conn, request.user, request_id, data.unit_number, data.emergency_reason, today=today))
