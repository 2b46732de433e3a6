"""Tenancy: the registry of facilities in `control.tenant` and the life of a tenant schema.

Provisioning a tenant creates, in one transaction: its NOLOGIN role `t_<slug>`, its schema of the
same name (owned by the appliance's login role, so the tenant role can read and write rows but never
change the tables or their triggers), the grants that let the tenant role — and only it — use the
schema, the tenant tables at head, and the facility's configuration (wards, beds, and whatever the
layers registered an applier for). Applying an unchanged file changes nothing.

Identifiers (schema, role) come only from validated slugs and are quoted; no request data is ever
formatted into SQL.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import time
import zoneinfo
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import sqlalchemy as sa
import structlog
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection

from appliance.substrate import audit, identity, keys
from appliance.substrate.db import Database, UnknownTenant, control_metadata, tenant_schema
from appliance.substrate.migrate import head, migrate_tenant_schema, schema_revision
from appliance.substrate.tenant_config import TenantConfig, TenantFileError, parse_tenant_file, tenant_files

log = structlog.get_logger(__name__)

tenant_table = sa.Table(
    "tenant",
    control_metadata,
    sa.Column("slug", sa.Text, primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("facility_type", sa.Text, nullable=False),
    sa.Column("country_code", sa.Text, nullable=False),
    sa.Column("region", sa.Text, nullable=False),
    sa.Column("district", sa.Text, nullable=False),
    sa.Column("timezone", sa.Text, nullable=False),
    sa.Column("currency", sa.Text, nullable=False),
    sa.Column("config", postgresql.JSONB, nullable=False),
    sa.Column("config_sha256", sa.Text, nullable=False),
    sa.Column("status", sa.Text, nullable=False, server_default="active"),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
)

# Functions layers register to bring their tenant tables in line with a tenant file, run inside the
# tenant's own transaction (role and search_path pinned) right after the schema reaches head.
ConfigApplier = Callable[[Connection, TenantConfig], None]
_appliers: list[ConfigApplier] = []


def register_config_applier(applier: ConfigApplier) -> ConfigApplier:
    if applier not in _appliers:
        _appliers.append(applier)
    return applier


class ApplyOutcome(StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"


@dataclass(frozen=True)
class ApplyResult:
    slug: str
    outcome: ApplyOutcome
    source: str


def _quote(conn: Connection, identifier: str) -> str:
    return conn.dialect.identifier_preparer.quote_identifier(identifier)


def _ensure_role_and_schema(conn: Connection, slug: str) -> None:
    schema = tenant_schema(slug)
    role = _quote(conn, schema)
    exists = conn.execute(sa.text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": schema}).first()
    if not exists:
        conn.exec_driver_sql(f"CREATE ROLE {role} NOLOGIN NOINHERIT")
    # Membership with SET but without INHERIT (PostgreSQL 16+ default for a NOINHERIT login role):
    # the appliance reaches tenant data only by SET ROLE, at the start of a tenant transaction.
    conn.exec_driver_sql(f"GRANT {role} TO CURRENT_USER")
    conn.exec_driver_sql(f"CREATE SCHEMA IF NOT EXISTS {role}")
    conn.exec_driver_sql(f"REVOKE ALL ON SCHEMA {role} FROM PUBLIC")
    conn.exec_driver_sql(f"GRANT USAGE ON SCHEMA {role} TO {role}")
    conn.exec_driver_sql(
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA {role} GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {role}"
    )
    conn.exec_driver_sql(f"ALTER DEFAULT PRIVILEGES IN SCHEMA {role} GRANT USAGE, SELECT ON SEQUENCES TO {role}")


def _pin_tenant(conn: Connection, slug: str) -> None:
    conn.execute(
        sa.text("SELECT set_config('role', :s, true), set_config('search_path', :s, true)"),
        {"s": tenant_schema(slug)},
    )


OrgUnitHolders = dict[str, list[tuple[str, str]]]  # an organisation unit: the (slug, name) of each facility given it

# Organisation units counted by someone other than this appliance's facilities, each as (org unit, where it is
# counted, the facility's name): the national room registers those of other appliances' packages, so a facility
# applied here under one of them is refused by the same rule as two facilities of this appliance sharing one.
OrgUnitsHeldElsewhere = Callable[[Connection], Iterable[tuple[str, str, str]]]
_held_elsewhere: list[OrgUnitsHeldElsewhere] = []


def register_org_units_held_elsewhere(source: OrgUnitsHeldElsewhere) -> OrgUnitsHeldElsewhere:
    if source not in _held_elsewhere:
        _held_elsewhere.append(source)
    return source


def _org_unit(config: TenantConfig) -> str:
    """The organisation unit national exports name the facility by (`indicators.to_dhis2`)."""
    return config.dhis2_org_unit or config.slug


def org_unit_clashes(conn: Connection, configs: list[TenantConfig]) -> list[str]:
    """Why these facilities cannot be applied beside each other, the facilities registered already and those other
    appliances count (`register_org_units_held_elsewhere`): two facilities under one DHIS2 organisation unit would
    send their figures under the same data values, and DHIS2 keeps one of them, silently, so the ministry would
    read one facility's month as the other's."""
    registered = conn.execute(sa.select(
        tenant_table.c.slug, tenant_table.c.name,
        sa.func.coalesce(tenant_table.c.config["dhis2_org_unit"].astext, tenant_table.c.slug))).all()
    applied = {config.slug for config in configs}
    holders: OrgUnitHolders = {}
    for slug, name, org_unit in registered:
        if slug not in applied:
            holders.setdefault(org_unit, []).append((slug, name))
    for source in _held_elsewhere:
        for org_unit, where, name in source(conn):
            holders.setdefault(org_unit, []).append((where, name))
    return _shared_org_units(configs, holders)


def _shared_org_units(configs: list[TenantConfig], holders: OrgUnitHolders | None = None) -> list[str]:
    holders = holders if holders is not None else {}
    for config in configs:
        holders.setdefault(_org_unit(config), []).append((config.slug, config.name))
    return [f"dhis2_org_unit {org_unit!r} is given to more than one facility "
            f"({', '.join(f'{name} ({slug})' for slug, name in sorted(held))}): each facility needs its own "
            "organisation unit, or DHIS2 keeps one facility's figures in place of the other's"
            for org_unit, held in sorted(holders.items()) if len(held) > 1]


def apply_config(db: Database, config: TenantConfig, source: str = "") -> ApplyResult:
    """Create or update one tenant from its validated configuration, atomically."""
    fingerprint = config.fingerprint()
    with db.control() as conn:
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:key))"),
                     {"key": f"healthos.tenant.{config.slug}"})
        if clashes := org_unit_clashes(conn, [config]):
            raise TenantFileError(source or config.slug, clashes)
        row = conn.execute(
            sa.select(tenant_table.c.config_sha256, tenant_table.c.status).where(
                tenant_table.c.slug == config.slug
            )
        ).first()
        at_head = schema_revision(conn, tenant_schema(config.slug)) == head("tenant")
        if row is not None and row.config_sha256 == fingerprint and row.status == "active" and at_head:
            return ApplyResult(config.slug, ApplyOutcome.UNCHANGED, source)

        values = {
            "name": config.name,
            "facility_type": config.facility_type,
            "country_code": config.country_code,
            "region": config.region,
            "district": config.district,
            "timezone": config.timezone,
            "currency": config.currency,
            "config": config.model_dump(mode="json"),
            "config_sha256": fingerprint,
            "status": "active",
        }
        upsert = postgresql.insert(tenant_table).values(slug=config.slug, **values)
        conn.execute(upsert.on_conflict_do_update(
            index_elements=[tenant_table.c.slug], set_={**values, "updated_at": sa.func.now()}
        ))
        _ensure_role_and_schema(conn, config.slug)
        migrate_tenant_schema(conn, config.slug)
        _pin_tenant(conn, config.slug)
        for applier in _appliers:
            applier(conn, config)
    db.forget_tenant(config.slug)
    outcome = ApplyOutcome.CREATED if row is None else ApplyOutcome.UPDATED
    log.info("tenant_applied", tenant=config.slug, outcome=outcome.value)
    return ApplyResult(config.slug, outcome, source)


def read_tenant_files(path: Path) -> tuple[list[tuple[Path, TenantConfig]], list[TenantFileError]]:
    """Every tenant file at `path` read and validated, and each refusal (one per broken file, one per slug that
    more than one file defines, one for organisation units that more than one gives, one for a directory without
    any), nothing applied: what `load_tenant_files`
    decides on and `healthos check` reports file by file."""
    files = tenant_files(path)
    if not files:
        return [], [TenantFileError(path, ["no *.toml tenant files found"])]
    loaded: list[tuple[Path, TenantConfig]] = []
    errors: list[TenantFileError] = []
    for file in files:
        try:
            loaded.append((file, parse_tenant_file(file)))
        except TenantFileError as exc:
            errors.append(exc)
    slugs = [config.slug for _, config in loaded]
    for slug in sorted({s for s in slugs if slugs.count(s) > 1}):
        errors.append(TenantFileError(path, [f"slug {slug!r} is defined by more than one file"]))
    if shared := _shared_org_units([config for _, config in loaded if slugs.count(config.slug) == 1]):
        errors.append(TenantFileError(path, shared))
    return loaded, errors


def load_tenant_files(path: Path) -> list[tuple[Path, TenantConfig]]:
    """Validate every file before any is applied, so one bad file in a directory changes nothing."""
    loaded, errors = read_tenant_files(path)
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise TenantFileError(path, [str(error) for error in errors])
    return loaded


def apply_path(db: Database, path: Path) -> list[ApplyResult]:
    loaded = load_tenant_files(path)
    # Checked for every file before any is applied, as load_tenant_files does, so a clash changes nothing.
    with db.control() as conn:
        if clashes := org_unit_clashes(conn, [config for _, config in loaded]):
            raise TenantFileError(path, clashes)
    return [apply_config(db, config, str(file)) for file, config in loaded]


def analyze_tenant(db: Database, slug: str) -> None:
    """Planner statistics for one tenant's tables, after a bulk load (a demo population, an import).
    Until autovacuum reaches fresh tables the planner takes them for empty and nests loops over them:
    a vitals write measured ~200 ms instead of ~24 ms, a lab order several times its cost."""
    schema = tenant_schema(slug)
    with db.control_autocommit() as conn:
        tables = conn.execute(sa.text("SELECT tablename FROM pg_tables WHERE schemaname = :s ORDER BY 1"),
                              {"s": schema}).scalars().all()
        for table in tables:
            conn.exec_driver_sql(f"ANALYZE {_quote(conn, schema)}.{_quote(conn, table)}")


def recording_since(created_at: dt.datetime, written: str | None, timezone: str) -> dt.date:
    """The first day of the first month the national figures count the facility in: that of its tenant file's
    `recording_since` where written, else of the month it was created on this appliance, on its own calendar.
    Before it the facility kept its records elsewhere, so its months there are not zeros but not recorded here
    (`indicators.records_in`)."""
    day = dt.date.fromisoformat(written) if written else created_at.astimezone(zoneinfo.ZoneInfo(timezone)).date()
    return day.replace(day=1)


def list_tenants(db: Database) -> list[dict]:
    """The registry's facilities, each with the first day of its `recording_since` month, and how patients reach it
    (`phone`, `opening_hours`: None where its file gives none)."""
    with db.control() as conn:
        rows = conn.execute(
            sa.select(
                tenant_table.c.slug, tenant_table.c.name, tenant_table.c.facility_type,
                tenant_table.c.country_code, tenant_table.c.region, tenant_table.c.district,
                tenant_table.c.timezone, tenant_table.c.currency, tenant_table.c.status,
                tenant_table.c.created_at, tenant_table.c.config["dhis2_org_unit"].astext.label("dhis2_org_unit"),
                tenant_table.c.config["recording_since"].astext.label("recording_since"),
                tenant_table.c.config["phone"].astext.label("phone"),
                tenant_table.c.config["opening_hours"].astext.label("opening_hours"),
            ).order_by(tenant_table.c.slug)
        ).mappings().all()
    return [{**row, "recording_since": recording_since(row["created_at"], row["recording_since"], row["timezone"])}
            for row in rows]


def applied_config(db: Database, slug: str) -> TenantConfig:
    """The configuration the facility runs under: its file as last applied (not the file on disk now, which
    hospital IT may be editing), as stored in the registry."""
    with db.control_autocommit() as conn:
        stored = conn.execute(sa.select(tenant_table.c.config).where(tenant_table.c.slug == slug)).scalar()
    if stored is None:
        raise UnknownTenant(slug)
    return TenantConfig.model_validate(stored)


_ZONE_TTL_SECONDS = 300.0
_zones: dict[str, tuple[float, zoneinfo.ZoneInfo]] = {}


def facility_timezone(db: Database, slug: str) -> zoneinfo.ZoneInfo:
    """The facility's time zone, in which its day begins and ends (the server's clock runs in UTC, and a
    Nairobi facility's "today" begins at 21:00 UTC). Cached a few minutes: it changes only when hospital IT
    applies a new tenant file."""
    return _zone_of(slug, db.control_autocommit)


_names: dict[str, tuple[float, str]] = {}


def facility_name(db: Database, slug: str) -> str:
    """The facility's name as staff and patients read it (`name` of its tenant file; its slug if it has none on
    record), cached a few minutes as its zone is: every page header shows it, and a refusal names it to a
    patient, who knows 'Hillview Health Centre', never 'hillview_hc'."""
    cached = _names.get(slug)
    if cached and time.monotonic() - cached[0] < _ZONE_TTL_SECONDS:
        return cached[1]
    with db.control_autocommit() as conn:
        name = conn.execute(sa.select(tenant_table.c.name).where(tenant_table.c.slug == slug)).scalar() or slug
    _names[slug] = (time.monotonic(), name)
    return name


def facility_timezone_of(conn: Connection) -> zoneinfo.ZoneInfo:
    """The time zone of the facility whose tenant transaction `conn` is (`db.tenant`), for code inside it that holds
    no Database: the registry's, as `facility_timezone` answers it, from the same cache. A zone not cached is read
    on a side connection (`keys.side_engine`), never a second pooled one, which a busy pool could make this
    transaction wait for while it holds its own."""
    slug = conn.info.get("healthos_tenant")
    if slug is None:
        raise RuntimeError("the facility's time zone asked outside a tenant transaction (db.tenant)")
    return _zone_of(slug, keys.side_engine(conn.engine).connect)


def facility_clock_of(conn: Connection, at: dt.datetime) -> str:
    """`at` on the facility's clock as its pages write a time ("28 Nov 2026 02:11", the portal's `Clock.when`), for
    a refusal to name a time the page beside it shows: a bare UTC time read three hours off in Nairobi."""
    return at.astimezone(facility_timezone_of(conn)).strftime("%d %b %Y %H:%M")


def _zone_of(slug: str, control: Callable[[], contextlib.AbstractContextManager[Connection]]) -> zoneinfo.ZoneInfo:
    cached = _zones.get(slug)
    if cached and time.monotonic() - cached[0] < _ZONE_TTL_SECONDS:
        return cached[1]
    with control() as conn:
        name = conn.execute(sa.select(tenant_table.c.timezone).where(tenant_table.c.slug == slug)).scalar()
    zone = zoneinfo.ZoneInfo(name or "UTC")
    _zones[slug] = (time.monotonic(), zone)
    return zone


def facility_today(db: Database, slug: str) -> dt.date:
    """The facility's date now, on its own calendar: the day a bench counts a patient's age on, a form's default
    date, a list's "today" (after 21:00 UTC a Nairobi facility's today is the server's tomorrow)."""
    return dt.datetime.now(facility_timezone(db, slug)).date()


def facility_today_and_start(db: Database, slug: str) -> tuple[dt.date, dt.datetime]:
    """The facility's today and the moment it began (its midnight, as an aware time): what a queue counts from,
    and a batch expires by."""
    zone = facility_timezone(db, slug)
    today = dt.datetime.now(zone).date()
    return today, dt.datetime.combine(today, dt.time(), tzinfo=zone)


# The facility's time zone as its own schema keeps it: the tenant file's, written by every apply (the financial
# layer's billing_setting, one row, which the KPI functions read for the facility's day since t0008). Read inside
# a tenant transaction, in the statement that needs the day, it costs no query of its own and no hop to the
# control schema (`facility_timezone` is the same zone for code holding the database rather than a connection, and
# `facility_timezone_of` for code holding a tenant transaction that needs the zone itself, not a day in SQL).
_billing_setting = sa.table("billing_setting", sa.column("id"), sa.column("timezone"))
_FACILITY_ZONE_IN_SCHEMA = sa.func.coalesce(
    sa.select(_billing_setting.c.timezone).where(_billing_setting.c.id == 1).scalar_subquery(), "UTC")


def facility_day(moment: sa.ColumnElement) -> sa.ColumnElement:
    """The day of `moment` (a timestamptz) on the facility's calendar, as SQL for a tenant transaction: the day
    an age is counted on (a child turning 1 at midnight in Nairobi is 1 from 21:00 UTC the evening before), a
    baby's date of birth."""
    return sa.cast(sa.func.timezone(_FACILITY_ZONE_IN_SCHEMA, moment), sa.Date)


def active_slugs(db: Database) -> list[str]:
    with db.control() as conn:
        return active_slugs_in(conn)


def active_slugs_in(conn: Connection) -> list[str]:
    """The active facilities as the caller's transaction sees them (a backup's snapshot, say)."""
    return list(conn.execute(
        sa.select(tenant_table.c.slug).where(tenant_table.c.status == "active").order_by(tenant_table.c.slug)
    ).scalars())


@dataclass(frozen=True)
class DroppedTenant:
    """What dropping a facility did to the accounts that worked there."""
    left_without_role: list[str]  # e-mails of the people whose only roles were there: kept, listed "no role"
    machine_clients_disabled: list[dict]  # its machine clients ({"email", "name"}): disabled, tokens revoked


def drop_tenant(db: Database, slug: str) -> DroppedTenant:
    """Remove a tenant's schema, role and registry row in one transaction. The people whose only roles were
    there lose their memberships with it and keep their accounts (the audit trail names them), listing as
    "no role" until given one elsewhere or disabled. Its machine clients serve nothing else and never will
    (a token is issued to a new one): they are disabled and their tokens revoked, audited, in the same act,
    rather than left listed as active accounts with their tokens gone unaudited with the registry row."""
    schema = tenant_schema(slug)
    with db.control() as conn:
        left_without_role = identity.accounts_only_at(conn, slug)
        machine_clients = identity.machine_clients_only_at(conn, slug)
        for machine in machine_clients:
            identity.disable_account(conn, machine["email"])
        deleted = conn.execute(sa.delete(tenant_table).where(tenant_table.c.slug == slug)).rowcount
        has_schema = conn.execute(sa.text("SELECT 1 FROM pg_namespace WHERE nspname = :s"), {"s": schema}).first()
        has_role = conn.execute(sa.text("SELECT 1 FROM pg_roles WHERE rolname = :s"), {"s": schema}).first()
        if not (deleted or has_schema or has_role):
            raise UnknownTenant(slug)
        # Its audit log moves to `control` and stays verifiable; its data keys are destroyed.
        audit.retire_tenant(conn, slug)
        # Its charts go with it: the patient portal must not look for them (nor in a new tenant of that slug).
        conn.execute(sa.delete(identity.subject_facility).where(identity.subject_facility.c.tenant == slug))
        quoted = _quote(conn, schema)
        if has_schema:
            conn.exec_driver_sql(f"DROP SCHEMA {quoted} CASCADE")
        if has_role:
            conn.exec_driver_sql(f"DROP ROLE {quoted}")
    db.forget_tenant(slug)
    log.info("tenant_dropped", tenant=slug, accounts_left_without_role=len(left_without_role),
             machine_clients_disabled=len(machine_clients))
    return DroppedTenant(left_without_role, machine_clients)
