"""HTTP routes of the deaths still to certify at a facility (appliance/layers/operations/deaths.py), under
/api/t/{tenant}/deaths/to-certify: the clinicians' list (`clinical.death.read`), which the operations layer
answers because the stays and ED visits that ended `died` are its own, and the correction of one recorded as died by
mistake (`clinical.entry.retract`). Refusals are the operations API's."""

from __future__ import annotations

import uuid
from typing import Any

from litestar import Controller, Request, get, post
from litestar.datastructures import State
from litestar.params import FromPath, JSONBody

from appliance.layers.operations import deaths
from appliance.layers.operations.routes import OperationsController
from appliance.layers.operations.schemas import DeathToCertify, DiedDepartureCorrected, DiedDepartureCorrectionIn
from appliance.substrate.principal import Principal

Asking = Request[Principal, Any, Any]


class DeathsToCertifyController(Controller):
    path = "/api/t/{tenant:str}/deaths"
    tags = ["operations"]
    exception_handlers = OperationsController.exception_handlers

    @get("/to-certify", operation_id="OperationsListDeathsToCertify", opt={"permission": "clinical.death.read"},
         sync_to_thread=True)
    def to_certify(self, tenant: FromPath[str], state: State, request: Asking) -> list[DeathToCertify]:
        """Stays and ED visits here that ended with disposition `died` whose person has no death certificate in
        force (here or at another facility), latest first. Each patient listed is audited as a read."""
        with state.db.tenant(tenant) as conn:
            return [DeathToCertify.model_validate(row) for row in deaths.to_certify(conn, request.user)]

    @post("/to-certify/{encounter_id:uuid}/correction", operation_id="OperationsCorrectDiedDeparture",
          opt={"permission": "clinical.entry.retract"}, sync_to_thread=True, status_code=200)
    def correct(self, tenant: FromPath[str], state: State, request: Asking, encounter_id: FromPath[uuid.UUID],
                data: JSONBody[DiedDepartureCorrectionIn]) -> DiedDepartureCorrected:
        """The stay or ED visit `encounter_id` of the patient ended `died` by mistake: its discharge or departure is
        corrected to how they left, with the reason (a new version; the history keeps 'died'), and it leaves the
        deaths to certify. Refused (409) while a death certificate is in force for the patient; another patient's
        visit, a guessed one or one corrected already is not found (404)."""
        with state.db.tenant(tenant) as conn:
            return DiedDepartureCorrected.model_validate(deaths.correct_died_departure(
                conn, request.user, data.patient_id, encounter_id, disposition=data.disposition, reason=data.reason))
