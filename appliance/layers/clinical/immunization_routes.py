"""HTTP routes of immunizations (appliance/layers/clinical/immunization.py), under /api/t/{tenant}/: a patient's
doses and where they stand on the national schedule (policies/immunization.toml), recording a dose, correcting
it, marking it entered in error, and the facility's children due or overdue.

The patient's routes pass the care-relationship guard as the rest of the chart does (break-the-glass with a
stated reason otherwise); the list of children due is facility-wide, as the ward's worklist is, and audits each
child it names. Refusals are the clinical API's (`ClinicalController`'s handlers): 404 for a patient or dose not
at this facility, 409 for a version corrected since, 422 naming the field at fault, with nothing written.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any, Literal

from litestar import Controller, Request, get, post, put
from litestar.datastructures import State
from litestar.params import FromPath, JSONBody, QueryParameter
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED

from appliance.layers.clinical import immunization
from appliance.layers.clinical.immunization_schedule import Schedule, load_schedule
from appliance.layers.clinical.routes import PATIENT, ClinicalController, care_relationship_guard

# The chart's transaction opened with the care decision the guard asked for: the one way every chart route opens.
from appliance.layers.clinical.routes import _tenant as opened_chart
from appliance.layers.clinical.schemas import (
    DueListOut,
    EntryVersion,
    ImmunizationAmend,
    ImmunizationIn,
    ImmunizationRecorded,
    ImmunizationsOut,
    Retraction,
)
from appliance.substrate.principal import Principal
from appliance.substrate.tenancy import facility_timezone

Asking = Request[Principal, Any, Any]
Id = FromPath[uuid.UUID]
READ, WRITE = "clinical.immunization.read", "clinical.immunization.write"


def schedule_of(state: State) -> Schedule:
    return load_schedule(state.settings.policies_dir / "immunization.toml")


def _opt(permission: str, *, care_relationship: bool = True) -> dict:
    return {"permission": permission, "care_relationship": care_relationship}


class ImmunizationController(Controller):
    path = "/api/t/{tenant:str}"
    tags = ["clinical", "immunization"]
    guards = [care_relationship_guard]
    exception_handlers = ClinicalController.exception_handlers

    @get(PATIENT + "/immunizations", operation_id="ClinicalListImmunizations", opt=_opt(READ), sync_to_thread=True)
    def list_immunizations(self, tenant: FromPath[str], state: State, request: Asking,
                           patient_id: Id) -> ImmunizationsOut:
        """The patient's doses in force (newest first) and those marked entered in error, and each dose of the
        schedule: given (the day of the dose that counts), due (from when), overdue (since when), not yet due,
        or no longer given (past the vaccine's age limit). A dose given too early is listed against its dose with
        why it does not count. Days are the facility's."""
        tz = facility_timezone(state.db, tenant)
        with opened_chart(state, request, tenant) as conn:
            return ImmunizationsOut.model_validate(immunization.patient_immunizations(
                conn, request.user, patient_id, schedule=schedule_of(state), today=dt.datetime.now(tz).date(),
                tz=tz))

    @post(PATIENT + "/immunizations", operation_id="ClinicalRecordImmunization", opt=_opt(WRITE),
          sync_to_thread=True, status_code=HTTP_201_CREATED)
    def record_immunization(self, tenant: FromPath[str], state: State, request: Asking, patient_id: Id,
                            data: JSONBody[ImmunizationIn]) -> ImmunizationRecorded:
        """Record one dose: given here (`source` administered) or read from the child's card or another facility
        (historical), or due and not given (`status` not_done, with `not_done_reason`). Refused (422, naming the
        field): a vaccine not in the schedule, a dose number beyond its series, a day in the future or before
        birth, not done without a reason. A dose given before its minimum age or interval, or from an expired lot, is
        recorded, and the answer says it does not count (`counts` false, `detail` why) and the dose stays due."""
        tz = facility_timezone(state.db, tenant)
        with opened_chart(state, request, tenant) as conn:
            return ImmunizationRecorded.model_validate(immunization.record_dose(
                conn, request.user, patient_id, data, schedule=schedule_of(state), today=dt.datetime.now(tz).date(),
                tz=tz))

    @put(PATIENT + "/immunizations/{entry_id:uuid}", operation_id="ClinicalCorrectImmunization", opt=_opt(WRITE),
         sync_to_thread=True)
    def correct_immunization(self, tenant: FromPath[str], state: State, request: Asking, patient_id: Id,
                             entry_id: Id, data: JSONBody[ImmunizationAmend]) -> ImmunizationRecorded:
        """A corrected version of a dose (its vaccine, number, day, lot...), with the reason; the earlier one stays
        in its history (.../entries/{entry_id}/history). A version corrected since: 409."""
        tz = facility_timezone(state.db, tenant)
        with opened_chart(state, request, tenant) as conn:
            return ImmunizationRecorded.model_validate(immunization.correct_dose(
                conn, request.user, patient_id, entry_id, data, data.reason, schedule=schedule_of(state),
                today=dt.datetime.now(tz).date(), tz=tz))

    @post(PATIENT + "/immunizations/{entry_id:uuid}/entered-in-error", operation_id="ClinicalWithdrawImmunization",
          opt=_opt(WRITE), sync_to_thread=True, status_code=HTTP_200_OK)
    def withdraw_immunization(self, tenant: FromPath[str], state: State, request: Asking, patient_id: Id,
                              entry_id: Id, data: JSONBody[Retraction]) -> EntryVersion:
        """Mark a dose entered in error (the wrong child, never given), with the reason: the schedule no longer
        counts it, and the mistake stays readable in its history."""
        with opened_chart(state, request, tenant) as conn:
            return EntryVersion.model_validate(
                immunization.withdraw_dose(conn, request.user, patient_id, entry_id, data.reason))

    @get("/immunizations/due", operation_id="ClinicalListChildrenDue", opt=_opt(READ), sync_to_thread=True)
    def children_due(self, tenant: FromPath[str], state: State, request: Asking,
                     only: Annotated[Literal["due", "overdue"] | None, QueryParameter(name="state", description=(
                         "`due` or `overdue` keeps those doses; without it, both"))] = None) -> DueListOut:
        """The facility's children (younger than the schedule's `trace_until`) with a dose due or overdue, longest
        overdue first: name, MRN, age, and each dose outstanding with when it fell due or overdue — the list a
        vaccinator traces defaulters from. Each child listed is audited as read."""
        tz = facility_timezone(state.db, tenant)
        with state.db.tenant(tenant) as conn:
            return DueListOut.model_validate(immunization.due_list(
                conn, request.user, schedule=schedule_of(state), today=dt.datetime.now(tz).date(), tz=tz, only=only))
