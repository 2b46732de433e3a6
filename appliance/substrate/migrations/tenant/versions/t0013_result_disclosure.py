"""`result_disclosure`, the detail of the clinical layer's `result_disclosure` entries
(appliance/layers/clinical/models.py): a clinician recording that a reviewed result the release rules
give only in person (an HIV test, a viral load) was given to the patient, after which the patient
portal shows it. Appended and never rewritten, like every detail table; one in force per result version
(a disclosure marked entered in error may be recorded again, so the index is not unique).

Revision ID: t0013
Revises: t0012
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "t0013"
down_revision = "t0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "result_disclosure",
        sa.Column("entry_id", sa.Uuid(), sa.ForeignKey("entry.id"), primary_key=True),
        sa.Column("result_id", sa.Uuid(), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
    )
    op.create_index("result_disclosure_result_idx", "result_disclosure", ["result_id"])
    # Part of the record: the tenant role appends and reads it, never rewrites or removes it.
    op.execute(sa.text(
        """
        DO $$
        BEGIN
            IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = current_schema()) THEN
                EXECUTE format('REVOKE UPDATE, DELETE, TRUNCATE ON result_disclosure FROM %I', current_schema());
            END IF;
        END $$
        """
    ))


def downgrade() -> None:
    op.drop_table("result_disclosure")
