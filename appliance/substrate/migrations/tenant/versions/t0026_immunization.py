"""`immunization`, the detail of the clinical layer's `immunization` entries (appliance/layers/clinical/models.py,
appliance/layers/clinical/immunization.py): one dose of a vaccine given to a patient here, or recorded from
the child's card or another facility ("historical"), or one that was due and not given, and why. The entry's
time is the day of the dose; its author who gave or recorded it. The vaccine is a code of the schedule
(policies/immunization.toml), the dose its place in that vaccine's series (none: a campaign or extra dose).
Nothing in the record held a vaccine before: the national immunization programme, the first thing a
ministry runs, had nothing to count and a vaccinator no list to trace defaulters from. Appended and never
rewritten, like every detail table; a correction supersedes the entry.

Revision ID: t0026
Revises: t0025
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "t0026"
down_revision = "t0025"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "immunization",
        sa.Column("entry_id", sa.Uuid(), sa.ForeignKey("entry.id"), primary_key=True),
        sa.Column("vaccine", sa.Text(), nullable=False),
        sa.Column("dose_number", sa.SmallInteger(), nullable=True),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("not_done_reason", sa.Text(), nullable=True),
        sa.Column("lot_number", sa.Text(), nullable=True),
        sa.Column("expiry_date", sa.Date(), nullable=True),
        sa.Column("site", sa.Text(), nullable=True),
        sa.Column("route", sa.Text(), nullable=True),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.CheckConstraint("status IN ('completed', 'not_done')", name="immunization_status"),
        sa.CheckConstraint("(status = 'not_done') = (not_done_reason IS NOT NULL)",
                           name="immunization_not_done_reason"),
        sa.CheckConstraint("source IN ('administered', 'historical')", name="immunization_source"),
        sa.CheckConstraint("dose_number >= 1", name="immunization_dose_number_positive"),
    )
    # The national coverage count (doses of a vaccine's series given in a period) reads by vaccine and dose.
    op.create_index("immunization_vaccine_dose_idx", "immunization", ["vaccine", "dose_number"])
    # Part of the record: the tenant role appends and reads it, never rewrites or removes it.
    op.execute(sa.text(
        """
        DO $$
        BEGIN
            IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = current_schema()) THEN
                EXECUTE format('REVOKE UPDATE, DELETE, TRUNCATE ON immunization FROM %I', current_schema());
            END IF;
        END $$
        """
    ))


def downgrade() -> None:
    op.drop_table("immunization")
