"""The tuberculosis treatment register (appliance/layers/clinical/tuberculosis.py): `tb_treatment`, the detail of
the clinical layer's `tb_treatment` entries, one TB case registered on treatment at the facility (its register
number, the day treatment started, the WHO classification by site, bacteriological status and history of
previous treatment, the regimen, HIV status and weight at start) and, as later versions of the same record, its
treatment outcome and day; `tb_follow_up`, the detail of `tb_follow_up` entries, a monitoring examination in a
month of treatment (sputum smear, culture, Xpert, weight), naming the treatment's record; and
`tb_register_sequence`, the last register number given in each year, so that two registrations at once never
take the same number. Before this the appliance counted TB diagnoses (ICD-10 A15-A19) and nothing a TB
programme reports: no register, no follow-up, no outcome, no cohort. Detail tables are appended and never
rewritten, like every detail table; a correction supersedes the entry.

Revision ID: t0034
Revises: t0033
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "t0034"
down_revision = "t0033"
branch_labels = None
depends_on = None

_OUTCOMES = ("cured", "treatment_completed", "treatment_failed", "died", "lost_to_follow_up", "not_evaluated")
_HISTORIES = ("new", "relapse", "after_failure", "after_loss_to_follow_up", "other_previously_treated", "unknown")


def upgrade() -> None:
    op.create_table(
        "tb_treatment",
        sa.Column("entry_id", sa.Uuid(), sa.ForeignKey("entry.id"), primary_key=True),
        sa.Column("register_number", sa.Text(), nullable=False),
        sa.Column("register_year", sa.SmallInteger(), nullable=False),
        sa.Column("started_on", sa.Date(), nullable=False),
        sa.Column("site", sa.Text(), nullable=False),
        sa.Column("bacteriology", sa.Text(), nullable=False),
        sa.Column("history", sa.Text(), nullable=False),
        sa.Column("regimen", sa.Text(), nullable=False),
        sa.Column("hiv_status", sa.Text(), nullable=False),
        sa.Column("weight_kg", sa.Numeric(5, 1), nullable=False),
        sa.Column("outcome", sa.Text(), nullable=True),
        sa.Column("outcome_on", sa.Date(), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.CheckConstraint("site IN ('pulmonary', 'extrapulmonary')", name="tb_treatment_site"),
        sa.CheckConstraint("bacteriology IN ('bacteriologically_confirmed', 'clinically_diagnosed')",
                           name="tb_treatment_bacteriology"),
        sa.CheckConstraint(f"history IN {_HISTORIES!r}", name="tb_treatment_history"),
        sa.CheckConstraint("hiv_status IN ('positive', 'negative', 'unknown')", name="tb_treatment_hiv_status"),
        sa.CheckConstraint(f"outcome IN {_OUTCOMES!r}", name="tb_treatment_outcome"),
        sa.CheckConstraint("(outcome IS NULL) = (outcome_on IS NULL)", name="tb_treatment_outcome_on"),
        sa.CheckConstraint("weight_kg > 0 AND weight_kg < 400", name="tb_treatment_weight_range"),
    )
    # The register of a year and the quarterly cohorts read by the day treatment started.
    op.create_index("tb_treatment_started_on_idx", "tb_treatment", ["started_on"])
    op.create_table(
        "tb_follow_up",
        sa.Column("entry_id", sa.Uuid(), sa.ForeignKey("entry.id"), primary_key=True),
        sa.Column("treatment_id", sa.Uuid(), nullable=False),  # the tb_treatment record's root entry
        sa.Column("month", sa.SmallInteger(), nullable=False),
        sa.Column("examined_on", sa.Date(), nullable=False),
        sa.Column("smear", sa.Text(), nullable=False),
        sa.Column("culture", sa.Text(), nullable=False),
        sa.Column("xpert", sa.Text(), nullable=False),
        sa.Column("weight_kg", sa.Numeric(5, 1), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.CheckConstraint("month BETWEEN 0 AND 24", name="tb_follow_up_month_range"),
        sa.CheckConstraint("smear IN ('negative', 'positive', 'not_done')", name="tb_follow_up_smear"),
        sa.CheckConstraint("culture IN ('negative', 'positive', 'not_done')", name="tb_follow_up_culture"),
        sa.CheckConstraint("xpert IN ('mtb_not_detected', 'mtb_detected', 'not_done')", name="tb_follow_up_xpert"),
        sa.CheckConstraint("weight_kg > 0 AND weight_kg < 400", name="tb_follow_up_weight_range"),
    )
    op.create_index("tb_follow_up_treatment_idx", "tb_follow_up", ["treatment_id"])
    op.create_table(
        "tb_register_sequence",
        sa.Column("year", sa.SmallInteger(), primary_key=True),
        sa.Column("last_number", sa.Integer(), nullable=False),
        sa.CheckConstraint("last_number >= 1", name="tb_register_sequence_positive"),
    )
    # The details are part of the record: the tenant role appends and reads them, never rewrites or removes them.
    # The sequence is the register's counter, which the tenant role moves on (never back: no DELETE).
    op.execute(sa.text(
        """
        DO $$
        BEGIN
            IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = current_schema()) THEN
                EXECUTE format('REVOKE UPDATE, DELETE, TRUNCATE ON tb_treatment FROM %I', current_schema());
                EXECUTE format('REVOKE UPDATE, DELETE, TRUNCATE ON tb_follow_up FROM %I', current_schema());
                EXECUTE format('REVOKE DELETE, TRUNCATE ON tb_register_sequence FROM %I', current_schema());
            END IF;
        END $$
        """
    ))


def downgrade() -> None:
    op.drop_table("tb_register_sequence")
    op.drop_table("tb_follow_up")
    op.drop_table("tb_treatment")
