"""Reserved (placeholder, replaced in place before it lands on a stop).

Revision ID: t0044
Revises: t0043
Create Date: 2026-11-27
"""

revision = "t0044"
down_revision = "t0043"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
