"""The HL7 v2 interface's tables (appliance/interop/hl7v2/models.py): the messages each feed sent with
the acknowledgement given, which makes a resent message recognisable, and the placer order numbers of
orders placed by a feed, which results name.

Revision ID: t0012
Revises: t0011
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "t0012"
down_revision = "t0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "hl7_message",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("sending_application", sa.Text(), nullable=False),
        sa.Column("sending_facility", sa.Text(), nullable=False),
        sa.Column("message_type", sa.Text(), nullable=False),
        sa.Column("control_id", sa.Text(), nullable=False),
        sa.Column("ack_code", sa.Text(), nullable=False),
        sa.Column("error_code", sa.Text()),
        sa.Column("error_text", sa.Text()),
        sa.Column("created", postgresql.JSONB(), nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("token_id", sa.Uuid()),
        sa.Column("ack", sa.Text()),
        sa.CheckConstraint("ack_code IN ('AA', 'AE', 'AR')", name="hl7_message_ack_code_known"),
    )
    op.create_index("hl7_message_accepted_key", "hl7_message",
                    ["sending_application", "sending_facility", "control_id"], unique=True,
                    postgresql_where=sa.text("ack_code = 'AA'"))
    op.create_index("hl7_message_received_idx", "hl7_message", ["received_at"])
    op.create_table(
        "hl7_placer_order",
        sa.Column("placer_number", sa.Text(), primary_key=True),
        sa.Column("placer_namespace", sa.Text(), primary_key=True),
        sa.Column("service_request_id", sa.Uuid(), nullable=False),
        sa.Column("patient_id", sa.Uuid(), nullable=False),
    )
    # The message log is a log: the tenant role appends and reads it, never rewrites it.
    op.execute(sa.text(
        """
        DO $$
        BEGIN
            IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = current_schema()) THEN
                EXECUTE format('REVOKE UPDATE, DELETE, TRUNCATE ON hl7_message FROM %I', current_schema());
                EXECUTE format('REVOKE UPDATE, DELETE, TRUNCATE ON hl7_placer_order FROM %I', current_schema());
            END IF;
        END $$
        """
    ))


def downgrade() -> None:
    op.drop_table("hl7_placer_order")
    op.drop_table("hl7_message")
