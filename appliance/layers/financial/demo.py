"""Demo billing over a demo facility's synthetic care (financial layer): what `healthos up --demo` shows
a billing clerk on first sign-in.

The charges already exist — the reactions wrote them as the demo population and operations year were
appended. This adds what a clerk's past months would have left: bed-days accrued to the last census,
insurance for some patients, and for most accounts whose charges are all priced a final invoice
dated after the care, paid in full, in part or not yet (cash, mobile money, card) on the day of the
bill, so the A/R aging chart has every bucket. Accounts with unpriced charges are left for the
worklist. Deterministic for a seed and slug; skipped where any invoice already exists.
"""

from __future__ import annotations

import datetime as dt
import uuid
import zoneinfo
from decimal import ROUND_DOWN, Decimal

import sqlalchemy as sa

from appliance.layers.financial import accrual, schedule, service
from appliance.layers.financial.models import account, charge, invoice
from appliance.layers.financial.money import aging_bucket
from appliance.substrate.db import Database
from appliance.substrate.demo import demo_author, demo_stream
from appliance.substrate.principal import Principal
from appliance.substrate.record import current_clause, entry

DEMO_NAMESPACE = uuid.UUID("5b1d7c1e-4d0a-4f3e-9d7c-2f6a0e9b8a11")
METHODS = (("cash", None), ("mobile_money", "MPESA"), ("card", "CARD"))


def demo_principal(slug: str) -> Principal:
    return demo_author(DEMO_NAMESPACE, slug, "billing", "billing_clerk")


def generate_billing_demo(db: Database, slug: str, seed: int = 2026, accounts: int = 30,
                          bed_day_lookback: int = 3) -> dict[str, int]:
    """Returns how many bed-days, invoices and payments were written (nothing if invoices exist)."""
    principal = demo_principal(slug)
    rng = demo_stream("billing", seed, slug)
    with db.tenant(slug) as conn:
        if conn.execute(sa.select(invoice.c.id).limit(1)).first() is not None:
            return {}
        # A few censuses: enough to show bed-days, quick enough for `up --demo` to start promptly.
        bed_days = accrual.accrue_bed_days(conn, principal, lookback_days=bed_day_lookback)
        unpriced = (sa.select(charge.c.account_id).select_from(entry.join(charge, charge.c.entry_id == entry.c.id))
                    .where(charge.c.status == "unpriced", current_clause()))
        last_care = (sa.select(sa.func.max(charge.c.service_date)).where(charge.c.account_id == account.c.id)
                     .scalar_subquery())
        chosen = conn.execute(
            sa.select(account.c.id, last_care.label("last_care"))
            .where(account.c.id.not_in(unpriced), last_care.is_not(None))
            # In the order they were opened, patient by patient (the population is written one patient's
            # year at a time): a few patients' accounts across the year, so the aging has every age.
            .order_by(account.c.number).limit(accounts)).all()
        zone = zoneinfo.ZoneInfo(schedule.setting(conn).timezone)
        today = dt.datetime.now(zone).date()  # the facility's today, as the aging report counts it
        written = {"bed_day": bed_days, "invoice": 0, "payment": 0}
        owed_in: set[str] = set()  # aging buckets already holding an unpaid invoice
        for account_id, last_care_day in chosen:
            if rng.random() < 0.15 or last_care_day >= today:
                continue  # some accounts are still open (care not over, or not billed yet)
            drafted = service.draft_invoice(conn, principal, account_id)
            final = service.finalise_invoice(conn, principal, drafted["id"])
            billed_on = min(last_care_day + dt.timedelta(days=rng.randint(0, 3)), today)
            at = dt.datetime.combine(billed_on, dt.time(rng.randint(8, 16), rng.randint(0, 59)), zone)
            conn.execute(sa.update(invoice).where(invoice.c.id == final["id"]).values(created_at=at, finalised_at=at))
            written["invoice"] += 1
            roll = rng.random()
            total = final["total"]
            bucket = aging_bucket(billed_on, today)
            if total > 0 and bucket not in owed_in:
                # The first invoice of each age stays owed whatever the roll: the chart has a bar
                # wherever there was billing, for every seed and slug.
                owed_in.add(bucket)
                continue
            if total <= 0 or roll < 0.2:
                continue  # not paid yet
            share = Decimal(1) if roll < 0.75 else Decimal(rng.randint(20, 80)) / 100
            amount = (total * share).quantize(Decimal("0.01"), rounding=ROUND_DOWN)
            if amount > 0:
                method, prefix = rng.choice(METHODS)
                reference = f"{prefix}{rng.randint(10**7, 10**8 - 1)}" if prefix else None
                # Paid at the cashier's window after billing, on the day of the bill: the day's takings
                # and the aging as of a past day then read as that facility's would have.
                # (A delay from the amount, not the seeded stream, so the rest of the demo stays as it was.)
                received = min(at + dt.timedelta(minutes=5 + int(amount) % 85), dt.datetime.now(zone))
                # A made-up code drawn twice by the seeded stream is no cashier's mistake: recorded, not asked about.
                service.record_payment(conn, principal, final["id"], method=method, amount=amount,
                                       reference=reference, received_at=received,
                                       transaction_code_reused_confirmed=True)
                written["payment"] += 1
        return written
