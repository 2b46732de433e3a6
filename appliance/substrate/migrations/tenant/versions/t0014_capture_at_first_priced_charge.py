"""KPI 8 and the late-charge rate read when a charge's care was captured as when it was first charged at a
price: `charge_capture_refresh(p_roots uuid[])`, which t0008 installed, is replaced by the variance
report's SQL as it now stands (appliance/layers/financial/reports.py, CAPTURED_AT).

Insurance recorded after the care re-prices the open charges (appliance/layers/financial/rebilling.py):
each posted charge is credited and posted again at the insurer's price, today. The projection took the
new charge's own time as the capture, so yesterday's care charged yesterday counted as captured late once
re-priced. The capture time is now that of the first priced charge for the same record, item and day,
credited since or not; a charge left unpriced on its day and priced later is still late.

The upgrade replaces the function and refreshes the records that hold a credited charge, the only ones
whose capture time can change; the downgrade puts t0008's body back and refreshes the same records.
tests/layers/financial/test_capture_kpi.py holds the installed function equal to what capture.py
composes.

Revision ID: t0014
Revises: t0013
Create Date: 2026-11-27
"""

import importlib

from alembic import op

revision = "t0014"
down_revision = "t0013"
branch_labels = None
depends_on = None

# The body as capture.refresh_function_body() composes it at this revision (re-wrapped; whitespace outside
# string literals is not significant).
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
    ch.status, ch.amount, ch.department AS charge_department, COALESCE(( SELECT min(fe.recorded_at) FROM charge
    f JOIN entry fe ON fe.id = f.entry_id WHERE f.source_root_id = ch.source_root_id AND f.item_kind =
    ch.item_kind AND f.item_code = ch.item_code AND f.service_date = ch.service_date AND f.reverses IS NULL AND
    f.status = 'posted'), ce.recorded_at) AS captured_at, ch.service_date FROM charge ch JOIN entry ce ON ce.id
    = ch.entry_id WHERE ch.source_root_id = ANY(p_roots) AND ch.reverses IS NULL AND NOT EXISTS (SELECT 1 FROM
    entry s WHERE s.supersedes = ce.id) AND NOT EXISTS (SELECT 1 FROM charge cr WHERE cr.reverses = ce.root_id)
    ORDER BY ch.source_root_id, ce.recorded_at DESC ) , kept AS ( INSERT INTO charge_capture (root_id, entry_id,
    kind, patient_id, occurred_at, what, department, charge_id, charge_status, charged_at, service_date,
    care_day, charged_day) SELECT b.root_id, b.entry_id, b.kind, b.patient_id, b.occurred_at, b.what,
    COALESCE(c.charge_department, b.department), c.charge_id, c.status, c.captured_at, c.service_date,
    (b.occurred_at AT TIME ZONE z.tz)::date, (c.captured_at AT TIME ZONE z.tz)::date FROM billable b LEFT JOIN
    charged c ON c.source_root_id = b.root_id CROSS JOIN (SELECT COALESCE((SELECT timezone FROM billing_setting
    WHERE id = 1), 'UTC') AS tz) z ON CONFLICT (root_id) DO UPDATE SET entry_id = excluded.entry_id, kind =
    excluded.kind, patient_id = excluded.patient_id, occurred_at = excluded.occurred_at, what = excluded.what,
    department = excluded.department, charge_id = excluded.charge_id, charge_status = excluded.charge_status,
    charged_at = excluded.charged_at, service_date = excluded.service_date, care_day = excluded.care_day,
    charged_day = excluded.charged_day RETURNING root_id ) DELETE FROM charge_capture WHERE root_id =
    ANY(p_roots) AND root_id NOT IN (SELECT root_id FROM kept)
"""
# t0008's body, which the downgrade puts back: read from that revision (landed, so never edited).
PREVIOUS_BODY = importlib.import_module(
    "appliance.substrate.migrations.tenant.versions.t0008_kpi_window_reads").REFRESH_BODY

# The billable records one of whose charges has been credited: a re-priced charge's record among them.
_CREDITED_RECORDS = """
    SELECT charge_capture_refresh(ARRAY(
        SELECT DISTINCT ch.source_root_id FROM charge ch JOIN entry ce ON ce.id = ch.entry_id
        WHERE ch.reverses IS NULL AND EXISTS (SELECT 1 FROM charge cr WHERE cr.reverses = ce.root_id)))"""


def _install(body: str) -> None:
    # CREATE OR REPLACE keeps the function's owner and grants (t0008's); its settings are restated.
    op.execute("CREATE OR REPLACE FUNCTION charge_capture_refresh(p_roots uuid[]) RETURNS void LANGUAGE plpgsql "
               "SET plan_cache_mode = force_generic_plan AS "
               f"$refresh$ BEGIN {body}; END $refresh$")
    op.execute(_CREDITED_RECORDS)


def upgrade() -> None:
    _install(REFRESH_BODY)


def downgrade() -> None:
    _install(PREVIOUS_BODY)
