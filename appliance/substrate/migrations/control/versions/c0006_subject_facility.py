"""Which facilities hold a chart of which one-identity subject: the patient portal asks only those
facilities for a person's record, instead of every facility on the appliance (a transaction each, on
every page view: a cost that grew with the number of tenants). Written by registration in the control
transaction that matches the subject, before the chart is written, so it may name a facility whose
registration was then refused (the portal finds no chart there), never miss one. Filled here from the
charts already linked.

Revision ID: c0006
Revises: c0005
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "c0006"
down_revision = "c0005"
branch_labels = None
depends_on = None


# Every linked chart of every facility on the appliance; run again, it adds nothing.
BACKFILL = """
DO $$
DECLARE slug text;
BEGIN
    FOR slug IN SELECT t.slug FROM control.tenant t
                WHERE to_regclass(quote_ident('t_' || t.slug) || '.patient') IS NOT NULL LOOP
        EXECUTE 'INSERT INTO control.subject_facility (subject_id, tenant) '
                || 'SELECT DISTINCT subject_id, ' || quote_literal(slug) || ' FROM '
                || quote_ident('t_' || slug) || '.patient WHERE subject_id IS NOT NULL ON CONFLICT DO NOTHING';
    END LOOP;
END $$
"""


def upgrade() -> None:
    op.create_table(
        "subject_facility",
        sa.Column("subject_id", sa.Uuid(), sa.ForeignKey("control.subject.id"), primary_key=True),
        sa.Column("tenant", sa.Text(), primary_key=True),
        schema="control",
    )
    op.execute(BACKFILL)


def downgrade() -> None:
    op.drop_table("subject_facility", schema="control")
