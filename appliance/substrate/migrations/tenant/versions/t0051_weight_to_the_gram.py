"""A weight on vital signs kept to the gram: `vital_signs.weight_kg` from numeric(5,1) to numeric(6,3).

To 0.1 kg a 1450 g preterm baby read 1.4 kg, and a neonate's 30 g a day, the weights a growth chart plots and the
weight a child's fluids and doses go by were rounded to 100 g. Three decimals of kilograms keep the gram
(appliance/substrate/body_weight.py: what the record takes and how a page shows it); 999.999 kg is above the most
any weight may be (400 kg, the schema's limit). Every weight recorded before keeps its value (72.5 is 72.500). The
kept chart documents (t0009) are emptied both ways, so each is made afresh with the column as it now is.

The downgrade refuses a schema holding a weight finer than 0.1 kg, rather than round it away.

Revision ID: t0051
Revises: t0050
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "t0051"
down_revision = "t0050"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.alter_column("vital_signs", "weight_kg", type_=sa.Numeric(6, 3), existing_type=sa.Numeric(5, 1),
                    existing_nullable=True)
    op.execute("DELETE FROM chart_document")


def downgrade() -> None:
    op.execute("""
        DO $refuse$ BEGIN
            IF EXISTS (SELECT 1 FROM vital_signs WHERE weight_kg <> round(weight_kg, 1)) THEN
                RAISE EXCEPTION 'vital signs here hold weights to the gram, which t0049 keeps only to 0.1 kg';
            END IF;
        END $refuse$
    """)
    op.alter_column("vital_signs", "weight_kg", type_=sa.Numeric(5, 1), existing_type=sa.Numeric(6, 3),
                    existing_nullable=True)
    op.execute("DELETE FROM chart_document")
