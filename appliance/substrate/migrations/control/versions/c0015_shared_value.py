"""`control.shared_value`: what every serving process of the appliance must count alike, each value until it expires
(appliance/substrate/shared_store.py): the sign-in and package-post throttle's counts per client, which each
uvicorn worker kept in its own memory, so N workers allowed N times the attempts and a restart forgot them.

The key is the throttle's (the client's address and what it posts), never patient data. The index on expires_at
lets the sweep delete expired values without reading the live ones.

Revision ID: c0015
Revises: c0014
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "c0015"
down_revision = "c0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "shared_value",
        sa.Column("key", sa.Text(), primary_key=True),
        sa.Column("value", sa.LargeBinary(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        schema="control",
    )
    op.create_index("shared_value_expires_idx", "shared_value", ["expires_at"], schema="control")


def downgrade() -> None:
    op.drop_index("shared_value_expires_idx", "shared_value", schema="control")
    op.drop_table("shared_value", schema="control")
