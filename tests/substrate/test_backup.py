"""Backups on real clusters of their own: create → verify → restore into a fresh appliance gives the same
rows in control and per tenant, and a verifying audit trail; a changed byte anywhere, another appliance's
key, or a non-empty target is refused with nothing restored, and a restore that gives back other counts
than the backup's, or stops half way, takes away all it loaded. Every attempt, made or failed, is
recorded and audited, and a backup that cannot be audited is not kept."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import shutil
import struct
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from appliance.layers.clinical import documents
from appliance.layers.clinical.document_demo import tiny_png
from appliance.substrate import audit, backup, keys
from appliance.substrate.config import Settings
from appliance.substrate.db import Database
from appliance.substrate.migrate import migrate_control
from appliance.substrate.principal import Principal
from appliance.substrate.tenancy import apply_config
from tests.conftest import make_tenant_config
from tests.layers.clinical.conftest import new_patient

pytestmark = pytest.mark.slow  # two clusters of its own (initdb, restore): tens of seconds


def _appliance(home: Path) -> Database:
    db = Database.open(Settings.from_env({"HEALTHOS_HOME": str(home)}))
    keys.bind(db, keys.Keyring(home))
    return db


@pytest.fixture(scope="module")
def homes() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="healthos-backup-test-", dir="/tmp"))  # outside pytest's 0700 root
    root.chmod(0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


SCAN = tiny_png(8, 8, (10, 20, 30))


def _file_a_document(db: Database, slug: str) -> None:
    """A scan on a chart: its bytes live in the tenant's schema (document_content, out of line in TOAST), so the
    backup must carry them, byte for byte."""
    clinician = Principal(account_id=uuid.uuid4(), kind="staff", display_name="Dr Backup", tenant=slug,
                          role="clinician")
    with db.tenant(slug) as conn:
        chart = new_patient(conn, clinician)
        documents.upload(conn, clinician, chart["id"], category="referral_letter", title="Referral letter",
                         document_date=None, content=SCAN, today=dt.date.today())


def _scans(db: Database, slug: str) -> list[bytes]:
    with db.tenant(slug) as conn:
        return [bytes(c) for c in conn.execute(sa.text("SELECT content FROM document_content")).scalars()]


@pytest.fixture(scope="module")
def source_db(homes) -> Iterator[Database]:
    """A source appliance with two tenants and audit events, running for the module."""
    db = _appliance(homes / "source")
    try:
        migrate_control(db)
        for slug in ("backup_one", "backup_two"):
            apply_config(db, make_tenant_config(slug))
        _file_a_document(db, "backup_one")
        audit.Checkpointer(db).run_once(final=True)
        yield db
    finally:
        db.close()


def _control_counts(db: Database) -> dict[str, int]:
    with db.control() as conn:
        return backup.rows_per_table(conn, "control")


@pytest.fixture(scope="module")
def control_counts(source_db) -> dict[str, int]:
    """The source's control rows as the backup finds them (the fixture `made` writes to control meanwhile)."""
    return _control_counts(source_db)


@pytest.fixture(scope="module")
def made(homes, source_db, control_counts) -> tuple[Path, dict, Path]:
    """The source appliance's home, its row counts per tenant, and a backup of it, made while the appliance
    goes on writing: an event of its log is appended before each part is dumped, after the counts were read."""
    counts = {slug: backup.row_counts(source_db, slug) for slug in ("backup_one", "backup_two")}
    path = homes / "drill.hbk"
    dump = backup._dump

    def dump_while_someone_signs_in(db, schema, snapshot):
        with db.control() as conn:
            audit.append(conn, tenant=None, principal=None, event_type="identity.signin", action="E")
        yield from dump(db, schema, snapshot)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(backup, "_dump", dump_while_someone_signs_in)
        summary = backup.create(source_db, keys.keyring_for(source_db), path)
    assert summary.tenants == counts and summary.control == control_counts
    assert _control_counts(source_db)["audit_event"] > control_counts["audit_event"]  # the sign-ins were written
    return homes / "source", counts, path


def _runs(db: Database) -> list[backup.BackupRun]:
    with db.control() as conn:
        return backup.recent_runs(conn, 100)


def _events(db: Database, event_type: str) -> list[dict]:
    return [e for e in audit.read_events(db, None) if e["type"] == event_type]


def test_a_backup_is_recorded_and_audited(made, source_db, control_counts):
    _, counts, path = made
    run = next(run for run in _runs(source_db) if run.path == str(path))
    assert (run.outcome, run.bytes, run.facilities, run.error) == ("success", path.stat().st_size, 2, None)
    assert run.rows == backup.total_rows(control_counts, counts) > sum(sum(c.values()) for c in counts.values())
    assert dt.timedelta(0) <= run.finished_at - run.started_at < dt.timedelta(minutes=5)
    event = next(e["event"] for e in _events(source_db, "backup.export") if e["event"]["detail"]["file"] == str(path))
    assert event["type"]["code"] == "110106" and event["outcome"] == "0"  # DICOM Export, success
    assert event["detail"]["facilities"] == ["backup_one", "backup_two"] and event["detail"]["rows"] == run.rows
    with source_db.control() as conn:
        assert backup.last_success(conn) == run


def test_a_failed_attempt_says_why_leaves_no_file_and_is_recorded(made, source_db, homes):
    _, _, existing = made
    before = existing.read_bytes()
    nowhere = homes / "no-such-directory" / "nightly.hbk"
    with pytest.raises(backup.BackupFailed, match=r"could not write .*no-such-directory.*No such file or directory"):
        backup.create(source_db, keys.keyring_for(source_db), nowhere)
    with pytest.raises(backup.BackupFailed, match="already exists; not overwriting a backup"):
        backup.create(source_db, keys.keyring_for(source_db), existing)
    assert not nowhere.parent.exists() and existing.read_bytes() == before
    runs = {run.path: run for run in _runs(source_db) if run.outcome == "failure"}
    assert "No such file or directory" in runs[str(nowhere)].error and runs[str(nowhere)].bytes is None
    assert "already exists" in runs[str(existing)].error
    failed = {e["event"]["detail"]["file"]: e["event"] for e in _events(source_db, "backup.export")
              if e["event"]["outcome"] != "0"}
    assert failed[str(nowhere)]["detail"]["error"] == runs[str(nowhere)].error
    with source_db.control() as conn:  # a failure is not the last backup
        assert backup.last_success(conn).path == str(existing)


def test_a_backup_that_cannot_be_audited_is_not_kept(made, source_db, homes):
    out = homes / "unaudited" / "nightly.hbk"
    out.parent.mkdir()
    runs_before = len(_runs(source_db))
    with source_db.control() as conn:  # the audit insert will now fail, as a full disk or a bug would make it
        conn.exec_driver_sql("ALTER TABLE control.audit_event ADD CONSTRAINT broken CHECK (false) NOT VALID")
    try:
        with pytest.raises(backup.BackupFailed, match="could not be audited, so it was not kept") as refused:
            backup.create(source_db, keys.keyring_for(source_db), out)
    finally:
        with source_db.control() as conn:
            conn.exec_driver_sql("ALTER TABLE control.audit_event DROP CONSTRAINT broken")
    assert list(out.parent.iterdir()) == []  # neither the backup nor its temporary file
    assert any("could not be recorded either" in note for note in refused.value.__notes__)
    assert len(_runs(source_db)) == runs_before  # the run's row went with its event


def test_a_backup_verifies_with_its_appliance_key_and_says_what_it_holds(made, control_counts):
    source, counts, path = made
    manifest = backup.verify(path, keys.Keyring(source))
    assert manifest["tenants"] == counts and manifest["control"] == control_counts
    said = backup.describe(manifest)
    assert (f"control ({control_counts['account']:,} accounts, {control_counts['membership']:,} memberships, "
            f"{control_counts['subject']:,} subjects, {control_counts['audit_event']:,} events of the appliance's "
            f"audit log; {sum(control_counts.values()):,} rows in all) and 2 facilities "
            f"({sum(sum(c.values()) for c in counts.values()):,} rows)") in said
    assert [p["name"] for p in manifest["parts"]][:3] == ["control", "tenant/backup_one", "tenant/backup_two"]
    assert path.stat().st_mode & 0o777 == 0o600


def test_changed_bytes_anywhere_are_refused(made, tmp_path):
    source, _, path = made
    data = path.read_bytes()
    keyring = keys.Keyring(source)
    offsets = {0, 5, len(data) // 3, len(data) // 2, len(data) - 40, len(data) - 33, len(data) - 1}
    offsets |= set(range(len(data) - 200, len(data), 17))  # the manifest's end and the trailer
    for offset in sorted(offsets):
        altered = bytearray(data)
        altered[offset] ^= 0x01
        (tmp_path / "x.hbk").write_bytes(bytes(altered))
        with pytest.raises(backup.BackupRefused):
            backup.verify(tmp_path / "x.hbk", keyring)


def test_another_appliance_key_is_refused(made, homes):
    _, _, path = made
    with pytest.raises(backup.BackupRefused, match="another key"):
        backup.verify(path, keys.Keyring(homes / "stranger"))


def _fresh_appliance(source: Path, target: Path) -> Database:
    """A new HEALTHOS_HOME holding only the source's appliance key, as IT's restore drill makes it."""
    (target / "keys").mkdir(parents=True, mode=0o700)
    shutil.copy2(source / "keys" / "appliance.key", target / "keys" / "appliance.key")
    return _appliance(target)


def test_restore_into_a_fresh_appliance_gives_the_same_rows_and_a_verifying_trail(made, homes, control_counts):
    source, counts, path = made
    target = homes / "target"
    db = _fresh_appliance(source, target)
    try:
        summary = backup.restore(db, keys.keyring_for(db), path)
        # the sign-ins written while it was made are not in it: control is as the counts found it
        assert summary.tenants == counts and summary.control == control_counts and summary.control_checked
        assert _scans(db, "backup_one") == [SCAN]  # a document's bytes come back with its chart
        assert {slug: backup.row_counts(db, slug) for slug in counts} == counts
        reports = audit.verify_all(db)
        assert reports and all(report.ok for report in reports), [r.summary() for r in reports]
        restored = [e["event"]["detail"] for e in audit.read_events(db, None) if e["type"] == "backup.restore"]
        made_at = backup.read_manifest(path, keys.Keyring(target))["created_at"]
        assert restored == [{"file": str(path), "backup_of": made_at, "facilities": ["backup_one", "backup_two"],
                             "rows": backup.total_rows(control_counts, counts)}]
        with db.control() as conn:  # the backup's control was dumped before its own run was recorded
            assert all(run.path != str(path) for run in backup.recent_runs(conn))
        with pytest.raises(backup.NotEmpty, match="a new HEALTHOS_HOME holding nothing but a copy of "
                                                  r"keys/appliance\.key \(mode 0600\); this one stays as it is"):
            backup.restore(db, keys.keyring_for(db), path)
    finally:
        db.close()


def _claiming(path: Path, keyring: keys.Keyring, out: Path, change) -> Path:
    """The backup with its manifest changed by `change` and authenticated again, as only one holding the appliance
    key could make it: every part as it was, the manifest's counts no longer what the parts hold."""
    data = path.read_bytes()
    trailer = 4 + 32  # the manifest's length, then the HMAC
    (length,) = struct.unpack(">I", data[-trailer:-32])
    manifest = json.loads(data[-trailer - length:-trailer])
    change(manifest)
    manifest_bytes = json.dumps(manifest, sort_keys=True).encode()
    unsigned = data[:-trailer - length] + manifest_bytes + struct.pack(">I", len(manifest_bytes))
    _, mac_key = backup._keys(keyring)
    out.write_bytes(unsigned + hmac.new(mac_key, unsigned, hashlib.sha256).digest())
    return out


def _left_behind(db: Database, keys_dir: Path) -> tuple[list[str], list[str], list[str]]:
    """What a restore left in an appliance: schemas of its own, tenant roles, files under keys/."""
    with db.control() as conn:
        schemas = conn.execute(sa.text("SELECT nspname FROM pg_namespace WHERE nspname = 'control' "
                                       "OR nspname LIKE 't\\_%' ORDER BY 1")).scalars().all()
        roles = conn.execute(sa.text("SELECT rolname FROM pg_roles WHERE rolname LIKE 't\\_%' ORDER BY 1"))
        roles = roles.scalars().all()
    return schemas, roles, sorted(entry.name for entry in keys_dir.iterdir())


def test_a_restore_that_lost_accounts_or_stopped_half_way_is_refused_and_leaves_the_appliance_empty(
        made, homes, control_counts, monkeypatch):
    """The restore checked the facilities' row counts only: one that lost accounts, memberships or the one
    identity's subjects from control passed. Control is checked as the tenants are, and a restore refused at the
    check, or stopped by a part pg_restore could not load, takes away what it had loaded, so the same appliance
    then takes the backup whole."""
    source, counts, path = made
    target = homes / "refused"
    db = _fresh_appliance(source, target)
    try:
        keyring = keys.keyring_for(db)
        empty = _left_behind(db, keyring.keys_dir)
        assert empty == ([], [], ["appliance.key"])
        accounts, charts = control_counts["account"], counts["backup_one"]["patient"]

        more_accounts = _claiming(path, keyring, homes / "more-accounts.hbk",
                                  lambda manifest: manifest["control"].update(account=accounts + 1))
        with pytest.raises(backup.RestoreFailed, match=(
                rf"control\.account holds {accounts + 1} rows in the backup and {accounts} once restored\), so nothing "
                r"of it was kept and this appliance is empty again")):
            backup.restore(db, keyring, more_accounts)
        assert _left_behind(db, keyring.keys_dir) == empty

        fewer_charts = _claiming(path, keyring, homes / "fewer-charts.hbk",
                                 lambda manifest: manifest["tenants"]["backup_one"].update(patient=charts - 1,
                                                                                           lost_table=0))
        with pytest.raises(backup.RestoreFailed, match=(
                rf"t_backup_one\.lost_table holds 0 rows in the backup and is missing once restored; "
                rf"t_backup_one\.patient holds {charts - 1} rows in the backup and {charts} once restored\)")):
            backup.restore(db, keyring, fewer_charts)
        assert _left_behind(db, keyring.keys_dir) == empty

        restore_part = backup._restore_part

        def out_of_disk_at_the_second_facility(db, path, aead, part):
            if part["name"] == "tenant/backup_two":
                raise RuntimeError("pg_restore of tenant/backup_two failed: could not extend file: No space left")
            restore_part(db, path, aead, part)

        with monkeypatch.context() as patch:
            patch.setattr(backup, "_restore_part", out_of_disk_at_the_second_facility)
            with pytest.raises(backup.RestoreFailed, match=r"the restore stopped \(pg_restore of tenant/backup_two "
                                                           r"failed: .*No space left\); nothing of it was kept"):
                backup.restore(db, keyring, path)
        assert _left_behind(db, keyring.keys_dir) == empty  # control and backup_one had been loaded

        summary = backup.restore(db, keyring, path)
        assert summary.tenants == counts and summary.control == control_counts
    finally:
        db.close()
