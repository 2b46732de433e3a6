"""The duty roster (operations layer, appliance/layers/operations/roster.py): who works which shift on which ward.

- `roster_shift`: the facility's shift patterns from its tenant file (`[roster]`, day 07:00-19:00 and night
  19:00-07:00 by default), each with the most patients one nurse should have on it (the staffing threshold); a shift
  removed from the file is deactivated, not deleted: entries point at it.
- `roster_setting`: one row, the file's rest period between two shifts of one person and how many days back a
  past shift may still be corrected.
- `roster_entry`: one person on one shift of one ward on one date, in a role on that shift (in charge, nurse,
  clinician, student), with the shift's start and end as instants (fixed when written, so a later change of the
  shift pattern does not move a worked shift). The person is named only by their account id: names and roles
  stay in the control schema. Not patient data.
- `roster_withdrawal`: taking an entry off the roster is appended here (who, when, why), never a DELETE, so an
  auditor sees every change; UPDATE and DELETE are revoked from the tenant role on both tables.

Revision ID: t0041
Revises: t0040
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "t0041"
down_revision = "t0040"
branch_labels = None
depends_on = None

ROLES_ON_SHIFT = ("in_charge", "nurse", "clinician", "student")
APPEND_ONLY = ("roster_entry", "roster_withdrawal")


def upgrade() -> None:
    op.create_table(
        "roster_shift",
        sa.Column("code", sa.Text(), primary_key=True),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("starts", sa.Time(), nullable=False),
        sa.Column("ends", sa.Time(), nullable=False),
        sa.Column("patients_per_nurse", sa.SmallInteger(), nullable=False),
        sa.Column("position", sa.SmallInteger(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False, server_default=sa.true()),
        sa.CheckConstraint("patients_per_nurse > 0", name="roster_shift_threshold_positive"),
    )
    op.create_table(
        "roster_setting",
        sa.Column("id", sa.SmallInteger(), primary_key=True),
        sa.Column("min_rest_hours", sa.SmallInteger(), nullable=False),
        sa.Column("correction_days", sa.SmallInteger(), nullable=False),
        sa.CheckConstraint("id = 1", name="roster_setting_one_row"),
    )
    op.create_table(
        "roster_entry",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("ward_code", sa.Text(), sa.ForeignKey("ward.code"), nullable=False),
        sa.Column("shift_date", sa.Date(), nullable=False),
        sa.Column("shift_code", sa.Text(), sa.ForeignKey("roster_shift.code"), nullable=False),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("role_on_shift", sa.Text(), nullable=False),
        sa.Column("added_by", sa.Uuid(), nullable=False),
        sa.Column("added_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint(f"role_on_shift IN ({', '.join(repr(r) for r in ROLES_ON_SHIFT)})",
                           name="roster_entry_role_known"),
        sa.CheckConstraint("ends_at > starts_at", name="roster_entry_ends_after_start"),
    )
    op.create_index("roster_entry_ward_date_idx", "roster_entry", ["ward_code", "shift_date"])
    op.create_index("roster_entry_account_idx", "roster_entry", ["account_id", "starts_at"])
    op.create_table(
        "roster_withdrawal",
        sa.Column("entry_id", sa.Uuid(), sa.ForeignKey("roster_entry.id"), primary_key=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("withdrawn_by", sa.Uuid(), nullable=False),
        sa.Column("withdrawn_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint("length(reason) BETWEEN 1 AND 500", name="roster_withdrawal_reason_given"),
    )
    # The roster's history is appended to and read, never rewritten or removed by the tenant role.
    for table in APPEND_ONLY:
        op.execute(sa.text(
            f"""
            DO $$
            BEGIN
                IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = current_schema()) THEN
                    EXECUTE format('REVOKE UPDATE, DELETE, TRUNCATE ON {table} FROM %I', current_schema());
                END IF;
            END $$
            """  # noqa: S608 -- the table names are this module's constants
        ))


def downgrade() -> None:
    op.drop_table("roster_withdrawal")
    op.drop_table("roster_entry")
    op.drop_table("roster_setting")
    op.drop_table("roster_shift")
