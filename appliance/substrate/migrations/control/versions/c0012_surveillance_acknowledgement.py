"""`control.surveillance_acknowledgement`: a ministry analyst's acknowledgement of a notifiable-disease alert
(appliance/national/surveillance.py), with their note.

An alert is computed when the ministry's page is read, from the facilities' diagnoses; it has no row of its own.
What must be kept is that someone at the ministry saw it and what they did about it: one row per alert (the
facility, the disease and the ISO week it is counted in), the cases it had when acknowledged (an alert whose
cases have grown since is open again), who acknowledged it, when, and the note. A second acknowledgement of the
same alert replaces the row; each one is also in the appliance's audit log.

Revision ID: c0012
Revises: c0011
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "c0012"
down_revision = "c0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "surveillance_acknowledgement",
        sa.Column("tenant", sa.Text(), primary_key=True),
        sa.Column("disease", sa.Text(), primary_key=True),
        sa.Column("week", sa.Text(), primary_key=True),
        sa.Column("cases", sa.Integer(), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("acknowledged_by", sa.Uuid(), sa.ForeignKey("control.account.id"), nullable=False),
        sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("week ~ '^[0-9]{4}-W[0-9]{2}$'", name="surveillance_acknowledgement_week_is_iso"),
        sa.CheckConstraint("cases > 0", name="surveillance_acknowledgement_has_cases"),
        sa.CheckConstraint("length(btrim(note)) > 0", name="surveillance_acknowledgement_has_a_note"),
        schema="control",
    )


def downgrade() -> None:
    op.drop_table("surveillance_acknowledgement", schema="control")
