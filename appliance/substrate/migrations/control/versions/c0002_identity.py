"""Identity: subjects, accounts, memberships, sessions, API tokens, sign-in throttling.

Revision ID: c0002
Revises: c0001
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "c0002"
down_revision = "c0001"
branch_labels = None
depends_on = None

UUID = postgresql.UUID(as_uuid=True)
NOW = sa.text("now()")


def upgrade() -> None:
    op.create_table(
        "subject",
        sa.Column("id", UUID, primary_key=True),
        sa.Column("national_id", sa.Text(), nullable=True),
        sa.Column("family_name", sa.Text(), nullable=False),
        sa.Column("given_names", sa.Text(), nullable=False),
        sa.Column("birth_date", sa.Date(), nullable=True),
        sa.Column("sex", sa.Text(), nullable=True),
        sa.Column("demographic_key", sa.Text(), nullable=False),
        sa.Column("merged_into", UUID, sa.ForeignKey("control.subject.id"), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        schema="control",
    )
    op.create_index("subject_national_id_key", "subject", ["national_id"], unique=True, schema="control",
                    postgresql_where=sa.text("national_id IS NOT NULL"))
    op.create_index("subject_demographic_key_idx", "subject", ["demographic_key"], schema="control")
    op.create_table(
        "subject_merge",
        sa.Column("id", UUID, primary_key=True),
        sa.Column("survivor_id", UUID, sa.ForeignKey("control.subject.id"), nullable=False),
        sa.Column("merged_id", UUID, sa.ForeignKey("control.subject.id"), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("merged_by", UUID, nullable=True),
        sa.Column("merged_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.Column("undone_by", UUID, nullable=True),
        sa.Column("undone_at", sa.DateTime(timezone=True), nullable=True),
        schema="control",
    )
    op.create_table(
        "account",
        sa.Column("id", UUID, primary_key=True),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("email", sa.Text(), nullable=False),
        sa.Column("display_name", sa.Text(), nullable=False),
        sa.Column("subject_id", UUID, sa.ForeignKey("control.subject.id"), nullable=True),
        sa.Column("appliance_role", sa.Text(), nullable=True),
        sa.Column("password_hash", sa.Text(), nullable=True),
        sa.Column("mfa_secret", sa.Text(), nullable=True),
        sa.Column("mfa_required", sa.Boolean(), nullable=False),
        sa.Column("last_totp_step", sa.BigInteger(), nullable=True),
        sa.Column("failed_signins", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("enrolment_code_hash", sa.Text(), nullable=True),
        sa.Column("enrolment_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.CheckConstraint(
            "kind IN ('staff', 'patient', 'ministry_analyst', 'regulator', 'operator', 'machine')",
            name="account_kind_known",
        ),
        schema="control",
    )
    op.create_index("account_email_key", "account", [sa.text("lower(email)")], unique=True, schema="control")
    op.create_index("account_enrolment_code_key", "account", ["enrolment_code_hash"], unique=True,
                    schema="control", postgresql_where=sa.text("enrolment_code_hash IS NOT NULL"))
    op.create_table(
        "membership",
        sa.Column("account_id", UUID, sa.ForeignKey("control.account.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("tenant", sa.Text(), sa.ForeignKey("control.tenant.slug", ondelete="CASCADE"), primary_key=True),
        sa.Column("role", sa.Text(), primary_key=True),
        sa.Column("ward", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        schema="control",
    )
    op.create_table(
        "session",
        sa.Column("id", UUID, primary_key=True),
        sa.Column("token_hash", sa.Text(), nullable=False, unique=True),
        sa.Column("account_id", UUID, sa.ForeignKey("control.account.id", ondelete="CASCADE"), nullable=False),
        sa.Column("mfa_passed", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("tenant", sa.Text(), nullable=True),
        sa.Column("role", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        schema="control",
    )
    op.create_index("session_account_idx", "session", ["account_id"], schema="control")
    op.create_table(
        "api_token",
        sa.Column("id", UUID, primary_key=True),
        sa.Column("token_hash", sa.Text(), nullable=False, unique=True),
        sa.Column("account_id", UUID, sa.ForeignKey("control.account.id", ondelete="CASCADE"), nullable=False),
        sa.Column("tenant", sa.Text(), sa.ForeignKey("control.tenant.slug", ondelete="CASCADE"), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("permissions", postgresql.ARRAY(sa.Text()), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        schema="control",
    )
