"""The imaging department's bench: the facility's open imaging orders (an X-ray, an ultrasound, a CT from the
facility's LOINC catalogue) as the department works them, recording each study performed and its report, for a
department with no RIS of its own (one that has one sends its reports as ORU messages, as a laboratory does).

An order on the bench (bench.py: which orders, the window, the order and the audit of each list, shared with the
laboratory) is a current imaging `service_request` still active, in one of three states:

- awaiting study: the patient has not been imaged yet;
- performed: an `imaging_performed` entry says who performed the study and when (its `occurred_at`, the time
  given, which may be hours before it is recorded, never before the order), and how (views taken, contrast
  given); it is kept in `specimen_receipt`'s table, the laboratory's receipt having the same shape. Recorded on
  the wrong order, it is entered in error with the reason, and the order awaits its study again;
- reported: its report waits for a clinician's sign-off;

and apart from them, signed off: its report reviewed, listed for `bench.RESULTED_SHOWN_DAYS` after the report still,
for an error found after the review to be corrected from the bench.

The report is the order's `result`, written by `service.record_result` as an HL7 ORU's report is (the study's
LOINC code, text as its value): its impression is the value, what the clinician's review list and the chart show
first, and its findings are the result's note. A critical finding, one the clinician must act on now (a tension
pneumothorax, free air under the diaphragm), flags it AA, one of service.CRITICAL_FLAGS: it is a critical result
as a lab value beyond its critical limits is, heading every clinician's results to review whoever ordered it and
called on its ward's worklist until a doctor signs it off, and the reporter is asked to telephone. An unexpected
finding that is not urgent (a renal cyst on a chest film) flags it A, abnormal, heading the ordering clinician's
list among the abnormal results, as an abnormal lab result does. Its author signs it. A correction is its next
version (`service.correct_result`) with the reason, flagged again and reviewed again. The chart, the review list and
the patient portal read it as they read any result.

The department acts for the facility on the orders placed there: nothing here opens a chart or needs a care
relationship. It shows a patient by what matches them at the door (name, MRN, sex, age), the study, and who
ordered it and why (the order's clinical information: what the study is to answer, which the radiographer needs
to choose the views and the radiologist to report), never the chart (policies/access.toml ACC-022). Each patient
listed gets a read event of the orders and reports shown.
"""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy.engine import Connection

from appliance.layers.clinical import bench, service
from appliance.layers.clinical.errors import Conflict
from appliance.layers.clinical.schemas import ImagingReportCorrectionIn, ImagingReportIn, ImagingReportResultIn
from appliance.substrate import record
from appliance.substrate.principal import Principal

STATES = ("awaiting_study", "performed", "reported")
STATE_WORDS = {"awaiting_study": "Awaiting study", "performed": "Performed: awaiting report",
               "reported": "Reported: awaiting sign-off", "signed_off": "Signed off"}
BENCH = bench.Bench(bench.Department(category="imaging", receipt_kind="imaging_performed", states=STATES,
                                     name="imaging", noun="imaging order"))
LISTS = BENCH.department.lists
# The flags of a report with a critical finding (critically abnormal, a critical result) and with an unexpected
# one that is not urgent (abnormal), as HL7 flags a result in words (AA, A).
CRITICAL_FINDING = "AA"
UNEXPECTED_FINDING = "A"


def worklist(conn: Connection, principal: Principal, *, today: dt.date, state: str | None = None) -> dict:
    """The facility's open imaging orders, those with work still to do (a study to perform, a report to write)
    before those reported and waiting for sign-off, then STAT, urgent, routine, oldest first within each; each
    with its patient, study, who ordered it, why and where, and its state; `state` keeps one state. Each patient
    listed gets a read event."""
    listed = BENCH.listed(conn, principal, today=today, state=state)
    _as_studies(listed["orders"])
    return listed


def imaging_order(conn: Connection, principal: Principal, order_id: uuid.UUID, *, today: dt.date) -> dict:
    """One imaging order as the department sees it (a signed-off one too), its read noted on the patient's record."""
    return _as_studies(BENCH.composed(conn, principal, [BENCH.order(conn, order_id)], today))[0]


def record_performed(conn: Connection, principal: Principal, order_id: uuid.UUID, *, note: str | None,
                     today: dt.date, performed_at: dt.datetime | None = None) -> dict:
    """Record that the order's study was performed: who (the author), when (`performed_at`, now if not given: the
    night's studies recorded in the morning keep their own times), and how (`note`). A time still to come, or
    before the order: 422 on performed_at."""
    BENCH.take_in_hand(conn, principal, order_id, note=note, at=performed_at, at_field="performed_at",
                       done="performed", already="this {display} was already recorded as performed at {at}",
                       past="this {display} has been reported already: its study was performed", by="performed_by")
    return imaging_order(conn, principal, order_id, today=today)


def performed_in_error(conn: Connection, principal: Principal, order_id: uuid.UUID, *, reason: str,
                       today: dt.date) -> dict:
    """'Performed' was recorded on the wrong order (the patient beside it on the list, a study not done after
    all): its entry is entered in error with the reason and the order is back to awaiting its study, as the
    laboratory rejects a specimen. Not performed, or reported already: 409."""
    BENCH.serialise(conn, order_id)
    order = BENCH.order(conn, order_id)
    if order["state"] == "awaiting_study":
        raise Conflict(f"this {order['display']} has not been recorded as performed: there is nothing to undo")
    if order["state"] != "performed":
        raise Conflict(f"this {order['display']} has been reported: correct the report rather than undo the study "
                       "it was read from")
    record.retract(conn, principal, BENCH.receipt_of(conn, order_id), reason)
    return imaging_order(conn, principal, order_id, today=today)


def report(conn: Connection, principal: Principal, order_id: uuid.UUID, data: ImagingReportIn, *,
           today: dt.date) -> dict:
    """The report of a study performed, signed by its author: the order's result, waiting for the ordering
    clinician's review. Not performed yet, or reported already: 409."""
    BENCH.serialise(conn, order_id)
    order = BENCH.order(conn, order_id)
    if order["state"] == "awaiting_study":
        raise Conflict(f"this {order['display']} has not been recorded as performed: record the study performed "
                       "first, then report it")
    if order["state"] != "performed":
        raise Conflict(f"this {order['display']} is reported already: correct the report rather than report it "
                       "again")
    service.record_result(conn, principal, order["patient_id"], _result_in(order["code"], order["id"], data))
    return imaging_order(conn, principal, order_id, today=today)


def correct_report(conn: Connection, principal: Principal, result_id: uuid.UUID, data: ImagingReportCorrectionIn,
                   *, today: dt.date) -> dict:
    """Correct the current version of an imaging order's report, with the reason: its next version, signed by
    the corrector, flagged again and waiting for review again (the corrected one stays in its history). A
    version corrected since: 409. Returns the order, `correction` naming the version written."""
    found = BENCH.result_of_order(conn, result_id)
    BENCH.serialise(conn, found["service_request_id"])
    written = service.correct_result(conn, principal, found["patient_id"], result_id,
                                     _result_in(found["code"], found["service_request_id"], data), data.reason)
    return imaging_order(conn, principal, found["service_request_id"], today=today) | {"correction": written["id"]}


def _result_in(code: str, order_id: uuid.UUID, data: ImagingReportIn) -> ImagingReportResultIn:
    # The report's fields fit the report's result (its note as long as the findings), so this never refuses.
    return ImagingReportResultIn(code=code, service_request_id=order_id, value=data.impression, note=data.findings,
                                 flag=_finding_flag(data))


def _finding_flag(data: ImagingReportIn) -> str | None:
    """The report's flag: critical outranks unexpected, a report marked both being a call all the same."""
    return CRITICAL_FINDING if data.critical else UNEXPECTED_FINDING if data.unexpected else None


def _as_studies(rows: list[dict]) -> list[dict]:
    """The bench's rows in the department's words: the study performed (not a specimen received) and its
    reports (impression and findings, not a value and a note)."""
    for row in rows:
        row["performed_at"], row["performed_by"] = row["received_at"], row["received_by"]
        row["performed_note"] = row["received_note"]
        row["reports"] = [{"id": r["id"], "root_id": r["root_id"], "impression": r["value_text"],
                           "findings": r["note"], "flag": r["flag"], "critical": r["flag"] in service.CRITICAL_FLAGS,
                           "unexpected": r["flag"] == UNEXPECTED_FINDING,
                           "recorded_at": r["recorded_at"], "reported_by": r["author_id"],
                           "corrected": r["corrected"], "signed": r["signed"]} for r in row["results"]]
    return rows
