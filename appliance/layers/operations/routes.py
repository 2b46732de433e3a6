"""HTTP routes of the operations layer, under /api/t/{tenant}/."""

from __future__ import annotations

from litestar import Controller, get
from litestar.datastructures import State
from litestar.params import FromPath

from appliance.layers.operations.schemas import WardCensus
from appliance.layers.operations.service import ward_census


class OperationsController(Controller):
    path = "/api/t/{tenant:str}"
    tags = ["operations"]

    @get("/wards", operation_id="OperationsListWards", opt={"permission": "operations.ward.read"},
         sync_to_thread=True)
    def list_wards(self, tenant: FromPath[str], state: State) -> list[WardCensus]:
        """Each active ward of the facility with its beds by state."""
        with state.db.tenant(tenant) as conn:
            return [WardCensus.model_validate(row) for row in ward_census(conn)]
