"""The operations layer's tables: ADT, emergency department, outpatient scheduling and the command center's tables (operations layer).

Revision ID: t0004
Revises: t0003
Create Date: 2026-11-26
"""

revision = "t0004"
down_revision = "t0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Reserved so the three layers built side by side this session chain in a fixed order; the
    # layer's tables are added here before this revision lands.
    pass


def downgrade() -> None:
    pass
