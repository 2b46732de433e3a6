"""Identity: subjects, accounts, memberships, sessions, API tokens, sign-in throttling.

Revision ID: c0002
Revises: c0001
Create Date: 2026-11-25
"""

import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

revision = "c0002"
down_revision = "c0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass  # being written in this session; filled before it lands
