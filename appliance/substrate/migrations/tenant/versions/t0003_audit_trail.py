"""The tenant's encrypted, tamper-evident audit trail.

`audit_event` holds one row per event (clear header columns, encrypted body, leaf hash), written in
the same transaction as the act it records; `audit_pending` queues committed events for the
checkpointer, which gives them log positions (`audit_position`) and signs `audit_checkpoint`s;
`audit_key` says which data key is current (ids only). See appliance/substrate/audit.py.

The tenant role may INSERT events and queue entries and read everything, and nothing more: the
grants that the schema's default privileges give it (UPDATE, DELETE) are revoked here, and a trigger
refuses UPDATE, DELETE and TRUNCATE of events, positions, checkpoints and key ids even for the owner.

Revision ID: t0003
Revises: t0002
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "t0003"
down_revision = "t0002"
branch_labels = None
depends_on = None

APPEND_ONLY = ("audit_event", "audit_position", "audit_checkpoint", "audit_key")


def upgrade() -> None:
    op.create_table(
        "audit_key",
        sa.Column("key_id", sa.Text(), primary_key=True),
        sa.Column("log_id", sa.Text(), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False, unique=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )
    op.execute("CREATE SEQUENCE audit_event_seq AS bigint")
    op.create_table(
        "audit_event",
        sa.Column("seq", sa.BigInteger(), primary_key=True),
        sa.Column("recorded", sa.DateTime(timezone=True), nullable=False),
        sa.Column("event_type", sa.Text(), nullable=False),
        sa.Column("key_id", sa.Text(), nullable=False),
        sa.Column("patient_ref", sa.Text()),
        sa.Column("nonce", sa.LargeBinary(), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("leaf_hash", sa.LargeBinary(), nullable=False),
    )
    op.create_index("audit_event_recorded_idx", "audit_event", ["recorded"])
    op.create_index("audit_event_patient_ref_idx", "audit_event", ["patient_ref"])
    op.create_table("audit_pending", sa.Column("seq", sa.BigInteger(), primary_key=True))
    op.create_table(
        "audit_position",
        sa.Column("position", sa.BigInteger(), primary_key=True),
        sa.Column("seq", sa.BigInteger(), nullable=False, unique=True),
    )
    op.create_table(
        "audit_checkpoint",
        sa.Column("tree_size", sa.BigInteger(), primary_key=True),
        sa.Column("root_hash", sa.LargeBinary(), nullable=False),
        sa.Column("signed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("signing_key_id", sa.Text(), nullable=False),
        sa.Column("signature", sa.LargeBinary(), nullable=False),
        sa.Column("edge", sa.LargeBinary(), nullable=False),
    )

    op.execute(
        """
        CREATE FUNCTION audit_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'the audit trail is append-only: % on %.% refused', TG_OP, TG_TABLE_SCHEMA, TG_TABLE_NAME
                USING ERRCODE = 'insufficient_privilege';
        END $$
        """
    )
    for table in APPEND_ONLY:
        op.execute(f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                   "FOR EACH ROW EXECUTE FUNCTION audit_refuse_change()")
        op.execute(f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                   "FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change()")

    # The tenant role is named after the schema the migration runs in (tenancy._ensure_role_and_schema).
    bind = op.get_bind()
    role = bind.execute(sa.text("SELECT rolname FROM pg_roles WHERE rolname = current_schema()")).scalar()
    if role is not None:
        quoted = bind.dialect.identifier_preparer.quote_identifier(role)
        # Default privileges gave it UPDATE and DELETE on every table; an audit row is written once.
        op.execute(f"REVOKE UPDATE, DELETE, TRUNCATE ON audit_event, audit_pending, audit_position, "
                   f"audit_checkpoint, audit_key FROM {quoted}")
        # Positions, checkpoints and key ids are written by the appliance (the schema owner), never
        # from inside a tenant transaction.
        op.execute(f"REVOKE INSERT ON audit_position, audit_checkpoint, audit_key FROM {quoted}")
        op.execute(f"REVOKE UPDATE ON SEQUENCE audit_event_seq FROM {quoted}")
