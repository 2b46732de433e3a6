"""A notification on `healthos_credentials` whenever an API token or an account changes in a way that
changes who a token speaks for (revoked, deleted, its account disabled, renamed or deleted): each
serving process caches tokens' principals and empties its cache when told (substrate/token_cache.py).
Sent by statement-level triggers, so a revocation of a thousand tokens is one notification, delivered
by PostgreSQL when the transaction commits — never for a change that was rolled back.

Revision ID: c0007
Revises: c0006
Create Date: 2026-11-27
"""

from alembic import op

revision = "c0007"
down_revision = "c0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
        CREATE FUNCTION control.credentials_changed() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('healthos_credentials', TG_TABLE_NAME);
            RETURN NULL;
        END $$
    """)
    op.execute("""
        CREATE TRIGGER api_token_changed AFTER UPDATE OR DELETE OR TRUNCATE ON control.api_token
        FOR EACH STATEMENT EXECUTE FUNCTION control.credentials_changed()
    """)
    # Sign-in bookkeeping (failed attempts, lockouts, TOTP steps) updates other columns: no notification.
    op.execute("""
        CREATE TRIGGER account_changed
        AFTER UPDATE OF disabled_at, display_name, kind OR DELETE OR TRUNCATE ON control.account
        FOR EACH STATEMENT EXECUTE FUNCTION control.credentials_changed()
    """)


def downgrade() -> None:
    op.execute("DROP TRIGGER account_changed ON control.account")
    op.execute("DROP TRIGGER api_token_changed ON control.api_token")
    op.execute("DROP FUNCTION control.credentials_changed()")
