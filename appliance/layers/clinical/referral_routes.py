"""HTTP routes of referrals (appliance/layers/clinical/referral.py): sending one from a patient's chart, under
/api/t/{tenant}/patients/{patient_id}/referrals, and the facility's referrals sent and received and the acts on
one, under /api/t/{tenant}/referrals.

Sending is part of one patient's chart: it passes the care-relationship guard (or a stated break-the-glass reason)
as the chart's routes do. The facility's lists and a referral's acts are not on a chart: the exchange shows a
facility only the referrals it sent and those addressed to it, each act only on its side (the sender withdraws,
the receiver answers), and a referral of anyone else answers 404 as one that does not exist. Refusals are the
clinical API's: 404, 409 for a referral not in a state for the act (withdrawn, answered already), 422 naming the
field at fault, with nothing written.
"""

from __future__ import annotations

import uuid
from typing import Any

from litestar import Controller, Request, get, post
from litestar.datastructures import State
from litestar.params import FromPath, JSONBody
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED

from appliance.layers.clinical import referral
from appliance.layers.clinical.death_routes import link_to_person
from appliance.layers.clinical.routes import PATIENT, ClinicalController, _opt, _tenant, care_relationship_guard
from appliance.layers.clinical.schemas import (
    ReferralAcceptIn,
    ReferralAppointment,
    ReferralDestination,
    ReferralFeedbackIn,
    ReferralIn,
    ReferralOut,
    Retraction,
)
from appliance.substrate.principal import Principal

Asking = Request[Principal, Any, Any]
Id = FromPath[uuid.UUID]
ONE = "/referrals/{referral_id:uuid}"


class ReferralAccepted(ReferralOut):
    registered: bool  # whether this facility registered the person now, from the letter
    appointment: ReferralAppointment | None  # the visit booked with it, when a slot was given


def _opt_facility(permission: str) -> dict:
    return _opt(permission, care_relationship=False)


class ReferralController(Controller):
    path = "/api/t/{tenant:str}"
    tags = ["clinical"]
    guards = [care_relationship_guard]
    exception_handlers = ClinicalController.exception_handlers

    @post(PATIENT + "/referrals", operation_id="ClinicalSendReferral", opt=_opt("clinical.referral.write"),
          sync_to_thread=True, status_code=HTTP_201_CREATED)
    def send(self, tenant: FromPath[str], state: State, request: Asking, patient_id: Id,
             data: JSONBody[ReferralIn]) -> ReferralOut:
        """Refer the patient to another facility of the appliance (`to_tenant`, and one of its clinics or none),
        with the urgency, the reason and the letter: the summary you write and the ids of this chart's current
        problems, allergies, medications and results to send, copied as they stand now. The receiving facility
        reads that letter and nothing else of this chart. 422 for an unknown facility, this facility, an unknown
        clinic or an item not on this chart; nothing is written."""
        to = referral.destination(state.db, tenant, data.to_tenant)
        link_to_person(state, request, tenant, patient_id)
        with _tenant(state, request, tenant) as conn:
            sent = referral.send(conn, request.user, patient_id, data, to)
        return ReferralOut.model_validate({**sent, "kept_apart": referral.kept_apart(state.db, tenant, patient_id)})

    @get(PATIENT + "/referrals", operation_id="ClinicalListPatientReferrals", opt=_opt("clinical.referral.read"),
         sync_to_thread=True)
    def of_patient(self, tenant: FromPath[str], state: State, request: Asking, patient_id: Id) -> list[ReferralOut]:
        """The patient's referrals: those this facility sent from the chart, and those it received and accepted
        onto it, with their answers and feedback."""
        with _tenant(state, request, tenant) as conn:
            rows = referral.sent(conn, request.user, patient_id) + referral.received(conn, request.user, patient_id)
        return [ReferralOut.model_validate(r) for r in rows]

    @get("/referrals/destinations", operation_id="ClinicalListReferralDestinations",
         opt=_opt_facility("clinical.referral.read"), sync_to_thread=True)
    def destinations(self, tenant: FromPath[str], state: State) -> list[ReferralDestination]:
        """The facilities of this appliance a patient can be referred to, with their clinics."""
        return [ReferralDestination.model_validate(d) for d in referral.destinations(state.db, tenant)]

    @get("/referrals/sent", operation_id="ClinicalListReferralsSent", opt=_opt_facility("clinical.referral.read"),
         sync_to_thread=True)
    def sent(self, tenant: FromPath[str], state: State, request: Asking) -> list[ReferralOut]:
        """The referrals this facility sent, newest first, with each answer and feedback."""
        with state.db.tenant(tenant) as conn:
            return [ReferralOut.model_validate(r) for r in referral.sent(conn, request.user)]

    @get("/referrals/received", operation_id="ClinicalListReferralsReceived",
         opt=_opt_facility("clinical.referral.read"), sync_to_thread=True)
    def received(self, tenant: FromPath[str], state: State, request: Asking) -> list[ReferralOut]:
        """The referrals addressed to this facility, with their letters: those still open first, emergency before
        urgent before routine."""
        with state.db.tenant(tenant) as conn:
            return [ReferralOut.model_validate(r) for r in referral.received(conn, request.user)]

    @get(ONE, operation_id="ClinicalGetReferral", opt=_opt_facility("clinical.referral.read"), sync_to_thread=True)
    def one(self, tenant: FromPath[str], state: State, request: Asking, referral_id: Id) -> ReferralOut:
        """One referral this facility sent or received, with its letter; 404 for any other."""
        with state.db.tenant(tenant) as conn:
            return ReferralOut.model_validate(referral.get(conn, request.user, referral_id))

    @post(ONE + "/withdraw", operation_id="ClinicalWithdrawReferral", opt=_opt_facility("clinical.referral.write"),
          sync_to_thread=True, status_code=HTTP_200_OK)
    def withdraw(self, tenant: FromPath[str], state: State, request: Asking, referral_id: Id,
                 data: JSONBody[Retraction]) -> ReferralOut:
        """Withdraw a referral this facility sent and nobody has answered yet (409 once answered), saying why."""
        with state.db.tenant(tenant) as conn:
            return ReferralOut.model_validate(referral.withdraw(conn, request.user, referral_id, data.reason))

    @post(ONE + "/accept", operation_id="ClinicalAcceptReferral", opt=_opt_facility("clinical.referral.accept"),
          sync_to_thread=True, status_code=HTTP_200_OK)
    def accept(self, tenant: FromPath[str], state: State, request: Asking, referral_id: Id,
               data: JSONBody[ReferralAcceptIn | None] = None) -> ReferralAccepted:
        """Accept a referral addressed to this facility onto its chart of the person, registering them here from
        the letter (linked to the same one-identity person) when this facility has no chart of them yet;
        `patient_id` is that chart. With `slot_id`, the visit is booked in that slot in the same transaction
        (`appointment`, its reason naming the referral): a slot of another clinic than the referral's, in the
        past or unknown is 422, one taken meanwhile 409, and then nothing is accepted, registered or booked.
        Without, the desk books the visit from the chart. 409 for a withdrawn or answered referral."""
        slot_id = data.slot_id if data is not None else None
        return ReferralAccepted.model_validate(referral.accept(state.db, tenant, request.user, referral_id,
                                                               slot_id))

    @post(ONE + "/decline", operation_id="ClinicalDeclineReferral", opt=_opt_facility("clinical.referral.answer"),
          sync_to_thread=True, status_code=HTTP_200_OK)
    def decline(self, tenant: FromPath[str], state: State, request: Asking, referral_id: Id,
                data: JSONBody[Retraction]) -> ReferralOut:
        """Decline a referral addressed to this facility, with the reason the referring facility reads."""
        with state.db.tenant(tenant) as conn:
            return ReferralOut.model_validate(referral.decline(conn, request.user, referral_id, data.reason))

    @post(ONE + "/feedback", operation_id="ClinicalGiveReferralFeedback",
          opt=_opt_facility("clinical.referral.answer"), sync_to_thread=True, status_code=HTTP_200_OK)
    def feedback(self, tenant: FromPath[str], state: State, request: Asking, referral_id: Id,
                 data: JSONBody[ReferralFeedbackIn]) -> ReferralOut:
        """The counter-referral once the patient was seen: findings, what was done, advice for the referring
        facility, which reads it. The referral is then completed; 409 unless it was accepted."""
        with state.db.tenant(tenant) as conn:
            return ReferralOut.model_validate(referral.give_feedback(conn, request.user, referral_id, data))
