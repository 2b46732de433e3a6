"""Medicine a patient brings back to the pharmacy (operations layer, appliance/layers/operations/pharmacy.py).

- `dispense_return`: the detail of the operations layer's `dispense_return` entries (patient data): the dispense
  the medicine was handed over by (its entry), the item and batch, the quantity brought back (at most what that
  dispense handed over and was not brought back before; the pharmacy checks it under the item's lock), whether it
  was fit to go back on the shelf, and why it came back. Appended and never rewritten, like every detail table.
- The stock ledger (`stock_movement`) takes two more kinds of movement, each naming the dispense: `returned`, the
  quantity brought back into the batch it was handed over from (positive), and `quarantined`, what of it was not
  fit to restock, taken out again at once (negative) to be destroyed; so stock on hand, the ledger's sum, gains
  only what can be handed over again, and the ledger still says every unit that came back.
- KPI 8 (same-day charge capture): a dispense brought back whole is no longer billable (its charge credited by the
  financial layer's reaction to the return), as a reversed one is not, so the variance report
  (appliance/layers/financial/reports.py) reads a dispense billable while some of it is kept, and
  `charge_capture_refresh(p_roots uuid[])` (t0008, replaced by t0014, t0023, t0032, t0042) is replaced by that SQL
  as it now stands. No dispense has been returned before this revision, so the projection needs no refresh.
  tests/layers/financial/test_capture_kpi.py holds the installed function equal to what capture.py composes.

The downgrade refuses a schema holding returns, rather than lose them, and puts t0042's body back.

Revision ID: t0047
Revises: t0046
Create Date: 2026-11-27
"""

import importlib

import sqlalchemy as sa
from alembic import op

revision = "t0047"
down_revision = "t0046"
branch_labels = None
depends_on = None

# The body as capture.refresh_function_body() composes it at this revision (re-wrapped; whitespace outside
# string literals is not significant).
REFRESH_BODY = """
    WITH billable AS ( SELECT e.id AS root_id, e.id AS entry_id, e.kind, e.patient_id, e.occurred_at, d.display AS
    what, CASE d.category WHEN 'imaging' THEN 'IMAGING' ELSE 'LAB' END AS department FROM entry e JOIN service_request
    d ON d.entry_id = e.id WHERE e.kind = 'service_request' AND e.id = e.root_id AND e.id = ANY(p_roots) AND NOT
    EXISTS (SELECT 1 FROM entry x WHERE x.supersedes = e.id) AND d.status = 'active' UNION ALL SELECT e.id AS root_id,
    cur.id AS entry_id, e.kind, e.patient_id, e.occurred_at, d.display AS what, CASE d.category WHEN 'imaging' THEN
    'IMAGING' ELSE 'LAB' END AS department FROM entry e JOIN entry cur ON cur.root_id = e.id AND cur.id <> e.id JOIN
    service_request d ON d.entry_id = cur.id WHERE e.kind = 'service_request' AND e.id = e.root_id AND e.id =
    ANY(p_roots) AND EXISTS (SELECT 1 FROM entry x WHERE x.supersedes = e.id) AND NOT EXISTS (SELECT 1 FROM entry x
    WHERE x.supersedes = cur.id) AND cur.status <> 'entered_in_error' AND d.status = 'active' UNION ALL SELECT e.id AS
    root_id, e.id AS entry_id, e.kind, e.patient_id, e.occurred_at, d.drug AS what, 'PHARMACY' AS department FROM
    entry e JOIN medication_administration d ON d.entry_id = e.id WHERE e.kind = 'medication_administration' AND e.id
    = e.root_id AND e.id = ANY(p_roots) AND NOT EXISTS (SELECT 1 FROM entry x WHERE x.supersedes = e.id) AND d.outcome
    = 'given' UNION ALL SELECT e.id AS root_id, cur.id AS entry_id, e.kind, e.patient_id, e.occurred_at, d.drug AS
    what, 'PHARMACY' AS department FROM entry e JOIN entry cur ON cur.root_id = e.id AND cur.id <> e.id JOIN
    medication_administration d ON d.entry_id = cur.id WHERE e.kind = 'medication_administration' AND e.id = e.root_id
    AND e.id = ANY(p_roots) AND EXISTS (SELECT 1 FROM entry x WHERE x.supersedes = e.id) AND NOT EXISTS (SELECT 1 FROM
    entry x WHERE x.supersedes = cur.id) AND cur.status <> 'entered_in_error' AND d.outcome = 'given' UNION ALL SELECT
    e.id AS root_id, e.id AS entry_id, e.kind, e.patient_id, e.occurred_at, 'Consultation (' ||
    replace(n.encounter_class, '_', ' ') || ')' AS what, COALESCE(n.ward_code, CASE n.encounter_class WHEN 'emergency'
    THEN 'ED' WHEN 'inpatient' THEN 'IPD' ELSE 'OPD' END) AS department FROM entry e JOIN encounter_status_change d ON
    d.entry_id = e.id JOIN encounter n ON n.id = d.encounter_id WHERE e.kind = 'encounter_status' AND e.id =
    ANY(p_roots) AND d.to_status = 'finished' UNION ALL SELECT e.id AS root_id, e.id AS entry_id, e.kind,
    e.patient_id, e.occurred_at, (SELECT i.drug FROM pharmacy_item i WHERE i.id = d.item_id) || ' (dispensed)' AS
    what, 'PHARMACY' AS department FROM entry e JOIN dispense d ON d.entry_id = e.id WHERE e.kind = 'dispense' AND
    e.id = e.root_id AND e.id = ANY(p_roots) AND NOT EXISTS (SELECT 1 FROM entry x WHERE x.supersedes = e.id) AND
    d.quantity > (SELECT COALESCE(sum(r.quantity), 0) FROM dispense_return r WHERE r.dispense_id = e.id) UNION ALL
    SELECT e.id AS root_id, cur.id AS entry_id, e.kind, e.patient_id, e.occurred_at, (SELECT i.drug FROM pharmacy_item
    i WHERE i.id = d.item_id) || ' (dispensed)' AS what, 'PHARMACY' AS department FROM entry e JOIN entry cur ON
    cur.root_id = e.id AND cur.id <> e.id JOIN dispense d ON d.entry_id = cur.id WHERE e.kind = 'dispense' AND e.id =
    e.root_id AND e.id = ANY(p_roots) AND EXISTS (SELECT 1 FROM entry x WHERE x.supersedes = e.id) AND NOT EXISTS
    (SELECT 1 FROM entry x WHERE x.supersedes = cur.id) AND cur.status <> 'entered_in_error' AND d.quantity > (SELECT
    COALESCE(sum(r.quantity), 0) FROM dispense_return r WHERE r.dispense_id = e.id) UNION ALL SELECT e.id AS root_id,
    e.entry_id, e.kind, e.patient_id, e.occurred_at, e.what, 'THEATRE' AS department FROM (SELECT cur.root_id AS id,
    cur.id AS entry_id, cur.kind, cur.patient_id, d.ended_at AS occurred_at, d.procedure AS what FROM entry cur JOIN
    surgery d ON d.entry_id = cur.id WHERE cur.kind = 'surgery' AND d.status = 'completed' AND cur.status <>
    'entered_in_error' AND NOT EXISTS (SELECT 1 FROM entry x WHERE x.supersedes = cur.id)) e WHERE e.id = ANY(p_roots)
    UNION ALL SELECT e.id AS root_id, e.id AS entry_id, e.kind, e.patient_id, e.occurred_at,
    'Blood transfusion (unit ' || d.unit_number || ')' AS what, 'BLOOD' AS department FROM entry e JOIN transfusion d
    ON d.entry_id = e.id WHERE e.kind = 'transfusion' AND e.id = e.root_id AND e.id = ANY(p_roots) AND NOT EXISTS
    (SELECT 1 FROM entry x WHERE x.supersedes = e.id) AND TRUE UNION ALL SELECT e.id AS root_id, cur.id AS entry_id,
    e.kind, e.patient_id, e.occurred_at, 'Blood transfusion (unit ' || d.unit_number || ')' AS what, 'BLOOD' AS
    department FROM entry e JOIN entry cur ON cur.root_id = e.id AND cur.id <> e.id JOIN transfusion d ON d.entry_id =
    cur.id WHERE e.kind = 'transfusion' AND e.id = e.root_id AND e.id = ANY(p_roots) AND EXISTS (SELECT 1 FROM entry x
    WHERE x.supersedes = e.id) AND NOT EXISTS (SELECT 1 FROM entry x WHERE x.supersedes = cur.id) AND cur.status <>
    'entered_in_error' AND TRUE), charged AS ( SELECT DISTINCT ON (ch.source_root_id) ch.source_root_id, ce.id AS
    charge_id, ch.status, ch.amount, ch.department AS charge_department, COALESCE(( SELECT min(fe.recorded_at) FROM
    charge f JOIN entry fe ON fe.id = f.entry_id WHERE f.source_root_id = ch.source_root_id AND f.item_kind =
    ch.item_kind AND f.item_code = ch.item_code AND f.service_date = ch.service_date AND f.reverses IS NULL AND
    f.status = 'posted'), ce.recorded_at) AS captured_at, ch.service_date FROM charge ch JOIN entry ce ON ce.id =
    ch.entry_id WHERE ch.source_root_id = ANY(p_roots) AND ch.reverses IS NULL AND NOT EXISTS (SELECT 1 FROM entry s
    WHERE s.supersedes = ce.id) AND NOT EXISTS (SELECT 1 FROM charge cr WHERE cr.reverses = ce.root_id) ORDER BY
    ch.source_root_id, ce.recorded_at DESC ) , kept AS ( INSERT INTO charge_capture (root_id, entry_id, kind,
    patient_id, occurred_at, what, department, charge_id, charge_status, charged_at, service_date, care_day,
    charged_day) SELECT b.root_id, b.entry_id, b.kind, b.patient_id, b.occurred_at, b.what,
    COALESCE(c.charge_department, b.department), c.charge_id, c.status, c.captured_at, c.service_date, (b.occurred_at
    AT TIME ZONE z.tz)::date, (c.captured_at AT TIME ZONE z.tz)::date FROM billable b LEFT JOIN charged c ON
    c.source_root_id = b.root_id CROSS JOIN (SELECT COALESCE((SELECT timezone FROM billing_setting WHERE id = 1),
    'UTC') AS tz) z ON CONFLICT (root_id) DO UPDATE SET entry_id = excluded.entry_id, kind = excluded.kind, patient_id
    = excluded.patient_id, occurred_at = excluded.occurred_at, what = excluded.what, department = excluded.department,
    charge_id = excluded.charge_id, charge_status = excluded.charge_status, charged_at = excluded.charged_at,
    service_date = excluded.service_date, care_day = excluded.care_day, charged_day = excluded.charged_day RETURNING
    root_id ) DELETE FROM charge_capture WHERE root_id = ANY(p_roots) AND root_id NOT IN (SELECT root_id FROM kept)
"""
# t0042 (landed, so never edited) gives the body the downgrade puts back and the way a body is installed.
_T0042 = importlib.import_module("appliance.substrate.migrations.tenant.versions.t0042_blood_bank_follow_ups")
PREVIOUS_BODY = _T0042.REFRESH_BODY
_install = _T0042._install  # CREATE OR REPLACE: t0008's owner and grants kept, its settings restated

KINDS = "'received', 'adjusted', 'dispensed', 'reversed'"


def upgrade() -> None:
    op.create_table(
        "dispense_return",
        sa.Column("entry_id", sa.Uuid(), sa.ForeignKey("entry.id"), primary_key=True),
        sa.Column("dispense_id", sa.Uuid(), sa.ForeignKey("entry.id"), nullable=False),
        sa.Column("item_id", sa.Uuid(), sa.ForeignKey("pharmacy_item.id"), nullable=False),
        sa.Column("batch", sa.Text(), nullable=False),
        sa.Column("quantity", sa.Numeric(), nullable=False),
        sa.Column("unit", sa.Text(), nullable=False),
        sa.Column("condition", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.CheckConstraint("quantity > 0", name="dispense_return_quantity_positive"),
        sa.CheckConstraint("condition IN ('fit', 'not_fit')", name="dispense_return_condition_known"),
    )
    op.create_index("dispense_return_dispense_idx", "dispense_return", ["dispense_id"])
    # Appended and read, never rewritten or removed by the tenant role (as t0022 made the ledger and dispenses).
    op.execute(sa.text(
        """
        DO $$
        BEGIN
            IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = current_schema()) THEN
                EXECUTE format('REVOKE UPDATE, DELETE, TRUNCATE ON dispense_return FROM %I', current_schema());
            END IF;
        END $$
        """
    ))
    op.drop_constraint("stock_movement_kind_known", "stock_movement", type_="check")
    op.create_check_constraint("stock_movement_kind_known", "stock_movement",
                               f"kind IN ({KINDS}, 'returned', 'quarantined')")
    op.create_check_constraint("stock_movement_returned_names_its_dispense", "stock_movement",
                               "kind <> 'returned' OR (quantity > 0 AND dispense_entry_id IS NOT NULL)")
    op.create_check_constraint("stock_movement_quarantined_names_its_dispense", "stock_movement",
                               "kind <> 'quarantined' OR (quantity < 0 AND dispense_entry_id IS NOT NULL)")
    _install(REFRESH_BODY)


def downgrade() -> None:
    op.execute("""
        DO $refuse$ BEGIN
            IF EXISTS (SELECT 1 FROM dispense_return) THEN
                RAISE EXCEPTION 'the pharmacy holds medicine patients brought back, which t0046 cannot hold';
            END IF;
        END $refuse$
    """)
    _install(PREVIOUS_BODY)
    op.drop_constraint("stock_movement_quarantined_names_its_dispense", "stock_movement", type_="check")
    op.drop_constraint("stock_movement_returned_names_its_dispense", "stock_movement", type_="check")
    op.drop_constraint("stock_movement_kind_known", "stock_movement", type_="check")
    op.create_check_constraint("stock_movement_kind_known", "stock_movement", f"kind IN ({KINDS})")
    op.drop_table("dispense_return")
