"""Tables of the operations layer, in every tenant schema."""

import sqlalchemy as sa

from appliance.substrate.db import tenant_metadata

ward = sa.Table(
    "ward",
    tenant_metadata,
    sa.Column("code", sa.Text, primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
)

bed = sa.Table(
    "bed",
    tenant_metadata,
    sa.Column("code", sa.Text, primary_key=True),
    sa.Column("ward_code", sa.Text, sa.ForeignKey("ward.code"), nullable=False),
    sa.Column("state", sa.Text, nullable=False, server_default="available"),
    sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Index("bed_ward_code_idx", "ward_code"),
)
