"""Audit keys and the appliance-level audit log: wrapped tenant data keys, signing keys, checkpoints.

The appliance's own audit log (sign-ins, key operations, merges, policy changes) and the archived
logs of dropped tenants live in `control.audit_event` / `audit_pending` / `audit_position` /
`audit_checkpoint`, told apart by `log_id`. Events, positions and checkpoints are append-only: a
trigger refuses UPDATE, DELETE and TRUNCATE on them (defence in depth — detection by `healthos
audit verify` is the real control). `audit_pending` is the checkpointer's queue and is drained by it.

Revision ID: c0003
Revises: c0002
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "c0003"
down_revision = "c0002"
branch_labels = None
depends_on = None

APPEND_ONLY = ("audit_event", "audit_position", "audit_checkpoint")


def upgrade() -> None:
    op.create_table(
        "audit_log",
        sa.Column("log_id", sa.Text(), primary_key=True),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("tenant", sa.Text()),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("closed_at", sa.DateTime(timezone=True)),
        sa.CheckConstraint("kind IN ('appliance', 'tenant')", name="audit_log_kind_known"),
        schema="control",
    )
    op.create_table(
        "audit_data_key",
        sa.Column("key_id", sa.Text(), primary_key=True),
        sa.Column("log_id", sa.Text(), sa.ForeignKey("control.audit_log.log_id"), nullable=False),
        sa.Column("tenant", sa.Text()),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("wrapped", sa.LargeBinary()),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("destroyed_at", sa.DateTime(timezone=True)),
        sa.UniqueConstraint("log_id", "generation", name="audit_data_key_log_generation_key"),
        schema="control",
    )
    op.create_table(
        "audit_regulator_key",
        sa.Column("key_id", sa.Text(), primary_key=True),
        sa.Column("label", sa.Text(), nullable=False),
        sa.Column("public_key", sa.LargeBinary(), nullable=False),
        sa.Column("registered_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("retired_at", sa.DateTime(timezone=True)),
        schema="control",
    )
    op.create_table(
        "audit_data_key_seal",
        sa.Column("key_id", sa.Text(), sa.ForeignKey("control.audit_data_key.key_id"), primary_key=True),
        sa.Column("regulator_key_id", sa.Text(), sa.ForeignKey("control.audit_regulator_key.key_id"),
                  primary_key=True),
        sa.Column("sealed", sa.LargeBinary(), nullable=False),
        schema="control",
    )
    op.create_table(
        "audit_signing_key",
        sa.Column("key_id", sa.Text(), primary_key=True),
        sa.Column("public_key", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        schema="control",
    )

    op.execute("CREATE SEQUENCE control.audit_event_seq AS bigint")
    op.create_table(
        "audit_event",
        sa.Column("log_id", sa.Text(), primary_key=True),
        sa.Column("seq", sa.BigInteger(), primary_key=True),
        sa.Column("recorded", sa.DateTime(timezone=True), nullable=False),
        sa.Column("event_type", sa.Text(), nullable=False),
        sa.Column("key_id", sa.Text(), nullable=False),
        sa.Column("patient_ref", sa.Text()),
        sa.Column("nonce", sa.LargeBinary(), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("leaf_hash", sa.LargeBinary(), nullable=False),
        schema="control",
    )
    op.create_index("audit_event_log_recorded_idx", "audit_event", ["log_id", "recorded"], schema="control")
    op.create_table(
        "audit_pending",
        sa.Column("log_id", sa.Text(), primary_key=True),
        sa.Column("seq", sa.BigInteger(), primary_key=True),
        schema="control",
    )
    op.create_table(
        "audit_position",
        sa.Column("log_id", sa.Text(), primary_key=True),
        sa.Column("position", sa.BigInteger(), primary_key=True),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.UniqueConstraint("log_id", "seq", name="audit_position_log_seq_key"),
        schema="control",
    )
    op.create_table(
        "audit_checkpoint",
        sa.Column("log_id", sa.Text(), primary_key=True),
        sa.Column("tree_size", sa.BigInteger(), primary_key=True),
        sa.Column("root_hash", sa.LargeBinary(), nullable=False),
        sa.Column("signed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("signing_key_id", sa.Text(), nullable=False),
        sa.Column("signature", sa.LargeBinary(), nullable=False),
        sa.Column("edge", sa.LargeBinary(), nullable=False),
        schema="control",
    )

    op.execute(
        """
        CREATE FUNCTION control.audit_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'the audit trail is append-only: % on %.% refused', TG_OP, TG_TABLE_SCHEMA, TG_TABLE_NAME
                USING ERRCODE = 'insufficient_privilege';
        END $$
        """
    )
    for table in APPEND_ONLY:
        op.execute(f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON control.{table} "
                   "FOR EACH ROW EXECUTE FUNCTION control.audit_refuse_change()")
        op.execute(f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON control.{table} "
                   "FOR EACH STATEMENT EXECUTE FUNCTION control.audit_refuse_change()")

    # The appliance's own log exists from the start; its id is unique to this installation, so a
    # checkpoint of one appliance's log can never be passed off as another's.
    op.execute("INSERT INTO control.audit_log (log_id, kind) "
               "VALUES ('appliance.' || substr(md5(gen_random_uuid()::text), 1, 16), 'appliance')")
