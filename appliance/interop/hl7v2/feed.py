"""Applying an HL7 v2 message to the record, all or nothing, as the feed's own principal.

`handle` takes one message from a feed (a facility's machine client, known by its API token) and
returns the acknowledgement:

- the token is resolved again for every message (`identity.principal_for_token`, as the HTTP API
  does), so a revoked token or disabled account stops the feed at its next message (AR);
- the header is checked: control id, version, processing id, a receiving facility that is this one,
  a supported type and trigger — else AR;
- a control id this sender already had accepted gets the ACK it was given, and nothing changes but a row
  saying it came again (`duplicate_of` the first acceptance);
- otherwise the message is applied in ONE tenant transaction through the clinical and operations
  services, which validate and audit each act in that transaction as the feed's principal. Any
  refusal (unknown patient or test, a value the record will not take, a permission the token lacks)
  rolls the whole transaction back: AE or AR, with ERR naming the segment and field;
- every message is remembered in `hl7_message` (type, control id, ACK, error, ids created, no demographics
  in the clear; the message as received sealed under the tenant's data key), and logged with tenant, control
  id, type and ACK code — never the message.

`replay` runs a message not applied again, as it was received, when the interface analyst asks from the
Interfaces page (the cause put right: the patient registered, the test added): the same handling as the feed's
principal, its result and ACK a row of its own beside the message (`replay_of`), audited as the analyst's act.
A message is applied once however often it is replayed or resent: the control id's lock and acceptance decide.

ADT^A04 registers (or finds) the patient and opens the visit; A01 admits (to a bed when PV1-3 names an
inpatient ward, through operations' ADT); A08 corrects the registration; A03 discharges. ORM^O01 orders
catalogue tests; ORU^R01 records each OBX as a result, linked to its order by the placer order number; VXU^V04
records each RXA as a vaccine dose (`immunization.py`).
"""

from __future__ import annotations

import datetime as dt
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import hl7
import sqlalchemy as sa
import structlog
from sqlalchemy.engine import Connection

from appliance.interop.hl7v2 import history, immunization, laboratory, messages, visits
from appliance.interop.hl7v2.act import Act, Header
from appliance.interop.hl7v2.messages import (
    APPLICATION_INTERNAL_ERROR,
    REQUIRED_FIELD_MISSING,
    TABLE_VALUE_NOT_FOUND,
    Acknowledgement,
    HL7Error,
    rejected,
    value,
)
from appliance.interop.hl7v2.models import RAW_PURPOSE, hl7_message
from appliance.substrate import audit, identity, keys
from appliance.substrate.db import Database
from appliance.substrate.principal import Principal

log = structlog.get_logger("healthos.hl7")

# -- one message ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Replay:
    """A message not applied, run again from the Interfaces page: `of` its row as received, `by` who asked."""

    of: uuid.UUID
    by: Principal


class ReplayRefused(Exception):
    """The message cannot be replayed, and nothing was written: `status` (404, 409) and a sentence saying why."""

    def __init__(self, status: int, problem: str):
        self.status, self.problem = status, problem
        super().__init__(problem)


def handle(db: Database, tenant: str, token: str, text: str) -> Acknowledgement:
    """The acknowledgement of one message from the feed holding `token`, the message applied or not."""
    return _receive(db, tenant, text, lambda: feed_principal(db, tenant, token))


def _receive(db: Database, tenant: str, text: str, principal_of: Callable[[], Principal],
             replay: Replay | None = None) -> Acknowledgement:
    try:
        message = messages.parse(text)
    except HL7Error as error:
        # Remembered too, under its sender and control id when its MSH reads: the admin's page lists it.
        header_only = messages.header_of(text)
        header = Header.read(header_only) if header_only is not None else Header("", "", "", "")
        ack = messages.acknowledge(header_only, error.ack, tenant, error)
        _remember_refusal(db, tenant, header, None, ack, text, replay)
        log.info("hl7.message", tenant=tenant, control_id=header.control_id, ack=error.ack, error_code=error.code)
        return ack
    header = Header.read(message)
    structlog.contextvars.bind_contextvars(tenant=tenant, control_id=header.control_id,
                                           message_type=header.message_type)
    principal: Principal | None = None
    try:
        principal = principal_of()
        _check_header(message, header, tenant)
        ack, duplicate = _apply(db, tenant, principal, message, header, text, replay)
        log.info("hl7.message", ack=ack.code, duplicate=duplicate, replay=replay is not None)
        return ack
    except HL7Error as error:
        ack = messages.acknowledge(message, error.ack, tenant, error)
    except ReplayRefused:
        raise
    except Exception as exc:  # a bug: the sender gets AE 207 and no stack trace; the log gets the frames
        log.error("hl7.message.failed", error=type(exc).__name__,
                  frames="".join(traceback.format_tb(exc.__traceback__)))
        ack = messages.acknowledge(message, "AE", tenant, HL7Error(
            "AE", APPLICATION_INTERNAL_ERROR, "the appliance could not apply this message because of an internal "
            "error; nothing was written and the error was logged for the facility's IT"))
    finally:
        structlog.contextvars.unbind_contextvars("tenant", "control_id", "message_type")
    _remember_refusal(db, tenant, header, principal, ack, text, replay)
    log.info("hl7.message", tenant=tenant, control_id=header.control_id, message_type=header.message_type,
             ack=ack.code, error_code=ack.error.code if ack.error else None, replay=replay is not None)
    return ack


def feed_principal(db: Database, tenant: str, token: str) -> Principal:
    """The feed's principal, resolved from its token as the HTTP API resolves a bearer token: AR when the
    token is revoked, its account disabled, or it belongs to another facility."""
    with db.control_autocommit() as conn:
        principal = identity.principal_for_token(conn, token)
    if principal is None:
        raise rejected(APPLICATION_INTERNAL_ERROR, "the feed's API token is unknown, revoked or its account "
                       "disabled: ask the facility admin for a new one")
    if principal.tenant != tenant:
        raise rejected(APPLICATION_INTERNAL_ERROR, "the feed's API token belongs to another facility")
    return principal


def _check_header(message: hl7.Message, header: Header, tenant: str) -> None:
    msh = message.segment("MSH")
    if not header.control_id:
        raise rejected(REQUIRED_FIELD_MISSING, "is missing", location=("MSH", 1, 10), label="message control id")
    version = value(msh, 12)
    if version not in messages.SUPPORTED_VERSIONS:
        raise rejected(messages.UNSUPPORTED_VERSION_ID, f"is not supported (this interface reads "
                       f"{', '.join(messages.SUPPORTED_VERSIONS)})", location=("MSH", 1, 12), label="version",
                       value=version or "(empty)")
    processing = value(msh, 11)
    if processing != "P":
        raise rejected(messages.UNSUPPORTED_PROCESSING_ID, "is not accepted: this appliance holds the real "
                       "record, so only production (P) messages are applied", location=("MSH", 1, 11),
                       label="processing id", value=processing or "(empty)")
    receiving = value(msh, 6)
    if receiving.lower() != tenant.lower():
        raise rejected(TABLE_VALUE_NOT_FOUND, f"is not this facility (send to {tenant})",
                       location=("MSH", 1, 6), label="receiving facility", value=receiving or "(empty)")
    kind, trigger = value(msh, 9, 1), value(msh, 9, 2)
    if kind not in messages.SUPPORTED_EVENTS:
        raise rejected(messages.UNSUPPORTED_MESSAGE_TYPE, "is not supported: this interface accepts ADT "
                       "(A01, A03, A04, A08), ORM^O01, ORU^R01 and VXU^V04", location=("MSH", 1, 9),
                       label="message type", value=kind or "(empty)")
    if trigger not in messages.SUPPORTED_EVENTS[kind]:
        raise rejected(messages.UNSUPPORTED_EVENT_CODE, f"is not supported for {kind} (accepted: "
                       f"{', '.join(messages.SUPPORTED_EVENTS[kind])})", location=("MSH", 1, 9),
                       label="trigger event", value=trigger or "(empty)")


def _apply(db: Database, tenant: str, principal: Principal, message: hl7.Message, header: Header, text: str,
           replay: Replay | None) -> tuple[Acknowledgement, bool]:
    """Apply the message in one tenant transaction; a control id already accepted gets its first ACK (a
    replay is refused instead, writing nothing: the analyst pressed it twice, or the sender resent meanwhile)."""
    with db.tenant(tenant) as conn:
        # Two connections delivering the same message at once: the second waits here for the first,
        # then finds its acceptance (the unique index is the backstop).
        key = "\x1f".join((header.sending_application, header.sending_facility, header.control_id))
        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(sa.func.hashtextextended(key, 0))))
        # The key the message is sealed under is read in the same statement: no round trip of its own.
        found = conn.execute(sa.select(audit.current_key_id().label("key_id"), sa.select(hl7_message.c.id).where(
            hl7_message.c.sending_application == header.sending_application,
            hl7_message.c.sending_facility == header.sending_facility,
            hl7_message.c.control_id == header.control_id, hl7_message.c.ack_code == "AA",
            hl7_message.c.duplicate_of.is_(None)).scalar_subquery().label("first_id"))).one()
        if found.first_id is not None:
            first = conn.execute(sa.select(hl7_message.c.ack, hl7_message.c.received_at)
                                 .where(hl7_message.c.id == found.first_id)).one()
            if replay is not None:
                raise ReplayRefused(409, f"This message was applied meanwhile (its control id was accepted at "
                                         f"{_utc(first.received_at)}): replaying it would change nothing.")
            _record(conn, tenant, header, principal, text, None, found.key_id, ack_code="AA", ack=first.ack,
                    duplicate_of=found.first_id)
            return Acknowledgement("AA", first.ack), True
        act = Act(db, tenant, conn, principal, message, header)
        HANDLERS[header.message_type](act)
        ack = messages.acknowledge(message, "AA", tenant, note=act.duplicate_note)
        # A duplicate's note is kept where a refusal's text is: the Interfaces page shows it beside the AA.
        _record(conn, tenant, header, principal, text, replay, found.key_id, ack_code="AA", created=act.created,
                ack=ack.text, error_text=act.duplicate_note)
    for then in act.after_commit:
        then()
    if act.duplicates:
        log.info("hl7.message.duplicate", duplicates=len(act.duplicates))
    return ack, False


def _remember_refusal(db: Database, tenant: str, header: Header, principal: Principal | None,
                      ack: Acknowledgement, text: str, replay: Replay | None) -> None:
    """An AE or AR is remembered in its own transaction: the message's own was rolled back. It is not
    a key: the sender may correct the cause (register the patient) and send the message again."""
    error = ack.error
    try:
        with db.tenant(tenant) as conn:
            _record(conn, tenant, header, principal, text, replay, None, ack_code=ack.code,
                    error_code=error.code if error else None,
                    error_text=error.text(for_storage=True)[:1000] if error else None)
    except Exception as exc:
        if replay is not None:
            raise  # the analyst is answered, and the replay's audit event is part of what failed
        # The ACK still goes out; the facility's IT sees this line.
        log.error("hl7.message.not_remembered", tenant=tenant, control_id=header.control_id, error=type(exc).__name__)


def _record(conn: Connection, tenant: str, header: Header, principal: Principal | None, text: str,
            replay: Replay | None, key_id: str | None, **outcome) -> uuid.UUID:
    """The message's row: what was done with it (`outcome`: the ACK code, error, ids created, ACK) and, for a
    message received, its text sealed under the tenant's data key (`key_id`, when the caller read it: the
    current one); a replay's row points at the message replayed, whose text it is, and is audited as the act
    of the analyst who asked for it."""
    row_id = uuid.uuid4()
    if replay is None:
        key = audit.tenant_key(conn, tenant, key_id)
        outcome |= {"raw_key_id": key.key_id, "raw": keys.seal_value(key, text.encode("utf-8"), purpose=RAW_PURPOSE,
                                                                        bound_to=str(row_id))}
    else:
        outcome["replay_of"] = replay.of
    conn.execute(hl7_message.insert().values(
        id=row_id, sending_application=header.sending_application, sending_facility=header.sending_facility,
        message_type=header.message_type or "?", control_id=header.control_id,
        token_id=principal.token_id if principal else None, **outcome))
    if replay is not None:
        audit.append(conn, tenant=tenant, principal=replay.by, event_type="interop.hl7.message.replay", action="E",
                     entity={"type": "hl7_message", "id": str(replay.of)},
                     detail={"replay": str(row_id), "ack": outcome["ack_code"]})
    return row_id


def _utc(moment: dt.datetime) -> str:
    return f"{moment.astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC"


def replay(db: Database, tenant: str, message_id: uuid.UUID, by: Principal) -> tuple[uuid.UUID, Acknowledgement]:
    """Run a message not applied again as it was received, as the feed that sent it (its token, if still live),
    recording the result beside it; ReplayRefused, nothing written, for a message of no feed of this facility,
    one applied (by a resend or an earlier replay), one received before messages were kept, or one whose feed
    is unknown or no longer live. A replay's row replays the message it replayed. The message's row id, and the
    replay's ACK."""
    with db.tenant(tenant) as conn:
        row = conn.execute(sa.select(hl7_message).where(hl7_message.c.id == message_id)).first()
        if row is not None and row.replay_of is not None:
            row = conn.execute(sa.select(hl7_message).where(hl7_message.c.id == row.replay_of)).first()
        if row is None:
            raise ReplayRefused(404, "No message your feeds sent to this facility has that id.")
        if row.ack_code == "AA":
            raise ReplayRefused(409, "This message was applied when it arrived (AA): there is nothing to replay.")
        applied = history.applied_at(conn, row.id)
        if applied is not None:
            raise ReplayRefused(409, f"This message was applied when it came again at {_utc(applied)} "
                                     "(a resend or a replay with its control id): replaying it would change nothing.")
        text = history.message_text(conn, tenant, row)
    if text is None:
        raise ReplayRefused(409, "This message arrived before the appliance kept messages as received, so there is "
                                 "nothing to replay: have the sending system resend it.")
    if row.token_id is None:
        raise ReplayRefused(409, "This message was refused before its feed's token was read (the message could not be "
                                 "read, or the token was unknown or revoked), so it cannot be replayed as the feed: "
                                 "have the sending system resend it.")
    with db.control_autocommit() as conn:
        principal = identity.principal_for_token_id(conn, row.token_id)
    if principal is None or principal.tenant != tenant:
        raise ReplayRefused(409, "The API token of the feed that sent this message has been revoked or its account "
                                 "disabled, and a replay runs as that feed: have the sending system resend it "
                                 "through the feed's new token.")
    return row.id, _receive(db, tenant, text, lambda: principal, Replay(row.id, by))


HANDLERS: dict[str, Callable[[Act], None]] = {
    "ADT^A04": visits.register, "ADT^A01": visits.admit, "ADT^A08": visits.update, "ADT^A03": visits.discharge,
    "ORM^O01": laboratory.order, "ORU^R01": laboratory.results, "VXU^V04": immunization.record_doses,
}
