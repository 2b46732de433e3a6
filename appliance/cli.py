"""`healthos`: the operator's command line — start the appliance, manage tenants, migrate.

Every command reads the same settings (HEALTHOS_HOME, HEALTHOS_DATABASE_URL) and goes through the
same substrate functions the web app uses. Failures print one clear line on stderr and exit non-zero;
a traceback means a bug.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import secrets
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Column, Table
from sqlalchemy.engine import Connection

import appliance.interop.hl7v2.models
import appliance.layers
import appliance.national.federation
from appliance.layers.clinical.demo import DEMO_PATIENTS, DEMO_PATIENTS_MIN
from appliance.substrate import audit, identity, keys, totp
from appliance.substrate.config import Settings
from appliance.substrate.db import Database, InvalidSlug, UnknownTenant, tenant_metadata, validate_slug
from appliance.substrate.embedded import ClusterError, EmbeddedCluster
from appliance.substrate.logs import configure_logging
from appliance.substrate.migrate import MigrationFailed, SchemaAhead, find_drift, migrate_all, migrate_control
from appliance.substrate.policy import PolicyError, load_policy
from appliance.substrate.tenancy import active_slugs, apply_path, drop_tenant, list_tenants, read_tenant_files
from appliance.substrate.tenant_config import TenantFileError
from appliance.web.policy_files import POLICY_FILES

assert appliance.layers  # imported for its side effect: every layer registers its tables and appliers
assert appliance.interop.hl7v2.models  # and the HL7 interface its tables, which the drift check compares
assert appliance.national.federation  # and the organisation units other appliances count, which tenant apply refuses

err = Console(stderr=True, highlight=False)
out = Console(highlight=False)


def fail(message: str, code: int = 1) -> None:
    # Escaped: a message quoting a file ("[delivery]: release is one of ...") is not markup, and would lose its words.
    err.print(f"[bold red]error:[/] {escape(message)}", markup=True, soft_wrap=True)
    sys.exit(code)


@contextmanager
def opened_database(settings: Settings, *, start_embedded: bool = True) -> Iterator[Database]:
    try:
        db = Database.open(settings, start_embedded=start_embedded)
    except ClusterError as exc:
        fail(f"the embedded PostgreSQL could not start: {exc}")
    # Audit events are sealed with keys wrapped by this appliance's key, under this HEALTHOS_HOME.
    keys.bind(db, keys.Keyring.from_settings(settings))
    # A stop signal (systemd stopping the service, a supervisor, `kill`) while migrating or filling the demo would
    # end the process on the spot, leaving the embedded PostgreSQL running with no one to stop it; as an exception
    # it unwinds: the transaction under way rolls back and the cluster stops. Serving installs its own handlers.
    terminate = (signal.signal(signal.SIGTERM, _unwind_on_stop_signal)
                 if threading.current_thread() is threading.main_thread() else None)
    try:
        yield db
    finally:
        db.close()
        if terminate is not None:
            signal.signal(signal.SIGTERM, terminate)


def _unwind_on_stop_signal(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


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
@click.option("--demo-patients", type=click.IntRange(min=DEMO_PATIENTS_MIN), default=DEMO_PATIENTS, show_default=True,
              help=f"With --demo: fictional patients per demo facility (at least {DEMO_PATIENTS_MIN}, which every "
                   "demo story needs). Fewer start sooner; a facility that has its demo population keeps it.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=int, help="Port to listen on.")
@click.option("--tenants", "tenants_path", type=click.Path(path_type=Path), default=None,
              help="Tenant file or directory to apply before serving (default: tenants/ with --demo).")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64), envvar="HEALTHOS_WORKERS",
              help="Worker processes (env HEALTHOS_WORKERS).")
@click.option("--tls-cert", type=click.Path(path_type=Path, exists=True, dir_okay=False), envvar="HEALTHOS_TLS_CERT",
              help="Serve HTTPS (TLS 1.2+) with this PEM certificate chain (env HEALTHOS_TLS_CERT).")
@click.option("--tls-key", type=click.Path(path_type=Path, exists=True, dir_okay=False), envvar="HEALTHOS_TLS_KEY",
              help="Its private key (env HEALTHOS_TLS_KEY).")
@click.option("--redirect-port", type=int, default=None, envvar="HEALTHOS_REDIRECT_PORT",
              help="Also listen for plain HTTP here, answering only with a redirect to HTTPS.")
@click.pass_obj
def up(settings: Settings, demo: bool, demo_patients: int, host: str, port: int, tenants_path: Path | None,
       workers: int, tls_cert: Path | None, tls_key: Path | None, redirect_port: int | None) -> None:
    """Start the database, migrate, apply tenants, and serve."""
    from appliance.web import production

    serving = production.Serving(host, port, workers, tls_cert, tls_key, redirect_port)
    _check_policies(settings)
    if redirect_port is not None and tls_cert is None:
        fail("--redirect-port redirects to HTTPS: give --tls-cert (and --tls-key) too")
    if serving.tls:
        # Secure cookies and HSTS, in this process and in every worker it starts.
        os.environ["HEALTHOS_TLS"] = "1"
        settings = dataclasses.replace(settings, tls=True)
    with opened_database(settings) as db:
        _control_at_head(db)
        path = tenants_path or (settings.tenants_dir if demo else None)
        applied = _apply(db, path) if path is not None else []
        _migrate_with_progress(db)
        slugs = active_slugs(db)
        if demo:
            # Only the facilities of the files just applied are the demo's: a facility the operator created
            # from its own file is real, and never gets fictional patients, feeds, or accounts whose
            # passwords sit in a file.
            demo_slugs = [slug for slug in slugs if slug in applied]
            _demo_population(db, demo_slugs, demo_patients, _policy(settings))
            _demo_feeds(db, _policy(settings), demo_slugs)
            _demo_roster(db, _policy(settings), demo_slugs)
            credentials = _ensure_demo_accounts(db, settings, demo_slugs)
            err.print(f"demo accounts ({credentials}, mode 0600):")
            click.echo(credentials.read_text(), err=True)  # unwrapped: people copy these lines
        err.print(f"HealthOS serving {len(slugs)} tenant(s) on {serving.base_url} with {workers} worker(s)  "
                  f"(ready: {serving.base_url}/ready; database: {db.libpq_url()})")
        # Signed checkpoints of every audit log at least every 30 s (or every 1,000 events), and a final
        # one on the way out so nothing committed is left unsealed.
        checkpointer = audit.start_checkpointer(db)
        try:
            production.serve(db, settings, serving)
        finally:
            checkpointer.stop()


# -- tenants --------------------------------------------------------------------------------------


@main.group()
def tenant() -> None:
    """Create, update, list and drop tenants (facilities)."""


def _apply(db: Database, path: Path) -> list[str]:
    """Apply the tenant file(s) at `path`, saying what each did; returns their slugs."""
    try:
        results = apply_path(db, path)
    except TenantFileError as exc:
        lines = "\n  ".join(exc.problems)
        fail(f"{exc.path}: nothing was applied:\n  {lines}")
    for result in results:
        err.print(f"{result.slug}: {result.outcome.value}  ({result.source})")
    return [result.slug for result in results]


@tenant.command("apply")
@click.argument("path", type=click.Path(path_type=Path))
@click.pass_obj
def tenant_apply(settings: Settings, path: Path) -> None:
    """Validate FILE or every *.toml in DIR, then create or update those tenants."""
    if not path.exists():
        fail(f"{path}: no such file or directory")
    with opened_database(settings) as db:
        _control_at_head(db)
        _apply(db, path)


def _whole(header: str) -> Column:
    """A table column of what the operator types into the next command (a slug, an e-mail): at a narrow
    terminal it wraps onto more lines, never cut short with an ellipsis."""
    return Column(header, overflow="fold")


def _print_table(table: Table) -> None:
    """At a terminal, fitted to its width; piped (to grep, to a file) at the table's natural width, since rich
    would otherwise fit it to 80 columns and cut the values short."""
    (out if out.is_terminal else Console(highlight=False, width=10_000)).print(table)


@tenant.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_obj
def tenant_list(settings: Settings, as_json: bool) -> None:
    """List the tenants of this appliance."""
    with opened_database(settings) as db:
        _control_at_head(db)
        rows = list_tenants(db)
    if as_json:
        click.echo(json.dumps(rows, default=str, indent=2))
        return
    table = Table(_whole("slug"), "name", "type", "district", "region", "country", "status")
    for row in rows:
        table.add_row(row["slug"], row["name"], row["facility_type"], row["district"], row["region"],
                      row["country_code"], row["status"])
    _print_table(table)


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
            dropped = drop_tenant(db, slug)
        except UnknownTenant as exc:
            fail(str(exc))
    err.print(f"{slug}: dropped")
    if dropped.machine_clients_disabled:
        err.print(f"{len(dropped.machine_clients_disabled)} machine client(s) served only it: disabled, and their "
                  "API tokens revoked (a new integration gets a new token at its facility):")
        for machine in dropped.machine_clients_disabled:
            click.echo(f"{machine['name']} ({machine['email']})", err=True)
    if dropped.left_without_role:
        # Kept, never deleted: the audit trail names them. IT decides: a role elsewhere, or disable.
        err.print(f"{len(dropped.left_without_role)} account(s) had their only role there and now hold none (kept, as "
                  "the audit trail names them; `healthos account list` shows them as 'no role'): give one moving "
                  "to another facility a role there with `healthos account grant EMAIL --role R --tenant T`, "
                  "and disable the others with `healthos account disable EMAIL`:")
        for email in dropped.left_without_role:
            click.echo(email, err=True)


# -- migrate --------------------------------------------------------------------------------------


def _control_at_head(db: Database) -> bool:
    """`migrate_control`, refused with its reason when a newer release migrated the control schema."""
    try:
        return migrate_control(db)
    except SchemaAhead as exc:
        fail(str(exc))
        raise  # fail() exits; for the type checker


def _migrate_with_progress(db: Database) -> None:
    slugs = active_slugs(db)
    with Progress(TextColumn("migrating tenant schemas"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=err, transient=not err.is_terminal) as progress:
        task = progress.add_task("tenants", total=len(slugs))
        try:
            report = migrate_all(db, slugs, progress=lambda slug, changed: progress.advance(task))
        except SchemaAhead as exc:
            fail(str(exc))
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
        # control first: on a fresh appliance the tenant registry does not exist until it has run
        if _control_at_head(db):
            err.print("control: migrated")
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



# -- status ---------------------------------------------------------------------------------------


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of lines.")
@click.pass_obj
def status(settings: Settings, as_json: bool) -> None:
    """Where the appliance stands: database, schemas, facilities, audit checkpoints, last backup, appliance key,
    disk. Exits 0 when all is well, 1 naming each problem (for a monitoring system). Never starts the
    embedded PostgreSQL: when the appliance is not running, it says so."""
    from appliance.substrate import standing

    # A database host that does not answer must not hold a monitoring check for the TCP timeout (minutes).
    os.environ.setdefault("PGCONNECT_TIMEOUT", "2")
    with opened_database(settings, start_embedded=False) as db:
        found = standing.status(db, settings)
        _feeds_standing(db, found)
    if as_json:
        click.echo(json.dumps(found.report, default=str, indent=2))
    else:
        _print_status(found.report)
    if found.problems:
        sys.exit(1)


def _feeds_standing(db: Database, found) -> None:
    """The HL7 v2 feeds heard from this week at the facilities at head, each quiet or failing one a problem: a lab
    analyser's link down is what a monitoring system should page about (the substrate's status cannot read the
    feeds' log, which interop keeps)."""
    from datetime import datetime

    from appliance.interop.hl7v2 import history as hl7_history
    from appliance.substrate.tenancy import list_tenants

    schemas = found.report.get("schemas", {})
    if "tenant_head" not in schemas:  # the database does not answer, or control is not migrated
        return
    now = datetime.fromisoformat(found.report["checked_at"])
    tenants = [t for t in list_tenants(db) if t["status"] == "active" and t["slug"] not in schemas["tenants_behind"]
               and t["slug"] not in schemas["tenants_ahead"]]
    feeds = hl7_history.feeds_heard(db, tenants, now)
    found.report["feeds"] = [
        {"facility": feed["facility"], "name": feed["name"], "last_at": feed["state"].last_at.isoformat(),
         "applied_at": feed["state"].applied_at.isoformat() if feed["state"].applied_at else None,
         "refused_since": feed["state"].refused_since,
         "state": "failing" if feed["state"].failing else "quiet" if feed["quiet"] else "sending"} for feed in feeds]
    found.problems.extend(problem for feed in feeds if (problem := hl7_history.feed_problem(feed, now)))
    found.report["ok"] = not found.problems


def _print_status(report: dict) -> None:
    from datetime import datetime

    from appliance.substrate.standing import ago, size

    def line(topic: str, text: str) -> None:
        out.print(f"{topic:<9} {text}", markup=False, soft_wrap=True)

    def since(moment: str) -> str:
        return ago(datetime.fromisoformat(report["checked_at"]) - datetime.fromisoformat(moment.replace("Z", "+00:00")))

    database = report["database"]
    line("database", f"{database['kind']} ({database['where']}): {database['state']}"
         + (f", PostgreSQL {database['version']}, {size(database['bytes'])}" if database["answering"] else ""))
    if "schemas" in report:
        schemas = report["schemas"]
        control = schemas["control"]
        text = f"control {control['state']} ({control['revision'] or 'none'})"
        if "tenant_head" in schemas:
            text += (f"; facilities: {schemas['tenants_at_head']} at head ({schemas['tenant_head']}), "
                     f"{len(schemas['tenants_behind'])} behind, {len(schemas['tenants_ahead'])} ahead")
        line("schemas", text)
    if "tenants" in report:
        line("tenants", f"{report['tenants']['active']} active of {report['tenants']['total']}")
    for index, log in enumerate(report.get("audit", [])):
        checkpoint = (f"last checkpoint {since(log['latest_checkpoint'])} (size {log['checkpoint_size']})"
                      if log["latest_checkpoint"] else "never checkpointed")
        line("audit" if index == 0 else "", f"{log['log']}: {checkpoint}, {log['awaiting']} waiting"
             + (" LATE" if log["late"] else ""))
    if "backup" in report:
        backup = report["backup"]
        line("backup", "none made yet" if backup["last"] is None else
             f"last {backup['last']} ({since(backup['last'])}) in {backup['directory']}"
             + (f"; {backup['failed_since']} failed since" if backup["failed_since"] else ""))
    for index, feed in enumerate(report.get("feeds", [])):
        line("feeds" if index == 0 else "", f"{feed['facility']}: {feed['name'] or 'a revoked token'} {feed['state']}, "
             f"last message {since(feed['last_at'])}")
    key = report["key"]
    line("key", f"{key['source']} {key['path']}" + (f", mode {key['mode']}" if key["mode"] else ", missing"))
    for index, disk in enumerate(report["disks"]):
        line("disk" if index == 0 else "", f"{disk['what']} ({disk['path']}): {size(disk['free'])} free of "
             f"{size(disk['total'])}" + (" LOW" if disk["low"] else ""))
    if report["problems"]:
        out.print(f"{len(report['problems'])} problem(s):", markup=False)
        for problem in report["problems"]:
            out.print(f"  - {problem}", markup=False, soft_wrap=True)
    else:
        out.print("all well", markup=False)


# -- audit ----------------------------------------------------------------------------------------


@contextmanager
def _audit_database(settings: Settings) -> Iterator[Database]:
    """The database with this appliance's keyring bound, so checkpoints are signed with its key."""
    from appliance.substrate import keys

    with opened_database(settings) as db:
        _control_at_head(db)
        keys.bind(db, keys.Keyring.from_settings(settings))
        try:
            yield db
        except (keys.KeyUnavailable, UnknownTenant) as exc:
            fail(str(exc))


def _when(value: str | None):
    """An ISO 8601 date or time from the command line; a naive one is UTC."""
    from datetime import UTC, datetime

    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        fail(f"{value!r} is not an ISO 8601 date or time (e.g. 2026-11-01 or 2026-11-01T08:00:00Z)")
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _print_report(report) -> None:
    out.print(report.summary(), markup=False, soft_wrap=True)
    for problem in report.problems[:20]:
        out.print(f"  - [{problem.kind}] {problem}", markup=False, soft_wrap=True)
    if len(report.problems) > 20:
        out.print(f"  ... and {len(report.problems) - 20} more")


@main.group("audit")
def audit_group() -> None:
    """The audit trail: verify it, export evidence, checkpoint, manage its keys."""


@audit_group.command("verify")
@click.option("--tenant", help="Verify this tenant's log (default: every log of the appliance).")
@click.option("--checkpoints", "held_files", multiple=True, type=click.Path(path_type=Path, exists=True),
              help="Checkpoints kept from earlier (`audit checkpoint --out`): prove the log only grew since.")
@click.option("--decrypt", is_flag=True, help="Also authenticate every body under its data key (slower).")
@click.pass_obj
def audit_verify(settings: Settings, tenant: str | None, held_files: tuple[Path, ...], decrypt: bool) -> None:
    """Check every event hash, Merkle root and checkpoint signature; name the first bad sequence number."""
    from appliance.audit_verify import FormatError, parse_held
    from appliance.substrate import audit as audit_trail

    # A kept file names its log: its checkpoints are checked against that log, whichever --tenant says,
    # so a facility's file is never read as the appliance's (a tampering alarm over nothing).
    held: dict[str | None, list] = {}
    for path in held_files:
        try:
            log, checkpoints = parse_held(path.read_bytes(), str(path))
        except (OSError, FormatError) as exc:
            fail(str(exc))
        kept_for = log.get("tenant") or None
        if tenant is not None and kept_for != tenant:
            fail(f"{path} holds the checkpoints of {_log_name(kept_for)}, not of tenant {tenant}")
        held.setdefault(kept_for, []).extend(checkpoints)
    with _audit_database(settings) as db:
        if tenant is None and not held:
            reports = audit_trail.verify_all(db, decrypt=decrypt)
        else:
            reports = [audit_trail.verify(db, log, held=held.get(log, ()), decrypt=decrypt)
                       for log in (held or [tenant])]
    for report in reports:
        _print_report(report)
        kept = held.get(report.tenant)
        if kept and report.ok:
            latest = max(kept, key=lambda checkpoint: checkpoint.size)
            out.print(f"the log only grew since the {len(kept)} checkpoint(s) kept earlier: each is a prefix of it, "
                      f"the latest kept at size {latest.size}, signed {latest.time}", markup=False, soft_wrap=True)
        if decrypt:
            out.print(f"{report.decrypted} of {report.events} event bodies authenticated under their data keys"
                      + ("" if report.decrypted == report.events else
                         " (the others' keys were destroyed with their facility)"), markup=False, soft_wrap=True)
    if not all(report.ok for report in reports):
        sys.exit(1)


def _log_name(tenant: str | None) -> str:
    return f"tenant {tenant}" if tenant else "the appliance's own log"


@audit_group.command("export")
@click.option("--tenant", help="The tenant whose log to export (default: the appliance's own log).")
@click.option("--since", help="Only events recorded at or after this time (ISO 8601).")
@click.option("--until", help="Only events recorded before this time (ISO 8601).")
@click.option("--out", "out_path", required=True, type=click.Path(path_type=Path), help="Evidence package to write.")
@click.pass_obj
def audit_export(settings: Settings, tenant: str | None, since: str | None, until: str | None,
                 out_path: Path) -> None:
    """Write an evidence package (events, proofs, checkpoints, public key) for the offline verifier."""
    from appliance.substrate import audit as audit_trail

    since_at, until_at = _when(since), _when(until)
    if since_at is not None and until_at is not None and since_at >= until_at:
        fail(f"--since {since} is not before --until {until}, so no event could be in the package (--until is the "
             "first moment left out: for the whole of one day, give the next day)")
    with _audit_database(settings) as db:
        summary = audit_trail.export(db, tenant, out_path, since=since_at, until=until_at)
    err.print(f"{summary['events']} events and {summary['checkpoints']} checkpoints of log {summary['log_id']} "
              f"written to {summary['path']}; verify with `python -m appliance.audit_verify {summary['path']}`")


@audit_group.command("checkpoint")
@click.option("--tenant", help="Checkpoint this tenant's log (default: every log with events waiting).")
@click.option("--out", "out_path", type=click.Path(path_type=Path),
              help="Also write the log's checkpoints to this file, for a regulator to keep "
                   "(the appliance's own log unless --tenant).")
@click.pass_obj
def audit_checkpoint(settings: Settings, tenant: str | None, out_path: Path | None) -> None:
    """Sign a checkpoint now over the events waiting for one."""
    from appliance.substrate import audit as audit_trail

    with _audit_database(settings) as db:
        if tenant is None:
            made = audit_trail.Checkpointer(db).run_once(final=True)
            err.print(f"{made} checkpoint(s) signed")
        else:
            latest = audit_trail.checkpoint(db, tenant, latest=True)
            if latest is None:
                err.print(f"{tenant}: no audit events yet")
            else:
                err.print(f"{tenant}: checkpoint at size {latest.size}, root {latest.root.hex()}, {latest.time}")
        if out_path is not None:
            out_path.write_text(json.dumps(audit_trail.held_checkpoints(db, tenant), indent=1))
            err.print(f"checkpoints written to {out_path}: keep them; `healthos audit verify --checkpoints "
                      f"{out_path}` or the offline verifier proves later that the log only grew")


@audit_group.command("public-key")
@click.option("--all", "every", is_flag=True,
              help="Every key the checkpoints were signed with, oldest first, each with its period.")
@click.pass_obj
def audit_public_key(settings: Settings, every: bool) -> None:
    """Print the checkpoint signing public key (PEM) a regulator pins."""
    from appliance.substrate import audit as audit_trail
    from appliance.substrate import keys

    if not every:
        keyring = keys.Keyring.from_settings(settings)
        try:
            click.echo(keyring.public_key_pem().decode(), nl=False)
        except keys.KeyUnavailable as exc:
            fail(str(exc))
        err.print(f"key id {keyring.signing_key_id}")
        return
    with _audit_database(settings) as db:
        found = audit_trail.signing_keys(db)
    if not found:
        fail("no checkpoint has been signed yet: `healthos audit public-key` prints the key that will sign them")
    for key in found:
        until = f"until {key.until:%Y-%m-%d %H:%M:%S} UTC" if key.until else "to now (current)"
        click.echo(f"# key {key.key_id}: signed checkpoints from {key.since:%Y-%m-%d %H:%M:%S} UTC {until}")
        click.echo(key.pem.decode(), nl=False)


@audit_group.command("rotate-signing-key")
@click.pass_obj
def audit_rotate_signing_key(settings: Settings) -> None:
    """Start a new checkpoint signing key: it signs every checkpoint from now on. The old key signs the
    rotation (an event of the appliance's log naming the new key), so a regulator who pinned it can
    follow; its private half is gone, its public half stays published."""
    from appliance.substrate import audit as audit_trail

    with _audit_database(settings) as db:
        try:
            rotation = audit_trail.rotate_signing_key(db)
        except audit_trail.AuditError as exc:
            fail(str(exc))
    if rotation.finished_interrupted:
        err.print(f"an earlier run recorded the rotation of {rotation.old_key} to {rotation.new_key} and stopped "
                  f"before putting {rotation.new_key} in place in keys/: that rotation is finished now, and no "
                  "other was started (run the command again for a further rotation).", soft_wrap=True)
    err.print(f"checkpoint signing key {rotation.old_key} rotated out; {rotation.new_key} signs from now on. "
              f"The rotation is seq {rotation.seq} of the appliance's log, under its checkpoint at size "
              f"{rotation.checkpoint_size} signed by {rotation.old_key}: evidence packages carry it, so a regulator "
              "who pinned the old key verifies with it still. Give regulators and federation peers the new key "
              "(`healthos audit public-key`), and copy keys/ to the appliance's other nodes.", soft_wrap=True)


@audit_group.command("rotate-key")
@click.option("--tenant", help="Rotate this tenant's data key (default: the appliance log's).")
@click.pass_obj
def audit_rotate_key(settings: Settings, tenant: str | None) -> None:
    """Start a new data key: new events use it, older events keep theirs."""
    from appliance.substrate import audit as audit_trail

    with _audit_database(settings) as db:
        key = audit_trail.rotate_key(db, tenant)
    err.print(f"{tenant or 'appliance'}: data key {key.key_id} (generation {key.generation}) now in use")


@audit_group.group("regulator-key")
def audit_regulator_key() -> None:
    """Regulators' X25519 keys: every data key is sealed to each, for offline decryption of evidence."""


@audit_regulator_key.command("register")
@click.argument("public_key_file", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option("--label", default=None, help="Who holds the key (default: the file name).")
@click.pass_obj
def audit_regulator_register(settings: Settings, public_key_file: Path, label: str | None) -> None:
    """Register a regulator's X25519 public key (PEM, or 32 bytes hex/base64) and seal every data key to it."""
    from appliance.substrate import audit as audit_trail

    with _audit_database(settings) as db:
        try:
            regulator_id, sealed = audit_trail.register_regulator(db, public_key_file.read_bytes(),
                                                                  label or public_key_file.stem)
        except ValueError as exc:
            fail(f"{public_key_file}: {exc}")
    err.print(f"regulator key {regulator_id} registered; {sealed} data key(s) sealed to it")


@audit_regulator_key.command("generate")
@click.option("--out", "out_path", required=True, type=click.Path(path_type=Path),
              help="Where to write the private key (the public key goes beside it, with .pub).")
@click.option("--register", "register_it", is_flag=True, help="Also register the public key on this appliance.")
@click.option("--label", default="regulator", show_default=True, help="Label when registering.")
@click.pass_obj
def audit_regulator_generate(settings: Settings, out_path: Path, register_it: bool, label: str) -> None:
    """Make a regulator key pair (for a regulator without their own tooling)."""
    from appliance.substrate import audit as audit_trail
    from appliance.substrate import keys

    try:
        private_path, public_path, _ = keys.generate_regulator_keypair(out_path)
    except FileExistsError as exc:
        fail(str(exc))
    err.print(f"private key written to {private_path.resolve()} (mode 0600): hand it to the regulator and delete "
              f"it from this machine; public key: {public_path.resolve()}")
    if register_it:
        with _audit_database(settings) as db:
            regulator_id, sealed = audit_trail.register_regulator(db, public_path.read_bytes(), label)
        err.print(f"regulator key {regulator_id} registered; {sealed} data key(s) sealed to it")

# -- accounts -------------------------------------------------------------------------------------


def _policy(settings: Settings):
    try:
        return load_policy(settings.policies_dir / "access.toml")
    except PolicyError as exc:
        fail(str(exc))


def _checked_policy_files(policies_dir: Path) -> list[tuple[Path, str | None]]:
    """Each policy file the web application reads at start (`POLICY_FILES`, the table `create_app` loads), with
    its loader's refusal, None where it loads."""
    checked: list[tuple[Path, str | None]] = []
    for policy_file in POLICY_FILES:
        path = policies_dir / policy_file.name
        try:
            policy_file.load(path)
        except ValueError as exc:  # every loader's refusal: a sentence naming the file and the item at fault
            checked.append((path, str(exc)))
        else:
            checked.append((path, None))
    return checked


def _check_policies(settings: Settings) -> None:
    """The policy files the web application reads at start, checked before anything starts: a broken
    one is named here, not in a worker's traceback."""
    problems = [problem for _, problem in _checked_policy_files(settings.policies_dir) if problem]
    if problems:
        fail("\n".join(problems))


@main.command()
@click.option("--policies", "policies_dir", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="The policy files to check (default: HEALTHOS_POLICIES_DIR, else policies/).")
@click.option("--tenants", "tenants_path", type=click.Path(path_type=Path), default=None,
              help="The tenant file or directory to check (default: HEALTHOS_TENANTS_DIR, else tenants/).")
@click.pass_obj
def check(settings: Settings, policies_dir: Path | None, tenants_path: Path | None) -> None:
    """Check every policy file the appliance refuses to start without, and every tenant file, before a restart:
    one line per file, ok or why not. Starts nothing and needs no database."""
    checked = _checked_policy_files(policies_dir or settings.policies_dir)
    tenants_loaded, tenants_refused = read_tenant_files(tenants_path or settings.tenants_dir)
    checked += [(path, None) for path, _ in tenants_loaded]
    checked += [(Path(refusal.path), str(refusal)) for refusal in tenants_refused]
    for path, problem in checked:
        # A refusal's sentence starts with the file it names.
        out.print(f"ok      {path}" if problem is None else f"BROKEN  {problem}", soft_wrap=True, markup=False)
    broken = sum(problem is not None for _, problem in checked)
    if broken:
        fail(f"{broken} of {len(checked)} files broken: the appliance will not start with them; fix each and check "
             "again")
    err.print(f"all {len(checked)} files ok")


@contextmanager
def _identity_act(settings: Settings) -> Iterator[Connection]:
    """The control transaction of one identity act (an account, a subject); its refusal, an IdentityError,
    is the command's one error line and nothing of the act is written."""
    with opened_database(settings) as db:
        try:
            with db.control() as conn:
                yield conn
        except identity.IdentityError as exc:
            fail(str(exc))


@main.group()
def account() -> None:
    """Accounts of staff, patients, analysts, regulators, operators and machine clients."""


@account.command("create")
@click.option("--role", required=True, help="A role from policies/access.toml.")
@click.option("--tenant", default=None, help="The facility, for facility roles.")
@click.option("--email", required=True)
@click.option("--name", "display_name", default="", help="Name shown in the portal (default: the e-mail).")
@click.option("--ward", default=None, help="Limit a ward-scoped role to one ward.")
@click.option("--kind", type=click.Choice(["staff", "patient", "ministry_analyst", "regulator", "operator", "machine"]),
              default=None, help="Kind of account (default: from the role).")
@click.pass_obj
def account_create(settings: Settings, role: str, tenant: str | None, email: str, display_name: str,
                   ward: str | None, kind: str | None) -> None:
    """Create an account and print its one-time enrolment link (never a password)."""
    policy = _policy(settings)
    kind = kind or (role if role in {"patient", "ministry_analyst", "regulator", "operator"} else "staff")
    with _identity_act(settings) as conn:
        new = identity.create_account(conn, policy, kind=kind, email=email, display_name=display_name,
                                      role=role, tenant=tenant, ward=ward)
    click.echo(f"account {new.account_id} created for {identity.checked_email(email)} "
               f"({role}{' at ' + tenant if tenant else ''})")
    click.echo(f"one-time enrolment link (valid 72 h): {_enrolment_link(settings, new.enrolment_code)}")


def _enrolment_link(settings: Settings, code: str) -> str:
    """The link to send the person: whole when the appliance's address is known (HEALTHOS_PUBLIC_URL); a bare path
    is no link on a terminal, so without it the operator is told where to open it."""
    path = f"/enrol?code={code}"
    if settings.public_url:
        return settings.public_url + path
    return f"open {path} on the appliance's address (set HEALTHOS_PUBLIC_URL to have the whole link printed)"


@account.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def account_list(settings: Settings, as_json: bool) -> None:
    """List accounts with their roles and state."""
    with opened_database(settings) as db, db.control() as conn:
        rows = identity.list_accounts(conn)
    if as_json:
        click.echo(json.dumps(rows, default=str, indent=2))
        return
    table = Table(_whole("e-mail"), "kind", _whole("roles"), "state")
    for row in rows:
        state = row["state"]
        if "locked_until" in row:
            state += f" until {row['locked_until'].astimezone(dt.UTC):%H:%M} UTC"
        table.add_row(row["email"], row["kind"], ", ".join(row["roles"]), state)
    _print_table(table)


@account.command("disable")
@click.argument("email")
@click.pass_obj
def account_disable(settings: Settings, email: str) -> None:
    """Disable an account: its sessions and API tokens end at once."""
    with _identity_act(settings) as conn:
        identity.disable_account(conn, email)
    click.echo(f"{email}: disabled; sessions and tokens revoked")


@account.command("enable")
@click.argument("email")
@click.pass_obj
def account_enable(settings: Settings, email: str) -> None:
    """Enable a disabled account again: it signs in with its old password and authenticator, keeping its
    roles and history; its API tokens stay revoked."""
    with _identity_act(settings) as conn:
        identity.enable_account(conn, email)
    click.echo(f"{email}: enabled; it signs in with its old credentials (its API tokens stay revoked: issue new "
               "ones with healthos account token)")


@account.command("unlock")
@click.argument("email")
@click.pass_obj
def account_unlock(settings: Settings, email: str) -> None:
    """End a sign-in lock now (it ends by itself after 15 minutes): the same password and authenticator sign in
    at once. A forgotten password or a lost authenticator is reset-mfa's."""
    with _identity_act(settings) as conn:
        until = identity.unlock_account(conn, email)
    click.echo(f"{email}: unlocked (it was locked until {until.astimezone(dt.UTC):%H:%M} UTC); it signs in with "
               "its password and authenticator now")


@account.command("grant")
@click.argument("email")
@click.option("--role", required=True, help="A facility role from policies/access.toml.")
@click.option("--tenant", required=True, help="The facility.")
@click.option("--ward", default=None, help="Limit a ward-scoped role to one ward.")
@click.pass_obj
def account_grant(settings: Settings, email: str, role: str, tenant: str, ward: str | None) -> None:
    """Give an existing person a role at a facility: the same account and sign-in, one more membership."""
    policy = _policy(settings)
    with _identity_act(settings) as conn:
        identity.grant_membership(conn, policy, email, tenant=tenant, role=role, ward=ward)
    click.echo(f"{email}: now a {role} at {tenant}{' on ward ' + ward if ward else ''}; their next sign-in there "
               "works with it")


@account.command("revoke")
@click.argument("email")
@click.option("--role", required=True, help="The facility role to take away.")
@click.option("--tenant", required=True, help="The facility.")
@click.pass_obj
def account_revoke(settings: Settings, email: str, role: str, tenant: str) -> None:
    """Take a facility role from a person: the account, its other roles and history stay; a session open in that
    role there ends at once. A leaver is disabled instead (healthos account disable)."""
    with _identity_act(settings) as conn:
        ended = identity.revoke_membership(conn, email, tenant=tenant, role=role)
    click.echo(f"{email}: no longer a {role} at {tenant}" + (f"; {ended} session(s) there ended" if ended else ""))


@account.command("reset-mfa")
@click.argument("email")
@click.pass_obj
def account_reset_mfa(settings: Settings, email: str) -> None:
    """Clear password and authenticator; print a new one-time enrolment link."""
    with _identity_act(settings) as conn:
        code = identity.reset_mfa(conn, email)
    click.echo(f"{email}: must enrol again: {_enrolment_link(settings, code)}")


@account.command("token")
@click.option("--tenant", required=True)
@click.option("--name", required=True, help="What the token is for, e.g. 'lab HL7 feed'.")
@click.option("--permission", "permissions", multiple=True, required=True, help="Repeat for each permission.")
@click.pass_obj
def account_token(settings: Settings, tenant: str, name: str, permissions: tuple[str, ...]) -> None:
    """Issue an API token for a machine client (shown once; stored hashed)."""
    policy = _policy(settings)
    with _identity_act(settings) as conn:
        token = identity.issue_machine_token(conn, policy, tenant=tenant, name=name,
                                             permissions=list(permissions))
    click.echo(token)
    err.print("(this token is shown once; store it in the client's configuration now)")


@main.group()
def subject() -> None:
    """The master patient index: likely duplicate people, and merging, unmerging or dismissing them
    (each audited; a merge is reversible)."""


def _pair_json(pair: identity.DuplicatePair) -> dict:
    def person(card: identity.SubjectCard) -> dict:
        return {"id": str(card.id), "family_name": card.family_name, "given_names": card.given_names,
                "birth_date": card.birth_date.isoformat() if card.birth_date else None, "sex": card.sex,
                "national_id": card.national_id, "facilities": card.facilities}

    return {"first": person(pair.first), "second": person(pair.second), "signals": pair.signals}


@subject.command("duplicates")
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True, help="Pairs to list.")
@click.option("--offset", type=click.IntRange(0), default=0, help="Pairs to skip (the next page).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@click.pass_obj
def subject_duplicates(settings: Settings, limit: int, offset: int, as_json: bool) -> None:
    """List pairs of people who look registered twice, strongest signal first, with the commands that decide
    each. The listing is recorded in the appliance's audit log."""
    # One statement per signal, each a pass over every subject: the bar advances as each is done.
    with opened_database(settings) as db, Progress(
            TextColumn("looking for likely duplicates, signal by signal"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), console=err, transient=not err.is_terminal) as progress, db.control() as conn:
        task = progress.add_task("signals", total=len(identity.DUPLICATE_SIGNALS))
        review = identity.likely_duplicates(conn, by=None, limit=limit, offset=offset,
                                            progress=lambda signal: progress.advance(task))
    if as_json:
        click.echo(json.dumps({"total": review.total, "offset": offset,
                               "pairs": [_pair_json(pair) for pair in review.pairs]}, indent=2))
        return
    for number, pair in enumerate(review.pairs, start=offset + 1):
        click.echo(f"{number}. {' and '.join(identity.SIGNAL_SAYS[code] for code in pair.signals)}")
        for card in (pair.first, pair.second):
            born = card.birth_date.isoformat() if card.birth_date else "born ?"
            click.echo(f"   {card.id}  {card.family_name.upper()}, {card.given_names}  {born}  {card.sex or 'sex ?'}  "
                       f"ID {card.national_id or '-'}  charts at: {', '.join(card.facilities) or 'none yet'}")
        click.echo(f"   one person:  healthos subject merge {pair.first.id} {pair.second.id} --reason '...'")
        click.echo(f"   two people:  healthos subject dismiss {pair.first.id} {pair.second.id} --reason '...'")
    shown = f"{offset + 1}-{offset + len(review.pairs)} of " if review.pairs else "none of "
    err.print(f"likely duplicates: {shown}{review.total} pair{'s' if review.total != 1 else ''}")


@subject.command("merge")
@click.argument("survivor", type=click.UUID)
@click.argument("merged", type=click.UUID)
@click.option("--reason", required=True)
@click.pass_obj
def subject_merge(settings: Settings, survivor, merged, reason: str) -> None:
    """Merge MERGED into SURVIVOR: records stay where they are and resolve to SURVIVOR."""
    with _identity_act(settings) as conn:
        unknown = [str(s) for s in (survivor, merged) if not identity.subject_exists(conn, s)]
        if unknown:
            raise identity.IdentityError(f"no subject {', '.join(unknown)} on this appliance")
        merge_id = identity.merge_subjects(conn, survivor_id=survivor, merged_id=merged, reason=reason,
                                           by=None)
    click.echo(f"merged; undo with: healthos subject unmerge {merge_id}")


@subject.command("unmerge")
@click.argument("merge_id", type=click.UUID)
@click.pass_obj
def subject_unmerge(settings: Settings, merge_id) -> None:
    """Undo a merge."""
    with _identity_act(settings) as conn:
        identity.unmerge_subjects(conn, merge_id=merge_id, by=None)
    click.echo("unmerged")


@subject.command("dismiss")
@click.argument("first", type=click.UUID)
@click.argument("second", type=click.UUID)
@click.option("--reason", required=True, help="Why they are two people (e.g. twins), for whoever asks later.")
@click.pass_obj
def subject_dismiss(settings: Settings, first, second, reason: str) -> None:
    """Record that a listed pair are two people: `subject duplicates` no longer lists them."""
    with _identity_act(settings) as conn:
        identity.dismiss_duplicate(conn, one=first, other=second, reason=reason, by=None)
    click.echo("recorded as two people; the pair is no longer listed")


# -- demo -----------------------------------------------------------------------------------------

DEMO_TENANT_ROLES = ["clinician", "nurse", "registrar", "bed_manager", "billing_clerk", "pharmacist", "lab_technician",
                     "radiographer", "quality_manager", "kitchen", "facility_admin"]
DEMO_APPLIANCE_ROLES = ["operator", "ministry_analyst", "regulator"]


def demo_credentials_path(settings: Settings) -> Path:
    return settings.home / "demo-credentials.txt"


def _ensure_demo_accounts(db: Database, settings: Settings, slugs: list[str]) -> Path:
    """Demo accounts for every role of the demo facilities `slugs` and of the appliance, random passwords and
    TOTP secrets, written once (0600); the nurse of each facility works on its main ward (`main_ward`)."""
    from appliance.layers.nursing.views import main_ward

    path = demo_credentials_path(settings)
    if path.exists():
        return path
    policy = _policy(settings)
    lines = ["# HealthOS demo accounts: generated on this machine, shown once here. Demo use only.",
             "# e-mail\tpassword\tTOTP secret (add it to an authenticator app, or run `healthos demo code EMAIL`)"]
    people = [(role, slug) for slug in slugs for role in DEMO_TENANT_ROLES]
    people += [(role, None) for role in DEMO_APPLIANCE_ROLES]
    ward_of = {}
    for slug in slugs:
        with db.tenant(slug) as conn:
            ward_of[slug] = main_ward(conn)
    with db.control() as conn:
        for role, slug in people:
            # Hyphens, not underscores: browsers refuse an underscore in an e-mail's domain.
            email = f"{role}@{slug.replace('_', '-')}.demo" if slug else f"{role}@appliance.demo"
            if identity.account_by_email(conn, email) is not None:
                continue
            kind = role if role in DEMO_APPLIANCE_ROLES else "staff"
            name = f"Demo {role.replace('_', ' ')}" + (f" ({slug})" if slug else "")
            # A ward-scoped role (the nurse) works on one ward: without it the ward's pages refuse her.
            ward = ward_of[slug] if slug and policy.is_ward_scoped(role) else None
            new = identity.create_account(conn, policy, kind=kind, email=email, role=role, tenant=slug,
                                          display_name=name, ward=ward)
            password = secrets.token_urlsafe(12)
            secret = totp.generate_secret()
            identity.set_credentials(conn, new.account_id, password=password, mfa_secret=secret)
            lines.append(f"{email}\t{password}\t{secret}")
        if len(slugs) > 1:
            # One clinician who works in two facilities, to show the facility switcher.
            roaming = identity.account_by_email(conn, f"clinician@{slugs[0].replace('_', '-')}.demo")
            if roaming is not None:
                identity.add_membership(conn, policy, account_id=roaming.id, tenant=slugs[1], role="clinician")
    if slugs:
        lines.append(_demo_patient_account(db, policy, "lakeshore_district" if "lakeshore_district" in slugs
                                           else slugs[0]))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write("\n".join(lines) + "\n")
    return path


def _demo_patient_account(db: Database, policy, slug: str) -> str:
    """A patient portal account for one of the demo facility's adults, linked to their subject as the
    front desk's invitation would: one with a bill and an appointment to come if there is one (so every
    part of the portal has something to show), then the one with the most entries. A patient signs in
    without TOTP."""
    import sqlalchemy as sa

    from appliance.layers.clinical import demo as clinical_demo
    from appliance.layers.clinical import service as clinical_service

    with db.tenant(slug) as conn:
        patient_id = conn.execute(sa.text(
            "SELECT p.id FROM patient p JOIN entry e ON e.patient_id = p.id "
            "WHERE p.birth_date < current_date - interval '18 years' GROUP BY p.id ORDER BY "
            "EXISTS (SELECT 1 FROM invoice i WHERE i.patient_id = p.id AND i.status = 'final') DESC, "
            "EXISTS (SELECT 1 FROM appointment a WHERE a.patient_id = p.id AND a.status = 'booked' "
            "AND a.starts_at > now()) DESC, count(*) DESC, p.id LIMIT 1")).scalar()
    found, subject_id = clinical_service.subject_of(db, slug, clinical_demo.demo_principal(slug), patient_id)
    # An HIV test to be given in person and an X-ray shown later: the portal's release notices, shown.
    clinical_demo.generate_release_demo(db, slug, patient_id)
    email = "patient@appliance.demo"
    password = secrets.token_urlsafe(12)
    with db.control() as conn:
        new = identity.create_account(conn, policy, kind="patient", email=email, role="patient",
                                      display_name=f"{found['given_names']} {found['family_name']}",
                                      subject_id=subject_id, invited_from=(slug, patient_id))
        identity.set_credentials(conn, new.account_id, password=password, mfa_secret=None)
    return f"{email}\t{password}\t(no authenticator: patients sign in with their password)"


def _demo_population(db: Database, slugs: list[str], patients: int, policy) -> None:
    """A deterministic synthetic population of `patients` per demo facility (skipped where one already exists)."""
    from appliance.layers.clinical import demo as clinical_demo
    from appliance.layers.clinical.antenatal_demo import generate_antenatal_demo
    from appliance.layers.clinical.blood_demo import DEMO_HOSPITALS as BLOOD_HOSPITALS
    from appliance.layers.clinical.blood_demo import generate_blood_demo
    from appliance.layers.clinical.demo import generate_demo_population
    from appliance.layers.clinical.document_demo import generate_document_demo
    from appliance.layers.clinical.family_planning_demo import generate_family_planning_demo
    from appliance.layers.clinical.hiv_demo import generate_hiv_demo
    from appliance.layers.clinical.outbreak_demo import DEMO_FACILITY, generate_outbreak_demo
    from appliance.layers.clinical.referral_demo import generate_referral_demo
    from appliance.layers.clinical.surgery_demo import generate_surgery_demo
    from appliance.layers.clinical.tb_demo import generate_tb_demo
    from appliance.layers.financial import demo as financial_demo
    from appliance.layers.financial.demo import generate_billing_demo
    from appliance.layers.nursing import demo as nursing_demo
    from appliance.layers.nursing.demo import generate_nursing_demo
    from appliance.layers.nursing.transfusion_demo import generate_transfusion_demo
    from appliance.layers.operations import demo as operations_demo
    from appliance.layers.operations import incidents_demo, pharmacy_demo
    from appliance.layers.operations.demo import generate_operations_demo
    from appliance.layers.operations.pharmacy_demo import generate_pharmacy_demo

    with Progress(TextColumn("demo population {task.fields[slug]}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=err, transient=not err.is_terminal) as progress:
        task = progress.add_task("demo", total=len(slugs), slug="")
        wrote = False
        for slug in slugs:
            progress.update(task, slug=slug)
            counts = generate_demo_population(db, slug, patients=patients)
            if counts:
                err.print(f"{slug}: demo population written ({counts.get('demographics', 0)} patients, "
                          f"{sum(counts.values())} entries)")
            # Admissions, ED visits and appointments over that population, so the bed board and the
            # command center have something to show (skipped where already written).
            operations = generate_operations_demo(db, slug)
            if operations:
                err.print(f"{slug}: demo operations written ({operations.get('admission', 0)} admissions, "
                          f"{operations.get('ed_arrival', 0)} ED visits, {operations.get('appointment', 0)} "
                          "appointments)")
            # The outpatient pharmacy: its stock, and the month's clinic prescriptions dispensed (most of them).
            dispensed = generate_pharmacy_demo(db, slug)
            if dispensed:
                err.print(f"{slug}: demo pharmacy written ({dispensed['pharmacy_item']} items stocked, "
                          f"{dispensed['dispense']} prescriptions dispensed)")
            # The wards' own record of the patients the operations demo put in beds: assessments, doses.
            nursing = generate_nursing_demo(db, slug)
            if nursing:
                err.print(f"{slug}: demo nursing written ({nursing['admission_assessment']} admission assessments, "
                          f"{nursing['given']} doses given, {nursing['held'] + nursing['refused']} held or refused)")
            # Invoices and payments over the charges the reactions wrote, so billing has past months to show.
            billing = generate_billing_demo(db, slug)
            if billing:
                err.print(f"{slug}: demo billing written ({billing['bed_day']} bed-days accrued, "
                          f"{billing['invoice']} invoices, {billing['payment']} payments)")
            # A year of patient safety incident reports and their reviews, for the quality manager's pages.
            safety = incidents_demo.generate_incident_demo(db, slug)
            if safety:
                err.print(f"{slug}: demo safety incidents written ({safety['incident']} reports, "
                          f"{safety.get('closed', 0)} closed)")
            wrote = wrote or bool(counts or operations or dispensed or nursing or billing or safety)
            # Who wrote the demo's entries, by name: without an account row the pages left the author
            # blank ("unknown author" on notes, no name beside observations, doses and care plans).
            authors = [clinical_demo.demo_principal(slug), clinical_demo.demo_principal(slug, "reviewer"),
                       operations_demo.demo_principal(slug), pharmacy_demo.demo_principal(slug),
                       nursing_demo.demo_principal(slug),
                       financial_demo.demo_principal(slug), incidents_demo.demo_principal(slug),
                       incidents_demo.demo_principal(slug, "quality")]
            with db.control() as conn:
                for author in authors:
                    identity.name_machine_author(
                        conn, author, email=f"demo-data-{author.account_id.hex[:12]}@{slug.replace('_', '-')}.demo")
            progress.advance(task)
    # Referrals up the demo's chain once every facility has its population: the receiver registers from the letter.
    referred = generate_referral_demo(db, slugs)
    if referred:
        err.print("demo referrals written (" + ", ".join(f"{n} {state}" for state, n in referred.items()) + ")")
        wrote = True
    # Operations around today at the demo hospitals, one in each state, so the theatre list has a day to show.
    operated = generate_surgery_demo(db, slugs)
    if operated:
        err.print("demo operations written (" + ", ".join(f"{n} {state.replace('_', ' ')}"
                                                         for state, n in operated.items()) + ")")
        wrote = True
    # A year of TB cases at the district hospital, one of each outcome and two on treatment, for its TB register.
    treated = generate_tb_demo(db, slugs)
    if treated:
        err.print("demo TB register written (" + ", ".join(f"{n} {outcome.replace('_', ' ')}"
                                                          for outcome, n in treated.items()) + ")")
        wrote = True
    # People on ART at the district and referral hospitals (one unsuppressed, one to trace, one transferred out), for
    # the HIV care tab, the ART register and the national TX_CURR and TX_PVLS.
    enrolled = generate_hiv_demo(db, slugs)
    if enrolled:
        err.print("demo ART clinic written (" + ", ".join(f"{n} on ART at {slug}" for slug, n in enrolled.items())
                  + ")")
        wrote = True
    # A year of family planning visits at the health centre and the district hospital: the clients due, the figures.
    planned = generate_family_planning_demo(db, slugs)
    if planned:
        err.print(f"demo family planning written ({planned} visits)")
        wrote = True
    # A referral letter, a consent form and a wound photograph on three charts of each facility: the Documents tab.
    filed = generate_document_demo(db, slugs)
    if filed:
        err.print(f"demo documents filed ({filed} scans and photographs)")
        wrote = True
    # A handful of pregnant women at each facility, so the ANC clinic, the card and the ANC indicators have some.
    pregnant = generate_antenatal_demo(db, slugs)
    if pregnant:
        err.print(f"demo antenatal care written ({pregnant.get('antenatal', 0)} contacts, "
                  f"{pregnant.get('delivery', 0)} deliveries)")
        wrote = True
    # A blood bank's stock at the demo hospitals, units given over the year and today's crossmatch and issue; the
    # ward's bedside record of the units given (the clinical demo issues them, the nursing demo hangs them).
    banked = generate_blood_demo(db, slugs)
    if banked["received"]:
        transfused = {slug: generate_transfusion_demo(db, policy, slug) for slug in slugs if slug in BLOOD_HOSPITALS}
        with db.control() as conn:
            for slug in transfused:
                author = clinical_demo.demo_principal(slug, "blood bank")
                identity.name_machine_author(
                    conn, author, email=f"demo-data-{author.account_id.hex[:12]}@{slug.replace('_', '-')}.demo")
        err.print(f"demo blood banks written ({banked['received']} units received, {banked['issued']} issued, "
                  f"{sum(transfused.values())} transfused)")
        wrote = True
    # A cluster of meningitis at the health centre, so the ministry's Alerts page has an alert to show.
    if DEMO_FACILITY in slugs and (cases := generate_outbreak_demo(db)):
        err.print(f"{DEMO_FACILITY}: demo outbreak written ({cases} children with meningococcal meningitis "
                  "in one week)")
        wrote = True
    if wrote:
        # Fresh tables have no statistics until autovacuum gets to them, and until then the planner
        # nests loops over them (a vitals write measured ~200 ms instead of ~24 ms): analyse now, once.
        with db.control_autocommit() as conn:
            conn.exec_driver_sql("ANALYZE")


def _demo_feeds(db: Database, policy, slugs: list[str]) -> None:
    """Each demo facility's HL7 v2 feed history, for its Interfaces page (skipped where it has one)."""
    from appliance.interop.hl7v2.demo import generate_feed_demo

    for slug in slugs:
        acks = generate_feed_demo(db, policy, slug)
        if acks:
            err.print(f"{slug}: demo HL7 v2 feed written ({acks.get('AA', 0)} messages applied, "
                      f"{acks.get('AE', 0)} not)")


def _demo_roster(db: Database, policy, slugs: list[str]) -> None:
    """The demo hospitals' duty roster for this week and the next, over the census the operations demo left (one
    night understaffed); its ward nurses are demo members of staff who never enrol."""
    from appliance.layers.operations import roster_demo

    rostered = roster_demo.generate_roster_demo(db, policy, slugs)
    with db.control() as conn:
        for slug in rostered:
            author = roster_demo.demo_principal(slug)
            identity.name_machine_author(
                conn, author, email=f"demo-data-{author.account_id.hex[:12]}@{slug.replace('_', '-')}.demo")
    for slug, entries in rostered.items():
        err.print(f"{slug}: demo duty roster written ({entries} shifts over two weeks)")


@main.group()
def demo() -> None:
    """Helpers for the demo appliance."""


@demo.command("code")
@click.argument("email")
@click.pass_obj
def demo_code(settings: Settings, email: str) -> None:
    """Print the current authenticator code of a demo account (reads demo-credentials.txt)."""
    path = demo_credentials_path(settings)
    if not path.exists():
        fail(f"{path} does not exist: run `healthos up --demo` first")
    for line in path.read_text().splitlines():
        fields = line.split("\t")
        if len(fields) == 3 and fields[0] == email:
            if fields[2].startswith("("):
                fail(f"{email} signs in with a password alone: {fields[2].strip('()')}")
            click.echo(totp.totp_at(fields[2], time.time()))
            return
    fail(f"{email} is not a demo account in {path}")


@main.group("national")
def national_group() -> None:
    """National indicators: a month's counts of every facility, small ones withheld, for the ministry."""


def _national_month(settings: Settings, period: str | None, db=None):
    """The indicator definitions and the month asked for (default: the last whole month on the clock of
    the facility furthest ahead, as the ministry's page counts it; UTC's without a database)."""
    import datetime as dt

    from appliance.national import indicators as national

    try:
        definitions = national.load_definitions(settings.policies_dir / "indicators.toml")
        month = national.month_asked(period, national.today(db) if db is not None else dt.datetime.now(dt.UTC).date())
    except national.IndicatorError as exc:
        fail(str(exc))
    return definitions, month


@contextmanager
def _counting_progress(db: Database) -> Iterator[Callable[[str], None]]:
    """A progress bar over the active facilities; yields the callback `gather` advances it with."""
    slugs = active_slugs(db)
    with Progress(TextColumn("counting {task.fields[slug]}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=err, transient=not err.is_terminal) as progress:
        task = progress.add_task("facilities", total=len(slugs), slug="")
        yield lambda slug: progress.update(task, advance=1, slug=slug)


def _facilities(n: int) -> str:
    return f"{n} facilit{'y' if n == 1 else 'ies'}"


@national_group.command("export")
@click.option("--period", help="The month, YYYY-MM (default: the last whole month).")
@click.option("--format", "export_format", type=click.Choice(["csv", "dhis2"]), default="csv", show_default=True,
              help="csv: a row per figure, withheld ones marked; dhis2: a dataValueSet (idScheme CODE).")
@click.option("--out", "out_path", required=True, type=click.Path(path_type=Path, dir_okay=False),
              help="The file to write.")
@click.pass_obj
def national_export(settings: Settings, period: str | None, export_format: str, out_path: Path) -> None:
    """Count a month at every facility (inside each, under its own role) and write what may leave,
    with the figures other appliances reported for the month."""
    from appliance.national import federation
    from appliance.national import indicators as national

    with opened_database(settings) as db:
        definitions, month = _national_month(settings, period, db)
        with _counting_progress(db) as advance:
            facilities = federation.national_facilities(db, month, definitions, progress=advance)
        national.record_use(db, None, "E", month, len(national.recording(facilities)), export_format=export_format)
    if export_format == "csv":
        out_path.write_text(national.to_csv(facilities, month, definitions), encoding="utf-8")
    else:
        out_path.write_text(json.dumps(national.to_dhis2(facilities, month, definitions), indent=1), encoding="utf-8")
    withheld = sum(figure.withheld for f in facilities for figure in f.figures.values())
    counted = national.recording(facilities)
    not_reported = sum(f.figure(i.id) is None for f in counted for i in definitions.indicators)
    earlier = sum(any(figure.under_earlier_bands for figure in f.figures.values()) for f in facilities)
    not_recording = len(facilities) - len(counted)
    err.print(f"{month.label}: {len(definitions.indicators)} indicators at {len(counted)} facilities written to "
              f"{out_path}; {withheld} cells under {definitions.threshold} (or revealing one) withheld"
              + (f"; {_facilities(not_recording)} not recording yet in {month.label} left out (no value, not 0: "
                 "recording_since in the tenant file)" if not_recording else "")
              + (f"; {not_reported} facility indicators not reported (their appliance does not count them yet)"
                 if not_reported else "")
              + (f"; {earlier} facilities published under earlier age bands (their cells in bands no longer "
                 "defined are marked in the CSV, left out of DHIS2)" if earlier else ""))


@national_group.command("package")
@click.option("--period", help="The month, YYYY-MM (default: the last whole month).")
@click.option("--out", "out_path", required=True, type=click.Path(path_type=Path, dir_okay=False),
              help="The package file to write, to carry to the ministry's appliance.")
@click.pass_obj
def national_package(settings: Settings, period: str | None, out_path: Path) -> None:
    """Count a month at this appliance's facilities and write it as a signed package for the ministry's
    appliance: published counts only, each facility's small ones withheld."""
    from appliance.national import federation

    with opened_database(settings) as db:
        definitions, month = _national_month(settings, period, db)
        try:
            with _counting_progress(db) as advance:
                package = federation.export_package(db, month, definitions, progress=advance)
        except federation.NothingToSend as exc:
            fail(f"{month.label}: no package written: {exc}")
    out_path.write_text(json.dumps(package, indent=1, ensure_ascii=False), encoding="utf-8")
    err.print(f"{month.label}: {_facilities(len(package['facilities']))} packaged and signed in {out_path}")


@national_group.command("push")
@click.option("--period", help="The month, YYYY-MM (default: the last whole month).")
@click.option("--to", "address", required=True,
              help="The ministry's appliance, https://… (the package is posted to /api/national/packages there).")
@click.option("--ca-file", type=click.Path(path_type=Path, dir_okay=False, exists=True),
              help="The CA certificate that signed the ministry's certificate (its playbook makes "
                   "/etc/healthos/tls/ca.crt); without it, the system's trusted CAs.")
@click.option("--wait", "wait_seconds", type=click.IntRange(0, 3600),
              help="Use the running appliance's database, waiting up to this many seconds for it to answer, "
                   "and never start it (the playbook's timer does so); without it, the database is started "
                   "if the appliance is not running.")
@click.pass_obj
def national_push(settings: Settings, period: str | None, address: str, ca_file: Path | None,
                  wait_seconds: int | None) -> None:
    """Count a month at this appliance's facilities and send it as a signed package to the ministry's
    appliance over HTTPS, where a link exists (`national package` writes the same package to a file).

    It is sent only when an operator runs this, or the timer an operator configured in the playbook
    (appliance_federation_push_to), and only to the address given: the appliance never calls out on
    its own. The ministry accepts it if it registered this appliance's key (`healthos audit
    public-key`) with `healthos national peer add`. Sending a month again replaces it there, so a
    second run doubles nothing."""
    from appliance.national import federation

    try:
        url = federation.packages_url(address)
    except federation.PushError as exc:
        fail(str(exc))
    with opened_database(settings, start_embedded=wait_seconds is None) as db:
        if wait_seconds is not None:
            _wait_for_database(db, wait_seconds)
        definitions, month = _national_month(settings, period, db)
        try:
            with _counting_progress(db) as advance:
                package = federation.export_package(db, month, definitions, progress=advance)
        except federation.NothingToSend as exc:  # the monthly timer's first month at a new appliance: not a fault
            err.print(f"{month.label}: nothing sent: {exc}")
            return
        try:
            answer = federation.send_package(db, package, url, ca_file=ca_file)
        except federation.PushError as exc:
            fail(f"{month.label}: not sent: {exc}")
    err.print(f"{month.label}: {_facilities(len(package['facilities']))} sent to {url}")
    click.echo(f"received by {url} from {answer.get('appliance')}, {answer.get('month')}: "
               f"{_facilities(answer.get('facilities', 0))}"
               f"{', replacing the earlier package' if answer.get('replaced') else ''}")
    for key, said in (("not_reported", "not counted here, so not reported for these facilities there"),
                      ("ignored", "not known there, so ignored")):
        if answer.get(key):
            click.echo(f"{said}: {', '.join(map(str, answer[key]))}")


@national_group.group("peer")
def national_peer_group() -> None:
    """The appliances whose packages this one accepts."""


@national_peer_group.command("add")
@click.option("--name", required=True, help="What to call the sending appliance, e.g. the hospital or region.")
@click.option("--key", "key_path", required=True, type=click.Path(path_type=Path, dir_okay=False, exists=True),
              help="Its public key, as `healthos audit public-key` printed it there.")
@click.pass_obj
def national_peer_add(settings: Settings, name: str, key_path: Path) -> None:
    """Accept signed packages from another appliance from now on."""
    from appliance.national import federation

    with opened_database(settings) as db:
        try:
            peer = federation.register_peer(db, name, key_path.read_bytes())
        except federation.PackageError as exc:
            fail(str(exc))
    err.print(f"{peer.name} registered: packages signed by key {peer.key_id} are accepted")


@national_peer_group.command("list")
@click.option("--period", help="Whose package for this month arrived (default: the last whole month).")
@click.pass_obj
def national_peer_list(settings: Settings, period: str | None) -> None:
    """Registered appliances, and whether each sent its package for the month."""
    from appliance.national import federation

    with opened_database(settings) as db:
        definitions, month = _national_month(settings, period, db)
        reports = federation.reports(db, month, definitions)
        changes = federation.key_changes(db)
    if not reports:
        err.print("no appliance is registered: healthos national peer add --name N --key FILE")
    for report in reports:
        sent = (f"{_facilities(report.facilities)}, produced {report.produced_at:%Y-%m-%d %H:%M %Z}, "
                f"received {report.received_at:%Y-%m-%d %H:%M %Z}") if report.received_at else "NOT RECEIVED"
        if report.not_counted:
            sent += f", not counting {', '.join(report.not_counted)}"
        if report.unreadable:
            sent += f", CANNOT BE READ ({report.unreadable}): its facilities are missing from every figure"
        if report.earlier_bands:
            sent += f", read under earlier age bands ({', '.join(report.earlier_bands)})"
        if report.withheld_by_raised_threshold:
            sent += (f", {report.withheld_by_raised_threshold} published counts now withheld under the threshold "
                     f"of {definitions.threshold}")
        click.echo(f"{report.peer.name}\t{report.peer.key_id}\t{month.value}: {sent}")
        change = changes.get(report.peer.name)
        if change is not None and change.new_key == report.peer.key_id:
            click.echo(f"{report.peer.name}\t{report.peer.key_id}\tkey rotated: replaced key {change.old_key} on "
                       f"{change.at[:16].replace('T', ' ')} UTC, proven by its rotation (seq {change.seq} of its "
                       "audit log)")


@national_group.command("receive")
@click.argument("package_path", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.pass_obj
def national_receive(settings: Settings, package_path: Path) -> None:
    """Verify a package from a registered appliance and add its facilities' figures to the month."""
    from appliance.national import federation

    definitions, _ = _national_month(settings, None)
    with opened_database(settings) as db:
        try:
            receipt = federation.receive_package(db, package_path.read_bytes(), definitions)
        except federation.PackageError as exc:
            fail(f"{package_path}: refused: {exc}")
    err.print(f"{receipt.peer}, {receipt.period.label}: {_facilities(receipt.facilities)} "
              f"{'replaced the earlier package' if receipt.replaced else 'received'}")
    if receipt.not_counted:
        err.print(f"not counted by its appliance, so not reported for its facilities: {', '.join(receipt.not_counted)}")
    if receipt.ignored:
        err.print(f"counted by its appliance but not known here, so ignored: {', '.join(receipt.ignored)}")


@main.group("hl7")
def hl7_group() -> None:
    """HL7 v2 feeds: the MLLP listener a facility's legacy system sends ADT, ORM and ORU to."""


@hl7_group.command("listen")
@click.option("--tenant", required=True, help="The facility whose feed this is.")
@click.option("--token-file", required=True, type=click.Path(path_type=Path, dir_okay=False, exists=True),
              help="A file holding the feed's API token (healthos account token), readable by this user only.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Loopback unless the hospital's IT chose otherwise.")
@click.option("--port", default=2575, show_default=True, type=click.IntRange(0, 65535))
@click.option("--wait", "wait_seconds", default=0, show_default=True, type=click.IntRange(0, 3600),
              help="Seconds to wait for the appliance's database to answer (a service started with the "
                   "appliance, before it is up).")
@click.pass_obj
def hl7_listen(settings: Settings, tenant: str, token_file: Path, host: str, port: int, wait_seconds: int) -> None:
    """Serve one facility's HL7 v2 feed over MLLP until interrupted; every message is acknowledged.
    The appliance (`healthos up`) must be running: the listener uses its database and never starts the
    embedded one itself, which would then belong to the listener and stop with it."""
    import asyncio

    from appliance.interop.hl7v2 import listener

    token = token_file.read_text().strip()
    with opened_database(settings, start_embedded=False) as db:
        _wait_for_database(db, wait_seconds)
        try:
            asyncio.run(listener.serve(db, tenant, token, host, port, on_ready=lambda bound: err.print(
                f"listening for {tenant}'s HL7 v2 feed on {host}:{bound} (MLLP); Ctrl-C stops")))
        except listener.ListenerRefused as exc:
            fail(f"the listener did not start: {exc}")
        except OSError as exc:
            fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")
        except KeyboardInterrupt:
            err.print("stopped")


def _wait_for_database(db: Database, seconds: int) -> None:
    """Until the appliance's database answers, for up to `seconds`; then a clear refusal."""
    import sqlalchemy as sa

    deadline = time.monotonic() + seconds
    while True:
        try:
            with db.control() as conn:
                conn.execute(sa.text("SELECT 1"))
            return
        except sa.exc.OperationalError:
            if time.monotonic() >= deadline:
                fail(f"the appliance's database does not answer ({db.libpq_url()}): start the appliance "
                     "(healthos up) first" + (f"; waited {seconds} s" if seconds else ", or give --wait SECONDS"))
            time.sleep(1)


@hl7_group.command("send")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=2575, show_default=True, type=click.IntRange(1, 65535))
@click.argument("message_file", type=click.Path(path_type=Path, dir_okay=False, exists=True))
def hl7_send(host: str, port: int, message_file: Path) -> None:
    """Send the message(s) of MESSAGE_FILE (each beginning with a line MSH|...) over MLLP, printing each ACK."""
    import asyncio

    from appliance.interop.hl7v2 import listener

    texts = listener.split_messages(message_file.read_text(encoding="utf-8"))
    if not texts:
        fail(f"{message_file} holds no HL7 message (a message begins with a line starting MSH|)")
    try:
        acks = asyncio.run(listener.send(host, port, texts))
    except (OSError, TimeoutError) as exc:
        fail(f"no answer from {host}:{port}: {exc.strerror if isinstance(exc, OSError) and exc.strerror else exc}")
    for ack in acks:
        click.echo(ack.replace("\r", "\n").rstrip("\n"))
        click.echo()
    if any("MSA|AA|" not in ack for ack in acks):
        sys.exit(2)


@main.group("fhir")
def fhir_group() -> None:
    """FHIR R4: bulk import of bundles into a facility's record (`up` serves the REST facade at /api/t/T/fhir)."""


@fhir_group.command("import")
@click.option("--tenant", required=True, help="The facility whose record receives the bundles.")
@click.option("--as", "acting_as", required=True,
              help="Who the import acts as, named on every entry and audit event (e.g. 'Synthea migration 2026-11').")
@click.argument("path", type=click.Path(path_type=Path, exists=True))
@click.pass_obj
def fhir_import(settings: Settings, tenant: str, acting_as: str, path: Path) -> None:
    """Import FHIR bundles from PATH (a file, or a directory of *.json such as Synthea's output/fhir): one
    transaction or collection bundle per patient, each all or nothing; what the record cannot hold is
    counted as skipped."""
    from appliance.interop.fhir import bulk

    try:
        validate_slug(tenant)
    except InvalidSlug as exc:
        fail(str(exc))
    with opened_database(settings) as db:
        if not db.tenant_exists(tenant):
            fail(f"no tenant named {tenant!r} (healthos tenant list shows them)")
        principal = bulk.import_principal(db, tenant, acting_as)
        files = bulk.bundle_files(path)
        started = time.monotonic()
        with Progress(TextColumn("importing {task.fields[name]}"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), console=err, transient=not err.is_terminal) as progress:
            task = progress.add_task("bundles", total=len(files), name="")
            summary = bulk.import_path(db, tenant, principal, path,
                                       progress=lambda file: progress.update(task, advance=1, name=file.name))
        elapsed = time.monotonic() - started
    out.print(f"{summary.imported_bundles} of {summary.bundles} bundles imported into {tenant} in {elapsed:.1f} s "
              f"as {principal.display_name}", soft_wrap=True, markup=False)
    for resource_type, n in sorted(summary.imported.items()):
        out.print(f"  imported {n:>7}  {resource_type}", soft_wrap=True, markup=False)
    for why, n in sorted(summary.skipped.items()):
        out.print(f"  skipped  {n:>7}  {why}", soft_wrap=True, markup=False)
    if summary.refused:
        for name, why in summary.refused:
            out.print(f"  refused {name} (nothing of it written): {why}", soft_wrap=True, markup=False)
        fail(f"{len(summary.refused)} of {summary.bundles} bundles refused; fix them and import those files again")


def _register_deployment_commands() -> None:
    """`healthos bundle` and `healthos backup` live in cli_deploy.py, which imports helpers from here."""
    from appliance.cli_deploy import backup, bundle

    main.add_command(bundle)
    main.add_command(backup)


_register_deployment_commands()


if __name__ == "__main__":
    main()
