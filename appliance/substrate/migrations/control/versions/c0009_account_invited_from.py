"""The chart a patient's portal account was invited from (`account.invited_from_tenant`,
`invited_from_patient`): when that chart is relinked to another person in the master patient index (its
national ID was corrected), the account follows it to that person's subject. Without it an account
invited while the chart was linked to the wrong person stayed on that person's subject, and its holder
read the other person's record. Accounts made before this revision record no chart and are left as they
are. A change of an account's subject now also tells the serving processes to forget cached principals.

Revision ID: c0009
Revises: c0008
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "c0009"
down_revision = "c0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("account", sa.Column("invited_from_tenant", sa.Text(), nullable=True), schema="control")
    op.add_column("account", sa.Column("invited_from_patient", sa.Uuid(), nullable=True), schema="control")
    op.create_index("account_invited_from_idx", "account", ["invited_from_tenant", "invited_from_patient"],
                    schema="control", postgresql_where=sa.text("invited_from_patient IS NOT NULL"))
    op.execute("DROP TRIGGER account_changed ON control.account")
    op.execute("""
        CREATE TRIGGER account_changed
        AFTER UPDATE OF disabled_at, display_name, kind, subject_id OR DELETE OR TRUNCATE ON control.account
        FOR EACH STATEMENT EXECUTE FUNCTION control.credentials_changed()
    """)


def downgrade() -> None:
    op.execute("DROP TRIGGER account_changed ON control.account")
    op.execute("""
        CREATE TRIGGER account_changed
        AFTER UPDATE OF disabled_at, display_name, kind OR DELETE OR TRUNCATE ON control.account
        FOR EACH STATEMENT EXECUTE FUNCTION control.credentials_changed()
    """)
    op.drop_index("account_invited_from_idx", "account", schema="control")
    op.drop_column("account", "invited_from_patient", schema="control")
    op.drop_column("account", "invited_from_tenant", schema="control")
