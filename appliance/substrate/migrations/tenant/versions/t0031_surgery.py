"""The operating theatre (appliance/layers/clinical/surgery.py): `surgery`, the detail of the clinical layer's
`surgery` entries, an operation on the patient's record (booked, in theatre, completed or cancelled, with the WHO
Surgical Safety Checklist's phases as recorded); `operation_note`, the signed note of one operation; and the
facility's `theatre`s and `surgical_procedure` list, synchronised from the tenant file as the catalogue is.
Until now nothing recorded an operation, so nothing charged a procedure either. The detail tables are appended
and never rewritten, like every detail table; a change of state or a correction is a new version.

Revision ID: t0031
Revises: t0030
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "t0031"
down_revision = "t0030"
branch_labels = None
depends_on = None

STATUSES = ("scheduled", "in_theatre", "completed", "cancelled")
URGENCIES = ("elective", "urgent", "emergency")
ANAESTHESIA = ("general", "spinal", "epidural", "regional_block", "local", "sedation")


def upgrade() -> None:
    op.create_table(
        "surgery",
        sa.Column("entry_id", sa.Uuid(), sa.ForeignKey("entry.id"), primary_key=True),
        sa.Column("procedure", sa.Text(), nullable=False),
        sa.Column("procedure_code", sa.Text(), nullable=True),
        sa.Column("planned_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("theatre", sa.Text(), nullable=False),
        sa.Column("surgeon", sa.Text(), nullable=False),
        sa.Column("anaesthetist", sa.Text(), nullable=True),
        sa.Column("urgency", sa.Text(), nullable=False),
        sa.Column("anaesthesia", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("cancel_reason", sa.Text(), nullable=True),
        sa.Column("checklist", postgresql.JSONB(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(f"status IN {STATUSES!r}", name="surgery_status"),
        sa.CheckConstraint(f"urgency IN {URGENCIES!r}", name="surgery_urgency"),
        sa.CheckConstraint(f"anaesthesia IN {ANAESTHESIA!r}", name="surgery_anaesthesia"),
        sa.CheckConstraint("status <> 'cancelled' OR cancel_reason IS NOT NULL", name="surgery_cancel_reason"),
    )
    op.create_index("surgery_planned_at_idx", "surgery", ["planned_at"])
    op.create_table(
        "operation_note",
        sa.Column("entry_id", sa.Uuid(), sa.ForeignKey("entry.id"), primary_key=True),
        sa.Column("surgery_id", sa.Uuid(), nullable=False),
        sa.Column("procedure_performed", sa.Text(), nullable=False),
        sa.Column("findings", sa.Text(), nullable=False),
        sa.Column("complications", sa.Text(), nullable=True),
        sa.Column("blood_loss_ml", sa.Integer(), nullable=False),
        sa.Column("implants", sa.Text(), nullable=True),
        sa.Column("specimens", sa.Text(), nullable=True),
        sa.Column("post_op_instructions", sa.Text(), nullable=False),
        sa.CheckConstraint("blood_loss_ml BETWEEN 0 AND 20000", name="operation_note_blood_loss_range"),
    )
    op.create_index("operation_note_surgery_idx", "operation_note", ["surgery_id"])
    for table in ("theatre", "surgical_procedure"):
        op.create_table(
            table,
            sa.Column("code", sa.Text(), primary_key=True),
            sa.Column("name", sa.Text(), nullable=False),
            sa.Column("active", sa.Boolean(), nullable=False, server_default=sa.true()),
        )
    # Part of the record: the tenant role appends and reads it, never rewrites or removes it.
    op.execute(sa.text(
        """
        DO $$
        BEGIN
            IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = current_schema()) THEN
                EXECUTE format('REVOKE UPDATE, DELETE, TRUNCATE ON surgery, operation_note FROM %I',
                               current_schema());
            END IF;
        END $$
        """
    ))


def downgrade() -> None:
    for table in ("surgical_procedure", "theatre", "operation_note", "surgery"):
        op.drop_table(table)
