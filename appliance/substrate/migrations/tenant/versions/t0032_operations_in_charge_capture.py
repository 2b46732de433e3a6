"""Operations count in the same-day charge capture: a completed operation is charged (the financial layer's
reaction to `surgery`, t0031), but KPI 8's projection did not know operations, so a theatre's charges were
neither counted captured nor missed.

The variance report (appliance/layers/financial/reports.py) now counts `surgery` among its billable entries: a
case whose current version is completed, dated by its completion (`ended_at`, the time its charge bills), not by
its booking. `charge_capture_refresh(p_roots uuid[])`, which t0008 installed and t0014 and t0023 replaced, is
replaced by the report's SQL as it now stands, and the operations already in the record are brought into the
projection (captured, late, unpriced or missing as their charges say). The downgrade puts t0023's body back and
takes them out again. tests/layers/financial/test_capture_kpi.py holds the installed function equal to what
capture.py composes.

Revision ID: t0032
Revises: t0031
Create Date: 2026-11-27
"""

import importlib

from alembic import op

revision = "t0032"
down_revision = "t0031"
branch_labels = None
depends_on = None

# The body as capture.refresh_function_body() composes it at this revision (re-wrapped; whitespace outside
# string literals is not significant).
REFRESH_BODY = """
    WITH billable AS ( SELECT e.id AS root_id, e.id AS entry_id, e.kind, e.patient_id, e.occurred_at,
    d.display AS what, CASE d.category WHEN 'imaging' THEN 'IMAGING' ELSE 'LAB' END AS department FROM entry e
    JOIN service_request d ON d.entry_id = e.id WHERE e.kind = 'service_request' AND e.id = e.root_id AND e.id
    = ANY(p_roots) AND NOT EXISTS (SELECT 1 FROM entry x WHERE x.supersedes = e.id) AND d.status = 'active'
    UNION ALL SELECT e.id AS root_id, cur.id AS entry_id, e.kind, e.patient_id, e.occurred_at, d.display AS
    what, CASE d.category WHEN 'imaging' THEN 'IMAGING' ELSE 'LAB' END AS department FROM entry e JOIN entry
    cur ON cur.root_id = e.id AND cur.id <> e.id JOIN service_request d ON d.entry_id = cur.id WHERE e.kind =
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
    WHERE x.supersedes = e.id) AND NOT EXISTS (SELECT 1 FROM entry x WHERE x.supersedes = cur.id) AND
    cur.status <> 'entered_in_error' AND d.outcome = 'given' UNION ALL SELECT e.id AS root_id, e.id AS
    entry_id, e.kind, e.patient_id, e.occurred_at, 'Consultation (' || replace(n.encounter_class, '_', ' ') ||
    ')' AS what, COALESCE(n.ward_code, CASE n.encounter_class WHEN 'emergency' THEN 'ED' WHEN 'inpatient' THEN
    'IPD' ELSE 'OPD' END) AS department FROM entry e JOIN encounter_status_change d ON d.entry_id = e.id JOIN
    encounter n ON n.id = d.encounter_id WHERE e.kind = 'encounter_status' AND e.id = ANY(p_roots) AND
    d.to_status = 'finished' UNION ALL SELECT e.id AS root_id, e.id AS entry_id, e.kind, e.patient_id,
    e.occurred_at, (SELECT i.drug FROM pharmacy_item i WHERE i.id = d.item_id) || ' (dispensed)' AS what,
    'PHARMACY' AS department FROM entry e JOIN dispense d ON d.entry_id = e.id WHERE e.kind = 'dispense' AND
    e.id = e.root_id AND e.id = ANY(p_roots) AND NOT EXISTS (SELECT 1 FROM entry x WHERE x.supersedes = e.id)
    AND TRUE UNION ALL SELECT e.id AS root_id, cur.id AS entry_id, e.kind, e.patient_id, e.occurred_at,
    (SELECT i.drug FROM pharmacy_item i WHERE i.id = d.item_id) || ' (dispensed)' AS what, 'PHARMACY' AS
    department FROM entry e JOIN entry cur ON cur.root_id = e.id AND cur.id <> e.id JOIN dispense d ON
    d.entry_id = cur.id WHERE e.kind = 'dispense' AND e.id = e.root_id AND e.id = ANY(p_roots) AND EXISTS
    (SELECT 1 FROM entry x WHERE x.supersedes = e.id) AND NOT EXISTS (SELECT 1 FROM entry x WHERE x.supersedes
    = cur.id) AND cur.status <> 'entered_in_error' AND TRUE UNION ALL SELECT e.id AS root_id, e.entry_id,
    e.kind, e.patient_id, e.occurred_at, e.what, 'THEATRE' AS department FROM (SELECT cur.root_id AS id,
    cur.id AS entry_id, cur.kind, cur.patient_id, d.ended_at AS occurred_at, d.procedure AS what FROM entry
    cur JOIN surgery d ON d.entry_id = cur.id WHERE cur.kind = 'surgery' AND d.status = 'completed' AND
    cur.status <> 'entered_in_error' AND NOT EXISTS (SELECT 1 FROM entry x WHERE x.supersedes = cur.id)) e
    WHERE e.id = ANY(p_roots)), charged AS ( SELECT DISTINCT ON (ch.source_root_id) ch.source_root_id, ce.id
    AS charge_id, ch.status, ch.amount, ch.department AS charge_department, COALESCE(( SELECT
    min(fe.recorded_at) FROM charge f JOIN entry fe ON fe.id = f.entry_id WHERE f.source_root_id =
    ch.source_root_id AND f.item_kind = ch.item_kind AND f.item_code = ch.item_code AND f.service_date =
    ch.service_date AND f.reverses IS NULL AND f.status = 'posted'), ce.recorded_at) AS captured_at,
    ch.service_date FROM charge ch JOIN entry ce ON ce.id = ch.entry_id WHERE ch.source_root_id = ANY(p_roots)
    AND ch.reverses IS NULL AND NOT EXISTS (SELECT 1 FROM entry s WHERE s.supersedes = ce.id) AND NOT EXISTS
    (SELECT 1 FROM charge cr WHERE cr.reverses = ce.root_id) ORDER BY ch.source_root_id, ce.recorded_at DESC )
    , kept AS ( INSERT INTO charge_capture (root_id, entry_id, kind, patient_id, occurred_at, what,
    department, charge_id, charge_status, charged_at, service_date, care_day, charged_day) SELECT b.root_id,
    b.entry_id, b.kind, b.patient_id, b.occurred_at, b.what, COALESCE(c.charge_department, b.department),
    c.charge_id, c.status, c.captured_at, c.service_date, (b.occurred_at AT TIME ZONE z.tz)::date,
    (c.captured_at AT TIME ZONE z.tz)::date FROM billable b LEFT JOIN charged c ON c.source_root_id =
    b.root_id CROSS JOIN (SELECT COALESCE((SELECT timezone FROM billing_setting WHERE id = 1), 'UTC') AS tz) z
    ON CONFLICT (root_id) DO UPDATE SET entry_id = excluded.entry_id, kind = excluded.kind, patient_id =
    excluded.patient_id, occurred_at = excluded.occurred_at, what = excluded.what, department =
    excluded.department, charge_id = excluded.charge_id, charge_status = excluded.charge_status, charged_at =
    excluded.charged_at, service_date = excluded.service_date, care_day = excluded.care_day, charged_day =
    excluded.charged_day RETURNING root_id ) DELETE FROM charge_capture WHERE root_id = ANY(p_roots) AND
    root_id NOT IN (SELECT root_id FROM kept)
"""
# t0023 (landed, so never edited) gives the body the downgrade puts back, and the way a body is installed.
_T0023 = importlib.import_module("appliance.substrate.migrations.tenant.versions.t0023_pharmacy_reversal_and_capture")
PREVIOUS_BODY = _T0023.REFRESH_BODY
_install = _T0023._install  # CREATE OR REPLACE: t0008's owner and grants kept, its settings restated

_OPERATIONS = "ARRAY(SELECT id FROM entry WHERE kind = 'surgery' AND id = root_id)"


def upgrade() -> None:
    _install(REFRESH_BODY)
    op.execute(f"SELECT charge_capture_refresh({_OPERATIONS})")


def downgrade() -> None:
    _install(PREVIOUS_BODY)
    op.execute("DELETE FROM charge_capture WHERE kind = 'surgery'")
