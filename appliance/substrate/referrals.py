"""The referral exchange: a patient referred from one facility of the appliance to another, on one identity.

The referring facility's record holds the act (the clinical layer's `referral` entry); what both facilities must
read is `control.referral` (control revision c0011): to whom, how urgent, why, the letter as sent, and then the
receiving facility's answer (accepted onto its chart of the person, or declined with a reason), its feedback once
the patient was seen, or the referring facility's withdrawal. A tenant transaction reaches it only through that
revision's three SECURITY DEFINER functions, which name the calling facility from its tenant role: a facility
reads the referrals it sent and those addressed to it, and acts only on its side of one (the sender withdraws, the
receiver answers); anyone else's referral is not found. The sending is written in the referring entry's
transaction, so entry and row commit together or not at all.

The functions refuse in sentences with SQLSTATEs of their own (HR404, HR409, HR422); `_refusal` turns them into
the record's errors, whose status a route answers with.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection

from appliance.substrate.db import control_metadata
from appliance.substrate.record import RecordError

URGENCIES = ("emergency", "urgent", "routine")  # most pressing first: the order a receiving list reads in
STATUSES = ("sent", "accepted", "declined", "withdrawn", "completed")
Side = Literal["sent", "received"]
Act = Literal["withdraw", "accept", "decline", "complete"]
_JSON = postgresql.JSONB(none_as_null=True)  # no feedback is SQL NULL, not JSON null

referral = sa.Table(
    "referral", control_metadata,
    sa.Column("id", postgresql.UUID(as_uuid=True), primary_key=True),
    sa.Column("subject_id", postgresql.UUID(as_uuid=True), sa.ForeignKey("control.subject.id"), nullable=False,
              doc="patient data: who is referred"),
    sa.Column("from_tenant", sa.Text, nullable=False),
    sa.Column("from_patient", postgresql.UUID(as_uuid=True), nullable=False),  # the referring facility's chart
    sa.Column("from_entry", postgresql.UUID(as_uuid=True), nullable=False),  # root id of its `referral` entry
    sa.Column("sent_by", postgresql.UUID(as_uuid=True), nullable=False),
    sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("to_tenant", sa.Text, nullable=False),
    sa.Column("clinic", sa.Text, nullable=True),
    sa.Column("urgency", sa.Text, nullable=False),
    sa.Column("reason", sa.Text, nullable=False, doc="patient data: why the patient is referred"),
    sa.Column("letter", postgresql.JSONB, nullable=False,
              doc="patient data: who the patient is, the clinical summary and the chart items sent"),
    sa.Column("status", sa.Text, nullable=False, server_default="sent"),
    sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("answered_by", postgresql.UUID(as_uuid=True), nullable=True),
    sa.Column("declined_reason", sa.Text, nullable=True, doc="patient data: why the referral was declined"),
    sa.Column("to_patient", postgresql.UUID(as_uuid=True), nullable=True),  # the receiving facility's chart
    sa.Column("feedback", postgresql.JSONB, nullable=True,
              doc="patient data: the counter-referral: findings, what was done, advice"),
    sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("completed_by", postgresql.UUID(as_uuid=True), nullable=True),
    sa.Column("withdrawn_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("withdrawn_reason", sa.Text, nullable=True, doc="patient data: why it was withdrawn"),
    sa.CheckConstraint("urgency IN ('routine', 'urgent', 'emergency')", name="referral_urgency"),
    sa.CheckConstraint("status IN ('sent', 'accepted', 'declined', 'withdrawn', 'completed')",
                       name="referral_status"),
    sa.CheckConstraint("from_tenant <> to_tenant", name="referral_elsewhere"),
    sa.UniqueConstraint("from_tenant", "from_entry", name="referral_entry_key"),
    sa.Index("referral_from_idx", "from_tenant", "sent_at"),
    sa.Index("referral_to_idx", "to_tenant", "sent_at"),
)


class ReferralNotFound(RecordError):
    status = 404


class ReferralConflict(RecordError):
    """An act the referral is not in a state for: answering a withdrawn one, accepting a declined one."""

    status = 409


class ReferralInvalid(RecordError):
    status = 422


_REFUSALS: dict[str, type[RecordError]] = {"HR404": ReferralNotFound, "HR409": ReferralConflict,
                                           "HR422": ReferralInvalid}


@contextmanager
def _refusal() -> Iterator[None]:
    """The exchange's refusals as the record's errors (the function's sentence, the field its hint names)."""
    try:
        yield
    except sa.exc.DBAPIError as exc:
        diag = getattr(exc.orig, "diag", None)
        refused = _REFUSALS.get(getattr(exc.orig, "sqlstate", None) or "")
        if refused is None or diag is None:
            raise
        extra = {"field": diag.message_hint} if diag.message_hint else {}
        raise refused(diag.message_primary or "the referral was refused", **extra) from None


def send(conn: Connection, *, referral_id: uuid.UUID, subject_id: uuid.UUID, patient_id: uuid.UUID,
         entry_id: uuid.UUID, sent_by: uuid.UUID, to_tenant: str, clinic: str | None, urgency: str, reason: str,
         letter: dict[str, Any]) -> None:
    """Send the referral from this facility (in the transaction of its `referral` entry). Refused (422) to an
    unknown facility, to this facility itself, or to a clinic the facility does not have."""
    with _refusal():
        conn.execute(sa.text("SELECT control.send_referral(:id, :subject, :patient, :entry, :by, :to, :clinic, "
                             ":urgency, :reason, :letter)").bindparams(sa.bindparam("letter", type_=_JSON)),
                     {"id": referral_id, "subject": subject_id, "patient": patient_id, "entry": entry_id,
                      "by": sent_by, "to": to_tenant, "clinic": clinic, "urgency": urgency, "reason": reason,
                      "letter": letter})


def listed(conn: Connection, side: Side, *, referral_id: uuid.UUID | None = None,
           patient_id: uuid.UUID | None = None) -> list[dict]:
    """The referrals this facility sent, or those addressed to it, newest first; `patient_id` narrows them to its
    chart of one patient. Not audited: callers are (the letter is patient data)."""
    rows = conn.execute(sa.text("SELECT * FROM control.referrals_of(:side, :id, :patient)"),
                        {"side": side, "id": referral_id, "patient": patient_id}).mappings().all()
    return [dict(row) for row in rows]


def one(conn: Connection, referral_id: uuid.UUID) -> tuple[Side, dict]:
    """A referral this facility sent or received, and which; a referral of others, or none, is 404."""
    for side in ("received", "sent"):
        found = listed(conn, side, referral_id=referral_id)
        if found:
            return side, found[0]
    raise ReferralNotFound(f"no referral {referral_id} sent from or addressed to this facility",
                           referral_id=str(referral_id))


def act(conn: Connection, referral_id: uuid.UUID, what: Act, *, by: uuid.UUID, text: str | None = None,
        patient_id: uuid.UUID | None = None, feedback: dict | None = None) -> str:
    """Withdraw (the sender), accept onto this facility's chart `patient_id`, decline with a reason, or complete
    with the feedback (the receiver); returns the status it leaves. A referral not on the caller's side of the
    act is 404; one not in a state for it (withdrawn, answered already, not accepted) is 409."""
    with _refusal():
        return conn.execute(
            sa.text("SELECT control.act_on_referral(:id, :act, :by, :text, :patient, :feedback)")
            .bindparams(sa.bindparam("feedback", type_=_JSON)),
            {"id": referral_id, "act": what, "by": by, "text": text, "patient": patient_id,
             "feedback": feedback}).scalar_one()
