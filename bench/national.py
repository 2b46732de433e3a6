"""The ministry's national indicators on a private embedded cluster: facilities with a year of demo care
each (the repository's generators, deterministic from their seeds; set-up is not timed), then

- counting the last whole month at every facility (`national.gather`: two statements and an audit event
  per facility, inside each facility's own transaction), cold and warm, in total and per facility;
- the ministry's page and its DHIS2 export over HTTP, as an analyst's session asks for them;
- how many cells the disclosure rule withheld, so a figure that looks wrong is seen.

No issue names a target yet. `BENCH_NATIONAL_TENANTS` and `BENCH_NATIONAL_PATIENTS` change the size.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import time
from pathlib import Path

from litestar.testing import TestClient

import appliance.layers  # noqa: F401  (registers the layers' tables, appliers and reactions)
from appliance.layers.clinical.demo import generate_demo_population
from appliance.national import indicators as national
from appliance.substrate import identity, keys
from appliance.substrate.config import Settings
from appliance.substrate.policy import load_policy
from appliance.substrate.tenancy import apply_config
from appliance.web.app import create_app
from bench.chart import bench_tenant, open_bench_database

REPO = Path(__file__).resolve().parents[1]
TENANTS = int(os.environ.get("BENCH_NATIONAL_TENANTS", "20"))
PATIENTS = int(os.environ.get("BENCH_NATIONAL_PATIENTS", "300"))
REPEATS = 5


def _analyst_session(db) -> str:
    policy = load_policy(REPO / "policies" / "access.toml")
    with db.control() as conn:
        analyst = identity.create_account(conn, policy, kind="ministry_analyst", email="analyst@bench.invalid",
                                          display_name="Bench analyst", role="ministry_analyst")
        return identity.start_session(conn, analyst.account_id, mfa_passed=True)


def _p50(values: list[float]) -> float:
    return sorted(values)[len(values) // 2] * 1000


def run(console) -> list[dict]:
    home, db = open_bench_database("healthos-bench-national-")
    keys.bind(db, keys.Keyring(home))
    definitions = national.load_definitions(REPO / "policies" / "indicators.toml")
    month = national.Period.containing(dt.datetime.now(dt.UTC).date()).previous()
    try:
        started = time.perf_counter()
        templates = ["riverside_referral.toml", "lakeshore_district.toml", "hillview_hc.toml"]
        for n in range(TENANTS):
            config = bench_tenant(templates[n % 3], f"nat_{n:03d}", f"National bench facility {n}")
            apply_config(db, config.model_copy(update={"district": f"District {n % 5}", "dhis2_org_unit": None}))
            generate_demo_population(db, f"nat_{n:03d}", seed=n, patients=PATIENTS)
        console.print(f"  {TENANTS} facilities × {PATIENTS} demo patients in {time.perf_counter() - started:.0f} s")

        begun = time.perf_counter()
        facilities = national.gather(db, month, definitions)
        cold = time.perf_counter() - begun
        warm = []
        for _ in range(REPEATS):
            begun = time.perf_counter()
            facilities = national.gather(db, month, definitions)
            warm.append(time.perf_counter() - begun)
        cells = sum(len(f.figures[i.id].cells) + 1 for f in facilities for i in definitions.indicators)
        withheld = sum(f.figures[i.id].withheld + (f.figures[i.id].total is None)
                       for f in facilities for i in definitions.indicators)
        opd = national.total(facilities, "opd_attendance")
        malaria = national.total(facilities, "malaria_cases")

        client = TestClient(app=create_app(db, Settings.from_env({"HEALTHOS_HOME": str(home)})))
        client.cookies.set("healthos_session", _analyst_session(db))
        page, export = [], []
        for _ in range(REPEATS):
            begun = time.perf_counter()
            answer = client.get(f"/national?period={month.value}")
            page.append(time.perf_counter() - begun)
            if answer.status_code != 200:
                raise RuntimeError(answer.text[:500])
            begun = time.perf_counter()
            answer = client.get(f"/national/export?period={month.value}&format=dhis2")
            export.append(time.perf_counter() - begun)
            if answer.status_code != 200:
                raise RuntimeError(answer.text[:500])
    finally:
        db.close()
        shutil.rmtree(home, ignore_errors=True)

    console.print(f"  {month.label}: outpatient attendances {opd.value} (+{opd.withheld} withheld), malaria "
                  f"{malaria.value} (+{malaria.withheld} withheld); {withheld} of {cells} published cells withheld")
    return [
        {"name": f"count a month at {TENANTS} facilities, first time", "value": cold * 1000, "unit": "ms"},
        {"name": f"count a month at {TENANTS} facilities (p50 of {REPEATS})", "value": _p50(warm), "unit": "ms"},
        {"name": "per facility (p50)", "value": _p50(warm) / TENANTS, "unit": "ms"},
        {"name": "GET /national over HTTP (p50)", "value": _p50(page), "unit": "ms"},
        {"name": "GET /national/export?format=dhis2 (p50)", "value": _p50(export), "unit": "ms"},
        {"name": "cells withheld by the disclosure rule", "value": withheld, "unit": f"of {cells}"},
    ]
