"""Backup runs: each `healthos backup create`, made or failed, so the operator's console and `healthos
backup list` can say when the last good backup was made and why the last attempt failed. The audit log
holds the same acts as `backup.export` events; this table is what the console reads without decrypting
it. Rows are only ever added.

Revision ID: c0004
Revises: c0003
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "c0004"
down_revision = "c0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "backup_run",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), primary_key=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("outcome", sa.Text(), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("bytes", sa.BigInteger()),
        sa.Column("facilities", sa.Integer()),
        sa.Column("rows", sa.BigInteger()),
        sa.Column("error", sa.Text()),
        sa.CheckConstraint("outcome IN ('success', 'failure')", name="backup_run_outcome_known"),
        sa.CheckConstraint("(outcome = 'success') = (error IS NULL)", name="backup_run_failure_says_why"),
        schema="control",
    )
    op.create_index("backup_run_finished_idx", "backup_run", ["finished_at"], schema="control")


def downgrade() -> None:
    op.drop_table("backup_run", schema="control")
