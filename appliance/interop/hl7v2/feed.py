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
catalogue tests; ORU^R01 records each OBX as a result, linked to its order by the placer order number.
"""

from __future__ import annotations

import re
import traceback
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

import hl7
import sqlalchemy as sa
import structlog
from pydantic import ValidationError
from sqlalchemy.engine import Connection

from appliance.interop.hl7v2 import messages
from appliance.interop.hl7v2.messages import (
    APPLICATION_INTERNAL_ERROR,
    DATA_TYPE_ERROR,
    DUPLICATE_KEY_IDENTIFIER,
    REQUIRED_FIELD_MISSING,
    TABLE_VALUE_NOT_FOUND,
    UNKNOWN_KEY_IDENTIFIER,
    Acknowledgement,
    HL7Error,
    not_applied,
    rejected,
    value,
)
from appliance.interop.hl7v2.models import hl7_message, hl7_placer_order
from appliance.layers.clinical import service
from appliance.layers.clinical.schemas import EncounterIn, PatientIn, ResultIn, ServiceRequestIn
from appliance.layers.operations import adt, ed
from appliance.layers.operations.errors import NotFound as NoEmergencyVisit
from appliance.substrate import identity
from appliance.substrate.db import Database
from appliance.substrate.principal import Principal
from appliance.substrate.record import RecordError

log = structlog.get_logger("healthos.hl7")

PATIENT_CLASSES = {"O": "outpatient", "E": "emergency", "I": "inpatient"}
SEXES = {"F": "female", "M": "male", "O": "other", "A": "other", "U": "unknown", "N": "unknown"}
# HL7 table 0112 (discharge disposition) → the operations layer's dispositions.
DISPOSITIONS = {"01": "home", "02": "transfer_out", "03": "transfer_out", "04": "transfer_out",
                "05": "transfer_out", "06": "home", "07": "left_against_advice", "20": "died"}
ED_DISPOSITIONS = {"home": "discharged", "transfer_out": "transferred", "died": "died",
                   "left_against_advice": "left_against_advice", "other": "discharged"}
PRIORITIES = {"S": "stat", "A": "urgent", "R": "routine", "": "routine"}
RESULT_FLAGS = {"N": "N", "L": "L", "H": "H", "LL": "LL", "HH": "HH", "A": "A", "AA": "A", "<": "L", ">": "H"}
RESULT_STATUSES = {"F": None, "C": "corrected result", "P": "preliminary result"}
NUMERIC_TYPES = ("NM", "SN")
TEXT_TYPES = ("ST", "TX", "FT", "CE", "CWE")


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


# -- one message ----------------------------------------------------------------------------------------


def handle(db: Database, tenant: str, token: str, text: str) -> Acknowledgement:
    """The acknowledgement of one message from the feed holding `token`, the message applied or not."""
    try:
        message = messages.parse(text)
    except HL7Error as error:
        log.info("hl7.message", tenant=tenant, ack=error.ack, error_code=error.code)
        return messages.acknowledge(None, error.ack, tenant, error)
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
                       "(A01, A03, A04, A08), ORM^O01 and ORU^R01", location=("MSH", 1, 9), label="message type",
                       value=kind or "(empty)")
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
        ack = messages.acknowledge(message, "AA", tenant)
        conn.execute(hl7_message.insert().values(
            id=uuid.uuid4(), sending_application=header.sending_application,
            sending_facility=header.sending_facility, message_type=header.message_type,
            control_id=header.control_id, ack_code="AA", created=act.created, token_id=principal.token_id,
            ack=ack.text))
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


# -- acts -----------------------------------------------------------------------------------------------


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

    def require(self, permission: str, doing: str) -> None:
        if not self.principal.can(permission):
            raise rejected(APPLICATION_INTERNAL_ERROR, f"the feed's token may not {doing}: it needs the "
                           f"permission {permission}")

    def made(self, kind: str, entity_id: uuid.UUID) -> None:
        self.created.setdefault(kind, []).append(str(entity_id))


@contextmanager
def refusals(segment: str, sequence: int, fields: dict[str, tuple[int, str]]) -> Iterator[None]:
    """What the record refuses (its errors, or a schema's validation) as an AE naming the HL7 field the
    refused value came from: `fields` maps the service's field names to (field number, label)."""
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
        raise not_applied(code, exc.detail, location=(segment, sequence, where[0]) if where else None,
                          label=where[1] if where else None, private=True) from None
    except ValidationError as exc:
        first = exc.errors()[0]
        name = str(first["loc"][0]) if first["loc"] else ""
        where = fields.get(name)
        problem = re.sub(r"^(Value error|Assertion failed), ", "", first["msg"])
        code = TABLE_VALUE_NOT_FOUND if first["type"] in {"literal_error", "enum"} else DATA_TYPE_ERROR
        raise not_applied(code, problem[:1].lower() + problem[1:], location=(segment, sequence, where[0])
                          if where else None, label=where[1] if where else None, private=True) from None


# -- patients (PID) ---------------------------------------------------------------------------------------

PID_FIELDS = {"identifiers": (3, "patient identifiers"), "family_name": (5, "family name"),
              "given_names": (5, "given names"), "birth_date": (7, "birth date"), "sex": (8, "sex"),
              "address": (11, "address"), "phone": (13, "phone"), "patient_id": (3, "patient identifiers")}


@dataclass(frozen=True)
class PatientIdentifier:
    system: str
    value: str
    ours: bool  # this facility's own MRN (assigning authority: this facility)


def _system(authority: str, kind: str, fallback: str) -> str:
    """An identifier system from PID-3's assigning authority and type: a national ID (type NI) is the
    registration desk's `national_id`; others are named by who assigns them, e.g. `lab_pas_mr`."""
    if kind.upper() == "NI":
        return "national_id"
    name = re.sub(r"[^a-z0-9]+", "_", f"{authority or fallback}_{kind or 'id'}".lower()).strip("_")
    return ("id_" + name if not name[:1].isalpha() else name)[:31]


def patient_identifiers(act: Act, pid: hl7.Segment) -> list[PatientIdentifier]:
    found: dict[str, PatientIdentifier] = {}
    for rep in range(1, messages.repetitions(pid, 3) + 1):
        number = value(pid, 3, 1, repetition=rep)
        if not number:
            continue
        authority, kind = value(pid, 3, 4, repetition=rep), value(pid, 3, 5, repetition=rep)
        ours = authority.lower() == act.tenant.lower() and kind.upper() in {"MR", ""}
        system = "mrn" if ours else _system(authority, kind, act.header.sending_application)
        if len(number) > 64:
            raise not_applied(DATA_TYPE_ERROR, "is longer than 64 characters", location=("PID", 1, 3),
                              label="patient identifier")
        found.setdefault(system, PatientIdentifier(system, number, ours))
    if not found:
        raise not_applied(REQUIRED_FIELD_MISSING, "holds no identifier: the patient cannot be found or "
                          "registered without one", location=("PID", 1, 3), label="patient identifier list")
    # A national ID first: it is what links a person across facilities.
    return sorted(found.values(), key=lambda i: (i.system != "national_id", not i.ours))


def find_patient(act: Act, identifiers: list[PatientIdentifier]) -> dict | None:
    """The facility's patient holding one of PID-3's identifiers, through the search the API uses; two
    different patients named by one message is a refusal, not a guess."""
    act.require("clinical.patient.search", "look patients up")
    matched: set[uuid.UUID] = set()
    for identifier in identifiers:
        for row in service.search_patients(act.conn, act.principal, identifier=identifier.value, limit=100):
            if identifier.ours:
                if row["mrn"] == identifier.value:
                    matched.add(row["id"])
                continue
            held = service.patient_of(act.conn, row["id"])["identifiers"]
            if {"system": identifier.system, "value": identifier.value} in held:
                matched.add(row["id"])
    if len(matched) > 1:
        raise not_applied(DUPLICATE_KEY_IDENTIFIER, "name two different patients of this facility; nothing "
                          "was applied (merge or correct them first)", location=("PID", 1, 3),
                          label="patient identifiers")
    if not matched:
        return None
    act.require("clinical.patient.read", "read registrations")
    return service.get_patient(act.conn, act.principal, matched.pop())


def known_patient(act: Act) -> dict:
    pid = messages.one_segment(act.message, "PID")
    patient = find_patient(act, patient_identifiers(act, pid))
    if patient is None:
        raise not_applied(UNKNOWN_KEY_IDENTIFIER, "match no patient of this facility: register the patient "
                          "first (ADT^A04 or A01)", location=("PID", 1, 3), label="patient identifiers")
    return patient


def patient_data(act: Act, pid: hl7.Segment, identifiers: list[PatientIdentifier]) -> dict:
    """PID (and NK1) as the fields of the clinical layer's `PatientIn`; only what the message holds."""
    family, given = value(pid, 5, 1), " ".join(p for p in (value(pid, 5, 2), value(pid, 5, 3)) if p)
    if not family:
        raise not_applied(REQUIRED_FIELD_MISSING, "has no family name", location=("PID", 1, 5), label="patient name")
    if not given:
        raise not_applied(REQUIRED_FIELD_MISSING, "has no given name", location=("PID", 1, 5), label="patient name")
    born = value(pid, 7)
    if not born:
        raise not_applied(REQUIRED_FIELD_MISSING, "is missing", location=("PID", 1, 7), label="birth date")
    birth_date, estimated = messages.hl7_date(born, location=("PID", 1, 7), label="birth date")
    sex_code = value(pid, 8).upper()
    if sex_code and sex_code not in SEXES:
        raise not_applied(TABLE_VALUE_NOT_FOUND, "is not one of F, M, O, A, U, N (HL7 table 0001)",
                          location=("PID", 1, 8), label="sex", value=sex_code)
    data: dict = {"family_name": family, "given_names": given, "birth_date": birth_date,
                  "birth_date_estimated": estimated, "sex": SEXES.get(sex_code, "unknown"),
                  "identifiers": [{"system": i.system, "value": i.value} for i in identifiers if not i.ours]}
    phone = value(pid, 13, 1) or value(pid, 13, 12)
    if phone:
        data["phone"] = phone
    address = {"line": " ".join(p for p in (value(pid, 11, 1), value(pid, 11, 2)) if p) or None,
               "village": value(pid, 11, 3) or None, "region": value(pid, 11, 4) or None,
               "district": value(pid, 11, 9) or None}
    country = value(pid, 11, 6).upper()
    if re.fullmatch(r"[A-Z]{2}", country):
        address["country"] = country
    address = {k: v for k, v in address.items() if v}
    if address:
        data["address"] = address
    kin = []
    for nk1 in messages.segments(act.message, "NK1"):
        name = " ".join(p for p in (value(nk1, 2, 2), value(nk1, 2, 1)) if p)
        if name:
            kin.append({"name": name, "relationship": value(nk1, 3, 2) or value(nk1, 3, 1) or "contact",
                        "phone": value(nk1, 5, 1) or None})
    if kin:
        data["next_of_kin"] = kin
    return data


def register_or_find(act: Act) -> uuid.UUID:
    """The patient of PID: found by identifier, else registered and linked to their one-identity subject."""
    pid = messages.one_segment(act.message, "PID")
    identifiers = patient_identifiers(act, pid)
    data = patient_data(act, pid, identifiers)
    found = find_patient(act, identifiers)
    if found is not None:
        return found["id"]
    if any(i.ours for i in identifiers) and not data["identifiers"]:
        raise not_applied(UNKNOWN_KEY_IDENTIFIER, "is not an MRN of this facility", location=("PID", 1, 3),
                          label="medical record number")
    act.require("clinical.patient.create", "register patients")
    with refusals("PID", 1, PID_FIELDS):
        linked = service.with_subject(act.db, PatientIn.model_validate(data))
        registered = service.register_patient(act.conn, act.principal, linked)
    act.made("patient", registered["id"])
    return registered["id"]


# -- ADT ------------------------------------------------------------------------------------------------

PV1_FIELDS = {"ward_code": (3, "assigned location (ward)"), "bed_code": (3, "assigned location (bed)"),
              "encounter_class": (2, "patient class"), "disposition": (36, "discharge disposition"),
              "patient_id": (3, "assigned location"), "status": (2, "patient class")}


def _patient_class(pv1: hl7.Segment) -> str:
    code = value(pv1, 2).upper()
    if code not in PATIENT_CLASSES:
        raise not_applied(TABLE_VALUE_NOT_FOUND, "is not one this facility records: O (outpatient), E "
                          "(emergency) or I (inpatient)", location=("PV1", 1, 2), label="patient class",
                          value=code or "(empty)")
    return PATIENT_CLASSES[code]


def _open_visit(act: Act, patient_id: uuid.UUID, encounter_class: str, pv1: hl7.Segment) -> None:
    with refusals("PV1", 1, PV1_FIELDS):
        if encounter_class == "emergency":
            # An emergency visit is the ED's: the arrival puts the patient on the ED board.
            act.require("operations.ed.create", "record emergency arrivals")
            visit = ed.arrive(act.conn, act.principal, patient_id, complaint=value(pv1, 18) or None)
            act.made("encounter", visit["id"])
            return
        act.require("clinical.encounter.create", "open encounters")
        status = "in_progress" if encounter_class == "inpatient" else "arrived"
        opened = service.open_encounter(act.conn, act.principal, patient_id,
                                        EncounterIn(encounter_class=encounter_class, status=status))
        act.made("encounter", opened["id"])


def adt_register(act: Act) -> None:
    """A04: the patient registered (or found) and the visit opened."""
    patient_id = register_or_find(act)
    pv1 = messages.one_segment(act.message, "PV1")
    _open_visit(act, patient_id, _patient_class(pv1), pv1)


def adt_admit(act: Act) -> None:
    """A01: an inpatient admitted — to a bed when PV1-3 names a ward of this facility (the bed PV1-3.3, or
    the ward's first free one), else an inpatient encounter awaiting a bed. Other classes: a visit."""
    patient_id = register_or_find(act)
    pv1 = messages.one_segment(act.message, "PV1")
    encounter_class = _patient_class(pv1)
    ward = value(pv1, 3, 1)
    if encounter_class != "inpatient" or not ward:
        _open_visit(act, patient_id, encounter_class, pv1)
        return
    act.require("operations.admission.create", "admit patients")
    with refusals("PV1", 1, PV1_FIELDS):
        stay = adt.admit(act.conn, act.principal, patient_id, ward_code=ward, bed_code=value(pv1, 3, 3) or None,
                         reason=value(pv1, 18) or None)
    act.made("encounter", stay["encounter_id"])
    act.made("admission", stay["id"])


def adt_update(act: Act) -> None:
    """A08: the registration corrected from PID; what the message leaves out (address, phone, identifiers
    of other systems, next of kin) stays as it was."""
    pid = messages.one_segment(act.message, "PID")
    identifiers = patient_identifiers(act, pid)
    data = patient_data(act, pid, identifiers)
    patient = find_patient(act, identifiers)
    if patient is None:
        raise not_applied(UNKNOWN_KEY_IDENTIFIER, "match no patient of this facility: nothing to update",
                          location=("PID", 1, 3), label="patient identifiers")
    act.require("clinical.patient.update", "correct registrations")
    sent = {i["system"] for i in data["identifiers"]}
    data["identifiers"] = [i for i in patient["identifiers"] if i["system"] not in sent] + data["identifiers"]
    for kept in ("phone", "address", "next_of_kin", "contacts"):
        if kept not in data and patient.get(kept):
            data[kept] = patient[kept]
    data["subject_id"] = patient["subject_id"]
    with refusals("PID", 1, PID_FIELDS):
        service.update_patient(act.conn, act.principal, patient["id"], PatientIn.model_validate(data),
                               reason=f"HL7 {act.header.message_type} from {act.header.sender}, "
                                      f"message {act.header.control_id}")
    act.made("patient", patient["id"])


def adt_discharge(act: Act) -> None:
    """A03: an admitted patient discharged from their bed (PV1-36 the disposition); an ED patient departs;
    another open visit is finished."""
    patient = known_patient(act)
    pv1 = messages.one_segment(act.message, "PV1")
    code = value(pv1, 36)
    disposition = DISPOSITIONS.get(code, "other") if code else "home"
    conn, principal = act.conn, act.principal
    with refusals("PV1", 1, PV1_FIELDS):
        act.require("clinical.encounter.read", "read encounters")
        stay = adt.current_stay(conn, principal, patient["id"])
        if stay is not None:
            act.require("operations.admission.update", "discharge patients")
            adt.discharge(conn, principal, patient["id"], disposition=disposition)
            act.made("encounter", stay["encounter_id"])
            return
        open_visits = [e for e in service.list_encounters(conn, principal, patient["id"])
                       if e["status"] in {"arrived", "in_progress"}]
        if not open_visits:
            raise not_applied(UNKNOWN_KEY_IDENTIFIER, "has no open visit at this facility to discharge",
                              location=("PID", 1, 3), label="patient")
        visit = open_visits[0]
        departed = False
        if visit["encounter_class"] == "emergency":
            act.require("operations.ed.update", "record emergency departures")
            try:
                ed.depart(conn, principal, patient["id"], visit["id"], disposition=ED_DISPOSITIONS[disposition])
                departed = True
            except NoEmergencyVisit:  # an emergency encounter opened without an ED arrival: finished below
                pass
        if not departed:
            act.require("clinical.encounter.update", "finish encounters")
            if visit["status"] == "arrived":
                service.transition_encounter(conn, principal, patient["id"], visit["id"], "in_progress")
            service.transition_encounter(conn, principal, patient["id"], visit["id"], "finished")
        act.made("encounter", visit["id"])


# -- orders (ORM^O01) -----------------------------------------------------------------------------------

OBR_FIELDS = {"code": (4, "universal service identifier"), "priority": (27, "priority"),
              "clinical_info": (13, "relevant clinical information"), "encounter_id": (2, "placer order number")}


def _loinc(segment: hl7.Segment, name: str, number: int, label: str) -> str:
    code, system = value(segment, number, 1), value(segment, number, 3).upper()
    if not code:
        raise not_applied(REQUIRED_FIELD_MISSING, "is missing", location=(name, 1, number), label=label)
    if system not in {"", "LN"}:
        raise not_applied(TABLE_VALUE_NOT_FOUND, f"is coded in {system}: this facility's catalogue is LOINC (LN)",
                          location=(name, 1, number), label=label, value=code)
    return code


def _placer(obr: hl7.Segment, orc: hl7.Segment | None) -> tuple[str, str]:
    number, namespace = value(obr, 2, 1), value(obr, 2, 2)
    if not number and orc is not None:
        number, namespace = value(orc, 2, 1), value(orc, 2, 2)
    return number[:100], namespace[:100]


def order(act: Act) -> None:
    """ORM^O01: each ORC/OBR a new order (ORC-1 NW) of a test in the facility's LOINC catalogue."""
    patient = known_patient(act)
    act.require("clinical.order.create", "place orders")
    orc: hl7.Segment | None = None
    obrs = 0
    for segment in act.message:
        name = str(segment[0])
        if name == "ORC":
            orc = segment
            control = value(orc, 1).upper()
            if control not in {"NW", ""}:
                raise not_applied(TABLE_VALUE_NOT_FOUND, "is not supported: this interface accepts new orders "
                                  "(NW) only", location=("ORC", 1, 1), label="order control", value=control)
        if name != "OBR":
            continue
        obrs += 1
        code = _loinc(segment, "OBR", 4, "universal service identifier (test)")
        priority = PRIORITIES.get(value(segment, 27, 6).upper() or (value(orc, 7, 6).upper() if orc else ""))
        if priority is None:
            raise not_applied(TABLE_VALUE_NOT_FOUND, "is not S, A or R", location=("OBR", obrs, 27),
                              label="priority", value=value(segment, 27, 6))
        number, namespace = _placer(segment, orc)
        if number and act.conn.execute(sa.select(hl7_placer_order.c.service_request_id).where(
                hl7_placer_order.c.placer_number == number, hl7_placer_order.c.placer_namespace == namespace)).first():
            raise not_applied(DUPLICATE_KEY_IDENTIFIER, "was already used for another order", location=("OBR", obrs, 2),
                              label="placer order number", value=number)
        with refusals("OBR", obrs, OBR_FIELDS):
            ordered = service.order_test(act.conn, act.principal, patient["id"], ServiceRequestIn(
                code=code, priority=priority, clinical_info=value(segment, 13)[:1000] or None))
        if number:
            act.conn.execute(hl7_placer_order.insert().values(
                placer_number=number, placer_namespace=namespace, service_request_id=ordered["root_id"],
                patient_id=patient["id"]))
        act.made("service_request", ordered["root_id"])
    if not obrs:
        raise not_applied(REQUIRED_FIELD_MISSING, "the message has no OBR segment: nothing to order")


# -- results (ORU^R01) ----------------------------------------------------------------------------------

OBX_FIELDS = {"code": (3, "observation identifier"), "value": (5, "observation value"), "unit": (6, "units"),
              "reference_low": (7, "reference range"), "reference_high": (7, "reference range"),
              "flag": (8, "abnormal flag"), "service_request_id": (3, "observation identifier"),
              "note": (5, "observation value")}


def _order_of(act: Act, patient_id: uuid.UUID, obr: hl7.Segment, sequence: int) -> uuid.UUID | None:
    """The order a result answers: OBR-2's placer order number, as a feed's ORM gave it, or the id of an
    order placed in HealthOS; None when OBR-2 is empty."""
    number, namespace = _placer(obr, None)
    if not number:
        return None
    mapped = act.conn.execute(sa.select(hl7_placer_order.c.service_request_id).where(
        hl7_placer_order.c.placer_number == number, hl7_placer_order.c.placer_namespace == namespace,
        hl7_placer_order.c.patient_id == patient_id)).scalar()
    if mapped is not None:
        return mapped
    try:
        return uuid.UUID(number)
    except ValueError:
        raise not_applied(UNKNOWN_KEY_IDENTIFIER, "matches no order of this patient at this facility",
                          location=("OBR", sequence, 2), label="placer order number", value=number) from None


def _reference_range(text: str, sequence: int) -> tuple[Decimal | None, Decimal | None]:
    if not text:
        return None, None
    try:
        if match := re.fullmatch(r"\s*(-?[\d.]+)\s*-\s*(-?[\d.]+)\s*", text):
            return Decimal(match[1]), Decimal(match[2])
        if match := re.fullmatch(r"\s*(>=?|<=?)\s*(-?[\d.]+)\s*", text):
            bound = Decimal(match[2])
            return (bound, None) if match[1].startswith(">") else (None, bound)
    except InvalidOperation:
        pass
    raise not_applied(DATA_TYPE_ERROR, "is not low-high, >low or <high", location=("OBX", sequence, 7),
                      label="reference range", value=text)


def _observation_value(obx: hl7.Segment, sequence: int) -> Decimal | str:
    kind = value(obx, 2).upper()
    where = {"location": ("OBX", sequence, 5), "label": "observation value"}
    if kind in NUMERIC_TYPES:
        text = value(obx, 5, 2) if kind == "SN" else value(obx, 5)
        if kind == "SN" and value(obx, 5, 1) not in {"", "="}:
            raise not_applied(DATA_TYPE_ERROR, f"with comparator {value(obx, 5, 1)} cannot be recorded as a "
                              "number", value=text, **where)
        try:
            number = Decimal(text)
        except InvalidOperation:
            raise not_applied(DATA_TYPE_ERROR, f"is not a number (OBX-2 is {kind})", value=text or "(empty)",
                              **where) from None
        if not number.is_finite():
            raise not_applied(DATA_TYPE_ERROR, "is not a finite number", value=text, **where)
        return number
    if kind in TEXT_TYPES:
        text = value(obx, 5, 2) or value(obx, 5, 1) if kind in {"CE", "CWE"} else value(obx, 5)
        if not text:
            raise not_applied(REQUIRED_FIELD_MISSING, "is empty", **where)
        return text[:2000]
    readable = ", ".join(NUMERIC_TYPES + TEXT_TYPES)
    raise not_applied(TABLE_VALUE_NOT_FOUND, f"is not one this interface reads ({readable})",
                      location=("OBX", sequence, 2), label="value type", value=kind or "(empty)")


def results(act: Act) -> None:
    """ORU^R01: each OBX a result with its value, units, reference range and abnormal flag, linked to the
    order its OBR names; NTE segments after an OBX become its note."""
    patient = known_patient(act)
    act.require("clinical.result.create", "record results")
    order_id: uuid.UUID | None = None
    pending: list[tuple[int, hl7.Segment, list[str], uuid.UUID | None]] = []
    obr_seen = obx_seen = 0
    for segment in act.message:
        name = str(segment[0])
        if name == "OBR":
            _record(act, patient["id"], pending)
            pending = []
            obr_seen += 1
            order_id = _order_of(act, patient["id"], segment, obr_seen)
        elif name == "OBX":
            obx_seen += 1
            pending.append((obx_seen, segment, [], order_id))
        elif name == "NTE" and pending:
            pending[-1][2].append(value(segment, 3))
    _record(act, patient["id"], pending)
    if not obx_seen:
        raise not_applied(REQUIRED_FIELD_MISSING, "the message has no OBX segment: no result to record")


def _record(act: Act, patient_id: uuid.UUID, pending: list) -> None:
    for sequence, obx, notes, order_id in pending:
        code = _loinc(obx, "OBX", 3, "observation identifier")
        status = value(obx, 11).upper() or "F"
        if status not in RESULT_STATUSES:
            raise not_applied(TABLE_VALUE_NOT_FOUND, "is not recorded by this interface (F final, C corrected, "
                              "P preliminary)", location=("OBX", sequence, 11), label="result status", value=status)
        flag_code = value(obx, 8).upper()
        if flag_code and flag_code not in RESULT_FLAGS:
            raise not_applied(TABLE_VALUE_NOT_FOUND, f"is not one of {', '.join(RESULT_FLAGS)}",
                              location=("OBX", sequence, 8), label="abnormal flag", value=flag_code)
        low, high = _reference_range(value(obx, 7), sequence)
        note = "; ".join(n for n in [RESULT_STATUSES[status], *notes] if n)[:2000] or None
        with refusals("OBX", sequence, OBX_FIELDS):
            recorded = service.record_result(act.conn, act.principal, patient_id, ResultIn(
                code=code, service_request_id=order_id, value=_observation_value(obx, sequence),
                unit=value(obx, 6, 1) or None, reference_low=low, reference_high=high,
                flag=RESULT_FLAGS.get(flag_code), note=note))
        act.made("result", recorded["id"])


HANDLERS: dict[str, Callable[[Act], None]] = {
    "ADT^A04": adt_register, "ADT^A01": adt_admit, "ADT^A08": adt_update, "ADT^A03": adt_discharge,
    "ORM^O01": order, "ORU^R01": results,
}
