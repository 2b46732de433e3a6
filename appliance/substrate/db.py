"""The database room: one engine and one connection pool for the whole appliance, and the only ways
to open a transaction — `control()` for the appliance's own schema, `tenant(slug)` for one
facility's schema, and `tenant_statement(slug, ...)` for a whole tenant transaction of one statement
sent as one message.

A tenant transaction pins `role` and `search_path` with `set_config(..., is_local => true)` (`SET
LOCAL ROLE` / `SET LOCAL search_path`) in the same message as its BEGIN, so PostgreSQL itself refuses
any query that names another tenant's schema; the schema name is validated before it is written into
that message. Both settings end with the transaction, so a pooled connection carries nothing from one
tenant to the next.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import psycopg
import sqlalchemy as sa
import structlog
from sqlalchemy.engine import Connection, Engine

from appliance.substrate.config import Settings
from appliance.substrate.embedded import EmbeddedCluster

log = structlog.get_logger(__name__)

CONTROL_SCHEMA = "control"
# conn.info keys: what `after_commit` asked to run once the tenant transaction has committed, and what
# `after_rollback` asked to run once it has rolled back instead.
_AFTER_COMMIT = "healthos_after_commit"
_AFTER_ROLLBACK = "healthos_after_rollback"
SLUG_PATTERN = re.compile(r"^[a-z][a-z0-9_]{1,30}$")
_TENANT_SCHEMA = re.compile(r"^t_[a-z][a-z0-9_]{1,30}$")



def _pin_tenant(schema: str) -> str:
    """BEGIN, and the tenant's role and search_path for this transaction only (`SET LOCAL`), as one
    simple-protocol message. The schema is written into the text, which is safe only because
    `tenant_schema` admits nothing but `t_` and ^[a-z][a-z0-9_]{1,30}$ — no quote can reach it."""
    if not _TENANT_SCHEMA.fullmatch(schema):
        raise InvalidSlug(f"{schema!r} is not a tenant schema name")
    return (f"BEGIN; SELECT set_config('role', '{schema}', true), "
            f"set_config('search_path', '{schema}', true)")

# Tables of the appliance itself (tenant registry, identity, wrapped keys...).
control_metadata = sa.MetaData(schema=CONTROL_SCHEMA)
# Tables present once in every tenant schema; unqualified, so search_path picks the tenant.
tenant_metadata = sa.MetaData()


class InvalidSlug(ValueError):
    """A tenant slug that does not match ^[a-z][a-z0-9_]{1,30}$."""


class UnknownTenant(LookupError):
    def __init__(self, slug: str):
        super().__init__(f"no tenant named {slug!r} on this appliance")
        self.slug = slug


def after_commit(conn: Connection, action: Callable[[Database], None]) -> None:
    """Run `action(db)` once the tenant transaction of `conn` has committed, never if it rolls back, with
    the transaction's connection back in the pool: for what another transaction must do once this one's
    rows can be seen (a facility listed for a chart's subject once the chart is there to be found). The
    transaction has committed whatever the action does: an action that fails is logged, not raised."""
    if conn.info.get("healthos_tenant") is None:
        raise RuntimeError("after_commit outside a tenant transaction (db.tenant)")
    conn.info.setdefault(_AFTER_COMMIT, []).append(action)


def after_rollback(conn: Connection, action: Callable[[Database], None]) -> None:
    """Run `action(db)` if the tenant transaction of `conn` rolls back, never if it commits, with the transaction's
    connection back in the pool: to undo what another transaction wrote for this one ahead of it (the identity
    index's new subject of a registration then refused), so a refusal leaves nothing behind. The refusal is raised
    whatever the action does: an action that fails is logged."""
    if conn.info.get("healthos_tenant") is None:
        raise RuntimeError("after_rollback outside a tenant transaction (db.tenant)")
    conn.info.setdefault(_AFTER_ROLLBACK, []).append(action)


def driver(conn: Connection) -> psycopg.Connection:
    """The psycopg connection under a transaction, for the few statements every request runs (tenant
    pin, token lookup, care check, chart, audit append): SQLAlchemy's statement machinery costs ~100 µs
    of CPU per statement, more than PostgreSQL spends on them. Same connection, same transaction."""
    return conn.connection.driver_connection


@contextmanager
def _driver_autocommit(conn: Connection) -> Iterator[None]:
    """The driver in autocommit mode for a block, put back before the pool hands the connection on
    (a broken connection is discarded instead, never given to a control transaction in autocommit).
    Set on the driver directly: SQLAlchemy's isolation-level option makes four driver calls per
    checkout to do the same."""
    raw = driver(conn)
    raw.autocommit = True
    try:
        yield
    finally:
        try:
            raw.autocommit = False
        except psycopg.Error:
            conn.invalidate()


def validate_slug(slug: str) -> str:
    if not isinstance(slug, str) or not SLUG_PATTERN.fullmatch(slug):
        raise InvalidSlug(
            f"tenant slug {slug!r} is not valid: use 2-31 characters, lowercase letters, digits and "
            "underscore, starting with a letter"
        )
    return slug


def tenant_schema(slug: str) -> str:
    """Schema and role name of a tenant: `t_<slug>`."""
    return f"t_{validate_slug(slug)}"


@dataclass
class Database:
    """The appliance's handle on PostgreSQL: the engine, and the embedded cluster if it runs one."""

    engine: Engine
    cluster: EmbeddedCluster | None = None
    tenants_per_connection: int = 200
    _known_tenants: set[str] = field(default_factory=set)

    @classmethod
    def open(cls, settings: Settings, *, start_embedded: bool = True) -> Database:
        cluster = None
        if settings.database_url:
            url = settings.database_url
            if url.startswith("postgresql://"):
                url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
        else:
            cluster = EmbeddedCluster(settings.home)
            if start_embedded:
                cluster.ensure_running()
            url = cluster.url()
        engine = sa.create_engine(
            url,
            pool_size=settings.pool_size,
            max_overflow=settings.pool_max_overflow,
            pool_recycle=settings.pool_recycle_seconds,
            pool_pre_ping=False,
            # Each statement's plan is cached server-side after a few uses; the tenant's search_path is
            # part of what PostgreSQL checks before reusing a plan, so plans never cross tenants.
            connect_args={"application_name": "healthos", "prepare_threshold": 5},
        )
        return cls(engine=engine, cluster=cluster, tenants_per_connection=settings.pool_tenants_per_connection)

    def connections_at_most(self) -> int:
        """How many connections the pool lends at once: its size and its overflow (which QueuePool keeps
        only privately)."""
        pool = self.engine.pool
        return pool.size() + max(getattr(pool, "_max_overflow", 0), 0)

    def close(self) -> None:
        self.engine.dispose()
        if self.cluster is not None:
            self.cluster.stop()

    def unpooled_connection(self) -> psycopg.Connection:
        """A connection of its own, made as the pool makes them but never returned to it: for a LISTEN
        that lives as long as the process (closing it closes it)."""
        pooled = self.engine.raw_connection()
        connection = pooled.driver_connection
        pooled.detach()
        return connection

    def libpq_url(self) -> str:
        if self.cluster is not None:
            return self.cluster.libpq_url()
        return self.engine.url.set(drivername="postgresql").render_as_string(hide_password=True)

    @contextmanager
    def control(self) -> Iterator[Connection]:
        """A transaction as the appliance itself, on the `control` schema."""
        with self.engine.begin() as conn:
            yield conn

    @contextmanager
    def control_autocommit(self) -> Iterator[Connection]:
        """Single-statement reads (and at most one idempotent write) on `control` without a
        transaction: no BEGIN and COMMIT round trips, for the lookups every request makes."""
        with self.engine.connect() as conn, _driver_autocommit(conn):
            yield conn

    @contextmanager
    def tenant(self, slug: str) -> Iterator[Connection]:
        """A transaction inside one tenant: role and search_path pinned before anything else runs."""
        schema = tenant_schema(slug)
        if not self.tenant_exists(slug):
            raise UnknownTenant(slug)
        then: list[Callable[[Database], None]] = []
        undo: list[Callable[[Database], None]] = []
        try:
            with self.engine.connect() as conn:
                # The transaction is opened and ended on the driver, and the role and search_path are
                # pinned in the same round trip as BEGIN: every request opens a tenant transaction, and on
                # this kind of machine each round trip costs ~60 µs of CPU in send/poll/recv system calls
                # alone; SQLAlchemy's own BEGIN and statement machinery cost as much again (scratch
                # measurement: 538 → ~300 µs of client CPU per trivial tenant transaction). The driver is
                # put in autocommit mode for the duration, so neither it nor SQLAlchemy sends a BEGIN or
                # ends the transaction behind our back, and is put back before the pool has it again.
                pinned = driver(conn)
                with _driver_autocommit(conn):
                    try:
                        pinned.execute(_pin_tenant(schema))
                    except psycopg.Error as exc:
                        pinned.rollback()
                        # Dropped by another process since we cached it: its role no longer exists.
                        self._known_tenants.discard(slug)
                        raise UnknownTenant(slug) from exc
                    # The audit seam reads which tenant's trail an access belongs to from here; `info`
                    # lives with the pooled connection, so it is taken back when the transaction ends.
                    conn.info["healthos_tenant"] = slug
                    try:
                        yield conn
                    except BaseException:
                        with contextlib.suppress(psycopg.Error):
                            pinned.rollback()
                        raise
                    else:
                        try:
                            pinned.commit()
                        except psycopg.Error as exc:
                            raise sa.exc.DBAPIError.instance("COMMIT", None, exc, psycopg.Error) from exc
                        then = conn.info.get(_AFTER_COMMIT, [])
                    finally:
                        conn.info.pop("healthos_tenant", None)
                        conn.info.pop(_AFTER_COMMIT, None)
                        undo = conn.info.pop(_AFTER_ROLLBACK, [])
                        # What a layer kept for this transaction only (record's checked encounters).
                        for key in [key for key in conn.info if key.startswith("healthos_tx_")]:
                            del conn.info[key]
                self._served(conn, slug)
        except BaseException:
            self._run_after(undo, slug, "after_rollback_failed")
            raise
        self._run_after(then, slug, "after_commit_failed")

    def _run_after(self, actions: list[Callable[[Database], None]], slug: str, failed: str) -> None:
        for action in actions:
            try:
                action(self)
            except (psycopg.Error, sa.exc.SQLAlchemyError) as exc:
                log.warning(failed, tenant=slug, action=getattr(action, "__qualname__", "?"),
                            error=exc.__class__.__name__)

    def tenant_statement(self, slug: str, compose: Callable[[psycopg.Connection], str | None]) -> tuple | None:
        """A whole tenant transaction of one statement as one simple-protocol message — BEGIN, the
        tenant pin, the statement, COMMIT — and the statement's first row. One round trip where
        `tenant()` takes three; on this kind of machine a round trip costs ~0.1 ms of CPU on each side,
        more than a short statement itself. `compose(connection)` gives the statement with its values
        bound as literals by psycopg on that connection (`ClientCursor.mogrify`,
        `Transformer.as_literal`), or None to send nothing (and return None)."""
        schema = tenant_schema(slug)
        if not self.tenant_exists(slug):
            raise UnknownTenant(slug)
        with self.engine.connect() as conn:
            raw = driver(conn)
            statement = compose(raw)
            if statement is None:
                return None
            with _driver_autocommit(conn):
                cursor = raw.cursor()
                try:
                    cursor.execute(f"{_pin_tenant(schema)}; {statement}; COMMIT")
                except psycopg.errors.InvalidParameterValue as exc:
                    raw.rollback()
                    self._known_tenants.discard(slug)  # its role no longer exists: dropped meanwhile
                    raise UnknownTenant(slug) from exc
                except psycopg.Error as exc:
                    with contextlib.suppress(psycopg.Error):
                        raw.rollback()
                    # Named, not quoted: the statement carries its values (patient ids among them).
                    raise sa.exc.DBAPIError.instance("tenant_statement", None, exc, psycopg.Error) from exc
                cursor.nextset()  # past BEGIN
                cursor.nextset()  # past the pin
                row = cursor.fetchone()
            self._served(conn, slug)
        return row

    def _served(self, conn: Connection, slug: str) -> None:
        # A backend keeps catalog and plan caches for every schema it has touched; retiring a
        # connection after it has served many tenants keeps backend memory flat however many
        # tenants the appliance holds (bench/tenancy.py measures it).
        if conn.invalidated:
            return
        served: set[str] = conn.info.setdefault("healthos_tenants", set())
        served.add(slug)
        if len(served) > self.tenants_per_connection:
            conn.invalidate()

    def tenant_known(self, slug: str) -> bool:
        """Whether this process has already found `slug` active: no database call, safe in the event loop."""
        return slug in self._known_tenants

    def tenant_exists(self, slug: str) -> bool:
        """Whether `slug` names an active tenant; positive answers are cached for the process."""
        if slug in self._known_tenants:
            return True
        if not SLUG_PATTERN.fullmatch(slug or ""):
            return False
        with self.control() as conn:
            found = conn.execute(
                sa.text("SELECT 1 FROM control.tenant WHERE slug = :slug AND status = 'active'"),
                {"slug": slug},
            ).first()
        if found:
            self._known_tenants.add(slug)
        return found is not None

    def forget_tenant(self, slug: str) -> None:
        self._known_tenants.discard(slug)
