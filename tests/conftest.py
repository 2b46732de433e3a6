"""Test fixtures: one real embedded PostgreSQL for the whole session, migrated with the real
migrations, and a fresh tenant per test module so a leak between tenants shows up as a failure."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import secrets
import shutil
import tempfile
import threading
import time
import zoneinfo
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn
from litestar.testing import TestClient

import appliance.interop.hl7v2.models  # the HL7 interface's tenant tables, for the drift check
import appliance.layers  # noqa: F401  (registers every layer's tables and appliers)
from appliance.substrate import identity, passwords, totp
from appliance.substrate.config import Settings
from appliance.substrate.db import Database
from appliance.substrate.migrate import migrate_control
from appliance.substrate.policy import AccessPolicy, load_policy
from appliance.substrate.shared_store import SharedStore
from appliance.substrate.tenancy import apply_config, drop_tenant
from appliance.substrate.tenant_config import TenantConfig

REPO = Path(__file__).resolve().parents[1]
FACILITY_ZONE = zoneinfo.ZoneInfo("Africa/Nairobi")  # make_tenant_config's timezone, which most test tenants keep


def facility_today() -> dt.date:
    """Today where the test facilities are, asked when it is used. The server's UTC date is a day behind
    Nairobi's from 21:00 to 24:00 UTC, and a date taken when a module is imported goes stale when the run
    crosses the facility's midnight: CI runs at whatever hour a submission lands."""
    return dt.datetime.now(FACILITY_ZONE).date()


def pytest_configure(config) -> None:
    """As root, the embedded cluster runs as its own system user, made by the first cluster to start. Under
    pytest-xdist (scripts/test) the workers start their clusters at the same moment, and on a fresh machine each
    would find the user missing and run useradd, the second failing; so the controller makes it first."""
    if os.geteuid() == 0 and not hasattr(config, "workerinput") and not os.environ.get("HEALTHOS_DATABASE_URL"):
        from appliance.substrate import embedded

        embedded._ensure_system_user(embedded.SERVER_SYSTEM_USER)


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
    if database.cluster is not None and database.cluster.started_here:
        _skip_durability(database.cluster)
    migrate_control(database)
    yield database
    database.close()


def _skip_durability(cluster) -> None:
    """The session's cluster is thrown away at the end, so it need not survive a power cut. With fsync on,
    each DROP DATABASE (tests/national/test_federation_push.py's ministry) forces a checkpoint that fsyncs
    every file the session has written to since the last one: 15-30 s once a few hundred tenants were made,
    up to psql's 30 s timeout; so did the shutdown checkpoint in the session's last teardown. Both take
    effect on a reload; commits and reads behave as before (only a crash of the machine could tell)."""
    for setting in ("fsync = off", "full_page_writes = off"):
        cluster._psql("postgres", f"ALTER SYSTEM SET {setting}")
    cluster._psql("postgres", "SELECT pg_reload_conf()")


RECORDING_SINCE = "2000-01-01"


@contextlib.contextmanager
def served_in_thread(app, port: int, name: str, **config) -> Iterator[None]:
    """`app` behind a real uvicorn server on a loopback port, in a thread of this process, for as long as the block
    runs: for what an in-process client cannot show (a browser, TLS, requests truly at once)."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False,
                                           ws="none", lifespan="on", **config))
    thread = threading.Thread(target=server.run, name=name, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"{name}: the server did not start")
        time.sleep(0.05)
    try:
        yield
    finally:
        server.should_exit = True
        thread.join(timeout=15)


def make_tenant_config(slug: str | None = None, **overrides) -> TenantConfig:
    fields = {
        "slug": slug or f"test_{secrets.token_hex(4)}",
        "name": "Test Facility",
        "facility_type": "district_hospital",
        "country_code": "KE",
        "region": "Central Region",
        "district": "Testdistrict",
        "timezone": FACILITY_ZONE.key,
        "currency": "KES",
        "wards": [{"code": "GEN", "name": "General ward", "kind": "inpatient", "beds": 3}],
        # Made today, a test facility holds records dated months back, as one whose old records were migrated in
        # does: its national figures count them (a test of a facility new this month passes recording_since=None).
        "recording_since": RECORDING_SINCE,
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


# -- people and authenticated clients ---------------------------------------------------------------
#
# `signed_in(role, tenant)` gives a TestClient carrying a live session cookie (MFA passed) for a new
# account holding `role` in `tenant`: use it for pages and for GETs under /api/. Writes under /api/
# need a bearer token: `token_client(tenant, role=...)` (the role's permissions) or
# `token_client(tenant, permissions=[...])`. Each client has `.person` (the account behind it).


@pytest.fixture(scope="session")
def policy(settings: Settings) -> AccessPolicy:
    return load_policy(settings.policies_dir / "access.toml")


@dataclass(frozen=True)
class Person:
    account_id: object
    email: str
    password: str
    totp_secret: str | None
    tenant: str | None
    role: str


# Test people's passwords are hashed at a fraction of the appliance's Argon2id cost: a run makes over a thousand
# of them, ~20 ms each at the production cost on a quiet core. Signing in with one rehashes it at the production
# cost (as the appliance upgrades any old hash; tests/web/test_auth.py checks it), and
# tests/substrate/test_passwords.py checks the production parameters themselves.
CHEAP_HASHES = identity.IdentitySettings(password_policy=passwords.PasswordPolicy(memory_cost_kib=256, iterations=1))


@pytest.fixture(scope="session")
def person_factory(db: Database, policy: AccessPolicy):
    def make(role: str, tenant: str | None = None, kind: str = "staff", ward: str | None = None) -> Person:
        email = f"{role}-{secrets.token_hex(5)}@test.invalid"
        password = "pw-" + secrets.token_urlsafe(12)
        secret = totp.generate_secret() if policy.requires_mfa(role) else None
        with db.control() as conn:
            new = identity.create_account(conn, policy, kind=kind, email=email, display_name=f"Test {role}",
                                          role=role, tenant=tenant, ward=ward)
            identity.set_credentials(conn, new.account_id, password=password, mfa_secret=secret, settings=CHEAP_HASHES)
        return Person(new.account_id, email, password, secret, tenant, role)

    return make


@pytest.fixture(scope="session")
def session_app(db: Database, settings: Settings):
    """The app, built once: building one registers ~1,000 route handlers (1-2 s), which each of the ~85 modules
    that use it paid again. Its state is the same for every module (the session's database, settings and
    policies); a module that changes any (release rules) puts it back."""
    from appliance.web.app import create_app

    return create_app(db, settings)


@pytest.fixture(scope="module")
def app(session_app, db: Database):
    """The session's app, its throttle's counts forgotten: a module's sign-in and package posts are never counted
    against the next module's throttle (every app over the session's database counts in its control.shared_value)."""
    SharedStore(db).delete_all()
    return session_app


@pytest.fixture
def signed_in(app, db: Database, person_factory):
    def sign_in(role: str, tenant: str | None = None, **kwargs) -> TestClient:
        person = person_factory(role, tenant, **kwargs)
        with db.control() as conn:
            token = identity.start_session(conn, person.account_id, mfa_passed=True)
        # Not entered as a context manager: several clients share one app, and each `with` would run
        # (and end) the app's lifespan under the others.
        client = TestClient(app=app, raise_server_exceptions=False)
        client.cookies.set("healthos_session", token)
        client.person = person
        return client

    return sign_in


@pytest.fixture
def token_client(app, db: Database, policy: AccessPolicy):
    def make(tenant: str, *, role: str | None = None, permissions: list[str] | None = None) -> TestClient:
        granted = sorted(policy.permissions_of(role)) if role else list(permissions or [])
        with db.control() as conn:
            machine = identity.create_account(
                conn, policy, kind="machine", email=f"m-{secrets.token_hex(5)}@test.invalid",
                display_name="Test machine client", role="facility_admin", tenant=tenant)
            token = identity.issue_api_token(conn, account_id=machine.account_id, tenant=tenant, name="test",
                                             permissions=granted)
        client = TestClient(app=app, raise_server_exceptions=False)
        client.headers["authorization"] = f"Bearer {token}"
        client.token = token
        return client

    return make
