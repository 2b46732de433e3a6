"""The paediatric early warning score: a `pews` entry scores a set of vital signs of a child under 16, for
whom NEWS2 is not validated (nursing layer, `appliance/layers/nursing/pews.py`).

The Bedside PEWS: a total over the items the record holds, the age band the child was in when the set was
taken, and whether the total reached the chart's alerting threshold. Append-only like the layer's other
detail tables: the tenant role keeps SELECT and INSERT only. Sets recorded before this revision for children
stay unscored; the next set is scored.

Revision ID: t0017
Revises: t0016
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "t0017"
down_revision = "t0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pews",
        sa.Column("entry_id", sa.Uuid(), sa.ForeignKey("entry.id"), primary_key=True),
        sa.Column("vital_signs_id", sa.Uuid(), nullable=False),
        sa.Column("age_band", sa.Text(), nullable=False),
        sa.Column("total", sa.SmallInteger(), nullable=False),
        sa.Column("scores", postgresql.JSONB(), nullable=False),
        sa.Column("missing", postgresql.JSONB(), nullable=False),
        sa.Column("risk", sa.Text(), nullable=False),
        sa.Column("next_due_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("risk IN ('low', 'triggered')", name="pews_risk_known"),
        sa.CheckConstraint("total BETWEEN 0 AND 26", name="pews_total_in_range"),
    )
    op.create_index("pews_vital_signs_idx", "pews", ["vital_signs_id"])
    # Append-only for the tenant role, as the record's other detail tables (see t0002, t0005, t0011).
    op.execute(sa.text(
        """
        DO $$
        BEGIN
            IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = current_schema()) THEN
                EXECUTE format('REVOKE UPDATE, DELETE, TRUNCATE ON pews FROM %I', current_schema());
            END IF;
        END $$
        """
    ))


def downgrade() -> None:
    op.drop_table("pews")
