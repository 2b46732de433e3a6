"""Audit keys and the appliance-level audit log: wrapped tenant data keys, signing keys, checkpoints.

Revision ID: c0003
Revises: c0002
Create Date: 2026-11-25
"""

import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

revision = "c0003"
down_revision = "c0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass  # being written in this session; filled before it lands
