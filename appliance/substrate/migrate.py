"""Schema migrations: one Alembic history for `control`, one applied to every tenant schema.

`migrate_all` brings `control` and then each tenant schema to head, each tenant in its own
transaction, so a failure leaves the tenants already done at head, the failing one untouched, and a
re-run resumes where it stopped. Tenants already at head cost one indexed read of their version
table, so a no-op run over a thousand tenants takes seconds, not minutes.

`find_drift` compares every tenant schema with the model: schemas are grouped by a catalog
fingerprint (tables, columns, types, nullability, indexes) read in one query, and Alembic's
comparison runs once per distinct fingerprint, so drift is found without reflecting every schema.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.runtime.environment import EnvironmentContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy.engine import Connection

from appliance.substrate.db import CONTROL_SCHEMA, Database, tenant_schema

MIGRATIONS = Path(__file__).parent / "migrations"
VERSION_TABLE = "alembic_version"


class MigrationFailed(RuntimeError):
    def __init__(self, schema: str, cause: BaseException):
        super().__init__(f"migrating {schema} failed: {cause}")
        self.schema = schema


class SchemaAhead(MigrationFailed):
    """A schema a newer release migrated (`ahead_of_code`): nothing is run on it."""

    def __init__(self, schema: str, revision: str):
        RuntimeError.__init__(self, f"{schema} is at {revision}, {AHEAD_OF_CODE}")
        self.schema = schema


@functools.cache
def _script(kind: str) -> tuple[Config, ScriptDirectory]:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS / kind))
    return config, ScriptDirectory.from_config(config)


def head(kind: str) -> str:
    """The head revision of the `control` or `tenant` history."""
    revision = _script(kind)[1].get_current_head()
    if revision is None:
        raise RuntimeError(f"the {kind} migration history is empty")
    return revision


def _upgrade(conn: Connection, kind: str, schema: str) -> None:
    """Run the `kind` history up to head on `schema`, inside the caller's transaction."""
    config, script = _script(kind)

    def upgrade_steps(rev, _context):
        return script._upgrade_revs("head", rev)  # the same call alembic's `upgrade` command makes

    conn.exec_driver_sql(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
    # Unqualified names in the tenant scripts resolve into this schema, and only this schema.
    conn.execute(sa.text("SELECT set_config('search_path', :schema, true)"), {"schema": schema})
    with EnvironmentContext(config, script, fn=upgrade_steps, destination_rev="head") as env:
        env.configure(connection=conn, version_table_schema=schema, transactional_ddl=True)
        env.run_migrations()


def schema_revision(conn: Connection, schema: str) -> str | None:
    exists = conn.execute(sa.text("SELECT to_regclass(:table)"), {"table": f"{schema}.{VERSION_TABLE}"})
    if exists.scalar() is None:
        return None
    return conn.execute(sa.text(f'SELECT version_num FROM "{schema}".{VERSION_TABLE}')).scalar()  # noqa: S608 -- schema from a validated slug


def migrate_control(db: Database) -> bool:
    """Bring `control` to head; True if anything ran."""
    with db.control() as conn:
        # Two processes starting at once (the CLI beside `healthos up`) must not both migrate.
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext('healthos.migrate.control'))"))
        current = schema_revision(conn, CONTROL_SCHEMA)
        if current == head("control"):
            return False
        if ahead_of_code("control", current):
            raise SchemaAhead(CONTROL_SCHEMA, current)
        _upgrade(conn, "control", CONTROL_SCHEMA)
        return True


def migrate_tenant_schema(conn: Connection, slug: str) -> bool:
    """Bring one tenant schema to head inside the caller's transaction; True if anything ran."""
    schema = tenant_schema(slug)
    current = schema_revision(conn, schema)
    if current == head("tenant"):
        return False
    if ahead_of_code("tenant", current):
        raise SchemaAhead(schema, current)
    _upgrade(conn, "tenant", schema)
    return True


@dataclass
class MigrationReport:
    control_changed: bool
    tenants_total: int
    tenants_changed: list[str]


def migrate_all(
    db: Database,
    slugs: Iterable[str],
    progress: Callable[[str, bool], None] | None = None,
) -> MigrationReport:
    control_changed = migrate_control(db)
    slugs = list(slugs)
    target = head("tenant")
    with db.control() as conn:
        current = _tenant_revisions(conn, slugs)
    changed: list[str] = []
    for slug in slugs:
        did = False
        if current.get(slug) != target:
            try:
                with db.control() as conn:
                    conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:key))"),
                                 {"key": f"healthos.migrate.{slug}"})
                    did = migrate_tenant_schema(conn, slug)
            except SchemaAhead:
                raise
            except Exception as exc:  # any failure names its tenant; earlier tenants stay migrated
                raise MigrationFailed(tenant_schema(slug), exc) from exc
            if did:
                changed.append(slug)
        if progress is not None:
            progress(slug, did)
    return MigrationReport(control_changed, len(slugs), changed)


# What an operator is told of a schema a newer release migrated, before this code was rolled back to.
AHEAD_OF_CODE = ("migrated by a newer release than this one (the code was rolled back since): healthos migrate "
                 "cannot bring it back; run the release that migrated it, or restore the backup taken before that "
                 "upgrade")


def ahead_of_code(kind: str, revision: str | None) -> bool:
    """Whether a schema at `revision` is ahead of this code: migrated by a newer release (the code rolled back
    since), so `healthos migrate` cannot help and must not be what the operator is told to run."""
    if revision is None:
        return False
    try:
        _script(kind)[1].get_revision(revision)
    except CommandError:
        return True
    return False


def tenants_ahead_of_code(db: Database, slugs: list[str]) -> list[str]:
    """Slugs whose schema a newer release migrated (see `ahead_of_code`)."""
    with db.control() as conn:
        current = _tenant_revisions(conn, slugs)
    return [slug for slug in slugs if ahead_of_code("tenant", current.get(slug))]


def tenants_behind_head(db: Database, slugs: list[str]) -> list[str]:
    """Slugs whose schema is missing or not at the tenant head."""
    target = head("tenant")
    with db.control() as conn:
        current = _tenant_revisions(conn, slugs)
    return [slug for slug in slugs if current.get(slug) != target]


def _tenant_revisions(conn: Connection, slugs: list[str]) -> dict[str, str | None]:
    """Every tenant's current revision, in one round trip per 500 tenants."""
    revisions: dict[str, str | None] = {}
    for start in range(0, len(slugs), 500):
        chunk = slugs[start : start + 500]
        schemas = {tenant_schema(slug): slug for slug in chunk}
        present = conn.execute(
            sa.text("SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE c.relname = :table AND n.nspname = ANY(:schemas)"),
            {"table": VERSION_TABLE, "schemas": list(schemas)},
        ).scalars().all()
        if present:
            # Schema names come from validated slugs (tenant_schema) and are quoted, never from input.
            union = " UNION ALL ".join(
                f"SELECT '{schema}' AS schema, version_num FROM \"{schema}\".{VERSION_TABLE}"  # noqa: S608
                for schema in present
            )
            for schema, version in conn.exec_driver_sql(union):
                revisions[schemas[schema]] = version
    return revisions


# -- drift ----------------------------------------------------------------------------------------

_FINGERPRINT_SQL = sa.text(
    """
    SELECT n.nspname AS schema,
           md5(string_agg(item, '|' ORDER BY item)) AS fingerprint
    FROM pg_namespace n
    JOIN LATERAL (
        SELECT format('col:%s.%s:%s:%s', c.relname, a.attname,
                      format_type(a.atttypid, a.atttypmod), a.attnotnull) AS item
        FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid
        WHERE c.relnamespace = n.oid AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped
          AND c.relname <> 'alembic_version'
        UNION ALL
        SELECT format('idx:%s:%s', i.relname,
                      replace(pg_get_indexdef(i.oid), quote_ident(n.nspname) || '.', ''))
        FROM pg_class i WHERE i.relnamespace = n.oid AND i.relkind = 'i'
    ) items ON true
    WHERE n.nspname = ANY(:schemas)
    GROUP BY n.nspname
    """
)


@dataclass
class Drift:
    schemas: list[str]
    differences: list[str]


def find_drift(db: Database, slugs: Iterable[str], metadata: sa.MetaData) -> list[Drift]:
    """Tenant schemas that differ from `metadata`, with Alembic's description of each difference."""
    schemas = [tenant_schema(slug) for slug in slugs]
    if not schemas:
        return []
    with db.control() as conn:
        groups: dict[str, list[str]] = {}
        for schema, fingerprint in conn.execute(_FINGERPRINT_SQL, {"schemas": schemas}):
            groups.setdefault(fingerprint, []).append(schema)
        missing = sorted(set(schemas) - {s for group in groups.values() for s in group})
        drifts = [Drift(missing, ["schema has no tables"])] if missing else []
        for members in groups.values():
            differences = _compare(conn, members[0], metadata)
            if differences:
                drifts.append(Drift(sorted(members), differences))
    return drifts


def _compare(conn: Connection, schema: str, metadata: sa.MetaData) -> list[str]:
    located = sa.MetaData()
    for table in metadata.sorted_tables:
        table.to_metadata(located, schema=schema)

    def only_this_schema(name, type_, parent_names):
        if type_ == "schema":
            return name == schema
        if type_ == "table":
            return name != VERSION_TABLE
        return True

    context = MigrationContext.configure(
        conn,
        opts={"include_schemas": True, "include_name": only_this_schema, "compare_type": True,
              "target_metadata": located},
    )
    return [_describe_diff(diff) for diff in compare_metadata(context, located)]


def _describe_diff(diff) -> str:
    if isinstance(diff, list):  # column-level changes come grouped per column
        return "; ".join(_describe_diff(item) for item in diff)
    names = []
    for part in diff[1:]:
        if isinstance(part, str):
            names.append(part)
        elif getattr(part, "name", None):
            names.append(str(part.name))
    return f"{diff[0]} {'.'.join(names)}"
