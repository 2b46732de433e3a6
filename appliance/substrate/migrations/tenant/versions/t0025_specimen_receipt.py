"""`specimen_receipt`, the detail of the clinical layer's `specimen_receipt` entries
(appliance/layers/clinical/models.py, appliance/layers/clinical/lab.py): the laboratory bench recording that
the specimen of a lab order reached it, the entry's author and time saying who received it and when. Nothing
in the record said so before: the nursing "collect specimen" task says a nurse took it on the ward (and is
closed by the result anyway), and an order waiting for the laboratory looked the same whether its specimen
sat on the bench or had never left the ward. Appended and never rewritten, like every detail table; one in
force per order (the bench serialises two receipts of the same order; a receipt marked entered in error may
be recorded again, so the index is not unique).

Revision ID: t0025
Revises: t0024
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "t0025"
down_revision = "t0024"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "specimen_receipt",
        sa.Column("entry_id", sa.Uuid(), sa.ForeignKey("entry.id"), primary_key=True),
        sa.Column("service_request_id", sa.Uuid(), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
    )
    op.create_index("specimen_receipt_service_request_idx", "specimen_receipt", ["service_request_id"])
    # Part of the record: the tenant role appends and reads it, never rewrites or removes it.
    op.execute(sa.text(
        """
        DO $$
        BEGIN
            IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = current_schema()) THEN
                EXECUTE format('REVOKE UPDATE, DELETE, TRUNCATE ON specimen_receipt FROM %I', current_schema());
            END IF;
        END $$
        """
    ))


def downgrade() -> None:
    op.drop_table("specimen_receipt")
