"""`medication_reconciliation`, the detail of the clinical layer's `medication_reconciliation` entries
(appliance/layers/clinical/reconciliation.py): on admission, the admitting clinician's decision on one
medicine the patient came in on (a prescription written before the stay): continue it in hospital (a new
prescription of the stay, named in `continued_as`), stop it, or hold it (off the ward's medication
administration record, kept for discharge). The entry is on the stay's inpatient encounter. Appended and
never rewritten, like every detail table: a held medicine decided again later is a new version.

Revision ID: t0019
Revises: t0018
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "t0019"
down_revision = "t0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "medication_reconciliation",
        sa.Column("entry_id", sa.Uuid(), sa.ForeignKey("entry.id"), primary_key=True),
        sa.Column("medication_request_id", sa.Uuid(), nullable=False),
        sa.Column("decision", sa.Text(), nullable=False),
        sa.Column("continued_as", sa.Uuid(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.CheckConstraint("decision IN ('continue', 'stop', 'hold')", name="medication_reconciliation_decision"),
        sa.CheckConstraint("(decision = 'continue') = (continued_as IS NOT NULL)",
                           name="medication_reconciliation_continued_as"),
    )
    op.create_index("medication_reconciliation_request_idx", "medication_reconciliation", ["medication_request_id"])
    # Part of the record: the tenant role appends and reads it, never rewrites or removes it.
    op.execute(sa.text(
        """
        DO $$
        BEGIN
            IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = current_schema()) THEN
                EXECUTE format('REVOKE UPDATE, DELETE, TRUNCATE ON medication_reconciliation FROM %I',
                               current_schema());
            END IF;
        END $$
        """
    ))


def downgrade() -> None:
    op.drop_table("medication_reconciliation")
