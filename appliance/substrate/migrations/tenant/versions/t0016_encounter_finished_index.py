"""An index on the day each encounter finished, for today's patients (appliance/layers/clinical/worklist.py):
the list a clinician lands on holds the encounters open now, planned for today and finished today. The
first two are read through `encounter_open_idx`; finished ones had no index on `ended_at`, so every load of
the page (two statements: the counts and the list) scanned every encounter the facility ever had — ~100 ms
at 430,000 encounters, measured on a copy of the bench tenant, where the index makes it a bitmap scan of
today's rows.

Revision ID: t0016
Revises: t0015
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "t0016"
down_revision = "t0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("encounter_finished_idx", "encounter", ["ended_at"],
                    postgresql_where=sa.text("status = 'finished'"))


def downgrade() -> None:
    op.drop_index("encounter_finished_idx", table_name="encounter")
