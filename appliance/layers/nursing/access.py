"""Who may open a patient's nursing record, and which ward's worklist.

The rule is the access policy's, the same the clinical layer keeps for the chart (a layer cannot import
another, so it is restated here over the same tables, and tests hold the two to the same behaviour):
staff see the record of a patient with an encounter at this facility — in their own ward, for roles the
policy marks ward-scoped — and anyone else's only by stating a reason (break-the-glass), which is allowed,
audited with purpose of use ETREAT and shown to the patient and the regulator. Machine clients act for the
institution under their token's permissions.

A ward worklist or handover lists every patient on a ward: a ward-scoped nurse gets her own ward's only.
"""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from appliance.layers.nursing import views
from appliance.layers.nursing.errors import Forbidden, NotFound
from appliance.substrate.principal import Principal
from appliance.substrate.record import note_access

BREAK_GLASS = "ETREAT"
MIN_REASON = 8


class BreakGlassRequired(Forbidden):
    def __init__(self, patient_id: uuid.UUID, problem: str | None = None, principal: Principal | None = None):
        super().__init__(
            problem or f"you have no care relationship with this patient{principal.care_wanting() if principal else ''}"
            ": to open the record anyway, state why "
            "(break-the-glass); the access and your reason are recorded and shown to the patient and the regulator",
            break_glass_required=True, patient_id=str(patient_id),
        )


def _care(principal: Principal, patient_id: uuid.UUID) -> sa.Exists:
    """An encounter of the patient's, open or ended within the policy's care relationship window (the clinical
    layer's rule, clinical/access.py), in the principal's ward for a ward-scoped role."""
    encounter = views.encounter
    query = sa.select(encounter.c.id).where(encounter.c.patient_id == patient_id, encounter.c.status != "cancelled")
    if principal.care_days is not None:
        query = query.where(sa.or_(
            encounter.c.status.in_(("planned", "arrived", "in_progress")),
            sa.func.coalesce(encounter.c.ended_at, encounter.c.updated_at)
            > sa.func.now() - sa.func.make_interval(0, 0, 0, principal.care_days)))
    if principal.ward_scoped and principal.ward:
        query = query.where(encounter.c.ward_code == principal.ward)
    return query.exists()


def open_record(conn: Connection, principal: Principal, patient_id: uuid.UUID,
                break_glass_reason: str | None = None) -> str | None:
    """Decide whether `principal` may read or write this patient's nursing record now; returns the
    purpose of use (None for ordinary care, ETREAT for break-the-glass)."""
    exists, cared_for = conn.execute(sa.select(
        sa.select(views.patient.c.id).where(views.patient.c.id == patient_id).exists(),
        sa.true() if principal.kind == "machine" else _care(principal, patient_id),
    )).one()
    if not exists:
        raise NotFound(f"no patient {patient_id} at this facility", patient_id=str(patient_id))
    if cared_for:
        return None
    reason = " ".join((break_glass_reason or "").split())
    if not reason:
        raise BreakGlassRequired(patient_id, principal=principal)
    if len(reason) < MIN_REASON:
        raise BreakGlassRequired(patient_id, f"state the reason in a few words (at least {MIN_REASON} characters)")
    note_access(conn, principal, "break_glass", patient_id, "chart", (patient_id,), purpose_of_use=BREAK_GLASS,
                detail={"reason": reason[:500]})
    return BREAK_GLASS


def ward_for(conn: Connection, principal: Principal, ward_code: str | None) -> dict:
    """The ward whose patients `principal` asks to see: a ward-scoped role sees its own ward only (and is
    taken there when it names none); others name any active ward of the facility."""
    if principal.ward_scoped:
        if not principal.ward:
            raise Forbidden("your membership names no ward: ask the facility admin to set your ward")
        if ward_code and ward_code != principal.ward:
            raise Forbidden(f"you work on ward {principal.ward}; another ward's list is not yours to see",
                            ward=ward_code)
        ward_code = principal.ward
    if not ward_code:
        raise NotFound("name a ward", field="ward")
    found = views.ward_exists(conn, ward_code)
    if found is None:
        raise NotFound(f"no ward {ward_code} at this facility", ward=ward_code)
    return found
