"""Reserved (placeholder, replaced in place before it lands on a stop).

Revision ID: t0045
Revises: t0044
Create Date: 2026-11-27
"""

revision = "t0045"
down_revision = "t0044"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
