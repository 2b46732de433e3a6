"""HTTP routes of the TB treatment register (appliance/layers/clinical/tuberculosis.py), under /api/t/{tenant}/: a
patient's TB treatment card, registering a case on treatment, its follow-ups, its outcome, their correction and
withdrawal, and the facility's register of a year with its quarterly cohorts' outcomes.

The patient's routes pass the care-relationship guard as the rest of the chart does (break-the-glass with a
stated reason otherwise); the register is facility-wide, shows HIV status only to those who may read the ART register
(to others, its cohorts' HIV-positive counts under the national disclosure rule), and audits each case it lists.
Permissions: `clinical.tb.read` to read, `clinical.tb.write` to register, assign an outcome, correct and withdraw
(clinicians, ACC-002), `clinical.tb.follow_up` to record and correct a follow-up (clinicians, and nurses by ACC-027).
Refusals are the clinical API's: 404 for a patient or record not at this facility, 409 for a second open treatment, an
outcome already assigned or a version changed since, 422 naming the field (and the WHO rule) at fault, with
nothing written.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from litestar import Controller, Request, get, post, put
from litestar.datastructures import State
from litestar.params import FromPath, JSONBody, QueryParameter
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED

from appliance.layers.clinical import tuberculosis
from appliance.layers.clinical.routes import PATIENT, ClinicalController, _opt, care_relationship_guard

# The chart's transaction opened with the care decision the guard asked for: the one way every chart route opens.
from appliance.layers.clinical.routes import _tenant as opened_chart
from appliance.layers.clinical.schemas import EntryVersion, Retraction
from appliance.layers.clinical.tuberculosis import Regimens, load_regimens
from appliance.layers.clinical.tuberculosis_schemas import (
    TbCardOut,
    TbCorrection,
    TbFollowUpCorrection,
    TbFollowUpIn,
    TbOutcomeIn,
    TbRegisterOut,
    TbRegistrationIn,
    TbTreatmentOut,
)
from appliance.substrate import disclosure
from appliance.substrate.principal import Principal
from appliance.substrate.tenancy import facility_today

Asking = Request[Principal, Any, Any]
Id = FromPath[uuid.UUID]
READ, WRITE, FOLLOW_UP = "clinical.tb.read", "clinical.tb.write", "clinical.tb.follow_up"
TB = PATIENT + "/tb"


def regimens_of(state: State) -> Regimens:
    return load_regimens(state.settings.policies_dir / "tuberculosis.toml")


def disclosure_threshold_of(state: State) -> int:
    """The ministry's small-count threshold, the one its national figures are withheld under."""
    return disclosure.read_threshold(state.settings.policies_dir / "indicators.toml")


class TuberculosisController(Controller):
    path = "/api/t/{tenant:str}"
    tags = ["clinical", "tuberculosis"]
    guards = [care_relationship_guard]
    exception_handlers = ClinicalController.exception_handlers

    @get(TB, operation_id="ClinicalGetTbCard", opt=_opt(READ), sync_to_thread=True)
    def get_card(self, tenant: FromPath[str], state: State, request: Asking, patient_id: Id) -> TbCardOut:
        """The patient's TB treatment card: each treatment registered here, newest first (register number, WHO
        classification, regimen, HIV status and weight at start, outcome), its follow-ups and each follow-up month
        of its regimen done, due, overdue or not yet due; and what was marked entered in error."""
        today = facility_today(state.db, tenant)
        with opened_chart(state, request, tenant) as conn:
            return TbCardOut.model_validate(tuberculosis.card(conn, request.user, patient_id,
                                                              regimens=regimens_of(state), today=today))

    @post(TB, operation_id="ClinicalRegisterTbTreatment", opt=_opt(WRITE), sync_to_thread=True,
          status_code=HTTP_201_CREATED)
    def register(self, tenant: FromPath[str], state: State, request: Asking, patient_id: Id,
                 data: JSONBody[TbRegistrationIn]) -> TbTreatmentOut:
        """Register a TB case on treatment: it takes the next number of the register of the year treatment
        started (2026/0001, 2026/0002...). Refused: a patient with a treatment here still without an outcome
        (409); a regimen not in policies/tuberculosis.toml, a start in the future (422); a person recorded
        deceased (422)."""
        today = facility_today(state.db, tenant)
        with opened_chart(state, request, tenant) as conn:
            return TbTreatmentOut.model_validate(tuberculosis.register(
                conn, request.user, patient_id, data, regimens=regimens_of(state), today=today))

    @post(TB + "/{treatment_id:uuid}/follow-ups", operation_id="ClinicalRecordTbFollowUp", opt=_opt(FOLLOW_UP),
          sync_to_thread=True, status_code=HTTP_201_CREATED)
    def follow_up(self, tenant: FromPath[str], state: State, request: Asking, patient_id: Id, treatment_id: Id,
                  data: JSONBody[TbFollowUpIn]) -> TbTreatmentOut:
        """Record a monitoring examination in a month of treatment: sputum smear, culture and Xpert results, and the
        weight. Answers the treatment with its follow-ups. Refused (422): a day in the future or before the
        start, nothing recorded."""
        today = facility_today(state.db, tenant)
        with opened_chart(state, request, tenant) as conn:
            return TbTreatmentOut.model_validate(tuberculosis.record_follow_up(
                conn, request.user, patient_id, treatment_id, data, regimens=regimens_of(state), today=today))

    @put(TB + "/follow-ups/{follow_up_id:uuid}", operation_id="ClinicalCorrectTbFollowUp", opt=_opt(FOLLOW_UP),
         sync_to_thread=True)
    def correct_follow_up(self, tenant: FromPath[str], state: State, request: Asking, patient_id: Id,
                          follow_up_id: Id, data: JSONBody[TbFollowUpCorrection]) -> TbTreatmentOut:
        """A corrected version of a follow-up, with the reason; the earlier one stays in its history. A version
        corrected since: 409."""
        today = facility_today(state.db, tenant)
        with opened_chart(state, request, tenant) as conn:
            return TbTreatmentOut.model_validate(tuberculosis.correct_follow_up(
                conn, request.user, patient_id, follow_up_id, data, regimens=regimens_of(state), today=today))

    @post(TB + "/{treatment_id:uuid}/outcome", operation_id="ClinicalRecordTbOutcome", opt=_opt(WRITE),
          sync_to_thread=True, status_code=HTTP_200_OK)
    def outcome(self, tenant: FromPath[str], state: State, request: Asking, patient_id: Id, treatment_id: Id,
                data: JSONBody[TbOutcomeIn]) -> TbTreatmentOut:
        """Assign the treatment's WHO outcome and its day. Refused (422, naming the rule): cured for a case not
        bacteriologically confirmed at start, not pulmonary, or without a negative smear or culture in the last
        month and once before; cured or completed with a positive result at month 5 or later (that is failure);
        failed without one; cured or completed before the regimen's months have run; died dated before the day of
        death a certificate records, or another outcome but not evaluated dated after it. An outcome already
        assigned: 409 (correct it instead). A died outcome answers `death`: the certificate, or that none is recorded
        and where to certify it (never made here: it needs a certifier's cause of death)."""
        today = facility_today(state.db, tenant)
        with opened_chart(state, request, tenant) as conn:
            return TbTreatmentOut.model_validate(tuberculosis.record_outcome(
                conn, request.user, patient_id, treatment_id, data, regimens=regimens_of(state), today=today))

    @put(TB + "/{treatment_id:uuid}", operation_id="ClinicalCorrectTbTreatment", opt=_opt(WRITE),
         sync_to_thread=True)
    def correct(self, tenant: FromPath[str], state: State, request: Asking, patient_id: Id, treatment_id: Id,
                data: JSONBody[TbCorrection]) -> TbTreatmentOut:
        """A corrected version of the registration and its outcome, with the reason; send `version_id`, the
        treatment's `id` you loaded, to be refused (409) if it changed meanwhile. The register number stays the
        case's. The outcome rules apply to the corrected outcome."""
        today = facility_today(state.db, tenant)
        with opened_chart(state, request, tenant) as conn:
            return TbTreatmentOut.model_validate(tuberculosis.correct_treatment(
                conn, request.user, patient_id, treatment_id, data, regimens=regimens_of(state), today=today))

    @post(TB + "/{entry_id:uuid}/entered-in-error", operation_id="ClinicalWithdrawTbEntry", opt=_opt(WRITE),
          sync_to_thread=True, status_code=HTTP_200_OK)
    def withdraw(self, tenant: FromPath[str], state: State, request: Asking, patient_id: Id, entry_id: Id,
                 data: JSONBody[Retraction]) -> EntryVersion:
        """Mark a treatment's registration or a follow-up entered in error (the wrong patient, never examined), with
        the reason: the card, the register and the cohort no longer count it; its register number is not given
        again."""
        with opened_chart(state, request, tenant) as conn:
            return EntryVersion.model_validate(
                tuberculosis.withdraw(conn, request.user, patient_id, entry_id, data.reason))

    @get("/tb/register", operation_id="ClinicalTbRegister", opt=_opt(READ, care_relationship=False),
         sync_to_thread=True)
    def register_of_year(self, tenant: FromPath[str], state: State, request: Asking,
                         year: Annotated[int | None, QueryParameter(
                             ge=2000, le=2100, description="the register's year; this year by default")] = None,
                         ) -> TbRegisterOut:
        """The facility's TB register of a year (each case whose treatment started in it, by register number: the
        patient, classification, regimen, follow-ups overdue, outcome) and each quarter's cohort: new and relapse
        cases by bacteriological status and site, previously treated, unknown history and HIV-positive, each by
        WHO outcome, with treatment success (cured + completed) as a percentage; provisional until 12 months after
        the quarter. Each case's HIV status only to those who may read the ART register (`clinical.hiv.register`;
        null, with `hiv_status_shown` false, for others, who see the cohorts' counts, the HIV-positive row's under the
        national disclosure rule: a count from 1 to `withheld_under` less one is null, and so is one that would reveal
        it). Each case listed is audited as read, saying whether its HIV status was shown."""
        today = facility_today(state.db, tenant)
        with state.db.tenant(tenant) as conn:
            return TbRegisterOut.model_validate(tuberculosis.register_of_year(
                conn, request.user, year or today.year, regimens=regimens_of(state), today=today,
                threshold=disclosure_threshold_of(state)))
