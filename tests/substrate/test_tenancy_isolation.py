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
