"""`diet_order`, the detail of the nursing layer's `diet_order` entries (appliance/layers/nursing/models.py,
appliance/layers/nursing/diet.py): what an admitted patient may eat, from when until when — a diet (normal, soft,
liquid, diabetic, renal, nil by mouth, tube feeding, F-75/F-100 for a child with severe acute malnutrition...), the
other diets it is combined with (halal and diabetic), the IDDSI texture level for dysphagia and a note. Wards ordered
diets on paper slips to the kitchen, so a diabetic's tray and a fasting patient's breakfast were nobody's check.
A new order is the next version of the patient's one order record; `corrects` marks a version that replaces the one
before it (a correction) rather than following it from its own start (a new order). Appended and never rewritten.

`nursing_setting` gains the hours of the facility's three meals (the tenant file's `[nursing]` breakfast, lunch and
supper), written by every `tenant apply`; empty for a facility whose file predates them, and the layer reads its
defaults.

Revision ID: t0040
Revises: t0039
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "t0040"
down_revision = "t0039"
branch_labels = None
depends_on = None

DIETS = ("normal", "soft", "clear_liquid", "full_liquid", "diabetic", "renal", "low_salt", "high_energy_protein",
         "gluten_free", "halal", "vegetarian", "npo", "enteral", "f75", "f100")
MEALS = ("breakfast_at", "lunch_at", "supper_at")


def upgrade() -> None:
    op.create_table(
        "diet_order",
        sa.Column("entry_id", sa.Uuid(), sa.ForeignKey("entry.id"), primary_key=True),
        sa.Column("diet", sa.Text(), nullable=False),
        sa.Column("also", postgresql.JSONB(), nullable=False),
        sa.Column("iddsi_level", sa.SmallInteger(), nullable=True),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("corrects", sa.Boolean(), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.CheckConstraint(f"diet IN {DIETS!r}", name="diet_order_diet"),
        sa.CheckConstraint("iddsi_level BETWEEN 0 AND 7", name="diet_order_iddsi_level"),
        sa.CheckConstraint("ends_at IS NULL OR ends_at > starts_at", name="diet_order_ends_after_start"),
    )
    for meal in MEALS:
        op.add_column("nursing_setting", sa.Column(meal, sa.Time(), nullable=True))
    # Part of the record: the tenant role appends and reads it, never rewrites or removes it.
    op.execute(sa.text(
        """
        DO $$
        BEGIN
            IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = current_schema()) THEN
                EXECUTE format('REVOKE UPDATE, DELETE, TRUNCATE ON diet_order FROM %I', current_schema());
            END IF;
        END $$
        """
    ))


def downgrade() -> None:
    for meal in MEALS:
        op.drop_column("nursing_setting", meal)
    op.drop_table("diet_order")
