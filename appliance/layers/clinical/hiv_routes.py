"""HTTP routes of HIV care and treatment (appliance/layers/clinical/hiv.py), under /api/t/{tenant}/: a person's HIV
care card, enrolment, ART initiation and regimen changes, visits and ARV pick-ups, viral loads, the status in care,
withdrawal, and the facility's ART register with the people to trace.

The person's routes pass the care-relationship guard as the rest of the chart does: a ward nurse reads the card of a
patient in her ward only, anyone else states a reason (break-the-glass), which the patient sees. Permissions:
`clinical.hiv.read` to read a card, `clinical.hiv.write` to enrol, start or change ART, record a viral load or a
status, and withdraw (clinicians, ACC-002), `clinical.hiv.visit` to record a visit or pick-up (clinicians, and nurses
by ACC-032), `clinical.hiv.register` for the facility-wide register, which names every person in HIV care and so is
the clinicians' only (a ward nurse's care relationship does not reach it). Refusals are the clinical API's: 404 for a
person or record not at this facility, 409 for a second enrolment or initiation or a version changed since, 422
naming the field at fault, with nothing written.
"""

from __future__ import annotations

import uuid
from typing import Any

from litestar import Controller, Request, get, post
from litestar.datastructures import State
from litestar.params import FromPath, JSONBody
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED

from appliance.layers.clinical import hiv
from appliance.layers.clinical.hiv import Programme, load_programme
from appliance.layers.clinical.hiv_schemas import (
    HivCardOut,
    HivCareOut,
    HivEnrolmentIn,
    HivRegimenIn,
    HivRegisterOut,
    HivStatusIn,
    HivViralLoadIn,
    HivVisitIn,
)
from appliance.layers.clinical.routes import PATIENT, ClinicalController, _opt, care_relationship_guard

# The chart's transaction opened with the care decision the guard asked for: the one way every chart route opens.
from appliance.layers.clinical.routes import _tenant as opened_chart
from appliance.layers.clinical.schemas import EntryVersion, Retraction
from appliance.substrate.principal import Principal
from appliance.substrate.tenancy import facility_today

Asking = Request[Principal, Any, Any]
Id = FromPath[uuid.UUID]
READ, WRITE, VISIT, REGISTER = "clinical.hiv.read", "clinical.hiv.write", "clinical.hiv.visit", "clinical.hiv.register"
HIV = PATIENT + "/hiv"


def programme_of(state: State) -> Programme:
    return load_programme(state.settings.policies_dir / "hiv.toml")


class HivController(Controller):
    path = "/api/t/{tenant:str}"
    tags = ["clinical", "hiv"]
    guards = [care_relationship_guard]
    exception_handlers = ClinicalController.exception_handlers

    @get(HIV, operation_id="ClinicalGetHivCard", opt=_opt(READ), sync_to_thread=True)
    def get_card(self, tenant: FromPath[str], state: State, request: Asking, patient_id: Id) -> HivCardOut:
        """The person's HIV care card: the enrolment here (ART number, diagnosis, WHO stage, CD4, TB screening), the
        regimen history, visits and pick-ups, viral loads, and where they stand: active on ART, interruption in
        treatment (more than 28 days since the last expected contact), the viral load due, unsuppressed."""
        today = facility_today(state.db, tenant)
        with opened_chart(state, request, tenant) as conn:
            return HivCardOut.model_validate(hiv.card(conn, request.user, patient_id, programme=programme_of(state),
                                                      today=today))

    @post(HIV, operation_id="ClinicalEnrolHivCare", opt=_opt(WRITE), sync_to_thread=True,
          status_code=HTTP_201_CREATED)
    def enrol(self, tenant: FromPath[str], state: State, request: Asking, patient_id: Id,
              data: JSONBody[HivEnrolmentIn]) -> HivCareOut:
        """Enrol the person in HIV care: the facility's next ART number (ART-00001, ART-00002...). Refused: a person
        enrolled here already (409); a day in the future, a diagnosis after the enrolment, a person recorded
        deceased (422)."""
        today = facility_today(state.db, tenant)
        with opened_chart(state, request, tenant) as conn:
            return HivCareOut.model_validate(hiv.enrol(conn, request.user, patient_id, data,
                                                       programme=programme_of(state), today=today))

    @post(HIV + "/{care_id:uuid}/regimens", operation_id="ClinicalChangeHivRegimen", opt=_opt(WRITE),
          sync_to_thread=True, status_code=HTTP_201_CREATED)
    def regimen(self, tenant: FromPath[str], state: State, request: Asking, patient_id: Id, care_id: Id,
                data: JSONBody[HivRegimenIn]) -> HivCareOut:
        """Start ART (change `initiation`) or change the regimen: a `substitution` within the line or a `switch` to
        a later line, with the reason. Refused: a second initiation (409); a regimen not in policies/hiv.toml, a
        substitution across lines, a switch within one, a change before ART started (422)."""
        today = facility_today(state.db, tenant)
        with opened_chart(state, request, tenant) as conn:
            return HivCareOut.model_validate(hiv.change_regimen(conn, request.user, patient_id, care_id, data,
                                                                programme=programme_of(state), today=today))

    @post(HIV + "/{care_id:uuid}/visits", operation_id="ClinicalRecordHivVisit", opt=_opt(VISIT),
          sync_to_thread=True, status_code=HTTP_201_CREATED)
    def visit(self, tenant: FromPath[str], state: State, request: Asking, patient_id: Id, care_id: Id,
              data: JSONBody[HivVisitIn]) -> HivCareOut:
        """Record a clinical visit or ARV pick-up: days of ARVs dispensed, adherence, the next appointment. Refused
        (422): ARVs before ART started, a next appointment not after the visit, a day in the future."""
        today = facility_today(state.db, tenant)
        with opened_chart(state, request, tenant) as conn:
            return HivCareOut.model_validate(hiv.record_visit(conn, request.user, patient_id, care_id, data,
                                                              programme=programme_of(state), today=today))

    @post(HIV + "/{care_id:uuid}/viral-loads", operation_id="ClinicalRecordHivViralLoad", opt=_opt(WRITE),
          sync_to_thread=True, status_code=HTTP_201_CREATED)
    def viral_load(self, tenant: FromPath[str], state: State, request: Asking, patient_id: Id, care_id: Id,
                   data: JSONBody[HivViralLoadIn]) -> HivCareOut:
        """Record a viral load result (copies/mL) by its sample's day: below 1000 suppressed, 50 or fewer
        undetectable, 1000 or more unsuppressed (a repeat due in 3 months); and its `indication`, routine or
        targeted (suspected treatment failure), routine by default where the schedule had one due, else targeted."""
        today = facility_today(state.db, tenant)
        with opened_chart(state, request, tenant) as conn:
            return HivCareOut.model_validate(hiv.record_viral_load(conn, request.user, patient_id, care_id, data,
                                                                   programme=programme_of(state), today=today))

    @post(HIV + "/{care_id:uuid}/status", operation_id="ClinicalChangeHivStatus", opt=_opt(WRITE),
          sync_to_thread=True, status_code=HTTP_200_OK)
    def status(self, tenant: FromPath[str], state: State, request: Asking, patient_id: Id, care_id: Id,
               data: JSONBody[HivStatusIn]) -> HivCareOut:
        """The person's status in care: transferred out, stopped or died with the day, or back in care. Refused:
        the status they have, a version changed since (409); a day in the future (422)."""
        today = facility_today(state.db, tenant)
        with opened_chart(state, request, tenant) as conn:
            return HivCareOut.model_validate(hiv.change_status(conn, request.user, patient_id, care_id, data,
                                                               programme=programme_of(state), today=today))

    @post(HIV + "/{entry_id:uuid}/entered-in-error", operation_id="ClinicalWithdrawHivEntry", opt=_opt(WRITE),
          sync_to_thread=True, status_code=HTTP_200_OK)
    def withdraw(self, tenant: FromPath[str], state: State, request: Asking, patient_id: Id, entry_id: Id,
                 data: JSONBody[Retraction]) -> EntryVersion:
        """Mark an enrolment, regimen, visit or viral load entered in error, with the reason; an ART number is not
        given again."""
        with opened_chart(state, request, tenant) as conn:
            return EntryVersion.model_validate(hiv.withdraw(conn, request.user, patient_id, entry_id, data.reason))

    @get("/hiv/register", operation_id="ClinicalHivRegister", opt=_opt(REGISTER, care_relationship=False),
         sync_to_thread=True)
    def register(self, tenant: FromPath[str], state: State, request: Asking) -> HivRegisterOut:
        """The facility's ART register: every person enrolled, by ART number, with regimen, status, viral load due
        and last result; the people to trace (interruption in treatment, longest first); counts by status. Each
        person listed is audited as read."""
        today = facility_today(state.db, tenant)
        with state.db.tenant(tenant) as conn:
            return HivRegisterOut.model_validate(hiv.register(conn, request.user, programme=programme_of(state),
                                                              today=today))
