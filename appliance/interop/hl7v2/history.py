"""What the facility admin reads of the HL7 v2 feeds: today's acknowledgements by code and the latest
messages, from `hl7_message`'s clear columns, which hold no demographics (see models.py), so listing them is not
a read of patient data; one message as it was received (`read_message`), which is, and is audited; and what
the operator's console and `healthos status` read of each feed: whether it has gone quiet or is failing."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from appliance.interop.hl7v2.models import ACK_CODES, RAW_PURPOSE, hl7_message
from appliance.substrate import audit, identity, keys
from appliance.substrate.db import Database
from appliance.substrate.principal import Principal

MESSAGE_COLUMNS = (hl7_message.c.id, hl7_message.c.received_at, hl7_message.c.sending_application,
                   hl7_message.c.sending_facility, hl7_message.c.message_type, hl7_message.c.control_id,
                   hl7_message.c.ack_code, hl7_message.c.error_code, hl7_message.c.error_text,
                   hl7_message.c.duplicate_of, hl7_message.c.replay_of, hl7_message.c.raw.is_not(None).label("kept"))


def _applied_at(message) -> sa.ScalarSelect:
    """When the message's control id was accepted from its sender at or after it arrived, for one not applied
    itself (AE, AR): by a resend, or by a replay from the Interfaces page."""
    accepted = hl7_message.alias("accepted")
    return (sa.select(accepted.c.received_at).where(
        accepted.c.sending_application == message.c.sending_application,
        accepted.c.sending_facility == message.c.sending_facility,
        accepted.c.control_id == message.c.control_id, accepted.c.control_id != "",
        accepted.c.ack_code == "AA", accepted.c.duplicate_of.is_(None), message.c.ack_code != "AA",
        accepted.c.received_at >= message.c.received_at).scalar_subquery())


def applied_at(conn: Connection, message_id: uuid.UUID) -> dt.datetime | None:
    """When the message not applied was since applied (a resend or a replay accepted), or None."""
    return conn.execute(sa.select(_applied_at(hl7_message)).where(hl7_message.c.id == message_id)).scalar()


def counts_since(conn: Connection, since: dt.datetime) -> dict[str, int]:
    """Messages acknowledged AA, AE and AR since `since` (the start of the facility's day); a resend of one
    already applied is not counted applied again."""
    rows = conn.execute(sa.select(hl7_message.c.ack_code, sa.func.count()).where(
        hl7_message.c.received_at >= since, hl7_message.c.duplicate_of.is_(None))
                        .group_by(hl7_message.c.ack_code)).all()
    return {code: 0 for code in ACK_CODES} | dict(rows)


def recent(conn: Connection, limit: int = 100, *, not_applied: bool = False, sender: str = "") -> list[dict]:
    """The latest messages, newest first, each AE or AR with `applied_at`, when a resend of it (the same
    sender and control id) was accepted; `not_applied`: only the AE and AR no resend has yet put right, the
    interface analyst's list of what is still to correct; `sender`: only those of that sending application."""
    applied_at = _applied_at(hl7_message)
    query = sa.select(*MESSAGE_COLUMNS, applied_at.label("applied_at"))
    if not_applied:
        query = query.where(hl7_message.c.ack_code != "AA", applied_at.is_(None))
    if sender:
        query = query.where(hl7_message.c.sending_application == sender)
    rows = conn.execute(query.order_by(hl7_message.c.received_at.desc(), hl7_message.c.id).limit(limit)).mappings()
    return [dict(row) for row in rows]


def message_text(conn: Connection, tenant: str, row) -> str | None:
    """The text of a message as received (`row`: its hl7_message row), None for one received before the log
    kept them (t0048). Patient data: `read_message` audits the read; a replay reads it to run it again."""
    if row.raw is None:
        return None
    key = audit.tenant_key(conn, tenant, row.raw_key_id)
    return keys.open_value(key, row.raw, purpose=RAW_PURPOSE, bound_to=str(row.id)).decode("utf-8")


def read_message(conn: Connection, tenant: str, principal: Principal, message_id: uuid.UUID) -> dict | None:
    """One message of the log for the interface analyst, None when the facility has no message of that id:
    its clear columns, `applied_at` (not applied itself, since applied by a resend or replay), its text as
    received (`text`; a replay's is the message it replayed), the message it repeats or replays (`first`),
    and the rows that repeat or replay it (`later`, oldest first). Its text is patient data: the read is
    audited, in the caller's transaction, before anything is given out."""
    row = conn.execute(sa.select(hl7_message, _applied_at(hl7_message).label("applied_at"))
                       .where(hl7_message.c.id == message_id)).first()
    if row is None:
        return None
    source_id = row.replay_of or row.id
    source = row if source_id == row.id else conn.execute(
        sa.select(hl7_message).where(hl7_message.c.id == source_id)).first()
    audit.append(conn, tenant=tenant, principal=principal, event_type="interop.hl7.message.read", action="R",
                 entity={"type": "hl7_message", "id": str(source.id)})
    first_id = row.duplicate_of or row.replay_of
    first = conn.execute(sa.select(*MESSAGE_COLUMNS).where(hl7_message.c.id == first_id)).mappings().first()
    later = conn.execute(sa.select(*MESSAGE_COLUMNS).where(
        sa.or_(hl7_message.c.duplicate_of == row.id, hl7_message.c.replay_of == row.id))
        .order_by(hl7_message.c.received_at, hl7_message.c.id)).mappings().all()
    found = {column: getattr(row, column) for column in (
        "id", "received_at", "sending_application", "sending_facility", "message_type", "control_id", "ack_code",
        "error_code", "error_text", "duplicate_of", "replay_of", "applied_at", "token_id")}
    return found | {"text": message_text(conn, tenant, source), "first": dict(first) if first else None,
                    "later": [dict(r) for r in later]}


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
    recent = sa.select(hl7_message.c.token_id, hl7_message.c.received_at, hl7_message.c.ack_code,
                       hl7_message.c.duplicate_of).where(
        hl7_message.c.received_at >= now - FEEDS_LOOK_BACK, hl7_message.c.token_id.is_not(None)).cte("recent")
    # A resend of a message applied long ago is the feed speaking (it counts as heard from), not one applied.
    last = sa.select(recent.c.token_id, sa.func.max(recent.c.received_at).label("last_at"),
                     sa.func.max(recent.c.received_at).filter(recent.c.ack_code == "AA",
                                                              recent.c.duplicate_of.is_(None)).label("applied_at")
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
