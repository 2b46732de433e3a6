"""The financial layer's tables: fee schedule, charges, accounts, invoices, claims and payments (financial layer).

Revision ID: t0006
Revises: t0005
Create Date: 2026-11-26
"""

revision = "t0006"
down_revision = "t0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Reserved so the three layers built side by side this session chain in a fixed order; the
    # layer's tables are added here before this revision lands.
    pass


def downgrade() -> None:
    pass
