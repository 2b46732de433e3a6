"""Backups on real clusters of their own: create → verify → restore into a fresh appliance gives the same
rows per tenant and a verifying audit trail; a changed byte anywhere, another appliance's key, or a
non-empty target is refused with nothing restored."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.substrate import audit, backup, keys
from appliance.substrate.config import Settings
from appliance.substrate.db import Database
from appliance.substrate.migrate import migrate_control
from appliance.substrate.tenancy import apply_config
from tests.conftest import make_tenant_config

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


@pytest.fixture(scope="module")
def made(homes) -> Iterator[tuple[Path, dict, Path]]:
    """A source appliance with two tenants and audit events, and a backup of it."""
    source = homes / "source"
    db = _appliance(source)
    try:
        migrate_control(db)
        for slug in ("backup_one", "backup_two"):
            apply_config(db, make_tenant_config(slug))
        audit.Checkpointer(db).run_once(final=True)
        counts = {slug: backup.row_counts(db, slug) for slug in ("backup_one", "backup_two")}
        path = homes / "drill.hbk"
        summary = backup.create(db, keys.keyring_for(db), path)
        assert summary.tenants == counts
    finally:
        db.close()
    yield source, counts, path


def test_a_backup_verifies_with_its_appliance_key(made):
    source, counts, path = made
    manifest = backup.verify(path, keys.Keyring(source))
    assert manifest["tenants"] == counts
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


def test_restore_into_a_fresh_appliance_gives_the_same_rows_and_a_verifying_trail(made, homes):
    source, counts, path = made
    target = homes / "target"
    (target / "keys").mkdir(parents=True, mode=0o700)
    shutil.copy2(source / "keys" / "appliance.key", target / "keys" / "appliance.key")
    db = _appliance(target)
    try:
        summary = backup.restore(db, keys.keyring_for(db), path)
        assert summary.tenants == counts
        assert {slug: backup.row_counts(db, slug) for slug in counts} == counts
        reports = audit.verify_all(db)
        assert reports and all(report.ok for report in reports), [r.summary() for r in reports]
        with pytest.raises(backup.NotEmpty):
            backup.restore(db, keys.keyring_for(db), path)
    finally:
        db.close()
