"""HIV care and treatment (appliance/layers/clinical/hiv.py): `hiv_care`, the detail of the clinical layer's
`hiv_care` entries, a person enrolled in HIV care at the facility (the unique ART number, given in sequence, the
day HIV was confirmed, the WHO clinical stage, a baseline CD4 count, TB screening at enrolment) and, as later
versions of the same record, their status in care (transferred out, stopped, died, with the day); `hiv_regimen`,
ART started on a regimen and each substitution or switch after it, with the reason; `hiv_visit`, a clinical visit
or ARV pick-up (days of ARVs dispensed, adherence, the next appointment); `hiv_viral_load`, a viral load result
in copies/mL; and `hiv_art_sequence`, the last ART number given, so two enrolments at once never share one.
Before this the appliance recorded an HIV diagnosis (ICD-10 B20-B24) and nothing of the programme: no ART number,
regimen, pick-up or viral load, so nothing a ministry reports (TX_NEW, TX_CURR, TX_PVLS). Viral load is kept here,
not as a laboratory result: no facility's catalogue orders one (samples go to a hub laboratory, the result comes
back on paper or from its LIMS) and the programme reads it by the day the sample was taken.

Revision ID: t0039
Revises: t0038
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "t0039"
down_revision = "t0038"
branch_labels = None
depends_on = None

_STATUSES = ("in_care", "transferred_out", "stopped", "died")
_TB_SCREENING = ("no_signs", "presumptive_tb", "on_tb_treatment", "not_screened")
_CHANGES = ("initiation", "substitution", "switch")
_ADHERENCE = ("good", "fair", "poor", "not_assessed")


def upgrade() -> None:
    op.create_table(
        "hiv_care",
        sa.Column("entry_id", sa.Uuid(), sa.ForeignKey("entry.id"), primary_key=True),
        sa.Column("art_number", sa.Text(), nullable=False),
        sa.Column("enrolled_on", sa.Date(), nullable=False),
        sa.Column("diagnosed_on", sa.Date(), nullable=False),
        sa.Column("who_stage", sa.SmallInteger(), nullable=False),
        sa.Column("cd4_baseline", sa.Integer(), nullable=True),
        sa.Column("tb_screening", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("status_on", sa.Date(), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.CheckConstraint("who_stage BETWEEN 1 AND 4", name="hiv_care_who_stage"),
        sa.CheckConstraint("cd4_baseline BETWEEN 0 AND 5000", name="hiv_care_cd4_range"),
        sa.CheckConstraint(f"tb_screening IN {_TB_SCREENING!r}", name="hiv_care_tb_screening"),
        sa.CheckConstraint(f"status IN {_STATUSES!r}", name="hiv_care_status"),
        sa.CheckConstraint("(status = 'in_care') = (status_on IS NULL)", name="hiv_care_status_on"),
        sa.CheckConstraint("diagnosed_on <= enrolled_on", name="hiv_care_diagnosed_first"),
    )
    op.create_table(
        "hiv_regimen",
        sa.Column("entry_id", sa.Uuid(), sa.ForeignKey("entry.id"), primary_key=True),
        sa.Column("care_id", sa.Uuid(), nullable=False),  # the hiv_care record's root entry
        sa.Column("started_on", sa.Date(), nullable=False),
        sa.Column("regimen", sa.Text(), nullable=False),
        sa.Column("change", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.CheckConstraint(f"change IN {_CHANGES!r}", name="hiv_regimen_change"),
        sa.CheckConstraint("change = 'initiation' OR reason IS NOT NULL", name="hiv_regimen_reason"),
    )
    # TX_NEW reads initiations by their day.
    op.create_index("hiv_regimen_started_on_idx", "hiv_regimen", ["started_on"])
    op.create_index("hiv_regimen_care_idx", "hiv_regimen", ["care_id"])
    op.create_table(
        "hiv_visit",
        sa.Column("entry_id", sa.Uuid(), sa.ForeignKey("entry.id"), primary_key=True),
        sa.Column("care_id", sa.Uuid(), nullable=False),
        sa.Column("visit_on", sa.Date(), nullable=False),
        sa.Column("arv_days", sa.SmallInteger(), nullable=False),
        sa.Column("adherence", sa.Text(), nullable=False),
        sa.Column("next_appointment_on", sa.Date(), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.CheckConstraint("arv_days BETWEEN 0 AND 200", name="hiv_visit_arv_days"),
        sa.CheckConstraint(f"adherence IN {_ADHERENCE!r}", name="hiv_visit_adherence"),
        sa.CheckConstraint("next_appointment_on > visit_on", name="hiv_visit_next_after"),
    )
    op.create_index("hiv_visit_care_idx", "hiv_visit", ["care_id"])
    op.create_table(
        "hiv_viral_load",
        sa.Column("entry_id", sa.Uuid(), sa.ForeignKey("entry.id"), primary_key=True),
        sa.Column("care_id", sa.Uuid(), nullable=False),
        sa.Column("sampled_on", sa.Date(), nullable=False),
        sa.Column("copies_per_ml", sa.Integer(), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.CheckConstraint("copies_per_ml >= 0", name="hiv_viral_load_copies"),
    )
    op.create_index("hiv_viral_load_care_idx", "hiv_viral_load", ["care_id"])
    op.create_table(
        "hiv_art_sequence",
        sa.Column("register", sa.Text(), primary_key=True),
        sa.Column("last_number", sa.Integer(), nullable=False),
        sa.CheckConstraint("register = 'art'", name="hiv_art_sequence_one"),
        sa.CheckConstraint("last_number >= 1", name="hiv_art_sequence_positive"),
    )
    # The details are part of the record: appended and read, never rewritten or removed. The sequence moves on only.
    op.execute(sa.text(
        """
        DO $$
        BEGIN
            IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = current_schema()) THEN
                EXECUTE format('REVOKE UPDATE, DELETE, TRUNCATE ON hiv_care, hiv_regimen, hiv_visit, hiv_viral_load '
                               'FROM %I', current_schema());
                EXECUTE format('REVOKE DELETE, TRUNCATE ON hiv_art_sequence FROM %I', current_schema());
            END IF;
        END $$
        """
    ))


def downgrade() -> None:
    for table in ("hiv_art_sequence", "hiv_viral_load", "hiv_visit", "hiv_regimen", "hiv_care"):
        op.drop_table(table)
