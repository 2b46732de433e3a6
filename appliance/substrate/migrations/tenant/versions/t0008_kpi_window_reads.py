"""KPI 8's projection: `charge_capture`, one row per billable record (a lab or imaging order, a dose
given, an encounter's end) with the charge that bills it, kept by the financial layer's reactions
(appliance/layers/financial/capture.py) through the function `charge_capture_refresh` installed here,
so the command center counts a window's same-day captures over one indexed range instead of matching
every billable entry of the window to its charges per request (~200 ms on a year-old referral
hospital, bench/kpis.py).

A schema migrated here already holds billable entries and charges: the upgrade fills the projection from
them with BACKFILL — the variance report's SQL (appliance/layers/financial/reports.py) over all records,
frozen here as it stood. tests/layers/financial/test_capture_kpi.py runs it on a scenario and compares it
with what the reactions kept.

Revision ID: t0008
Revises: t0007
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "t0008"
down_revision = "t0007"
branch_labels = None
depends_on = None

_VERSIONED = """
    SELECT e.id AS root_id, e.id AS entry_id, e.kind, e.patient_id, e.occurred_at, {what} AS what,
           {department} AS department
    FROM entry e JOIN {table} d ON d.entry_id = e.id
    WHERE e.kind = '{table}' AND e.id = e.root_id
      AND NOT EXISTS (SELECT 1 FROM entry x WHERE x.supersedes = e.id) AND {billable}
    UNION ALL
    SELECT e.id AS root_id, cur.id AS entry_id, e.kind, e.patient_id, e.occurred_at, {what} AS what,
           {department} AS department
    FROM entry e JOIN entry cur ON cur.root_id = e.id AND cur.id <> e.id JOIN {table} d ON d.entry_id = cur.id
    WHERE e.kind = '{table}' AND e.id = e.root_id
      AND EXISTS (SELECT 1 FROM entry x WHERE x.supersedes = e.id)
      AND NOT EXISTS (SELECT 1 FROM entry x WHERE x.supersedes = cur.id) AND cur.status <> 'entered_in_error'
      AND {billable}"""

BACKFILL = "WITH billable AS (" + " UNION ALL ".join([  # noqa: S608 -- constants of this revision
    _VERSIONED.format(what="d.display", table="service_request", billable="d.status = 'active'",
                      department="CASE d.category WHEN 'imaging' THEN 'IMAGING' ELSE 'LAB' END"),
    _VERSIONED.format(what="d.drug", table="medication_administration", billable="d.outcome = 'given'",
                      department="'PHARMACY'"),
    """
    SELECT e.id AS root_id, e.id AS entry_id, e.kind, e.patient_id, e.occurred_at,
           'Consultation (' || replace(n.encounter_class, '_', ' ') || ')' AS what,
           COALESCE(n.ward_code, CASE n.encounter_class WHEN 'emergency' THEN 'ED' WHEN 'inpatient' THEN 'IPD'
                                                         ELSE 'OPD' END) AS department
    FROM entry e JOIN encounter_status_change d ON d.entry_id = e.id JOIN encounter n ON n.id = d.encounter_id
    WHERE e.kind = 'encounter_status' AND d.to_status = 'finished'""",
]) + """), charged AS (
    SELECT DISTINCT ON (ch.source_root_id) ch.source_root_id, ce.id AS charge_id, ch.status,
           ch.department AS charge_department, ce.recorded_at, ch.service_date
    FROM charge ch JOIN entry ce ON ce.id = ch.entry_id
    WHERE ch.reverses IS NULL
      AND NOT EXISTS (SELECT 1 FROM entry s WHERE s.supersedes = ce.id)
      AND NOT EXISTS (SELECT 1 FROM charge cr WHERE cr.reverses = ce.root_id)
    ORDER BY ch.source_root_id, ce.recorded_at DESC
)
SELECT b.root_id, b.entry_id, b.kind, b.patient_id, b.occurred_at, b.what,
       COALESCE(c.charge_department, b.department) AS department, c.charge_id, c.status AS charge_status,
       c.recorded_at AS charged_at, c.service_date, (b.occurred_at AT TIME ZONE z.tz)::date AS care_day,
       (c.recorded_at AT TIME ZONE z.tz)::date AS charged_day
FROM billable b LEFT JOIN charged c ON c.source_root_id = b.root_id
     CROSS JOIN (SELECT COALESCE((SELECT timezone FROM billing_setting WHERE id = 1), 'UTC') AS tz) z"""
COLUMNS = ("root_id", "entry_id", "kind", "patient_id", "occurred_at", "what", "department", "charge_id",
           "charge_status", "charged_at", "service_date", "care_day", "charged_day")


# `charge_capture_refresh(p_roots uuid[])`: what the reactions call to bring the rows of the records they
# touched up to date — the report's SQL for those records. The body is frozen here (re-wrapped; whitespace
# is not significant); capture.refresh_function_body() composes it from reports.py and a test compares
# the two, so a change to the report's definition needs a new revision that replaces the function.
REFRESH_BODY = """
    WITH billable AS ( SELECT e.id AS root_id, e.id AS entry_id, e.kind, e.patient_id, e.occurred_at, d.display
    AS what, CASE d.category WHEN 'imaging' THEN 'IMAGING' ELSE 'LAB' END AS department FROM entry e JOIN
    service_request d ON d.entry_id = e.id WHERE e.kind = 'service_request' AND e.id = e.root_id AND e.id =
    ANY(p_roots) AND NOT EXISTS (SELECT 1 FROM entry x WHERE x.supersedes = e.id) AND d.status = 'active' UNION
    ALL SELECT e.id AS root_id, cur.id AS entry_id, e.kind, e.patient_id, e.occurred_at, d.display AS what, CASE
    d.category WHEN 'imaging' THEN 'IMAGING' ELSE 'LAB' END AS department FROM entry e JOIN entry cur ON
    cur.root_id = e.id AND cur.id <> e.id JOIN service_request d ON d.entry_id = cur.id WHERE e.kind =
    'service_request' AND e.id = e.root_id AND e.id = ANY(p_roots) AND EXISTS (SELECT 1 FROM entry x WHERE
    x.supersedes = e.id) AND NOT EXISTS (SELECT 1 FROM entry x WHERE x.supersedes = cur.id) AND cur.status <>
    'entered_in_error' AND d.status = 'active' UNION ALL SELECT e.id AS root_id, e.id AS entry_id, e.kind,
    e.patient_id, e.occurred_at, d.drug AS what, 'PHARMACY' AS department FROM entry e JOIN
    medication_administration d ON d.entry_id = e.id WHERE e.kind = 'medication_administration' AND e.id =
    e.root_id AND e.id = ANY(p_roots) AND NOT EXISTS (SELECT 1 FROM entry x WHERE x.supersedes = e.id) AND
    d.outcome = 'given' UNION ALL SELECT e.id AS root_id, cur.id AS entry_id, e.kind, e.patient_id,
    e.occurred_at, d.drug AS what, 'PHARMACY' AS department FROM entry e JOIN entry cur ON cur.root_id = e.id
    AND cur.id <> e.id JOIN medication_administration d ON d.entry_id = cur.id WHERE e.kind =
    'medication_administration' AND e.id = e.root_id AND e.id = ANY(p_roots) AND EXISTS (SELECT 1 FROM entry x
    WHERE x.supersedes = e.id) AND NOT EXISTS (SELECT 1 FROM entry x WHERE x.supersedes = cur.id) AND cur.status
    <> 'entered_in_error' AND d.outcome = 'given' UNION ALL SELECT e.id AS root_id, e.id AS entry_id, e.kind,
    e.patient_id, e.occurred_at, 'Consultation (' || replace(n.encounter_class, '_', ' ') || ')' AS what,
    COALESCE(n.ward_code, CASE n.encounter_class WHEN 'emergency' THEN 'ED' WHEN 'inpatient' THEN 'IPD' ELSE
    'OPD' END) AS department FROM entry e JOIN encounter_status_change d ON d.entry_id = e.id JOIN encounter n
    ON n.id = d.encounter_id WHERE e.kind = 'encounter_status' AND e.id = ANY(p_roots) AND d.to_status =
    'finished'), charged AS ( SELECT DISTINCT ON (ch.source_root_id) ch.source_root_id, ce.id AS charge_id,
    ch.status, ch.amount, ch.department AS charge_department, ce.recorded_at, ch.service_date FROM charge ch
    JOIN entry ce ON ce.id = ch.entry_id WHERE ch.source_root_id = ANY(p_roots) AND ch.reverses IS NULL AND NOT
    EXISTS (SELECT 1 FROM entry s WHERE s.supersedes = ce.id) AND NOT EXISTS (SELECT 1 FROM charge cr WHERE
    cr.reverses = ce.root_id) ORDER BY ch.source_root_id, ce.recorded_at DESC ) , kept AS ( INSERT INTO
    charge_capture (root_id, entry_id, kind, patient_id, occurred_at, what, department, charge_id,
    charge_status, charged_at, service_date, care_day, charged_day) SELECT b.root_id, b.entry_id, b.kind,
    b.patient_id, b.occurred_at, b.what, COALESCE(c.charge_department, b.department), c.charge_id, c.status,
    c.recorded_at, c.service_date, (b.occurred_at AT TIME ZONE z.tz)::date, (c.recorded_at AT TIME ZONE
    z.tz)::date FROM billable b LEFT JOIN charged c ON c.source_root_id = b.root_id CROSS JOIN (SELECT
    COALESCE((SELECT timezone FROM billing_setting WHERE id = 1), 'UTC') AS tz) z ON CONFLICT (root_id) DO
    UPDATE SET entry_id = excluded.entry_id, kind = excluded.kind, patient_id = excluded.patient_id, occurred_at
    = excluded.occurred_at, what = excluded.what, department = excluded.department, charge_id =
    excluded.charge_id, charge_status = excluded.charge_status, charged_at = excluded.charged_at, service_date =
    excluded.service_date, care_day = excluded.care_day, charged_day = excluded.charged_day RETURNING root_id )
    DELETE FROM charge_capture WHERE root_id = ANY(p_roots) AND root_id NOT IN (SELECT root_id FROM kept)
"""


def upgrade() -> None:
    op.create_table(
        "charge_capture",
        sa.Column("root_id", sa.Uuid(), primary_key=True),
        sa.Column("entry_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("patient_id", sa.Uuid(), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("what", sa.Text(), nullable=False),
        sa.Column("department", sa.Text(), nullable=False),
        sa.Column("charge_id", sa.Uuid(), nullable=True),
        sa.Column("charge_status", sa.Text(), nullable=True),
        sa.Column("charged_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("service_date", sa.Date(), nullable=True),
        sa.Column("care_day", sa.Date(), nullable=False),
        sa.Column("charged_day", sa.Date(), nullable=True),
    )
    op.create_index("charge_capture_occurred_idx", "charge_capture", ["occurred_at"])
    # A generic plan, made once per schema and connection: left to choose, PL/pgSQL kept planning this
    # statement afresh for each call (custom plans for the uuid[] argument) — 1.9 ms of planning for
    # 0.2 ms of execution on every billable write (measured with EXPLAIN ANALYZE on a demo facility).
    op.execute("CREATE FUNCTION charge_capture_refresh(p_roots uuid[]) RETURNS void LANGUAGE plpgsql "
               "SET plan_cache_mode = force_generic_plan AS "
               f"$refresh$ BEGIN {REFRESH_BODY}; END $refresh$")
    op.execute("REVOKE ALL ON FUNCTION charge_capture_refresh(uuid[]) FROM PUBLIC")
    op.execute("""
        DO $grant$ BEGIN
            IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = current_schema()) THEN
                EXECUTE format('GRANT EXECUTE ON FUNCTION charge_capture_refresh(uuid[]) TO %I', current_schema());
            END IF;
        END $grant$
    """)
    op.execute(f"INSERT INTO charge_capture ({', '.join(COLUMNS)}) {BACKFILL}")


def downgrade() -> None:
    op.execute("DROP FUNCTION charge_capture_refresh(uuid[])")
    op.drop_table("charge_capture")
