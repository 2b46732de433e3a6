"""Backups: control and every tenant schema in one file, encrypted under the appliance key.

`create` dumps `control` and each tenant schema with the bundled `pg_dump` (custom format), and
streams each dump through AES-256-GCM in 1 MiB chunks under a key derived from the appliance key
(HKDF, purpose `healthos-backup/1`); nothing readable touches the disk. The file is::

    HEALTHOS-BACKUP/1\\n
    part, part, ...        each: chunks of [u32 length][ciphertext], nonce = part prefix || u32 index,
                           associated data = part name, index and whether it is the last chunk
    manifest (JSON)        parts (name, schema, offset, length, SHA-256 of the plaintext, nonce prefix),
                           tenants with their row counts per table, schema revisions, the signing key file
    [u32 manifest length][HMAC-SHA256 of everything before it, 32 bytes]

so any changed byte — in a chunk, its framing, the manifest or the trailer — fails the HMAC or a
chunk's tag and the backup is refused. `verify` checks all of it and decrypts every chunk without
writing anything; `restore` verifies first, then loads into an empty appliance (no `control`, no
tenant schema), creates the tenant roles, restores, migrates to head and compares the row counts
per tenant with the manifest's. The appliance key is not in the backup: keep a copy of
`keys/appliance.key` (or the passphrase) apart from the backups; without it they cannot be read.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import struct
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from appliance.substrate import keys
from appliance.substrate.db import CONTROL_SCHEMA, Database, tenant_schema
from appliance.substrate.embedded import pg_binary
from appliance.substrate.migrate import migrate_all, schema_revision
from appliance.substrate.tenancy import active_slugs

MAGIC = b"HEALTHOS-BACKUP/1\n"
FORMAT = "healthos-backup/1"
CHUNK = 1 << 20
_LENGTH = struct.Struct(">I")
_MAC_SIZE = 32


class BackupRefused(RuntimeError):
    """The backup file is damaged, altered, or not this appliance's; nothing was restored."""


class NotEmpty(RuntimeError):
    """`restore` goes only into an empty appliance."""


@dataclass
class BackupSummary:
    path: Path
    bytes: int
    seconds: float
    tenants: dict[str, dict[str, int]] = field(default_factory=dict)


def _keys(keyring: keys.Keyring) -> tuple[AESGCM, bytes]:
    return (AESGCM(keyring._subkey(b"healthos-backup/1 encryption")),
            keyring._subkey(b"healthos-backup/1 manifest mac"))


def _aad(part: str, index: int, final: bool) -> bytes:
    return f"{FORMAT}\npart={part}\nchunk={index}\nfinal={int(final)}\n".encode()


def row_counts(db: Database, slug: str) -> dict[str, int]:
    """Rows in every table of a tenant's schema (read as the schema's owner)."""
    schema = tenant_schema(slug)
    with db.control() as conn:
        tables = conn.execute(sa.text(
            "SELECT tablename FROM pg_tables WHERE schemaname = :s ORDER BY tablename"), {"s": schema}).scalars().all()
        return {table: conn.execute(sa.text(f'SELECT count(*) FROM "{schema}"."{table}"')).scalar()  # noqa: S608 -- names from the catalog
                for table in tables}


# -- create ---------------------------------------------------------------------------------------


def _write_part(out, aead: AESGCM, name: str, chunks: Iterator[bytes]) -> dict:
    prefix = secrets.token_bytes(8)
    digest = hashlib.sha256()
    start = out.tell()
    index = 0
    pending = next(chunks, b"")
    while True:
        following = next(chunks, None)
        final = following is None
        digest.update(pending)
        sealed = aead.encrypt(prefix + struct.pack(">I", index), pending, _aad(name, index, final))
        out.write(_LENGTH.pack(len(sealed)) + sealed)
        if final:
            break
        pending, index = following, index + 1
    return {"name": name, "offset": start, "length": out.tell() - start, "chunks": index + 1,
            "sha256": digest.hexdigest(), "nonce_prefix": prefix.hex()}


def _dump(db: Database, schema: str) -> Iterator[bytes]:
    process = subprocess.Popen([str(pg_binary("pg_dump")), "--format=custom", "--schema", schema, "--no-owner",
                                "--dbname", db.libpq_url()], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout is not None
    while chunk := process.stdout.read(CHUNK):
        yield chunk
    _, errors = process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"pg_dump of {schema} failed: {errors.decode(errors='replace').strip()}")


def create(db: Database, keyring: keys.Keyring, out_path: Path) -> BackupSummary:
    started = time.monotonic()
    aead, mac_key = _keys(keyring)
    slugs = active_slugs(db)
    with db.control() as conn:
        revisions = {CONTROL_SCHEMA: schema_revision(conn, CONTROL_SCHEMA),
                     **{slug: schema_revision(conn, tenant_schema(slug)) for slug in slugs}}
    counts = {slug: row_counts(db, slug) for slug in slugs}
    out_path = Path(out_path)
    temporary = out_path.with_name(f".{out_path.name}.{secrets.token_hex(4)}")
    fd = os.open(temporary, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w+b") as out:
            out.write(MAGIC)
            parts = [_write_part(out, aead, "control", _dump(db, CONTROL_SCHEMA))]
            parts += [_write_part(out, aead, f"tenant/{slug}", _dump(db, tenant_schema(slug))) for slug in slugs]
            signing_key = keyring.keys_dir / keys.SIGNING_KEY_FILE
            if signing_key.exists():  # encrypted under the appliance key already; restored when missing
                parts.append(_write_part(out, aead, "keys/signing", iter([signing_key.read_bytes()])))
            manifest = {"format": FORMAT, "created_at": datetime.now(UTC).isoformat(), "parts": parts,
                        "tenants": counts, "revisions": revisions}
            manifest_bytes = json.dumps(manifest, sort_keys=True).encode()
            out.write(manifest_bytes + _LENGTH.pack(len(manifest_bytes)))
            out.flush()
            out.seek(0)
            mac = hmac.new(mac_key, digestmod=hashlib.sha256)
            while chunk := out.read(CHUNK):
                mac.update(chunk)
            out.seek(0, os.SEEK_END)
            out.write(mac.digest())
            os.fsync(out.fileno())
        temporary.replace(out_path)
    finally:
        temporary.unlink(missing_ok=True)
    return BackupSummary(out_path, out_path.stat().st_size, time.monotonic() - started, counts)


# -- verify ---------------------------------------------------------------------------------------


def read_manifest(path: Path, keyring: keys.Keyring) -> dict:
    """The manifest of a backup whose every byte the appliance key's MAC vouches for."""
    _, mac_key = _keys(keyring)
    size = path.stat().st_size
    if size < len(MAGIC) + _LENGTH.size + _MAC_SIZE:
        raise BackupRefused(f"{path}: too short to be a backup")
    mac = hmac.new(mac_key, digestmod=hashlib.sha256)
    with path.open("rb") as handle:
        remaining = size - _MAC_SIZE
        while remaining:
            chunk = handle.read(min(CHUNK, remaining))
            mac.update(chunk)
            remaining -= len(chunk)
        stored = handle.read(_MAC_SIZE)
        if not hmac.compare_digest(mac.digest(), stored):
            raise BackupRefused(f"{path}: altered, damaged, or made by an appliance with another key "
                                "(its authentication code does not match)")
        handle.seek(0)
        if handle.read(len(MAGIC)) != MAGIC:
            raise BackupRefused(f"{path}: not a {FORMAT} file")
        handle.seek(size - _MAC_SIZE - _LENGTH.size)
        (length,) = _LENGTH.unpack(handle.read(_LENGTH.size))
        handle.seek(size - _MAC_SIZE - _LENGTH.size - length)
        manifest = json.loads(handle.read(length))
    if manifest.get("format") != FORMAT:
        raise BackupRefused(f"{path}: not a {FORMAT} manifest")
    return manifest


def _chunks(path: Path, aead: AESGCM, part: dict) -> Iterator[bytes]:
    """A part's plaintext, chunk by chunk, each authenticated; the whole checked against its digest."""
    prefix = bytes.fromhex(part["nonce_prefix"])
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        handle.seek(part["offset"])
        end = part["offset"] + part["length"]
        for index in range(part["chunks"]):
            (length,) = _LENGTH.unpack(handle.read(_LENGTH.size))
            if handle.tell() + length > end:
                raise BackupRefused(f"{path}: part {part['name']} is cut short")
            try:
                plain = aead.decrypt(prefix + struct.pack(">I", index), handle.read(length),
                                     _aad(part["name"], index, index == part["chunks"] - 1))
            except InvalidTag:
                raise BackupRefused(f"{path}: part {part['name']} chunk {index} does not authenticate") from None
            digest.update(plain)
            yield plain
        if handle.tell() != end:
            raise BackupRefused(f"{path}: part {part['name']} has bytes past its last chunk")
    if digest.hexdigest() != part["sha256"]:
        raise BackupRefused(f"{path}: part {part['name']} differs from its digest in the manifest")


def verify(path: Path, keyring: keys.Keyring) -> dict:
    """Check every byte of the backup and decrypt every chunk (nothing written); returns the manifest."""
    path = Path(path)
    manifest = read_manifest(path, keyring)
    aead, _ = _keys(keyring)
    for part in manifest["parts"]:
        for _ in _chunks(path, aead, part):
            pass
    return manifest


# -- restore --------------------------------------------------------------------------------------


def _restore_part(db: Database, path: Path, aead: AESGCM, part: dict) -> None:
    process = subprocess.Popen([str(pg_binary("pg_restore")), "--no-owner", "--exit-on-error", "--single-transaction",
                                "--dbname", db.libpq_url()], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    assert process.stdin is not None
    try:
        for plain in _chunks(path, aead, part):
            process.stdin.write(plain)
    finally:
        process.stdin.close()
        assert process.stderr is not None
        errors = process.stderr.read()
        process.stderr.close()
        process.wait()
    if process.returncode != 0:
        raise RuntimeError(f"pg_restore of {part['name']} failed: {errors.decode(errors='replace').strip()}")


def restore(db: Database, keyring: keys.Keyring, path: Path) -> BackupSummary:
    """Verify, then restore into this empty appliance; the row counts per tenant must match the backup's."""
    started = time.monotonic()
    path = Path(path)
    manifest = verify(path, keyring)
    aead, _ = _keys(keyring)
    with db.control() as conn:
        present = conn.execute(sa.text("SELECT nspname FROM pg_namespace "
                                       "WHERE nspname = 'control' OR nspname LIKE 't\\_%' ORDER BY 1")).scalars().all()
    if present:
        raise NotEmpty(f"this appliance is not empty (schemas {', '.join(present[:5])}): restore goes into a fresh "
                       "appliance only")
    slugs = sorted(manifest["tenants"])
    with db.control() as conn:
        for slug in slugs:
            role = conn.dialect.identifier_preparer.quote_identifier(tenant_schema(slug))
            exists = conn.execute(sa.text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": tenant_schema(slug)})
            if exists.first() is None:
                conn.exec_driver_sql(f"CREATE ROLE {role} NOLOGIN NOINHERIT")
            conn.exec_driver_sql(f"GRANT {role} TO CURRENT_USER")
    for part in manifest["parts"]:
        if part["name"] == "keys/signing":
            target = keyring.keys_dir / keys.SIGNING_KEY_FILE
            if not target.exists():
                keyring.keys_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
                keys._write_new(target, b"".join(_chunks(path, aead, part)))
            continue
        _restore_part(db, path, aead, part)
    restored = {slug: row_counts(db, slug) for slug in slugs}
    for slug in slugs:
        expected = manifest["tenants"][slug]
        differing = {table: (count, restored[slug].get(table)) for table, count in expected.items()
                     if restored[slug].get(table) != count}
        if differing:
            raise RuntimeError(f"tenant {slug}: row counts differ after restore (table: backup, restored): {differing}")
    migrate_all(db, slugs)  # a backup made by an older release comes up at this release's head
    return BackupSummary(path, path.stat().st_size, time.monotonic() - started, restored)


def describe(manifest: dict) -> str:
    tenants = manifest["tenants"]
    rows = sum(sum(c.values()) for c in tenants.values())
    return (f"backup of {manifest['created_at']}: control and {len(tenants)} tenant(s), {rows} rows, "
            f"{len(manifest['parts'])} encrypted parts")

