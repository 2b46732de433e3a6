"""`healthos bundle ...` and `healthos backup ...`: the operator's deployment commands.

Kept apart from `appliance/cli.py` (which registers them) so the deployment room's commands live
beside each other; the work itself is in `appliance/substrate/bundle.py` and `backup.py`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import NoReturn

import click
from rich.console import Console

from appliance.substrate import bundle as bundles

# Not imported from appliance.cli: `python -m appliance.cli` runs that module as __main__, and a second
# copy of it imported from here would register these commands again, in a loop.
err = Console(stderr=True, highlight=False)


def fail(message: str, code: int = 1) -> NoReturn:
    err.print(f"[bold red]error:[/] {message}", markup=True, soft_wrap=True)
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
