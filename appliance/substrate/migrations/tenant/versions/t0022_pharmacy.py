"""The outpatient pharmacy (operations layer, appliance/layers/operations/pharmacy.py): what it stocks, every
movement of its stock, and what was handed to a patient against a prescription.

- `pharmacy_item`: a medicine the pharmacy keeps, named as prescriptions name it (`drug`), with its form,
  strength and the unit it is counted and dispensed in, and the level below which it is to be reordered.
  Not patient data.
- `stock_movement`: the stock ledger, append-only for the tenant role: goods received (a batch, its expiry
  and the delivery's reference), adjustments (expired, damaged, counted, other: with the reason), and
  dispensings (naming the `dispense` entry). Stock on hand is its sum, per item and per batch.
- `dispense`: the detail of the operations layer's `dispense` entries (patient data): the prescription's
  root id, the item and batch, the quantity and whether the patient is to come back for the rest.
  Appended and never rewritten, like every detail table.

Revision ID: t0022
Revises: t0021
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "t0022"
down_revision = "t0021"
branch_labels = None
depends_on = None

APPEND_ONLY = ("stock_movement", "dispense")


def upgrade() -> None:
    op.create_table(
        "pharmacy_item",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("drug", sa.Text(), nullable=False),
        sa.Column("form", sa.Text(), nullable=False),
        sa.Column("strength", sa.Numeric(), nullable=True),
        sa.Column("strength_unit", sa.Text(), nullable=True),
        sa.Column("unit", sa.Text(), nullable=False),
        sa.Column("reorder_level", sa.Numeric(), nullable=False, server_default="0"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint("reorder_level >= 0", name="pharmacy_item_reorder_level_not_negative"),
        sa.CheckConstraint("(strength IS NULL) = (strength_unit IS NULL)", name="pharmacy_item_strength_with_unit"),
    )
    op.create_index("pharmacy_item_drug_idx", "pharmacy_item", ["drug"])
    op.create_table(
        "stock_movement",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("item_id", sa.Uuid(), sa.ForeignKey("pharmacy_item.id"), nullable=False),
        sa.Column("batch", sa.Text(), nullable=False),
        sa.Column("expires_on", sa.Date(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("quantity", sa.Numeric(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("reference", sa.Text(), nullable=True),
        sa.Column("dispense_entry_id", sa.Uuid(), sa.ForeignKey("entry.id"), nullable=True),
        sa.Column("recorded_by", sa.Uuid(), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint("kind IN ('received', 'adjusted', 'dispensed')", name="stock_movement_kind_known"),
        sa.CheckConstraint("quantity <> 0", name="stock_movement_quantity_not_zero"),
        sa.CheckConstraint("kind <> 'received' OR quantity > 0", name="stock_movement_received_positive"),
        sa.CheckConstraint("kind <> 'dispensed' OR (quantity < 0 AND dispense_entry_id IS NOT NULL)",
                           name="stock_movement_dispensed_names_its_entry"),
        sa.CheckConstraint("kind <> 'adjusted' OR reason IN ('expired', 'damaged', 'counted', 'other')",
                           name="stock_movement_adjustment_reason_known"),
    )
    op.create_index("stock_movement_item_batch_idx", "stock_movement", ["item_id", "batch"])
    op.create_index("stock_movement_recorded_at_idx", "stock_movement", ["recorded_at"])
    op.create_table(
        "dispense",
        sa.Column("entry_id", sa.Uuid(), sa.ForeignKey("entry.id"), primary_key=True),
        sa.Column("medication_request_id", sa.Uuid(), nullable=False),
        sa.Column("item_id", sa.Uuid(), sa.ForeignKey("pharmacy_item.id"), nullable=False),
        sa.Column("batch", sa.Text(), nullable=False),
        sa.Column("quantity", sa.Numeric(), nullable=False),
        sa.Column("unit", sa.Text(), nullable=False),
        sa.Column("partial", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.CheckConstraint("quantity > 0", name="dispense_quantity_positive"),
    )
    op.create_index("dispense_request_idx", "dispense", ["medication_request_id"])
    # The ledger and the record are appended to and read, never rewritten or removed by the tenant role.
    for table in APPEND_ONLY:
        op.execute(sa.text(
            f"""
            DO $$
            BEGIN
                IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = current_schema()) THEN
                    EXECUTE format('REVOKE UPDATE, DELETE, TRUNCATE ON {table} FROM %I', current_schema());
                END IF;
            END $$
            """  # noqa: S608 -- the table names are this module's constants
        ))


def downgrade() -> None:
    op.drop_table("dispense")
    op.drop_table("stock_movement")
    op.drop_table("pharmacy_item")
