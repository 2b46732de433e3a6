"""An appointment checked in opens the patient's outpatient visit: `appointment.encounter_id` names the
encounter the check-in opened (or found already open), so the clinic list links to the visit, the
clinician has the care relationship the visit gives, and the visit's end bills the consultation.

Appointments checked in before this revision opened no visit; they keep no encounter.

Revision ID: t0010
Revises: t0009
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "t0010"
down_revision = "t0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("appointment", sa.Column("encounter_id", sa.Uuid, sa.ForeignKey("encounter.id"), nullable=True))


def downgrade() -> None:
    op.drop_column("appointment", "encounter_id")
