"""HTTP routes of patient safety incidents (appliance/layers/operations/incidents.py), under
/api/t/{tenant}/incidents: reporting (`operations.incident.report`, every facility role), one's own reports, the
quality manager's list and review (`operations.incident.review`), and the month's counts for the command center
(`operations.kpi.read`). Refusals are the operations API's: 422 with the field, 409 for a closed incident, 404 for
an id that is not here or not the asker's (the same answer)."""

from __future__ import annotations

import uuid
from typing import Any

from litestar import Controller, Request, get, post
from litestar.datastructures import State
from litestar.params import FromPath, FromQuery, JSONBody

from appliance.layers.operations import incidents
from appliance.layers.operations.routes import OperationsController
from appliance.layers.operations.schemas import (
    IncidentDetailOut,
    IncidentIn,
    IncidentMonthOut,
    IncidentOut,
    ReviewEventIn,
    ReviewEventOut,
)
from appliance.substrate.principal import Principal
from appliance.substrate.tenancy import facility_timezone

Asking = Request[Principal, Any, Any]


def _opt(permission: str) -> dict:
    return {"permission": permission}


class IncidentController(Controller):
    path = "/api/t/{tenant:str}/incidents"
    tags = ["incidents"]
    exception_handlers = OperationsController.exception_handlers

    @post("", operation_id="OperationsReportIncident", opt=_opt(incidents.REPORT_PERMISSION), sync_to_thread=True)
    def report(self, tenant: FromPath[str], state: State, request: Asking, data: JSONBody[IncidentIn]) -> IncidentOut:
        """Report a patient safety incident (201). `anonymous`: the report keeps no reporter; naming a patient
        (`patient_id`) needs one in the reporter's care, and puts the report on that patient's access log."""
        with state.db.tenant(tenant) as conn:
            return IncidentOut.model_validate({**incidents.report(conn, request.user, data),
                                               "names_patient": data.patient_id is not None})

    @get("", operation_id="OperationsListIncidents", opt=_opt(incidents.REVIEW_PERMISSION), sync_to_thread=True)
    def list_incidents(self, tenant: FromPath[str], state: State, status: FromQuery[str | None] = None,
                       incident_type: FromQuery[str | None] = None, outcome: FromQuery[str | None] = None,
                       ward_code: FromQuery[str | None] = None, month: FromQuery[str | None] = None,
                       ) -> list[IncidentOut]:
        """The quality manager's list, those for immediate review (severe harm or death, not closed) first;
        filters: status (open, under_review, closed), incident_type, outcome (the harm, as confirmed if it was),
        ward_code, month (YYYY-MM, when it happened). No patient is named in it."""
        tz = facility_timezone(state.db, tenant)
        with state.db.tenant(tenant) as conn:
            rows = incidents.review_list(conn, tz, status=status, incident_type=incident_type, outcome=outcome,
                                         ward_code=ward_code, month=month)
        return [IncidentOut.model_validate(row) for row in rows]

    @get("/mine", operation_id="OperationsListMyIncidents", opt=_opt(incidents.REPORT_PERMISSION),
         sync_to_thread=True)
    def mine(self, tenant: FromPath[str], state: State, request: Asking) -> list[IncidentOut]:
        """The asker's own reports (not the anonymous ones: those are nobody's) with their status."""
        with state.db.tenant(tenant) as conn:
            return [IncidentOut.model_validate(row) for row in incidents.my_reports(conn, request.user)]

    @get("/summary", operation_id="OperationsIncidentMonth", opt=_opt("operations.kpi.read"), sync_to_thread=True)
    def summary(self, tenant: FromPath[str], state: State, month: FromQuery[str | None] = None) -> IncidentMonthOut:
        """Incidents reported in a month (YYYY-MM, this month if not given; facility time) by type and harm."""
        tz = facility_timezone(state.db, tenant)
        with state.db.tenant(tenant) as conn:
            return IncidentMonthOut.model_validate(incidents.month_summary(conn, tz, month))

    @get("/{incident_id:uuid}", operation_id="OperationsGetIncident", opt=_opt(incidents.REPORT_PERMISSION),
         sync_to_thread=True)
    def one(self, tenant: FromPath[str], state: State, request: Asking, incident_id: FromPath[uuid.UUID],
            ) -> IncidentDetailOut:
        """One incident: to the quality manager, with its review; to its reporter, its status and, once closed,
        the learning summary. Anyone else: 404."""
        with state.db.tenant(tenant) as conn:
            return IncidentDetailOut.model_validate(incidents.get(conn, request.user, incident_id))

    @post("/{incident_id:uuid}/review", operation_id="OperationsReviewIncident",
          opt=_opt(incidents.REVIEW_PERMISSION), sync_to_thread=True)
    def review(self, tenant: FromPath[str], state: State, request: Asking, incident_id: FromPath[uuid.UUID],
               data: JSONBody[ReviewEventIn]) -> ReviewEventOut:
        """Append a review event (201): note, contributing_factors, action, severity_confirmed or closed (with the
        learning summary as `note`, once a severity is confirmed). Nothing is overwritten."""
        with state.db.tenant(tenant) as conn:
            return ReviewEventOut.model_validate(incidents.add_review(conn, request.user, incident_id, data))

