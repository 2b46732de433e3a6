"""HTTP routes of the operating theatre (appliance/layers/clinical/surgery.py).

Booking an operation and listing a patient's operations are chart routes, under
/api/t/{tenant}/patients/{patient_id}/surgery, behind the care-relationship guard as the chart's are. The
theatre's own work is case-scoped, under /api/t/{tenant}/surgery: the day's list by theatre, one case, its
checklist phases, its moves, its operation note. The theatre team works the facility's list, as the imaging
bench works its orders, so these routes open no chart; each answers with the case only and is audited on the
patient's record. Refusals are the clinical API's: 404 for a case not at this facility, 409 for an act the
case's state does not allow or a stale version, 422 naming the field (or the checklist phase) at fault, with
nothing written.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any

from litestar import Controller, Request, get, post, put
from litestar.datastructures import State
from litestar.params import FromPath, JSONBody, QueryParameter
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED

from appliance.layers.clinical import surgery
from appliance.layers.clinical.routes import PATIENT, ClinicalController, _opt, _tenant, care_relationship_guard
from appliance.layers.clinical.surgery_schemas import (
    ChecklistPhaseOut,
    OperationNoteCorrection,
    OperationNoteIn,
    PhaseIn,
    Retraction,
    StatusChange,
    SurgeryCorrection,
    SurgeryIn,
    SurgeryOut,
    TheatreListOut,
)
from appliance.substrate.principal import Principal
from appliance.substrate.tenancy import facility_timezone

Asking = Request[Principal, Any, Any]
Id = FromPath[uuid.UUID]
READ, WRITE, CHECKLIST = "clinical.surgery.read", "clinical.surgery.write", "clinical.surgery.checklist"


class PatientSurgeryController(Controller):
    path = "/api/t/{tenant:str}" + PATIENT + "/surgery"
    tags = ["theatre"]
    guards = [care_relationship_guard]
    exception_handlers = ClinicalController.exception_handlers

    @get("/", operation_id="ClinicalListPatientSurgery", opt=_opt(READ), sync_to_thread=True)
    def list_cases(self, tenant: FromPath[str], state: State, request: Asking, patient_id: Id) -> list[SurgeryOut]:
        """The patient's operations at this facility, newest planned first, cancelled ones too."""
        with _tenant(state, request, tenant) as conn:
            return [SurgeryOut.model_validate(c) for c in surgery.patient_cases(conn, request.user, patient_id)]

    @post("/", operation_id="ClinicalBookSurgery", opt=_opt(WRITE), sync_to_thread=True, status_code=HTTP_201_CREATED)
    def book(self, tenant: FromPath[str], state: State, request: Asking, patient_id: Id,
             data: JSONBody[SurgeryIn]) -> SurgeryOut:
        """Book an operation: the procedure (in words, with a code of the facility's procedure list if it has
        one), when, which theatre, surgeon, anaesthetist, urgency and anaesthesia. It is scheduled; a person
        recorded deceased is refused (422)."""
        with _tenant(state, request, tenant) as conn:
            return SurgeryOut.model_validate(surgery.book(conn, request.user, patient_id, data))


class SurgeryController(Controller):
    path = "/api/t/{tenant:str}/surgery"
    tags = ["theatre"]
    exception_handlers = ClinicalController.exception_handlers

    @get("/", operation_id="ClinicalTheatreList", opt={"permission": READ}, sync_to_thread=True)
    def theatre_list(self, tenant: FromPath[str], state: State, request: Asking,
                     day: Annotated[dt.date | None, QueryParameter(
                         description="the facility's day (YYYY-MM-DD); today by default")] = None) -> TheatreListOut:
        """The day's cases by theatre, each theatre's in time order, with state and checklist progress. Each
        patient listed is audited as read."""
        timezone = facility_timezone(state.db, tenant)
        with state.db.tenant(tenant) as conn:
            return TheatreListOut.model_validate(surgery.theatre_list(
                conn, request.user, day or dt.datetime.now(timezone).date(), timezone))

    @get("/checklist", operation_id="ClinicalSurgeryChecklist", opt={"permission": READ}, sync_to_thread=True)
    def checklist(self, tenant: FromPath[str]) -> list[ChecklistPhaseOut]:
        """The WHO Surgical Safety Checklist's phases and items, the keys a phase is recorded with."""
        return [ChecklistPhaseOut.model_validate(p) for p in surgery.checklist_phases({})]

    @get("/{case_id:uuid}", operation_id="ClinicalGetSurgery", opt={"permission": READ}, sync_to_thread=True)
    def get_case(self, tenant: FromPath[str], state: State, request: Asking, case_id: Id) -> SurgeryOut:
        """One case, with its checklist phases and its operation note."""
        with state.db.tenant(tenant) as conn:
            return SurgeryOut.model_validate(surgery.case(conn, request.user, case_id))

    @put("/{case_id:uuid}", operation_id="ClinicalCorrectSurgery", opt={"permission": WRITE}, sync_to_thread=True)
    def correct(self, tenant: FromPath[str], state: State, request: Asking, case_id: Id,
                data: JSONBody[SurgeryCorrection]) -> SurgeryOut:
        """Correct what was booked, saying why; send `version_id`, the `id` you loaded (409 if changed since)."""
        with state.db.tenant(tenant) as conn:
            booked = SurgeryIn.model_validate(data.model_dump(exclude={"reason", "version_id"}))
            return SurgeryOut.model_validate(surgery.correct(conn, request.user, case_id, booked, data.reason,
                                                             data.version_id))

    @post("/{case_id:uuid}/status", operation_id="ClinicalMoveSurgery", opt={"permission": WRITE},
          sync_to_thread=True, status_code=HTTP_200_OK)
    def move(self, tenant: FromPath[str], state: State, request: Asking, case_id: Id,
             data: JSONBody[StatusChange]) -> SurgeryOut:
        """Take the case into theatre (needs the Sign In), complete it (needs the Time Out and the Sign Out) or
        cancel it with a reason. Completing a coded case charges its procedure."""
        with state.db.tenant(tenant) as conn:
            return SurgeryOut.model_validate(surgery.move(conn, request.user, case_id, data.to, reason=data.reason,
                                                          version_id=data.version_id))

    @post("/{case_id:uuid}/checklist/{phase:str}", operation_id="ClinicalRecordChecklistPhase",
          opt={"permission": CHECKLIST}, sync_to_thread=True, status_code=HTTP_200_OK)
    def record_phase(self, tenant: FromPath[str], state: State, request: Asking, case_id: Id, phase: FromPath[str],
                     data: JSONBody[PhaseIn]) -> SurgeryOut:
        """Record a phase of the checklist (`sign_in`, `time_out`, `sign_out`), every item confirmed, by the caller
        now. Sign In while scheduled; Time Out and Sign Out in theatre, in that order."""
        with state.db.tenant(tenant) as conn:
            return SurgeryOut.model_validate(surgery.record_phase(conn, request.user, case_id, phase, data))

    @post("/{case_id:uuid}/note", operation_id="ClinicalWriteOperationNote", opt={"permission": WRITE},
          sync_to_thread=True, status_code=HTTP_201_CREATED)
    def write_note(self, tenant: FromPath[str], state: State, request: Asking, case_id: Id,
                   data: JSONBody[OperationNoteIn]) -> SurgeryOut:
        """The operation note, signed by the caller, once the case is in theatre; one per case."""
        with state.db.tenant(tenant) as conn:
            return SurgeryOut.model_validate(surgery.write_note(conn, request.user, case_id, data))

    @put("/{case_id:uuid}/note", operation_id="ClinicalCorrectOperationNote", opt={"permission": WRITE},
         sync_to_thread=True)
    def correct_note(self, tenant: FromPath[str], state: State, request: Asking, case_id: Id,
                     data: JSONBody[OperationNoteCorrection]) -> SurgeryOut:
        """Correct the operation note, saying why; `version_id` is the note's `id` you loaded."""
        with state.db.tenant(tenant) as conn:
            return SurgeryOut.model_validate(surgery.correct_note(
                conn, request.user, case_id,
                OperationNoteIn.model_validate(data.model_dump(exclude={"reason", "version_id"})),
                data.reason, data.version_id))

    @post("/{case_id:uuid}/entered-in-error", operation_id="ClinicalRetractSurgery", opt={"permission": WRITE},
          sync_to_thread=True, status_code=HTTP_200_OK)
    def retract(self, tenant: FromPath[str], state: State, request: Asking, case_id: Id,
                data: JSONBody[Retraction]) -> dict[str, Any]:
        """Mark the case entered in error, with the reason: it leaves the theatre list and its charge is credited."""
        with state.db.tenant(tenant) as conn:
            return surgery.retract(conn, request.user, case_id, data.reason)
