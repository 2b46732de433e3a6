"""HTTP routes of antenatal care (appliance/layers/clinical/antenatal.py), under /api/t/{tenant}/: a woman's ANC card,
recording a contact, correcting it, marking it entered in error, and the facility's ANC clinic list.

The woman's routes pass the care-relationship guard as the rest of the chart does (break-the-glass with a stated
reason otherwise); the clinic list is facility-wide, as the children due vaccines are, and audits each woman it
names. Refusals are the clinical API's (`ClinicalController`'s handlers): 404 for a patient or contact not at this
facility, 409 for a version corrected since, 422 naming the field at fault, with nothing written.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from litestar import Controller, Request, get, post, put
from litestar.datastructures import State
from litestar.params import FromPath, JSONBody
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED

from appliance.layers.clinical import antenatal
from appliance.layers.clinical.antenatal_schemas import (
    AntenatalCard,
    AntenatalClinic,
    AntenatalCorrection,
    AntenatalIn,
    ContactOut,
)
from appliance.layers.clinical.routes import PATIENT, ClinicalController, care_relationship_guard

# The chart's transaction opened with the care decision the guard asked for: the one way every chart route opens.
from appliance.layers.clinical.routes import _tenant as opened_chart
from appliance.layers.clinical.schemas import EntryVersion, Retraction
from appliance.substrate.principal import Principal
from appliance.substrate.tenancy import facility_timezone

Asking = Request[Principal, Any, Any]
Id = FromPath[uuid.UUID]
READ, WRITE = "clinical.antenatal.read", "clinical.antenatal.write"


def _opt(permission: str) -> dict:
    return {"permission": permission, "care_relationship": True}


class AntenatalController(Controller):
    path = "/api/t/{tenant:str}"
    tags = ["clinical", "antenatal"]
    guards = [care_relationship_guard]
    exception_handlers = ClinicalController.exception_handlers

    @get(PATIENT + "/antenatal", operation_id="ClinicalGetAntenatalCard", opt=_opt(READ), sync_to_thread=True)
    def antenatal_card(self, tenant: FromPath[str], state: State, request: Asking, patient_id: Id) -> AntenatalCard:
        """The woman's ANC card: each pregnancy (latest first) with its dating and estimated due date, the
        gestational age today while it is open, its contacts with their flags, the WHO schedule's eight contacts
        (kept, missed, due, upcoming), the next contact and whether it is overdue, and the delivery that ended it.
        Days are the facility's."""
        tz = facility_timezone(state.db, tenant)
        with opened_chart(state, request, tenant) as conn:
            return AntenatalCard.model_validate(antenatal.card(conn, request.user, patient_id,
                                                               today=dt.datetime.now(tz).date(), tz=tz))

    @post(PATIENT + "/antenatal", operation_id="ClinicalRecordAntenatalContact", opt=_opt(WRITE),
          sync_to_thread=True, status_code=HTTP_201_CREATED)
    def record_contact(self, tenant: FromPath[str], state: State, request: Asking, patient_id: Id,
                       data: JSONBody[AntenatalIn]) -> ContactOut:
        """Record one ANC contact. The first contact of a pregnancy must date it (`lmp`, or `ultrasound_on` with
        `ultrasound_weeks`); later ones join the open pregnancy. Refused (422, naming the field): a man's record, a
        woman under 10 or over 55, a gestational age outside 0-45 weeks, a figure outside what is plausible, a
        diastolic pressure not below the systolic, IPTp-SP in the first trimester, syphilis treatment without a
        positive test."""
        tz = facility_timezone(state.db, tenant)
        with opened_chart(state, request, tenant) as conn:
            return ContactOut.model_validate(antenatal.record_contact(conn, request.user, patient_id, data,
                                                                      today=dt.datetime.now(tz).date(), tz=tz))

    @put(PATIENT + "/antenatal/{entry_id:uuid}", operation_id="ClinicalCorrectAntenatalContact", opt=_opt(WRITE),
         sync_to_thread=True)
    def correct_contact(self, tenant: FromPath[str], state: State, request: Asking, patient_id: Id, entry_id: Id,
                        data: JSONBody[AntenatalCorrection]) -> ContactOut:
        """A corrected version of a contact, with the reason; the earlier one stays in its history
        (.../entries/{entry_id}/history). A version corrected since: 409."""
        tz = facility_timezone(state.db, tenant)
        with opened_chart(state, request, tenant) as conn:
            return ContactOut.model_validate(antenatal.correct_contact(
                conn, request.user, patient_id, entry_id, AntenatalIn.model_validate(data.model_dump(
                    exclude={"reason"})), data.reason, today=dt.datetime.now(tz).date(), tz=tz))

    @post(PATIENT + "/antenatal/{entry_id:uuid}/entered-in-error", operation_id="ClinicalWithdrawAntenatalContact",
          opt=_opt(WRITE), sync_to_thread=True, status_code=HTTP_200_OK)
    def withdraw_contact(self, tenant: FromPath[str], state: State, request: Asking, patient_id: Id, entry_id: Id,
                         data: JSONBody[Retraction]) -> EntryVersion:
        """Mark a contact entered in error (the wrong woman, recorded twice), with the reason: the card and the
        ministry's counts no longer read it, and the mistake stays readable in its history."""
        with opened_chart(state, request, tenant) as conn:
            return EntryVersion.model_validate(antenatal.enter_in_error(conn, request.user, patient_id, entry_id,
                                                                        data.reason))

    @get("/antenatal/clinic", operation_id="ClinicalListAntenatalClinic", opt=_opt(READ), sync_to_thread=True)
    def antenatal_clinic(self, tenant: FromPath[str], state: State, request: Asking) -> AntenatalClinic:
        """The facility's women with an open pregnancy, overdue and flagged first: gestational age today, contacts so
        far, the next contact and the flags. Each woman listed is audited as read."""
        tz = facility_timezone(state.db, tenant)
        with state.db.tenant(tenant) as conn:
            return AntenatalClinic.model_validate(antenatal.clinic(conn, request.user,
                                                                   today=dt.datetime.now(tz).date(), tz=tz))
