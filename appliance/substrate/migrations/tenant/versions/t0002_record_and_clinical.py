"""The one record: entry spine and the clinical layer's detail tables.

Revision ID: t0002
Revises: t0001
Create Date: 2026-11-25
"""

import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

revision = "t0002"
down_revision = "t0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass  # being written in this session; filled before it lands
