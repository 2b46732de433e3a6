"""HTTP routes of the laboratory bench (appliance/layers/clinical/lab.py), under /api/t/{tenant}/lab/.

Order-scoped, not patient-scoped: the laboratory works the facility's lab orders and sees of each patient
what matches a specimen's label (policies/access.toml ACC-021), so no route here opens a chart or passes
the care-relationship guard, and none answers with more than the order, its state and its results. Each
opens one tenant transaction; refusals are the clinical API's (`ClinicalController`'s handlers): 404 for an
order or result not at this facility, 409 for one not in a state to take the act, 422 naming the field (or
the panel's component) at fault, with nothing written.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from litestar import Controller, Request, get, post
from litestar.datastructures import State
from litestar.params import FromPath, JSONBody, QueryParameter
from litestar.status_codes import HTTP_200_OK

from appliance.layers.clinical import lab
from appliance.layers.clinical.routes import ClinicalController
from appliance.layers.clinical.schemas import (
    BenchResultsIn,
    LabOrderOut,
    LabState,
    LabWorklistOut,
    ResultCorrectionIn,
    SpecimenReceiptIn,
    SpecimenRejectionIn,
)
from appliance.substrate.principal import Principal
from appliance.substrate.tenancy import facility_today

Asking = Request[Principal, Any, Any]
Id = FromPath[uuid.UUID]


class LabController(Controller):
    path = "/api/t/{tenant:str}/lab"
    tags = ["laboratory"]
    exception_handlers = ClinicalController.exception_handlers

    @get("/orders", operation_id="ClinicalLabWorklist", opt={"permission": "clinical.lab.read"}, sync_to_thread=True)
    def worklist(self, tenant: FromPath[str], state: State, request: Asking,
                 order_state: Annotated[LabState | None, QueryParameter(name="state", description=(
                     "Keep one state: `awaiting_specimen`, `specimen_received`, or `resulted` (results waiting "
                     "for a clinician's sign-off); or `signed_off`, every result of them signed off, for "
                     f"{lab.RESULTED_SHOWN_DAYS} days after the last (for corrections). Without it, every open "
                     "order."))] = None) -> LabWorklistOut:
        """The facility's open lab orders, those still to work (a specimen to receive, results to enter) before
        those resulted, then STAT, urgent, routine, oldest first within each: the
        patient (name, MRN, sex, age), the test, who ordered it, when and where, and its state, with the
        results of a resulted one. Counts cover every state and those signed off. Each patient listed is audited
        as read."""
        today = facility_today(state.db, tenant)
        with state.db.tenant(tenant) as conn:
            return LabWorklistOut.model_validate(lab.worklist(conn, request.user, today=today, state=order_state))

    @get("/orders/{order_id:uuid}", operation_id="ClinicalLabGetOrder", opt={"permission": "clinical.lab.read"},
         sync_to_thread=True)
    def get_order(self, tenant: FromPath[str], state: State, request: Asking, order_id: Id) -> LabOrderOut:
        """One lab order as the bench sees it, with its test's components (unit, reference range, choices)."""
        today = facility_today(state.db, tenant)
        with state.db.tenant(tenant) as conn:
            return LabOrderOut.model_validate(lab.bench_order(conn, request.user, order_id, today=today))

    @post("/orders/{order_id:uuid}/receipt", operation_id="ClinicalLabReceiveSpecimen",
          opt={"permission": "clinical.lab.receive"}, sync_to_thread=True, status_code=HTTP_200_OK)
    def receive(self, tenant: FromPath[str], state: State, request: Asking, order_id: Id,
                data: JSONBody[SpecimenReceiptIn]) -> LabOrderOut:
        """Record that the order's specimen reached the laboratory, received by the caller now (a
        `specimen_receipt` entry on the patient's record). Received already, or resulted: 409."""
        today = facility_today(state.db, tenant)
        with state.db.tenant(tenant) as conn:
            return LabOrderOut.model_validate(
                lab.receive_specimen(conn, request.user, order_id, note=data.note, today=today))

    @post("/orders/{order_id:uuid}/rejection", operation_id="ClinicalLabRejectSpecimen",
          opt={"permission": "clinical.lab.receive"}, sync_to_thread=True, status_code=HTTP_200_OK)
    def reject(self, tenant: FromPath[str], state: State, request: Asking, order_id: Id,
               data: JSONBody[SpecimenRejectionIn]) -> LabOrderOut:
        """The specimen received cannot be tested (haemolysed, clotted, unlabelled): its receipt is entered in
        error with the reason, the order awaits a specimen again and the ward is asked to collect another.
        Nothing received, or tested already: 409."""
        today = facility_today(state.db, tenant)
        with state.db.tenant(tenant) as conn:
            return LabOrderOut.model_validate(
                lab.reject_specimen(conn, request.user, order_id, reason=data.reason, today=today))

    @post("/orders/{order_id:uuid}/results", operation_id="ClinicalLabEnterResults",
          opt={"permission": "clinical.lab.result"}, sync_to_thread=True, status_code=HTTP_200_OK)
    def enter_results(self, tenant: FromPath[str], state: State, request: Asking, order_id: Id,
                      data: JSONBody[BenchResultsIn]) -> LabOrderOut:
        """The results of an order whose specimen was received, each component of its test by LOINC code,
        all in one act: each is read against the catalogue (unit, range, choices) and flagged (L, H, LL,
        HH beyond the critical limits, A for an abnormal choice), and waits for a clinician's sign-off on
        their review list. One value refused: 422 naming the component, and nothing is recorded."""
        today = facility_today(state.db, tenant)
        with state.db.tenant(tenant) as conn:
            return LabOrderOut.model_validate(lab.enter_results(conn, request.user, order_id, data, today=today))

    @post("/results/{result_id:uuid}/correction", operation_id="ClinicalLabCorrectResult",
          opt={"permission": "clinical.lab.result"}, sync_to_thread=True, status_code=HTTP_200_OK)
    def correct_result(self, tenant: FromPath[str], state: State, request: Asking, result_id: Id,
                       data: JSONBody[ResultCorrectionIn]) -> LabOrderOut:
        """Correct the value of the current version of a lab order's result, with the reason: its next
        version, flagged again, waits for review again (the corrected one stays in its history). Returns the
        order. A version corrected since: 409."""
        today = facility_today(state.db, tenant)
        with state.db.tenant(tenant) as conn:
            return LabOrderOut.model_validate(lab.correct_result(conn, request.user, result_id, data, today=today))
