"""Property tests: for random sequences of charges, credits, discounts and payments, the invoice, the
balance and the A/R buckets reconcile to the cent — first on the pure arithmetic (thousands of
cases), then through the real layer and database (every figure read back from PostgreSQL)."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appliance.layers.clinical import service as clinical
from appliance.layers.clinical.schemas import MedicationIn
from appliance.layers.financial import reports, service
from appliance.layers.financial.money import (
    AGING_BUCKETS,
    Adjustment,
    Money,
    aging,
    invoice_figures,
    line_amount,
    quantum,
    rounded,
)
from appliance.layers.nursing import service as nursing
from appliance.layers.nursing.schemas import AdministrationIn
from tests.layers.financial.conftest import CHEST_XRAY, FULL_BLOOD_COUNT, MALARIA_SMEAR, order, visit

CURRENCIES = ["KES", "UGX", "KWD"]  # two, zero and three minor units
quantities = st.decimals(min_value=Decimal("0.001"), max_value=Decimal(500), places=3)
prices = st.decimals(min_value=Decimal(0), max_value=Decimal(100_000), places=3)
percents = st.decimals(min_value=Decimal("0.01"), max_value=Decimal(100), places=2)


@st.composite
def bills(draw):
    currency = draw(st.sampled_from(CURRENCIES))
    lines = [line_amount(q, rounded(p, currency), currency)
             for q, p in draw(st.lists(st.tuples(quantities, prices), min_size=0, max_size=12))]
    credited = draw(st.lists(st.sampled_from(lines), max_size=len(lines), unique_by=id)) if lines else []
    adjustments = draw(st.lists(st.one_of(
        st.builds(lambda p: Adjustment(percent=p), percents),
        st.builds(lambda a: Adjustment(amount=rounded(a, currency)), prices.filter(lambda a: a > 0))), max_size=4))
    return currency, lines + [-amount for amount in credited], adjustments


@given(bills())
@settings(max_examples=500, deadline=None)
def test_invoice_figures_add_up_to_the_minor_unit(bill):
    currency, lines, adjustments = bill
    figures = invoice_figures(lines, adjustments, currency)
    unit = quantum(currency)
    assert figures.subtotal == sum(lines, Decimal(0))
    assert all(line % unit == 0 for line in lines)
    assert all(applied % unit == 0 and applied >= 0 for applied in figures.adjustment_amounts)
    assert figures.adjustments == sum(figures.adjustment_amounts, Decimal(0))
    # An adjustment takes what it asked for unless capped at what was left (so a capped one can be said).
    assert all(0 <= applied <= max(asked, Decimal(0))
               for applied, asked in zip(figures.adjustment_amounts, figures.adjustment_asked, strict=True))
    assert figures.total == figures.subtotal - figures.adjustments
    assert 0 <= figures.adjustments <= max(figures.subtotal, Decimal(0))  # never below zero by adjustment
    assert figures.total % unit == 0


@given(bills(), st.lists(st.decimals(min_value=Decimal(0), max_value=Decimal(1), places=4), max_size=6))
@settings(max_examples=300, deadline=None)
def test_payments_never_exceed_the_total_and_the_balance_is_what_is_left(bill, shares):
    currency, lines, adjustments = bill
    total = invoice_figures(lines, adjustments, currency).total
    paid = Decimal(0)
    for share in shares:  # each payment a share of what is outstanding, rounded down to the minor unit
        outstanding = total - paid
        amount = (outstanding * share).quantize(quantum(currency), rounding="ROUND_DOWN")
        if amount > 0:
            paid += amount
    assert 0 <= paid <= max(total, Decimal(0))
    assert (total - paid) % quantum(currency) == 0


@given(st.lists(st.tuples(st.dates(min_value=dt.date(2024, 1, 1), max_value=dt.date(2026, 11, 26)),
                          st.decimals(min_value=Decimal(-10_000), max_value=Decimal(10_000), places=2)),
                max_size=40),
       st.dates(min_value=dt.date(2026, 11, 26), max_value=dt.date(2027, 6, 1)))
@settings(max_examples=300, deadline=None)
def test_aging_buckets_add_up_to_the_receivable(invoices, as_of):
    buckets = aging(invoices, as_of)
    assert list(buckets) == list(AGING_BUCKETS)
    assert sum(buckets.values(), Decimal(0)) == sum((amount for _, amount in invoices), Decimal(0))


@given(st.sampled_from(CURRENCIES), quantities, prices)
def test_a_credit_cancels_its_charge_exactly(currency, quantity, price):
    charged = line_amount(quantity, rounded(price, currency), currency)
    assert charged + line_amount(-quantity, rounded(price, currency), currency) == 0


def test_money_refuses_float_and_mixed_currencies():
    with pytest.raises(TypeError):
        Money(1.1, "KES")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="decimal places"):
        Money(Decimal("1.005"), "KES")
    with pytest.raises(ValueError, match="cannot add"):
        Money(Decimal(1), "KES") + Money(Decimal(1), "UGX")
    assert rounded(Decimal("0.005"), "KES") == Decimal("0.01") and rounded(Decimal("-0.005"), "KES") == Decimal("-0.01")
    assert rounded(Decimal("2.5"), "UGX") == Decimal(3)


# -- through the layer and the database ----------------------------------------------------------------

TESTS = [FULL_BLOOD_COUNT, MALARIA_SMEAR, CHEST_XRAY]
NAIROBI = zoneinfo.ZoneInfo("Africa/Nairobi")


@st.composite
def episodes(draw):
    """One encounter's bill: tests ordered (some later entered in error), doses given (odd amounts, so
    per-unit prices round), discounts, and payments as shares of what is outstanding."""
    ordered = draw(st.lists(st.tuples(st.sampled_from(TESTS), st.booleans()), min_size=1, max_size=5))
    doses = draw(st.lists(st.decimals(min_value=Decimal("0.05"), max_value=Decimal(4), places=3), max_size=2))
    adjustments = draw(st.lists(st.one_of(
        st.builds(lambda p: ("percent", p), percents),
        st.builds(lambda a: ("amount", a), st.decimals(min_value=Decimal("0.01"), max_value=Decimal(800),
                                                     places=2))), max_size=2))
    shares = draw(st.lists(st.decimals(min_value=Decimal("0.01"), max_value=Decimal(1), places=2), max_size=3))
    return ordered, doses, adjustments, shares


@given(episodes())
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_the_layer_reconciles_invoice_balance_and_aging_to_the_cent(db, facility, clinician, clerk, episode):
    ordered, doses, adjustments, shares = episode
    with db.tenant(facility.slug) as conn:
        patient, encounter = visit(conn, clinician)
        for code, in_error in ordered:
            placed = order(conn, clinician, patient, encounter, code)
            if in_error:
                clinical.retract_entry(conn, clinician, patient["id"], placed["id"], "entered on the wrong chart")
        for dose in doses:
            prescribed = clinical.request_medication(conn, clinician, patient["id"], MedicationIn(
                drug="Ceftriaxone", dose=dose, dose_unit="g", route="IV", frequency="as needed",
                encounter_id=encounter["id"])).placed[0]
            nursing.record_administration(conn, clinician, patient["id"], AdministrationIn(
                medication_request_id=prescribed["id"], outcome="given"), now=dt.datetime.now(dt.UTC), tz=NAIROBI)
        [account] = service.list_accounts(conn, clerk, patient_id=patient["id"])
        invoice = service.draft_invoice(conn, clerk, account["id"])
        for kind, value in adjustments:
            invoice = service.add_adjustment(conn, clerk, invoice["id"], kind="discount",
                                             percent=value if kind == "percent" else None,
                                             amount=value if kind == "amount" else None,
                                             reason="property test", approved_by="the test")
        lines = [line["amount"] for line in invoice["lines"]]
        expected = invoice_figures(lines, [Adjustment(a["percent"], a["amount"]) for a in invoice["adjustment_list"]],
                                   "KES")
        charges = service.account_charges(conn, account["id"])
        assert sum(lines, Decimal(0)) == sum((c["amount"] for c in charges), Decimal(0))
        final = service.finalise_invoice(conn, clerk, invoice["id"])
        assert (final["subtotal"], final["adjustments"], final["total"]) == (
            expected.subtotal, expected.adjustments, expected.total)
        assert final["total"] == sum(line["amount"] for line in final["lines"]) - final["adjustments"]
        paid = Decimal(0)
        for share in shares:
            amount = ((final["total"] - paid) * share).quantize(Decimal("0.01"), rounding="ROUND_DOWN")
            if amount > 0:
                service.record_payment(conn, clerk, final["id"], method="cash", amount=amount)
                paid += amount
        balance = reports.patient_balance(conn, clerk, patient["id"])
        aged = reports.ar_aging(conn, clerk, dt.datetime.now(NAIROBI).date(), patient_id=patient["id"])
    assert balance["invoiced"] == final["total"] and balance["paid"] == paid
    assert balance["outstanding"] == final["total"] - paid
    assert aged["receivable"] == balance["outstanding"] == sum(aged["buckets"].values(), Decimal(0))
    assert all(value % Decimal("0.01") == 0 for value in (*lines, final["total"], balance["outstanding"]))
