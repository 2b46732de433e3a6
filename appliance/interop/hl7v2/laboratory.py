"""Laboratory messages: ORM^O01 orders catalogue tests (LOINC) and keeps each placer order number, each order placed
when its ORC-9 says, else MSH-7; ORU^R01 records each OBX as a result of the order its OBR names, at the time it was
observed: OBX-14, else its OBR's (OBR-7, the specimen collected, else OBR-22, the results reported), else the
message's (MSH-7), as HL7 2.5 reads them. A ward's system or an analyser whose link was down sends hours of orders or
results at once; each keeps its own time, and the record its arrival beside it."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

import hl7
import sqlalchemy as sa

from appliance.interop.hl7v2.act import Act, refusals
from appliance.interop.hl7v2.messages import (
    APPLICATION_RECORD_LOCKED,
    DATA_TYPE_ERROR,
    DUPLICATE_KEY_IDENTIFIER,
    REQUIRED_FIELD_MISSING,
    TABLE_VALUE_NOT_FOUND,
    UNKNOWN_KEY_IDENTIFIER,
    hl7_time,
    not_applied,
    value,
)
from appliance.interop.hl7v2.models import hl7_placer_order
from appliance.interop.hl7v2.patients import known_patient
from appliance.layers.clinical import service
from appliance.layers.clinical.models import result, service_request
from appliance.layers.clinical.schemas import FINDINGS_MAX, ImagingReportResultIn, ResultIn, ServiceRequestIn
from appliance.substrate.record import current_clause, entry, note_access
from appliance.substrate.tenancy import facility_timezone

PRIORITIES = {"S": "stat", "A": "urgent", "R": "routine", "": "routine"}
RESULT_FLAGS = {"N": "N", "L": "L", "H": "H", "LL": "LL", "HH": "HH", "A": "A", "AA": "AA", "<": "L", ">": "H"}
RESULT_STATUSES = {"F": None, "C": "corrected result", "P": "preliminary result"}
NUMERIC_TYPES = ("NM", "SN")
TEXT_TYPES = ("ST", "TX", "FT", "CE", "CWE")
# A laboratory result's text and note are ResultIn's 2,000 characters; an imaging order's result is a report,
# which the imaging bench takes up to FINDINGS_MAX (ImagingReportResultIn), so a radiology system's ORU does too.
LAB_TEXT_MAX = 2000

OBR_FIELDS = {"code": (4, "universal service identifier"), "priority": (27, "priority"),
              "clinical_info": (13, "relevant clinical information"), "encounter_id": (2, "placer order number")}


def _loinc(segment: hl7.Segment, name: str, sequence: int, number: int, label: str) -> str:
    code, system = value(segment, number, 1), value(segment, number, 3).upper()
    if not code:
        raise not_applied(REQUIRED_FIELD_MISSING, "is missing", location=(name, sequence, number), label=label)
    if system not in {"", "LN"}:
        raise not_applied(TABLE_VALUE_NOT_FOUND, f"is coded in {system}: this facility's catalogue is LOINC (LN)",
                          location=(name, sequence, number), label=label, value=code)
    return code


def _placer(obr: hl7.Segment, orc: hl7.Segment | None) -> tuple[str, str]:
    number, namespace = value(obr, 2, 1), value(obr, 2, 2)
    if not number and orc is not None:
        number, namespace = value(orc, 2, 1), value(orc, 2, 2)
    return number[:100], namespace[:100]


@dataclass(frozen=True)
class _Time:
    """A time the message gives, and the field it came from, for a refusal of it to name."""

    at: dt.datetime
    location: tuple[str, int, int]
    label: str

    def __str__(self) -> str:
        return f"{self.location[0]}-{self.location[2]} {self.at.astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC"


def _time(segment: hl7.Segment, name: str, sequence: int, number: int, label: str, zone: dt.tzinfo) -> _Time | None:
    text = value(segment, number)
    if not text:
        return None
    location = (name, sequence, number)
    return _Time(hl7_time(text, zone, location=location, label=label), location, label)


def _message_time(act: Act, zone: dt.tzinfo) -> _Time | None:
    """MSH-7, when the sending system made the message: the latest its order was placed or its result observed."""
    return _time(act.message.segment("MSH"), "MSH", 1, 7, "message time", zone)


def order(act: Act) -> None:
    """ORM^O01: each ORC/OBR a new order (ORC-1 NW) of a test in the facility's LOINC catalogue, placed when its ORC-9
    says, else when the message was made (MSH-7): a ward's orders sent after its link came back keep their times,
    and the results answering them, and the turnaround, count from those."""
    patient = known_patient(act)
    act.require("clinical.order.create", "place orders")
    zone = facility_timezone(act.db, act.tenant)
    orc: hl7.Segment | None = None
    orcs = obrs = 0
    placed = sent = _message_time(act, zone)
    for segment in act.message:
        name = str(segment[0])
        if name == "ORC":
            orc = segment
            orcs += 1
            placed = _time(orc, "ORC", orcs, 9, "date/time of transaction", zone) or sent
            control = value(orc, 1).upper()
            if control not in {"NW", ""}:
                raise not_applied(TABLE_VALUE_NOT_FOUND, "is not supported: this interface accepts new orders "
                                  "(NW) only", location=("ORC", 1, 1), label="order control", value=control)
        if name != "OBR":
            continue
        obrs += 1
        code = _loinc(segment, "OBR", obrs, 4, "universal service identifier (test)")
        priority = PRIORITIES.get(value(segment, 27, 6).upper() or (value(orc, 7, 6).upper() if orc else ""))
        if priority is None:
            raise not_applied(TABLE_VALUE_NOT_FOUND, "is not S, A or R", location=("OBR", obrs, 27),
                              label="priority", value=value(segment, 27, 6))
        number, namespace = _placer(segment, orc)
        if number and act.conn.execute(sa.select(hl7_placer_order.c.service_request_id).where(
                hl7_placer_order.c.placer_number == number, hl7_placer_order.c.placer_namespace == namespace)).first():
            raise not_applied(DUPLICATE_KEY_IDENTIFIER, "was already used for another order", location=("OBR", obrs, 2),
                              label="placer order number", value=number)
        fields = OBR_FIELDS if placed is None else {**OBR_FIELDS, "occurred_at": (placed.location, placed.label)}
        with refusals("OBR", obrs, fields):
            ordered = service.order_test(act.conn, act.principal, patient["id"], ServiceRequestIn(
                code=code, priority=priority, clinical_info=value(segment, 13)[:1000] or None,
                occurred_at=placed.at if placed else None))
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


def _observation_value(obx: hl7.Segment, sequence: int, text_max: int) -> Decimal | str:
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
        return text[:text_max]
    readable = ", ".join(NUMERIC_TYPES + TEXT_TYPES)
    raise not_applied(TABLE_VALUE_NOT_FOUND, f"is not one this interface reads ({readable})",
                      location=("OBX", sequence, 2), label="value type", value=kind or "(empty)")


@dataclass(frozen=True)
class _Request:
    """What an OBR says of the results under it: the order they answer, when the specimen was collected (OBR-7)
    and when the results were reported (OBR-22)."""

    order_id: uuid.UUID | None
    collected: _Time | None
    reported: _Time | None


def results(act: Act) -> None:
    """ORU^R01: each OBX a result with its value, units, reference range and abnormal flag, linked to the
    order its OBR names, at the time it was observed; NTE segments after an OBX become its note."""
    patient = known_patient(act)
    act.require("clinical.result.create", "record results")
    zone = facility_timezone(act.db, act.tenant)
    request = _Request(None, None, None)
    orders: dict[uuid.UUID, None] = {}  # the orders the OBRs named, in order, each once
    pending: list[tuple[int, hl7.Segment, list[str], _Request]] = []
    obr_seen = obx_seen = 0
    for segment in act.message:
        name = str(segment[0])
        if name == "OBR":
            _record(act, patient["id"], pending, zone)
            pending = []
            obr_seen += 1
            request = _Request(_order_of(act, patient["id"], segment, obr_seen),
                               _time(segment, "OBR", obr_seen, 7, "specimen collection time", zone),
                               _time(segment, "OBR", obr_seen, 22, "results reported time", zone))
            if request.order_id is not None:
                orders[request.order_id] = None
        elif name == "OBX":
            obx_seen += 1
            pending.append((obx_seen, segment, [], request))
        elif name == "NTE" and pending:
            pending[-1][2].append(value(segment, 3))
    _record(act, patient["id"], pending, zone)
    if not obx_seen:
        raise not_applied(REQUIRED_FIELD_MISSING, "the message has no OBX segment: no result to record")
    if orders:
        # Finding the patient's orders by their placer numbers read them: noted once for the message,
        # naming every order, not once per OBR.
        note_access(act.conn, act.principal, "read", patient["id"], "service_request", orders)


def _is_imaging(act: Act, patient_id: uuid.UUID, order_id: uuid.UUID | None) -> bool:
    """Whether the order a result answers is an imaging study (its result a report); an unknown order is
    refused by record_result, so it is read as a laboratory one here."""
    if order_id is None:
        return False
    category = act.conn.execute(
        sa.select(service_request.c.category).select_from(
            entry.join(service_request, service_request.c.entry_id == entry.c.id))
        .where(entry.c.patient_id == patient_id, sa.or_(entry.c.id == order_id, entry.c.root_id == order_id))
        .limit(1)).scalar()
    return category == "imaging"


def _observed(act: Act, obx: hl7.Segment, sequence: int, request: _Request, zone: dt.tzinfo) -> _Time | None:
    """When the result was observed: OBX-14, not before its specimen was collected; else OBR-7, OBR-22, MSH-7 (the
    latest it can have been observed); None when the message gives no time, and its arrival is the result's."""
    observed = _time(obx, "OBX", sequence, 14, "observation time", zone)
    if observed is not None and request.collected is not None and observed.at < request.collected.at:
        raise not_applied(DATA_TYPE_ERROR, f"is before the specimen was collected ({request.collected}): give the "
                          "time the result was observed", location=observed.location, label=observed.label,
                          value=value(obx, 14))
    return observed or request.collected or request.reported or _message_time(act, zone)


def _record(act: Act, patient_id: uuid.UUID, pending: list, zone: dt.tzinfo) -> None:
    for sequence, obx, notes, request in pending:
        order_id = request.order_id
        imaging = _is_imaging(act, patient_id, order_id)
        text_max, schema = (FINDINGS_MAX, ImagingReportResultIn) if imaging else (LAB_TEXT_MAX, ResultIn)
        code = _loinc(obx, "OBX", sequence, 3, "observation identifier")
        status = value(obx, 11).upper() or "F"
        if status not in RESULT_STATUSES:
            raise not_applied(TABLE_VALUE_NOT_FOUND, "is not recorded by this interface (F final, C corrected, "
                              "P preliminary)", location=("OBX", sequence, 11), label="result status", value=status)
        flag_code = value(obx, 8).upper()
        if flag_code and flag_code not in RESULT_FLAGS:
            raise not_applied(TABLE_VALUE_NOT_FOUND, f"is not one of {', '.join(RESULT_FLAGS)}",
                              location=("OBX", sequence, 8), label="abnormal flag", value=flag_code)
        low, high = _reference_range(value(obx, 7), sequence)
        note = "; ".join(n for n in [RESULT_STATUSES[status], *notes] if n)[:text_max] or None
        observed = _observed(act, obx, sequence, request, zone)
        fields = OBX_FIELDS if observed is None else {**OBX_FIELDS, "occurred_at": (observed.location, observed.label)}
        with refusals("OBX", sequence, fields):
            given = schema(code=code, service_request_id=order_id, value=_observation_value(obx, sequence, text_max),
                           unit=value(obx, 6, 1) or None, reference_low=low, reference_high=high,
                           flag=RESULT_FLAGS.get(flag_code), note=note, occurred_at=observed.at if observed else None)
            in_force = _in_force(act, patient_id, order_id, code)
            if status == "F" and in_force is not None and not _preliminary(in_force):
                # HL7 sends a change to a final result as C: an F again is the laboratory's system sending it twice
                # (a resend under a new control id, an analyser's link replaying its queue), or a changed value sent
                # as if it were the first.
                if _same_result(in_force, given):
                    act.duplicate(f"OBX {sequence} ({code})")
                    continue
                raise not_applied(APPLICATION_RECORD_LOCKED, f"the {in_force.display} result of this order is already "
                                  "final with another value; send a correction (C) to change it",
                                  location=("OBX", sequence, 11), label="result status", value=status)
            if in_force is None or status not in REPLACING or (status == "F" and not _preliminary(in_force)):
                recorded = service.record_result(act.conn, act.principal, patient_id, given)
            else:
                recorded = service.correct_result(act.conn, act.principal, patient_id, in_force.id, given,
                                                  REPLACING[status])
        act.made("result", recorded["id"])


# Why a result of an order and analyte that has one in force is its next version, as the record's history says.
REPLACING = {"C": "corrected by the laboratory (HL7 OBX-11 C)",
             "F": "the laboratory's final result, replacing its preliminary one (HL7 OBX-11 F)"}


def _in_force(act: Act, patient_id: uuid.UUID, order_id: uuid.UUID | None, code: str) -> sa.Row | None:
    """The result in force of the same order and analyte, which a correction (C) replaces, and a final result (F)
    too when it was preliminary (P): recorded as a result of its own, either stood beside the one it replaced on the
    chart and the review list, two values of one analyte of one specimen, the wrong one still waiting for sign-off.
    None when there is none: no order named, or no result of it in force (a correction of a result the feed never
    sent is recorded as new)."""
    if order_id is None:
        return None
    order = entry.alias("ordered")
    order_root = (sa.select(order.c.root_id).where(order.c.patient_id == patient_id,
                                                   sa.or_(order.c.id == order_id, order.c.root_id == order_id))
                  .limit(1).scalar_subquery())
    return act.conn.execute(
        sa.select(entry.c.id, result.c.display, result.c.note, result.c.value_numeric, result.c.value_text,
                  result.c.unit)
        .select_from(entry.join(result, result.c.entry_id == entry.c.id))
        .where(entry.c.patient_id == patient_id, result.c.service_request_id == order_root, result.c.code == code,
               current_clause())
        .order_by(entry.c.occurred_at.desc()).limit(1)).first()


def _preliminary(in_force: sa.Row) -> bool:
    return (in_force.note or "").startswith(RESULT_STATUSES["P"])


def _same_result(in_force: sa.Row, given: ResultIn) -> bool:
    """Whether an OBX says what the result in force says: the same number (12 is 12.0) in the same unit, or the same
    words (a choice is kept as the catalogue spells it: 'Positive' is 'positive')."""
    if isinstance(given.value, Decimal):
        return in_force.value_numeric == given.value and given.unit in (None, in_force.unit)
    return in_force.value_text is not None and in_force.value_text.strip().lower() == given.value.strip().lower()
