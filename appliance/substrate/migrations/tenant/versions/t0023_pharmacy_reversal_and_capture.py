"""The outpatient pharmacy's loose ends: a dispense can be reversed, and KPI 8 counts what it hands over.

- **KPI 8 (same-day charge capture) counts dispenses**: a medicine the pharmacy hands over is billed as it is
  handed over (appliance/layers/financial/reactions.py), and the variance report now counts `dispense` among
  its billable entries (appliance/layers/financial/reports.py), so `charge_capture_refresh(p_roots uuid[])`,
  which t0008 installed and t0014 replaced, is replaced by the report's SQL as it now stands, and the
  dispenses already in the record are brought into the projection (captured, late, unpriced or missing as
  their charges say). The downgrade puts t0014's body back and takes them out again.
  tests/layers/financial/test_capture_kpi.py holds the installed function equal to what capture.py composes.
- **A dispense reversed puts its quantity back**: the stock ledger (`stock_movement`, t0022) takes a fourth
  kind of movement, `reversed`: the quantity of a dispense entered in error (wrong patient, wrong quantity,
  the patient left without it) back into the batch it came from, naming that dispense's entry. Positive, and
  once per dispense (a unique index: two pharmacists reversing the same dispense at once cannot both put it
  back). The downgrade refuses a schema whose ledger holds reversals, rather than lose them.

Revision ID: t0023
Revises: t0022
Create Date: 2026-11-27
"""

import importlib

import sqlalchemy as sa
from alembic import op

revision = "t0023"
down_revision = "t0022"
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
    'finished' UNION ALL SELECT e.id AS root_id, e.id AS entry_id, e.kind, e.patient_id, e.occurred_at, (SELECT
    i.drug FROM pharmacy_item i WHERE i.id = d.item_id) || ' (dispensed)' AS what, 'PHARMACY' AS department FROM
    entry e JOIN dispense d ON d.entry_id = e.id WHERE e.kind = 'dispense' AND e.id = e.root_id AND e.id =
    ANY(p_roots) AND NOT EXISTS (SELECT 1 FROM entry x WHERE x.supersedes = e.id) AND TRUE UNION ALL SELECT e.id
    AS root_id, cur.id AS entry_id, e.kind, e.patient_id, e.occurred_at, (SELECT i.drug FROM pharmacy_item i
    WHERE i.id = d.item_id) || ' (dispensed)' AS what, 'PHARMACY' AS department FROM entry e JOIN entry cur ON
    cur.root_id = e.id AND cur.id <> e.id JOIN dispense d ON d.entry_id = cur.id WHERE e.kind = 'dispense' AND
    e.id = e.root_id AND e.id = ANY(p_roots) AND EXISTS (SELECT 1 FROM entry x WHERE x.supersedes = e.id) AND
    NOT EXISTS (SELECT 1 FROM entry x WHERE x.supersedes = cur.id) AND cur.status <> 'entered_in_error' AND
    TRUE), charged AS ( SELECT DISTINCT ON (ch.source_root_id) ch.source_root_id, ce.id AS charge_id, ch.status,
    ch.amount, ch.department AS charge_department, COALESCE(( SELECT min(fe.recorded_at) FROM charge f JOIN
    entry fe ON fe.id = f.entry_id WHERE f.source_root_id = ch.source_root_id AND f.item_kind = ch.item_kind AND
    f.item_code = ch.item_code AND f.service_date = ch.service_date AND f.reverses IS NULL AND f.status =
    'posted'), ce.recorded_at) AS captured_at, ch.service_date FROM charge ch JOIN entry ce ON ce.id =
    ch.entry_id WHERE ch.source_root_id = ANY(p_roots) AND ch.reverses IS NULL AND NOT EXISTS (SELECT 1 FROM
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
# t0014's body, which the downgrade puts back: read from that revision (landed, so never edited).
PREVIOUS_BODY = importlib.import_module(
    "appliance.substrate.migrations.tenant.versions.t0014_capture_at_first_priced_charge").REFRESH_BODY

_DISPENSES = "ARRAY(SELECT id FROM entry WHERE kind = 'dispense' AND id = root_id)"


def _install(body: str) -> None:
    # CREATE OR REPLACE keeps the function's owner and grants (t0008's); its settings are restated.
    op.execute("CREATE OR REPLACE FUNCTION charge_capture_refresh(p_roots uuid[]) RETURNS void LANGUAGE plpgsql "
               "SET plan_cache_mode = force_generic_plan AS "
               f"$refresh$ BEGIN {body}; END $refresh$")


def upgrade() -> None:
    _install(REFRESH_BODY)
    op.execute(f"SELECT charge_capture_refresh({_DISPENSES})")
    op.drop_constraint("stock_movement_kind_known", "stock_movement", type_="check")
    op.create_check_constraint("stock_movement_kind_known", "stock_movement",
                               "kind IN ('received', 'adjusted', 'dispensed', 'reversed')")
    op.create_check_constraint("stock_movement_reversed_names_its_entry", "stock_movement",
                               "kind <> 'reversed' OR (quantity > 0 AND dispense_entry_id IS NOT NULL)")
    op.create_index("stock_movement_one_reversal_key", "stock_movement", ["dispense_entry_id"], unique=True,
                    postgresql_where=sa.text("kind = 'reversed'"))


def downgrade() -> None:
    op.execute("""
        DO $refuse$ BEGIN
            IF EXISTS (SELECT 1 FROM stock_movement WHERE kind = 'reversed') THEN
                RAISE EXCEPTION 'the pharmacy''s stock ledger holds reversed dispenses, which t0022 cannot hold';
            END IF;
        END $refuse$
    """)
    op.drop_index("stock_movement_one_reversal_key", "stock_movement")
    op.drop_constraint("stock_movement_reversed_names_its_entry", "stock_movement", type_="check")
    op.drop_constraint("stock_movement_kind_known", "stock_movement", type_="check")
    op.create_check_constraint("stock_movement_kind_known", "stock_movement",
                               "kind IN ('received', 'adjusted', 'dispensed')")
    _install(PREVIOUS_BODY)
    op.execute("DELETE FROM charge_capture WHERE kind = 'dispense'")
