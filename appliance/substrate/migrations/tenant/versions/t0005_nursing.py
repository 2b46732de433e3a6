"""The nursing layer's tables: NEWS2, medication administration, nursing tasks, care plans and handover (nursing layer).

Revision ID: t0005
Revises: t0004
Create Date: 2026-11-26
"""

revision = "t0005"
down_revision = "t0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Reserved so the three layers built side by side this session chain in a fixed order; the
    # layer's tables are added here before this revision lands.
    pass


def downgrade() -> None:
    pass
