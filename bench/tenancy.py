"""Tenancy at 10, 100 and 1,000 tenants, on a private embedded cluster:

- seconds to provision one tenant (schema, role, grants, tables at head, wards and beds), target ≤ 0.25 s;
- seconds per tenant for `migrate` when there is nothing to do, target ≤ 0.02 s;
- p50 latency of a trivial tenant-scoped HTTP request (bearer token, permission check, one tenant
  transaction) at 1,000 tenants ÷ at 10, target ≤ 1.15;
- resident memory of a PostgreSQL backend after serving requests for all 1,000 tenants, target ≤ 200 MB.
"""

from __future__ import annotations

import os
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import psutil
import sqlalchemy as sa
from litestar.testing import TestClient

import appliance.layers  # noqa: F401  (registers the layers' tables and appliers)
from appliance.substrate import identity
from appliance.substrate.config import Settings
from appliance.substrate.db import Database
from appliance.substrate.migrate import migrate_all, migrate_control
from appliance.substrate.policy import load_policy
from appliance.substrate.tenancy import apply_config
from appliance.substrate.tenant_config import TenantConfig
from appliance.web.app import create_app

STEPS = (10, 100, 1000)
REQUESTS = 3000


def _config(n: int) -> TenantConfig:
    return TenantConfig.model_validate({
        "slug": f"bench_{n:05d}", "name": f"Bench facility {n}", "facility_type": "health_centre",
        "country_code": "KE", "region": "Bench", "district": f"D{n % 47}", "timezone": "Africa/Nairobi",
        "currency": "KES",
        "wards": [{"code": "GEN", "name": "General", "beds": 8}, {"code": "MAT", "name": "Maternity", "beds": 4}],
    })


def _token(db: Database, policy, slug: str) -> str:
    """A machine client's bearer token for one tenant (bench set-up, not timed)."""
    with db.control() as conn:
        machine = identity.create_account(conn, policy, kind="machine", email=f"bench@{slug}.invalid",
                                          display_name="bench", role="facility_admin", tenant=slug)
        return identity.issue_api_token(conn, account_id=machine.account_id, tenant=slug, name="bench",
                                        permissions=["operations.ward.read"])


def _get(client: TestClient, tokens: dict[str, str], slug: str):
    return client.get(f"/api/t/{slug}/wards", headers={"authorization": f"Bearer {tokens[slug]}"})


def _p50_request_ms(client: TestClient, tokens: dict[str, str], slugs: list[str]) -> float:
    rng = random.Random(7)
    for slug in slugs[:20]:  # warm the pool and the plan caches
        _get(client, tokens, slug)
    timings = []
    for _ in range(REQUESTS):
        slug = rng.choice(slugs)
        started = time.perf_counter()
        response = _get(client, tokens, slug)
        timings.append((time.perf_counter() - started) * 1000)
        if response.status_code != 200:
            raise RuntimeError(f"{slug}: {response.status_code} {response.text}")
    return statistics.median(timings)


def _backend_memory_mb(db: Database) -> tuple[float, float]:
    """Largest RSS and USS (private memory) among the appliance's pooled backends."""
    with db.control() as conn:
        pids = conn.execute(sa.text(
            "SELECT pid FROM pg_stat_activity WHERE application_name = 'healthos' AND backend_type = 'client backend'"
        )).scalars().all()
    rss, uss = [], []
    for pid in pids:
        info = psutil.Process(pid).memory_full_info()
        rss.append(info.rss / 2**20)
        uss.append(info.uss / 2**20)
    return max(rss), max(uss)


def run(console) -> list[dict]:
    home = Path(tempfile.mkdtemp(prefix="healthos-bench-"))
    figures: list[dict] = []
    env = {"HEALTHOS_HOME": str(home)}
    if os.environ.get("HEALTHOS_POOL_TENANTS_PER_CONNECTION"):
        env["HEALTHOS_POOL_TENANTS_PER_CONNECTION"] = os.environ["HEALTHOS_POOL_TENANTS_PER_CONNECTION"]
    settings = Settings.from_env(env)
    db = Database.open(settings)
    try:
        migrate_control(db)
        policy = load_policy(settings.policies_dir / "access.toml")
        client = TestClient(app=create_app(db, settings))
        tokens: dict[str, str] = {}
        made = 0
        p50 = {}
        for step in STEPS:
            timings = []
            while made < step:
                made += 1
                started = time.perf_counter()
                apply_config(db, _config(made))
                timings.append(time.perf_counter() - started)
                tokens[_config(made).slug] = _token(db, policy, _config(made).slug)
            slugs = [f"bench_{n:05d}" for n in range(1, step + 1)]
            started = time.perf_counter()
            report = migrate_all(db, slugs)
            noop = (time.perf_counter() - started) / step
            assert not report.tenants_changed
            p50[step] = _p50_request_ms(client, tokens, slugs)
            console.print(f"  {step} tenants: provision p50 {statistics.median(timings):.3f}s, "
                          f"no-op migrate {noop * 1000:.2f} ms/tenant, request p50 {p50[step]:.2f} ms")
            figures += [
                {"name": f"provision one tenant (p50) at {step}", "value": statistics.median(timings),
                 "unit": "s", "target": "≤ 0.25", "met": statistics.median(timings) <= 0.25},
                {"name": f"provision one tenant (max) at {step}", "value": max(timings), "unit": "s"},
                {"name": f"no-op migrate per tenant at {step}", "value": noop, "unit": "s",
                 "target": "≤ 0.02", "met": noop <= 0.02},
                {"name": f"tenant request p50 at {step}", "value": p50[step], "unit": "ms"},
            ]
        # Touch every tenant through the pool, then measure the backends that served them.
        for slug in [f"bench_{n:05d}" for n in range(1, STEPS[-1] + 1)]:
            _get(client, tokens, slug)
        rss, uss = _backend_memory_mb(db)
        ratio = p50[STEPS[-1]] / p50[STEPS[0]]
        figures += [
            {"name": f"request p50 ratio {STEPS[-1]} / {STEPS[0]} tenants", "value": ratio, "unit": "×",
             "target": "≤ 1.15", "met": ratio <= 1.15},
            {"name": f"backend RSS after all {STEPS[-1]} tenants (max)", "value": rss, "unit": "MB",
             "target": "≤ 200", "met": rss <= 200},
            {"name": f"backend private memory (USS) after all {STEPS[-1]} tenants", "value": uss, "unit": "MB"},
        ]
    finally:
        db.close()
        shutil.rmtree(home, ignore_errors=True)
    return figures
