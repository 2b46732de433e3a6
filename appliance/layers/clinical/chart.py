"""The chart summary: the page a clinician opens first, in one call and one transaction."""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from appliance.layers.clinical import service
from appliance.layers.clinical.models import allergy, condition, encounter, medication_request
from appliance.substrate.principal import Principal
from appliance.substrate.record import note_access


def chart_summary(conn: Connection, principal: Principal, patient_id: uuid.UUID, *, results: int = 20,
                  encounters: int = 10) -> dict:
    """Demographics, active problems, active allergies, active medications, the latest vital signs and
    results, open orders and recent encounters. Noted once on the audit seam as a chart read."""
    patient = service.patient_of(conn, patient_id)
    summary = {
        "patient": patient,
        "problems": service.current_rows(conn, condition, patient_id, condition.c.clinical_status == "active"),
        "allergies": service.current_rows(conn, allergy, patient_id, allergy.c.clinical_status == "active"),
        "medications": service.current_rows(conn, medication_request, patient_id,
                                            medication_request.c.status == "active"),
        "vitals": service.latest_vitals(conn, patient_id),
        "results": service.results_of(conn, patient_id, limit=results),
        "open_orders": service.orders_of(conn, patient_id, open_only=True),
        "encounters": [dict(r) for r in conn.execute(
            sa.select(*service.ENCOUNTER_COLUMNS).where(encounter.c.patient_id == patient_id)
            .order_by(sa.func.coalesce(encounter.c.started_at, encounter.c.planned_for).desc().nulls_last())
            .limit(encounters)
        ).mappings()],
    }
    note_access(conn, principal, "read", patient_id, "chart", (patient_id,))
    return summary

