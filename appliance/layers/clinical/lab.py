"""The laboratory bench: the facility's open lab orders as the laboratory works them, receiving each one's
specimen, and entering and correcting its results, for a laboratory with no LIS of its own (one that has
one sends ORU messages instead: appliance/interop/hl7v2/laboratory.py).

An order on the bench (bench.py: which orders, the window, the order and the audit of each list, shared with
imaging) is a current lab `service_request` still active, in one of three states:

- awaiting specimen: nothing has reached the laboratory yet;
- specimen received: a `specimen_receipt` entry (t0025) says who received it at the bench and when;
- resulted: results answer it and one at least waits for a clinician's sign-off;

and apart from them, signed off: every result of it signed, listed for `RESULTED_SHOWN_DAYS` after its last
result still, for an error found after the sign-off to be corrected from the bench.

A result entered here is a `result` written by `service.record_result`, as the HL7 feed and the chart's
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
from decimal import Decimal
from typing import Any

from pydantic import ValidationError
from sqlalchemy.engine import Connection

from appliance.layers.clinical import bench, catalogue, service
from appliance.layers.clinical.errors import Conflict, Invalid
from appliance.layers.clinical.schemas import BenchResultsIn, ResultCorrectionIn, ResultIn
from appliance.substrate import record
from appliance.substrate.principal import Principal
from appliance.substrate.record import RecordError

STATES = ("awaiting_specimen", "specimen_received", "resulted")
STATE_WORDS = {"awaiting_specimen": "Awaiting specimen", "specimen_received": "Specimen received",
               "resulted": "Resulted: awaiting sign-off", "signed_off": "Signed off"}
LIMIT, BENCH_WINDOW_DAYS, RESULTED_SHOWN_DAYS = bench.LIMIT, bench.BENCH_WINDOW_DAYS, bench.RESULTED_SHOWN_DAYS
BENCH = bench.Bench(bench.Department(category="lab", receipt_kind="specimen_receipt", states=STATES,
                                     name="laboratory", noun="lab order"))
LISTS = BENCH.department.lists


def worklist(conn: Connection, principal: Principal, *, today: dt.date, state: str | None = None) -> dict:
    """The facility's open lab orders, those with bench work still to do (a specimen to receive, results to
    enter) before those resulted and waiting for sign-off, then STAT, urgent, routine, oldest first within each;
    each with its patient, test, who ordered it and where, and its state; `state` keeps one state. (Urgency
    alone put a week of urgent results waiting for the clinician's sign-off above the routine specimens still to
    receive: 46 of them on the demo's district hospital.) How many are in each
    state is counted for every state (a count names nobody). Each patient listed gets a read event."""
    listed = BENCH.listed(conn, principal, today=today, state=state)
    _with_analytes(conn, listed["orders"], today)
    return listed


def bench_order(conn: Connection, principal: Principal, order_id: uuid.UUID, *, today: dt.date) -> dict:
    """One lab order as the bench shows it (a signed-off one too), its read noted on the patient's record."""
    return _with_analytes(conn, BENCH.composed(conn, principal, [BENCH.order(conn, order_id)], today), today)[0]


def receive_specimen(conn: Connection, principal: Principal, order_id: uuid.UUID, *, note: str | None,
                     today: dt.date) -> dict:
    """Record that the order's specimen reached the laboratory: who received it (the author) and when."""
    BENCH.take_in_hand(conn, principal, order_id, note=note,
                       already="the specimen of this {display} order was already received at {at}",
                       past="this {display} order has results already: its specimen was tested", by="received_by")
    return bench_order(conn, principal, order_id, today=today)


def reject_specimen(conn: Connection, principal: Principal, order_id: uuid.UUID, *, reason: str,
                    today: dt.date) -> dict:
    """The specimen received cannot be tested (haemolysed, clotted, unlabelled, too little): its receipt is
    entered in error with the reason, the order is back to awaiting a specimen, and the ward's task to collect
    one opens again (the nursing layer's reaction). Not received, or tested already: 409."""
    BENCH.serialise(conn, order_id)
    order = BENCH.order(conn, order_id)
    if order["state"] == "awaiting_specimen":
        raise Conflict(f"no specimen of this {order['display']} order has been received: there is none to reject")
    if order["state"] != "specimen_received":
        raise Conflict(f"this {order['display']} order has results already: correct a result rather than reject "
                       "the specimen it was tested on")
    record.retract(conn, principal, BENCH.receipt_of(conn, order_id), reason)
    return bench_order(conn, principal, order_id, today=today)


def enter_results(conn: Connection, principal: Principal, order_id: uuid.UUID, data: BenchResultsIn, *,
                  today: dt.date) -> dict:
    """The results of an order whose specimen was received: each component given, in the caller's one
    transaction, read against the catalogue and flagged as `service.record_result` does. One refused, the
    whole act is refused naming its component (the caller's transaction writes nothing)."""
    BENCH.serialise(conn, order_id)
    order = BENCH.order(conn, order_id)
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
    waiting for review again; the order it answers is returned as the bench shows it, `correction` naming the
    version written (its flag says whether the corrected value is critical)."""
    found = BENCH.result_of_order(conn, result_id)
    BENCH.serialise(conn, found["service_request_id"])
    written = _as_component(found["display"], found["code"], lambda: service.correct_result(
        conn, principal, found["patient_id"], result_id,
        _result_in(found["code"], data.value, found["service_request_id"], data.note), data.reason))
    return bench_order(conn, principal, found["service_request_id"], today=today) | {"correction": written["id"]}


def _result_in(code: str, value: Any, order_id: uuid.UUID, note: str | None) -> ResultIn:
    try:
        return ResultIn.model_validate({"code": code, "value": value, "service_request_id": order_id, "note": note})
    except ValidationError as exc:  # a blank value: the validator's own sentence
        raise Invalid(str(exc.errors()[0]["msg"]).removeprefix("Value error, "), field="value") from None


def _as_component(name: str, code: str, write) -> Any:
    """`write`'s outcome, a refusal of it said of the component it concerns, for the page to point at its field."""
    try:
        return write()
    except RecordError as exc:
        if exc.status == 404:
            raise
        words = exc.detail if exc.detail.startswith(name) else f"{name}: {exc.detail}"
        raise type(exc)(words, **{**exc.extra, "field": f"results.{code}", "component": code}) from None


def _with_analytes(conn: Connection, rows: list[dict], today: dt.date) -> list[dict]:
    """Each order with its specimen's state as noted on receipt and its test's components, each analyte's range
    the band of this patient's sex and age, the range their result will be judged by, saying whom the band is for;
    and each result the band it was judged by, when its range is that band's (a result taken before a birthday
    that moved the patient into the next band, or one judged by the range its sender gave, names none)."""
    tests = catalogue.get_orderables(conn, sorted({r["code"] for r in rows}))
    for row in rows:
        row["specimen_note"] = row["received_note"]
        test = tests.get(row["code"])
        analytes = {a.loinc: a.for_patient(row["sex"], row["birth_date"], today)
                    for a in ((test.components or [test]) if test else [])}
        row["analytes"] = [{"code": a.loinc, "name": a.name, "unit": a.unit, "low": a.low, "high": a.high,
                            "choices": a.choices, "band": a.band} for a in analytes.values()]
        for found in row.get("results", []):
            analyte = analytes.get(found["code"])
            judged_by = analyte is not None and analyte.band and (found["reference_low"], found["reference_high"]) == (
                _stored(analyte.low), _stored(analyte.high))
            found["reference_band"] = analyte.band if judged_by else None
    return rows


def _stored(limit: float | None) -> Decimal | None:
    """A catalogue limit as the result's range keeps it (service._decimal: through its text, so 11.5 is 11.5)."""
    return None if limit is None else Decimal(str(limit))
