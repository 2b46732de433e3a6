"""National federation: the appliances whose signed aggregate packages this one accepts, and the
packages it has received. A ministry's appliance registers each hospital appliance's public key once;
each month's package from it is verified against that key and kept, so the ministry's page and exports
show the hospital's published figures beside the facilities this appliance holds itself. Only
published counts are kept (the disclosure rule ran before the package was signed); a newer package for
the same appliance and month replaces the older, and every receipt is in the audit log.

Revision ID: c0005
Revises: c0004
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "c0005"
down_revision = "c0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "national_peer",
        sa.Column("key_id", sa.Text(), primary_key=True),
        sa.Column("name", sa.Text(), nullable=False, unique=True),
        sa.Column("public_key", sa.LargeBinary(), nullable=False),
        sa.Column("registered_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("length(public_key) = 32", name="national_peer_key_is_ed25519"),
        schema="control",
    )
    op.create_table(
        "national_package",
        sa.Column("key_id", sa.Text(), sa.ForeignKey("control.national_peer.key_id"), primary_key=True),
        sa.Column("period", sa.Text(), primary_key=True),
        sa.Column("produced_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sha256", sa.Text(), nullable=False),
        sa.Column("facilities", postgresql.JSONB(), nullable=False),
        sa.CheckConstraint("period ~ '^[0-9]{4}-[0-9]{2}$'", name="national_package_period_is_a_month"),
        schema="control",
    )


def downgrade() -> None:
    op.drop_table("national_package", schema="control")
    op.drop_table("national_peer", schema="control")
