"""What a final invoice is credited with besides payments, and the cash a cashier was handed (financial layer).

A final invoice is never edited. It is corrected by an `invoice_credit`:

- a **credit note** (`credit_note`, numbered CN-…) takes lines billed in error, or the part of a line billed at
  the wrong price, off what is owed; its `invoice_credit_line`s name the invoice lines and the amount credited
  on each, never more than the line (CHECKs here and in the service);
- a **write-off** (`write_off`, WO-…) of an insurer's shortfall: what the insurer will not pay, taken off the
  receivable with a reason;
- a **transfer** (`transfer`, TR-…) of that shortfall to the patient: taken off the insurer's invoice and billed
  to the patient on a new self-pay invoice (`invoice.transferred_from` names the insurer's invoice).

Outstanding on an invoice is then total − payments − credits. Credits are append-only for the tenant role, as
payments are: a credit note, once issued, stays. `payment.tendered` is the cash handed over when it was more
than was owed: the payment is what was owed, the change the difference (cash only, by CHECK).

Revision ID: t0018
Revises: t0017
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "t0018"
down_revision = "t0017"
branch_labels = None
depends_on = None

MONEY = sa.Numeric()


def upgrade() -> None:
    op.add_column("invoice", sa.Column("transferred_from", sa.Uuid(), sa.ForeignKey("invoice.id"), nullable=True))
    op.create_index("invoice_transferred_from_idx", "invoice", ["transferred_from"])
    op.add_column("payment", sa.Column("tendered", MONEY, nullable=True))
    op.create_check_constraint("payment_tendered_is_cash", "payment",
                               "tendered IS NULL OR (method = 'cash' AND tendered >= amount)")
    op.create_table(
        "invoice_credit",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("number", sa.Text(), nullable=False),
        sa.Column("invoice_id", sa.Uuid(), sa.ForeignKey("invoice.id"), nullable=False),
        sa.Column("patient_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("amount", MONEY, nullable=False),
        sa.Column("currency", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("transfer_invoice_id", sa.Uuid(), sa.ForeignKey("invoice.id"), nullable=True),
        sa.Column("recorded_by", sa.Uuid(), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.UniqueConstraint("number", name="invoice_credit_number_key"),
        sa.CheckConstraint("kind IN ('credit_note', 'write_off', 'transfer')", name="invoice_credit_kind_known"),
        sa.CheckConstraint("amount > 0", name="invoice_credit_amount_positive"),
        sa.CheckConstraint("(kind = 'transfer') = (transfer_invoice_id IS NOT NULL)",
                           name="invoice_credit_transfer_bills_the_patient"),
    )
    op.create_index("invoice_credit_invoice_idx", "invoice_credit", ["invoice_id"])
    op.create_table(
        "invoice_credit_line",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("credit_id", sa.Uuid(), sa.ForeignKey("invoice_credit.id"), nullable=False),
        sa.Column("invoice_line_id", sa.Uuid(), sa.ForeignKey("invoice_line.id"), nullable=False),
        sa.Column("amount", MONEY, nullable=False),
        sa.CheckConstraint("amount > 0", name="invoice_credit_line_amount_positive"),
    )
    op.create_index("invoice_credit_line_credit_idx", "invoice_credit_line", ["credit_id"])
    op.create_index("invoice_credit_line_line_idx", "invoice_credit_line", ["invoice_line_id"])
    op.execute("CREATE SEQUENCE invoice_credit_number_seq")
    # Append-only for the tenant role, as payments are (t0006): a credit is undone by nothing.
    op.execute(sa.text(
        """
        DO $$
        BEGIN
            IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = current_schema()) THEN
                EXECUTE format('REVOKE UPDATE, DELETE, TRUNCATE ON invoice_credit, invoice_credit_line FROM %I',
                               current_schema());
            END IF;
        END $$
        """
    ))


def downgrade() -> None:
    op.drop_table("invoice_credit_line")
    op.drop_table("invoice_credit")
    op.execute("DROP SEQUENCE invoice_credit_number_seq")
    op.drop_constraint("payment_tendered_is_cash", "payment", type_="check")
    op.drop_column("payment", "tendered")
    op.drop_index("invoice_transferred_from_idx", table_name="invoice")
    op.drop_column("invoice", "transferred_from")
