"""One HL7 v2 message being applied: its transaction, the feed's principal, what it created, and how
the record's refusals become AE answers naming the HL7 field the refused value came from."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

import hl7
from pydantic import ValidationError
from sqlalchemy.engine import Connection

from appliance.interop.hl7v2 import messages
from appliance.interop.hl7v2.messages import (
    APPLICATION_INTERNAL_ERROR,
    DATA_TYPE_ERROR,
    DUPLICATE_KEY_IDENTIFIER,
    TABLE_VALUE_NOT_FOUND,
    UNKNOWN_KEY_IDENTIFIER,
    not_applied,
    rejected,
    value,
)
from appliance.substrate.db import Database
from appliance.substrate.principal import Principal
from appliance.substrate.problems import validator_message
from appliance.substrate.record import RecordError


@dataclass(frozen=True)
class Header:
    sending_application: str
    sending_facility: str
    message_type: str  # ADT^A04
    control_id: str

    @classmethod
    def read(cls, message: hl7.Message) -> Header:
        msh = message.segment("MSH")
        return cls(value(msh, 3)[:100], value(msh, 4)[:100], messages.message_type(message)[:20],
                   value(msh, 10)[:100])

    @property
    def sender(self) -> str:
        return f"{self.sending_application}/{self.sending_facility}"


@dataclass
class Act:
    """One message being applied: its transaction, its principal, and what it created."""

    db: Database
    tenant: str
    conn: Connection
    principal: Principal
    message: hl7.Message
    header: Header
    created: dict[str, list[str]] = field(default_factory=dict)
    # Run once the message's transaction has committed: what the appliance's identity index must be told
    # after the facility's record changed (a tenant transaction cannot write it).
    after_commit: list[Callable[[], None]] = field(default_factory=list)
    # What the message repeated of the record and so did not write again ("OBX 2 (718-7)": a final result sent
    # twice), for its ACK and the feed's log to say.
    duplicates: list[str] = field(default_factory=list)

    def require(self, permission: str, doing: str) -> None:
        if not self.principal.can(permission):
            raise rejected(APPLICATION_INTERNAL_ERROR, f"the feed's token may not {doing}: it needs the "
                           f"permission {permission}")

    def made(self, kind: str, entity_id: uuid.UUID) -> None:
        self.created.setdefault(kind, []).append(str(entity_id))

    def duplicate(self, what: str) -> None:
        self.duplicates.append(what)

    @property
    def duplicate_note(self) -> str | None:
        """What the ACK and the feed's log say of the parts the record held already; None when there were none."""
        if not self.duplicates:
            return None
        return (f"duplicate: {', '.join(self.duplicates)} repeated a final result already recorded with the same "
                "value; nothing new was written for it")


# Where a value came from: its field number in the segment `refusals` is given, or (segment, sequence, field)
# for one read from another segment (a result's time from its OBR or the MSH).
Source = int | tuple[str, int, int]


@contextmanager
def refusals(segment: str, sequence: int, fields: Mapping[str, tuple[Source, str]]) -> Iterator[None]:
    """What the record refuses (its errors, or a schema's validation) as an AE naming the HL7 field the
    refused value came from: `fields` maps the service's field names to (where, label)."""

    def location(where: tuple[Source, str] | None) -> tuple[str, int, int] | None:
        if where is None:
            return None
        return where[0] if isinstance(where[0], tuple) else (segment, sequence, where[0])

    try:
        yield
    except RecordError as exc:
        name = str(exc.extra.get("field") or "")
        where = fields.get(name)
        if exc.status == 404:
            code = UNKNOWN_KEY_IDENTIFIER
        elif exc.status == 409:
            code = DUPLICATE_KEY_IDENTIFIER if "identifier" in name else messages.APPLICATION_RECORD_LOCKED
        elif name in {"code", "ward_code", "bed_code", "disposition", "template_code"}:
            code = TABLE_VALUE_NOT_FOUND
        else:
            code = DATA_TYPE_ERROR
        raise not_applied(code, exc.detail, location=location(where), label=where[1] if where else None,
                          private=True) from None
    except ValidationError as exc:
        first = exc.errors()[0]
        name = str(first["loc"][0]) if first["loc"] else ""
        where = fields.get(name)
        problem = validator_message(first["msg"])
        code = TABLE_VALUE_NOT_FOUND if first["type"] in {"literal_error", "enum"} else DATA_TYPE_ERROR
        raise not_applied(code, problem[:1].lower() + problem[1:], location=location(where),
                          label=where[1] if where else None, private=True) from None
