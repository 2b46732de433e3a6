"""Wards and beds of the facility, synchronised from tenants/<slug>.toml.

Revision ID: t0001
Revises:
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "t0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ward",
        sa.Column("code", sa.Text(), primary_key=True),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False, server_default=sa.true()),
    )
    op.create_table(
        "bed",
        sa.Column("code", sa.Text(), primary_key=True),
        sa.Column("ward_code", sa.Text(), sa.ForeignKey("ward.code"), nullable=False),
        sa.Column("state", sa.Text(), nullable=False, server_default="available"),
        sa.Column("active", sa.Boolean(), nullable=False, server_default=sa.true()),
        sa.CheckConstraint("state IN ('available', 'occupied', 'cleaning', 'blocked')", name="bed_state_known"),
    )
    op.create_index("bed_ward_code_idx", "bed", ["ward_code"])
