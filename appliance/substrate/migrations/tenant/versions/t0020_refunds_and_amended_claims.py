"""Refunds of what was overpaid on a final invoice, and a claim amended by a credit note (financial layer).

A credit note on an invoice already paid leaves the patient (or the insurer) having paid more than is owed; the
cashier gives the difference back as a **refund** (`refund`, numbered RFD-…): the invoice, who it goes to (the
insurer, `payer_code`, or the patient), the method, the amount, the reason. It is money out: what is owed on the
invoice is then total − payments + refunds − credits, and the day's takings count it against the drawer. Never more
than was overpaid (in the service). Append-only for the tenant role, as payments and credits are.

A claim already sent whose invoice a credit note reduced asks the insurer for the old amount: it is now
**amended** (the new amount, to be sent again; next it is resubmitted) or, when nothing is left to claim,
**withdrawn**. A paid claim keeps its status; what it was overpaid is a refund owed to the insurer.

Revision ID: t0020
Revises: t0019
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "t0020"
down_revision = "t0019"
branch_labels = None
depends_on = None

MONEY = sa.Numeric()
OLD_STATUSES = "status IN ('submitted', 'accepted', 'rejected', 'paid')"


def upgrade() -> None:
    op.drop_constraint("claim_status_known", "claim", type_="check")
    op.create_check_constraint("claim_status_known", "claim",
                               "status IN ('submitted', 'accepted', 'rejected', 'paid', 'amended', 'withdrawn')")
    op.create_table(
        "refund",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("number", sa.Text(), nullable=False),
        sa.Column("invoice_id", sa.Uuid(), sa.ForeignKey("invoice.id"), nullable=False),
        sa.Column("patient_id", sa.Uuid(), nullable=False),
        sa.Column("payer_code", sa.Text(), nullable=True),
        sa.Column("method", sa.Text(), nullable=False),
        sa.Column("amount", MONEY, nullable=False),
        sa.Column("currency", sa.Text(), nullable=False),
        sa.Column("reference", sa.Text(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("recorded_by", sa.Uuid(), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.UniqueConstraint("number", name="refund_number_key"),
        sa.CheckConstraint("method IN ('cash', 'mobile_money', 'card', 'bank_transfer')", name="refund_method_known"),
        sa.CheckConstraint("amount > 0", name="refund_amount_positive"),
    )
    op.create_index("refund_invoice_idx", "refund", ["invoice_id"])
    op.create_index("refund_recorded_at_idx", "refund", ["recorded_at"])
    op.execute("CREATE SEQUENCE refund_number_seq")
    # Append-only for the tenant role, as payments and credits are: money given back stays given back.
    op.execute(sa.text(
        """
        DO $$
        BEGIN
            IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = current_schema()) THEN
                EXECUTE format('REVOKE UPDATE, DELETE, TRUNCATE ON refund FROM %I', current_schema());
            END IF;
        END $$
        """
    ))


def downgrade() -> None:
    op.drop_table("refund")
    op.execute("DROP SEQUENCE refund_number_seq")
    op.execute("UPDATE claim SET status = 'submitted' WHERE status IN ('amended', 'withdrawn')")
    op.drop_constraint("claim_status_known", "claim", type_="check")
    op.create_check_constraint("claim_status_known", "claim", OLD_STATUSES)
