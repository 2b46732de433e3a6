"""Financial layer: fee schedules, charges captured as reactions, accounts, invoices, claims, payments.

It owns what care costs and who pays: the facility's fee schedule and payers (from its tenant file),
a charge written in the same transaction as each billable clinical or nursing act (or its credit when
the act is cancelled or entered in error; an unpriced charge when the schedule has no price), an
account per encounter, invoices from draft to final with discounts and exemptions, credit notes
correcting a final invoice, insurance
coverage and claims, payments with receipts, and the revenue-cycle reports: same-day charge variance,
the late-charge rate, A/R aging and days in A/R. It reads other layers' entries only through the
record and by SQL over the tenant schema, never by importing them.
"""

from appliance.layers.financial import accrual, capture, credits, models, reactions, reports, schedule, service

__all__ = ["accrual", "capture", "credits", "models", "reactions", "reports", "schedule", "service"]
