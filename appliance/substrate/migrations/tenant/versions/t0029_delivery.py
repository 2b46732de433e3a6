"""`delivery`, the detail of the clinical layer's `delivery` entries (appliance/layers/clinical/models.py,
appliance/layers/clinical/delivery.py): a birth on the mother's record. Until now a birth left no trace: the
newborn was registered by hand as an unrelated patient, and nothing counted facility deliveries, stillbirths,
low birth weight or caesarean sections. The row holds the delivery (time of birth, gestational age, mode, the
mother's blood loss and the uterotonic given) and, as a JSON list, each baby born: outcome, sex, birth weight,
Apgar scores, resuscitation, and for a live-born baby the chart registered for it (`patient_id`), which is how
the baby's chart finds the mother (the GIN index answers "born to whom" without a scan). Appended and never
rewritten, like every detail table; a correction supersedes the entry.

Revision ID: t0029
Revises: t0028
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "t0029"
down_revision = "t0028"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "delivery",
        sa.Column("entry_id", sa.Uuid(), sa.ForeignKey("entry.id"), primary_key=True),
        sa.Column("born_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("gestation_weeks", sa.SmallInteger(), nullable=False),
        sa.Column("gestation_days", sa.SmallInteger(), nullable=False),
        sa.Column("mode", sa.Text(), nullable=False),
        sa.Column("babies", postgresql.JSONB(), nullable=False),
        sa.Column("blood_loss_ml", sa.Integer(), nullable=False),
        sa.Column("uterotonic", sa.Text(), nullable=False),
        sa.CheckConstraint("mode IN ('spontaneous_vaginal', 'assisted_vaginal', 'caesarean', 'breech_vaginal')",
                           name="delivery_mode"),
        sa.CheckConstraint("gestation_weeks BETWEEN 22 AND 44 AND gestation_days BETWEEN 0 AND 6",
                           name="delivery_gestation_range"),
        sa.CheckConstraint("blood_loss_ml >= 0", name="delivery_blood_loss_positive"),
        sa.CheckConstraint("uterotonic IN ('oxytocin', 'carbetocin', 'misoprostol', 'ergometrine', 'none')",
                           name="delivery_uterotonic"),
        sa.CheckConstraint("jsonb_typeof(babies) = 'array' AND jsonb_array_length(babies) BETWEEN 1 AND 4",
                           name="delivery_babies"),
    )
    op.create_index("delivery_babies_idx", "delivery", ["babies"], postgresql_using="gin",
                    postgresql_ops={"babies": "jsonb_path_ops"})
    # Part of the record: the tenant role appends and reads it, never rewrites or removes it.
    op.execute(sa.text(
        """
        DO $$
        BEGIN
            IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = current_schema()) THEN
                EXECUTE format('REVOKE UPDATE, DELETE, TRUNCATE ON delivery FROM %I', current_schema());
            END IF;
        END $$
        """
    ))


def downgrade() -> None:
    op.drop_table("delivery")
