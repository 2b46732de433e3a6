"""Care relationships and break-the-glass: who may open whose chart.

A clinician sees the chart of a patient who has an encounter at this facility (in the clinician's
ward, for roles the access policy marks ward-scoped) that is open, or that ended no longer ago than
the access policy's care relationship window (`Principal.care_days`, 90 days as shipped): a patient
seen years ago is no longer in anyone's care here. Anyone else's chart opens only with a stated
reason: the access is allowed, recorded with purpose of use ETREAT (emergency treatment) and the
reason, and shows in the patient's access log and the regulator's evidence. Machine clients act for
the institution under their token's permissions and have no care relationship of their own.
"""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from appliance.layers.clinical.errors import ClinicalError, NotFound
from appliance.substrate import audit
from appliance.substrate.db import Database, driver
from appliance.substrate.principal import Principal
from appliance.substrate.record import access_event, access_hooks_registered, note_access

BREAK_GLASS = "ETREAT"
MIN_REASON = 8


class BreakGlassRequired(ClinicalError):
    status = 403

    def __init__(self, patient_id: uuid.UUID, problem: str | None = None, principal: Principal | None = None):
        super().__init__(
            problem or f"you have no care relationship with this patient{principal.care_wanting() if principal else ''}"
            ": to open the chart anyway, state why (break-the-glass); the access and your reason are recorded and "
            "shown to the patient and the regulator",
            break_glass_required=True, patient_id=str(patient_id),
        )


OPEN_STATUSES = ("planned", "arrived", "in_progress")


def _care_condition(principal: Principal) -> str:
    """SQL for "this principal has a care relationship with %(patient)s" (parameters patient, ward)."""
    if principal.kind == "machine":
        return "true"
    condition = "EXISTS (SELECT 1 FROM encounter WHERE patient_id = %(patient)s AND status <> 'cancelled'"
    if principal.care_days is not None:
        # An integer from the access policy, never from a request.
        condition += (f" AND (status IN {OPEN_STATUSES!r} OR COALESCE(ended_at, updated_at) > now() - "
                      f"interval '{int(principal.care_days)} days')")
    if principal.ward_scoped and principal.ward:
        condition += " AND ward_code = %(ward)s"
    return condition + ")"


def has_care_relationship(conn: Connection, principal: Principal, patient_id: uuid.UUID) -> bool:
    row = driver(conn).execute(f"SELECT {_care_condition(principal)}",
                               {"patient": patient_id, "ward": principal.ward}).fetchone()
    return bool(row[0])


def open_chart(conn: Connection, principal: Principal, patient_id: uuid.UUID,
               break_glass_reason: str | None = None) -> str | None:
    """Decide whether `principal` may read this patient's chart now; returns the purpose of use to
    record with the reads (None for ordinary care, ETREAT for break-the-glass)."""
    return open_chart_and_read(conn, principal, patient_id, break_glass_reason)[0]


def open_chart_and_read(conn: Connection, principal: Principal, patient_id: uuid.UUID,
                        break_glass_reason: str | None = None, read: str | None = None) -> tuple[str | None, Any]:
    """`open_chart`, and `read` (an SQL expression over %(patient)s) evaluated in the same statement
    when the care relationship stands: the decision and the first read in one round trip. The value
    is None when the chart was opened by break-the-glass (or `read` is None): read it then."""
    # One round trip, on the driver (it runs before every read of a patient's record): does the
    # patient exist here, is there a care relationship, and (if so) what the caller reads first?
    care = _care_condition(principal)
    exists, cared_for, value = driver(conn).execute(
        f"SELECT EXISTS (SELECT 1 FROM patient WHERE id = %(patient)s), {care}, "  # noqa: S608 -- constants only
        f"{f'CASE WHEN {care} THEN {read} END' if read else 'NULL'}",
        {"patient": patient_id, "ward": principal.ward}).fetchone()
    if not exists:
        raise NotFound(f"no patient {patient_id} at this facility", patient_id=str(patient_id))
    if cared_for:
        return None, value
    reason = " ".join((break_glass_reason or "").split())
    if not reason:
        raise BreakGlassRequired(patient_id, principal=principal)
    if len(reason) < MIN_REASON:
        raise BreakGlassRequired(patient_id, f"state the reason in a few words (at least {MIN_REASON} characters)")
    note_access(conn, principal, "break_glass", patient_id, "chart", (patient_id,), purpose_of_use=BREAK_GLASS,
                detail={"reason": reason[:500]})
    return BREAK_GLASS, None


def read_in_care(db: Database, tenant: str, principal: Principal, patient_id: uuid.UUID, read: str,
                 entity_kind: str) -> Any | None:
    """`read` (an SQL expression over %(patient)s) for a principal in a care relationship with the
    patient, with the care decision and the read's audit event, as one whole transaction sent in one
    message (`Database.tenant_statement`): the read a clinician makes most, in one round trip where
    `open_chart_and_read` and the append take four. The value is read only if the event was recorded
    in that same statement.

    Raises NotFound and BreakGlassRequired as `open_chart` does (a refusal records nothing, there as
    here). Returns None when the ordinary path must answer: the event cannot be sealed without the
    database (see `audit.seal_ahead`), the tenant's key changed since it was sealed, or a hook
    besides the audit trail watches accesses."""
    if access_hooks_registered():
        return None
    audit.refill_ahead(db, tenant)

    def compose(raw: psycopg.Connection) -> str | None:
        event = audit.seal_ahead(raw, tenant=tenant, principal=principal,
                                 **access_event("read", patient_id, entity_kind, (patient_id,)))
        if event is None:
            return None
        bind = psycopg.ClientCursor(raw).mogrify
        decision = bind(f"SELECT EXISTS (SELECT 1 FROM patient WHERE id = %(patient)s) AS found, "  # noqa: S608 -- constants only
                        f"{_care_condition(principal)} AS cared", {"patient": patient_id, "ward": principal.ward})
        # Values are bound by psycopg above and in `seal_ahead`; the rest is constants.
        return (f"WITH decision AS ({decision}), "  # noqa: S608
                f"{audit.guarded_insert(event, source='decision', guard='decision.found AND decision.cared')} "
                f"SELECT found, cared, {audit.RECORDED}, "
                f"CASE WHEN {audit.RECORDED} THEN {bind(read, {'patient': patient_id})} END FROM decision")

    try:
        row = db.tenant_statement(tenant, compose)
    except sa.exc.DBAPIError as exc:
        if audit.refused_by_trail(exc):
            raise audit.AuditError(f"the audit event could not be recorded: {exc.orig.__class__.__name__}") from exc
        raise
    if row is None:
        return None
    found, cared, recorded, value = row
    if not found:
        raise NotFound(f"no patient {patient_id} at this facility", patient_id=str(patient_id))
    if not cared:
        raise BreakGlassRequired(patient_id, principal=principal)
    return value if recorded else None
