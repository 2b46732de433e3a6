"""Provisioning, updating and dropping tenants."""

import datetime as dt
import zoneinfo
from pathlib import Path

import pytest
import sqlalchemy as sa

from appliance.substrate.db import Database, tenant_schema
from appliance.substrate.tenancy import (
    ApplyOutcome,
    apply_config,
    apply_path,
    drop_tenant,
    facility_today,
    facility_today_and_start,
    list_tenants,
)
from appliance.substrate.tenant_config import TenantFileError
from tests.conftest import make_tenant_config


def beds(db: Database, slug: str) -> dict[str, bool]:
    with db.tenant(slug) as conn:
        return dict(conn.execute(sa.text("SELECT code, active FROM bed")).all())


def test_apply_creates_then_is_idempotent_then_updates(db: Database):
    config = make_tenant_config()
    try:
        assert apply_config(db, config).outcome is ApplyOutcome.CREATED
        assert beds(db, config.slug) == {"GEN-01": True, "GEN-02": True, "GEN-03": True}
        assert apply_config(db, config).outcome is ApplyOutcome.UNCHANGED

        smaller = config.model_copy(update={"wards": [config.wards[0].model_copy(update={"beds": 2})]})
        assert apply_config(db, smaller).outcome is ApplyOutcome.UPDATED
        assert beds(db, config.slug) == {"GEN-01": True, "GEN-02": True, "GEN-03": False}
    finally:
        drop_tenant(db, config.slug)


def test_a_directory_with_one_bad_file_applies_nothing(db: Database, tmp_path: Path):
    good = make_tenant_config()
    (tmp_path / "good.toml").write_text(
        "\n".join(f'{k} = "{v}"' for k, v in good.model_dump(exclude={"wards"}).items())
    )
    (tmp_path / "bad.toml").write_text('slug = "bad_one"\nname = "x"\n')
    with pytest.raises(TenantFileError) as failure:
        apply_path(db, tmp_path)
    assert "bad.toml" in str(failure.value)
    assert good.slug not in {row["slug"] for row in list_tenants(db)}


def test_drop_removes_schema_role_and_registry_row(db: Database):
    config = make_tenant_config()
    apply_config(db, config)
    drop_tenant(db, config.slug)
    schema = tenant_schema(config.slug)
    with db.control() as conn:
        assert conn.execute(sa.text("SELECT 1 FROM pg_namespace WHERE nspname = :s"), {"s": schema}).first() is None
        assert conn.execute(sa.text("SELECT 1 FROM pg_roles WHERE rolname = :s"), {"s": schema}).first() is None
    assert config.slug not in {row["slug"] for row in list_tenants(db)}
    with pytest.raises(LookupError):
        drop_tenant(db, config.slug)


def test_a_failed_provisioning_leaves_nothing_behind(db: Database):
    config = make_tenant_config()

    def exploding_applier(conn, _config):
        raise RuntimeError("applier failed")

    from appliance.substrate import tenancy

    tenancy.register_config_applier(exploding_applier)
    try:
        with pytest.raises(RuntimeError, match="applier failed"):
            apply_config(db, config)
    finally:
        tenancy._appliers.remove(exploding_applier)
    with db.control() as conn:
        schema = tenant_schema(config.slug)
        assert conn.execute(sa.text("SELECT 1 FROM pg_namespace WHERE nspname = :s"), {"s": schema}).first() is None
        assert conn.execute(sa.text("SELECT 1 FROM pg_roles WHERE rolname = :s"), {"s": schema}).first() is None
    assert config.slug not in {row["slug"] for row in list_tenants(db)}


def test_what_a_tenant_transaction_leaves_for_after_its_commit_or_rollback_runs_then_and_only_then(
        db: Database, tenant_factory):
    """`after_commit` runs once the tenant transaction has committed, with its connection back in the pool
    (the action sees the committed row from another connection); `after_rollback` once it has rolled back instead
    (the action sees the row the rolled-back delete left). Neither runs on the other's outcome, and an action that
    fails is logged: it does not turn a committed transaction into an error, nor change the refusal raised."""
    from appliance.substrate.db import after_commit, after_rollback

    slug = tenant_factory().slug
    seen: list = []

    def look(database: Database) -> None:
        with database.tenant(slug) as conn:
            seen.append(conn.execute(sa.text("SELECT count(*) FROM ward WHERE code = 'AFTER'")).scalar())

    def failing(database: Database) -> None:
        with database.tenant(slug) as again:
            again.execute(sa.text("SELECT * FROM no_such_table"))

    with db.tenant(slug) as conn:
        conn.execute(sa.text("INSERT INTO ward (code, name, kind) VALUES ('AFTER', 'After commit', 'general')"))
        after_commit(conn, look)
        after_rollback(conn, lambda database: seen.append("rolled back"))
        assert seen == []
    assert seen == [1]
    with pytest.raises(RuntimeError, match="the request failed"), db.tenant(slug) as conn:
        conn.execute(sa.text("DELETE FROM ward WHERE code = 'AFTER'"))
        after_commit(conn, lambda database: seen.append("committed"))
        after_rollback(conn, failing)
        after_rollback(conn, look)
        assert seen == [1]
        raise RuntimeError("the request failed")
    assert seen == [1, 1]
    with db.tenant(slug) as conn:
        after_commit(conn, failing)
        after_commit(conn, look)
    assert seen == [1, 1, 1]
    for hook in (after_commit, after_rollback):
        with pytest.raises(RuntimeError, match="outside a tenant transaction"), db.control() as conn:
            hook(conn, look)


def test_the_facility_day_is_read_on_its_own_calendar_not_the_servers(db: Database, tenant_factory):
    """Every layer and page asks the substrate what day it is at a facility: a Kiritimati clinic (UTC+14) is a
    day ahead of the server's UTC date for 14 hours of every day, and its day began at its own midnight."""
    zone = zoneinfo.ZoneInfo("Pacific/Kiritimati")
    slug = tenant_factory(timezone=zone.key).slug
    before = dt.datetime.now(zone).date()
    today, start = facility_today_and_start(db, slug)
    assert facility_today(db, slug) in {before, dt.datetime.now(zone).date()}
    assert today in {before, dt.datetime.now(zone).date()}
    assert (start.date(), start.time(), start.utcoffset()) == (today, dt.time(), dt.timedelta(hours=14))
    assert start <= dt.datetime.now(dt.UTC) < start + dt.timedelta(days=1)
