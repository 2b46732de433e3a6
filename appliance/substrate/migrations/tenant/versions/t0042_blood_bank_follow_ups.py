"""The blood bank's follow-ups (appliance/layers/clinical/blood.py, appliance/layers/nursing/transfusion.py):

- `blood_request.cancel_reason`: a request is cancelled (the operation called off, the patient no longer needs the
  units) by a new version of its entry carrying why; NULL is a request still open. The units reserved for it go back
  to stock by `released` events whose reason says so.
- `transfusion.checked_by_account`: the second person of the bedside check, now a staff account of the facility
  (the control schema's `account.id`; no foreign key crosses schemas). Rows written before keep it NULL and their
  `checked_by` text as it was typed (a name and a staff ID); rows written from now on carry both, the text being the
  account's name at the time of the check.
- `transfusion.started_on`: the facility's own day when the unit was hung, on which the unit's expiry was judged
  (a unit expiring on the 28th is not hung at 01:00 on the 29th in Nairobi, still the 28th in UTC). NULL on rows
  written before, judged then on the UTC day.
- KPI 8 (same-day charge capture) counts transfusions: a unit is charged when started (the financial layer's
  reaction, since t0036), but the projection did not know them, so the blood bank's charges were neither counted
  captured nor missed. `charge_capture_refresh(p_roots uuid[])` (t0008, replaced by t0014, t0023, t0032) is replaced
  by the variance report's SQL as it now stands (appliance/layers/financial/reports.py), and the transfusions already
  in the record are brought into the projection. The downgrade puts t0032's body back and takes them out again.
  tests/layers/financial/test_capture_kpi.py holds the installed function equal to what capture.py composes.

Revision ID: t0042
Revises: t0041
Create Date: 2026-11-27
"""

import importlib

import sqlalchemy as sa
from alembic import op

revision = "t0042"
down_revision = "t0041"
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
    WHERE e.id = ANY(p_roots) UNION ALL SELECT e.id AS root_id, e.id AS entry_id, e.kind, e.patient_id,
    e.occurred_at, 'Blood transfusion (unit ' || d.unit_number || ')' AS what, 'BLOOD' AS department FROM
    entry e JOIN transfusion d ON d.entry_id = e.id WHERE e.kind = 'transfusion' AND e.id = e.root_id AND e.id
    = ANY(p_roots) AND NOT EXISTS (SELECT 1 FROM entry x WHERE x.supersedes = e.id) AND TRUE UNION ALL SELECT
    e.id AS root_id, cur.id AS entry_id, e.kind, e.patient_id, e.occurred_at, 'Blood transfusion (unit ' ||
    d.unit_number || ')' AS what, 'BLOOD' AS department FROM entry e JOIN entry cur ON cur.root_id = e.id AND
    cur.id <> e.id JOIN transfusion d ON d.entry_id = cur.id WHERE e.kind = 'transfusion' AND e.id = e.root_id
    AND e.id = ANY(p_roots) AND EXISTS (SELECT 1 FROM entry x WHERE x.supersedes = e.id) AND NOT EXISTS
    (SELECT 1 FROM entry x WHERE x.supersedes = cur.id) AND cur.status <> 'entered_in_error' AND TRUE),
    charged AS ( SELECT DISTINCT ON (ch.source_root_id) ch.source_root_id, ce.id AS charge_id, ch.status,
    ch.amount, ch.department AS charge_department, COALESCE(( SELECT min(fe.recorded_at) FROM charge f JOIN
    entry fe ON fe.id = f.entry_id WHERE f.source_root_id = ch.source_root_id AND f.item_kind = ch.item_kind
    AND f.item_code = ch.item_code AND f.service_date = ch.service_date AND f.reverses IS NULL AND f.status =
    'posted'), ce.recorded_at) AS captured_at, ch.service_date FROM charge ch JOIN entry ce ON ce.id =
    ch.entry_id WHERE ch.source_root_id = ANY(p_roots) AND ch.reverses IS NULL AND NOT EXISTS (SELECT 1 FROM
    entry s WHERE s.supersedes = ce.id) AND NOT EXISTS (SELECT 1 FROM charge cr WHERE cr.reverses =
    ce.root_id) ORDER BY ch.source_root_id, ce.recorded_at DESC ) , kept AS ( INSERT INTO charge_capture
    (root_id, entry_id, kind, patient_id, occurred_at, what, department, charge_id, charge_status, charged_at,
    service_date, care_day, charged_day) SELECT b.root_id, b.entry_id, b.kind, b.patient_id, b.occurred_at,
    b.what, COALESCE(c.charge_department, b.department), c.charge_id, c.status, c.captured_at, c.service_date,
    (b.occurred_at AT TIME ZONE z.tz)::date, (c.captured_at AT TIME ZONE z.tz)::date FROM billable b LEFT JOIN
    charged c ON c.source_root_id = b.root_id CROSS JOIN (SELECT COALESCE((SELECT timezone FROM
    billing_setting WHERE id = 1), 'UTC') AS tz) z ON CONFLICT (root_id) DO UPDATE SET entry_id =
    excluded.entry_id, kind = excluded.kind, patient_id = excluded.patient_id, occurred_at =
    excluded.occurred_at, what = excluded.what, department = excluded.department, charge_id =
    excluded.charge_id, charge_status = excluded.charge_status, charged_at = excluded.charged_at, service_date
    = excluded.service_date, care_day = excluded.care_day, charged_day = excluded.charged_day RETURNING
    root_id ) DELETE FROM charge_capture WHERE root_id = ANY(p_roots) AND root_id NOT IN (SELECT root_id FROM
    kept)
"""
# t0032 (landed, so never edited) gives the body the downgrade puts back; t0023 the way a body is installed.
_T0032 = importlib.import_module("appliance.substrate.migrations.tenant.versions.t0032_operations_in_charge_capture")
PREVIOUS_BODY = _T0032.REFRESH_BODY
_install = _T0032._install  # CREATE OR REPLACE: t0008's owner and grants kept, its settings restated

_TRANSFUSIONS = "ARRAY(SELECT id FROM entry WHERE kind = 'transfusion' AND id = root_id)"


def upgrade() -> None:
    op.add_column("blood_request", sa.Column("cancel_reason", sa.Text(), nullable=True))
    op.add_column("transfusion", sa.Column("checked_by_account", sa.Uuid(), nullable=True))
    op.add_column("transfusion", sa.Column("started_on", sa.Date(), nullable=True))
    _install(REFRESH_BODY)
    op.execute(f"SELECT charge_capture_refresh({_TRANSFUSIONS})")


def downgrade() -> None:
    _install(PREVIOUS_BODY)
    op.execute("DELETE FROM charge_capture WHERE kind = 'transfusion'")
    # A cancelled request reads as open again without its column; the version's reason still says it was cancelled.
    op.drop_column("transfusion", "started_on")
    op.drop_column("transfusion", "checked_by_account")
    op.drop_column("blood_request", "cancel_reason")
