"""Server-rendered portal pages, on a private embedded cluster, over in-process HTTP:

- p50 (and p95) of the chart page for a patient with a year of history — twelve monthly reviews with
  vital signs, blood counts, glucose, notes, problems, prescriptions and sign-offs (160 entries), and
  today's visit with results to review — rendered with its trends and vital-signs plots, target
  ≤ 150 ms p50 (issue 6);
- beside it, the same patient's timeline and results pages, and the JSON chart summary the API
  serves, so the cost of rendering shows apart from the cost of reading.

The facility also holds the demo population (300 patients and their year), so the tables are not
trivially small. Requests carry a clinician's session cookie, as a browser's do; every page read is
audited as it is in production.
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from litestar.testing import TestClient

import appliance.layers  # noqa: F401  (registers the layers' tables, appliers and reactions)
from appliance.layers.clinical import service
from appliance.layers.clinical.demo import generate_demo_population
from appliance.layers.clinical.schemas import PatientIn
from appliance.substrate import identity
from appliance.substrate.config import Settings
from appliance.substrate.db import Database
from appliance.substrate.migrate import migrate_control
from appliance.substrate.policy import load_policy
from appliance.substrate.principal import Principal
from appliance.substrate.tenancy import apply_config
from appliance.substrate.tenant_config import TenantConfig
from appliance.web.app import create_app
from appliance.web.auth import SESSION_COOKIE
from tests.e2e.history import CLINICAL_CONFIG, Chart, today, year_of_history

SLUG = "bench_pages"
REQUESTS = 300
WARMUP = 30


def _timings(client: TestClient, path: str, n: int) -> list[float]:
    for _ in range(WARMUP):
        client.get(path)
    timings = []
    for _ in range(n):
        started = time.perf_counter()
        response = client.get(path)
        timings.append((time.perf_counter() - started) * 1000)
        if response.status_code != 200:
            raise RuntimeError(f"{path}: {response.status_code} {response.text[:500]}")
    return timings


def _p(timings: list[float], q: int) -> float:
    return statistics.quantiles(timings, n=100)[q - 1]


def run(console) -> list[dict]:
    home = Path(tempfile.mkdtemp(prefix="healthos-bench-"))
    settings = Settings.from_env({"HEALTHOS_HOME": str(home)})
    db = Database.open(settings)
    try:
        migrate_control(db)
        policy = load_policy(settings.policies_dir / "access.toml")
        apply_config(db, TenantConfig.model_validate({
            "slug": SLUG, "name": "Bench District Hospital", "facility_type": "district_hospital",
            "country_code": "KE", "region": "Central Region", "district": "Bench", "timezone": "Africa/Nairobi",
            "currency": "KES", "wards": [{"code": "GEN", "name": "General ward", "beds": 20}], **CLINICAL_CONFIG}))
        console.print("  generating the demo population (300 patients) and a year of one patient's history")
        generate_demo_population(db, SLUG, patients=300)
        with db.control() as conn:
            account = identity.create_account(conn, policy, kind="staff", email="bench-pages@bench.invalid",
                                              display_name="Dr Bench", role="clinician", tenant=SLUG)
            token = identity.start_session(conn, account.account_id, mfa_passed=True)
        clinician = Principal(account_id=account.account_id, kind="staff", display_name="Dr Bench", tenant=SLUG,
                              role="clinician")
        with db.tenant(SLUG) as conn:
            registered = service.register_patient(conn, clinician, PatientIn.model_validate({
                "family_name": "Benchmark", "given_names": "Year Of History", "birth_date": "1980-01-01",
                "sex": "female", "identifiers": [{"system": "national_id", "value": uuid.uuid4().hex[:10]}]}))
            chart = Chart(registered["id"], "Benchmark", "Year Of History", registered["mrn"], "")
            entries = year_of_history(conn, clinician, chart.id)
            today(conn, clinician, chart)

        client = TestClient(app=create_app(db, settings))
        client.cookies.set(SESSION_COOKIE, token)
        base = f"/t/{SLUG}/patients/{chart.id}"
        page = client.get(f"{base}/chart")
        size_kb = len(page.content) / 1024
        chart_ms = _timings(client, f"{base}/chart", REQUESTS)
        timeline_ms = _timings(client, f"{base}/timeline", REQUESTS // 3)
        results_ms = _timings(client, f"{base}/results", REQUESTS // 3)
        api_ms = _timings(client, f"/api/t/{SLUG}/patients/{chart.id}/chart", REQUESTS)
        p50 = statistics.median(chart_ms)
        console.print(f"  chart page: {entries} history entries, {size_kb:.0f} KiB of HTML, p50 {p50:.1f} ms")
        return [
            {"name": "chart page p50 (year of history, server-rendered, in-process HTTP)", "value": p50,
             "unit": "ms", "target": "≤ 150", "met": p50 <= 150},
            {"name": "chart page p95", "value": _p(chart_ms, 95), "unit": "ms"},
            {"name": "chart page size", "value": size_kb, "unit": "KiB"},
            {"name": "timeline page p50 (every entry)", "value": statistics.median(timeline_ms), "unit": "ms"},
            {"name": "results page p50 (review + trends)", "value": statistics.median(results_ms), "unit": "ms"},
            {"name": "chart summary JSON (API) p50, same patient", "value": statistics.median(api_ms), "unit": "ms"},
        ]
    finally:
        db.close()
        shutil.rmtree(home, ignore_errors=True)
