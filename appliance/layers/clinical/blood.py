"""The blood bank: the laboratory's stock of blood units, the clinicians' requests for blood, and the crossmatch
that reserves a unit for a patient and issues it to the ward (the bedside record is the nursing layer's
`transfusion` entry; appliance/layers/nursing/transfusion.py).

The patient's blood group is a laboratory result, LOINC 882-1 "ABO and Rh group [Type] in Blood" (the catalogue's
"Blood group and Rhesus", answered A+ ... O-), entered at the bench as any result is (lab.py). Every current
grouping of the patient must agree: two that disagree (a wrong-blood-in-tube sample) refuse every reservation until
the patient is grouped again and the wrong result corrected.

A unit is compatible with the patient's group by these rules (WHO, "The Clinical Use of Blood", 2001, and the
ANZSBT/Lifeblood component compatibility tables, which agree with BSH 2012 pre-transfusion testing):

- red cells: the donor's cells must carry no A or B antigen the recipient has antibodies to: recipient O gets O;
  A gets A or O; B gets B or O; AB gets any group;
- whole blood carries the donor's cells and plasma: ABO-identical only;
- plasma: the reverse, the donor's plasma must carry no antibody to the recipient's cells: recipient O gets any
  group; A gets A or AB; B gets B or AB; AB gets AB;
- platelets are suspended in the donor's plasma: the plasma rule;
- RhD: an RhD-negative recipient gets RhD-negative red cells, whole blood and platelets (the few red cells in a
  platelet bag sensitise as well); plasma carries no red cells, so its RhD is not considered. The exception the
  tables allow (RhD-positive red cells for an RhD-negative man over 18 or woman over 50 when negative units run
  out) is a transfusion specialist's decision and is not offered here.

A unit past its expiry date is refused, at reservation and at issue. A patient with no recorded group gets no
crossmatched unit: in an emergency, with the reason, a unit that every patient may receive whatever their group
(`EMERGENCY_UNITS`: group O RhD-negative red cells; group AB plasma, the universal plasma, which a major
haemorrhage needs beside the red cells, BSH 2015 major haemorrhage guideline; group AB RhD-negative platelets; no
whole blood, which must be ABO-identical), flagged as emergency on the unit's history and on every list.

A unit's history is `blood_unit_event` (t0036): reserved (for a request), released (back to stock, with why: from
a reservation, an issued unit the ward returned unused, or the request cancelled), issued (to the ward), transfused
(the bedside entry, naming the bedside check's second person in its audit event), discarded (with why). Its status
is its last event's; none yet is available. The bedside judges expiry on the facility's day of the start, which the
nursing layer writes on its entry (t0042).

A request is cancelled by the clinician (the operation called off) with why: a new version of its `blood_request`
entry carrying `cancel_reason` (t0042), its reserved units released. While a unit of it is issued the ward returns
it first; once one was transfused the request stays: blood given is not taken back.

Nothing here opens a chart: the blood bank shows of a patient what matches a sample's label (name, MRN, sex, age), as
the bench does (policies/access.toml ACC-029). Every row naming a patient that is shown or written is audited on that
patient's record.
"""

from __future__ import annotations

import datetime as dt
import uuid

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from appliance.layers.clinical import service
from appliance.layers.clinical.errors import Conflict, Invalid, NotFound
from appliance.layers.clinical.models import BLOOD_COMPONENTS, blood_unit, blood_unit_event
from appliance.substrate import deaths, record
from appliance.substrate.age import age_label
from appliance.substrate.principal import Principal
from appliance.substrate.record import Entry, note_access, note_list_read

GROUPING_LOINC = "882-1"
ABO = ("O", "A", "B", "AB")
RHD = ("positive", "negative")
COMPONENT_WORDS = {"whole_blood": "whole blood", "red_cells": "red cells", "plasma": "plasma",
                   "platelets": "platelets"}
# Which donor ABO groups each recipient may receive (see the module's docstring for the sources).
RED_CELL_DONORS = {"O": {"O"}, "A": {"A", "O"}, "B": {"B", "O"}, "AB": {"O", "A", "B", "AB"}}
PLASMA_DONORS = {"O": {"O", "A", "B", "AB"}, "A": {"A", "AB"}, "B": {"B", "AB"}, "AB": {"AB"}}
ABO_DONORS = {"red_cells": RED_CELL_DONORS, "whole_blood": {g: {g} for g in ABO}, "plasma": PLASMA_DONORS,
              "platelets": PLASMA_DONORS}
RHD_MATTERS = {"red_cells", "whole_blood", "platelets"}
EXPIRING_WITHIN_DAYS = 3
# The longest each component keeps from collection, as licensed (WHO, The Clinical Use of Blood, 2001: whole blood in
# CPDA-1 35 days, red cells in an additive solution 42; Council of Europe, Guide to the preparation, use and quality
# assurance of blood components: platelets 7 days with bacterial screening, fresh frozen plasma 36 months at -25 C or
# colder). An expiry further from collection is a mistyped label (2062 for 2026), which would never expire here.
SHELF_LIFE_DAYS = {"whole_blood": 35, "red_cells": 42, "platelets": 7, "plasma": 3 * 366}
REQUEST_WINDOW_DAYS = 14  # a request not answered in a fortnight is not coming: the list is of the last two weeks


def _given_to_anyone(component: str, donor_abo: str, donor_rhd: str) -> bool:
    return all(incompatibility(component, abo, rhd, donor_abo, donor_rhd) is None for abo in ABO for rhd in RHD)


def group_words(abo: str, rhd: str) -> str:
    return f"{abo} RhD {rhd}"


def incompatibility(component: str, recipient_abo: str, recipient_rhd: str, donor_abo: str,
                    donor_rhd: str) -> str | None:
    """Why a unit of `component` of the donor's group may not be given to the recipient's, or None if it may."""
    words = COMPONENT_WORDS[component]
    if donor_abo not in ABO_DONORS[component][recipient_abo]:
        allowed = " or ".join(sorted(ABO_DONORS[component][recipient_abo], key=ABO.index))
        return (f"a group {recipient_abo} patient may not receive group {donor_abo} {words}: "
                f"give group {allowed} {words}")
    if component in RHD_MATTERS and recipient_rhd == "negative" and donor_rhd == "positive":
        return f"an RhD-negative patient may not receive RhD-positive {words}: give RhD-negative {words}"
    return None


# What a patient with no recorded group may be given in an emergency, by component: the units compatible with every
# group (see the module's docstring), said as the refusal says them.
EMERGENCY_UNITS = {component: " or ".join(
    f"group {abo}{f' RhD-{rhd}' if component in RHD_MATTERS else ''} {COMPONENT_WORDS[component]}"
    for abo in ABO for rhd in (RHD if component in RHD_MATTERS else RHD[:1])
    if _given_to_anyone(component, abo, rhd)) for component in COMPONENT_WORDS}


def parse_group(value: str | None) -> tuple[str, str] | None:
    """The catalogue's answer ("AB-") as (abo, rhd), or None for anything else."""
    if not value or value[-1] not in "+-" or value[:-1] not in ABO:
        return None
    return value[:-1], "positive" if value[-1] == "+" else "negative"


_GROUPINGS = sa.text("""
    SELECT e.id, e.occurred_at, r.value_text
    FROM entry e JOIN result r ON r.entry_id = e.id
    WHERE e.patient_id = :patient AND e.kind = 'result' AND r.code = :code AND e.status <> 'entered_in_error'
      AND NOT EXISTS (SELECT 1 FROM entry s WHERE s.supersedes = e.id)
    ORDER BY e.occurred_at DESC""")


def groupings_of(conn: Connection, patient_id: uuid.UUID) -> list[dict]:
    """The patient's current ABO/RhD results, newest first; not audited (callers are)."""
    return [dict(r) for r in conn.execute(_GROUPINGS, {"patient": patient_id, "code": GROUPING_LOINC}).mappings()]


def patient_group(conn: Connection, patient_id: uuid.UUID) -> dict:
    """The patient's blood group as the laboratory recorded it: {"abo", "rhd", "words", "result_ids", "conflict"};
    abo and rhd None when never grouped, `conflict` a sentence when two current groupings disagree."""
    found = groupings_of(conn, patient_id)
    groups = {parse_group(g["value_text"]) for g in found} - {None}
    ids = [g["id"] for g in found]
    if len(groups) > 1:
        told = ", ".join(sorted(group_words(*g) for g in groups))
        return {"abo": None, "rhd": None, "words": None, "result_ids": ids,
                "conflict": f"the patient's recorded blood groups disagree ({told}): take a new sample, group the "
                            "patient again and correct the wrong result before any blood is crossmatched"}
    if not groups:
        return {"abo": None, "rhd": None, "words": None, "result_ids": ids, "conflict": None}
    abo, rhd = groups.pop()
    return {"abo": abo, "rhd": rhd, "words": group_words(abo, rhd), "result_ids": ids, "conflict": None}


# -- the stock -----------------------------------------------------------------------------------------------------

# Every unit with its last event (none: available), its patient's label when the event names one.
_UNITS = """
    SELECT u.id, u.unit_number, u.component, u.abo, u.rhd, u.volume_ml, u.collected_on, u.expires_on,
           u.received_by, u.received_at,
           COALESCE(ev.kind, 'received') AS last_event, ev.emergency, ev.reason,
           CASE WHEN ev.kind IN ('reserved', 'issued', 'transfused') THEN ev.patient_id END AS patient_id,
           CASE WHEN ev.kind IN ('reserved', 'issued', 'transfused') THEN ev.request_id END AS request_id,
           ev.recorded_at AS moved_at, ev.recorded_by AS moved_by,
           p.mrn, p.family_name, p.given_names, p.sex, p.birth_date
    FROM blood_unit u
    LEFT JOIN LATERAL (SELECT * FROM blood_unit_event e WHERE e.unit_id = u.id ORDER BY e.seq DESC LIMIT 1) ev ON true
    LEFT JOIN patient p ON p.id = ev.patient_id AND ev.kind IN ('reserved', 'issued', 'transfused')
"""
_STATUS = {"received": "available", "released": "available", "reserved": "reserved", "issued": "issued",
           "transfused": "transfused", "discarded": "discarded"}
_IN_STOCK = sa.text(_UNITS + "WHERE COALESCE(ev.kind, 'received') IN ('received', 'released', 'reserved') "
                             "ORDER BY u.expires_on, u.unit_number")
_BY_ID = sa.text(_UNITS + "WHERE u.id = :unit")
_BY_NUMBER = sa.text(_UNITS + "WHERE u.unit_number = :number")
_OF_REQUESTS = sa.text(_UNITS + "WHERE ev.request_id = ANY(:requests) AND ev.kind IN ('reserved', 'issued', "
                                "'transfused') ORDER BY ev.recorded_at, u.unit_number")
_ISSUED_TO = sa.text(_UNITS + "WHERE ev.patient_id = :patient AND ev.kind = 'issued' ORDER BY ev.recorded_at")


def _unit_view(row: dict, today: dt.date) -> dict:
    status = _STATUS[row["last_event"]]
    expired = status in ("available", "reserved", "issued") and row["expires_on"] < today
    label = ({"mrn": row["mrn"], "name": f"{row['given_names']} {row['family_name']}", "sex": row["sex"],
              "age": age_label(row["birth_date"], today)} if row["patient_id"] is not None else None)
    return {**{k: row[k] for k in ("id", "unit_number", "component", "abo", "rhd", "volume_ml", "collected_on",
                                   "expires_on", "received_at", "patient_id", "request_id", "reason", "moved_at")},
            "group": group_words(row["abo"], row["rhd"]), "status": "expired" if expired else status,
            "last_event": row["last_event"],
            "emergency": bool(row["emergency"]), "patient": label,
            "expiring": not expired and status in ("available", "reserved")
            and row["expires_on"] <= today + dt.timedelta(days=EXPIRING_WITHIN_DAYS)}


def _shown(conn: Connection, principal: Principal, units: list[dict]) -> list[dict]:
    """Units shown to someone: each patient a unit names gets a read event of the units naming them."""
    note_list_read(conn, principal, "blood_unit", [u for u in units if u["patient_id"] is not None])
    return units


def stock(conn: Connection, principal: Principal, *, today: dt.date) -> dict:
    """The units in the blood bank (available, reserved, expired and not yet discarded), soonest to expire first,
    and the count of usable available units by component and group (every cell, zero too): the page's grid."""
    units = [_unit_view(dict(r), today) for r in conn.execute(_IN_STOCK).mappings()]
    grid = {c: {group_words(a, r): 0 for a in ABO for r in RHD} for c in BLOOD_COMPONENTS}
    for unit in units:
        if unit["status"] == "available":
            grid[unit["component"]][unit["group"]] += 1
    return {"units": _shown(conn, principal, units), "grid": grid,
            "expiring": sum(1 for u in units if u["expiring"]),
            "expired": sum(1 for u in units if u["status"] == "expired")}


def unit(conn: Connection, principal: Principal, unit_id: uuid.UUID, *, today: dt.date) -> dict:
    """One unit where it stands, its patient's read noted if it names one."""
    row = conn.execute(_BY_ID, {"unit": unit_id}).mappings().first()
    if row is None:
        raise NotFound(f"no blood unit {unit_id} in this facility's blood bank", unit_id=str(unit_id))
    return _shown(conn, principal, [_unit_view(dict(row), today)])[0]


def receive_unit(conn: Connection, principal: Principal, data, *, today: dt.date, at: dt.datetime | None = None
                 ) -> dict:
    """A unit into stock, received by the caller now (or `at`, a receipt recorded later). A unit number already in
    the bank: 409; collected in the future, expired already, or an expiry further from collection than the component
    keeps: 422 naming the field."""
    if data.collected_on > today:
        raise Invalid(f"collected on {data.collected_on} is still to come: give the day it was collected",
                      field="collected_on")
    if data.expires_on < data.collected_on:
        raise Invalid("the expiry date is before the day it was collected", field="expires_on")
    if data.expires_on < today:
        raise Invalid(f"this unit expired on {data.expires_on}: an expired unit is not taken into stock",
                      field="expires_on")
    if (data.expires_on - data.collected_on).days > (longest := SHELF_LIFE_DAYS[data.component]):
        raise Invalid(f"a unit of {COMPONENT_WORDS[data.component]} keeps at most {longest} days from collection; the "
                      f"expiry {data.expires_on} is {(data.expires_on - data.collected_on).days} days after it was "
                      f"collected on {data.collected_on}: check the date on the label", field="expires_on")
    _serialise(conn, data.unit_number)
    if conn.execute(sa.select(blood_unit.c.id).where(blood_unit.c.unit_number == data.unit_number)).first():
        raise Conflict(f"unit {data.unit_number} is in this blood bank already: check the label", field="unit_number")
    unit_id = uuid.uuid4()
    conn.execute(blood_unit.insert().values(
        id=unit_id, unit_number=data.unit_number, component=data.component, abo=data.abo, rhd=data.rhd,
        volume_ml=data.volume_ml, collected_on=data.collected_on, expires_on=data.expires_on,
        received_by=principal.account_id, **({"received_at": at} if at else {})))
    return unit(conn, principal, unit_id, today=today)


def _event(conn: Connection, principal: Principal, found: dict, kind: str, *, reason: str | None = None,
           patient_id: uuid.UUID | None = None, request_id: uuid.UUID | None = None, emergency: bool = False,
           entry_id: uuid.UUID | None = None, at: dt.datetime | None = None, audited: dict | None = None) -> None:
    """One step of the unit's history; one naming a patient is audited on their record, with `audited` (the bedside
    check's second person) beside the step."""
    conn.execute(blood_unit_event.insert().values(
        unit_id=found["id"], kind=kind, patient_id=patient_id, request_id=request_id, emergency=emergency,
        reason=reason, entry_id=entry_id, recorded_by=principal.account_id, **({"recorded_at": at} if at else {})))
    if patient_id is not None:
        note_access(conn, principal, "update", patient_id, "blood_unit", [found["id"]],
                    detail={"event": kind, "unit_number": found["unit_number"], **(audited or {})})


def _serialise(conn: Connection, key: object) -> None:
    # Two benches at one unit (a reservation and a discard, a click twice): the second waits, then sees the first.
    conn.execute(sa.select(sa.func.pg_advisory_xact_lock(sa.func.hashtextextended(f"healthos.blood.{key}", 0))))


def _locked_unit(conn: Connection, unit_id: uuid.UUID, today: dt.date) -> dict:
    _serialise(conn, unit_id)
    row = conn.execute(_BY_ID, {"unit": unit_id}).mappings().first()
    if row is None:
        raise NotFound(f"no blood unit {unit_id} in this facility's blood bank", unit_id=str(unit_id))
    return _unit_view(dict(row), today)


def discard_unit(conn: Connection, principal: Principal, unit_id: uuid.UUID, reason: str, *, today: dt.date) -> dict:
    """A unit out of stock for good (expired, bag damaged, failed inspection), with the reason. Issued, transfused
    or discarded already: 409."""
    found = _locked_unit(conn, unit_id, today)
    if found["last_event"] in ("issued", "transfused", "discarded"):
        raise Conflict(f"unit {found['unit_number']} is {found['status']}: only a unit in the blood bank is "
                       "discarded")
    _event(conn, principal, found, "discarded", reason=reason, patient_id=found["patient_id"],
           request_id=found["request_id"])
    return unit(conn, principal, unit_id, today=today)


# -- requests ------------------------------------------------------------------------------------------------------

def request_blood(conn: Connection, principal: Principal, patient_id: uuid.UUID, data,
                  at: dt.datetime | None = None) -> dict:
    """A clinician asks the blood bank for `units` of `component` for the patient: a `blood_request` entry, made
    now (or `at`), under one of the patient's own encounters if it names one (another's or a guessed one: 422)."""
    service.require_chart(conn, patient_id, data.encounter_id)
    appended = record.append(conn, principal, "blood_request", patient_id=patient_id,
                             encounter_id=data.encounter_id, occurred_at=at,
                             detail={"component": data.component, "units": data.units,
                                     "indication": data.indication, "urgency": data.urgency})
    return {"id": appended.root_id, "patient_id": patient_id, "requested_at": appended.occurred_at,
            "requested_by": principal.account_id, **appended.detail}


def refuse_blood_for_deceased(conn: Connection, patient_id: uuid.UUID | None) -> None:
    """No blood is asked for a person recorded deceased at any facility: the units the bank would reserve for them
    are kept from the living. Cancelling a request made before is a correction, not asked here."""
    deaths.refuse_if_deceased(conn, patient_id, "a request for blood")


record.register_guard("blood_request", refuse_blood_for_deceased)


_REQUESTS = """
    SELECT e.root_id AS id, e.id AS version_id, e.patient_id, e.encounter_id, first.occurred_at AS requested_at,
           first.author_id AS requested_by, r.component, r.units, r.indication, r.urgency, r.cancel_reason,
           CASE WHEN r.cancel_reason IS NOT NULL THEN e.occurred_at END AS cancelled_at,
           CASE WHEN r.cancel_reason IS NOT NULL THEN e.author_id END AS cancelled_by,
           p.mrn, p.family_name, p.given_names, p.sex, p.birth_date
    FROM entry e JOIN blood_request r ON r.entry_id = e.id JOIN entry first ON first.id = e.root_id
    JOIN patient p ON p.id = e.patient_id
    WHERE e.kind = 'blood_request' AND e.status <> 'entered_in_error'
      AND NOT EXISTS (SELECT 1 FROM entry s WHERE s.supersedes = e.id)
"""
_RECENT_REQUESTS = sa.text(_REQUESTS + f"""
      AND e.occurred_at >= now() - interval '{REQUEST_WINDOW_DAYS} days' AND r.cancel_reason IS NULL
    ORDER BY CASE r.urgency WHEN 'emergency' THEN 0 WHEN 'urgent' THEN 1 ELSE 2 END, first.occurred_at""")
_ONE_REQUEST = sa.text(_REQUESTS + " AND e.root_id = :request")
_PATIENT_REQUESTS = sa.text(_REQUESTS + " AND e.patient_id = :patient ORDER BY first.occurred_at DESC")


def _with_units(conn: Connection, principal: Principal, rows: list[dict], today: dt.date) -> list[dict]:
    units = ([_unit_view(dict(r), today) for r in conn.execute(_OF_REQUESTS, {"requests": [r["id"] for r in rows]})
              .mappings()] if rows else [])
    for row in rows:
        row["age"] = age_label(row["birth_date"], today)
        row["units_given"] = [u for u in units if u["request_id"] == row["id"]]
        answered = sum(1 for u in row["units_given"] if u["status"] in ("issued", "transfused"))
        row["outstanding"] = 0 if row["cancel_reason"] is not None else max(0, row["units"] - answered)
        row["group"] = patient_group(conn, row["patient_id"])
    note_list_read(conn, principal, "blood_request", rows, detail={"list": "blood bank"})
    _shown(conn, principal, units)
    return rows


def open_requests(conn: Connection, principal: Principal, *, today: dt.date) -> list[dict]:
    """The requests of the last fortnight with units still to issue, or with a unit issued and not yet started (the
    ward may bring it back unused, and the blood bank, which opens no chart, returns it to stock from here),
    emergencies first then oldest: each with its patient's label and recorded group and the units reserved or issued
    for it. Each patient listed is audited."""
    rows = [dict(r) for r in conn.execute(_RECENT_REQUESTS).mappings()]
    return [r for r in _with_units(conn, principal, rows, today)
            if r["outstanding"] > 0 or any(u["last_event"] == "issued" for u in r["units_given"])]


def one_request(conn: Connection, principal: Principal, request_id: uuid.UUID, *, today: dt.date) -> dict:
    row = conn.execute(_ONE_REQUEST, {"request": request_id}).mappings().first()
    if row is None:
        raise NotFound(f"no blood request {request_id} at this facility", request_id=str(request_id))
    return _with_units(conn, principal, [dict(row)], today)[0]


def patient_blood(conn: Connection, principal: Principal, patient_id: uuid.UUID, *, today: dt.date) -> dict:
    """The chart's view: the patient's recorded group and their requests with the units given for each."""
    rows = [dict(r) for r in conn.execute(_PATIENT_REQUESTS, {"patient": patient_id}).mappings()]
    group = patient_group(conn, patient_id)
    note_access(conn, principal, "read", patient_id, "result", group["result_ids"], detail={"list": "blood group"})
    return {"patient_id": patient_id, "group": group, "requests": _with_units(conn, principal, rows, today)}


# -- crossmatch and issue ------------------------------------------------------------------------------------------

def reserve(conn: Connection, principal: Principal, request_id: uuid.UUID, unit_number: str,
            emergency_reason: str | None, *, today: dt.date, at: dt.datetime | None = None) -> dict:
    """Reserve a unit for a request after the crossmatch: the unit must be available, unexpired, of the component
    asked for and compatible with the patient's recorded group. With no group recorded, only a unit every group may
    receive (`EMERGENCY_UNITS`), uncrossmatched, with the emergency's reason. Refused (409 not available or the
    request answered, 422 naming the field) with nothing written."""
    _serialise(conn, request_id)
    request = one_request(conn, principal, request_id, today=today)
    if request["cancel_reason"] is not None:
        raise Conflict(f"this request was cancelled ({request['cancel_reason']}): no unit is reserved for it")
    found = conn.execute(_BY_NUMBER, {"number": unit_number}).mappings().first()
    if found is None:
        raise Invalid(f"there is no unit {unit_number} in this blood bank: check the number on the bag",
                      field="unit_number")
    found = _locked_unit(conn, found["id"], today)
    words = COMPONENT_WORDS[request["component"]]
    if found["status"] == "expired":
        raise Invalid(f"unit {unit_number} expired on {found['expires_on']}: discard it, do not issue it",
                      field="unit_number")
    if found["status"] != "available":
        raise Conflict(f"unit {unit_number} is {found['status']}, not available", field="unit_number")
    if found["component"] != request["component"]:
        raise Invalid(f"unit {unit_number} is {COMPONENT_WORDS[found['component']]}; the request is for {words}",
                      field="unit_number")
    if request["outstanding"] <= sum(1 for u in request["units_given"] if u["status"] == "reserved"):
        raise Conflict(f"every unit this request asks for ({request['units']}) is reserved or issued already")
    group = request["group"]
    if group["conflict"]:
        raise Conflict(group["conflict"])
    if group["abo"] is None:
        given_to_anyone = EMERGENCY_UNITS[request["component"]]
        if not given_to_anyone:
            raise Invalid(f"the patient has no recorded blood group (LOINC 882-1): {words} must be of the patient's "
                          "own group, so no unit is given uncrossmatched; group them, or ask for red cells",
                          field="unit_number")
        if not emergency_reason:
            raise Invalid("the patient has no recorded blood group (LOINC 882-1): group them before crossmatching, "
                          f"or in an emergency issue {given_to_anyone} uncrossmatched with the reason",
                          field="emergency_reason")
        if not _given_to_anyone(found["component"], found["abo"], found["rhd"]):
            raise Invalid(f"unit {unit_number} is {words} {found['group']}: a patient with no recorded blood group "
                          f"may only receive {given_to_anyone}", field="unit_number")
    else:
        refused = incompatibility(found["component"], group["abo"], group["rhd"], found["abo"], found["rhd"])
        if refused:
            raise Invalid(f"unit {unit_number} ({found['group']}) is not compatible with the patient "
                          f"({group['words']}): {refused}", field="unit_number")
        emergency_reason = None  # crossmatched against a recorded group: not an emergency issue
    _event(conn, principal, found, "reserved", patient_id=request["patient_id"], request_id=request_id,
           emergency=emergency_reason is not None, reason=emergency_reason, at=at)
    return one_request(conn, principal, request_id, today=today)


def release(conn: Connection, principal: Principal, unit_id: uuid.UUID, reason: str, *, today: dt.date) -> dict:
    """A reserved unit, or an issued one the ward returned unused, back to stock (the patient no longer needs it),
    with why: the blood bank judges a returned bag as it judges any (and discards it when the cold chain was
    broken). Transfused, discarded or in stock already: 409."""
    found = _locked_unit(conn, unit_id, today)
    if found["last_event"] not in ("reserved", "issued"):
        raise Conflict(f"unit {found['unit_number']} is {found['status']}: only a reserved unit, or an issued one "
                       "returned unused, is released")
    _event(conn, principal, found, "released", reason=reason, patient_id=found["patient_id"],
           request_id=found["request_id"])
    return unit(conn, principal, unit_id, today=today)


def cancel_request(conn: Connection, principal: Principal, patient_id: uuid.UUID, request_id: uuid.UUID,
                   reason: str, *, today: dt.date) -> dict:
    """The patient no longer needs the blood (the operation called off): the request's next version, cancelled with
    the reason, and each unit reserved for it released back to stock, its history saying why. Refused (409) with
    nothing written while a unit of it is issued (the ward returns it first) or when one was transfused; a request
    not of this patient, or none: 404."""
    _serialise(conn, request_id)
    row = conn.execute(_ONE_REQUEST, {"request": request_id}).mappings().first()
    if row is None or row["patient_id"] != patient_id:
        raise NotFound(f"no blood request {request_id} on this patient's record", request_id=str(request_id))
    if row["cancel_reason"] is not None:
        raise Conflict(f"this request was cancelled already ({row['cancel_reason']})")
    reserved = []
    for held in conn.execute(_OF_REQUESTS, {"requests": [request_id]}).mappings():
        found = _locked_unit(conn, held["id"], today)
        if found["last_event"] == "issued":
            raise Conflict(f"unit {found['unit_number']} of this request is issued to the ward: return it to the "
                           "blood bank first, which releases it back to stock, then cancel the request")
        if found["last_event"] == "transfused":
            raise Conflict(f"unit {found['unit_number']} of this request was transfused: a request whose blood was "
                           "given stays on the record; it cannot be cancelled")
        if found["last_event"] == "reserved" and found["request_id"] == request_id:
            reserved.append(found)
    for found in reserved:
        _event(conn, principal, found, "released", reason=f"request cancelled: {reason}", patient_id=patient_id,
               request_id=request_id)
    record.append(conn, principal, "blood_request", patient_id=patient_id, supersedes=row["version_id"],
                  detail={**{k: row[k] for k in ("component", "units", "indication", "urgency")},
                          "cancel_reason": reason}, reason=f"cancelled: {reason}",
                  audited_as="blood_request_cancellation")
    return one_request(conn, principal, request_id, today=today)


def issue(conn: Connection, principal: Principal, unit_id: uuid.UUID, *, today: dt.date,
          at: dt.datetime | None = None) -> dict:
    """A reserved unit leaves the blood bank for the patient's ward, issued by the caller now (or `at`). Not
    reserved: 409; expired since it was reserved: 422."""
    found = _locked_unit(conn, unit_id, today)
    if found["status"] == "expired":
        raise Invalid(f"unit {found['unit_number']} expired on {found['expires_on']}: release and discard it, and "
                      "reserve another", field="unit_id")
    if found["last_event"] != "reserved":
        raise Conflict(f"unit {found['unit_number']} is {found['status']}: reserve it for a request before issuing "
                       "it")
    _event(conn, principal, found, "issued", patient_id=found["patient_id"], request_id=found["request_id"],
           emergency=found["emergency"], reason=found["reason"], at=at)
    return unit(conn, principal, unit_id, today=today)


def issued_to(conn: Connection, principal: Principal, patient_id: uuid.UUID, *, today: dt.date) -> list[dict]:
    """The units issued to the patient and not yet transfused: what the ward may hang (the nurse's form)."""
    return _shown(conn, principal, [_unit_view(dict(r), today)
                                    for r in conn.execute(_ISSUED_TO, {"patient": patient_id}).mappings()])


def hang_unit(conn: Connection, principal: Principal, started: Entry) -> None:
    """The bedside check's last word (the nursing layer's `transfusion`, first version): the unit number given
    must be a unit issued to THIS patient and not expired, or the whole act is refused (422 on unit_number,
    nothing written); it becomes transfused, naming the entry. The other patient a unit was issued to is not
    named: the nurse is told to stop, not whose it is."""
    if started.supersedes is not None or started.status == "entered_in_error":
        return
    number = started.detail["unit_number"]
    row = conn.execute(_BY_NUMBER, {"number": number}).mappings().first()
    if row is None:
        raise Invalid(f"there is no unit {number} in this facility's blood bank: stop, and check the number on the "
                      "bag against the blood bank's issue slip", field="unit_number")
    # The facility's own day at the start judges expiry (the nurse's service writes it, knowing the facility's zone):
    # a unit expiring on the 28th is not hung at 01:00 on the 29th in Nairobi, still the 28th in UTC.
    found = _locked_unit(conn, row["id"], started.detail["started_on"])
    if found["patient_id"] not in (None, started.patient_id):
        raise Invalid(f"WRONG PATIENT: unit {number} is for another patient, not this one. Do not transfuse it: "
                      "return it to the blood bank", field="unit_number")
    if row["last_event"] != "issued":
        state = "transfused already" if row["last_event"] == "transfused" else f"{_STATUS[row['last_event']]}"
        raise Invalid(f"unit {number} was not issued to this patient (it is {state}): do not transfuse it; ask the "
                      "blood bank to issue a unit for this patient", field="unit_number")
    if found["status"] == "expired":
        raise Invalid(f"unit {number} expired on {found['expires_on']}: do not transfuse it, return it to the "
                      "blood bank", field="unit_number")
    _event(conn, principal, found, "transfused", patient_id=started.patient_id, request_id=found["request_id"],
           emergency=found["emergency"], reason=found["reason"], entry_id=started.id, at=started.occurred_at,
           audited={"second_checker": str(started.detail["checked_by_account"])})


def check_volume_given(conn: Connection, principal: Principal, ended: Entry) -> None:
    """The bedside's end of a transfusion: the volume given is at most what the bag held, the unit's volume as the
    blood bank received it (450 ml given from a 280 ml unit is a slip of the keys, or another bag's figure, and
    would read as more blood than the patient had). Refused 422 on volume_ml, nothing written."""
    given = ended.detail.get("volume_ml")
    if given is None or ended.status == "entered_in_error":
        return
    held = conn.execute(sa.select(blood_unit.c.volume_ml).where(
        blood_unit.c.unit_number == ended.detail["unit_number"])).scalar()
    if held is not None and given > held:
        raise Invalid(f"unit {ended.detail['unit_number']} held {held} ml as the blood bank received it: the volume "
                      f"given, {given} ml, is more than the bag held; give what went in, at most {held} ml",
                      field="volume_ml")


record.register_reaction("transfusion", hang_unit)
record.register_reaction("transfusion", check_volume_given)
