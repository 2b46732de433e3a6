"""HTTP routes of an admission's expected discharge date (appliance/layers/operations/discharge_plan.py), under
/api/t/{tenant}/patients/{patient_id}/expected-discharge: set or changed by a clinician or a nurse
(`operations.discharge_plan.write`, ACC-037), read with its history by whoever sees the bed board
(`operations.bed.read`). Refusals are the operations API's."""

from __future__ import annotations

import uuid
from typing import Any

from litestar import Controller, Request, get, put
from litestar.datastructures import State
from litestar.params import FromPath, JSONBody

from appliance.layers.operations import discharge_plan
from appliance.layers.operations.routes import OperationsController
from appliance.layers.operations.schemas import ExpectedDischargeHistory, ExpectedDischargeIn, ExpectedDischargeOut
from appliance.substrate.principal import Principal

Asking = Request[Principal, Any, Any]


class DischargePlanController(Controller):
    path = "/api/t/{tenant:str}/patients/{patient_id:uuid}/expected-discharge"
    tags = ["operations"]
    exception_handlers = OperationsController.exception_handlers

    @put("/", operation_id="OperationsSetExpectedDischarge", opt={"permission": discharge_plan.PERMISSION},
         sync_to_thread=True)
    def set_expected(self, tenant: FromPath[str], state: State, request: Asking, patient_id: FromPath[uuid.UUID],
                     data: JSONBody[ExpectedDischargeIn]) -> ExpectedDischargeOut:
        """Set or change the day the admitted patient is expected home: a new version of the stay's expected
        discharge date, the one before kept in its history. 422 for a day before the admission (the facility's
        calendar) or more than a year ahead, or the date already set; 403 for a ward-scoped nurse's patient of
        another ward; 404 for a patient not admitted here."""
        with state.db.tenant(tenant) as conn:
            return ExpectedDischargeOut.model_validate(discharge_plan.set_expected(
                conn, request.user, patient_id, expected_on=data.expected_on, note=data.note))

    @get("/", operation_id="OperationsExpectedDischarge", opt={"permission": "operations.bed.read"},
         sync_to_thread=True)
    def expected(self, tenant: FromPath[str], state: State, request: Asking,
                 patient_id: FromPath[uuid.UUID]) -> ExpectedDischargeHistory:
        """The admitted patient's expected discharge date now and every version of it in this stay, oldest first,
        with who set each and when. 404 for a patient not admitted here."""
        with state.db.tenant(tenant) as conn:
            return ExpectedDischargeHistory.model_validate(discharge_plan.history(conn, request.user, patient_id))
