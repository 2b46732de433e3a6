"""Money: exact decimals in a currency, and the arithmetic of a bill with its rounding rules written down.

Never float. Amounts are `Decimal` quantised to the currency's minor units (ISO 4217: two for KES,
none for UGX, three for KWD). The rules, applied everywhere a figure is computed:

1. A charge line is rounded once: quantity × unit price, half away from zero (ROUND_HALF_UP on the
   magnitude), to the minor unit. Its credit is exactly its negation, so the two cancel to the cent.
2. An invoice's subtotal is the sum of its rounded lines — never re-rounded, never recomputed from
   unrounded products.
3. A percentage discount or exemption is rounded once, half up, on the subtotal; a fixed one is taken
   as given. Adjustments never take an invoice below zero: the last one is capped at what is left.
4. Total = subtotal − adjustments, frozen when the invoice is final; outstanding = total − payments −
   credits (credit notes correcting it, an insurer's shortfall written off or transferred to the patient);
   a payment above what is outstanding is refused (cash is recorded as what is owed, with what was
   tendered and the change to give back), and a credit note takes off at most what is still
   owed, so nothing is ever owed back by accident.
5. A/R aging splits each invoice's outstanding amount into exactly one bucket by its age, so the
   buckets add up to the receivable to the cent.

These functions are pure so that property tests (tests/layers/financial/test_money_properties.py) can
throw thousands of random bills at them; the service computes the same figures with them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from appliance.substrate.tenant_config import minor_units

ZERO = Decimal(0)
HUNDRED = Decimal(100)
AGING_BUCKETS = ("0-30", "31-60", "61-90", "90+")


def quantum(currency: str) -> Decimal:
    return Decimal(1).scaleb(-minor_units(currency))


def rounded(value: Decimal, currency: str) -> Decimal:
    """Half away from zero to the currency's minor unit (rule 1)."""
    if not isinstance(value, Decimal):
        raise TypeError(f"money is a Decimal, never {type(value).__name__}")
    return value.quantize(quantum(currency), rounding=ROUND_HALF_UP)


@dataclass(frozen=True)
class Money:
    amount: Decimal
    currency: str

    def __post_init__(self) -> None:
        if not isinstance(self.amount, Decimal):
            raise TypeError(f"money is a Decimal, never {type(self.amount).__name__}")
        if self.amount != rounded(self.amount, self.currency):
            raise ValueError(f"{self.amount} has more decimal places than {self.currency} allows")

    def __add__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.amount + other.amount, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.amount - other.amount, self.currency)

    def __neg__(self) -> Money:
        return Money(-self.amount, self.currency)

    def _same(self, other: Money) -> None:
        if other.currency != self.currency:
            raise ValueError(f"cannot add {other.currency} to {self.currency}")

    def __str__(self) -> str:
        return format_money(self.amount, self.currency)


def format_money(amount: Decimal | None, currency: str) -> str:
    """Money as every page shows it: "KES 1,200.00", and what is taken off "−KES 600.00" (the minus sign, before
    the currency). A deduction is shown by passing it negative, so the sign is written in one place."""
    if amount is None:
        return "—"
    shown = rounded(amount, currency)
    if shown < 0:
        return f"−{currency} {format_amount(-shown, currency)}"
    return f"{currency} {format_amount(abs(shown), currency)}"  # abs: -0.00 rounds to nothing owed


def format_amount(amount: Decimal, currency: str) -> str:
    """The amount as `format_money` writes it, without the currency: where the currency is said once
    beside many figures (a chart's axis)."""
    return f"{rounded(amount, currency):,.{minor_units(currency)}f}"


def line_amount(quantity: Decimal, unit_price: Decimal, currency: str) -> Decimal:
    return rounded(quantity * unit_price, currency)


@dataclass(frozen=True)
class Adjustment:
    percent: Decimal | None = None
    amount: Decimal | None = None


@dataclass(frozen=True)
class InvoiceFigures:
    subtotal: Decimal
    adjustments: Decimal
    total: Decimal
    adjustment_amounts: tuple[Decimal, ...]
    # What each adjustment asked for (its percentage's amount, or its fixed amount), rounded: more than it
    # took when it was capped at what was left.
    adjustment_asked: tuple[Decimal, ...]


def invoice_figures(line_amounts: Iterable[Decimal], adjustments: Sequence[Adjustment],
                    currency: str) -> InvoiceFigures:
    """Subtotal, each adjustment's amount and the total (rules 2–4)."""
    subtotal = sum(line_amounts, ZERO)
    left = max(subtotal, ZERO)
    taken: list[Decimal] = []
    asked: list[Decimal] = []
    for adjustment in adjustments:
        if adjustment.percent is not None:
            wanted = rounded(subtotal * adjustment.percent / HUNDRED, currency)
        else:
            wanted = rounded(adjustment.amount or ZERO, currency)
        applied = min(max(wanted, ZERO), left)
        left -= applied
        taken.append(applied)
        asked.append(wanted)
    total_adjustments = sum(taken, ZERO)
    return InvoiceFigures(subtotal, total_adjustments, subtotal - total_adjustments, tuple(taken), tuple(asked))


def aging_bucket(finalised: dt.date, as_of: dt.date) -> str:
    age = (as_of - finalised).days
    if age <= 30:
        return "0-30"
    if age <= 60:
        return "31-60"
    if age <= 90:
        return "61-90"
    return "90+"


def aging(outstanding: Iterable[tuple[dt.date, Decimal]], as_of: dt.date) -> dict[str, Decimal]:
    """Receivables by age (rule 5): each (finalised day, outstanding amount) lands in one bucket."""
    buckets = dict.fromkeys(AGING_BUCKETS, ZERO)
    for finalised, amount in outstanding:
        buckets[aging_bucket(finalised, as_of)] += amount
    return buckets


def net_days_in_ar(receivable: Decimal, net_revenue: Decimal, days: int) -> Decimal | None:
    """Receivable ÷ average daily net revenue over the last `days` days (None when nothing was billed)."""
    if net_revenue <= 0 or days <= 0:
        return None
    return (receivable / (net_revenue / days)).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)
