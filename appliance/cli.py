"""`healthos`: the operator's command line — start the appliance, manage tenants, migrate.

Every command reads the same settings (HEALTHOS_HOME, HEALTHOS_DATABASE_URL) and goes through the
same substrate functions the web app uses. Failures print one clear line on stderr and exit non-zero;
a traceback means a bug.
"""

from __future__ import annotations

import json
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click
import uvicorn
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

import appliance.layers
from appliance.substrate.config import Settings
from appliance.substrate.db import Database, InvalidSlug, UnknownTenant, tenant_metadata, validate_slug
from appliance.substrate.embedded import ClusterError, EmbeddedCluster
from appliance.substrate.logs import configure_logging
from appliance.substrate.migrate import MigrationFailed, find_drift, migrate_all, migrate_control
from appliance.substrate.tenancy import active_slugs, apply_path, drop_tenant, list_tenants
from appliance.substrate.tenant_config import TenantFileError

assert appliance.layers  # imported for its side effect: every layer registers its tables and appliers

err = Console(stderr=True, highlight=False)
out = Console(highlight=False)


def fail(message: str, code: int = 1) -> None:
    err.print(f"[bold red]error:[/] {message}", markup=True, soft_wrap=True)
    sys.exit(code)


@contextmanager
def opened_database(settings: Settings) -> Iterator[Database]:
    try:
        db = Database.open(settings)
    except ClusterError as exc:
        fail(f"the embedded PostgreSQL could not start: {exc}")
    try:
        yield db
    finally:
        db.close()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--log-format", type=click.Choice(["json", "console"]), default=None,
              help="Log rendering (default: json, or HEALTHOS_LOG_FORMAT).")
@click.pass_context
def main(ctx: click.Context, log_format: str | None) -> None:
    """HealthOS appliance: one record, one identity, many facilities."""
    settings = Settings.from_env()
    json_logs = settings.log_json if log_format is None else log_format == "json"
    configure_logging(json=json_logs)
    ctx.obj = settings


# -- up -------------------------------------------------------------------------------------------


@main.command()
@click.option("--demo", is_flag=True, help="Apply the demo facilities in tenants/ (and their demo data).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=int, help="Port to listen on.")
@click.option("--tenants", "tenants_path", type=click.Path(path_type=Path), default=None,
              help="Tenant file or directory to apply before serving (default: tenants/ with --demo).")
@click.pass_obj
def up(settings: Settings, demo: bool, host: str, port: int, tenants_path: Path | None) -> None:
    """Start the database, migrate, apply tenants, and serve."""
    from appliance.web.app import create_app

    with opened_database(settings) as db:
        migrate_control(db)
        path = tenants_path or (settings.tenants_dir if demo else None)
        if path is not None:
            _apply(db, path)
        _migrate_with_progress(db)
        slugs = active_slugs(db)
        err.print(f"HealthOS serving {len(slugs)} tenant(s) on http://{host}:{port}  "
                  f"(ready: http://{host}:{port}/ready; database: {db.libpq_url()})")
        config = uvicorn.Config(create_app(db), host=host, port=port, log_config=None, access_log=False,
                                server_header=False)
        _GracefulServer(config).run()


class _GracefulServer(uvicorn.Server):
    """uvicorn's server, but a stop signal only asks it to finish: uvicorn re-raises SIGTERM after
    shutting down, which would kill the process before the embedded PostgreSQL is stopped."""

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        for stop_signal in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(stop_signal, self.handle_exit)
        yield


# -- tenants --------------------------------------------------------------------------------------


@main.group()
def tenant() -> None:
    """Create, update, list and drop tenants (facilities)."""


def _apply(db: Database, path: Path) -> None:
    try:
        results = apply_path(db, path)
    except TenantFileError as exc:
        lines = "\n  ".join(exc.problems)
        fail(f"{exc.path}: nothing was applied:\n  {lines}")
    for result in results:
        err.print(f"{result.slug}: {result.outcome.value}  ({result.source})")


@tenant.command("apply")
@click.argument("path", type=click.Path(path_type=Path))
@click.pass_obj
def tenant_apply(settings: Settings, path: Path) -> None:
    """Validate FILE or every *.toml in DIR, then create or update those tenants."""
    if not path.exists():
        fail(f"{path}: no such file or directory")
    with opened_database(settings) as db:
        migrate_control(db)
        _apply(db, path)


@tenant.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_obj
def tenant_list(settings: Settings, as_json: bool) -> None:
    """List the tenants of this appliance."""
    with opened_database(settings) as db:
        migrate_control(db)
        rows = list_tenants(db)
    if as_json:
        click.echo(json.dumps(rows, default=str, indent=2))
        return
    table = Table("slug", "name", "type", "district", "region", "country", "status")
    for row in rows:
        table.add_row(row["slug"], row["name"], row["facility_type"], row["district"], row["region"],
                      row["country_code"], row["status"])
    out.print(table)


@tenant.command("drop")
@click.argument("slug")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation (for scripts).")
@click.pass_obj
def tenant_drop(settings: Settings, slug: str, yes: bool) -> None:
    """Drop a tenant: its schema, its role and every row in it. Irreversible."""
    try:
        validate_slug(slug)
    except InvalidSlug as exc:
        fail(str(exc))
    if not yes and not click.confirm(
        f"Drop tenant {slug!r} and ALL its data (schema t_{slug})? This cannot be undone", default=False
    ):
        fail("not dropped", code=1)
    with opened_database(settings) as db:
        try:
            drop_tenant(db, slug)
        except UnknownTenant as exc:
            fail(str(exc))
    err.print(f"{slug}: dropped")


# -- migrate --------------------------------------------------------------------------------------


def _migrate_with_progress(db: Database) -> None:
    slugs = active_slugs(db)
    with Progress(TextColumn("migrating tenant schemas"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=err, transient=not err.is_terminal) as progress:
        task = progress.add_task("tenants", total=len(slugs))
        try:
            report = migrate_all(db, slugs, progress=lambda slug, changed: progress.advance(task))
        except MigrationFailed as exc:
            fail(f"{exc}\nschemas migrated before it stay at head; fix the cause and re-run `healthos migrate`")
    err.print(f"control: {'migrated' if report.control_changed else 'at head'}; tenants: "
              f"{len(report.tenants_changed)} migrated, {report.tenants_total - len(report.tenants_changed)} "
              "already at head")


@main.command()
@click.option("--skip-drift-check", is_flag=True, help="Do not compare tenant schemas with the model.")
@click.pass_obj
def migrate(settings: Settings, skip_drift_check: bool) -> None:
    """Bring control and every tenant schema to head; report schema drift as an error."""
    with opened_database(settings) as db:
        _migrate_with_progress(db)
        if skip_drift_check:
            return
        drifts = find_drift(db, active_slugs(db), tenant_metadata)
    if drifts:
        for drift in drifts:
            err.print(f"drift in {', '.join(drift.schemas)}:")
            for difference in drift.differences:
                err.print(f"  - {difference}")
        fail(f"{sum(len(d.schemas) for d in drifts)} tenant schema(s) differ from the model")


# -- db -------------------------------------------------------------------------------------------


@main.group()
def db() -> None:
    """The appliance's database."""


@db.command("url")
@click.pass_obj
def db_url(settings: Settings) -> None:
    """Print the URL an operator can give to psql."""
    if settings.database_url:
        click.echo(Database.open(settings, start_embedded=False).libpq_url())
        return
    cluster = EmbeddedCluster(settings.home)
    click.echo(cluster.libpq_url())
    if not (cluster.pgdata / "postmaster.pid").exists():
        err.print("(the embedded PostgreSQL is not running: start it with `healthos up`)")


if __name__ == "__main__":
    main()
