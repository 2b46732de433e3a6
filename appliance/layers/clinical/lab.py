"""The laboratory bench: the facility's open lab orders as the laboratory works them, receiving each one's
specimen, and entering and correcting its results, for a laboratory with no LIS of its own (one that has
one sends ORU messages instead: appliance/interop/hl7v2/laboratory.py).

An order on the bench is a current lab `service_request` still active, in one of three states:

- awaiting specimen: nothing has reached the laboratory yet;
- specimen received: a `specimen_receipt` entry (t0025) says who received it at the bench and when;
- resulted: results answer it and one at least waits for a clinician's sign-off.

It leaves the bench when every result of it is signed off, or when it is revoked or entered in error; and,
since sign-off is the clinician's work and not the laboratory's, a resulted order leaves it `RESULTED_SHOWN`
after its last result (long enough to correct one) whether signed or not. Only orders of the last
`BENCH_WINDOW` are read: an order stays active for good once answered, and reading every one a facility ever
placed cost ~0.1 s for a health centre's year (1,100 orders) and grows with every year kept; a specimen not
received by then is not coming (the page says the window). One order is still found by its id, however old. A
result entered here is a `result` written by `service.record_result`, as the HL7 feed and the chart's
orders page write one: the catalogue's unit, range and flag, the same review list, the same turnaround.
A correction is the result's next version (`service.correct_result`), flagged again and reviewed again.

The laboratory acts for the facility on the orders placed there: nothing here opens a chart or needs a
care relationship, because the bench shows a patient by what matches a specimen's label (name, MRN, sex,
age) and the test, never the chart (policies/access.toml ACC-021). Each read is on the patient's record:
every patient listed gets a read event of the orders (and results) shown, as the ward's worklist does.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import sqlalchemy as sa
from pydantic import ValidationError
from sqlalchemy.engine import Connection

from appliance.layers.clinical import catalogue, service
from appliance.layers.clinical.errors import Conflict, Invalid, NotFound
from appliance.layers.clinical.schemas import BenchResultsIn, ResultCorrectionIn, ResultIn
from appliance.substrate import record
from appliance.substrate.age import age_label
from appliance.substrate.principal import Principal
from appliance.substrate.record import RecordError, note_list_read

STATES = ("awaiting_specimen", "specimen_received", "resulted")
STATE_WORDS = {"awaiting_specimen": "Awaiting specimen", "specimen_received": "Specimen received",
               "resulted": "Resulted: awaiting sign-off", "signed_off": "Signed off"}
# A laboratory's open orders stay well under this; past it the list says it is cut short rather than render
# (and audit) rows nobody reads.
LIMIT = 300

BENCH_WINDOW_DAYS = 90
RESULTED_SHOWN_DAYS = 7
# The orders of the bench's window, found by the entry index on (kind, occurred_at) (a new version of an order
# is written later than the order, so a window on the current version keeps every order placed within it).
_IN_WINDOW = f"AND o.kind = 'service_request' AND o.occurred_at >= now() - interval '{BENCH_WINDOW_DAYS} days'"
# What the bench lists: not signed off, and not resulted longer ago than RESULTED_SHOWN_DAYS.
_ON_BENCH = (f"state <> 'signed_off' AND NOT (state = 'resulted' "
             f"AND last_result_at < now() - interval '{RESULTED_SHOWN_DAYS} days')")

# Every current, active lab order with where it stands; `:order` keeps one (NULL: all). A result counts as
# signed off as the review list counts it (a sign-off of that version).
_BENCH = """
    WITH orders AS (
        SELECT o.root_id AS id, o.patient_id, o.encounter_id, sr.code, sr.display, sr.priority,
               first.occurred_at AS ordered_at, first.author_id AS ordered_by
        FROM entry o JOIN service_request sr ON sr.entry_id = o.id JOIN entry first ON first.id = o.root_id
        WHERE sr.category = 'lab' AND sr.status = 'active'
          AND NOT EXISTS (SELECT 1 FROM entry s WHERE s.supersedes = o.id)
          AND (CAST(:order AS uuid) IS NULL OR o.root_id = CAST(:order AS uuid)) {window}
    ), bench AS (
        SELECT ord.*, p.mrn, p.family_name, p.given_names, p.sex, p.birth_date,
               COALESCE(enc.ward_code, enc.encounter_class) AS location,
               rc.occurred_at AS received_at, rc.author_id AS received_by, rc.note AS specimen_note,
               res.last_result_at,
               CASE WHEN res.results > 0 AND res.unsigned = 0 THEN 'signed_off'
                    WHEN res.results > 0 THEN 'resulted'
                    WHEN rc.occurred_at IS NOT NULL THEN 'specimen_received'
                    ELSE 'awaiting_specimen' END AS state
        FROM orders ord JOIN patient p ON p.id = ord.patient_id
        LEFT JOIN encounter enc ON enc.id = ord.encounter_id
        LEFT JOIN LATERAL (
            SELECT re.occurred_at, re.author_id, r.note
            FROM entry re JOIN specimen_receipt r ON r.entry_id = re.id
            WHERE r.service_request_id = ord.id AND NOT EXISTS (SELECT 1 FROM entry s WHERE s.supersedes = re.id)
            ORDER BY re.occurred_at LIMIT 1) rc ON true
        LEFT JOIN LATERAL (
            SELECT count(*) AS results, max(ve.recorded_at) AS last_result_at,
                   count(*) FILTER (WHERE NOT EXISTS (SELECT 1 FROM result_signoff so WHERE so.result_id = ve.id))
                     AS unsigned
            FROM entry ve JOIN result v ON v.entry_id = ve.id
            WHERE v.service_request_id = ord.id
              AND NOT EXISTS (SELECT 1 FROM entry s WHERE s.supersedes = ve.id)) res ON true
    )
"""
_LIST = sa.text(_BENCH.format(window=_IN_WINDOW) + f"""
    SELECT * FROM bench WHERE {_ON_BENCH} AND (CAST(:state AS text) IS NULL OR state = :state)
    ORDER BY state = 'resulted', CASE priority WHEN 'stat' THEN 0 WHEN 'urgent' THEN 1 ELSE 2 END, ordered_at, id
    LIMIT :limit""")  # noqa: S608 -- constants of this module joined; values are bound
_COUNTED = f"SELECT state, count(*) FROM bench WHERE {_ON_BENCH} GROUP BY state"  # noqa: S608 -- constants
_COUNTS = sa.text(_BENCH.format(window=_IN_WINDOW) + _COUNTED)
_ONE = sa.text(_BENCH.format(window="") + "SELECT * FROM bench")  # noqa: S608 -- constants
_RESULTS = sa.text("""
    SELECT ve.id, ve.root_id, ve.patient_id, ve.recorded_at, ve.supersedes IS NOT NULL AS corrected,
           EXISTS (SELECT 1 FROM result_signoff so WHERE so.result_id = ve.id) AS signed, v.service_request_id,
           v.code, v.display, v.value_numeric, v.value_text, v.unit, v.reference_low, v.reference_high, v.flag
    FROM entry ve JOIN result v ON v.entry_id = ve.id
    WHERE v.service_request_id = ANY(:orders) AND NOT EXISTS (SELECT 1 FROM entry s WHERE s.supersedes = ve.id)
    ORDER BY ve.occurred_at, v.code""")
# The current version of a result answering a lab order: what the bench may correct.
_RESULT_OF_LAB_ORDER = sa.text("""
    SELECT ve.patient_id, v.code, v.display, v.service_request_id
    FROM entry ve JOIN result v ON v.entry_id = ve.id
    JOIN entry o ON o.id = v.service_request_id
    WHERE ve.id = :result AND EXISTS (SELECT 1 FROM entry cur JOIN service_request sr ON sr.entry_id = cur.id
                                      WHERE cur.root_id = o.id AND sr.category = 'lab')""")


def worklist(conn: Connection, principal: Principal, *, today: dt.date, state: str | None = None) -> dict:
    """The facility's open lab orders, those with bench work still to do (a specimen to receive, results to
    enter) before those resulted and waiting for sign-off, then STAT, urgent, routine, oldest first within each;
    each with its patient, test, who ordered it and where, and its state; `state` keeps one state. (Urgency
    alone put a week of urgent results waiting for the clinician's sign-off above the routine specimens still to
    receive: 46 of them on the demo's district hospital.) How many are in each
    state is counted for every state (a count names nobody). Each patient listed gets a read event."""
    if state is not None and state not in STATES:
        raise Invalid(f"state is one of {', '.join(STATES)}, not {state!r}", field="state")
    rows = [dict(r) for r in conn.execute(_LIST, {"order": None, "state": state, "limit": LIMIT + 1}).mappings()]
    counts = dict(conn.execute(_COUNTS, {"order": None}).all())
    cut_short = len(rows) > LIMIT
    orders = _composed(conn, principal, rows[:LIMIT], today)
    return {"state": state, "orders": orders, "counts": {s: counts.get(s, 0) for s in STATES},
            "cut_short": cut_short}


def bench_order(conn: Connection, principal: Principal, order_id: uuid.UUID, *, today: dt.date) -> dict:
    """One lab order as the bench shows it (a signed-off one too), its read noted on the patient's record."""
    return _composed(conn, principal, [_order(conn, order_id)], today)[0]


def receive_specimen(conn: Connection, principal: Principal, order_id: uuid.UUID, *, note: str | None,
                     today: dt.date) -> dict:
    """Record that the order's specimen reached the laboratory: who received it (the author) and when."""
    _serialise(conn, order_id)
    order = _order(conn, order_id)
    if order["state"] == "specimen_received":
        raise Conflict(f"the specimen of this {order['display']} order was already received at "
                       f"{order['received_at']:%Y-%m-%d %H:%M} UTC", received_by=str(order["received_by"]))
    if order["state"] != "awaiting_specimen":
        raise Conflict(f"this {order['display']} order has results already: its specimen was tested")
    record.append(conn, principal, "specimen_receipt", patient_id=order["patient_id"],
                  encounter_id=order["encounter_id"], detail={"service_request_id": order["id"], "note": note})
    return bench_order(conn, principal, order_id, today=today)


# The receipt in force of an order: what a rejection marks entered in error.
_RECEIPT_OF = sa.text("""
    SELECT re.id FROM entry re JOIN specimen_receipt r ON r.entry_id = re.id
    WHERE r.service_request_id = :order AND NOT EXISTS (SELECT 1 FROM entry s WHERE s.supersedes = re.id)""")


def reject_specimen(conn: Connection, principal: Principal, order_id: uuid.UUID, *, reason: str,
                    today: dt.date) -> dict:
    """The specimen received cannot be tested (haemolysed, clotted, unlabelled, too little): its receipt is
    entered in error with the reason, the order is back to awaiting a specimen, and the ward's task to collect
    one opens again (the nursing layer's reaction). Not received, or tested already: 409."""
    _serialise(conn, order_id)
    order = _order(conn, order_id)
    if order["state"] == "awaiting_specimen":
        raise Conflict(f"no specimen of this {order['display']} order has been received: there is none to reject")
    if order["state"] != "specimen_received":
        raise Conflict(f"this {order['display']} order has results already: correct a result rather than reject "
                       "the specimen it was tested on")
    receipt = conn.execute(_RECEIPT_OF, {"order": order_id}).scalar_one()
    record.retract(conn, principal, receipt, reason)
    return bench_order(conn, principal, order_id, today=today)


def enter_results(conn: Connection, principal: Principal, order_id: uuid.UUID, data: BenchResultsIn, *,
                  today: dt.date) -> dict:
    """The results of an order whose specimen was received: each component given, in the caller's one
    transaction, read against the catalogue and flagged as `service.record_result` does. One refused, the
    whole act is refused naming its component (the caller's transaction writes nothing)."""
    _serialise(conn, order_id)
    order = _order(conn, order_id)
    if order["state"] == "awaiting_specimen":
        raise Conflict(f"the specimen of this {order['display']} order has not been received: receive it first, "
                       "then enter its results")
    if order["state"] != "specimen_received":
        raise Conflict(f"this {order['display']} order has results already: correct a result rather than enter "
                       "them again")
    test = catalogue.get_orderable(conn, order["code"])
    components = {a.loinc: a for a in (test.components or [test])}
    seen: set[str] = set()
    for given in data.results:
        if given.code not in components:
            raise Invalid(f"{given.code} is not a component of {test.name} ({', '.join(components)})",
                          field=f"results.{given.code}", component=given.code)
        if given.code in seen:
            raise Invalid(f"{components[given.code].name} is given twice: give each component once",
                          field=f"results.{given.code}", component=given.code)
        seen.add(given.code)
        _as_component(components[given.code].name, given.code, lambda given=given: service.record_result(
            conn, principal, order["patient_id"], _result_in(given.code, given.value, order["id"], data.note)))
    return bench_order(conn, principal, order_id, today=today)


def correct_result(conn: Connection, principal: Principal, result_id: uuid.UUID, data: ResultCorrectionIn, *,
                   today: dt.date) -> dict:
    """Correct the value of a result of a lab order (misread, mistyped): its next version, flagged again and
    waiting for review again; the order it answers is returned as the bench shows it."""
    found = conn.execute(_RESULT_OF_LAB_ORDER, {"result": result_id}).mappings().first()
    if found is None:
        raise NotFound(f"no result {result_id} of a lab order at this facility", result_id=str(result_id))
    _serialise(conn, found["service_request_id"])
    _as_component(found["display"], found["code"], lambda: service.correct_result(
        conn, principal, found["patient_id"], result_id,
        _result_in(found["code"], data.value, found["service_request_id"], data.note), data.reason))
    return bench_order(conn, principal, found["service_request_id"], today=today)


def _result_in(code: str, value: Any, order_id: uuid.UUID, note: str | None) -> ResultIn:
    try:
        return ResultIn.model_validate({"code": code, "value": value, "service_request_id": order_id, "note": note})
    except ValidationError as exc:  # a blank value: the validator's own sentence
        raise Invalid(str(exc.errors()[0]["msg"]).removeprefix("Value error, "), field="value") from None


def _as_component(name: str, code: str, write) -> None:
    """`write`, a refusal of it said of the component it concerns, for the page to point at its field."""
    try:
        write()
    except RecordError as exc:
        if exc.status == 404:
            raise
        words = exc.detail if exc.detail.startswith(name) else f"{name}: {exc.detail}"
        raise type(exc)(words, **{**exc.extra, "field": f"results.{code}", "component": code}) from None


def _serialise(conn: Connection, order_id: uuid.UUID) -> None:
    # Two technicians at one order (a receipt clicked twice, results typed on two benches): the second waits
    # here, then finds the first's act and is refused.
    conn.execute(sa.select(sa.func.pg_advisory_xact_lock(sa.func.hashtextextended(f"healthos.lab.{order_id}", 0))))


def _order(conn: Connection, order_id: uuid.UUID) -> dict:
    row = conn.execute(_ONE, {"order": order_id}).mappings().first()
    if row is None:
        raise NotFound(f"no open lab order {order_id} at this facility", order_id=str(order_id))
    return dict(row)


def _composed(conn: Connection, principal: Principal, rows: list[dict], today: dt.date) -> list[dict]:
    """The orders with their results and their test's components, each patient's read noted."""
    results = [dict(r) for r in conn.execute(_RESULTS, {"orders": [r["id"] for r in rows]}).mappings()] if rows else []
    tests = catalogue.get_orderables(conn, sorted({r["code"] for r in rows}))
    for row in rows:
        row["age"] = age_label(row["birth_date"], today)
        row["results"] = [r for r in results if r["service_request_id"] == row["id"]]
        test = tests.get(row["code"])
        # Each analyte's range is the band of this patient's sex and age, the range their result will be judged by.
        analytes = [a.for_patient(row["sex"], row["birth_date"], today)
                    for a in ((test.components or [test]) if test else [])]
        row["analytes"] = [{"code": a.loinc, "name": a.name, "unit": a.unit, "low": a.low, "high": a.high,
                            "choices": a.choices} for a in analytes]
    note_list_read(conn, principal, "service_request", rows, detail={"list": "laboratory"})
    note_list_read(conn, principal, "result", results, detail={"list": "laboratory"})
    return rows

