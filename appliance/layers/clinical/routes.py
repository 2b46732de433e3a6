"""HTTP routes of the clinical layer, under /api/t/{tenant}/.

Each route opens one tenant transaction (the unit of work), calls one service and shapes the answer
through an explicit response model. Refusals are structured: `{"status_code", "detail", ...}` with the
field at fault where there is one (422), the record in the way (409) or what was not found (404).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any, Literal

import sqlalchemy as sa
from litestar import Controller, Request, Response, get, post, put
from litestar.connection import ASGIConnection
from litestar.datastructures import State
from litestar.exceptions import ValidationException
from litestar.handlers import BaseRouteHandler
from litestar.openapi import ResponseSpec
from litestar.params import FromPath, FromQuery, JSONBody, Parameter
from litestar.status_codes import HTTP_200_OK, HTTP_409_CONFLICT, HTTP_422_UNPROCESSABLE_ENTITY
from sqlalchemy.engine import Connection

from appliance.layers.clinical import access, catalogue, chart, discharge, growth, reconciliation, service, worklist
from appliance.layers.clinical.drugs import allergy_refusal
from appliance.layers.clinical.schemas import (
    AllergyAmend,
    AllergyIn,
    AllergyOut,
    CatalogueItem,
    ChartSummary,
    ConditionAmend,
    ConditionIn,
    ConditionOut,
    DischargeDraft,
    DischargeSummaryAmend,
    DischargeSummaryIn,
    DischargeSummaryOut,
    DisclosureIn,
    EncounterIn,
    EncounterOut,
    EncounterTransition,
    EntryVersion,
    GrowthOut,
    IdentityConfirmationIn,
    MedicationIn,
    MedicationOut,
    MedicationStatusIn,
    NoteIn,
    NoteOut,
    OrderSetIn,
    OrderSetOut,
    OrderSetPlaced,
    PatientIn,
    PatientMatch,
    PatientOut,
    PatientUpdate,
    ReconciledOut,
    ReconciliationIn,
    ReconciliationOut,
    RecordedResultOut,
    RegistrationRefused,
    ResultIn,
    ResultOut,
    Retraction,
    ServiceRequestIn,
    ServiceRequestOut,
    SignOffIn,
    TemplateOut,
    TodaysEncounters,
    VitalSignsIn,
    VitalSignsOut,
)
from appliance.substrate import identity
from appliance.substrate.principal import Principal
from appliance.substrate.problems import invalid_request_detail
from appliance.substrate.record import RecordError
from appliance.substrate.tenancy import facility_timezone

PATIENT = "/patients/{patient_id:uuid}"
Id = FromPath[uuid.UUID]
Asking = Request[Principal, Any, Any]  # request.user is the Principal the authentication middleware resolved


def _problem(status: int, detail: str, **extra: Any) -> Response:
    return Response({"status_code": status, "detail": detail, **extra}, status_code=status)


def _record_error(_: Request, exc: RecordError) -> Response:
    return _problem(exc.status, exc.detail, **exc.extra)


def _invalid_request(_: Request, exc: ValidationException) -> Response:
    # The request named a field wrongly (missing, wrong type, out of range): 422, naming each field.
    errors = exc.extra if isinstance(exc.extra, list) else []
    detail = invalid_request_detail(errors, exc.detail)
    return _problem(HTTP_422_UNPROCESSABLE_ENTITY, detail, errors=errors)


def _integrity(_: Request, exc: sa.exc.IntegrityError) -> Response:
    # A concurrent write claimed the same identifier or version between our check and our insert.
    return _problem(HTTP_409_CONFLICT, "another write got there first (a duplicate or a concurrent change); "
                                       "reload and try again")


def _blocked(outcome: service.MedicationOutcome) -> Response:
    return _problem(
        HTTP_409_CONFLICT,
        f"drug–allergy check: {allergy_refusal(outcome.blocked)}; nothing was prescribed. "
        "To prescribe anyway, send allergy_override_reason saying why.",
        field="allergy_override_reason", requires_override_reason=True, conflicts=outcome.blocked,
    )


def _opt(permission: str, *, care_relationship: bool = True) -> dict:
    return {"permission": permission, "care_relationship": care_relationship}


async def care_relationship_guard(connection: ASGIConnection, handler: BaseRouteHandler) -> None:
    """Every route on one patient's record needs a care relationship, or a stated break-the-glass
    reason (header `X-Break-Glass-Reason`).
    The guard only marks the request; the decision runs as the first statement of the route's own
    tenant transaction (`_tenant`), so a break-the-glass access is audited in the same transaction
    as the read it allows, and no request pays for a second transaction. Registration-desk routes
    (demographics, opening the first encounter) opt out: they are how a care relationship begins."""
    # A coroutine: it does no I/O, and a plain-function guard costs a worker-thread hop per request.
    patient_id = connection.path_params.get("patient_id")
    if patient_id is None or not handler.opt.get("care_relationship", True):
        return
    # The header only: a reason in the query would sit in the address, and so in logs and history.
    reason = connection.headers.get("x-break-glass-reason")
    connection.scope["healthos_care"] = (patient_id, reason)  # type: ignore[typeddict-unknown-key]


@contextmanager
def _tenant(state: State, request: Asking, tenant: str) -> Iterator[Connection]:
    """The route's tenant transaction, opened with the care-relationship decision the guard asked for."""
    with state.db.tenant(tenant) as conn:
        care = request.scope.get("healthos_care")
        if care is not None:
            access.open_chart(conn, request.user, care[0], care[1])
        yield conn


# Documented in OpenAPI (handler docstrings are not): the question a registration may be asked before it is written.
_REGISTRATION_REFUSED = ResponseSpec(data_container=RegistrationRefused, generate_examples=False, description=(
    "Not written. A national ID held at another facility by a person born on another day or of another sex "
    "(`requires_national_id_confirmation`, `differs`): check the card, and send `national_id_confirmed: true` if "
    "the number is right. Or an identifier already held by another patient of this facility, or a change made "
    "meanwhile."))
_NATIONAL_ID_ASKED_TOO_OFTEN = ResponseSpec(data_container=RegistrationRefused, generate_examples=False, description=(
    "Not written. The national ID was sent too often this hour with a birth date or sex its holder elsewhere does "
    f"not have ({identity.NATIONAL_ID_ANSWERS_PER_ASKER} times by this caller, "
    f"{identity.NATIONAL_ID_ANSWERS_PER_PERSON} by everyone), so it is not compared again for now, whatever is sent: "
    "check the card, or ask the records office."))


class ClinicalController(Controller):
    path = "/api/t/{tenant:str}"
    tags = ["clinical"]
    guards = [care_relationship_guard]
    exception_handlers = {
        RecordError: _record_error,
        ValidationException: _invalid_request,
        sa.exc.IntegrityError: _integrity,
    }

    # -- patients --------------------------------------------------------------------------------------

    @post("/patients", operation_id="ClinicalRegisterPatient", opt=_opt("clinical.patient.create"),
          sync_to_thread=True, responses={409: _REGISTRATION_REFUSED, 429: _NATIONAL_ID_ASKED_TOO_OFTEN})
    def register_patient(self, tenant: FromPath[str], state: State, request: Asking,
                         data: JSONBody[PatientIn]) -> PatientOut:
        """Register a patient: demographics, identifiers, contacts and next of kin. Returns the chart's id
        and the facility's medical record number. A national ID held at another facility of the appliance
        links the chart to that person; when they were born on another day or are of another sex, the answer
        is 409 with `requires_national_id_confirmation` and `differs` (only which of birth date and sex
        differs), nothing written: check the number on the ID card, and send `national_id_confirmed: true`
        if it is right. Sent too often with what differs, it is not compared again for an hour (429)."""
        # The guard has checked the caller works here.
        with _tenant(state, request, tenant) as conn:
            linked = service.link_registration(state.db, request.user, data, tenant=tenant, chart_conn=conn)
            return PatientOut.model_validate(service.register_patient(conn, request.user, linked))

    @get("/patients", operation_id="ClinicalSearchPatients", opt=_opt("clinical.patient.search"),
         sync_to_thread=True)
    def search_patients(self, tenant: FromPath[str], state: State, request: Asking,
                        name: FromQuery[str | None] = None, identifier: FromQuery[str | None] = None,
                        birth_date: FromQuery[dt.date | None] = None, phone: FromQuery[str | None] = None,
                        limit: FromQuery[int] = 20) -> list[PatientMatch]:
        """Find patients by identifier or MRN (exact), name (tolerant of misspelling), phone number (its digits,
        with the country's code or without: `+254712345678` finds a chart registered as `0712 345678`) and birth
        date."""
        with _tenant(state, request, tenant) as conn:
            rows = service.search_patients(conn, request.user, name=name, identifier=identifier,
                                           birth_date=birth_date, phone=phone, limit=limit)
            return [PatientMatch.model_validate(r) for r in rows]

    @get(PATIENT, operation_id="ClinicalGetPatient", opt=_opt("clinical.patient.read", care_relationship=False),
         sync_to_thread=True)
    def get_patient(self, tenant: FromPath[str], state: State, request: Asking,
                    patient_id: Id) -> PatientOut:
        with _tenant(state, request, tenant) as conn:
            return PatientOut.model_validate(service.get_patient(conn, request.user, patient_id))

    @put(PATIENT, operation_id="ClinicalCorrectPatient", opt=_opt("clinical.patient.update"), sync_to_thread=True,
         responses={409: _REGISTRATION_REFUSED, 429: _NATIONAL_ID_ASKED_TOO_OFTEN})
    def correct_patient(self, tenant: FromPath[str], state: State, request: Asking,
                        patient_id: Id, data: JSONBody[PatientUpdate]) -> PatientOut:
        """Correct a registration. The previous version stays in the history; send `version_id` from the
        patient you loaded to be refused (409) if someone else corrected it meanwhile. A corrected national
        ID relinks the chart to the person that ID names (or to a new one), as registration would have, and
        is asked about as registration asks (409, `requires_national_id_confirmation`, `national_id_confirmed`)."""
        with _tenant(state, request, tenant) as conn:
            updated = service.update_patient(conn, request.user, patient_id,
                                             PatientIn.model_validate(data.model_dump(exclude={"reason",
                                                                                               "version_id"})),
                                             reason=data.reason, version_id=data.version_id, db=state.db)
        service.release_unlinked_subject(state.db, tenant, request.user, updated)
        return PatientOut.model_validate(updated)

    @post(PATIENT + "/identity-confirmation", operation_id="ClinicalConfirmIdentity",
          opt=_opt("clinical.patient.confirm_identity", care_relationship=False), sync_to_thread=True,
          status_code=HTTP_200_OK)
    def confirm_identity(self, tenant: FromPath[str], state: State, request: Asking, patient_id: Id,
                         data: JSONBody[IdentityConfirmationIn]) -> PatientOut:
        """Confirm, from the documents named, that the patient is the person a national ID confirmed over a
        differing birth date or sex links the chart to. Until then a death certified on this chart is kept to it
        and a referral from it reaches no chart of that person elsewhere; after, they follow the person. 409 for a
        chart whose link is not in dispute (or while that person is recorded deceased by another facility as well);
        a wrong national ID is corrected instead (PUT the patient), which relinks the chart."""
        return PatientOut.model_validate(service.confirm_identity(state.db, tenant, request.user, patient_id,
                                                                  data.documents))

    @get(PATIENT + "/chart", operation_id="ClinicalGetChartSummary", opt=_opt("clinical.chart.read"),
         sync_to_thread=True)
    def chart_summary(self, tenant: FromPath[str], state: State, request: Asking,
                      patient_id: Id) -> Response[ChartSummary]:
        """Demographics, active problems, allergies and medications, latest vitals and results, open
        orders and recent encounters: the page a clinician opens first."""
        # The care decision rides in the same statement as the summary (not `_tenant`'s separate one),
        # and for a clinician caring for the patient the whole audited read is one round trip.
        care = request.scope.get("healthos_care")
        reason = care[1] if care else None
        document = None if reason else chart.chart_summary_in_care(state.db, tenant, request.user, patient_id)
        if document is None:
            with state.db.tenant(tenant) as conn:
                document = chart.open_chart_summary_json(conn, request.user, patient_id, reason)
        # Assembled by PostgreSQL from the ChartSummary fields; passed through without re-encoding.
        return Response(document.encode(), media_type="application/json")

    @get(PATIENT + "/growth", operation_id="ClinicalGetGrowth", opt=_opt("clinical.chart.read"), sync_to_thread=True)
    def get_growth(self, tenant: FromPath[str], state: State, request: Asking, patient_id: Id) -> GrowthOut:
        """A child's weight-for-age, length/height-for-age and BMI-for-age z-scores, centiles and WHO bands
        at each measurement, with MUAC, oedema and the acute malnutrition status (6-59 months), computed
        from the vital signs and the birth date (clinical/growth.py). A patient 19 or older, or one whose
        sex is not recorded as female or male, is refused (422) with the reason. Ages are counted on the
        facility's calendar, as its pages count them."""
        tz = facility_timezone(state.db, tenant)
        with _tenant(state, request, tenant) as conn:
            return GrowthOut.model_validate(growth.growth(conn, request.user, patient_id, tz=tz))

    # -- encounters ------------------------------------------------------------------------------------

    @post(PATIENT + "/encounters", operation_id="ClinicalOpenEncounter",
          opt=_opt("clinical.encounter.create", care_relationship=False), sync_to_thread=True)
    def open_encounter(self, tenant: FromPath[str], state: State, request: Asking,
                       patient_id: Id, data: JSONBody[EncounterIn]) -> EncounterOut:
        """Open an outpatient visit, emergency visit or inpatient admission, optionally with the vital
        signs taken at arrival."""
        with _tenant(state, request, tenant) as conn:
            return EncounterOut.model_validate(service.open_encounter(conn, request.user, patient_id, data))

    @get(PATIENT + "/encounters", operation_id="ClinicalListEncounters", opt=_opt("clinical.encounter.read"),
         sync_to_thread=True)
    def list_encounters(self, tenant: FromPath[str], state: State, request: Asking,
                        patient_id: Id) -> list[EncounterOut]:
        with _tenant(state, request, tenant) as conn:
            return [EncounterOut.model_validate(r) for r in service.list_encounters(conn, request.user, patient_id)]

    @get("/encounters/today", operation_id="ClinicalListTodaysEncounters", opt=_opt("clinical.worklist.read"),
         sync_to_thread=True)
    def todays_encounters(self, tenant: FromPath[str], state: State, request: Asking,
                          whose: Annotated[Literal["all", "mine"], Parameter(description=(
                              "`mine`: only encounters the caller opened or wrote something in (a note, an order, "
                              "a prescription, vital signs, a step of its progress); `all` (the default): every "
                              "one of today's encounters at the facility."))] = "all") -> TodaysEncounters:
        """Today's encounters at this facility, the day taken in the facility's time zone: those open now
        (arrived or in progress, whenever they began), planned for today or finished today; cancelled
        ones are left out. Those being seen come first, then those waiting, expected and done. Each
        patient listed is audited as read."""
        tz = facility_timezone(state.db, tenant)
        with _tenant(state, request, tenant) as conn:
            return TodaysEncounters.model_validate(worklist.todays_encounters(conn, request.user, tz=tz, whose=whose))

    @post(PATIENT + "/encounters/{encounter_id:uuid}/status", operation_id="ClinicalChangeEncounterStatus",
          opt=_opt("clinical.encounter.update"), sync_to_thread=True, status_code=HTTP_200_OK)
    def change_encounter_status(self, tenant: FromPath[str], state: State, request: Asking,
                                patient_id: Id, encounter_id: Id,
                                data: JSONBody[EncounterTransition]) -> EncounterOut:
        """planned → arrived → in_progress → finished, or cancelled before it starts; others get 409."""
        with _tenant(state, request, tenant) as conn:
            return EncounterOut.model_validate(
                service.transition_encounter(conn, request.user, patient_id, encounter_id, data.status))

    @post(PATIENT + "/vitals", operation_id="ClinicalRecordVitals", opt=_opt("clinical.vitals.create"),
          sync_to_thread=True)
    def record_vitals(self, tenant: FromPath[str], state: State, request: Asking,
                      patient_id: Id, data: JSONBody[VitalSignsIn]) -> VitalSignsOut:
        with _tenant(state, request, tenant) as conn:
            return VitalSignsOut.model_validate(service.record_vitals(conn, request.user, patient_id, data))

    @post(PATIENT + "/vitals/{entry_id:uuid}/entered-in-error", operation_id="ClinicalWithdrawOwnVitals",
          opt=_opt("clinical.vitals.retract_own"), sync_to_thread=True, status_code=HTTP_200_OK)
    def withdraw_own_vitals(self, tenant: FromPath[str], state: State, request: Asking,
                            patient_id: Id, entry_id: Id, data: JSONBody[Retraction]) -> EntryVersion:
        """The nurse who charted a set of vital signs marks it entered in error, within 12 hours of charting it
        (ACC-035; a clinician may any set, at any time, here or by the entries' route): its NEWS2 and the
        escalation and observations it asked for go with it. Another's set, or an older one: 403, saying who can."""
        with _tenant(state, request, tenant) as conn:
            return EntryVersion.model_validate(
                service.retract_own_vitals(conn, request.user, patient_id, entry_id, data.reason))

    # -- problems and allergies ------------------------------------------------------------------------

    @post(PATIENT + "/problems", operation_id="ClinicalAddProblem", opt=_opt("clinical.problem.create"),
          sync_to_thread=True)
    def add_problem(self, tenant: FromPath[str], state: State, request: Asking,
                    patient_id: Id, data: JSONBody[ConditionIn]) -> ConditionOut:
        """Record a problem or diagnosis coded in ICD-10; a code not in the WHO list is a 422 naming it."""
        with _tenant(state, request, tenant) as conn:
            return ConditionOut.model_validate(service.add_condition(conn, request.user, patient_id, data))

    @get(PATIENT + "/problems", operation_id="ClinicalListProblems", opt=_opt("clinical.problem.read"),
         sync_to_thread=True)
    def list_problems(self, tenant: FromPath[str], state: State, request: Asking,
                      patient_id: Id, active_only: FromQuery[bool] = False) -> list[ConditionOut]:
        with _tenant(state, request, tenant) as conn:
            rows = service.list_conditions(conn, request.user, patient_id, active_only=active_only)
            return [ConditionOut.model_validate(r) for r in rows]

    @put(PATIENT + "/problems/{entry_id:uuid}", operation_id="ClinicalCorrectProblem",
         opt=_opt("clinical.problem.update"), sync_to_thread=True)
    def correct_problem(self, tenant: FromPath[str], state: State, request: Asking,
                        patient_id: Id, entry_id: Id, data: JSONBody[ConditionAmend]) -> ConditionOut:
        """A new version of the problem (e.g. resolved, or recoded); the old one stays in its history."""
        with _tenant(state, request, tenant) as conn:
            return ConditionOut.model_validate(
                service.amend_condition(conn, request.user, patient_id, entry_id, data, data.reason))

    @post(PATIENT + "/allergies", operation_id="ClinicalAddAllergy", opt=_opt("clinical.allergy.create"),
          sync_to_thread=True)
    def add_allergy(self, tenant: FromPath[str], state: State, request: Asking,
                    patient_id: Id, data: JSONBody[AllergyIn]) -> AllergyOut:
        with _tenant(state, request, tenant) as conn:
            return AllergyOut.model_validate(service.add_allergy(conn, request.user, patient_id, data))

    @get(PATIENT + "/allergies", operation_id="ClinicalListAllergies", opt=_opt("clinical.allergy.read"),
         sync_to_thread=True)
    def list_allergies(self, tenant: FromPath[str], state: State, request: Asking,
                       patient_id: Id, active_only: FromQuery[bool] = False) -> list[AllergyOut]:
        with _tenant(state, request, tenant) as conn:
            rows = service.list_allergies(conn, request.user, patient_id, active_only=active_only)
            return [AllergyOut.model_validate(r) for r in rows]

    @put(PATIENT + "/allergies/{entry_id:uuid}", operation_id="ClinicalCorrectAllergy",
         opt=_opt("clinical.allergy.update"), sync_to_thread=True)
    def correct_allergy(self, tenant: FromPath[str], state: State, request: Asking,
                        patient_id: Id, entry_id: Id, data: JSONBody[AllergyAmend]) -> AllergyOut:
        with _tenant(state, request, tenant) as conn:
            return AllergyOut.model_validate(
                service.amend_allergy(conn, request.user, patient_id, entry_id, data, data.reason))

    # -- medications -----------------------------------------------------------------------------------

    @post(PATIENT + "/medications", operation_id="ClinicalPrescribe", opt=_opt("clinical.medication.create"),
          sync_to_thread=True)
    def prescribe(self, tenant: FromPath[str], state: State, request: Asking,
                  patient_id: Id, data: JSONBody[MedicationIn]) -> Response[MedicationOut]:
        """Prescribe after the drug–allergy check: a match is refused (409) unless
        `allergy_override_reason` says why it is given anyway; both outcomes are recorded."""
        with _tenant(state, request, tenant) as conn:
            outcome = service.request_medication(conn, request.user, patient_id, data)
        if outcome.blocked:
            return _blocked(outcome)
        return Response(MedicationOut.model_validate(outcome.placed[0]), status_code=201)

    @get(PATIENT + "/medications", operation_id="ClinicalListMedications", opt=_opt("clinical.medication.read"),
         sync_to_thread=True)
    def list_medications(self, tenant: FromPath[str], state: State, request: Asking,
                         patient_id: Id, active_only: FromQuery[bool] = False) -> list[MedicationOut]:
        with _tenant(state, request, tenant) as conn:
            rows = service.list_medications(conn, request.user, patient_id, active_only=active_only)
            return [MedicationOut.model_validate(r) for r in rows]

    @post(PATIENT + "/medications/{entry_id:uuid}/status", operation_id="ClinicalChangeMedicationStatus",
          opt=_opt("clinical.medication.update"), sync_to_thread=True, status_code=HTTP_200_OK)
    def change_medication_status(self, tenant: FromPath[str], state: State, request: Asking,
                                 patient_id: Id, entry_id: Id, data: JSONBody[MedicationStatusIn]
                                 ) -> MedicationOut:
        """Stop or complete a prescription (a new version of it; the active one stays in the history)."""
        with _tenant(state, request, tenant) as conn:
            return MedicationOut.model_validate(service.change_medication_status(
                conn, request.user, patient_id, entry_id, data.status, data.reason))

    # -- orders and results ----------------------------------------------------------------------------

    @post(PATIENT + "/orders", operation_id="ClinicalPlaceOrder", opt=_opt("clinical.order.create"),
          sync_to_thread=True)
    def place_order(self, tenant: FromPath[str], state: State, request: Asking,
                    patient_id: Id, data: JSONBody[ServiceRequestIn]) -> ServiceRequestOut:
        """Order a lab test or imaging study from the facility's LOINC catalogue."""
        with _tenant(state, request, tenant) as conn:
            return ServiceRequestOut.model_validate(service.order_test(conn, request.user, patient_id, data))

    @get(PATIENT + "/orders", operation_id="ClinicalListOrders", opt=_opt("clinical.order.read"),
         sync_to_thread=True)
    def list_orders(self, tenant: FromPath[str], state: State, request: Asking,
                    patient_id: Id, open_only: FromQuery[bool] = False) -> list[ServiceRequestOut]:
        with _tenant(state, request, tenant) as conn:
            rows = service.list_orders(conn, request.user, patient_id, open_only=open_only)
            return [ServiceRequestOut.model_validate(r) for r in rows]

    @post(PATIENT + "/order-sets/{code:str}", operation_id="ClinicalPlaceOrderSet",
          opt=_opt("clinical.order.create"), sync_to_thread=True)
    def place_order_set(self, tenant: FromPath[str], state: State, request: Asking,
                        patient_id: Id, code: FromPath[str], data: JSONBody[OrderSetIn]) -> Response[OrderSetPlaced]:
        """Place every order of one of the facility's order sets in one act — all of them, or none."""
        with _tenant(state, request, tenant) as conn:
            outcome = service.place_order_set(conn, request.user, patient_id, code, data)
        if outcome.blocked:
            return _blocked(outcome)
        placed = OrderSetPlaced(
            order_set=code,
            service_requests=[ServiceRequestOut.model_validate(s) for s in outcome.services],
            medication_requests=[MedicationOut.model_validate(m) for m in outcome.placed],
        )
        return Response(placed, status_code=201)

    @post(PATIENT + "/results", operation_id="ClinicalRecordResult", opt=_opt("clinical.result.create"),
          sync_to_thread=True)
    def record_result(self, tenant: FromPath[str], state: State, request: Asking,
                      patient_id: Id, data: JSONBody[ResultIn]) -> RecordedResultOut:
        """One analyte's result; unit and reference range default from the catalogue (the band of the patient's
        age and sex when it has them, named in reference_band) and the abnormal flag is computed unless the
        laboratory sends its own. A value the test cannot have (beyond its possible limits) is a 422."""
        with _tenant(state, request, tenant) as conn:
            return RecordedResultOut.model_validate(service.record_result(conn, request.user, patient_id, data))

    @get(PATIENT + "/results", operation_id="ClinicalListResults", opt=_opt("clinical.result.read"),
         sync_to_thread=True)
    def list_results(self, tenant: FromPath[str], state: State, request: Asking,
                     patient_id: Id) -> list[ResultOut]:
        with _tenant(state, request, tenant) as conn:
            return [ResultOut.model_validate(r) for r in service.list_results(conn, request.user, patient_id)]

    @post(PATIENT + "/results/{entry_id:uuid}/sign-off", operation_id="ClinicalSignOffResult",
          opt=_opt("clinical.result.sign"), sync_to_thread=True, status_code=HTTP_200_OK)
    def sign_off_result(self, tenant: FromPath[str], state: State, request: Asking,
                        patient_id: Id, entry_id: Id, data: JSONBody[SignOffIn]) -> ResultOut:
        """The reviewing clinician signs the current version of a result (once)."""
        with _tenant(state, request, tenant) as conn:
            return ResultOut.model_validate(
                service.sign_result(conn, request.user, patient_id, entry_id, data.comment))

    @post(PATIENT + "/results/{entry_id:uuid}/disclosure", operation_id="ClinicalDiscloseResult",
          opt=_opt("clinical.result.sign"), sync_to_thread=True, status_code=HTTP_200_OK)
    def disclose_result(self, tenant: FromPath[str], state: State, request: Asking,
                        patient_id: Id, entry_id: Id, data: JSONBody[DisclosureIn]) -> ResultOut:
        """Record that the signed, current version of a result was given to the patient in person (once),
        with an optional note of the counselling. A result the release rules give only in person (HIV,
        syphilis, hepatitis serology) shows on the patient portal from then on. Unsigned, superseded or
        already given: 409."""
        with _tenant(state, request, tenant) as conn:
            return ResultOut.model_validate(
                service.disclose_result(conn, request.user, patient_id, entry_id, data.note))

    # -- notes -----------------------------------------------------------------------------------------

    @post(PATIENT + "/notes", operation_id="ClinicalWriteNote", opt=_opt("clinical.note.create"),
          sync_to_thread=True)
    def write_note(self, tenant: FromPath[str], state: State, request: Asking,
                   patient_id: Id, data: JSONBody[NoteIn]) -> NoteOut:
        """A note in free text, or a facility template's fields; a missing required field is a 422
        naming it."""
        with _tenant(state, request, tenant) as conn:
            return NoteOut.model_validate(service.write_note(conn, request.user, patient_id, data))

    @get(PATIENT + "/notes", operation_id="ClinicalListNotes", opt=_opt("clinical.note.read"), sync_to_thread=True)
    def list_notes(self, tenant: FromPath[str], state: State, request: Asking,
                   patient_id: Id) -> list[NoteOut]:
        with _tenant(state, request, tenant) as conn:
            return [NoteOut.model_validate(r) for r in service.list_notes(conn, request.user, patient_id)]

    # -- discharge summaries ---------------------------------------------------------------------------

    @get(PATIENT + "/discharge-summaries/draft", operation_id="ClinicalDraftDischargeSummary",
         opt=_opt("clinical.discharge.create"), sync_to_thread=True)
    def draft_discharge_summary(self, tenant: FromPath[str], state: State, request: Asking, patient_id: Id,
                                encounter_id: FromQuery[uuid.UUID | None] = None) -> DischargeDraft:
        """An inpatient stay's discharge summary as the record has it, to check, complete and sign: the
        diagnoses recorded in the stay, its results, the medicines active now (what the patient goes home on)
        and the active allergies, with the template's fields. Without `encounter_id`: the patient's open
        stay, else their latest. A result the release rules keep to be given in person, not given yet, is left out
        of the results and named in `held_back`. Each part read is audited."""
        tz = facility_timezone(state.db, tenant)
        with _tenant(state, request, tenant) as conn:
            return DischargeDraft.model_validate(discharge.draft(conn, request.user, patient_id, encounter_id, tz=tz,
                                                                 in_person=state.release_rules.in_person_rule))

    @post(PATIENT + "/discharge-summaries", operation_id="ClinicalSignDischargeSummary",
          opt=_opt("clinical.discharge.create"), sync_to_thread=True)
    def sign_discharge_summary(self, tenant: FromPath[str], state: State, request: Asking, patient_id: Id,
                               data: JSONBody[DischargeSummaryIn]) -> DischargeSummaryOut:
        """Sign a stay's discharge summary: one note on the stay's encounter. A required field missing is a 422
        naming it; a stay whose summary is already signed is a 409 (correct that one)."""
        with _tenant(state, request, tenant) as conn:
            return DischargeSummaryOut.model_validate(
                discharge.sign(conn, request.user, patient_id, data.encounter_id, data.fields))

    @get(PATIENT + "/discharge-summaries", operation_id="ClinicalListDischargeSummaries",
         opt=_opt("clinical.note.read"), sync_to_thread=True)
    def list_discharge_summaries(self, tenant: FromPath[str], state: State, request: Asking,
                                 patient_id: Id) -> list[DischargeSummaryOut]:
        """The patient's discharge summaries in force, newest first, each with its stay."""
        with _tenant(state, request, tenant) as conn:
            return [DischargeSummaryOut.model_validate(r)
                    for r in discharge.list_summaries(conn, request.user, patient_id)]

    @get(PATIENT + "/discharge-summaries/{entry_id:uuid}", operation_id="ClinicalGetDischargeSummary",
         opt=_opt("clinical.note.read"), sync_to_thread=True)
    def get_discharge_summary(self, tenant: FromPath[str], state: State, request: Asking, patient_id: Id,
                              entry_id: Id) -> DischargeSummaryOut:
        """A discharge summary as it stands, named by any of its versions' ids; its history is at
        .../entries/{entry_id}/history."""
        with _tenant(state, request, tenant) as conn:
            return DischargeSummaryOut.model_validate(discharge.get_summary(conn, request.user, patient_id, entry_id))

    @put(PATIENT + "/discharge-summaries/{entry_id:uuid}", operation_id="ClinicalCorrectDischargeSummary",
         opt=_opt("clinical.discharge.update"), sync_to_thread=True)
    def correct_discharge_summary(self, tenant: FromPath[str], state: State, request: Asking, patient_id: Id,
                                  entry_id: Id, data: JSONBody[DischargeSummaryAmend]) -> DischargeSummaryOut:
        """A corrected version of the summary in force, by the clinician who signed it, with the reason; the
        earlier version stays in its history. A version since corrected, or someone else's summary: 409."""
        with _tenant(state, request, tenant) as conn:
            return DischargeSummaryOut.model_validate(
                discharge.correct(conn, request.user, patient_id, entry_id, data.fields, data.reason))

    # -- medicines reconciliation on admission ---------------------------------------------------------

    @get(PATIENT + "/medication-reconciliation", operation_id="ClinicalGetMedicationReconciliation",
         opt=_opt("clinical.reconciliation.read"), sync_to_thread=True)
    def medication_reconciliation(self, tenant: FromPath[str], state: State, request: Asking,
                                  patient_id: Id) -> ReconciliationOut:
        """An admitted patient's medicines reconciliation: each medicine they came in on (an active
        prescription written before the stay) with the decision on it in this stay, None while it waits. Those
        waiting or held are not on the ward's MAR. A patient not admitted has no stay and nothing to reconcile."""
        with _tenant(state, request, tenant) as conn:
            return ReconciliationOut.model_validate(reconciliation.medicines(conn, request.user, patient_id))

    @post(PATIENT + "/medication-reconciliation", operation_id="ClinicalReconcileMedications",
          opt=_opt("clinical.reconciliation.create"), sync_to_thread=True, status_code=HTTP_200_OK)
    def reconcile_medications(self, tenant: FromPath[str], state: State, request: Asking, patient_id: Id,
                              data: JSONBody[ReconciliationIn]) -> ReconciledOut:
        """Decide on medicines the admitted patient came in on: continue (a new prescription of the stay, its
        doses from now), stop (with the reason) or hold (with the reason; off the MAR, kept for discharge; a
        held one may be decided again). All the decisions land or none: a refusal names the decision's field
        (`decisions[i].reason`), 422 for bad input, 409 for one already decided or blocked by the drug–allergy
        check without `allergy_override_reason`."""
        with _tenant(state, request, tenant) as conn:
            return ReconciledOut.model_validate(reconciliation.reconcile(conn, request.user, patient_id, data))

    # -- any entry: history and "entered in error" -----------------------------------------------------

    @get(PATIENT + "/entries/{entry_id:uuid}/history", operation_id="ClinicalGetEntryHistory",
         opt=_opt("clinical.entry.read"), sync_to_thread=True)
    def entry_history(self, tenant: FromPath[str], state: State, request: Asking,
                      patient_id: Id, entry_id: Id) -> list[EntryVersion]:
        """Every version of the record this entry belongs to, oldest first."""
        with _tenant(state, request, tenant) as conn:
            versions = service.entry_history(conn, request.user, patient_id, entry_id)
            return [EntryVersion.model_validate(v) for v in versions]

    @post(PATIENT + "/entries/{entry_id:uuid}/entered-in-error", operation_id="ClinicalMarkEnteredInError",
          opt=_opt("clinical.entry.retract"), sync_to_thread=True, status_code=HTTP_200_OK)
    def entered_in_error(self, tenant: FromPath[str], state: State, request: Asking,
                         patient_id: Id, entry_id: Id, data: JSONBody[Retraction]) -> EntryVersion:
        """Withdraw a mistaken entry. Nothing is deleted: the mistake stays readable in the history."""
        with _tenant(state, request, tenant) as conn:
            return EntryVersion.model_validate(
                service.retract_entry(conn, request.user, patient_id, entry_id, data.reason))

    # -- the facility's configuration ------------------------------------------------------------------

    @get("/catalogue", operation_id="ClinicalListCatalogue", opt=_opt("clinical.catalogue.read"),
         sync_to_thread=True)
    def list_catalogue(self, tenant: FromPath[str], state: State) -> list[CatalogueItem]:
        """Lab tests and imaging studies this facility can order, coded in LOINC."""
        with state.db.tenant(tenant) as conn:
            return [CatalogueItem.model_validate(r) for r in catalogue.list_catalogue(conn)]

    @get("/note-templates", operation_id="ClinicalListNoteTemplates", opt=_opt("clinical.catalogue.read"),
         sync_to_thread=True)
    def list_templates(self, tenant: FromPath[str], state: State) -> list[TemplateOut]:
        with state.db.tenant(tenant) as conn:
            return [TemplateOut.model_validate(r) for r in catalogue.list_templates(conn)]

    @get("/order-sets", operation_id="ClinicalListOrderSets", opt=_opt("clinical.catalogue.read"),
         sync_to_thread=True)
    def list_order_sets(self, tenant: FromPath[str], state: State) -> list[OrderSetOut]:
        with state.db.tenant(tenant) as conn:
            return [OrderSetOut.model_validate(r) for r in catalogue.list_order_sets(conn)]
