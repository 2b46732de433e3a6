"""Test fixtures: one real embedded PostgreSQL for the whole session, migrated with the real
migrations, and a fresh tenant per test module so a leak between tenants shows up as a failure."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import appliance.layers  # noqa: F401  (registers every layer's tables and appliers)
from appliance.substrate.config import Settings
from appliance.substrate.db import Database
from appliance.substrate.migrate import migrate_control
from appliance.substrate.tenancy import apply_config, drop_tenant
from appliance.substrate.tenant_config import TenantConfig

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def healthos_home() -> Iterator[Path]:
    home = Path(tempfile.mkdtemp(prefix="healthos-test-"))
    yield home
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def settings(healthos_home: Path) -> Settings:
    env = {"HEALTHOS_HOME": str(healthos_home)}
    if os.environ.get("HEALTHOS_DATABASE_URL"):
        env["HEALTHOS_DATABASE_URL"] = os.environ["HEALTHOS_DATABASE_URL"]
    return Settings.from_env(env)


@pytest.fixture(scope="session")
def db(settings: Settings) -> Iterator[Database]:
    database = Database.open(settings)
    migrate_control(database)
    yield database
    database.close()


def make_tenant_config(slug: str | None = None, **overrides) -> TenantConfig:
    fields = {
        "slug": slug or f"test_{secrets.token_hex(4)}",
        "name": "Test Facility",
        "facility_type": "district_hospital",
        "country_code": "KE",
        "region": "Central Region",
        "district": "Testdistrict",
        "timezone": "Africa/Nairobi",
        "currency": "KES",
        "wards": [{"code": "GEN", "name": "General ward", "kind": "inpatient", "beds": 3}],
    }
    fields.update(overrides)
    return TenantConfig.model_validate(fields)


@pytest.fixture(scope="module")
def tenant_factory(db: Database) -> Iterator:
    """Creates tenants for one module and drops them when the module ends."""
    made: list[str] = []

    def make(**overrides) -> TenantConfig:
        config = make_tenant_config(**overrides)
        apply_config(db, config)
        made.append(config.slug)
        return config

    yield make
    for slug in made:
        with contextlib.suppress(LookupError):  # a test may have dropped it itself
            drop_tenant(db, slug)


@pytest.fixture(scope="module")
def tenant_a(tenant_factory) -> TenantConfig:
    return tenant_factory(name="Facility A")


@pytest.fixture(scope="module")
def tenant_b(tenant_factory) -> TenantConfig:
    return tenant_factory(name="Facility B", wards=[{"code": "MAT", "name": "Maternity", "kind": "maternity",
                                                    "beds": 2}])
