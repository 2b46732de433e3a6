"""Applying an HL7 v2 message to the record, all or nothing, as the feed's own principal.

`handle` takes one message from a feed (a facility's machine client, known by its API token) and
returns the acknowledgement:

- the token is resolved again for every message (`identity.principal_for_token`, as the HTTP API
  does), so a revoked token or disabled account stops the feed at its next message (AR);
- the header is checked: control id, version, processing id, a receiving facility that is this one,
  a supported type and trigger — else AR;
- a control id this sender already had accepted gets the ACK it was given, and nothing changes;
- otherwise the message is applied in ONE tenant transaction through the clinical and operations
  services, which validate and audit each act in that transaction as the feed's principal. Any
  refusal (unknown patient or test, a value the record will not take, a permission the token lacks)
  rolls the whole transaction back: AE or AR, with ERR naming the segment and field;
- every message is remembered in `hl7_message` (type, control id, ACK, error, ids created — never
  the message or demographics), and logged with tenant, control id, type and ACK code.

ADT^A04 registers (or finds) the patient and opens the visit; A01 admits (to a bed when PV1-3 names an
inpatient ward, through operations' ADT); A08 corrects the registration; A03 discharges. ORM^O01 orders
catalogue tests; ORU^R01 records each OBX as a result, linked to its order by the placer order number; VXU^V04
records each RXA as a vaccine dose (`immunization.py`).
"""

from __future__ import annotations

import traceback
import uuid
from collections.abc import Callable

import hl7
import sqlalchemy as sa
import structlog

from appliance.interop.hl7v2 import immunization, laboratory, messages, visits
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
from appliance.interop.hl7v2.models import hl7_message
from appliance.substrate import identity
from appliance.substrate.db import Database
from appliance.substrate.principal import Principal

log = structlog.get_logger("healthos.hl7")

# -- one message ----------------------------------------------------------------------------------------


def handle(db: Database, tenant: str, token: str, text: str) -> Acknowledgement:
    """The acknowledgement of one message from the feed holding `token`, the message applied or not."""
    try:
        message = messages.parse(text)
    except HL7Error as error:
        # Remembered too, under its sender and control id when its MSH reads: the admin's page lists it.
        header_only = messages.header_of(text)
        header = Header.read(header_only) if header_only is not None else Header("", "", "", "")
        ack = messages.acknowledge(header_only, error.ack, tenant, error)
        _remember_refusal(db, tenant, header, None, ack)
        log.info("hl7.message", tenant=tenant, control_id=header.control_id, ack=error.ack, error_code=error.code)
        return ack
    header = Header.read(message)
    structlog.contextvars.bind_contextvars(tenant=tenant, control_id=header.control_id,
                                           message_type=header.message_type)
    principal: Principal | None = None
    try:
        principal = feed_principal(db, tenant, token)
        _check_header(message, header, tenant)
        ack, duplicate = _apply(db, tenant, principal, message, header)
        log.info("hl7.message", ack=ack.code, duplicate=duplicate)
        return ack
    except HL7Error as error:
        ack = messages.acknowledge(message, error.ack, tenant, error)
    except Exception as exc:  # a bug: the sender gets AE 207 and no stack trace; the log gets the frames
        log.error("hl7.message.failed", error=type(exc).__name__,
                  frames="".join(traceback.format_tb(exc.__traceback__)))
        ack = messages.acknowledge(message, "AE", tenant, HL7Error(
            "AE", APPLICATION_INTERNAL_ERROR, "the appliance could not apply this message because of an internal "
            "error; nothing was written and the error was logged for the facility's IT"))
    finally:
        structlog.contextvars.unbind_contextvars("tenant", "control_id", "message_type")
    _remember_refusal(db, tenant, header, principal, ack)
    log.info("hl7.message", tenant=tenant, control_id=header.control_id, message_type=header.message_type,
             ack=ack.code, error_code=ack.error.code if ack.error else None)
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


def _apply(db: Database, tenant: str, principal: Principal, message: hl7.Message,
           header: Header) -> tuple[Acknowledgement, bool]:
    """Apply the message in one tenant transaction; a control id already accepted gets its first ACK."""
    with db.tenant(tenant) as conn:
        # Two connections delivering the same message at once: the second waits here for the first,
        # then finds its acceptance (the unique index is the backstop).
        key = "\x1f".join((header.sending_application, header.sending_facility, header.control_id))
        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(sa.func.hashtextextended(key, 0))))
        first = conn.execute(sa.select(hl7_message.c.ack).where(
            hl7_message.c.sending_application == header.sending_application,
            hl7_message.c.sending_facility == header.sending_facility,
            hl7_message.c.control_id == header.control_id, hl7_message.c.ack_code == "AA")).scalar()
        if first is not None:
            return Acknowledgement("AA", first), True
        act = Act(db, tenant, conn, principal, message, header)
        HANDLERS[header.message_type](act)
        ack = messages.acknowledge(message, "AA", tenant, note=act.duplicate_note)
        # A duplicate's note is kept where a refusal's text is: the Interfaces page shows it beside the AA.
        conn.execute(hl7_message.insert().values(
            id=uuid.uuid4(), sending_application=header.sending_application,
            sending_facility=header.sending_facility, message_type=header.message_type,
            control_id=header.control_id, ack_code="AA", created=act.created, token_id=principal.token_id,
            ack=ack.text, error_text=act.duplicate_note))
    for then in act.after_commit:
        then()
    if act.duplicates:
        log.info("hl7.message.duplicate", duplicates=len(act.duplicates))
    return ack, False


def _remember_refusal(db: Database, tenant: str, header: Header, principal: Principal | None,
                      ack: Acknowledgement) -> None:
    """An AE or AR is remembered in its own transaction: the message's own was rolled back. It is not
    a key: the sender may correct the cause (register the patient) and send the message again."""
    error = ack.error
    try:
        with db.tenant(tenant) as conn:
            conn.execute(hl7_message.insert().values(
                id=uuid.uuid4(), sending_application=header.sending_application,
                sending_facility=header.sending_facility, message_type=header.message_type or "?",
                control_id=header.control_id, ack_code=ack.code, error_code=error.code if error else None,
                error_text=error.text(for_storage=True)[:1000] if error else None,
                token_id=principal.token_id if principal else None))
    except Exception as exc:  # the ACK still goes out; the facility's IT sees this line
        log.error("hl7.message.not_remembered", tenant=tenant, control_id=header.control_id, error=type(exc).__name__)


HANDLERS: dict[str, Callable[[Act], None]] = {
    "ADT^A04": visits.register, "ADT^A01": visits.admit, "ADT^A08": visits.update, "ADT^A03": visits.discharge,
    "ORM^O01": laboratory.order, "ORU^R01": laboratory.results, "VXU^V04": immunization.record_doses,
}
