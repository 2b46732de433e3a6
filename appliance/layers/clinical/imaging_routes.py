"""HTTP routes of the imaging department's bench (appliance/layers/clinical/imaging.py), under
/api/t/{tenant}/imaging/.

Order-scoped, not patient-scoped, as the laboratory's (lab_routes.py): the department works the facility's
imaging orders and sees of each patient what matches them at the door (policies/access.toml ACC-022), so no route
here opens a chart or passes the care-relationship guard, and none answers with more than the order, its state
and its report. Each opens one tenant transaction; refusals are the clinical API's (`ClinicalController`'s
handlers): 404 for an order or report not at this facility (or not an imaging order's), 409 for one not in a state
to take the act, 422 naming the field at fault, with nothing written.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from litestar import Controller, Request, get, post
from litestar.datastructures import State
from litestar.params import FromPath, JSONBody, QueryParameter
from litestar.status_codes import HTTP_200_OK

from appliance.layers.clinical import bench, imaging
from appliance.layers.clinical.routes import ClinicalController
from appliance.layers.clinical.schemas import (
    ImagingOrderOut,
    ImagingReportCorrectionIn,
    ImagingReportIn,
    ImagingState,
    ImagingWorklistOut,
    StudyPerformedIn,
    StudyPerformedInErrorIn,
)
from appliance.substrate.principal import Principal
from appliance.substrate.tenancy import facility_today

Asking = Request[Principal, Any, Any]
Id = FromPath[uuid.UUID]


class ImagingController(Controller):
    path = "/api/t/{tenant:str}/imaging"
    tags = ["imaging"]
    exception_handlers = ClinicalController.exception_handlers

    @get("/orders", operation_id="ClinicalImagingWorklist", opt={"permission": "clinical.imaging.read"},
         sync_to_thread=True)
    def worklist(self, tenant: FromPath[str], state: State, request: Asking,
                 order_state: Annotated[ImagingState | None, QueryParameter(name="state", description=(
                     "Keep one state: `awaiting_study`, `performed` (awaiting its report) or `reported` (awaiting a "
                     "clinician's sign-off); or `signed_off`, those reviewed already, for "
                     f"{bench.RESULTED_SHOWN_DAYS} days after their report (for corrections). Without it, "
                     "every open order."))] = None) -> ImagingWorklistOut:
        """The facility's open imaging orders, those still to work (a study to perform, a report to write) before
        those reported, then STAT, urgent, routine, oldest first within each: the patient (name, MRN, sex, age),
        the study, who ordered it, why, when and where, and its state, with the report of a reported one. Counts
        cover every state and those signed off. Each patient listed is audited as read."""
        today = facility_today(state.db, tenant)
        with state.db.tenant(tenant) as conn:
            return ImagingWorklistOut.model_validate(
                imaging.worklist(conn, request.user, today=today, state=order_state))

    @get("/orders/{order_id:uuid}", operation_id="ClinicalImagingGetOrder",
         opt={"permission": "clinical.imaging.read"}, sync_to_thread=True)
    def get_order(self, tenant: FromPath[str], state: State, request: Asking, order_id: Id) -> ImagingOrderOut:
        """One imaging order as the department sees it, with its report's versions in force."""
        today = facility_today(state.db, tenant)
        with state.db.tenant(tenant) as conn:
            return ImagingOrderOut.model_validate(imaging.imaging_order(conn, request.user, order_id, today=today))

    @post("/orders/{order_id:uuid}/performed", operation_id="ClinicalImagingRecordPerformed",
          opt={"permission": "clinical.imaging.perform"}, sync_to_thread=True, status_code=HTTP_200_OK)
    def performed(self, tenant: FromPath[str], state: State, request: Asking, order_id: Id,
                  data: JSONBody[StudyPerformedIn]) -> ImagingOrderOut:
        """Record that the order's study was performed, by the caller, when (`performed_at`, now if left out: the
        night's studies recorded in the morning keep their own times) and how (views taken, contrast): an
        `imaging_performed` entry on the patient's record. A time still to come or before the order: 422.
        Performed already, or reported: 409."""
        today = facility_today(state.db, tenant)
        with state.db.tenant(tenant) as conn:
            return ImagingOrderOut.model_validate(imaging.record_performed(
                conn, request.user, order_id, note=data.note, performed_at=data.performed_at, today=today))

    @post("/orders/{order_id:uuid}/performed/entered-in-error", operation_id="ClinicalImagingRetractPerformed",
          opt={"permission": "clinical.imaging.perform"}, sync_to_thread=True, status_code=HTTP_200_OK)
    def performed_in_error(self, tenant: FromPath[str], state: State, request: Asking, order_id: Id,
                           data: JSONBody[StudyPerformedInErrorIn]) -> ImagingOrderOut:
        """'Performed' recorded on the wrong order: its entry is entered in error with the reason (kept on the
        patient's record) and the order awaits its study again. Not performed, or reported already: 409."""
        today = facility_today(state.db, tenant)
        with state.db.tenant(tenant) as conn:
            return ImagingOrderOut.model_validate(
                imaging.performed_in_error(conn, request.user, order_id, reason=data.reason, today=today))

    @post("/orders/{order_id:uuid}/report", operation_id="ClinicalImagingReport",
          opt={"permission": "clinical.imaging.report"}, sync_to_thread=True, status_code=HTTP_200_OK)
    def report(self, tenant: FromPath[str], state: State, request: Asking, order_id: Id,
               data: JSONBody[ImagingReportIn]) -> ImagingOrderOut:
        """The report of a study performed, signed by the caller: findings, impression and whether a finding is
        critical (flagged AA: a critical result, on every clinician's results to review and its ward's worklist) or
        unexpected but not urgent (flagged A). It is the order's result, waiting on the ordering clinician's
        results to review. Not performed yet, or reported already: 409."""
        today = facility_today(state.db, tenant)
        with state.db.tenant(tenant) as conn:
            return ImagingOrderOut.model_validate(imaging.report(conn, request.user, order_id, data, today=today))

    @post("/results/{result_id:uuid}/correction", operation_id="ClinicalImagingCorrectReport",
          opt={"permission": "clinical.imaging.report"}, sync_to_thread=True, status_code=HTTP_200_OK)
    def correct(self, tenant: FromPath[str], state: State, request: Asking, result_id: Id,
                data: JSONBody[ImagingReportCorrectionIn]) -> ImagingOrderOut:
        """Correct the current version of an imaging order's report, with the reason: its next version, signed
        by the caller, waits for review again (the corrected one stays in its history). Returns the order. A
        version corrected since: 409."""
        today = facility_today(state.db, tenant)
        with state.db.tenant(tenant) as conn:
            return ImagingOrderOut.model_validate(
                imaging.correct_report(conn, request.user, result_id, data, today=today))
