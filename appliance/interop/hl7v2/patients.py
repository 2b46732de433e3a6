"""The patient of a message (PID, and NK1): its identifiers, matched to the facility's patients through
the search the API uses, and its demographics as the clinical layer's registration, registered when
new and linked to the one-identity subject as the API's registration links it."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import hl7
import sqlalchemy as sa

from appliance.interop.hl7v2 import messages
from appliance.interop.hl7v2.act import Act, refusals
from appliance.interop.hl7v2.messages import (
    DATA_TYPE_ERROR,
    DUPLICATE_KEY_IDENTIFIER,
    REQUIRED_FIELD_MISSING,
    TABLE_VALUE_NOT_FOUND,
    UNKNOWN_KEY_IDENTIFIER,
    not_applied,
    value,
)
from appliance.layers.clinical import service
from appliance.layers.clinical.models import patient_identifier
from appliance.layers.clinical.schemas import PatientIn

SEXES = {"F": "female", "M": "male", "O": "other", "A": "other", "U": "unknown", "N": "unknown"}
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
        found = service.search_patients(act.conn, act.principal, identifier=identifier.value, limit=100)
        if identifier.ours:
            matched |= {row["id"] for row in found if row["mrn"] == identifier.value}
        elif found:
            # Which of the patients the search found (and noted) hold the value in this system: only
            # their identifiers, in one statement; the match's registration is read below, audited.
            matched |= set(act.conn.execute(sa.select(patient_identifier.c.patient_id).where(
                patient_identifier.c.patient_id.in_([row["id"] for row in found]),
                patient_identifier.c.system == identifier.system,
                patient_identifier.c.value == identifier.value)).scalars())
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
    with refusals("PID", 1, PID_FIELDS), national_id_asked():
        registration = PatientIn.model_validate(data)
        linked = service.link_registration(act.db, act.principal, registration, tenant=act.tenant,
                                           chart_conn=act.conn)
        registered = service.register_patient(act.conn, act.principal, linked)
    act.made("patient", registered["id"])
    return registered["id"]


@contextmanager
def national_id_asked() -> Iterator[None]:
    """The question a registration or a corrected national ID is asked when the person holding that ID at
    another facility was born on another day or is of another sex (`service.link_registration`): a feed cannot
    answer it, so the message is not applied (AE 205 at PID-3, naming only what differs) and the sending
    system's clerk checks the card. Asked too often this hour, the ID is not compared again (AE 206, the record
    locked for now), whatever the message says of the patient."""
    try:
        yield
    except service.NationalIdAskedTooOften:
        raise not_applied(messages.APPLICATION_RECORD_LOCKED, "was sent too often in the last hour with a birth date "
                          "or sex its holder does not have, so it is not compared again for now: check the number on "
                          "the patient's ID card, or ask the records office. Nothing was applied",
                          location=("PID", 1, 3), label="national ID") from None
    except service.NationalIdHolderDiffers as asked:
        differs = " and ".join(asked.extra["differs"])
        raise not_applied(DUPLICATE_KEY_IDENTIFIER, f"is held by a person with another {differs}, registered at a "
                          "facility of this appliance: check the number on the ID card (a mistyped one would put this "
                          "chart on that person's patient portal). Nothing was applied",
                          location=("PID", 1, 3), label="national ID") from None
