"""The expected discharge date of an admission (operations layer, appliance/layers/operations/discharge_plan.py).

- `expected_discharge`: the detail of the operations layer's `expected_discharge` entries (patient data): the
  inpatient encounter, the day the ward expects the patient to go home and, optionally, what that waits on. A change
  is a new entry superseding the last (the record's chain), so the history says who expected which day, when;
  appended and never rewritten, like every detail table.
- `inpatient_stay` (the projection the bed board reads) keeps the current date and the entry that set it
  (`expected_discharge_on`, `expected_discharge_entry_id`), written in the same transaction as the entry; an open stay's
  date is indexed by ward, which the command centre's counts of who is expected home today, tomorrow and overdue read.
  No stay has one before this revision, so nothing needs filling in.

The downgrade refuses a schema holding expected discharge dates, rather than lose them.

Revision ID: t0049
Revises: t0048
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "t0049"
down_revision = "t0048"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "expected_discharge",
        sa.Column("entry_id", sa.Uuid(), sa.ForeignKey("entry.id"), primary_key=True),
        sa.Column("encounter_id", sa.Uuid(), nullable=False),
        sa.Column("expected_on", sa.Date(), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
    )
    # Appended and read, never rewritten or removed by the tenant role (as every detail table of the record).
    op.execute(sa.text(
        """
        DO $$
        BEGIN
            IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = current_schema()) THEN
                EXECUTE format('REVOKE UPDATE, DELETE, TRUNCATE ON expected_discharge FROM %I', current_schema());
            END IF;
        END $$
        """
    ))
    op.add_column("inpatient_stay", sa.Column("expected_discharge_on", sa.Date(), nullable=True))
    op.add_column("inpatient_stay", sa.Column("expected_discharge_entry_id", sa.Uuid(), nullable=True))
    op.create_index("inpatient_stay_open_expected_idx", "inpatient_stay", ["ward_code", "expected_discharge_on"],
                    postgresql_where=sa.text("discharged_at IS NULL"))


def downgrade() -> None:
    op.execute("""
        DO $refuse$ BEGIN
            IF EXISTS (SELECT 1 FROM expected_discharge) THEN
                RAISE EXCEPTION 'admissions here hold expected discharge dates, which t0047 cannot hold';
            END IF;
        END $refuse$
    """)
    op.drop_index("inpatient_stay_open_expected_idx", table_name="inpatient_stay")
    op.drop_column("inpatient_stay", "expected_discharge_entry_id")
    op.drop_column("inpatient_stay", "expected_discharge_on")
    op.drop_table("expected_discharge")
