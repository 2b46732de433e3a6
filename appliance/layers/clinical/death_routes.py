"""HTTP routes of death certification (appliance/layers/clinical/death.py), under
/api/t/{tenant}/patients/{patient_id}/death.

A certificate is part of one patient's chart: each route passes the care-relationship guard (or a stated
break-the-glass reason) as the chart's routes do, and opens the route's tenant transaction the same way
(`routes._tenant`). Refusals are the clinical API's: 404 for a patient not at this facility, 409 for a
second certificate or a stale correction, 422 naming the field at fault, with nothing written. Marking the
certificate entered in error is `.../death/entered-in-error`, which answers with what the certificate had closed
(the chart's generic `.../entries/{entry_id}/entered-in-error` sends a death here, as it sends a delivery to its own).
"""

from __future__ import annotations

import uuid
from typing import Any

import sqlalchemy as sa
from litestar import Controller, Request, get, post, put
from litestar.datastructures import State
from litestar.params import FromPath, JSONBody
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED

from appliance.layers.clinical import death, service
from appliance.layers.clinical.models import patient
from appliance.layers.clinical.routes import PATIENT, ClinicalController, _opt, _tenant, care_relationship_guard
from appliance.layers.clinical.schemas import (
    DeathCorrection,
    DeathIn,
    DeathOut,
    DeathState,
    DeathWithdrawalOut,
    Retraction,
)
from appliance.substrate.principal import Principal

Asking = Request[Principal, Any, Any]
Id = FromPath[uuid.UUID]


def link_to_person(state: State, request: Asking, tenant: str, patient_id: uuid.UUID) -> None:
    """A chart registered before subjects were matched is linked to its person first (its own transactions,
    `service.subject_of`): a death is marked against the person. The chart is opened with the route's care
    decision before anything else is done with it."""
    with _tenant(state, request, tenant) as conn:
        service.require_patient(conn, patient_id)
        linked = conn.execute(sa.select(patient.c.subject_id).where(patient.c.id == patient_id)).scalar()
    if linked is None:
        service.subject_of(state.db, tenant, request.user, patient_id)


class DeathController(Controller):
    path = "/api/t/{tenant:str}" + PATIENT + "/death"
    tags = ["clinical"]
    guards = [care_relationship_guard]
    exception_handlers = ClinicalController.exception_handlers

    @get("/", operation_id="ClinicalGetDeath", opt=_opt("clinical.death.read"), sync_to_thread=True)
    def get_death(self, tenant: FromPath[str], state: State, request: Asking, patient_id: Id) -> DeathState:
        """This facility's death certificate for the patient, if any, and whether the person is recorded deceased
        by any facility (when, and where it was certified)."""
        with _tenant(state, request, tenant) as conn:
            return DeathState.model_validate(death.state(conn, request.user, patient_id))

    @post("/", operation_id="ClinicalCertifyDeath", opt=_opt("clinical.death.write"), sync_to_thread=True,
          status_code=HTTP_201_CREATED)
    def certify(self, tenant: FromPath[str], state: State, request: Asking, patient_id: Id,
                data: JSONBody[DeathIn]) -> DeathOut:
        """Certify the patient's death on the WHO form; the caller is the certifier. The person is then deceased at
        every facility: a visit, an admission or a booking for them is refused (422). Their appointments from
        the time of death are cancelled and their open outpatient and emergency visits ended; an admitted patient
        is discharged by the bed manager (disposition `died`). A second certificate is refused (409)."""
        link_to_person(state, request, tenant, patient_id)
        with _tenant(state, request, tenant) as conn:
            return DeathOut.model_validate(death.certify(conn, request.user, patient_id, data))

    @put("/", operation_id="ClinicalCorrectDeath", opt=_opt("clinical.death.write"), sync_to_thread=True)
    def correct(self, tenant: FromPath[str], state: State, request: Asking, patient_id: Id,
                data: JSONBody[DeathCorrection]) -> DeathOut:
        """Correct the certificate, saying why; send `version_id`, the certificate's `id` you loaded, to be
        refused (409) if someone corrected it meanwhile. The earlier version stays in its history."""
        with _tenant(state, request, tenant) as conn:
            return DeathOut.model_validate(death.correct(
                conn, request.user, patient_id, data.version_id,
                DeathIn.model_validate(data.model_dump(exclude={"reason", "version_id"})), data.reason))

    @post("/entered-in-error", operation_id="ClinicalWithdrawDeath", opt=_opt("clinical.entry.retract"),
          sync_to_thread=True, status_code=HTTP_200_OK)
    def withdraw(self, tenant: FromPath[str], state: State, request: Asking, patient_id: Id,
                 data: JSONBody[Retraction]) -> DeathWithdrawalOut:
        """Mark this facility's certificate entered in error (written on the wrong patient), with the reason: the
        person is no longer recorded deceased anywhere; the certificate stays in its history. What it closed is not
        reopened: the answer lists the appointments it cancelled (day and clinic) and the visits it cancelled or
        ended, for a clerk to rebook. No certificate in force here: 404."""
        with _tenant(state, request, tenant) as conn:
            return DeathWithdrawalOut.model_validate(death.withdraw(conn, request.user, patient_id, data.reason))
