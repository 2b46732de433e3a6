"""The tenant's encrypted, tamper-evident audit trail.

Revision ID: t0003
Revises: t0002
Create Date: 2026-11-25
"""

import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

revision = "t0003"
down_revision = "t0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass  # being written in this session; filled before it lands
