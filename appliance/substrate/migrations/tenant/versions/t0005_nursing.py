"""The nursing layer's tables: NEWS2, medication administration, nursing tasks, care plans and handover (nursing layer).

Revision ID: t0005
Revises: t0004
Create Date: 2026-11-26

The clinical layer's `vital_signs` gains what NEWS2 scores beyond its first columns: consciousness
(ACVPU), supplemental oxygen (and its flow) and the SpO2 scale in use. The nursing kinds' detail tables
are append-only like the clinical ones: the tenant role keeps SELECT and INSERT only.
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "t0005"
down_revision = "t0004"
branch_labels = None
depends_on = None

JSONB = postgresql.JSONB
APPEND_ONLY = ("news2", "medication_administration", "nursing_task", "care_plan", "handover")


def _entry_key() -> sa.Column:
    return sa.Column("entry_id", sa.Uuid(), sa.ForeignKey("entry.id"), primary_key=True)


def upgrade() -> None:
    op.add_column("vital_signs", sa.Column("consciousness", sa.Text(), nullable=True))
    op.add_column("vital_signs", sa.Column("supplemental_oxygen", sa.Boolean(), nullable=True))
    op.add_column("vital_signs", sa.Column("oxygen_l_min", sa.Numeric(4, 1), nullable=True))
    op.add_column("vital_signs", sa.Column("spo2_scale", sa.SmallInteger(), nullable=True))
    op.create_check_constraint("vital_signs_consciousness_acvpu", "vital_signs",
                               "consciousness IN ('A', 'C', 'V', 'P', 'U')")
    op.create_check_constraint("vital_signs_spo2_scale_known", "vital_signs", "spo2_scale IN (1, 2)")

    op.create_table(
        "news2",
        _entry_key(),
        sa.Column("vital_signs_id", sa.Uuid(), nullable=False),
        sa.Column("total", sa.SmallInteger(), nullable=False),
        sa.Column("scores", JSONB(), nullable=False),
        sa.Column("missing", JSONB(), nullable=False),
        sa.Column("spo2_scale", sa.SmallInteger(), nullable=False),
        sa.Column("risk", sa.Text(), nullable=False),
        sa.Column("next_due_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("total BETWEEN 0 AND 20", name="news2_total_range"),
        sa.CheckConstraint("risk IN ('low', 'low_medium', 'medium', 'high')", name="news2_risk_known"),
    )
    op.create_index("news2_vital_signs_idx", "news2", ["vital_signs_id"])

    op.create_table(
        "medication_administration",
        _entry_key(),
        sa.Column("medication_request_id", sa.Uuid(), nullable=False),
        sa.Column("scheduled_for", sa.DateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("administered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("drug", sa.Text(), nullable=False),
        sa.Column("dose", sa.Numeric(), nullable=True),
        sa.Column("dose_unit", sa.Text(), nullable=True),
        sa.Column("route", sa.Text(), nullable=True),
        sa.Column("minutes_late", sa.Integer(), nullable=True),
        sa.CheckConstraint("outcome IN ('given', 'held', 'refused', 'missed')", name="administration_outcome_known"),
        sa.CheckConstraint("outcome = 'given' OR reason IS NOT NULL", name="administration_not_given_has_reason"),
        sa.CheckConstraint("(outcome = 'given') = (administered_at IS NOT NULL)",
                           name="administration_given_has_time"),
    )
    op.create_index("medication_administration_request_idx", "medication_administration",
                    ["medication_request_id", "scheduled_for"])

    op.create_table(
        "nursing_task",
        _entry_key(),
        sa.Column("code", sa.Text(), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("ward_code", sa.Text(), nullable=True),
        sa.Column("source_id", sa.Uuid(), nullable=True),
        sa.Column("source_kind", sa.Text(), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.CheckConstraint("status IN ('open', 'done', 'cancelled')", name="nursing_task_status_known"),
    )
    op.create_index("nursing_task_source_idx", "nursing_task", ["source_id"])
    op.create_index("nursing_task_ward_idx", "nursing_task", ["ward_code", "status"])

    op.create_table(
        "care_plan",
        _entry_key(),
        sa.Column("problem", sa.Text(), nullable=False),
        sa.Column("goal", sa.Text(), nullable=False),
        sa.Column("interventions", JSONB(), nullable=False),
        sa.Column("evaluation", sa.Text(), nullable=True),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("review_due", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("status IN ('active', 'achieved', 'discontinued')", name="care_plan_status_known"),
    )

    op.create_table(
        "handover",
        _entry_key(),
        sa.Column("ward_code", sa.Text(), nullable=False),
        sa.Column("shift_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("shift_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("summary", JSONB(), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.CheckConstraint("shift_end > shift_start", name="handover_shift_order"),
    )
    op.create_index("handover_ward_idx", "handover", ["ward_code", "shift_end"])

    # Append-only for the tenant role, as the record's other detail tables (see t0002).
    tables = ", ".join(f"'{name}'" for name in APPEND_ONLY)
    op.execute(sa.text(
        f"""
        DO $$
        DECLARE
            append_only text;
        BEGIN
            IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = current_schema()) THEN
                FOREACH append_only IN ARRAY ARRAY[{tables}] LOOP
                    EXECUTE format('REVOKE UPDATE, DELETE, TRUNCATE ON %I FROM %I', append_only, current_schema());
                END LOOP;
            END IF;
        END $$
        """  # noqa: S608 -- table names are the constants above
    ))


def downgrade() -> None:
    for name in reversed(APPEND_ONLY):
        op.drop_table(name)
    op.drop_constraint("vital_signs_spo2_scale_known", "vital_signs")
    op.drop_constraint("vital_signs_consciousness_acvpu", "vital_signs")
    for column in ("spo2_scale", "oxygen_l_min", "supplemental_oxygen", "consciousness"):
        op.drop_column("vital_signs", column)
