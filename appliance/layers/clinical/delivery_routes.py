"""HTTP routes of births (appliance/layers/clinical/delivery.py), under
/api/t/{tenant}/patients/{patient_id}/deliveries.

A delivery is part of the mother's chart: each route passes the care-relationship guard (or a stated
break-the-glass reason) and opens the route's tenant transaction as the chart's routes do (`routes._tenant`).
Recording one registers each live-born baby: the delivery is checked first, in a transaction that writes
nothing, so a refused delivery leaves no one-identity person behind; then each baby's person is made as
registration makes it (`service.with_subject`, its own control transaction), then the delivery and the babies'
charts are written in one transaction. Refusals are the clinical API's: 404 for a patient or delivery not at
this facility, 409 for a stale correction, 422 naming the field at fault, with nothing written. A delivery on the
wrong woman is marked entered in error on its own route, which sees to its babies' charts.
"""

from __future__ import annotations

import uuid
from typing import Any

from litestar import Controller, Request, get, post, put
from litestar.datastructures import State
from litestar.params import FromPath, JSONBody
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED

from appliance.layers.clinical import delivery, service
from appliance.layers.clinical.routes import PATIENT, ClinicalController, _opt, _tenant, care_relationship_guard
from appliance.layers.clinical.schemas import (
    Deliveries,
    DeliveryCorrection,
    DeliveryEnteredInError,
    DeliveryIn,
    DeliveryOut,
    DeliveryWithdrawn,
)
from appliance.substrate.principal import Principal

Asking = Request[Principal, Any, Any]
Id = FromPath[uuid.UUID]


def record(state: State, request: Asking, tenant: str, patient_id: uuid.UUID, data: DeliveryIn) -> dict:
    """Check, make each live-born baby's one-identity person, then write: what the API and the portal's form do."""
    with _tenant(state, request, tenant) as conn:
        mother = delivery.check(conn, patient_id, data)
        linked = [service.with_subject(state.db, baby, tenant=tenant, chart_conn=conn)
                  for baby in delivery.newborns(mother, data)]
        return delivery.record_delivery(conn, request.user, patient_id, data, linked)


def correct(state: State, request: Asking, tenant: str, patient_id: uuid.UUID, delivery_id: uuid.UUID,
            data: DeliveryCorrection) -> dict:
    """Correct the delivery `delivery_id` from its version `data.version_id` (which must be one of its own)."""
    with _tenant(state, request, tenant) as conn:
        return delivery.correct(conn, request.user, patient_id, data.version_id,
                                DeliveryIn.model_validate(data.model_dump(exclude={"reason", "version_id"})),
                                data.reason, delivery_id=delivery_id)


class DeliveryController(Controller):
    path = "/api/t/{tenant:str}" + PATIENT + "/deliveries"
    tags = ["clinical"]
    guards = [care_relationship_guard]
    exception_handlers = ClinicalController.exception_handlers

    @get("/", operation_id="ClinicalListDeliveries", opt=_opt("clinical.delivery.read"), sync_to_thread=True)
    def list_deliveries(self, tenant: FromPath[str], state: State, request: Asking, patient_id: Id) -> Deliveries:
        """The mother's deliveries in force, latest first, each baby with its chart; for a baby's chart, the
        delivery it was born of and its mother (`born_to`)."""
        with _tenant(state, request, tenant) as conn:
            return Deliveries.model_validate(delivery.read(conn, request.user, patient_id))

    @post("/", operation_id="ClinicalRecordDelivery", opt=_opt("clinical.delivery.write"), sync_to_thread=True,
          status_code=HTTP_201_CREATED)
    def record_delivery(self, tenant: FromPath[str], state: State, request: Asking, patient_id: Id,
                        data: JSONBody[DeliveryIn]) -> DeliveryOut:
        """Record a delivery on the mother's record. Each live-born baby is registered as a patient here ("Baby of
        <family name>" until named, the mother its next of kin) with its birth weight on its chart; a stillborn
        baby is recorded on the delivery only. Without `encounter_id`, the delivery belongs to the mother's open
        stay, if she has one."""
        return DeliveryOut.model_validate(record(state, request, tenant, patient_id, data))

    @get("/{delivery_id:uuid}", operation_id="ClinicalGetDelivery", opt=_opt("clinical.delivery.read"),
         sync_to_thread=True)
    def get_delivery(self, tenant: FromPath[str], state: State, request: Asking, patient_id: Id,
                     delivery_id: Id) -> DeliveryOut:
        with _tenant(state, request, tenant) as conn:
            return DeliveryOut.model_validate(delivery.get_delivery(conn, request.user, patient_id, delivery_id))

    @put("/{delivery_id:uuid}", operation_id="ClinicalCorrectDelivery", opt=_opt("clinical.delivery.write"),
         sync_to_thread=True)
    def correct_delivery(self, tenant: FromPath[str], state: State, request: Asking, patient_id: Id,
                         delivery_id: Id, data: JSONBody[DeliveryCorrection]) -> DeliveryOut:
        """Correct the delivery, saying why; send `version_id`, the delivery's `id` you loaded, to be refused (409)
        if someone corrected it meanwhile. It may not change how many babies were born, which were born alive, a
        live-born baby's sex or the day of birth (the babies' registrations): those are refused (422)."""
        return DeliveryOut.model_validate(correct(state, request, tenant, patient_id, delivery_id, data))

    @post("/{delivery_id:uuid}/entered-in-error", operation_id="ClinicalMarkDeliveryEnteredInError",
          opt=_opt("clinical.delivery.write"), sync_to_thread=True, status_code=HTTP_200_OK)
    def delivery_entered_in_error(self, tenant: FromPath[str], state: State, request: Asking, patient_id: Id,
                                  delivery_id: Id, data: JSONBody[DeliveryEnteredInError]) -> DeliveryWithdrawn:
        """Mark a delivery recorded on the wrong woman (or twice) entered in error, saying why. Its live-born babies
        keep their charts, no longer born to her nor beside her on her ward; `next_steps` says what to do next:
        record the delivery on the right mother naming each baby's chart (`babies[].patient_id`)."""
        with _tenant(state, request, tenant) as conn:
            return DeliveryWithdrawn.model_validate(delivery.enter_in_error(conn, request.user, patient_id,
                                                                            delivery_id, data.reason))
