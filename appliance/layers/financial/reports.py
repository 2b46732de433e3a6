"""The revenue cycle's reports: same-day charge variance, the late-charge rate, A/R aging, days in A/R,
a patient's balance, the day's takings. KPI 8 of the command center (same-day charge capture) counts the same outcomes
from a projection kept by reaction (capture.py), built with this module's SQL.

**Billable entries** are counted from the clinical and nursing record itself, independently of the
charges, so a charge that is missing shows up as missing: lab and imaging orders placed (current
version active), doses given, encounters finished, medicines the outpatient pharmacy handed over, operations
completed — each counted on the facility-local day its act happened (an operation's is its completion, not its
booking). Each is then matched to the current charge that bills it (none: *missing*; without a price:
*unpriced*; priced and posted the same local day: *same day*; first priced on a later day: *late*).
Bed-days are charged by the census accrual and have no clinical entry of their own on the day; they
appear in the charge totals, not in the entry count.

The **day's takings** are the payments received on one facility-local day, less the refunds given back that
day (money out), by method and by who took them, with each receipt and refund behind the totals: what a cashier
counts the drawer against at the end of a shift.

The **late-charge rate** follows HFMA's MAP Key "late charges as a percentage of total charges": of the
charges priced and posted for services in a period (net of those since credited), the share (by
amount) posted after the service's own facility-local day (a bill-hold of zero days: same-day capture
is the ambition).

Both read when a charge was **captured** as when its care was first charged at a price (`CAPTURED_AT`):
a charge re-priced later (insurance recorded after the care credits it and posts it again at the
insurer's price) keeps the day it was first posted, so a re-pricing is not a late charge.
"""

from __future__ import annotations

import datetime as dt
import uuid
import zoneinfo
from collections import defaultdict
from collections.abc import Sequence
from decimal import Decimal
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from appliance.layers.financial import schedule, service
from appliance.layers.financial.models import invoice, invoice_credit, payment, refund
from appliance.layers.financial.money import AGING_BUCKETS, ZERO, aging, aging_bucket, net_days_in_ar
from appliance.substrate.principal import Principal
from appliance.substrate.record import entry, note_access

OUTCOMES = ("same_day", "late", "unpriced", "missing")
AR_REVENUE_DAYS = 90

# One SELECT per billable source; each yields (root_id, entry_id, kind, patient_id, occurred_at, what,
# department). Records of the window are found by their first version's time; most were never amended,
# so they are read straight from that version (one join), and only the few with later versions go
# through the search for their current one.
_VERSIONED = """
        SELECT e.id AS root_id, {first} AS entry_id, e.kind, e.patient_id, e.occurred_at, {what} AS what,
               {department} AS department
        FROM entry e JOIN {table} d ON d.entry_id = e.id
        WHERE e.kind = '{kind}' AND e.id = e.root_id AND {where}
          AND NOT EXISTS (SELECT 1 FROM entry x WHERE x.supersedes = e.id) AND {billable}
        UNION ALL
        SELECT e.id AS root_id, cur.id AS entry_id, e.kind, e.patient_id, e.occurred_at, {what} AS what,
               {department} AS department
        FROM entry e JOIN entry cur ON cur.root_id = e.id AND cur.id <> e.id JOIN {table} d ON d.entry_id = cur.id
        WHERE e.kind = '{kind}' AND e.id = e.root_id AND {where}
          AND EXISTS (SELECT 1 FROM entry x WHERE x.supersedes = e.id)
          AND NOT EXISTS (SELECT 1 FROM entry x WHERE x.supersedes = cur.id) AND cur.status <> 'entered_in_error'
          AND {billable}"""
_SOURCES = {
    "service_request": _VERSIONED.format(
        first="e.id", what="d.display", table="service_request", kind="service_request",
        department="CASE d.category WHEN 'imaging' THEN 'IMAGING' ELSE 'LAB' END", billable="d.status = 'active'",
        where="{where}"),
    "medication_administration": _VERSIONED.format(
        first="e.id", what="d.drug", table="medication_administration", kind="medication_administration",
        department="'PHARMACY'", billable="d.outcome = 'given'", where="{where}"),
    "encounter_status": """
        SELECT e.id AS root_id, e.id AS entry_id, e.kind, e.patient_id, e.occurred_at,
               'Consultation (' || replace(n.encounter_class, '_', ' ') || ')' AS what,
               COALESCE(n.ward_code, CASE n.encounter_class WHEN 'emergency' THEN 'ED' WHEN 'inpatient' THEN 'IPD'
                                                             ELSE 'OPD' END) AS department
        FROM entry e JOIN encounter_status_change d ON d.entry_id = e.id JOIN encounter n ON n.id = d.encounter_id
        WHERE e.kind = 'encounter_status' AND {where} AND d.to_status = 'finished'""",
    # A medicine the outpatient pharmacy handed over (the operations layer's `dispense`): billable as handed
    # over, named by its item's drug (read by SQL, as the charging reaction prices it); a dispense reversed
    # (entered in error), or brought back whole (`dispense_return`s of all it handed over), is no longer billable.
    "dispense": _VERSIONED.format(
        first="e.id", what="(SELECT i.drug FROM pharmacy_item i WHERE i.id = d.item_id) || ' (dispensed)'",
        table="dispense", kind="dispense", department="'PHARMACY'", where="{where}",
        billable="d.quantity > (SELECT COALESCE(sum(r.quantity), 0) FROM dispense_return r "
                 "WHERE r.dispense_id = e.id)"),
    # An operation (the clinical layer's theatre case) is billable once completed (its current version), and its
    # care happened when it was completed: a case is booked days ahead, so it is dated by its completion
    # (`ended_at`, the time its charge bills) for the window and the same-day rule, not by its first version as
    # the sources above are. Read as a table `e` whose `occurred_at` is that time, so the statement's conditions
    # on `e` apply unchanged; a case entered in error is no longer billable.
    "surgery": """
        SELECT e.id AS root_id, e.entry_id, e.kind, e.patient_id, e.occurred_at, e.what, 'THEATRE' AS department
        FROM (SELECT cur.root_id AS id, cur.id AS entry_id, cur.kind, cur.patient_id, d.ended_at AS occurred_at,
                     d.procedure AS what
              FROM entry cur JOIN surgery d ON d.entry_id = cur.id
              WHERE cur.kind = 'surgery' AND d.status = 'completed' AND cur.status <> 'entered_in_error'
                AND NOT EXISTS (SELECT 1 FROM entry x WHERE x.supersedes = cur.id)) e
        WHERE {where}""",
    # A unit of blood (the nursing layer's `transfusion`) is billable once started, as the charging reaction bills
    # it: it cannot go back to stock however much was given. Dated by its start (its first version, the time its
    # charge bills); the 15-minute observations and the end are later versions of the one record.
    "transfusion": _VERSIONED.format(
        first="e.id", what="'Blood transfusion (unit ' || d.unit_number || ')'", table="transfusion",
        kind="transfusion", department="'BLOOD'", billable="TRUE", where="{where}"),
}
# The departments above are the defaults of charges.DEFAULT_DEPARTMENTS and CONSULTATION_DEPARTMENTS
# (tests/layers/financial/test_reports.py holds them equal); a charge's own department wins.
BILLABLE_KINDS = ("service_request", "medication_administration", "encounter_status", "dispense", "surgery",
                  "transfusion")
_TABLE_OF = {"service_request": "service_request", "medication_administration": "medication_administration",
             "encounter_status": "encounter_status_change", "dispense": "dispense", "surgery": "surgery",
             "transfusion": "transfusion"}
# When the care a charge `ch` (entry `ce`) bills was captured: when that item of that record, for that day,
# was first charged at a price — a charge credited since included. Re-pricing it (insurance recorded after
# the care: rebilling.py credits the charge and posts it again at the insurer's price, today) changes the
# price, not when the care was charged, so it is no late capture; a charge left unpriced on the day and
# priced later was first charged at a price later, and is late, as it was.
CAPTURED_AT = """COALESCE((
            SELECT min(fe.recorded_at) FROM charge f JOIN entry fe ON fe.id = f.entry_id
            WHERE f.source_root_id = ch.source_root_id AND f.item_kind = ch.item_kind AND f.item_code = ch.item_code
              AND f.service_date = ch.service_date AND f.reverses IS NULL AND f.status = 'posted'), ce.recorded_at)"""
# The charge billing each entry: its record's current, un-credited charge (a priced version supersedes
# the unpriced one, so "current" is the one that counts), with when its care was captured. A charge carries
# the facility-local day of the care it bills (`service_date`, indexed), so the window's charges are read
# as one range and hash-joined to its entries, rather than looked up entry by entry.
_CHARGED = """
    charged AS (
        SELECT DISTINCT ON (ch.source_root_id) ch.source_root_id, ce.id AS charge_id, ch.status, ch.amount,
               ch.department AS charge_department, """ + CAPTURED_AT + """ AS captured_at, ch.service_date
        FROM charge ch JOIN entry ce ON ce.id = ch.entry_id
        WHERE {where}
          AND ch.reverses IS NULL
          AND NOT EXISTS (SELECT 1 FROM entry s WHERE s.supersedes = ce.id)
          AND NOT EXISTS (SELECT 1 FROM charge cr WHERE cr.reverses = ce.root_id)
        ORDER BY ch.source_root_id, ce.recorded_at DESC
    )"""  # noqa: S608 -- constant fragments of this module
# Which records and charges a statement reads: a window's (the reports), or named records (capture.py).
IN_WINDOW = "e.occurred_at >= %(lo)s AND e.occurred_at < %(hi)s"
CHARGED_IN_WINDOW = """ch.service_date BETWEEN (CAST(%(lo)s AS timestamptz) AT TIME ZONE %(tz)s)::date
                                  AND (CAST(%(hi)s AS timestamptz) AT TIME ZONE %(tz)s)::date"""
# The outcome of one billable entry, from its charge (c) and its time (b.occurred_at). KPI 8 (capture.py)
# applies the same rule to its projection; tests/layers/financial/test_capture_kpi.py holds them equal.
_WITH_CHARGES = """
    SELECT b.root_id, b.entry_id, b.kind, b.patient_id, b.occurred_at, b.what,
           COALESCE(c.charge_department, b.department) AS department, c.charge_id, c.amount, c.captured_at,
           CASE WHEN c.charge_id IS NULL THEN 'missing'
                WHEN c.status = 'unpriced' THEN 'unpriced'
                WHEN (c.captured_at AT TIME ZONE %(tz)s)::date <= (b.occurred_at AT TIME ZONE %(tz)s)::date
                    THEN 'same_day'
                ELSE 'late' END AS outcome
    FROM billable b LEFT JOIN charged c ON c.source_root_id = b.root_id
"""


def billable_with_charges(kinds: Sequence[str], records: str, charges: str) -> str:
    """The CTEs `billable` (the billable entries of `kinds` that `records` selects) and `charged` (the
    charges `charges` selects), for a statement to finish."""
    union = " UNION ALL ".join(_SOURCES[kind].format(where=records) for kind in kinds)
    return "WITH billable AS (" + union + "), " + _CHARGED.format(where=charges)


def _present_sources(conn: Connection) -> list[str]:
    """The billable kinds whose tables this schema has (a layer may not be installed yet)."""
    names = list(_TABLE_OF.values())
    found = set(conn.execute(sa.text("SELECT relname FROM pg_class WHERE relnamespace = current_schema()::regnamespace "
                                     "AND relname = ANY(:names)"), {"names": names}).scalars())
    return [kind for kind, table in _TABLE_OF.items() if table in found]


class BillableEntry(NamedTuple):
    """One billable entry of a window, the charge that bills it (if any) and the outcome."""

    root_id: uuid.UUID
    entry_id: uuid.UUID
    kind: str
    patient_id: uuid.UUID
    occurred_at: dt.datetime
    what: str
    department: str
    charge_id: uuid.UUID | None
    amount: Decimal | None
    charged_at: dt.datetime | None
    outcome: str  # same_day, late, unpriced, missing


def billable_entries(conn: Connection, start: dt.datetime, end: dt.datetime, tz: str) -> list[BillableEntry]:
    """Every billable entry of [start, end) with the charge that bills it and the outcome, oldest first.
    A day holds thousands: the statement goes to the transaction's own driver cursor and its rows are
    fetched at once as tuples (SQLAlchemy's row machinery would double the report's time,
    bench/charge.py)."""
    cursor = conn.connection.driver_connection.cursor()
    statement = (billable_with_charges(_present_sources(conn), IN_WINDOW, CHARGED_IN_WINDOW) + _WITH_CHARGES
                 + " ORDER BY b.occurred_at")
    cursor.execute(statement, {"lo": start, "hi": end, "tz": tz})
    return [BillableEntry._make(row) for row in cursor.fetchall()]


def _day_bounds(day: dt.date, tz: str) -> tuple[dt.datetime, dt.datetime]:
    zone = zoneinfo.ZoneInfo(tz)
    start = dt.datetime.combine(day, dt.time(0), zone)
    return start, dt.datetime.combine(day + dt.timedelta(days=1), dt.time(0), zone)


def variance(conn: Connection, principal: Principal, day: dt.date) -> dict:
    """Same-day variance for one facility-local day: billable entries against posted charges and unpriced
    items, by department, each figure with the entries behind it."""
    setting = schedule.setting(conn)
    start, end = _day_bounds(day, setting.timezone)
    rows = billable_entries(conn, start, end, setting.timezone)
    departments: dict[str, dict[str, Any]] = {}
    totals = {"billable": 0, **dict.fromkeys(OUTCOMES, 0), "amount": ZERO}
    for row in rows:
        line = departments.get(row.department)
        if line is None:
            line = departments[row.department] = {
                "department": row.department, "billable": 0, **dict.fromkeys(OUTCOMES, 0), "amount": ZERO,
                "entries": {outcome: [] for outcome in OUTCOMES}}
        line["billable"] += 1
        line[row.outcome] += 1
        if row.amount is not None:
            line["amount"] += row.amount
        line["entries"][row.outcome].append(row._asdict())
    for line in departments.values():
        totals["billable"] += line["billable"]
        totals["amount"] += line["amount"]
        for outcome in OUTCOMES:
            totals[outcome] += line[outcome]
    bed_days = conn.execute(sa.text(
        "SELECT count(*) AS n, COALESCE(sum(ch.amount), 0) AS amount "
        "FROM charge ch JOIN entry ce ON ce.id = ch.entry_id "
        "WHERE ch.item_kind = 'bed_day' AND ch.service_date = :day AND ch.reverses IS NULL "
        "AND NOT EXISTS (SELECT 1 FROM entry s WHERE s.supersedes = ce.id) "
        "AND NOT EXISTS (SELECT 1 FROM charge cr WHERE cr.reverses = ce.root_id)"), {"day": day}).one()
    note_access(conn, principal, "search", None, "charge_variance", [r.entry_id for r in rows],
                detail={"day": day.isoformat()})
    billable = totals["billable"]
    return {
        "day": day, "currency": setting.currency, "departments": sorted(departments.values(),
                                                                        key=lambda d: d["department"]),
        "totals": totals, "same_day_percent": None if not billable else round(100 * totals["same_day"] / billable, 1),
        "bed_days": {"count": bed_days.n, "amount": bed_days.amount},
    }


# Charges priced and posted for the services of [start, end], net of those since credited, and which of
# them were late: their care first charged at a price after its day (CAPTURED_AT: a re-pricing is not late).
_LATE_CHARGES = sa.text("""
    SELECT COALESCE(sum(ch.amount), 0) AS total,
           COALESCE(sum(ch.amount) FILTER (WHERE (captured.captured_at AT TIME ZONE :tz)::date > ch.service_date), 0)
               AS late,
           count(*) AS charges,
           count(*) FILTER (WHERE (captured.captured_at AT TIME ZONE :tz)::date > ch.service_date) AS late_charges
    FROM charge ch JOIN entry ce ON ce.id = ch.entry_id
         CROSS JOIN LATERAL (SELECT """ + CAPTURED_AT + """ AS captured_at) captured
    WHERE ch.service_date BETWEEN :start AND :end AND ch.status = 'posted' AND ch.reverses IS NULL
      AND NOT EXISTS (SELECT 1 FROM entry s WHERE s.supersedes = ce.id)
      AND NOT EXISTS (SELECT 1 FROM charge cr WHERE cr.reverses = ce.root_id)
""")  # noqa: S608 -- constant fragments of this module; values are bound


def late_charge_rate(conn: Connection, start: dt.date, end: dt.date) -> dict:
    """HFMA late charges as % of total charges, for services from `start` to `end` (inclusive)."""
    tz = schedule.setting(conn).timezone
    row = conn.execute(_LATE_CHARGES, {"tz": tz, "start": start, "end": end}).one()
    return {"start": start, "end": end, "total": row.total, "late": row.late, "charges": row.charges,
            "late_charges": row.late_charges,
            "percent": None if not row.total else float(round(100 * row.late / row.total, 1))}


# -- receivables --------------------------------------------------------------------------------------

# What each final invoice still had owing at `until`: its total less the payments received net of refunds and the
# credits (credit notes, shortfalls written off or transferred to the patient) recorded before then. Below zero it
# was overpaid: a credit balance, owed back, until refunded.
_OUTSTANDING = sa.text("""
    SELECT i.id, i.number, i.patient_id, i.payer_code, i.total, i.transferred_from,
           (i.finalised_at AT TIME ZONE :tz)::date AS finalised_on,
           i.total - COALESCE((SELECT sum(p.amount) FROM payment p JOIN entry pe ON pe.id = p.entry_id
                               WHERE p.invoice_id = i.id AND pe.occurred_at < :until), 0)
                   + COALESCE((SELECT sum(r.amount) FROM refund r
                               WHERE r.invoice_id = i.id AND r.recorded_at < :until), 0)
                   - COALESCE((SELECT sum(c.amount) FROM invoice_credit c
                               WHERE c.invoice_id = i.id AND c.recorded_at < :until), 0) AS outstanding
    FROM invoice i
    WHERE i.status = 'final' AND i.finalised_at < :until
      AND (CAST(:patient_id AS uuid) IS NULL OR i.patient_id = :patient_id)
""")


def ar_aging(conn: Connection, principal: Principal, as_of: dt.date | None = None, *,
             patient_id: uuid.UUID | None = None) -> dict:
    """Receivables at the end of `as_of` by age (0–30, 31–60, 61–90, 90+ days since the invoice became
    final), by payer, and net days in A/R (receivable ÷ average daily net revenue of the last 90 days)."""
    setting = schedule.setting(conn)
    as_of = as_of or dt.datetime.now(zoneinfo.ZoneInfo(setting.timezone)).date()  # the facility's today
    _, until = _day_bounds(as_of, setting.timezone)
    rows = [dict(r) for r in conn.execute(_OUTSTANDING, {"tz": setting.timezone, "until": until,
                                                         "patient_id": patient_id}).mappings()]
    open_rows = [r for r in rows if r["outstanding"] != 0]
    buckets = aging(((r["finalised_on"], r["outstanding"]) for r in open_rows), as_of)
    by_payer: dict[str, dict[str, Decimal]] = defaultdict(lambda: dict.fromkeys(AGING_BUCKETS, ZERO))
    for row in open_rows:
        by_payer[row["payer_code"] or "SELF"][aging_bucket(row["finalised_on"], as_of)] += row["outstanding"]
    receivable = sum((r["outstanding"] for r in open_rows), ZERO)
    revenue_since = as_of - dt.timedelta(days=AR_REVENUE_DAYS - 1)
    # Net revenue: what was invoiced, less what credit notes and write-offs took back. A shortfall transferred
    # to the patient is the same revenue billed to someone else, counted once (on the insurer's invoice).
    taken_back = conn.execute(sa.text(
        "SELECT COALESCE(sum(amount), 0) FROM invoice_credit WHERE kind IN ('credit_note', 'write_off') "
        "AND recorded_at >= :since AND recorded_at < :until"),
        {"since": _day_bounds(revenue_since, setting.timezone)[0], "until": until}).scalar_one()
    revenue = sum((r["total"] for r in rows if r["finalised_on"] >= revenue_since and r["transferred_from"] is None),
                  ZERO) - taken_back
    note_access(conn, principal, "search", patient_id, "receivable", [r["id"] for r in open_rows])
    # A clerk reads the insurer's name, not the tenant file's code (an insurer no longer active keeps its name).
    payer_names = {"SELF": "Self-pay"} | {code: service.payer_name(conn, code) for code in by_payer if code != "SELF"}
    return {"as_of": as_of, "currency": setting.currency, "buckets": buckets, "receivable": receivable,
            "by_payer": {k: dict(v) for k, v in sorted(by_payer.items())},
            "payer_names": {k: payer_names[k] for k in sorted(by_payer)},
            "invoices": sorted(open_rows, key=lambda r: r["finalised_on"]),
            "net_revenue": revenue, "revenue_days": AR_REVENUE_DAYS,
            "net_days_in_ar": net_days_in_ar(receivable, revenue, AR_REVENUE_DAYS)}


def patient_balance(conn: Connection, principal: Principal, patient_id: uuid.UUID) -> dict:
    """What a patient's bills come to: invoiced, credited (credit notes and write-offs), paid, refunded,
    outstanding (by payer; an invoice overpaid counts below zero until refunded), and charged but not yet
    invoiced. A shortfall transferred from an insurer to the patient moves what
    is owed from one invoice to the other: invoiced once, owed once."""
    service.require_patient(conn, patient_id)
    row = conn.execute(sa.text("""
        WITH bill AS (
            SELECT i.total, i.payer_code, i.transferred_from,
                   (SELECT COALESCE(sum(p.amount), 0) FROM payment p WHERE p.invoice_id = i.id)
                   - (SELECT COALESCE(sum(r.amount), 0) FROM refund r WHERE r.invoice_id = i.id) AS paid,
                   (SELECT COALESCE(sum(r.amount), 0) FROM refund r WHERE r.invoice_id = i.id) AS refunded,
                   (SELECT COALESCE(sum(c.amount), 0) FROM invoice_credit c WHERE c.invoice_id = i.id) AS credited,
                   (SELECT COALESCE(sum(c.amount), 0) FROM invoice_credit c
                    WHERE c.invoice_id = i.id AND c.kind <> 'transfer') AS taken_off
            FROM invoice i WHERE i.patient_id = :patient_id AND i.status = 'final')
        SELECT COALESCE(sum(total) FILTER (WHERE transferred_from IS NULL), 0) AS invoiced,
               COALESCE(sum(taken_off), 0) AS credited,
               COALESCE(sum(paid), 0) AS paid,
               COALESCE(sum(refunded), 0) AS refunded,
               COALESCE(sum(total - paid - credited), 0) AS outstanding,
               COALESCE(sum(total - paid - credited) FILTER (WHERE payer_code IS NULL), 0) AS self_pay_outstanding
        FROM bill
    """), {"patient_id": patient_id}).one()
    uninvoiced = conn.execute(sa.text("""
        SELECT COALESCE(sum(ch.amount), 0) FROM charge ch JOIN entry ce ON ce.id = ch.entry_id
        WHERE ce.patient_id = :patient_id AND ch.status = 'posted'
          AND NOT EXISTS (SELECT 1 FROM entry s WHERE s.supersedes = ce.id)
          AND NOT EXISTS (SELECT 1 FROM invoice_line l WHERE l.charge_root_id = ce.root_id)
    """), {"patient_id": patient_id}).scalar_one()
    note_access(conn, principal, "read", patient_id, "balance", [patient_id])
    return {"patient_id": patient_id, "currency": schedule.setting(conn).currency, "invoiced": row.invoiced,
            "credited": row.credited, "paid": row.paid, "refunded": row.refunded, "outstanding": row.outstanding,
            "self_pay_outstanding": row.self_pay_outstanding, "uninvoiced": uninvoiced}


# -- takings ------------------------------------------------------------------------------------------


def takings(conn: Connection, principal: Principal, day: dt.date | None = None) -> dict:
    """The payments received on one facility-local day (the facility's today by default; the money's time, the
    entry's occurred time) and the refunds given back that day, oldest first, with their totals by method and by
    the person who took or gave them: the cash-up, where each cashier's net cash (taken less refunded) is what
    their drawer should hold."""
    setting = schedule.setting(conn)
    day = day or dt.datetime.now(zoneinfo.ZoneInfo(setting.timezone)).date()
    start, end = _day_bounds(day, setting.timezone)
    rows = [dict(r) for r in conn.execute(
        sa.select(entry.c.id, entry.c.occurred_at.label("received_at"), entry.c.author_id, entry.c.patient_id,
                  payment.c.receipt_number, payment.c.method, payment.c.amount, payment.c.reference,
                  payment.c.payer_code, payment.c.invoice_id, invoice.c.number.label("invoice_number"))
        .select_from(entry.join(payment, payment.c.entry_id == entry.c.id)
                     .join(invoice, invoice.c.id == payment.c.invoice_id))
        .where(entry.c.occurred_at >= start, entry.c.occurred_at < end)
        .order_by(entry.c.occurred_at, payment.c.receipt_number)).mappings()]
    refunds = [dict(r) for r in conn.execute(
        sa.select(refund, invoice.c.number.label("invoice_number"))
        .select_from(refund.join(invoice, invoice.c.id == refund.c.invoice_id))
        .where(refund.c.recorded_at >= start, refund.c.recorded_at < end)
        .order_by(refund.c.recorded_at, refund.c.number)).mappings()]
    empty = {"count": 0, "amount": ZERO, "refunds": 0, "refunded": ZERO, "net": ZERO}
    by_method = {method: dict(empty) for method in service.PAYMENT_METHODS}
    by_person: dict[uuid.UUID, dict[str, Any]] = {}

    def person_of(author_id: uuid.UUID) -> dict[str, Any]:
        return by_person.setdefault(author_id, {"author_id": author_id, **empty,
                                                "methods": dict.fromkeys(service.PAYMENT_METHODS, ZERO)})

    for row in rows:
        for line in (by_method.setdefault(row["method"], dict(empty)), person_of(row["author_id"])):
            line["count"] += 1
            line["amount"] += row["amount"]
            line["net"] += row["amount"]
        methods = person_of(row["author_id"])["methods"]
        methods[row["method"]] = methods.get(row["method"], ZERO) + row["amount"]
    for row in refunds:  # money out: it leaves the drawer (or the account) of whoever gave it back
        for line in (by_method.setdefault(row["method"], dict(empty)), person_of(row["recorded_by"])):
            line["refunds"] += 1
            line["refunded"] += row["amount"]
            line["net"] -= row["amount"]
        methods = person_of(row["recorded_by"])["methods"]
        methods[row["method"]] = methods.get(row["method"], ZERO) - row["amount"]
    # Credits issued the same day are no money in the drawer, but they say why a bill was settled for less.
    credits = [dict(r) for r in conn.execute(
        sa.select(invoice_credit.c.id, invoice_credit.c.number, invoice_credit.c.kind, invoice_credit.c.amount,
                  invoice_credit.c.reason, invoice_credit.c.recorded_at, invoice_credit.c.recorded_by,
                  invoice_credit.c.patient_id, invoice_credit.c.invoice_id, invoice.c.number.label("invoice_number"))
        .select_from(invoice_credit.join(invoice, invoice.c.id == invoice_credit.c.invoice_id))
        .where(invoice_credit.c.recorded_at >= start, invoice_credit.c.recorded_at < end)
        .order_by(invoice_credit.c.recorded_at, invoice_credit.c.number)).mappings()]
    note_access(conn, principal, "search", None, "payment", [r["id"] for r in rows],
                detail={"day": day.isoformat()})
    if credits:
        note_access(conn, principal, "search", None, "invoice_credit", [c["id"] for c in credits],
                    detail={"day": day.isoformat()})
    if refunds:
        note_access(conn, principal, "search", None, "refund", [r["id"] for r in refunds],
                    detail={"day": day.isoformat()})
    total, refunded = sum((r["amount"] for r in rows), ZERO), sum((r["amount"] for r in refunds), ZERO)
    return {"day": day, "currency": setting.currency, "payments": rows, "credits": credits,
            "credited": sum((c["amount"] for c in credits), ZERO), "refunds": refunds, "refunded": refunded,
            "total": total, "net": total - refunded, "by_method": by_method, "by_person": list(by_person.values())}
