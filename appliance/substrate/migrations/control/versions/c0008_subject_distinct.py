"""Pairs of subjects a person has reviewed and judged to be two people, not one registered twice: the
master patient index's review of likely duplicates (`identity.likely_duplicates`) leaves them out, so
a pair dismissed once does not come back on every page. Kept apart from `subject_merge`, whose rows are
merges (each points a merged subject at its survivor); the audit trail has the decision too, but
encrypted, which a listing cannot ask. One row per pair, the smaller id first, so (a, b) and (b, a)
cannot both be recorded.

Revision ID: c0008
Revises: c0007
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "c0008"
down_revision = "c0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "subject_distinct",
        sa.Column("first_id", sa.Uuid(), sa.ForeignKey("control.subject.id"), primary_key=True),
        sa.Column("second_id", sa.Uuid(), sa.ForeignKey("control.subject.id"), primary_key=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("decided_by", sa.Uuid(), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint("first_id < second_id", name="subject_distinct_ordered"),
        schema="control",
    )


def downgrade() -> None:
    op.drop_table("subject_distinct", schema="control")
