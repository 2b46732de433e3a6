"""The financial layer's tables: fee schedule, charges, accounts, invoices, claims and payments (financial layer).

Revision ID: t0006
Revises: t0005
Create Date: 2026-11-26

`charge` and `payment` are detail tables of entry kinds and append-only like the clinical ones: the
tenant role keeps SELECT and INSERT, so a charge is undone only by a credit (a new charge that
`reverses` it) and a receipt, once issued, stays. Money is NUMERIC — exact, keeping the scale of its
currency — beside its currency; CHECK constraints keep the money columns honest even against a buggy
caller (a posted charge has an amount, an unpriced one has none; a payment is positive). Numbers
people read aloud — accounts, invoices, claims, receipts — come from sequences.
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "t0006"
down_revision = "t0005"
branch_labels = None
depends_on = None

JSONB = postgresql.JSONB
MONEY = sa.Numeric()
APPEND_ONLY = ("charge", "payment")
SEQUENCES = ("account_number_seq", "invoice_number_seq", "claim_number_seq", "receipt_number_seq")


def _entry_key() -> sa.Column:
    return sa.Column("entry_id", sa.Uuid(), sa.ForeignKey("entry.id"), primary_key=True)


def upgrade() -> None:
    op.create_table(
        "billing_setting",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("currency", sa.Text(), nullable=False),
        sa.Column("minor_units", sa.Integer(), nullable=False),
        sa.Column("timezone", sa.Text(), nullable=False),
        sa.Column("census_time", sa.Time(), nullable=False),
        sa.Column("self_pay_price_list", sa.Text(), nullable=True),
        sa.CheckConstraint("id = 1", name="billing_setting_one_row"),
    )
    op.create_table(
        "price_list",
        sa.Column("code", sa.Text(), primary_key=True),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False, server_default=sa.true()),
    )
    op.create_table(
        "payer",
        sa.Column("code", sa.Text(), primary_key=True),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("price_list", sa.Text(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False, server_default=sa.true()),
        sa.CheckConstraint("kind IN ('self_pay', 'national_insurance', 'private_insurance')", name="payer_kind_known"),
    )
    op.create_table(
        "fee_item",
        sa.Column("kind", sa.Text(), primary_key=True),
        sa.Column("match_code", sa.Text(), primary_key=True),
        sa.Column("price_list", sa.Text(), primary_key=True),
        sa.Column("effective_from", sa.Date(), primary_key=True),
        sa.Column("effective_to", sa.Date(), nullable=True),
        sa.Column("code", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("department", sa.Text(), nullable=True),
        sa.Column("unit", sa.Text(), nullable=True),
        sa.Column("per", sa.Numeric(), nullable=False),
        sa.Column("price", MONEY, nullable=False),
        sa.CheckConstraint("price >= 0", name="fee_item_price_not_negative"),
    )
    op.create_table(
        "account",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("number", sa.Text(), nullable=False),
        sa.Column("patient_id", sa.Uuid(), nullable=False),
        sa.Column("encounter_id", sa.Uuid(), nullable=True),
        sa.Column("payer_code", sa.Text(), nullable=True),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.UniqueConstraint("number", name="account_number_key"),
        sa.UniqueConstraint("patient_id", "encounter_id", name="account_patient_encounter_key",
                            postgresql_nulls_not_distinct=True),
    )
    op.create_table(
        "charge",
        _entry_key(),
        sa.Column("account_id", sa.Uuid(), sa.ForeignKey("account.id"), nullable=False),
        sa.Column("source_entry_id", sa.Uuid(), sa.ForeignKey("entry.id"), nullable=False),
        sa.Column("source_root_id", sa.Uuid(), nullable=False),
        sa.Column("source_kind", sa.Text(), nullable=False),
        sa.Column("item_kind", sa.Text(), nullable=False),
        sa.Column("item_code", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("department", sa.Text(), nullable=False),
        sa.Column("service_date", sa.Date(), nullable=False),
        sa.Column("quantity", sa.Numeric(), nullable=False),
        sa.Column("unit_price", MONEY, nullable=True),
        sa.Column("amount", MONEY, nullable=True),
        sa.Column("currency", sa.Text(), nullable=False),
        sa.Column("price_list", sa.Text(), nullable=True),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("unpriced_reason", sa.Text(), nullable=True),
        sa.Column("reverses", sa.Uuid(), nullable=True),
        sa.CheckConstraint("status IN ('posted', 'unpriced')", name="charge_status_known"),
        sa.CheckConstraint("(status = 'posted') = (amount IS NOT NULL AND unit_price IS NOT NULL)",
                           name="charge_priced_when_posted"),
        sa.CheckConstraint("(status = 'unpriced') = (unpriced_reason IS NOT NULL)", name="charge_unpriced_says_why"),
        sa.CheckConstraint("(reverses IS NULL) = (quantity > 0)", name="charge_credit_is_negative"),
    )
    op.create_index("charge_source_root_idx", "charge", ["source_root_id"])
    op.create_index("charge_account_idx", "charge", ["account_id"])
    op.create_index("charge_service_date_idx", "charge", ["service_date"])
    op.create_index("charge_reverses_idx", "charge", ["reverses"])

    op.create_table(
        "invoice",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("number", sa.Text(), nullable=False),
        sa.Column("account_id", sa.Uuid(), sa.ForeignKey("account.id"), nullable=False),
        sa.Column("patient_id", sa.Uuid(), nullable=False),
        sa.Column("payer_code", sa.Text(), nullable=True),
        sa.Column("currency", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("created_by", sa.Uuid(), nullable=False),
        sa.Column("finalised_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finalised_by", sa.Uuid(), nullable=True),
        sa.Column("subtotal", MONEY, nullable=True),
        sa.Column("adjustments", MONEY, nullable=True),
        sa.Column("total", MONEY, nullable=True),
        sa.UniqueConstraint("number", name="invoice_number_key"),
        sa.CheckConstraint("status IN ('draft', 'final')", name="invoice_status_known"),
        sa.CheckConstraint("(status = 'final') = (total IS NOT NULL AND finalised_at IS NOT NULL)",
                           name="invoice_final_is_frozen"),
        sa.CheckConstraint("total IS NULL OR total = subtotal - adjustments", name="invoice_total_adds_up"),
    )
    op.create_index("invoice_account_idx", "invoice", ["account_id"])
    op.create_index("invoice_patient_idx", "invoice", ["patient_id"])
    op.create_index("invoice_one_draft_key", "invoice", ["account_id"], unique=True,
                    postgresql_where=sa.text("status = 'draft'"))
    op.create_table(
        "invoice_line",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("invoice_id", sa.Uuid(), sa.ForeignKey("invoice.id"), nullable=False),
        sa.Column("charge_entry_id", sa.Uuid(), sa.ForeignKey("entry.id"), nullable=False),
        sa.Column("charge_root_id", sa.Uuid(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("service_date", sa.Date(), nullable=False),
        sa.Column("quantity", sa.Numeric(), nullable=False),
        sa.Column("unit_price", MONEY, nullable=False),
        sa.Column("amount", MONEY, nullable=False),
        sa.UniqueConstraint("charge_root_id", name="invoice_line_charge_key"),
    )
    op.create_index("invoice_line_invoice_idx", "invoice_line", ["invoice_id"])
    op.create_table(
        "invoice_adjustment",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("invoice_id", sa.Uuid(), sa.ForeignKey("invoice.id"), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("percent", sa.Numeric(5, 2), nullable=True),
        sa.Column("amount", MONEY, nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("approved_by", sa.Text(), nullable=False),
        sa.Column("recorded_by", sa.Uuid(), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint("kind IN ('discount', 'exemption')", name="invoice_adjustment_kind_known"),
        sa.CheckConstraint("(percent IS NULL) <> (amount IS NULL)", name="invoice_adjustment_percent_or_amount"),
        sa.CheckConstraint("percent IS NULL OR (percent > 0 AND percent <= 100)", name="invoice_adjustment_percent"),
        sa.CheckConstraint("amount IS NULL OR amount > 0", name="invoice_adjustment_amount_positive"),
    )
    op.create_index("invoice_adjustment_invoice_idx", "invoice_adjustment", ["invoice_id"])
    op.create_table(
        "payment",
        _entry_key(),
        sa.Column("invoice_id", sa.Uuid(), sa.ForeignKey("invoice.id"), nullable=False),
        sa.Column("receipt_number", sa.Text(), nullable=False),
        sa.Column("method", sa.Text(), nullable=False),
        sa.Column("amount", MONEY, nullable=False),
        sa.Column("currency", sa.Text(), nullable=False),
        sa.Column("reference", sa.Text(), nullable=True),
        sa.Column("payer_code", sa.Text(), nullable=True),
        sa.UniqueConstraint("receipt_number", name="payment_receipt_number_key"),
        sa.CheckConstraint("method IN ('cash', 'mobile_money', 'card', 'insurer_remittance')",
                           name="payment_method_known"),
        sa.CheckConstraint("amount > 0", name="payment_amount_positive"),
    )
    op.create_index("payment_invoice_idx", "payment", ["invoice_id"])
    op.create_table(
        "coverage",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("patient_id", sa.Uuid(), nullable=False),
        sa.Column("payer_code", sa.Text(), sa.ForeignKey("payer.code"), nullable=False),
        sa.Column("member_number", sa.Text(), nullable=False),
        sa.Column("valid_from", sa.Date(), nullable=False),
        sa.Column("valid_to", sa.Date(), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False, server_default=sa.true()),
        sa.Column("recorded_by", sa.Uuid(), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )
    op.create_index("coverage_patient_idx", "coverage", ["patient_id"])
    op.create_table(
        "claim",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("number", sa.Text(), nullable=False),
        sa.Column("invoice_id", sa.Uuid(), sa.ForeignKey("invoice.id"), nullable=False),
        sa.Column("patient_id", sa.Uuid(), nullable=False),
        sa.Column("payer_code", sa.Text(), nullable=False),
        sa.Column("member_number", sa.Text(), nullable=True),
        sa.Column("amount", MONEY, nullable=False),
        sa.Column("currency", sa.Text(), nullable=False),
        sa.Column("diagnosis_codes", JSONB(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("rejection_reason", sa.Text(), nullable=True),
        sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.UniqueConstraint("number", name="claim_number_key"),
        sa.UniqueConstraint("invoice_id", name="claim_invoice_key"),
        sa.CheckConstraint("status IN ('submitted', 'accepted', 'rejected', 'paid')", name="claim_status_known"),
        sa.CheckConstraint("(status = 'rejected') = (rejection_reason IS NOT NULL)", name="claim_rejection_says_why"),
    )
    op.create_table(
        "claim_event",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("claim_id", sa.Uuid(), sa.ForeignKey("claim.id"), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("author_id", sa.Uuid(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )
    op.create_index("claim_event_claim_idx", "claim_event", ["claim_id"])
    op.create_table(
        "bed_day_accrual",
        sa.Column("admission_root_id", sa.Uuid(), primary_key=True),
        sa.Column("census_date", sa.Date(), primary_key=True),
        sa.Column("charge_entry_id", sa.Uuid(), sa.ForeignKey("entry.id"), nullable=False),
    )
    for sequence in SEQUENCES:
        op.execute(f"CREATE SEQUENCE {sequence}")

    # The tenant role (named like the schema) may append charges and payments, never rewrite them, and
    # never change a claim's history. Provisioning creates the role before migrating.
    bind = op.get_bind()
    role = bind.execute(sa.text("SELECT rolname FROM pg_roles WHERE rolname = current_schema()")).scalar()
    if role is not None:
        quoted = bind.dialect.identifier_preparer.quote_identifier(role)
        op.execute(f"REVOKE UPDATE, DELETE, TRUNCATE ON charge, payment, claim_event, invoice_line, "
                   f"invoice_adjustment, bed_day_accrual FROM {quoted}")


def downgrade() -> None:
    for table in ("bed_day_accrual", "claim_event", "claim", "coverage", "payment", "invoice_adjustment",
                  "invoice_line", "invoice", "charge", "account", "fee_item", "payer", "price_list",
                  "billing_setting"):
        op.drop_table(table)
    for sequence in SEQUENCES:
        op.execute(f"DROP SEQUENCE {sequence}")
