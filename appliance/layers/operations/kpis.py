"""The command center's figures that operations owns, registered in the substrate's KPI registry:
KPIs 1-7 of policies/kpis.toml and the companions (bed turnover, ED boarding, outpatient no-show, and the patient
safety figures: inpatient falls per 1,000 occupied bed-days, median days to close an incident).

Each computation is one SQL statement over the live projections (`inpatient_stay`, `ed_visit`,
`appointment`, `lab_turnaround`) or, for imaging turnaround, over the record itself (`service_request` →
`imaging_performed` and `result`, the clinical layer's detail tables, read by SQL only). The windows asked for (the
value now and 14 daily trend points) are passed as two arrays and unnested, so each KPI costs one
round trip however many windows there are. The definitions in words are in policies/kpis.toml; the
SQL below is their only implementation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from appliance.layers.operations.models import INPATIENT_WARD_KINDS
from appliance.substrate.kpis import Figure, Window, register_kpi

WINDOWS = """w AS (
    SELECT start_at, end_at, n
    FROM unnest(CAST(:starts AS timestamptz[]), CAST(:ends AS timestamptz[])) WITH ORDINALITY AS w(start_at, end_at, n)
)"""
_KINDS = ", ".join(f"'{kind}'" for kind in INPATIENT_WARD_KINDS)  # constants of this module, not input
STAFFED_BEDS = f"""(SELECT count(*) FROM bed JOIN ward ON ward.code = bed.ward_code
    WHERE bed.active AND ward.active AND ward.kind IN ({_KINDS}) AND bed.state <> 'blocked')"""  # noqa: S608 -- constant fragments of this module joined; values are bound


def _rows(conn: Connection, sql: str, windows: Sequence[Window], **params: Any) -> list[sa.Row]:
    tz = windows[0].tz.key if windows else "UTC"
    return conn.execute(sa.text(f"WITH {WINDOWS} {sql}"), {
        "starts": [w.start for w in windows], "ends": [w.end for w in windows], "tz": tz, **params}).all()


def _ratio(numerator: float | None, denominator: float | None, scale: float = 1.0) -> float | None:
    if not denominator:
        return None
    return float(numerator or 0) / float(denominator) * scale


def _entries(conn: Connection, sql: str, window: Window, limit: int, **params: Any) -> list[dict]:
    return [dict(r) for r in conn.execute(sa.text(sql), {
        "start": window.start, "end": window.end, "tz": window.tz.key, "limit": limit, **params}).mappings()]


# -- 1. bed occupancy ----------------------------------------------------------------------------------


# Occupied bed-days over window `w`: each stay's part of the window (admission to discharge, or to now while
# still admitted), in days of 24 hours. Occupancy's second reading and the falls rate's denominator.
OCCUPIED_BED_DAYS = """(SELECT coalesce(sum(extract(epoch FROM least(coalesce(s.discharged_at, now()), w.end_at)
                                               - greatest(s.admitted_at, w.start_at))), 0) / 86400
             FROM inpatient_stay s
            WHERE s.admitted_at < w.end_at AND (s.discharged_at IS NULL OR s.discharged_at > w.start_at))"""


def occupancy(conn: Connection, windows: Sequence[Window]) -> list[Figure]:
    """Census at the window's end ÷ staffed beds (the live census for a window ending now); second
    reading: occupied bed-days ÷ available bed-days over the window."""
    rows = _rows(conn, f"""
        SELECT w.n, {STAFFED_BEDS} AS staffed,
          (SELECT count(*) FROM inpatient_stay s
            WHERE s.admitted_at <= w.end_at AND (s.discharged_at IS NULL OR s.discharged_at > w.end_at)) AS census,
          {OCCUPIED_BED_DAYS} AS bed_days,
          extract(epoch FROM w.end_at - w.start_at) / 86400 AS days
        FROM w ORDER BY w.n""", windows)  # noqa: S608 -- constant fragments of this module joined; values are bound
    return [Figure(value=_ratio(r.census, r.staffed, 100), numerator=r.census, denominator=r.staffed,
                   secondary=_ratio(r.bed_days, float(r.staffed) * float(r.days), 100)) for r in rows]


def occupancy_entries(conn: Connection, window: Window, limit: int) -> list[dict]:
    return _entries(conn, """
        SELECT s.id AS entry_id, 'admission' AS kind, s.patient_id, s.admitted_at AS occurred_at,
               extract(epoch FROM :end - s.admitted_at) / 86400 AS measure,
               'in bed ' || s.bed_code || ' (' || s.ward_code || ')' AS label
        FROM inpatient_stay s
        WHERE s.admitted_at <= :end AND (s.discharged_at IS NULL OR s.discharged_at > :end)
        ORDER BY s.admitted_at LIMIT :limit""", window, limit)


# -- 2. average length of stay -------------------------------------------------------------------------


def length_of_stay(conn: Connection, windows: Sequence[Window]) -> list[Figure]:
    rows = _rows(conn, """
        SELECT w.n, count(s.id) AS discharges,
               sum(extract(epoch FROM s.discharged_at - s.admitted_at)) / 86400 AS days
        FROM w LEFT JOIN inpatient_stay s ON s.discharged_at >= w.start_at AND s.discharged_at < w.end_at
        GROUP BY w.n ORDER BY w.n""", windows)
    return [Figure(value=_ratio(r.days, r.discharges), numerator=r.days and float(r.days), denominator=r.discharges)
            for r in rows]


def length_of_stay_entries(conn: Connection, window: Window, limit: int) -> list[dict]:
    return _entries(conn, """
        SELECT s.discharge_entry_id AS entry_id, 'discharge' AS kind, s.patient_id, s.discharged_at AS occurred_at,
               extract(epoch FROM s.discharged_at - s.admitted_at) / 86400 AS measure,
               'discharged (' || replace(s.disposition, '_', ' ') || ') from ' || s.ward_code AS label
        FROM inpatient_stay s WHERE s.discharged_at >= :start AND s.discharged_at < :end
        ORDER BY s.discharged_at LIMIT :limit""", window, limit)


# -- 3, 4. emergency department --------------------------------------------------------------------------


def ed_length_of_stay(conn: Connection, windows: Sequence[Window]) -> list[Figure]:
    rows = _rows(conn, """
        SELECT w.n, count(v.id) AS visits,
               percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM v.departed_at - v.arrived_at) / 60)
                 AS median
        FROM w LEFT JOIN ed_visit v ON v.departed_at >= w.start_at AND v.departed_at < w.end_at
        GROUP BY w.n ORDER BY w.n""", windows)
    return [Figure(value=None if not r.visits else float(r.median), denominator=r.visits) for r in rows]


def ed_departure_entries(conn: Connection, window: Window, limit: int) -> list[dict]:
    return _entries(conn, """
        SELECT v.departure_entry_id AS entry_id, 'ed_departure' AS kind, v.patient_id, v.departed_at AS occurred_at,
               extract(epoch FROM v.departed_at - v.arrived_at) / 60 AS measure,
               replace(v.disposition, '_', ' ') || coalesce(', acuity ' || v.acuity, '') AS label
        FROM ed_visit v WHERE v.departed_at >= :start AND v.departed_at < :end
        ORDER BY v.departed_at LIMIT :limit""", window, limit)


def ed_left_without_being_seen(conn: Connection, windows: Sequence[Window]) -> list[Figure]:
    rows = _rows(conn, """
        SELECT w.n, count(v.id) AS visits,
               count(v.id) FILTER (WHERE v.disposition = 'left_without_being_seen') AS left_unseen
        FROM w LEFT JOIN ed_visit v ON v.departed_at >= w.start_at AND v.departed_at < w.end_at
        GROUP BY w.n ORDER BY w.n""", windows)
    return [Figure(value=_ratio(r.left_unseen, r.visits, 100), numerator=r.left_unseen, denominator=r.visits)
            for r in rows]


def ed_left_without_being_seen_entries(conn: Connection, window: Window, limit: int) -> list[dict]:
    return _entries(conn, """
        SELECT v.departure_entry_id AS entry_id, 'ed_departure' AS kind, v.patient_id, v.departed_at AS occurred_at,
               CASE WHEN v.disposition = 'left_without_being_seen' THEN 1 ELSE 0 END AS measure,
               replace(v.disposition, '_', ' ') AS label
        FROM ed_visit v WHERE v.departed_at >= :start AND v.departed_at < :end
        ORDER BY (v.disposition = 'left_without_being_seen') DESC, v.departed_at LIMIT :limit""", window, limit)


# -- 5. discharges before noon -----------------------------------------------------------------------------


def discharges_before_noon(conn: Connection, windows: Sequence[Window]) -> list[Figure]:
    rows = _rows(conn, """
        SELECT w.n, count(s.id) AS discharges,
               count(s.id) FILTER (WHERE (s.discharged_at AT TIME ZONE :tz)::time < time '12:00') AS before_noon
        FROM w LEFT JOIN inpatient_stay s
          ON s.discharged_at >= w.start_at AND s.discharged_at < w.end_at AND s.disposition <> 'died'
        GROUP BY w.n ORDER BY w.n""", windows)
    return [Figure(value=_ratio(r.before_noon, r.discharges, 100), numerator=r.before_noon, denominator=r.discharges)
            for r in rows]


def discharges_before_noon_entries(conn: Connection, window: Window, limit: int) -> list[dict]:
    return _entries(conn, """
        SELECT s.discharge_entry_id AS entry_id, 'discharge' AS kind, s.patient_id, s.discharged_at AS occurred_at,
               CASE WHEN (s.discharged_at AT TIME ZONE :tz)::time < time '12:00' THEN 1 ELSE 0 END AS measure,
               'discharged ' || to_char(s.discharged_at AT TIME ZONE :tz, 'HH24:MI') || ' facility time' AS label
        FROM inpatient_stay s
        WHERE s.discharged_at >= :start AND s.discharged_at < :end AND s.disposition <> 'died'
        ORDER BY s.discharged_at LIMIT :limit""", window, limit)


# -- 6. 30-day readmissions ----------------------------------------------------------------------------------

_READMISSION = """EXISTS (SELECT 1 FROM inpatient_stay p
    WHERE p.patient_id = s.patient_id AND p.id <> s.id AND p.disposition <> 'died'
      AND p.discharged_at <= s.admitted_at AND p.discharged_at > s.admitted_at - interval '30 days')"""


def readmissions(conn: Connection, windows: Sequence[Window]) -> list[Figure]:
    rows = _rows(conn, f"""
        SELECT w.n, count(s.id) AS admissions, count(s.id) FILTER (WHERE {_READMISSION}) AS readmitted
        FROM w LEFT JOIN inpatient_stay s ON s.admitted_at >= w.start_at AND s.admitted_at < w.end_at
        GROUP BY w.n ORDER BY w.n""", windows)  # noqa: S608 -- constant fragments of this module joined; values are bound
    return [Figure(value=_ratio(r.readmitted, r.admissions, 100), numerator=r.readmitted, denominator=r.admissions)
            for r in rows]


def readmission_entries(conn: Connection, window: Window, limit: int) -> list[dict]:
    return _entries(conn, f"""
        SELECT s.id AS entry_id, 'admission' AS kind, s.patient_id, s.admitted_at AS occurred_at,
               CASE WHEN {_READMISSION} THEN 1 ELSE 0 END AS measure,
               CASE WHEN {_READMISSION} THEN 'readmission within 30 days' ELSE 'first admission in 30 days' END
                 AS label
        FROM inpatient_stay s WHERE s.admitted_at >= :start AND s.admitted_at < :end
        ORDER BY measure DESC, s.admitted_at LIMIT :limit""", window, limit)  # noqa: S608 -- constant fragments of this module joined; values are bound


# -- 7. lab turnaround -------------------------------------------------------------------------------------
# Each lab order's first verification is kept in `lab_turnaround` by a reaction to `result_signoff`
# (reactions.py); orders later marked entered in error are flagged there and do not count.


def lab_turnaround(conn: Connection, windows: Sequence[Window]) -> list[Figure]:
    rows = _rows(conn, """
        SELECT w.n, count(t.order_id) AS orders,
               percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM t.verified_at - t.ordered_at) / 60)
                 AS median
        FROM w LEFT JOIN lab_turnaround t
          ON t.verified_at >= w.start_at AND t.verified_at < w.end_at AND NOT t.retracted
        GROUP BY w.n ORDER BY w.n""", windows)
    return [Figure(value=None if not r.orders else float(r.median), denominator=r.orders) for r in rows]


def lab_turnaround_entries(conn: Connection, window: Window, limit: int) -> list[dict]:
    return _entries(conn, """
        SELECT t.order_id AS entry_id, 'service_request' AS kind, t.patient_id, t.verified_at AS occurred_at,
               extract(epoch FROM t.verified_at - t.ordered_at) / 60 AS measure,
               t.display || ': order to first verified result' AS label
        FROM lab_turnaround t WHERE t.verified_at >= :start AND t.verified_at < :end AND NOT t.retracted
        ORDER BY t.verified_at LIMIT :limit""", window, limit)


# -- imaging turnaround (a companion of KPI 7) ---------------------------------------------------------
# Read from the record itself, no projection kept by reactions. An order's time is its first version's; a report's
# is its first version's (a correction later does not make it late); an order, a report or a study performed entered
# in error does not count.
#
# A district hospital reports some 20,000 studies a year, so the read starts from what happened in the windows asked
# for (:start to :end, all of them): an order is first reported, or performed, in a window only if a first version of
# a result, or a study performed, answering it happened there. entry_kind_occurred_idx finds those by kind and time,
# so a read costs the windows' reports and studies (the laboratory's results of the windows among them), however many
# orders came before; each order found is then measured over its whole history, as before. (The planner may still
# hash a whole detail table, `specimen_receipt` say, where it prices that below probing it by key once per entry of
# the windows; as the table grows, probing wins.)

_IMAGING = """answered AS (
    SELECT r.service_request_id AS order_id FROM entry re JOIN result r ON r.entry_id = re.id
    WHERE re.kind = 'result' AND re.id = re.root_id AND re.occurred_at >= :start AND re.occurred_at < :end
    UNION
    SELECT p.service_request_id FROM entry pe JOIN specimen_receipt p ON p.entry_id = pe.id
    WHERE pe.kind = 'imaging_performed' AND pe.occurred_at >= :start AND pe.occurred_at < :end
), imaging AS (
    SELECT o.id AS order_id, o.patient_id, o.occurred_at AS ordered_at, sr.display,
           (SELECT min(re.occurred_at) FROM result r JOIN entry re ON re.id = r.entry_id
             WHERE r.service_request_id = o.id AND re.id = re.root_id
               AND NOT EXISTS (SELECT 1 FROM entry x WHERE x.root_id = re.id AND x.status = 'entered_in_error'))
             AS reported_at,
           (SELECT min(pe.occurred_at) FROM specimen_receipt p JOIN entry pe ON pe.id = p.entry_id
             WHERE p.service_request_id = o.id AND pe.kind = 'imaging_performed'
               AND NOT EXISTS (SELECT 1 FROM entry x WHERE x.supersedes = pe.id)) AS performed_at
    FROM answered a JOIN entry o ON o.id = a.order_id JOIN service_request sr ON sr.entry_id = o.id
    WHERE o.kind = 'service_request' AND o.id = o.root_id AND sr.category = 'imaging'
      AND NOT EXISTS (SELECT 1 FROM entry x WHERE x.root_id = o.id AND x.status = 'entered_in_error')
)"""


def imaging_turnaround(conn: Connection, windows: Sequence[Window]) -> list[Figure]:
    """Median minutes from order to first report, over the orders first reported in the window; second
    reading: median minutes from order to the study performed, over the orders performed in the window."""
    rows = _rows(conn, f""", {_IMAGING}
        SELECT w.n,
          (SELECT count(*) FROM imaging i WHERE i.reported_at >= w.start_at AND i.reported_at < w.end_at) AS reported,
          (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM i.reported_at - i.ordered_at) / 60)
             FROM imaging i WHERE i.reported_at >= w.start_at AND i.reported_at < w.end_at) AS to_report,
          (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM i.performed_at - i.ordered_at) / 60)
             FROM imaging i WHERE i.performed_at >= w.start_at AND i.performed_at < w.end_at) AS to_performed
        FROM w ORDER BY w.n""", windows,  # noqa: S608 -- constant fragments of this module joined; values are bound
        start=min((w.start for w in windows), default=None), end=max((w.end for w in windows), default=None))
    return [Figure(value=None if r.to_report is None else float(r.to_report), denominator=r.reported,
                   secondary=None if r.to_performed is None else float(r.to_performed)) for r in rows]


def imaging_turnaround_entries(conn: Connection, window: Window, limit: int) -> list[dict]:
    return _entries(conn, f"""WITH {_IMAGING}
        SELECT i.order_id AS entry_id, 'service_request' AS kind, i.patient_id, i.reported_at AS occurred_at,
               extract(epoch FROM i.reported_at - i.ordered_at) / 60 AS measure,
               i.display || ': order to first report' || coalesce(', performed ' || round(
                 extract(epoch FROM i.performed_at - i.ordered_at) / 60) || ' min after the order', '') AS label
        FROM imaging i WHERE i.reported_at >= :start AND i.reported_at < :end
        ORDER BY i.reported_at LIMIT :limit""", window, limit)  # noqa: S608 -- constant fragments; values are bound


# -- patient safety incidents (incidents.py) ------------------------------------------------------------------
# A fall counts where it happened on an inpatient ward (the bed-days are inpatient beds'), by when it happened, once it
# reached the patient: a near miss (caught before the patient fell) is not a fall. Reported anonymously or not.

_INPATIENT_FALLS = f"""incident i JOIN ward iw ON iw.code = i.ward_code
    WHERE i.incident_type = 'fall' AND i.outcome <> 'near_miss' AND iw.kind IN ({_KINDS})"""


def falls_per_1000_bed_days(conn: Connection, windows: Sequence[Window]) -> list[Figure]:
    """Inpatient falls that happened in the window per 1,000 occupied bed-days of the window."""
    rows = _rows(conn, f"""
        SELECT w.n, (SELECT count(*) FROM {_INPATIENT_FALLS}
                       AND i.occurred_at >= w.start_at AND i.occurred_at < w.end_at) AS falls,
               {OCCUPIED_BED_DAYS} AS bed_days
        FROM w ORDER BY w.n""", windows)  # noqa: S608 -- constant fragments of this module joined; values are bound
    return [Figure(value=_ratio(r.falls, r.bed_days, 1000), numerator=r.falls,
                   denominator=None if r.bed_days is None else float(r.bed_days)) for r in rows]


# How an incident is named beside a figure: an anonymous report by no number, as everywhere (incidents.shown says why).
_REPORT = "CASE WHEN i.anonymous THEN 'anonymous report' ELSE 'report ' || i.number END"


def falls_entries(conn: Connection, window: Window, limit: int) -> list[dict]:
    return _entries(conn, f"""
        SELECT i.id AS entry_id, 'incident' AS kind, i.patient_id, i.occurred_at, 1 AS measure,
               'fall on ' || i.ward_code || ': ' || replace(i.outcome, '_', ' ') || ' (' || {_REPORT} || ')' AS label
        FROM {_INPATIENT_FALLS} AND i.occurred_at >= :start AND i.occurred_at < :end
        ORDER BY i.occurred_at LIMIT :limit""", window, limit)  # noqa: S608 -- constant fragments; values are bound


# An anonymous report counts from the hour it was reported in (UTC, as incidents.shown gives it): the exact time,
# recovered from an entry's days to close and its closing, would say who filed it.
_CLOSED = f"""closed AS (
    SELECT i.id, i.patient_id, {_REPORT} AS report, i.incident_type,
           CASE WHEN i.anonymous THEN date_trunc('hour', i.reported_at, 'UTC') ELSE i.reported_at END AS reported_at,
           v.at AS closed_at
    FROM incident i JOIN incident_review v ON v.incident_id = i.id AND v.kind = 'closed'
)"""  # noqa: S608 -- a constant fragment of this module


def incident_days_to_close(conn: Connection, windows: Sequence[Window]) -> list[Figure]:
    """Median days from an incident's report to its closing (an anonymous one's from its hour), over the incidents
    closed in the window."""
    rows = _rows(conn, f""", {_CLOSED}
        SELECT w.n, count(c.id) AS closed,
               percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM c.closed_at - c.reported_at) / 86400)
                 AS median
        FROM w LEFT JOIN closed c ON c.closed_at >= w.start_at AND c.closed_at < w.end_at
        GROUP BY w.n ORDER BY w.n""", windows)  # noqa: S608 -- constant fragments of this module joined; values are bound
    return [Figure(value=None if not r.closed else float(r.median), denominator=r.closed) for r in rows]


def incident_close_entries(conn: Connection, window: Window, limit: int) -> list[dict]:
    return _entries(conn, f"""WITH {_CLOSED}
        SELECT c.id AS entry_id, 'incident' AS kind, c.patient_id, c.closed_at AS occurred_at,
               extract(epoch FROM c.closed_at - c.reported_at) / 86400 AS measure,
               replace(c.incident_type, '_', ' ') || ' (' || c.report || '): report to closing' AS label
        FROM closed c WHERE c.closed_at >= :start AND c.closed_at < :end
        ORDER BY c.closed_at LIMIT :limit""", window, limit)  # noqa: S608 -- constant fragments; values are bound


# -- companions --------------------------------------------------------------------------------------------


def bed_turnover(conn: Connection, windows: Sequence[Window]) -> list[Figure]:
    rows = _rows(conn, f"""
        SELECT w.n, {STAFFED_BEDS} AS staffed,
               (SELECT count(*) FROM inpatient_stay s
                 WHERE s.discharged_at >= w.start_at AND s.discharged_at < w.end_at) AS discharges
        FROM w ORDER BY w.n""", windows)  # noqa: S608 -- constant fragments of this module joined; values are bound
    return [Figure(value=_ratio(r.discharges, r.staffed), numerator=r.discharges, denominator=r.staffed) for r in rows]


def ed_boarding(conn: Connection, windows: Sequence[Window]) -> list[Figure]:
    rows = _rows(conn, """
        SELECT w.n, count(v.id) AS visits,
               percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM v.departed_at - v.decided_at) / 60)
                 AS median
        FROM w LEFT JOIN ed_visit v ON v.departed_at >= w.start_at AND v.departed_at < w.end_at
             AND v.disposition = 'admitted' AND v.decided_at IS NOT NULL
        GROUP BY w.n ORDER BY w.n""", windows)
    return [Figure(value=None if not r.visits else float(r.median), denominator=r.visits) for r in rows]


def ed_boarding_entries(conn: Connection, window: Window, limit: int) -> list[dict]:
    return _entries(conn, """
        SELECT v.departure_entry_id AS entry_id, 'ed_departure' AS kind, v.patient_id, v.departed_at AS occurred_at,
               extract(epoch FROM v.departed_at - v.decided_at) / 60 AS measure,
               'decision to admit to ED departure' AS label
        FROM ed_visit v WHERE v.departed_at >= :start AND v.departed_at < :end
          AND v.disposition = 'admitted' AND v.decided_at IS NOT NULL
        ORDER BY v.departed_at LIMIT :limit""", window, limit)


def no_show(conn: Connection, windows: Sequence[Window]) -> list[Figure]:
    rows = _rows(conn, """
        SELECT w.n, count(a.id) AS due, count(a.id) FILTER (WHERE a.status = 'no_show') AS missed
        FROM w LEFT JOIN appointment a ON a.starts_at >= w.start_at AND a.starts_at < w.end_at
             AND a.status <> 'cancelled'
        GROUP BY w.n ORDER BY w.n""", windows)
    return [Figure(value=_ratio(r.missed, r.due, 100), numerator=r.missed, denominator=r.due) for r in rows]


def no_show_entries(conn: Connection, window: Window, limit: int) -> list[dict]:
    return _entries(conn, """
        SELECT a.id AS entry_id, 'appointment' AS kind, a.patient_id, a.starts_at AS occurred_at,
               CASE WHEN a.status = 'no_show' THEN 1 ELSE 0 END AS measure,
               a.clinic_code || ': ' || replace(a.status, '_', ' ') AS label
        FROM appointment a WHERE a.starts_at >= :start AND a.starts_at < :end AND a.status <> 'cancelled'
        ORDER BY (a.status = 'no_show') DESC, a.starts_at LIMIT :limit""", window, limit)


for _id, _compute, _entries_of in (
    ("bed_occupancy", occupancy, occupancy_entries),
    ("average_length_of_stay", length_of_stay, length_of_stay_entries),
    ("ed_length_of_stay", ed_length_of_stay, ed_departure_entries),
    ("ed_left_without_being_seen", ed_left_without_being_seen, ed_left_without_being_seen_entries),
    ("discharges_before_noon", discharges_before_noon, discharges_before_noon_entries),
    ("readmission_30_day", readmissions, readmission_entries),
    ("lab_turnaround", lab_turnaround, lab_turnaround_entries),
    ("imaging_turnaround", imaging_turnaround, imaging_turnaround_entries),
    ("bed_turnover", bed_turnover, length_of_stay_entries),
    ("ed_boarding", ed_boarding, ed_boarding_entries),
    ("outpatient_no_show", no_show, no_show_entries),
    ("falls_per_1000_bed_days", falls_per_1000_bed_days, falls_entries),
    ("incident_days_to_close", incident_days_to_close, incident_close_entries),
):
    register_kpi(_id, layer="operations", compute=_compute, entries=_entries_of)
