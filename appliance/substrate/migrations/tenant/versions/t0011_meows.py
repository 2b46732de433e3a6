"""The maternity early warning score: a `meows` entry scores a set of vital signs of a woman in pregnancy
or the puerperium, where NEWS2 is not used (nursing layer).

Append-only like the layer's other detail tables: the tenant role keeps SELECT and INSERT only. Sets
recorded before this revision for such women stay unscored; the next set is scored.

Revision ID: t0011
Revises: t0010
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "t0011"
down_revision = "t0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "meows",
        sa.Column("entry_id", sa.Uuid(), sa.ForeignKey("entry.id"), primary_key=True),
        sa.Column("vital_signs_id", sa.Uuid(), nullable=False),
        sa.Column("triggers", postgresql.JSONB(), nullable=False),
        sa.Column("missing", postgresql.JSONB(), nullable=False),
        sa.Column("risk", sa.Text(), nullable=False),
        sa.Column("next_due_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("risk IN ('clear', 'yellow', 'triggered')", name="meows_risk_known"),
    )
    op.create_index("meows_vital_signs_idx", "meows", ["vital_signs_id"])
    # Append-only for the tenant role, as the record's other detail tables (see t0002, t0005).
    op.execute(sa.text(
        """
        DO $$
        BEGIN
            IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = current_schema()) THEN
                EXECUTE format('REVOKE UPDATE, DELETE, TRUNCATE ON meows FROM %I', current_schema());
            END IF;
        END $$
        """
    ))


def downgrade() -> None:
    op.drop_table("meows")
