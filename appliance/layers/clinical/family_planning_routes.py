"""HTTP routes of family planning (appliance/layers/clinical/family_planning.py), under /api/t/{tenant}/: a client's
visits and where she stands (current method, devices in place, next re-supply or injection), recording a visit,
correcting it, marking it entered in error, and the facility's clients due this week or overdue.

The client's routes pass the care-relationship guard as the rest of the chart does (break-the-glass with a
stated reason otherwise); the list of clients due is facility-wide, as the children due vaccines is, and audits
each client it names. Refusals are the clinical API's (`ClinicalController`'s handlers): 404 for a patient or
visit not at this facility, 409 for a version corrected since, 422 naming the field at fault, with nothing written.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any, Literal

from litestar import Controller, Request, get, post, put
from litestar.datastructures import State
from litestar.params import FromPath, JSONBody, QueryParameter
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED

from appliance.layers.clinical import family_planning
from appliance.layers.clinical.family_planning_policy import Programme, load_programme
from appliance.layers.clinical.family_planning_schemas import (
    FamilyPlanningAmend,
    FamilyPlanningChartOut,
    FamilyPlanningDueOut,
    FamilyPlanningIn,
    FamilyPlanningRecorded,
)
from appliance.layers.clinical.routes import PATIENT, ClinicalController, care_relationship_guard

# The chart's transaction opened with the care decision the guard asked for: the one way every chart route opens.
from appliance.layers.clinical.routes import _tenant as opened_chart
from appliance.layers.clinical.schemas import EntryVersion, Retraction
from appliance.substrate.principal import Principal
from appliance.substrate.tenancy import facility_timezone

Asking = Request[Principal, Any, Any]
Id = FromPath[uuid.UUID]
READ, WRITE = "clinical.family_planning.read", "clinical.family_planning.write"


def programme_of(state: State) -> Programme:
    return load_programme(state.settings.policies_dir / "family_planning.toml")


def _opt(permission: str) -> dict:
    return {"permission": permission, "care_relationship": True}


class FamilyPlanningController(Controller):
    path = "/api/t/{tenant:str}"
    tags = ["clinical", "family planning"]
    guards = [care_relationship_guard]
    exception_handlers = ClinicalController.exception_handlers

    @get(PATIENT + "/family-planning", operation_id="ClinicalListFamilyPlanning", opt=_opt(READ),
         sync_to_thread=True)
    def list_family_planning(self, tenant: FromPath[str], state: State, request: Asking,
                             patient_id: Id) -> FamilyPlanningChartOut:
        """The client's family planning visits in force (newest first) and those marked entered in error, her
        current method, the implants and IUDs in place, and when her next re-supply, injection or replacement is
        due (due from a week before, overdue after). Days are the facility's."""
        tz = facility_timezone(state.db, tenant)
        with opened_chart(state, request, tenant) as conn:
            return FamilyPlanningChartOut.model_validate(family_planning.patient_family_planning(
                conn, request.user, patient_id, programme=programme_of(state), today=dt.datetime.now(tz).date(),
                tz=tz))

    @post(PATIENT + "/family-planning", operation_id="ClinicalRecordFamilyPlanning", opt=_opt(WRITE),
          sync_to_thread=True, status_code=HTTP_201_CREATED)
    def record_family_planning(self, tenant: FromPath[str], state: State, request: Asking, patient_id: Id,
                               data: JSONBody[FamilyPlanningIn]) -> FamilyPlanningRecorded:
        """Record one visit: a method provided (`quantity` in its unit, `client_type`), or an implant or IUD
        removed (`service` removal, `removal_reason`). Refused (422, naming the field): a method not in the
        programme, a quantity more than a visit gives, a method for the other sex (a vasectomy for a woman), a
        removal of a device she does not have, a second device of one kind in place, a new acceptor with visits
        here already, a day in the future or before birth."""
        tz = facility_timezone(state.db, tenant)
        with opened_chart(state, request, tenant) as conn:
            return FamilyPlanningRecorded.model_validate(family_planning.record_visit(
                conn, request.user, patient_id, data, programme=programme_of(state),
                today=dt.datetime.now(tz).date(), tz=tz))

    @put(PATIENT + "/family-planning/{entry_id:uuid}", operation_id="ClinicalCorrectFamilyPlanning",
         opt=_opt(WRITE), sync_to_thread=True)
    def correct_family_planning(self, tenant: FromPath[str], state: State, request: Asking, patient_id: Id,
                                entry_id: Id, data: JSONBody[FamilyPlanningAmend]) -> FamilyPlanningRecorded:
        """A corrected version of a visit (its method, quantity, client type, day...), with the reason; the earlier
        one stays in its history (.../entries/{entry_id}/history). A version corrected since: 409."""
        tz = facility_timezone(state.db, tenant)
        with opened_chart(state, request, tenant) as conn:
            return FamilyPlanningRecorded.model_validate(family_planning.correct_visit(
                conn, request.user, patient_id, entry_id, data, data.reason, programme=programme_of(state),
                today=dt.datetime.now(tz).date(), tz=tz))

    @post(PATIENT + "/family-planning/{entry_id:uuid}/entered-in-error",
          operation_id="ClinicalWithdrawFamilyPlanning", opt=_opt(WRITE), sync_to_thread=True,
          status_code=HTTP_200_OK)
    def withdraw_family_planning(self, tenant: FromPath[str], state: State, request: Asking, patient_id: Id,
                                 entry_id: Id, data: JSONBody[Retraction]) -> EntryVersion:
        """Mark a visit entered in error (the wrong client, never given), with the reason: her standing and the
        national count no longer count it, and the mistake stays readable in its history."""
        with opened_chart(state, request, tenant) as conn:
            return EntryVersion.model_validate(
                family_planning.withdraw_visit(conn, request.user, patient_id, entry_id, data.reason))

    @get("/family-planning/due", operation_id="ClinicalListFamilyPlanningDue", opt=_opt(READ),
         sync_to_thread=True)
    def clients_due(self, tenant: FromPath[str], state: State, request: Asking,
                    only: Annotated[Literal["due", "overdue"] | None, QueryParameter(name="state", description=(
                        "`due` or `overdue` keeps those clients; without it, both"))] = None) -> FamilyPlanningDueOut:
        """The facility's clients whose next re-supply, injection or replacement falls due within the week or is
        overdue (not yet lost to follow-up), the most overdue first: name, MRN, phone, method and day — the list a
        nurse traces defaulters from. Each client listed is audited as read."""
        tz = facility_timezone(state.db, tenant)
        with state.db.tenant(tenant) as conn:
            return FamilyPlanningDueOut.model_validate(family_planning.due_list(
                conn, request.user, programme=programme_of(state), today=dt.datetime.now(tz).date(), tz=tz,
                only=only))
