"""Reserved for the command center's KPI reads (issue 7, session of 2026-11-26): filled before landing.

Revision ID: t0008
Revises: t0007
Create Date: 2026-11-26
"""

revision = "t0008"
down_revision = "t0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
