"""Demo billing over a demo population: invoices in more than one age bucket, payments by several
methods, accounts with unpriced charges left for the worklist, and nothing written twice."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from appliance.layers.clinical.demo import generate_demo_population
from appliance.layers.financial import reports
from appliance.layers.financial.demo import demo_principal, generate_billing_demo
from tests.layers.financial.conftest import FINANCIAL_CONFIG


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
    assert sum(1 for amount in aged["buckets"].values() if amount > 0) >= 2
    assert aged["receivable"] == sum(aged["buckets"].values())
    assert len(methods) >= 2 and unpriced_left > 0  # glucose is not in the schedule: the worklist has work
