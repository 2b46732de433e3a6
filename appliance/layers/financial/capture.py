"""KPI 8 of the command center, same-day charge capture (policies/kpis.toml): the financial layer's
computation, registered in the substrate's KPI registry, and the projection it reads.

The figure is the variance report's (reports.py): billable clinical entries of the window whose current,
un-credited charge was priced and recorded on the facility-local day of the care. Matching a month of
billable entries to their charges on every command-center request cost ~200 ms on a year-old referral
hospital (bench/kpis.py), so the match is kept as the facts arrive instead, as lab turnaround is:
`charge_capture` holds one row per billable record with its current charge, refreshed by reaction —
in the same transaction — whenever a billable entry (an order, a dose, an encounter's end, a medicine
dispensed, an operation's case, a unit of blood started) or a charge for one is appended. The refresh runs
reports.py's own SQL for the records touched, so the projection cannot drift from the report's definition; the KPI
then counts one indexed range per window.

The facility-local days of the care and of the charge are kept with each row (in the fee schedule's
time zone, as the report reads them; schedule.sync_fee_schedule recomputes them if the facility's time
zone changes), since converting two times per row to local days cost more than the rest of the count.
Whether the charge's service day falls within the window's days, as the report's charge range asks,
is decided at read time.

These reactions are not the charging reactions (reactions.py): switching charging off leaves entries
without charges, and this projection still counts them, as missing.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from appliance.layers.financial import (
    reactions,  # noqa: F401 -- imported first: charging reacts before we do
    reports,
    schedule,
)
from appliance.substrate import kpis, record
from appliance.substrate.principal import Principal
from appliance.substrate.record import Entry

_KEEP = """
    , kept AS (
        INSERT INTO charge_capture (root_id, entry_id, kind, patient_id, occurred_at, what, department, charge_id,
                                    charge_status, charged_at, service_date, care_day, charged_day)
        SELECT b.root_id, b.entry_id, b.kind, b.patient_id, b.occurred_at, b.what,
               COALESCE(c.charge_department, b.department), c.charge_id, c.status, c.captured_at, c.service_date,
               (b.occurred_at AT TIME ZONE z.tz)::date, (c.captured_at AT TIME ZONE z.tz)::date
        FROM billable b LEFT JOIN charged c ON c.source_root_id = b.root_id
             CROSS JOIN (SELECT COALESCE((SELECT timezone FROM billing_setting WHERE id = 1), 'UTC') AS tz) z
        ON CONFLICT (root_id) DO UPDATE SET
            entry_id = excluded.entry_id, kind = excluded.kind, patient_id = excluded.patient_id,
            occurred_at = excluded.occurred_at, what = excluded.what, department = excluded.department,
            charge_id = excluded.charge_id, charge_status = excluded.charge_status,
            charged_at = excluded.charged_at, service_date = excluded.service_date, care_day = excluded.care_day,
            charged_day = excluded.charged_day
        RETURNING root_id
    )
    DELETE FROM charge_capture WHERE root_id = ANY(p_roots) AND root_id NOT IN (SELECT root_id FROM kept)"""


def refresh_function_body() -> str:
    """The statement of `charge_capture_refresh(p_roots uuid[])`, which t0008 installed in every tenant
    schema and t0014, t0023, t0032 and t0042 replaced (frozen in the latest of them;
    tests/layers/financial/test_capture_kpi.py holds the two equal): each named record still billable gets
    its current version and charge, as the report finds them; one no longer billable (cancelled, entered in
    error) leaves the projection, as it leaves the report. A function, because its plan is kept per schema
    for the connection's life: as a statement it was planned afresh on every write (~3 ms of a 0.5 ms
    refresh)."""
    return reports.billable_with_charges(reports.BILLABLE_KINDS, "e.id = ANY(p_roots)",
                                         "ch.source_root_id = ANY(p_roots)") + _KEEP


_REFRESH = sa.text("SELECT charge_capture_refresh(CAST(:roots AS uuid[]))")


def refresh(conn: Connection, roots: Iterable[uuid.UUID]) -> None:
    """Bring the projection's rows of these billable records up to date."""
    wanted = sorted(set(roots))
    if wanted:
        conn.execute(_REFRESH, {"roots": wanted})


# Whether an entry's first version is billable at all: the report's conditions on its sources (reports.py
# `_SOURCES`), asked here only to spare a refresh for the many that are not (an encounter moving to in
# progress, a dose held).
_BILLABLE_FIRST_VERSION = {
    "service_request": lambda detail: detail.get("status") == "active",
    "medication_administration": lambda detail: detail.get("outcome") == "given",
    "encounter_status": lambda detail: detail.get("to_status") == "finished",
    "dispense": lambda detail: True,  # a medicine handed over is billable as it is handed over
    "surgery": lambda detail: detail.get("status") == "completed",  # a booking is not; its completion is
    "transfusion": lambda detail: True,  # a unit is billable once started
}
# Per connection, in the transaction: the billable versions whose charge (or credit) has just refreshed
# their record — the charging reaction runs before ours, so our own reaction to that version has nothing
# left to do. One refresh per billable write instead of two.
_REFRESHED = "healthos_capture_refreshed"


def on_charges(conn: Connection, principal: Principal, appended: Sequence[Entry]) -> None:
    # Bed-days bill an admission, which is not a billable entry of the report: nothing to refresh.
    billing = [c for c in appended if c.detail.get("source_kind") in reports.BILLABLE_KINDS]
    refresh(conn, [c.detail["source_root_id"] for c in billing])
    refreshed = conn.info.setdefault(_REFRESHED, set())
    if len(refreshed) > 10_000:  # versions credited outside their own write leave ids behind: forget them
        refreshed.clear()
    refreshed.update(c.detail["source_entry_id"] for c in billing)


def on_billable(conn: Connection, principal: Principal, appended: Sequence[Entry]) -> None:
    refreshed = conn.info.get(_REFRESHED, set())
    roots: list[uuid.UUID] = []
    for version in appended:
        if version.id in refreshed:
            refreshed.discard(version.id)
        elif version.supersedes is not None or _BILLABLE_FIRST_VERSION[version.kind](version.detail):
            # An encounter status counts by its own id in the report, a new version of one too.
            roots += {version.root_id, version.id}
    refresh(conn, roots)


def _one(batch):
    def reaction(conn: Connection, principal: Principal, appended: Entry) -> None:
        batch(conn, principal, [appended])

    return reaction


on_charge, on_billable_entry = _one(on_charges), _one(on_billable)


def register() -> None:
    """After the charging reactions (imported above), so a billable version's charge is written first."""
    record.register_reaction("charge", on_charge, batch=on_charges)
    for kind in reports.BILLABLE_KINDS:
        record.register_reaction(kind, on_billable_entry, batch=on_billable)


def unregister() -> None:
    """For the benchmark that measures what the financial layer costs a clinical write."""
    record.unregister_reaction("charge", on_charge)
    for kind in reports.BILLABLE_KINDS:
        record.unregister_reaction(kind, on_billable_entry)


# -- the KPI ---------------------------------------------------------------------------------------------


def _charged_in_days(first_day: str, last_day: str) -> str:
    """SQL: row k's charge is among the report's charges for a window whose facility-local days run from
    `first_day` to `last_day` (SQL expressions): the report reads the charges of the window's days."""
    return f"k.service_date BETWEEN {first_day} AND {last_day}"


def _same_day(first_day: str, last_day: str) -> str:
    """SQL: row k's record was charged, priced, on the day of its care (the report's `same_day`)."""
    return f"""k.charge_id IS NOT NULL AND k.charge_status <> 'unpriced' AND {_charged_in_days(first_day, last_day)}
        AND k.charged_day <= k.care_day"""


_FIGURES = sa.text(f"""
    WITH w AS MATERIALIZED (  -- each window's days converted once, not once per row counted
        SELECT start_at, end_at, n,
               (start_at AT TIME ZONE :tz)::date AS first_day, (end_at AT TIME ZONE :tz)::date AS last_day
        FROM unnest(CAST(:starts AS timestamptz[]), CAST(:ends AS timestamptz[]))
             WITH ORDINALITY AS w(start_at, end_at, n)
    )
    SELECT w.n, count(k.root_id) AS billable,
           count(k.root_id) FILTER (WHERE {_same_day("w.first_day", "w.last_day")}) AS same_day
    FROM w LEFT JOIN charge_capture k ON k.occurred_at >= w.start_at AND k.occurred_at < w.end_at
    GROUP BY w.n ORDER BY w.n""")  # noqa: S608 -- constant fragments of this module; values are bound


def capture_figures(conn: Connection, windows: Sequence[kpis.Window]) -> list[kpis.Figure]:
    """Every window in one statement (the command center asks for the value now and a 14-day trend)."""
    if not windows:
        return []
    rows = conn.execute(_FIGURES, {"starts": [w.start for w in windows], "ends": [w.end for w in windows],
                                   "tz": schedule.setting(conn).timezone}).all()
    return [kpis.Figure(value=None if not r.billable else 100 * r.same_day / r.billable,
                        numerator=r.same_day, denominator=r.billable) for r in rows]


_LABELS = {"same_day": "charged the same day", "late": "charged on a later day", "unpriced": "captured without a price",
           "missing": "no charge"}
_WINDOW_DAYS = ("(CAST(:start AS timestamptz) AT TIME ZONE :tz)::date",
                "(CAST(:end AS timestamptz) AT TIME ZONE :tz)::date")
_ENTRIES = sa.text(f"""
    SELECT k.entry_id, k.kind, k.patient_id, k.occurred_at, k.what,
           CASE WHEN k.charge_id IS NULL OR NOT ({_charged_in_days(*_WINDOW_DAYS)}) THEN 'missing'
                WHEN k.charge_status = 'unpriced' THEN 'unpriced'
                WHEN {_same_day(*_WINDOW_DAYS)} THEN 'same_day'
                ELSE 'late' END AS outcome
    FROM charge_capture k WHERE k.occurred_at >= :start AND k.occurred_at < :end
    ORDER BY k.occurred_at LIMIT :limit""")  # noqa: S608 -- a constant fragment of this module; values are bound


def capture_entries(conn: Connection, window: kpis.Window, limit: int) -> list[dict[str, Any]]:
    rows = conn.execute(_ENTRIES, {"start": window.start, "end": window.end, "limit": limit,
                                   "tz": schedule.setting(conn).timezone}).all()
    return [{"entry_id": r.entry_id, "kind": r.kind, "patient_id": r.patient_id, "occurred_at": r.occurred_at,
             "measure": 1 if r.outcome == "same_day" else 0, "label": f"{r.what}: {_LABELS[r.outcome]}"}
            for r in rows]


register()
kpis.register_kpi("same_day_charge_capture", layer="financial", compute=capture_figures, entries=capture_entries)
