"""HTTP route of the deaths still to certify at a facility (appliance/layers/operations/deaths.py), under
/api/t/{tenant}/deaths/to-certify: the clinicians' list (`clinical.death.read`), which the operations layer
answers because the stays and ED visits that ended `died` are its own. Refusals are the operations API's."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get
from litestar.datastructures import State
from litestar.params import FromPath

from appliance.layers.operations import deaths
from appliance.layers.operations.routes import OperationsController
from appliance.layers.operations.schemas import DeathToCertify
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
