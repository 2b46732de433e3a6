"""Isolation between tenants, proven at the SQL level: PostgreSQL itself refuses a tenant
transaction that names another tenant's schema, and unqualified names resolve to the tenant's own."""

import contextlib
import dataclasses

import pytest
import sqlalchemy as sa
from psycopg import errors as pg_errors

from appliance.substrate.db import Database, UnknownTenant, tenant_schema


def test_query_naming_another_tenants_schema_is_refused_by_postgresql(db: Database, tenant_a, tenant_b):
    with pytest.raises(sa.exc.ProgrammingError) as refused, db.tenant(tenant_a.slug) as conn:
        conn.execute(sa.text(f'SELECT * FROM "{tenant_schema(tenant_b.slug)}".ward'))
    assert isinstance(refused.value.orig, pg_errors.InsufficientPrivilege)
    assert "permission denied for schema" in str(refused.value.orig)


def test_writes_into_another_tenants_schema_are_refused(db: Database, tenant_a, tenant_b):
    with pytest.raises(sa.exc.ProgrammingError) as refused, db.tenant(tenant_a.slug) as conn:
        conn.execute(sa.text(
            f"INSERT INTO \"{tenant_schema(tenant_b.slug)}\".ward (code, name, kind) VALUES ('X', 'x', 'icu')"
        ))
    assert isinstance(refused.value.orig, pg_errors.InsufficientPrivilege)


def test_unqualified_table_resolves_to_the_tenant_of_the_transaction(db: Database, tenant_a, tenant_b):
    with db.tenant(tenant_a.slug) as conn:
        assert conn.execute(sa.text("SELECT array_agg(code ORDER BY code) FROM ward")).scalar() == ["GEN"]
        assert conn.execute(sa.text("SELECT current_schema()")).scalar() == tenant_schema(tenant_a.slug)
        assert conn.execute(sa.text("SELECT current_user")).scalar() == tenant_schema(tenant_a.slug)
    with db.tenant(tenant_b.slug) as conn:
        assert conn.execute(sa.text("SELECT array_agg(code ORDER BY code) FROM ward")).scalar() == ["MAT"]


def test_control_schema_is_out_of_reach_of_a_tenant(db: Database, tenant_a):
    with pytest.raises(sa.exc.ProgrammingError) as refused, db.tenant(tenant_a.slug) as conn:
        conn.execute(sa.text("SELECT slug FROM control.tenant"))
    assert isinstance(refused.value.orig, pg_errors.InsufficientPrivilege)


def test_a_tenant_role_cannot_change_its_own_tables(db: Database, tenant_a):
    """The schema belongs to the appliance's login role; a tenant role reads and writes rows only."""
    with pytest.raises(sa.exc.ProgrammingError) as refused, db.tenant(tenant_a.slug) as conn:
        conn.execute(sa.text("ALTER TABLE ward ADD COLUMN smuggled text"))
    assert isinstance(refused.value.orig, pg_errors.InsufficientPrivilege)


def test_pooled_connection_carries_nothing_after_a_tenant_transaction(settings, tenant_a):
    # A one-connection pool of its own, so the next transaction is certain to reuse the same backend.
    db = Database.open(dataclasses.replace(settings, pool_size=1, pool_max_overflow=0))
    with db.tenant(tenant_a.slug) as conn:
        backend = conn.execute(sa.text("SELECT pg_backend_pid()")).scalar()
    with db.control() as conn:
        assert conn.execute(sa.text("SELECT pg_backend_pid()")).scalar() == backend  # same pooled connection
        assert conn.execute(sa.text("SELECT current_user")).scalar() != tenant_schema(tenant_a.slug)
        assert tenant_schema(tenant_a.slug) not in conn.execute(sa.text("SHOW search_path")).scalar()
    db.engine.dispose()


@pytest.mark.parametrize("tenant_transaction_fails", [False, True])
def test_control_transaction_after_a_tenant_transaction_is_still_one_transaction(settings, tenant_a,
                                                                                tenant_transaction_fails):
    # A tenant transaction runs its driver connection in autocommit mode and opens BEGIN itself; the
    # pooled connection must come back in transaction mode, or a control transaction's statements
    # would each commit on their own and a failure half-way would leave half a change.
    db = Database.open(dataclasses.replace(settings, pool_size=1, pool_max_overflow=0))
    try:
        expected = pytest.raises(ZeroDivisionError) if tenant_transaction_fails else contextlib.nullcontext()
        with expected, db.tenant(tenant_a.slug) as conn:
            conn.execute(sa.text("SELECT 1"))
            if tenant_transaction_fails:
                1 / 0  # noqa: B018 -- the tenant transaction fails in the caller's code
        with db.control() as conn:
            first = conn.execute(sa.text("SELECT txid_current()")).scalar()
            assert conn.execute(sa.text("SELECT txid_current()")).scalar() == first
    finally:
        db.engine.dispose()


def test_login_role_without_set_role_cannot_reach_tenant_rows_through_membership(db: Database, tenant_a):
    """The login role is a NOINHERIT member: tenant rights arrive only with SET ROLE."""
    with db.control() as conn:
        inherits = conn.execute(sa.text(
            "SELECT inherit_option FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid "
            "WHERE r.rolname = :role AND m.member = (SELECT oid FROM pg_roles WHERE rolname = current_user)"
        ), {"role": tenant_schema(tenant_a.slug)}).scalar()
    assert inherits is False


def test_unknown_and_malformed_tenants_are_refused_before_any_query(db: Database):
    with pytest.raises(UnknownTenant, match="no_such_place"), db.tenant("no_such_place"):
        pass
    with pytest.raises(ValueError, match="not valid"), db.tenant("t_x; DROP SCHEMA control"):
        pass


# -- a whole tenant transaction in one message (`Database.tenant_statement`) -------------------------


def test_one_message_transaction_is_pinned_like_any_other(db: Database, tenant_a, tenant_b):
    row = db.tenant_statement(tenant_a.slug, lambda raw: "SELECT current_user, current_schema(), "
                                                         "(SELECT array_agg(code ORDER BY code) FROM ward)")
    assert row == (tenant_schema(tenant_a.slug), tenant_schema(tenant_a.slug), ["GEN"])
    assert db.tenant_statement(tenant_b.slug, lambda raw: "SELECT array_agg(code) FROM ward") == (["MAT"],)


def test_one_message_transaction_naming_another_tenant_or_control_is_refused(db: Database, tenant_a, tenant_b):
    for target in (f'"{tenant_schema(tenant_b.slug)}".ward', "control.tenant"):
        with pytest.raises(sa.exc.ProgrammingError) as refused:
            db.tenant_statement(tenant_a.slug, lambda raw, target=target: f"SELECT count(*) FROM {target}")
        assert isinstance(refused.value.orig, pg_errors.InsufficientPrivilege)


def test_one_message_transaction_commits_all_or_nothing(db: Database, tenant_a):
    def count() -> int:
        return db.tenant_statement(tenant_a.slug, lambda raw: "SELECT count(*) FROM ward WHERE code = 'TMP'")[0]

    insert = "INSERT INTO ward (code, name, kind) VALUES ('TMP', 'Temporary', 'general')"
    # The insert runs, then the same statement fails: nothing of it may remain.
    with pytest.raises(sa.exc.DBAPIError):
        db.tenant_statement(tenant_a.slug, lambda raw: f"WITH i AS ({insert} RETURNING 1) SELECT 1 / 0 FROM i")
    assert count() == 0
    # And the connection that failed is usable again, in a transaction of its own.
    counted = f"WITH i AS ({insert} RETURNING 1) SELECT count(*) FROM i"
    inserted = db.tenant_statement(tenant_a.slug, lambda raw: counted)
    assert inserted == (1,)
    assert count() == 1
    with db.tenant(tenant_a.slug) as conn:
        conn.execute(sa.text("DELETE FROM ward WHERE code = 'TMP'"))


def test_one_message_transaction_sends_nothing_when_told_so_and_refuses_unknown_tenants(db: Database, tenant_a):
    assert db.tenant_statement(tenant_a.slug, lambda raw: None) is None
    with pytest.raises(UnknownTenant):
        db.tenant_statement("no_such_place", lambda raw: "SELECT 1")
    with pytest.raises(ValueError, match="not valid"):
        db.tenant_statement("t_x; DROP SCHEMA control", lambda raw: "SELECT 1")


def test_one_message_transaction_of_a_tenant_dropped_by_another_process_is_unknown(db: Database, settings,
                                                                                   tenant_factory):
    from appliance.substrate.tenancy import drop_tenant

    doomed = tenant_factory(name="Doomed Facility")
    other = Database.open(settings)  # another process's view: it has seen the tenant and cached it
    try:
        assert other.tenant_statement(doomed.slug, lambda raw: "SELECT 1") == (1,)
        drop_tenant(db, doomed.slug)
        with pytest.raises(UnknownTenant):
            other.tenant_statement(doomed.slug, lambda raw: "SELECT 1")
        assert not other.tenant_exists(doomed.slug)
    finally:
        other.engine.dispose()
