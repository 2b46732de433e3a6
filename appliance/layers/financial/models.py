"""Tables of the financial layer, in every tenant schema.

- **the fee schedule**, synchronised from the tenant file: `billing_setting` (one row: currency, time
  zone, census time, the self-pay price list), `price_list`, `payer`, `fee_item` (one row per item,
  price list and period);
- **detail tables of entry kinds** (append-only, like every detail table): `charge` — a revenue event
  pointing at the clinical entry it bills, or, with `reverses`, the credit that undoes one — and
  `payment`, each with its receipt number;
- **the revenue cycle's working tables**, which change as a bill moves on: `account` (one per
  encounter, or one per patient for care outside an encounter), `invoice` (draft → final) with its
  frozen `invoice_line`s and `invoice_adjustment`s (discounts and exemptions with reason and
  approver), the `invoice_credit`s that correct a final invoice (credit notes with their
  `invoice_credit_line`s, an insurer's shortfall written off or transferred to the patient), the `refund`s
  of what was overpaid on one, `coverage` (a patient's insurance membership), `claim` and its `claim_event`s, and
  `bed_day_accrual` (which census each admission has been charged for).

Money columns are NUMERIC (exact decimals, never float), always beside the currency they are in.
Columns marked "patient data" hold information about a person.
"""

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from appliance.substrate import record
from appliance.substrate.db import tenant_metadata

JSONB = postgresql.JSONB
# Unconstrained NUMERIC: an amount keeps the scale it was rounded to (two places for KES, none for UGX),
# so what is stored is what is shown; every amount is rounded to its currency before it is written.
MONEY = sa.Numeric()

# -- the fee schedule (from the tenant file) ----------------------------------------------------------

billing_setting = sa.Table(
    "billing_setting",
    tenant_metadata,
    sa.Column("id", sa.Integer, primary_key=True),  # always 1: one row per facility
    sa.Column("currency", sa.Text, nullable=False),
    sa.Column("minor_units", sa.Integer, nullable=False),
    sa.Column("timezone", sa.Text, nullable=False),
    sa.Column("census_time", sa.Time, nullable=False),
    sa.Column("self_pay_price_list", sa.Text, nullable=True),  # None: no fee schedule, every charge unpriced
)

price_list = sa.Table(
    "price_list",
    tenant_metadata,
    sa.Column("code", sa.Text, primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
)

payer = sa.Table(
    "payer",
    tenant_metadata,
    sa.Column("code", sa.Text, primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("kind", sa.Text, nullable=False),  # self_pay, national_insurance, private_insurance
    sa.Column("price_list", sa.Text, nullable=False),
    sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
)

fee_item = sa.Table(
    "fee_item",
    tenant_metadata,
    sa.Column("kind", sa.Text, primary_key=True),  # lab, imaging, procedure, consultation, bed_day, medication
    sa.Column("match_code", sa.Text, primary_key=True),  # the code, lower-cased: what a billable entry is matched on
    sa.Column("price_list", sa.Text, primary_key=True),
    sa.Column("effective_from", sa.Date, primary_key=True),
    sa.Column("effective_to", sa.Date, nullable=True),  # last day (inclusive)
    sa.Column("code", sa.Text, nullable=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("department", sa.Text, nullable=True),
    sa.Column("unit", sa.Text, nullable=True),
    sa.Column("per", sa.Numeric, nullable=False),
    sa.Column("price", MONEY, nullable=False),
)

# -- accounts -----------------------------------------------------------------------------------------

account = sa.Table(
    "account",
    tenant_metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("number", sa.Text, nullable=False),
    sa.Column("patient_id", sa.Uuid, nullable=False),  # patient data: whose bill
    sa.Column("encounter_id", sa.Uuid, nullable=True),  # None: care outside an encounter
    sa.Column("payer_code", sa.Text, nullable=True),  # who the account bills; None: the patient (self-pay)
    sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.UniqueConstraint("number", name="account_number_key"),
    # One account per encounter, and one per patient for care outside an encounter (NULLs equal).
    sa.UniqueConstraint("patient_id", "encounter_id", name="account_patient_encounter_key",
                        postgresql_nulls_not_distinct=True),
)

# -- detail tables of entry kinds (append-only) --------------------------------------------------------

charge = sa.Table(
    "charge",
    tenant_metadata,
    sa.Column("entry_id", sa.Uuid, sa.ForeignKey("entry.id"), primary_key=True),
    sa.Column("account_id", sa.Uuid, sa.ForeignKey("account.id"), nullable=False),
    # The billable entry (the version that was billed) and its record's root, which credits look up.
    sa.Column("source_entry_id", sa.Uuid, sa.ForeignKey("entry.id"), nullable=False),
    sa.Column("source_root_id", sa.Uuid, nullable=False),
    sa.Column("source_kind", sa.Text, nullable=False),
    sa.Column("item_kind", sa.Text, nullable=False),
    sa.Column("item_code", sa.Text, nullable=False),
    sa.Column("description", sa.Text, nullable=False),  # patient data: what was done to whom
    sa.Column("department", sa.Text, nullable=False),
    sa.Column("service_date", sa.Date, nullable=False),  # the facility's local day of the care
    sa.Column("quantity", sa.Numeric, nullable=False),  # negative on a credit
    sa.Column("unit_price", MONEY, nullable=True),
    sa.Column("amount", MONEY, nullable=True),  # quantity × unit price, rounded; None while unpriced
    sa.Column("currency", sa.Text, nullable=False),
    sa.Column("price_list", sa.Text, nullable=True),
    sa.Column("status", sa.Text, nullable=False),  # posted, unpriced
    sa.Column("unpriced_reason", sa.Text, nullable=True),
    sa.Column("reverses", sa.Uuid, nullable=True),  # on a credit: the root id of the charge it undoes
    sa.Index("charge_source_root_idx", "source_root_id"),
    sa.Index("charge_account_idx", "account_id"),
    sa.Index("charge_service_date_idx", "service_date"),
    sa.Index("charge_reverses_idx", "reverses"),
)

payment = sa.Table(
    "payment",
    tenant_metadata,
    sa.Column("entry_id", sa.Uuid, sa.ForeignKey("entry.id"), primary_key=True),
    sa.Column("invoice_id", sa.Uuid, sa.ForeignKey("invoice.id"), nullable=False),
    sa.Column("receipt_number", sa.Text, nullable=False),
    sa.Column("method", sa.Text, nullable=False),  # cash, mobile_money, card, insurer_remittance
    sa.Column("amount", MONEY, nullable=False),
    sa.Column("currency", sa.Text, nullable=False),
    sa.Column("reference", sa.Text, nullable=True),  # a mobile-money or card transaction id, a remittance advice
    sa.Column("payer_code", sa.Text, nullable=True),  # the insurer, for a remittance
    # Cash handed over (the payment is what was owed; the change is the difference); None before t0018 and
    # for other methods, which are never more than is owed.
    sa.Column("tendered", MONEY, nullable=True),
    sa.UniqueConstraint("receipt_number", name="payment_receipt_number_key"),
    sa.Index("payment_invoice_idx", "invoice_id"),
    # A mobile-money or card code already receipted is looked up as typed, in either case (service.py, t0046).
    sa.Index("payment_reference_idx", sa.text("upper(reference)"), postgresql_where=sa.text("reference IS NOT NULL")),
)

# -- invoices, coverage, claims ----------------------------------------------------------------------

invoice = sa.Table(
    "invoice",
    tenant_metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("number", sa.Text, nullable=False),
    sa.Column("account_id", sa.Uuid, sa.ForeignKey("account.id"), nullable=False),
    sa.Column("patient_id", sa.Uuid, nullable=False),  # patient data
    sa.Column("payer_code", sa.Text, nullable=True),  # None: the patient pays
    sa.Column("currency", sa.Text, nullable=False),
    sa.Column("status", sa.Text, nullable=False),  # draft, final
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("created_by", sa.Uuid, nullable=False),
    sa.Column("finalised_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("finalised_by", sa.Uuid, nullable=True),
    # Frozen when the invoice becomes final; a draft's figures are computed from its account's charges.
    sa.Column("subtotal", MONEY, nullable=True),
    sa.Column("adjustments", MONEY, nullable=True),
    sa.Column("total", MONEY, nullable=True),
    # On a patient's invoice made by transferring an insurer's shortfall to them: the insurer's invoice. It has
    # no lines of its own (the care is on that invoice); its total is the shortfall.
    sa.Column("transferred_from", sa.Uuid, sa.ForeignKey("invoice.id"), nullable=True),
    sa.UniqueConstraint("number", name="invoice_number_key"),
    sa.Index("invoice_account_idx", "account_id"),
    sa.Index("invoice_patient_idx", "patient_id"),
    sa.Index("invoice_transferred_from_idx", "transferred_from"),
    # One draft per account at a time: two clerks drafting at once get one draft, not two.
    sa.Index("invoice_one_draft_key", "account_id", unique=True, postgresql_where=sa.text("status = 'draft'")),
)

invoice_line = sa.Table(
    "invoice_line",
    tenant_metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("invoice_id", sa.Uuid, sa.ForeignKey("invoice.id"), nullable=False),
    sa.Column("charge_entry_id", sa.Uuid, sa.ForeignKey("entry.id"), nullable=False),
    sa.Column("charge_root_id", sa.Uuid, nullable=False),
    sa.Column("description", sa.Text, nullable=False),  # patient data
    sa.Column("service_date", sa.Date, nullable=False),
    sa.Column("quantity", sa.Numeric, nullable=False),
    sa.Column("unit_price", MONEY, nullable=False),
    sa.Column("amount", MONEY, nullable=False),
    # A charge is billed on one final invoice only.
    sa.UniqueConstraint("charge_root_id", name="invoice_line_charge_key"),
    sa.Index("invoice_line_invoice_idx", "invoice_id"),
)

invoice_adjustment = sa.Table(
    "invoice_adjustment",
    tenant_metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("invoice_id", sa.Uuid, sa.ForeignKey("invoice.id"), nullable=False),
    sa.Column("kind", sa.Text, nullable=False),  # discount, exemption
    sa.Column("percent", sa.Numeric(5, 2), nullable=True),  # a share of the subtotal, or None for a fixed amount
    sa.Column("amount", MONEY, nullable=True),  # the fixed amount (positive: it reduces what is owed)
    sa.Column("reason", sa.Text, nullable=False),  # patient data: why (e.g. a waiver scheme, hardship)
    sa.Column("approved_by", sa.Text, nullable=False),  # who authorised it, as named on the approval
    sa.Column("recorded_by", sa.Uuid, nullable=False),
    sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Index("invoice_adjustment_invoice_idx", "invoice_id"),
)

invoice_credit = sa.Table(
    "invoice_credit",
    tenant_metadata,
    # What a final invoice is credited with besides payments (it is never edited): a credit note for lines
    # billed in error or at the wrong price, or an insurer's shortfall written off or transferred to the patient.
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("number", sa.Text, nullable=False),  # CN-, WO- or TR- and one sequence
    sa.Column("invoice_id", sa.Uuid, sa.ForeignKey("invoice.id"), nullable=False),
    sa.Column("patient_id", sa.Uuid, nullable=False),  # patient data
    sa.Column("kind", sa.Text, nullable=False),  # credit_note, write_off, transfer
    sa.Column("amount", MONEY, nullable=False),  # positive: it reduces what is owed
    sa.Column("currency", sa.Text, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),  # patient data: why (what was billed in error, the insurer's answer)
    sa.Column("transfer_invoice_id", sa.Uuid, sa.ForeignKey("invoice.id"), nullable=True),  # a transfer's new invoice
    sa.Column("recorded_by", sa.Uuid, nullable=False),
    sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.UniqueConstraint("number", name="invoice_credit_number_key"),
    sa.Index("invoice_credit_invoice_idx", "invoice_id"),
)

invoice_credit_line = sa.Table(
    "invoice_credit_line",
    tenant_metadata,
    # A credit note's lines: which invoice line, and how much of it is credited (at most what is left of it).
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("credit_id", sa.Uuid, sa.ForeignKey("invoice_credit.id"), nullable=False),
    sa.Column("invoice_line_id", sa.Uuid, sa.ForeignKey("invoice_line.id"), nullable=False),
    sa.Column("amount", MONEY, nullable=False),
    sa.Index("invoice_credit_line_credit_idx", "credit_id"),
    sa.Index("invoice_credit_line_line_idx", "invoice_line_id"),
)

refund = sa.Table(
    "refund",
    tenant_metadata,
    # Money given back: what was paid on a final invoice beyond what is owed once a credit note took some of it
    # off, to the patient or (payer_code) the insurer that paid it. Never more than was overpaid (refunds.py).
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("number", sa.Text, nullable=False),  # RFD-
    sa.Column("invoice_id", sa.Uuid, sa.ForeignKey("invoice.id"), nullable=False),
    sa.Column("patient_id", sa.Uuid, nullable=False),  # patient data
    sa.Column("payer_code", sa.Text, nullable=True),  # the insurer refunded; None: the patient
    sa.Column("method", sa.Text, nullable=False),  # cash, mobile_money, card, bank_transfer
    sa.Column("amount", MONEY, nullable=False),
    sa.Column("currency", sa.Text, nullable=False),
    sa.Column("reference", sa.Text, nullable=True),  # the mobile-money, card reversal or bank transfer id
    sa.Column("reason", sa.Text, nullable=False),  # patient data: why (the credit note that made it owed)
    sa.Column("recorded_by", sa.Uuid, nullable=False),
    sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.UniqueConstraint("number", name="refund_number_key"),
    sa.Index("refund_invoice_idx", "invoice_id"),
    sa.Index("refund_recorded_at_idx", "recorded_at"),
)

coverage = sa.Table(
    "coverage",
    tenant_metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("patient_id", sa.Uuid, nullable=False),  # patient data: whose insurance
    sa.Column("payer_code", sa.Text, sa.ForeignKey("payer.code"), nullable=False),
    sa.Column("member_number", sa.Text, nullable=False),  # patient data
    sa.Column("valid_from", sa.Date, nullable=False),
    sa.Column("valid_to", sa.Date, nullable=True),
    sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("recorded_by", sa.Uuid, nullable=False),
    sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Index("coverage_patient_idx", "patient_id"),
)

claim = sa.Table(
    "claim",
    tenant_metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("number", sa.Text, nullable=False),
    sa.Column("invoice_id", sa.Uuid, sa.ForeignKey("invoice.id"), nullable=False),
    sa.Column("patient_id", sa.Uuid, nullable=False),  # patient data
    sa.Column("payer_code", sa.Text, nullable=False),
    sa.Column("member_number", sa.Text, nullable=True),  # patient data
    sa.Column("amount", MONEY, nullable=False),
    sa.Column("currency", sa.Text, nullable=False),
    sa.Column("diagnosis_codes", JSONB, nullable=False),  # patient data: ICD-10 codes from the record
    # submitted, accepted, rejected, paid; amended (a credit note changed the amount: to be sent again) or
    # withdrawn (a credit note left nothing to claim)
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("rejection_reason", sa.Text, nullable=True),
    sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.UniqueConstraint("number", name="claim_number_key"),
    sa.UniqueConstraint("invoice_id", name="claim_invoice_key"),
)

claim_event = sa.Table(
    "claim_event",
    tenant_metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("claim_id", sa.Uuid, sa.ForeignKey("claim.id"), nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("reason", sa.Text, nullable=True),
    sa.Column("author_id", sa.Uuid, nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Index("claim_event_claim_idx", "claim_id"),
)

bed_day_accrual = sa.Table(
    "bed_day_accrual",
    tenant_metadata,
    # One bed-day per admission per census: the key makes a second accrual run (or a racing one) a no-op.
    sa.Column("admission_root_id", sa.Uuid, primary_key=True),
    sa.Column("census_date", sa.Date, primary_key=True),
    sa.Column("charge_entry_id", sa.Uuid, sa.ForeignKey("entry.id"), nullable=False),
)

# -- KPI 8's projection ----------------------------------------------------------------------------------

charge_capture = sa.Table(
    "charge_capture",
    tenant_metadata,
    # One row per billable record and the charge that bills it, kept by reactions (capture.py) so the
    # command center counts a window's same-day captures over one indexed range instead of matching
    # the record's billable entries to their charges on every request. Columns as reports.py reads them.
    sa.Column("root_id", sa.Uuid, primary_key=True),  # the billable record (its first version's id)
    sa.Column("entry_id", sa.Uuid, nullable=False),  # its current version
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("patient_id", sa.Uuid, nullable=False),  # patient data: whose care
    sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),  # when the care happened
    sa.Column("what", sa.Text, nullable=False),  # patient data: the test, drug or consultation
    sa.Column("department", sa.Text, nullable=False),
    sa.Column("charge_id", sa.Uuid, nullable=True),  # the current, un-credited charge; None: missing
    sa.Column("charge_status", sa.Text, nullable=True),  # posted, unpriced
    sa.Column("charged_at", sa.DateTime(timezone=True), nullable=True),  # when that charge was recorded
    sa.Column("service_date", sa.Date, nullable=True),  # the charge's service day
    # Facility-local days (billing_setting's time zone) of occurred_at and charged_at.
    sa.Column("care_day", sa.Date, nullable=False),
    sa.Column("charged_day", sa.Date, nullable=True),
    sa.Index("charge_capture_occurred_idx", "occurred_at"),
)

KINDS: dict[str, sa.Table] = {"charge": charge, "payment": payment}
for _kind, _table in KINDS.items():
    record.register_kind(_kind, _table)

APPEND_ONLY = ["charge", "payment"]
