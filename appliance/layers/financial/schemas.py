"""Request and response shapes of the financial layer.

Requests refuse unknown fields; responses are explicit allow-lists. Money travels as a decimal string
(`"450.00"`) beside its currency — JSON numbers are floats in most clients, and money is never float.
"""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer

MoneyOut = Annotated[Decimal, PlainSerializer(lambda v: format(v, "f"), return_type=str, when_used="json")]
Reason = Annotated[str, Field(min_length=3, max_length=1000)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class ChargeOut(_Out):
    id: uuid.UUID
    root_id: uuid.UUID
    recorded_at: dt.datetime
    patient_id: uuid.UUID
    account_id: uuid.UUID
    source_entry_id: uuid.UUID
    source_root_id: uuid.UUID
    source_kind: str
    item_kind: str
    item_code: str
    description: str
    department: str
    service_date: dt.date
    quantity: Decimal
    unit_price: MoneyOut | None
    amount: MoneyOut | None
    currency: str
    price_list: str | None
    status: str
    unpriced_reason: str | None
    reverses: uuid.UUID | None


class PriceIn(_In):
    unit_price: Decimal = Field(ge=0, max_digits=15, decimal_places=3)
    reason: Reason


class AccountOut(_Out):
    id: uuid.UUID
    number: str
    patient_id: uuid.UUID
    encounter_id: uuid.UUID | None
    payer_code: str | None
    opened_at: dt.datetime
    charged: MoneyOut
    unpriced: int


class AccountDetail(AccountOut):
    currency: str
    charges: list[ChargeOut]
    invoice_ids: list[uuid.UUID]


class InvoiceLineOut(_Out):
    id: uuid.UUID | None = None  # a final invoice's line (what a credit note names); None on a draft
    charge_entry_id: uuid.UUID
    description: str
    service_date: dt.date
    quantity: Decimal
    unit_price: MoneyOut | None
    amount: MoneyOut | None
    status: str
    credited: MoneyOut  # by credit notes since the invoice became final


class CreditLineIn(_In):
    line_id: uuid.UUID  # a line of the final invoice (InvoiceLineOut.id)
    amount: Decimal | None = Field(default=None, gt=0, max_digits=15, decimal_places=3)  # None: all that is left


class CreditNoteIn(_In):
    lines: list[CreditLineIn] = Field(min_length=1, max_length=500)
    reason: Reason


class ShortfallIn(_In):
    """What an insurer left unpaid, written off or transferred to the patient."""

    amount: Decimal | None = Field(default=None, gt=0, max_digits=15, decimal_places=3)  # None: all outstanding
    reason: Reason


class CreditLineOut(_Out):
    invoice_line_id: uuid.UUID
    description: str
    service_date: dt.date
    line_amount: MoneyOut
    amount: MoneyOut


class CreditSummary(_Out):
    """A credit on a final invoice: a credit note (lines billed in error or at the wrong price), or an insurer's
    shortfall written off or transferred to the patient (on the invoice `transfer_invoice_number`)."""

    id: uuid.UUID
    number: str
    kind: Literal["credit_note", "write_off", "transfer"]
    amount: MoneyOut
    currency: str
    reason: str
    lines: list[CreditLineOut]
    transfer_invoice_id: uuid.UUID | None
    transfer_invoice_number: str | None
    recorded_by: uuid.UUID
    recorded_at: dt.datetime


class CreditOut(CreditSummary):
    invoice_id: uuid.UUID
    invoice_number: str
    patient_id: uuid.UUID
    invoice_total: MoneyOut
    outstanding: MoneyOut  # still owed on the invoice after this and every other credit and payment
    overpaid: MoneyOut  # paid beyond what is now owed (a credit note after payment): a refund is owed


class AdjustmentIn(_In):
    kind: Literal["discount", "exemption"]
    percent: Decimal | None = Field(default=None, gt=0, le=100, max_digits=5, decimal_places=2)
    amount: Decimal | None = Field(default=None, gt=0, max_digits=15, decimal_places=3)
    reason: Reason
    approved_by: Annotated[str, Field(min_length=2, max_length=200)]


class AdjustmentOut(_Out):
    id: uuid.UUID
    kind: str
    percent: Decimal | None
    amount: MoneyOut | None
    applied: MoneyOut  # what it took off
    asked: MoneyOut  # what it asked for (the percentage's amount, or the amount)
    capped: bool  # took less than it asked: an invoice never goes below zero, so it was capped at what was left
    reason: str
    approved_by: str
    recorded_by: uuid.UUID
    recorded_at: dt.datetime


class PaymentLine(_Out):
    id: uuid.UUID
    receipt_number: str
    method: str
    amount: MoneyOut
    tendered: MoneyOut | None  # cash handed over (the change is tendered − amount)
    reference: str | None
    recorded_at: dt.datetime


class RefundIn(_In):
    """Money given back of what was paid beyond what is owed on a final invoice."""

    method: Literal["cash", "mobile_money", "card", "bank_transfer"]
    amount: Decimal = Field(gt=0, max_digits=15, decimal_places=3)
    reference: str | None = Field(default=None, max_length=120)  # required but for cash
    reason: Reason
    # Who is given it back: the patient (what they paid) or the insurer (its remittances); needed only when both
    # paid on the invoice.
    to: Literal["patient", "insurer"] | None = None


class RefundSummary(_Out):
    id: uuid.UUID
    number: str
    payer_code: str | None  # the insurer refunded; None: the patient
    method: str
    amount: MoneyOut
    currency: str
    reference: str | None
    reason: str
    recorded_by: uuid.UUID
    recorded_at: dt.datetime


class RefundOut(RefundSummary):
    invoice_id: uuid.UUID
    invoice_number: str
    patient_id: uuid.UUID
    invoice_total: MoneyOut
    outstanding: MoneyOut
    overpaid: MoneyOut  # still overpaid on the invoice after this refund


class InvoiceOut(_Out):
    id: uuid.UUID
    number: str
    account_id: uuid.UUID
    patient_id: uuid.UUID
    payer_code: str | None
    currency: str
    status: str
    created_at: dt.datetime
    finalised_at: dt.datetime | None
    subtotal: MoneyOut
    adjustments: MoneyOut
    total: MoneyOut
    paid: MoneyOut
    credited: MoneyOut
    outstanding: MoneyOut | None  # total − paid + refunded − credited, once final (never below zero)
    overpaid: MoneyOut | None  # paid beyond what is owed once final (a credit note after payment): to refund
    # To whom a refund may go (patient, insurer: each that paid) and at most how much; empty when none is owed.
    refundable: dict[Literal["patient", "insurer"], MoneyOut] = {}
    remitted: MoneyOut  # of what was paid, the insurer's remittances
    refunded: MoneyOut
    unpriced: int
    lines: list[InvoiceLineOut]
    adjustment_list: list[AdjustmentOut]
    payments: list[PaymentLine]
    credits: list[CreditSummary]
    refunds: list[RefundSummary]
    transferred_from: uuid.UUID | None  # the insurer's invoice whose shortfall this one bills the patient for


class PaymentIn(_In):
    method: Literal["cash", "mobile_money", "card", "insurer_remittance"]
    # What was received. Cash above what is owed records what is owed and says the change (ReceiptOut.change).
    amount: Decimal = Field(gt=0, max_digits=15, decimal_places=3)
    reference: str | None = Field(default=None, max_length=120)
    # A mobile-money code or card reference already on a receipt here is refused (422 naming it) unless the
    # cashier says that one transfer or card payment pays both invoices.
    transaction_code_reused_confirmed: bool = False


class ReceiptOut(_Out):
    id: uuid.UUID
    receipt_number: str
    invoice_id: uuid.UUID
    invoice_number: str
    method: str
    amount: MoneyOut  # what was paid against the invoice
    tendered: MoneyOut | None  # cash handed over; None for other methods (and cash taken before t0018)
    change: MoneyOut | None  # tendered − amount: to give back
    currency: str
    reference: str | None
    recorded_at: dt.datetime
    invoice_total: MoneyOut
    outstanding: MoneyOut


class CoverageIn(_In):
    payer_code: Annotated[str, Field(pattern=r"^[A-Z0-9][A-Z0-9_-]{0,15}$")]
    member_number: Annotated[str, Field(min_length=1, max_length=60)]
    valid_from: dt.date
    valid_to: dt.date | None = None


class CoverageOut(_Out):
    id: uuid.UUID
    patient_id: uuid.UUID
    payer_code: str
    payer_name: str
    member_number: str
    valid_from: dt.date
    valid_to: dt.date | None
    active: bool


class CoverageAccountOut(_Out):
    """What recording a cover did to one of the patient's accounts holding care in its dates."""

    account_id: uuid.UUID
    number: str
    outcome: Literal["switched", "already_insured", "final_invoice"]
    payer_code: str | None  # who the account bills now
    payer_name: str
    final_invoice: str | None
    rebilled: int  # charges billed again at the cover's payer's price
    unpriced: int  # of those, how many that payer's list has no price for
    amount_before: MoneyOut
    amount_after: MoneyOut
    before_cover: int  # open charges dated before the cover's start, left at their price
    after_cover: int
    currency: str
    summary: str


class CoverageRecordedOut(CoverageOut):
    """A cover just recorded, and the accounts it switched to its payer or left alone (and why)."""

    accounts: list[CoverageAccountOut]


class ClaimStatusIn(_In):
    status: Literal["accepted", "rejected", "paid", "submitted"]
    reason: str | None = Field(default=None, max_length=1000)


class ClaimEventOut(_Out):
    status: str  # the claim's status after the event
    reason: str | None  # the insurer's reason, or what a credit or refund on its invoice did to the claim
    author_id: uuid.UUID
    at: dt.datetime


class ClaimOut(_Out):
    id: uuid.UUID
    number: str
    invoice_id: uuid.UUID
    invoice_number: str
    patient_id: uuid.UUID
    payer_code: str
    member_number: str | None
    amount: MoneyOut  # what the insurer is asked for: the invoice's total less its credit notes
    currency: str
    diagnosis_codes: list[str]
    status: Literal["submitted", "accepted", "rejected", "paid", "amended", "withdrawn"]
    must_resend: bool  # amended by a credit note since it was sent: send it to the insurer again
    rejection_reason: str | None
    remitted: MoneyOut  # what the insurer has paid on the invoice
    refunded: MoneyOut  # given back on the invoice
    owed_back: MoneyOut  # paid beyond what is now claimed, not yet refunded
    submitted_at: dt.datetime
    updated_at: dt.datetime
    events: list[ClaimEventOut]


class VarianceEntry(_Out):
    entry_id: uuid.UUID
    kind: str
    patient_id: uuid.UUID
    occurred_at: dt.datetime
    what: str
    charge_id: uuid.UUID | None
    amount: MoneyOut | None


class VarianceDepartment(_Out):
    department: str
    billable: int
    same_day: int
    late: int
    unpriced: int
    missing: int
    amount: MoneyOut
    entries: dict[str, list[VarianceEntry]]


class VarianceTotals(_Out):
    billable: int
    same_day: int
    late: int
    unpriced: int
    missing: int
    amount: MoneyOut


class LateChargeRate(_Out):
    start: dt.date
    end: dt.date
    total: MoneyOut
    late: MoneyOut
    charges: int
    late_charges: int
    percent: float | None


class VarianceOut(_Out):
    day: dt.date
    currency: str
    departments: list[VarianceDepartment]
    totals: VarianceTotals
    same_day_percent: float | None
    late_charge_rate: LateChargeRate


class AgingOut(_Out):
    as_of: dt.date
    currency: str
    buckets: dict[str, MoneyOut]
    by_payer: dict[str, dict[str, MoneyOut]]  # by payer code; SELF: the patients themselves
    payer_names: dict[str, str]  # each code of by_payer, as the facility names the payer
    receivable: MoneyOut
    net_revenue: MoneyOut
    revenue_days: int
    net_days_in_ar: Decimal | None


class TakingsPayment(_Out):
    id: uuid.UUID
    receipt_number: str
    received_at: dt.datetime
    author_id: uuid.UUID  # who took it
    patient_id: uuid.UUID
    invoice_id: uuid.UUID
    invoice_number: str
    method: str
    amount: MoneyOut
    reference: str | None
    payer_code: str | None  # the insurer, for a remittance


class TakingsMethod(_Out):
    count: int
    amount: MoneyOut  # taken in
    refunds: int
    refunded: MoneyOut  # given back
    net: MoneyOut


class TakingsCashier(_Out):
    author_id: uuid.UUID
    count: int
    amount: MoneyOut
    refunds: int
    refunded: MoneyOut
    net: MoneyOut
    methods: dict[str, MoneyOut]  # net by method: what their drawer (or account) should hold


class TakingsRefund(_Out):
    id: uuid.UUID
    number: str
    recorded_at: dt.datetime
    recorded_by: uuid.UUID
    patient_id: uuid.UUID
    payer_code: str | None  # the insurer refunded; None: the patient
    invoice_id: uuid.UUID
    invoice_number: str
    method: str
    amount: MoneyOut
    reference: str | None
    reason: str


class TakingsCredit(_Out):
    id: uuid.UUID
    number: str
    kind: str
    amount: MoneyOut
    reason: str
    recorded_at: dt.datetime
    recorded_by: uuid.UUID
    patient_id: uuid.UUID
    invoice_id: uuid.UUID
    invoice_number: str


class TakingsOut(_Out):
    """A facility-local day's payments and refunds (the cash-up: money in, money out, net), by method and by who
    took or gave them, and the credits issued that day (no money in the drawer)."""

    day: dt.date
    currency: str
    total: MoneyOut  # taken in
    refunded: MoneyOut  # given back
    net: MoneyOut
    by_method: dict[str, TakingsMethod]
    by_person: list[TakingsCashier]
    payments: list[TakingsPayment]
    refunds: list[TakingsRefund]
    credited: MoneyOut
    credits: list[TakingsCredit]


class BalanceOut(_Out):
    patient_id: uuid.UUID
    currency: str
    invoiced: MoneyOut
    credited: MoneyOut
    paid: MoneyOut  # net of refunds
    refunded: MoneyOut
    outstanding: MoneyOut  # below zero: overpaid, owed back
    self_pay_outstanding: MoneyOut
    uninvoiced: MoneyOut


class AccrualOut(BaseModel):
    bed_days: int
