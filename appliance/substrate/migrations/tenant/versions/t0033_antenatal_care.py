"""`antenatal`, the detail of the clinical layer's `antenatal` entries (appliance/layers/clinical/models.py,
appliance/layers/clinical/antenatal.py): one antenatal care (ANC) contact on the woman's record. Until now the
appliance recorded the birth but not the pregnancy before it: no dating, no blood pressure or urine protein read
against the weeks, no syphilis or haemoglobin result where the ministry counts ANC coverage.

The row holds the contact's day-independent facts (the day is the entry's `occurred_at`): the pregnancy it belongs
to (`pregnancy_id`, the first contact's record id, so the contacts of one pregnancy are one index range), its
dating (last menstrual period and/or an ultrasound's gestational age, the estimated due date they give and which
one gave it), gestational age at the contact in days, gravida/para, the examination (blood pressure, weight,
fundal height, fetal heart rate and movements, presentation), the tests (urine protein by dipstick, haemoglobin,
syphilis and HIV), what was given (Td dose, IPTp-SP dose, iron-folic acid), danger signs, the next visit and a note,
and the flags the contact raised when it was recorded (hypertension, pre-eclampsia, severe features, anaemia,
untreated syphilis), which the nursing layer's escalation and the clinic's list read. Appended and never
rewritten, like every detail table; a correction supersedes the entry.

Revision ID: t0033
Revises: t0032
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "t0033"
down_revision = "t0032"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "antenatal",
        sa.Column("entry_id", sa.Uuid(), sa.ForeignKey("entry.id"), primary_key=True),
        sa.Column("pregnancy_id", sa.Uuid(), nullable=False),
        sa.Column("lmp", sa.Date(), nullable=True),
        sa.Column("ultrasound_on", sa.Date(), nullable=True),
        sa.Column("ultrasound_weeks", sa.SmallInteger(), nullable=True),
        sa.Column("ultrasound_days", sa.SmallInteger(), nullable=True),
        sa.Column("edd", sa.Date(), nullable=False),
        sa.Column("dated_by", sa.Text(), nullable=False),
        sa.Column("gestation_days", sa.SmallInteger(), nullable=False),
        sa.Column("gravida", sa.SmallInteger(), nullable=True),
        sa.Column("para", sa.SmallInteger(), nullable=True),
        sa.Column("systolic_mmhg", sa.SmallInteger(), nullable=True),
        sa.Column("diastolic_mmhg", sa.SmallInteger(), nullable=True),
        sa.Column("weight_kg", sa.Numeric(5, 1), nullable=True),
        sa.Column("fundal_height_cm", sa.SmallInteger(), nullable=True),
        sa.Column("fetal_heart_rate", sa.SmallInteger(), nullable=True),
        sa.Column("fetal_movements", sa.Text(), nullable=True),
        sa.Column("presentation", sa.Text(), nullable=True),
        sa.Column("urine_protein", sa.Text(), nullable=True),
        sa.Column("haemoglobin_g_dl", sa.Numeric(3, 1), nullable=True),
        sa.Column("syphilis_test", sa.Text(), nullable=False),
        sa.Column("syphilis_treated", sa.Boolean(), nullable=False),
        sa.Column("hiv_test", sa.Text(), nullable=False),
        sa.Column("td_dose", sa.SmallInteger(), nullable=True),
        sa.Column("iptp_dose", sa.SmallInteger(), nullable=True),
        sa.Column("iron_folic_acid", sa.Boolean(), nullable=False),
        sa.Column("danger_signs", postgresql.JSONB(), nullable=False),
        sa.Column("next_visit_on", sa.Date(), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("flags", postgresql.JSONB(), nullable=False),
        sa.CheckConstraint("dated_by IN ('lmp', 'ultrasound')", name="antenatal_dated_by"),
        sa.CheckConstraint("gestation_days BETWEEN 0 AND 315", name="antenatal_gestation_range"),
        sa.CheckConstraint("syphilis_test IN ('not_done', 'negative', 'positive')", name="antenatal_syphilis_test"),
        sa.CheckConstraint("hiv_test IN ('not_done', 'negative', 'positive', 'known_positive')",
                           name="antenatal_hiv_test"),
        sa.CheckConstraint("urine_protein IN ('negative', 'trace', '1+', '2+', '3+')", name="antenatal_urine_protein"),
        sa.CheckConstraint("jsonb_typeof(danger_signs) = 'array' AND jsonb_typeof(flags) = 'array'",
                           name="antenatal_lists"),
    )
    op.create_index("antenatal_pregnancy_idx", "antenatal", ["pregnancy_id"])
    # Part of the record: the tenant role appends and reads it, never rewrites or removes it.
    op.execute(sa.text(
        """
        DO $$
        BEGIN
            IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = current_schema()) THEN
                EXECUTE format('REVOKE UPDATE, DELETE, TRUNCATE ON antenatal FROM %I', current_schema());
            END IF;
        END $$
        """
    ))


def downgrade() -> None:
    op.drop_table("antenatal")
