"""`healthos bundle ...` and `healthos backup ...`: the operator's deployment commands.

Kept apart from `appliance/cli.py` (which registers them) so the deployment room's commands live
beside each other; the work itself is in `appliance/substrate/bundle.py` and `backup.py`.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from datetime import UTC
from pathlib import Path
from typing import NoReturn

import click
from rich.console import Console
from rich.markup import escape

from appliance.substrate import backup as backups
from appliance.substrate import bundle as bundles
from appliance.substrate import keys
from appliance.substrate.config import Settings

# Not imported from appliance.cli: `python -m appliance.cli` runs that module as __main__, and a second
# copy of it imported from here would register these commands again, in a loop.
err = Console(stderr=True, highlight=False)


def fail(message: str, code: int = 1) -> NoReturn:
    # Escaped as cli.fail escapes: a message quoting a path or a file ("[delivery]") is not markup.
    err.print(f"[bold red]error:[/] {escape(message)}", markup=True, soft_wrap=True)
    sys.exit(code)

# -- bundle ---------------------------------------------------------------------------------------


@click.group("bundle")
def bundle() -> None:
    """The signed air-gapped install bundle: the operator's key, and checking a bundle."""


@bundle.command("keygen")
@click.option("--out", "out_path", required=True, type=click.Path(path_type=Path),
              help="Where to write the private key (the public key goes beside it, with .pub).")
def bundle_keygen(out_path: Path) -> None:
    """Make the operator's Ed25519 bundle-signing key pair. Keep the private key off the repository
    and off the hospital's servers; hosts get only the .pub file."""
    try:
        private_path, public_path, key_id = bundles.generate_signing_key(out_path)
    except FileExistsError as exc:
        fail(str(exc))
    err.print(f"signing key {key_id}: private {private_path.resolve()} (mode 0600), public {public_path.resolve()}")


@bundle.command("verify")
@click.argument("bundle_file", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--pubkey", required=True, type=click.Path(path_type=Path, exists=True, dir_okay=False),
              help="The operator's public key (PEM, from `healthos bundle keygen`).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def bundle_verify(bundle_file: Path, pubkey: Path, as_json: bool) -> None:
    """Check the signature and every digest of a bundle; name every file that differs."""
    try:
        public_key = bundles.load_public_key(pubkey.read_bytes())
    except ValueError as exc:
        fail(f"{pubkey}: {exc}")
    check = bundles.check_bundle(bundle_file, public_key)
    manifest = check.manifest or {}
    if as_json:
        click.echo(json.dumps({"ok": check.ok, "problems": check.problems, "version": manifest.get("version"),
                               "platform": manifest.get("platform"), "files": len(manifest.get("files", {}))}))
    if not check.ok:
        for problem in check.problems:
            err.print(f"  - {problem}", markup=False, soft_wrap=True)
        fail(f"{bundle_file}: refused ({len(check.problems)} problem(s)); install nothing from it")
    err.print(f"{bundle_file}: signature by key {manifest['signing_key']} valid; {len(manifest['files'])} files "
              f"match; healthos-appliance {manifest['version']} for {manifest['platform']}")


# -- backup ---------------------------------------------------------------------------------------


@click.group("backup")
def backup() -> None:
    """Encrypted backups of control and every tenant, and restoring one into a fresh appliance."""


@backup.command("create")
@click.option("--out", "out_path", required=True, type=click.Path(path_type=Path, dir_okay=False),
              help="The backup file to write (mode 0600).")
@click.pass_obj
def backup_create(settings: Settings, out_path: Path) -> None:
    """Back up control and every tenant, encrypted under the appliance key."""
    from appliance.cli import opened_database

    with opened_database(settings) as db:
        try:
            summary = backups.create(db, keys.Keyring.from_settings(settings), out_path)
        except backups.BackupFailed as exc:
            fail(f"no backup made: {exc}" + "".join(f"; {note}" for note in getattr(exc, "__notes__", ())))
    err.print(f"{out_path}: {backups.describe_counts(summary.control, summary.tenants)}, "
              f"{summary.bytes / 1e6:.1f} MB in {summary.seconds:.1f} s")


@backup.command("list")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 1000), help="How many to show.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_obj
def backup_list(settings: Settings, limit: int, as_json: bool) -> None:
    """The latest backup attempts, newest first: when, made or FAILED (and why), where, how big."""
    from appliance.cli import opened_database

    with opened_database(settings) as db, db.control() as conn:
        runs = backups.recent_runs(conn, limit)
    if as_json:
        click.echo(json.dumps([dataclasses.asdict(run) for run in runs], default=str, indent=2))
        return
    if not runs:
        err.print("no backup has been made on this appliance yet: `healthos backup create --out FILE`, or the "
                  "playbook's backup role schedules one")
        return
    # A line each, not a table: paths and reasons are long, and an operator greps this.
    for run in runs:
        finished = run.finished_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
        took = f"{(run.finished_at - run.started_at).total_seconds():.0f} s"
        if run.outcome == "success":
            click.echo(f"{finished}  made    {run.path}  {run.bytes / 1e6:.1f} MB, control and "
                       f"{backups.facilities(run.facilities)}, {run.rows:,} rows, {took}")
        else:
            click.echo(f"{finished}  FAILED  {run.path}  {run.error}")


def _keyring_that_made_it(settings: Settings, refused: str) -> keys.Keyring:
    """The appliance key a backup is read with, which must exist already: on a fresh HEALTHOS_HOME the keyring
    would make a new key, which opens no backup, and the refusal would then read as a damaged file, leaving
    behind a key (and for a restore, a database) to clear away before the right key can be copied in."""
    keyring = keys.Keyring.from_settings(settings)
    key_file = keyring.keys_dir / keys.APPLIANCE_KEY_FILE
    if not keyring.passphrase and not key_file.exists():
        fail(f"{refused}: there is no appliance key here ({key_file}). A backup is read only with the key of the "
             f"appliance that made it: copy its keys/{keys.APPLIANCE_KEY_FILE} to {key_file} (mode 0600), or set "
             f"{keys.PASSPHRASE_ENV} to its passphrase, and run this again")
    return keyring


@backup.command("verify")
@click.argument("backup_file", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.pass_obj
def backup_verify(settings: Settings, backup_file: Path) -> None:
    """Check every byte of a backup with this appliance's key, decrypting every part (nothing is written)."""
    try:
        manifest = backups.verify(backup_file, _keyring_that_made_it(settings, "refused"))
    except (backups.BackupRefused, keys.KeyUnavailable) as exc:
        fail(f"refused: {exc}")
    err.print(f"{backup_file}: intact; {backups.describe(manifest)}")


@backup.command("restore")
@click.argument("backup_file", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.pass_obj
def backup_restore(settings: Settings, backup_file: Path) -> None:
    """Restore a backup into this fresh, empty appliance (its keys/appliance.key must be the one that made it)."""
    from appliance.cli import opened_database

    keyring = _keyring_that_made_it(settings, "nothing restored")
    with opened_database(settings) as db:
        try:
            summary = backups.restore(db, keyring, backup_file)
        except (backups.BackupRefused, backups.NotEmpty, backups.RestoreFailed, keys.KeyUnavailable) as exc:
            fail(f"nothing restored: {exc}" + "".join(f"; {note}" for note in getattr(exc, "__notes__", ())))
    err.print(f"control: {sum(summary.control.values())} rows in {len(summary.control)} tables, "
              + ("as in the backup" if summary.control_checked else
                 "not checked: this backup was made by a release that did not count control's rows"))
    for slug, counts in sorted(summary.tenants.items()):
        err.print(f"{slug}: {sum(counts.values())} rows in {len(counts)} tables, as in the backup")
    err.print(f"restored {backup_file} in {summary.seconds:.1f} s; run `healthos audit verify` to check the trail")
