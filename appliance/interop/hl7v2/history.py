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


def recent(conn: Connection, limit: int = 100) -> list[dict]:
    """The latest messages, newest first."""
    rows = conn.execute(sa.select(*MESSAGE_COLUMNS).order_by(hl7_message.c.received_at.desc(), hl7_message.c.id)
                        .limit(limit)).mappings()
    return [dict(row) for row in rows]
