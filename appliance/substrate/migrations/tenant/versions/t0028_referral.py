"""`referral`, the detail of the clinical layer's `referral` entries (appliance/layers/clinical/models.py,
appliance/layers/clinical/referral.py): a patient referred from this facility to another of the appliance.
Until now the letter went on paper and the receiving facility did not know the patient was coming. The entry is
the referring facility's record of the act: to which facility (and clinic), how urgent, why, and the letter as
sent (the clinician's summary and the items of the chart chosen to go with it, copied at sending). What the
receiving facility does with it (accepted, declined, the feedback) is the exchange's, control revision c0011,
whose row `referral_id` names. Appended and never rewritten, like every detail table.

Revision ID: t0028
Revises: t0027
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "t0028"
down_revision = "t0027"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "referral",
        sa.Column("entry_id", sa.Uuid(), sa.ForeignKey("entry.id"), primary_key=True),
        sa.Column("referral_id", sa.Uuid(), nullable=False, unique=True),
        sa.Column("to_tenant", sa.Text(), nullable=False),
        sa.Column("to_facility", sa.Text(), nullable=False),
        sa.Column("clinic", sa.Text(), nullable=True),
        sa.Column("urgency", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("items", postgresql.JSONB(), nullable=False),
        sa.CheckConstraint("urgency IN ('routine', 'urgent', 'emergency')", name="referral_urgency"),
    )
    # Part of the record: the tenant role appends and reads it, never rewrites or removes it.
    op.execute(sa.text(
        """
        DO $$
        BEGIN
            IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = current_schema()) THEN
                EXECUTE format('REVOKE UPDATE, DELETE, TRUNCATE ON referral FROM %I', current_schema());
            END IF;
        END $$
        """
    ))


def downgrade() -> None:
    op.drop_table("referral")
