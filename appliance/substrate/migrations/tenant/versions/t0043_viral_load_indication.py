"""`hiv_viral_load.indication`: why a viral load was taken (appliance/layers/clinical/hiv.py) — `routine`, at the
interval the monitoring schedule sets, or `targeted`, ordered for suspected treatment failure (clinical or
immunological signs). PEPFAR MER's TX_PVLS is disaggregated by it (MER Indicator Reference Guide 2.7: "Indication:
Routine / Targeted"), so the national figures can say how much of the suppression is measured on schedule.

Results recorded before this revision have no indication (NULL: not documented); they keep counting in the
TX_PVLS totals as before, in neither part of the split. Every viral load recorded from now on has one.

Revision ID: t0043
Revises: t0042
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "t0043"
down_revision = "t0042"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("hiv_viral_load", sa.Column("indication", sa.Text(), nullable=True))
    op.create_check_constraint("hiv_viral_load_indication", "hiv_viral_load",
                               "indication IN ('routine', 'targeted')")


def downgrade() -> None:
    op.drop_constraint("hiv_viral_load_indication", "hiv_viral_load", type_="check")
    op.drop_column("hiv_viral_load", "indication")
