"""`death`, the detail of the clinical layer's `death` entries (appliance/layers/clinical/models.py,
appliance/layers/clinical/death.py): a death certificate on the WHO international form of medical certificate
of cause of death, its entry's author the certifier. Until now a death was only a discharge disposition
`died`: no cause, no time, nothing a ministry could count by cause, and nothing to stop another facility
opening a visit for the person. Part 1 (lines a-d, each an ICD-10 code and the interval from onset to death)
and Part 2 are JSON lists; the underlying cause as certified (the lowest used line of Part 1) is a column of
its own, which is what mortality by cause counts. Appended and never rewritten, like every detail table; a
correction supersedes the entry. That the person is deceased at every facility is control revision c0010.

Revision ID: t0027
Revises: t0026
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "t0027"
down_revision = "t0026"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "death",
        sa.Column("entry_id", sa.Uuid(), sa.ForeignKey("entry.id"), primary_key=True),
        sa.Column("died_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("place", sa.Text(), nullable=False),
        sa.Column("place_other", sa.Text(), nullable=True),
        sa.Column("part1", postgresql.JSONB(), nullable=False),
        sa.Column("part2", postgresql.JSONB(), nullable=False),
        sa.Column("underlying_code", sa.Text(), nullable=False),
        sa.Column("underlying_display", sa.Text(), nullable=False),
        sa.Column("manner", sa.Text(), nullable=False),
        sa.Column("pregnancy", sa.Text(), nullable=True),
        sa.CheckConstraint("place IN ('this_facility', 'home', 'other', 'en_route')", name="death_place"),
        sa.CheckConstraint("manner IN ('disease', 'accident', 'intentional_self_harm', 'assault', "
                           "'legal_intervention', 'war', 'pending_investigation', 'could_not_be_determined')",
                           name="death_manner"),
        sa.CheckConstraint("pregnancy IN ('not_pregnant', 'pregnant', 'within_42_days', '43_days_to_1_year', "
                           "'unknown')", name="death_pregnancy"),
    )
    # Part of the record: the tenant role appends and reads it, never rewrites or removes it.
    op.execute(sa.text(
        """
        DO $$
        BEGIN
            IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = current_schema()) THEN
                EXECUTE format('REVOKE UPDATE, DELETE, TRUNCATE ON death FROM %I', current_schema());
            END IF;
        END $$
        """
    ))


def downgrade() -> None:
    op.drop_table("death")
