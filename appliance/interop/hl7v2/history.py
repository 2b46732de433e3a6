"""What the facility admin reads of the HL7 v2 feeds: today's acknowledgements by code and the latest
messages, from `hl7_message`, which holds no demographics (see models.py), so reading it is not a read
of patient data; and what the operator's console and `healthos status` read of each feed: whether it has
gone quiet or is failing."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from appliance.interop.hl7v2.models import ACK_CODES, hl7_message
from appliance.substrate import identity
from appliance.substrate.db import Database

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


# The playbook's hl7 role names a feed's token 'HL7 feed <name>' and its listener healthos-hl7@<name>.
PLAYBOOK_FEED_PREFIX = "HL7 feed "
# How far back the console looks for feeds: one not heard from in a week is no longer listed.
FEEDS_LOOK_BACK = dt.timedelta(days=7)
# A feed that was sending and has been silent this long has stopped: its listener, its link or its sender.
FEED_QUIET = dt.timedelta(hours=24)
# This many messages refused in a row, none applied since, is a feed failing rather than one bad message.
FEED_FAILING_RUN = 5


@dataclass(frozen=True)
class FeedState:
    """One feed (its API token) as its messages of the last week show it."""

    token_id: uuid.UUID
    last_at: dt.datetime
    applied_at: dt.datetime | None  # its last message applied (AA) in the week
    refused_since: int  # its messages refused (AE, AR) since the last applied

    def quiet(self, now: dt.datetime) -> bool:
        return now - self.last_at > FEED_QUIET

    @property
    def failing(self) -> bool:
        return self.refused_since >= FEED_FAILING_RUN


def feed_states(conn: Connection, now: dt.datetime) -> list[FeedState]:
    """Each feed heard from in the last week, the latest heard first. A message refused before its token
    was read (an unreadable one, a revoked token) is no feed's."""
    recent = sa.select(hl7_message.c.token_id, hl7_message.c.received_at, hl7_message.c.ack_code).where(
        hl7_message.c.received_at >= now - FEEDS_LOOK_BACK, hl7_message.c.token_id.is_not(None)).cte("recent")
    last = sa.select(recent.c.token_id, sa.func.max(recent.c.received_at).label("last_at"),
                     sa.func.max(recent.c.received_at).filter(recent.c.ack_code == "AA").label("applied_at")
                     ).group_by(recent.c.token_id).cte("last")
    refused = sa.select(sa.func.count()).where(
        recent.c.token_id == last.c.token_id, recent.c.ack_code != "AA",
        sa.or_(last.c.applied_at.is_(None), recent.c.received_at > last.c.applied_at)).scalar_subquery()
    rows = conn.execute(sa.select(last.c.token_id, last.c.last_at, last.c.applied_at, refused.label("refused"))
                        .order_by(last.c.last_at.desc())).all()
    return [FeedState(row.token_id, row.last_at, row.applied_at, row.refused) for row in rows]


def feeds_heard(db: Database, tenants: list[dict], now: dt.datetime) -> list[dict]:
    """Each facility's feeds heard from this week, named by their API token ('HL7 feed lab' when the playbook's
    hl7 role issued it, whose listener is then the unit healthos-hl7@lab). The message log holds no patient data,
    so this is no read of any."""
    feeds = []
    for tenant in tenants:
        with db.tenant(tenant["slug"]) as conn:
            states = feed_states(conn, now)
        if not states:
            continue
        with db.control() as conn:
            tokens = {token["id"]: token for token in identity.api_tokens_of(conn, tenant["slug"])}
        for state in states:
            token = tokens.get(state.token_id, {})
            name = token.get("name") or ""
            unit = name.removeprefix(PLAYBOOK_FEED_PREFIX) if name.startswith(PLAYBOOK_FEED_PREFIX) else None
            feeds.append({"facility": tenant["name"], "slug": tenant["slug"], "name": name, "unit": unit,
                          "revoked": token.get("revoked_at") is not None, "state": state, "quiet": state.quiet(now)})
    return feeds


def feed_problem(feed: dict, now: dt.datetime) -> str | None:
    """What is wrong with a feed, as a sentence for an operator's monitoring (`healthos status`), or None."""
    state, name = feed["state"], feed["name"] or "a feed whose token is no longer on this appliance"
    where = f"{feed['facility']}'s {name}"
    if state.failing:
        return (f"hl7: {where} is failing: its last {state.refused_since} messages were refused, none applied since; "
                f"the facility admin's Interfaces page (/t/{feed['slug']}/admin/interfaces?show=not-applied) says why")
    if feed["quiet"]:
        listener = (f"systemctl status healthos-hl7@{feed['unit']}" if feed["unit"]
                    else "`healthos hl7 listen` with its token")
        hours = round((now - state.last_at).total_seconds() / 3600)
        return (f"hl7: {where} has sent nothing for {hours} h: is its listener running ({listener}) and the sending "
                "system connected to it?")
    return None
