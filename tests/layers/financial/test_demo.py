"""Demo billing over a demo population: invoices in more than one age bucket, payments by several
methods, accounts with unpriced charges left for the worklist, and nothing written twice."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections import Counter
from pathlib import Path

import sqlalchemy as sa

from appliance.layers.clinical.demo import generate_demo_population
from appliance.layers.financial import reports
from appliance.layers.financial.demo import demo_principal, generate_billing_demo
from appliance.layers.financial.money import aging_bucket
from appliance.substrate import kpis
from appliance.substrate.tenant_config import TenantConfig, parse_tenant_file
from tests.layers.financial.conftest import FINANCIAL_CONFIG

REPO = Path(__file__).resolve().parents[3]


def test_demo_billing_fills_the_aging_and_leaves_unpriced_work(db, tenant_factory):
    config = tenant_factory(**FINANCIAL_CONFIG)
    generate_demo_population(db, config.slug, seed=5, patients=60, as_of=dt.date.today())
    written = generate_billing_demo(db, config.slug, seed=5)
    assert written["invoice"] > 5 and written["payment"] > 3
    assert generate_billing_demo(db, config.slug, seed=5) == {}  # `up --demo` runs it at every start
    with db.tenant(config.slug) as conn:
        aged = reports.ar_aging(conn, demo_principal(config.slug))
        methods = set(conn.execute(sa.text("SELECT DISTINCT method FROM payment")).scalars())
        unpriced_left = conn.execute(sa.text(
            "SELECT count(*) FROM charge c JOIN entry e ON e.id = c.entry_id WHERE c.status = 'unpriced' "
            "AND NOT EXISTS (SELECT 1 FROM invoice_line l WHERE l.charge_root_id = e.root_id)")).scalar()
        billed_on = conn.execute(sa.text(
            "SELECT (finalised_at AT TIME ZONE :tz)::date FROM invoice WHERE status = 'final' AND total > 0"),
            {"tz": config.timezone}).scalars().all()
    # Every age that was billed into holds money still owed, whatever the slug's random draws (a CI run
    # once drew a slug whose unpaid invoices were all of one age).
    billed_ages = {aging_bucket(day, aged["as_of"]) for day in billed_on}
    assert len(billed_ages) >= 2
    assert {bucket for bucket, amount in aged["buckets"].items() if amount > 0} == billed_ages
    assert aged["receivable"] == sum(aged["buckets"].values())
    assert len(methods) >= 2 and unpriced_left > 0  # glucose is not in the schedule: the worklist has work
    # Each payment was received on its bill's day, as the past months' would have been: today's takings hold
    # none of the past bills' money, and the aging as of a past day sees what had been paid by then.
    with db.tenant(config.slug) as conn:
        received = conn.execute(sa.text(
            "SELECT i.id, (pe.occurred_at AT TIME ZONE :tz)::date AS paid_on, (i.finalised_at AT TIME ZONE :tz)::date "
            "AS billed_on, i.total, p.amount FROM payment p JOIN entry pe ON pe.id = p.entry_id "
            "JOIN invoice i ON i.id = p.invoice_id"), {"tz": config.timezone}).all()
        today = reports.takings(conn, demo_principal(config.slug), aged["as_of"])
        past_day = min(r.billed_on for r in received)
        then = reports.ar_aging(conn, demo_principal(config.slug), past_day)
    assert received and all(r.paid_on == r.billed_on for r in received)
    # Each account opened with the care it bills (when an act of it was written down), not when the demo
    # was loaded: never after the last of its charges.
    with db.tenant(config.slug) as conn:
        late_opened = conn.execute(sa.text(
            "SELECT count(*) FROM account a WHERE a.opened_at > (SELECT max(e.recorded_at) FROM charge c "
            "JOIN entry e ON e.id = c.entry_id WHERE c.account_id = a.id)")).scalar()
        accounts = conn.execute(sa.text("SELECT count(*) FROM account")).scalar()
    assert accounts > 5 and late_opened == 0
    assert len(today["payments"]) == sum(1 for r in received if r.billed_on == aged["as_of"])
    settled_then = {r.id for r in received if r.billed_on == past_day and r.amount == r.total}
    assert settled_then.isdisjoint({row["id"] for row in then["invoices"]})


def test_a_demo_year_is_charged_on_the_day_of_the_care_but_for_visits_written_up_late(db, tenant_factory):
    """KPI 8 on a demo facility (a real tenant file's fee schedule): charges are posted when the care was
    written down, so most fall on its day; a few visits written up the next morning are charged late."""
    config = parse_tenant_file(REPO / "tenants" / "hillview_hc.toml")
    # The demo's times come from its seed and slug: a fixed slug keeps the late-written visits the same each run.
    config = TenantConfig.model_validate({**config.model_dump(), "slug": "demo_capture"})
    tenant_factory(**config.model_dump())
    generate_demo_population(db, config.slug, seed=5, patients=120, as_of=dt.date(2026, 6, 30))
    # The first six months of 2026.
    zone = zoneinfo.ZoneInfo(config.timezone)
    year = kpis.Window(dt.datetime(2026, 1, 1, tzinfo=zone), dt.datetime(2026, 6, 30, 17, 0, tzinfo=dt.UTC), zone)
    with db.tenant(config.slug) as conn:
        [figure] = kpis.computation_of("same_day_charge_capture").compute(conn, [year])
        outcomes = Counter(r.outcome for r in reports.billable_entries(conn, year.start, year.end, config.timezone))
    assert figure.denominator > 250 and (figure.numerator, figure.denominator) == (outcomes["same_day"],
                                                                                  outcomes.total())
    assert 88 <= figure.value <= 97 and outcomes["late"] > 0
