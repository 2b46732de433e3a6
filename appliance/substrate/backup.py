"""Backups: control and every tenant schema in one file, encrypted under the appliance key.

`create` dumps `control` and each tenant schema with the bundled `pg_dump` (custom format), and
streams each dump through AES-256-GCM in 1 MiB chunks under a key derived from the appliance key
(HKDF, purpose `healthos-backup/1`); nothing readable touches the disk. The file is::

    HEALTHOS-BACKUP/1\\n
    part, part, ...        each: chunks of [u32 length][ciphertext], nonce = part prefix || u32 index,
                           associated data = part name, index and whether it is the last chunk
    manifest (JSON)        parts (name, schema, offset, length, SHA-256 of the plaintext, nonce prefix),
                           control's row counts per table, tenants with theirs, schema revisions, the signing key file
    [u32 manifest length][HMAC-SHA256 of everything before it, 32 bytes]

so any changed byte — in a chunk, its framing, the manifest or the trailer — fails the HMAC or a
chunk's tag and the backup is refused. The counts are read in the one snapshot every `pg_dump` dumps
(exported by a repeatable-read transaction held open through the dumps), so control and the tenants
are of one moment and the counts are what the parts hold, however busy the appliance is meanwhile.

`verify` checks all of it and decrypts every chunk without writing anything; `restore` verifies
first, then loads into an empty appliance (no `control`, no tenant schema), creates the tenant
roles, restores, compares the row counts of `control` and of every tenant with the manifest's and
migrates to head. A restore that fails anywhere, a count that differs among them, takes away all
it loaded (schemas, the roles it made, the signing key files it wrote): the appliance is as empty as
it was, never half restored. The appliance key is not in the backup: keep a copy of
`keys/appliance.key` (or the passphrase) apart from the backups; without it they cannot be read.

A backup is every patient's record leaving the database, so each one is an event of the appliance's
audit log (`backup.export`), appended in the transaction that records the run in `control.backup_run`;
the file takes its name only inside that transaction, so a backup that cannot be audited is not kept.
A failed attempt is recorded and audited too, with why, for the operator's console and `healthos
backup list`. A restore is audited (`backup.restore`) once it is done.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import struct
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy.engine import Connection

from appliance.substrate import audit, keys
from appliance.substrate.db import CONTROL_SCHEMA, Database, control_metadata, tenant_schema
from appliance.substrate.embedded import pg_binary
from appliance.substrate.migrate import migrate_all, schema_revision
from appliance.substrate.tenancy import active_slugs_in

MAGIC = b"HEALTHOS-BACKUP/1\n"
RETIRED_PART = "keys/retired/"  # a part holding the public half of a signing key rotated out
_RETIRED_NAME = re.compile(r"checkpoint-signing\.[A-Za-z0-9_-]+\.pub")
FORMAT = "healthos-backup/1"
CHUNK = 1 << 20
_LENGTH = struct.Struct(">I")
_MAC_SIZE = 32


class BackupRefused(RuntimeError):
    """The backup file is damaged, altered, or not this appliance's; nothing was restored."""


class NotEmpty(RuntimeError):
    """`restore` goes only into an empty appliance."""


class RestoreFailed(RuntimeError):
    """The restore did not give back what the backup holds, or stopped half way; what it had loaded was taken
    away again, and the appliance is as empty as before."""


class BackupFailed(RuntimeError):
    """No backup was made (the message says why); nothing is left at its path, and the attempt is recorded."""


backup_run = sa.Table(
    "backup_run", control_metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(always=True), primary_key=True),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("outcome", sa.Text, nullable=False),
    sa.Column("path", sa.Text, nullable=False),
    sa.Column("bytes", sa.BigInteger),
    sa.Column("facilities", sa.Integer),
    sa.Column("rows", sa.BigInteger),
    sa.Column("error", sa.Text),
)


@dataclass
class BackupSummary:
    path: Path
    bytes: int
    seconds: float
    tenants: dict[str, dict[str, int]] = field(default_factory=dict)
    control: dict[str, int] = field(default_factory=dict)
    control_checked: bool = True  # a backup made before control was counted has nothing to check it against

    @property
    def rows(self) -> int:
        return total_rows(self.control, self.tenants)


def _keys(keyring: keys.Keyring) -> tuple[AESGCM, bytes]:
    return (AESGCM(keyring._subkey(b"healthos-backup/1 encryption")),
            keyring._subkey(b"healthos-backup/1 manifest mac"))


def _aad(part: str, index: int, final: bool) -> bytes:
    return f"{FORMAT}\npart={part}\nchunk={index}\nfinal={int(final)}\n".encode()


def rows_per_table(conn: Connection, schema: str) -> dict[str, int]:
    """Rows in every table of a schema (read as its owner, in the caller's transaction)."""
    tables = conn.execute(sa.text(
        "SELECT tablename FROM pg_tables WHERE schemaname = :s ORDER BY tablename"), {"s": schema}).scalars().all()
    return {table: conn.execute(sa.text(f'SELECT count(*) FROM "{schema}"."{table}"')).scalar()  # noqa: S608 -- names from the catalog
            for table in tables}


def row_counts(db: Database, slug: str) -> dict[str, int]:
    """Rows in every table of a tenant's schema."""
    with db.control() as conn:
        return rows_per_table(conn, tenant_schema(slug))


def total_rows(control: dict[str, int], tenants: dict[str, dict[str, int]]) -> int:
    return sum(control.values()) + sum(sum(counts.values()) for counts in tenants.values())


# What IT asks of control first after a restore: are the people, their places and the one identity there?
_CONTROL_NAMED = (("account", "accounts"), ("membership", "memberships"), ("subject", "subjects"),
                  ("audit_event", "events of the appliance's audit log"))


def describe_counts(control: dict[str, int], tenants: dict[str, dict[str, int]]) -> str:
    """The rows of a backup as the operator reads them: control's that matter by name, then the facilities'."""
    named = ", ".join(f"{control[table]:,} {what}" for table, what in _CONTROL_NAMED if table in control)
    facility_rows = sum(sum(counts.values()) for counts in tenants.values())
    if not control:  # a backup made before control was counted
        return f"control (not counted) and {facilities(len(tenants))} ({facility_rows:,} rows)"
    return (f"control ({named}; {sum(control.values()):,} rows in all) and {facilities(len(tenants))} "
            f"({facility_rows:,} rows)")


def facilities(count: int) -> str:
    return f"{count} facilit{'y' if count == 1 else 'ies'}"


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


@contextmanager
def _one_moment(db: Database) -> Iterator[tuple[Connection, str]]:
    """A read-only transaction of one snapshot, held open, and that snapshot's name for `pg_dump --snapshot`:
    what is counted in it is what every dump holds, though sign-ins and charts are written meanwhile."""
    with db.control() as conn:
        conn.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        yield conn, conn.exec_driver_sql("SELECT pg_export_snapshot()").scalar()


def _dump(db: Database, schema: str, snapshot: str) -> Iterator[bytes]:
    process = subprocess.Popen([str(pg_binary("pg_dump")), "--format=custom", "--schema", schema, "--no-owner",
                                "--snapshot", snapshot, "--dbname", db.libpq_url()],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout is not None
    while chunk := process.stdout.read(CHUNK):
        yield chunk
    _, errors = process.communicate()
    if process.returncode != 0:
        raise BackupFailed(f"pg_dump of {schema} failed: {errors.decode(errors='replace').strip()}")


def create(db: Database, keyring: keys.Keyring, out_path: Path) -> BackupSummary:
    """Back up control and every active tenant to `out_path` (which must not exist yet), recorded and
    audited; raises BackupFailed, with the attempt recorded and audited as failed, when it cannot."""
    out_path = Path(out_path)
    started_at = datetime.now(UTC)
    try:
        if out_path.exists():
            raise BackupFailed(f"{out_path} already exists; not overwriting a backup")
        return _create(db, keyring, out_path, started_at)
    except (BackupFailed, OSError, audit.AuditError) as exc:
        failure = BackupFailed(_why(exc, out_path))
        try:
            with db.control() as conn:
                _record(conn, started_at, out_path, error=str(failure))
        except (audit.AuditError, sa.exc.SQLAlchemyError) as unrecorded:
            failure.add_note(f"the failure could not be recorded either: {unrecorded}")
        raise failure from exc


def _why(exc: BaseException, out_path: Path) -> str:
    if isinstance(exc, OSError):
        # The file being written is a temporary one beside the backup's path: name the path the operator gave.
        about = out_path if exc.filename is None or Path(exc.filename).parent == out_path.parent else exc.filename
        return f"could not write {about}: {exc.strerror or exc}"
    if isinstance(exc, audit.AuditError):
        return f"the backup could not be audited, so it was not kept: {exc}"
    return str(exc)


def _create(db: Database, keyring: keys.Keyring, out_path: Path, started_at: datetime) -> BackupSummary:
    started = time.monotonic()
    aead, mac_key = _keys(keyring)
    temporary = out_path.with_name(f".{out_path.name}.{secrets.token_hex(4)}")
    fd = os.open(temporary, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w+b") as out, _one_moment(db) as (conn, snapshot):
            slugs = active_slugs_in(conn)
            revisions = {CONTROL_SCHEMA: schema_revision(conn, CONTROL_SCHEMA),
                         **{slug: schema_revision(conn, tenant_schema(slug)) for slug in slugs}}
            control = rows_per_table(conn, CONTROL_SCHEMA)
            counts = {slug: rows_per_table(conn, tenant_schema(slug)) for slug in slugs}
            out.write(MAGIC)
            parts = [_write_part(out, aead, "control", _dump(db, CONTROL_SCHEMA, snapshot))]
            parts += [_write_part(out, aead, f"tenant/{slug}", _dump(db, tenant_schema(slug), snapshot))
                      for slug in slugs]
            signing_key = keyring.keys_dir / keys.SIGNING_KEY_FILE
            if signing_key.exists():  # encrypted under the appliance key already; restored when missing
                parts.append(_write_part(out, aead, "keys/signing", iter([signing_key.read_bytes()])))
            # The public halves of signing keys rotated out: without them the restored appliance would not
            # trust its own checkpoints signed before the rotation, and its `audit verify` would fail.
            for retired in sorted(keyring.keys_dir.glob(keys.RETIRED_SIGNING_KEY_GLOB)):
                parts.append(_write_part(out, aead, f"{RETIRED_PART}{retired.name}", iter([retired.read_bytes()])))
            manifest = {"format": FORMAT, "created_at": started_at.isoformat(), "parts": parts,
                        "control": control, "tenants": counts, "revisions": revisions}
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
        summary = BackupSummary(out_path, temporary.stat().st_size, time.monotonic() - started, counts, control)
        kept = False
        try:
            # The file takes its name inside the transaction that audits it: if the event cannot be
            # recorded, or the commit fails, no backup is left behind that the log does not show.
            with db.control() as conn:
                _record(conn, started_at, out_path, summary=summary)
                temporary.replace(out_path)
                kept = True
        except BaseException:
            if kept:
                out_path.unlink(missing_ok=True)
            raise
    finally:
        temporary.unlink(missing_ok=True)
    return summary


def _record(conn: Connection, started_at: datetime, out_path: Path, *, summary: BackupSummary | None = None,
            error: str | None = None) -> None:
    """The run's row and its `backup.export` event of the appliance's log, in the caller's transaction."""
    row = {"started_at": started_at, "finished_at": datetime.now(UTC), "path": str(out_path.absolute())}
    if summary is not None:
        row |= {"outcome": "success", "bytes": summary.bytes, "facilities": len(summary.tenants), "rows": summary.rows}
        detail = {"file": row["path"], "bytes": summary.bytes, "facilities": sorted(summary.tenants),
                  "rows": summary.rows, "seconds": round(summary.seconds, 1)}
    else:
        row |= {"outcome": "failure", "error": error}
        detail = {"file": row["path"], "error": error}
    # A backup taken by this release of a control schema not yet migrated to it (before `healthos
    # migrate`, the moment a backup matters most) has no table to record the run in; the audit event
    # still says what was done.
    if conn.exec_driver_sql("SELECT to_regclass('control.backup_run')").scalar() is not None:
        conn.execute(sa.insert(backup_run).values(**row))
    audit.append(conn, tenant=None, principal=None, event_type="backup.export", action="E",
                 outcome=row["outcome"], detail=detail)


@dataclass(frozen=True)
class BackupRun:
    started_at: datetime
    finished_at: datetime
    outcome: str
    path: str
    bytes: int | None
    facilities: int | None
    rows: int | None
    error: str | None

    @property
    def directory(self) -> Path:
        return Path(self.path).parent


def recent_runs(conn: Connection, limit: int = 20) -> list[BackupRun]:
    """The latest backup attempts, newest first."""
    columns = [backup_run.c[name] for name in BackupRun.__dataclass_fields__]
    rows = conn.execute(sa.select(*columns).order_by(backup_run.c.finished_at.desc(), backup_run.c.id.desc())
                        .limit(limit)).all()
    return [BackupRun(*row) for row in rows]


def last_success(conn: Connection) -> BackupRun | None:
    columns = [backup_run.c[name] for name in BackupRun.__dataclass_fields__]
    row = conn.execute(sa.select(*columns).where(backup_run.c.outcome == "success")
                       .order_by(backup_run.c.finished_at.desc(), backup_run.c.id.desc()).limit(1)).first()
    return None if row is None else BackupRun(*row)


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
    """Verify, then restore into this empty appliance; the row counts of control and of every tenant must match
    the backup's. Raises RestoreFailed (or BackupRefused) with everything it had loaded taken away again."""
    started = time.monotonic()
    path = Path(path)
    manifest = verify(path, keyring)
    with db.control() as conn:
        present = conn.execute(sa.text("SELECT nspname FROM pg_namespace "
                                       "WHERE nspname = 'control' OR nspname LIKE 't\\_%' ORDER BY 1")).scalars().all()
    if present:
        raise NotEmpty(f"this appliance is not empty (schemas {', '.join(present[:5])}): restore goes into a fresh "
                       "appliance only, a new HEALTHOS_HOME holding nothing but a copy of "
                       f"keys/{keys.APPLIANCE_KEY_FILE} (mode 0600); this one stays as it is")
    slugs = sorted(manifest["tenants"])
    loaded = _Loaded()
    try:
        control, restored = _load(db, keyring, path, manifest, loaded)
        migrate_all(db, slugs)  # a backup made by an older release comes up at this release's head
        with db.control() as conn:
            audit.append(conn, tenant=None, principal=None, event_type="backup.restore", action="E",
                         detail={"file": str(path.absolute()), "backup_of": manifest["created_at"],
                                 "facilities": slugs, "rows": total_rows(control, restored)})
    except BaseException as exc:
        try:
            _take_away(db, slugs, loaded)
        except Exception as cleanup:  # the restore's own failure is the one to raise
            exc.add_note(f"what it had loaded could not all be taken away ({cleanup}): clear this appliance's "
                         "HEALTHOS_HOME but keys/appliance.key before restoring again")
        if isinstance(exc, BackupRefused | RestoreFailed) or not isinstance(exc, _STOPS):
            raise
        raise RestoreFailed(f"{path}: the restore stopped ({exc}); nothing of it was kept, this appliance is empty "
                            "again") from exc
    return BackupSummary(path, path.stat().st_size, time.monotonic() - started, restored, control,
                         control_checked="control" in manifest)


# What stops a restore on the way (pg_restore refusing a part, a full disk, a migration or the audit event
# failing) and is told to the operator as such, not as a traceback.
_STOPS = (RuntimeError, OSError, sa.exc.SQLAlchemyError)


@dataclass
class _Loaded:
    """What a restore has made so far, to take away if it cannot finish."""
    roles: list[str] = field(default_factory=list)
    key_files: list[Path] = field(default_factory=list)


def _load(db: Database, keyring: keys.Keyring, path: Path, manifest: dict,
          loaded: _Loaded) -> tuple[dict[str, int], dict[str, dict[str, int]]]:
    """Every part into the database (or the keys directory), then the counts compared with the manifest's."""
    aead, _ = _keys(keyring)
    slugs = sorted(manifest["tenants"])
    with db.control() as conn:
        for slug in slugs:
            role = conn.dialect.identifier_preparer.quote_identifier(tenant_schema(slug))
            exists = conn.execute(sa.text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": tenant_schema(slug)})
            if exists.first() is None:
                conn.exec_driver_sql(f"CREATE ROLE {role} NOLOGIN NOINHERIT")
                loaded.roles.append(tenant_schema(slug))
            conn.exec_driver_sql(f"GRANT {role} TO CURRENT_USER")
    for part in manifest["parts"]:
        if part["name"].startswith(RETIRED_PART):
            name = part["name"].removeprefix(RETIRED_PART)
            if not _RETIRED_NAME.fullmatch(name):  # a name from the file: never a path out of keys/
                raise BackupRefused(f"{path}: the backup names a retired signing key {name!r} that is not one")
            target = keyring.keys_dir / name
            if not target.exists():
                keyring.keys_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
                loaded.key_files.append(target)
                target.write_bytes(b"".join(_chunks(path, aead, part)))
            continue
        if part["name"] == "keys/signing":
            target = keyring.keys_dir / keys.SIGNING_KEY_FILE
            if not target.exists():
                keyring.keys_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
                loaded.key_files.append(target)
                keys._write_new(target, b"".join(_chunks(path, aead, part)))
            continue
        _restore_part(db, path, aead, part)
    with db.control() as conn:
        control = rows_per_table(conn, CONTROL_SCHEMA)
        restored = {slug: rows_per_table(conn, tenant_schema(slug)) for slug in slugs}
    # A backup made before control was counted carries no control counts: its tenants are still checked.
    differing = _differing(CONTROL_SCHEMA, manifest.get("control", {}), control)
    for slug in slugs:
        differing += _differing(tenant_schema(slug), manifest["tenants"][slug], restored[slug])
    if differing:
        raise RestoreFailed(f"{path}: the restore did not give back the rows the backup holds "
                            f"({'; '.join(differing)}), so nothing of it was kept and this appliance is empty again; "
                            "restore an earlier backup, and keep this one as it is to find out why")
    return control, restored


def _differing(schema: str, expected: dict[str, int], restored: dict[str, int]) -> list[str]:
    return [f"{schema}.{table} holds {count:,} rows in the backup and "
            + ("is missing once restored" if table not in restored else f"{restored[table]:,} once restored")
            for table, count in sorted(expected.items()) if restored.get(table) != count]


def _take_away(db: Database, slugs: list[str], loaded: _Loaded) -> None:
    """Undo a restore that could not finish: its schemas, the roles it made and the key files it wrote."""
    with db.control() as conn:
        quote = conn.dialect.identifier_preparer.quote_identifier
        for schema in [CONTROL_SCHEMA, *(tenant_schema(slug) for slug in slugs)]:
            conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {quote(schema)} CASCADE")
    # Apart, so that a role that cannot go leaves the schemas gone. Made moments ago by this restore, a role
    # owns nothing (the parts are restored without owners) and its grants were on the schemas just dropped.
    with db.control() as conn:
        for role in loaded.roles:
            conn.exec_driver_sql(f"DROP ROLE {quote(role)}")
    for key_file in loaded.key_files:
        key_file.unlink(missing_ok=True)


def describe(manifest: dict) -> str:
    return (f"backup of {manifest['created_at']}: {describe_counts(manifest.get('control', {}), manifest['tenants'])}, "
            f"{len(manifest['parts'])} encrypted parts")

