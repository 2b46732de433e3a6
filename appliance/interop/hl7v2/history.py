"""What the facility admin reads of the HL7 v2 feeds: today's acknowledgements by code and the latest
messages, from `hl7_message`, which holds no demographics (see models.py), so reading it is not a read
of patient data."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from appliance.interop.hl7v2.models import ACK_CODES, hl7_message

MESSAGE_COLUMNS = (hl7_message.c.received_at, hl7_message.c.sending_application, hl7_message.c.sending_facility,
                   hl7_message.c.message_type, hl7_message.c.control_id, hl7_message.c.ack_code,
                   hl7_message.c.error_code, hl7_message.c.error_text)


def counts_since(conn: Connection, since: dt.datetime) -> dict[str, int]:
    """Messages acknowledged AA, AE and AR since `since` (the start of the facility's day)."""
    rows = conn.execute(sa.select(hl7_message.c.ack_code, sa.func.count()).where(hl7_message.c.received_at >= since)
                        .group_by(hl7_message.c.ack_code)).all()
    return {code: 0 for code in ACK_CODES} | dict(rows)


def recent(conn: Connection, limit: int = 100, *, not_applied: bool = False, sender: str = "") -> list[dict]:
    """The latest messages, newest first, each AE or AR with `applied_at`, when a resend of it (the same
    sender and control id) was accepted; `not_applied`: only the AE and AR no resend has yet put right, the
    interface analyst's list of what is still to correct; `sender`: only those of that sending application."""
    accepted = hl7_message.alias("accepted")
    applied_at = (sa.select(accepted.c.received_at).where(
        accepted.c.sending_application == hl7_message.c.sending_application,
        accepted.c.sending_facility == hl7_message.c.sending_facility,
        accepted.c.control_id == hl7_message.c.control_id, accepted.c.control_id != "",
        accepted.c.ack_code == "AA", hl7_message.c.ack_code != "AA",
        accepted.c.received_at >= hl7_message.c.received_at).scalar_subquery())
    query = sa.select(*MESSAGE_COLUMNS, applied_at.label("applied_at"))
    if not_applied:
        query = query.where(hl7_message.c.ack_code != "AA", applied_at.is_(None))
    if sender:
        query = query.where(hl7_message.c.sending_application == sender)
    rows = conn.execute(query.order_by(hl7_message.c.received_at.desc(), hl7_message.c.id).limit(limit)).mappings()
    return [dict(row) for row in rows]


def senders_since(conn: Connection, since: dt.datetime) -> list[str]:
    """The sending applications heard from since `since`, by name: the page's choice of sender."""
    return list(conn.execute(sa.select(hl7_message.c.sending_application).distinct()
                             .where(hl7_message.c.received_at >= since, hl7_message.c.sending_application != "")
                             .order_by(hl7_message.c.sending_application)).scalars())
