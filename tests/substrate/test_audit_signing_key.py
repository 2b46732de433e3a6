"""Rotating the checkpoint signing key: the old key signs the rotation, the new one signs from then on,
and a regulator who pinned the old key still verifies whole and period evidence offline — while a key
no rotation introduced, or the old key signing after its successor, is refused.

The rotation changes the signing key of the appliance it runs on, which every other test module pins:
so these tests run on an appliance of their own (its own HEALTHOS_HOME and embedded cluster, started
in about a second), not on the shared one.
"""

from __future__ import annotations

import base64
import copy
import json
import secrets
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from appliance import audit_verify
from appliance.cli import main
from appliance.substrate import audit, backup, keys
from appliance.substrate.config import Settings
from appliance.substrate.db import Database
from appliance.substrate.merkle import MerkleAccumulator
from appliance.substrate.migrate import migrate_control
from appliance.substrate.tenancy import apply_config
from tests.conftest import make_tenant_config
from tests.substrate.audit_support import fill


@pytest.fixture(scope="module")
def appliance():
    """An appliance of its own (its own home, keys and embedded cluster, as a new appliance has): one
    facility whose log was checkpointed by the first key, a rotation, then more checkpoints."""
    # Outside pytest's root, which any pytest starting meanwhile makes 0700 again, locking the cluster's
    # system user out of its data directory (it could not be stopped).
    home = Path(tempfile.mkdtemp(prefix="healthos-rotation-home-", dir="/tmp"))
    settings = Settings.from_env({"HEALTHOS_HOME": str(home)})
    fresh = Database.open(settings)
    keyring = keys.bind(fresh, keys.Keyring(home))
    try:
        migrate_control(fresh)
        config = make_tenant_config()
        apply_config(fresh, config)
        old_private = keyring.signing_key()  # kept by the test alone, to play a thief of the old key
        old_pem = home / "old.pub"
        old_pem.write_bytes(keyring.public_key_pem())
        fill(fresh, config.slug, (3, 2))
        rotation = audit.rotate_signing_key(fresh)
        middle = datetime.now(UTC)
        fill(fresh, config.slug, (2, 3))
        yield {"db": fresh, "settings": settings, "home": home, "slug": config.slug, "rotation": rotation,
               "old_private": old_private, "old_pem": old_pem, "middle": middle, "keyring": keyring}
    finally:
        fresh.close()
        shutil.rmtree(home, ignore_errors=True)


def export(appliance, tenant: str | None, **window) -> dict:
    out = appliance["home"] / f"evidence-{secrets.token_hex(3)}.json"
    audit.export(appliance["db"], tenant, out, **window)
    return json.loads(out.read_text())


def old_key(appliance):
    return audit_verify.load_public_key(appliance["old_pem"].read_bytes())


def test_after_the_rotation_the_new_key_signs_and_the_old_is_still_published(appliance):
    fresh, rotation, keyring = appliance["db"], appliance["rotation"], appliance["keyring"]
    assert rotation.old_key != rotation.new_key and keyring.signing_key_id == rotation.new_key
    held = audit.held_checkpoints(fresh, appliance["slug"])["checkpoints"]
    assert [c["key"] for c in held] == [rotation.old_key] * 2 + [rotation.new_key] * 2
    # The rotation is an event of the appliance's log naming both keys, under the old key's checkpoint.
    (event,) = [e for e in audit.read_events(fresh, None) if e["type"].startswith("audit.signing_key.rotate:")]
    assert event["type"] == f"audit.signing_key.rotate:{rotation.new_key}"
    assert event["event"]["detail"] == {"old_key": rotation.old_key, "new_key": rotation.new_key,
                                        "public_key": keyring.public_key_raw().hex()}
    appliance_log = audit.held_checkpoints(fresh, None)["checkpoints"]
    assert next(c for c in appliance_log if c["size"] == rotation.checkpoint_size)["key"] == rotation.old_key
    # Both keys published with their periods; the old private half is gone, its public half kept.
    published = audit.signing_keys(fresh)
    assert [(k.key_id, k.until is None) for k in published] == [(rotation.old_key, False), (rotation.new_key, True)]
    assert published[0].until == published[1].since
    key_dir = appliance["home"] / "keys"
    assert (key_dir / f"checkpoint-signing.{rotation.old_key}.pub").exists()
    assert not (key_dir / keys.NEXT_SIGNING_KEY_FILE).exists()
    assert keys.Keyring(appliance["home"]).signing_key_id == rotation.new_key  # what another process reads
    # The appliance's own verification still trusts the checkpoints the old key signed.
    assert audit.verify(fresh, appliance["slug"]).ok and audit.verify(fresh, None).ok


def test_whole_and_period_exports_verify_offline_with_the_old_pinned_key(appliance, capsys):
    rotation, pinned = appliance["rotation"], old_key(appliance)
    whole = export(appliance, appliance["slug"])
    period = export(appliance, appliance["slug"], since=appliance["middle"])
    own = export(appliance, None)
    for package in (whole, period, own):
        report = audit_verify.verify_package(package, public_key=pinned)
        assert report.ok, [str(p) for p in report.problems]
        assert [(i.key_id, i.by) for i in report.introduced] == [(rotation.new_key, rotation.old_key)]
    assert audit_verify.verify_package(whole, public_key=pinned).checkpoints == 4
    assert len(period["events"]) == 5 and not period["range"]["complete"]  # the events after the rotation
    # The command line says plainly which keys it trusted, and why.
    path = appliance["home"] / "whole.json"
    path.write_text(json.dumps(whole))
    assert audit_verify.main([str(path), "--public-key", str(appliance["old_pem"])]) == 0
    said = capsys.readouterr().out
    assert f"trusted: the pinned key {rotation.old_key}" in said
    assert f"{rotation.new_key} (introduced by {rotation.old_key}" in said


def _resign(package: dict, index: int, signer: Ed25519PrivateKey) -> dict:
    """The package with checkpoint `index` signed again by `signer` (and its public key carried)."""
    forged = copy.deepcopy(package)
    raw = signer.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    key_id = audit_verify.key_id_of(raw)
    checkpoint = audit_verify.Checkpoint.from_json(forged["checkpoints"][index])
    forged["checkpoints"][index] |= {"key": key_id,
                                     "signature": base64.b64encode(signer.sign(checkpoint.statement())).decode()}
    forged["public_keys"][key_id] = base64.b64encode(raw).decode()
    return forged


def test_a_new_key_the_old_one_did_not_introduce_is_refused(appliance):
    pinned, whole = old_key(appliance), export(appliance, appliance["slug"])
    thief = Ed25519PrivateKey.generate()
    thief_raw = thief.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    thief_id = audit_verify.key_id_of(thief_raw)
    # A checkpoint signed by a key the package carries, but no rotation introduced.
    report = audit_verify.verify_package(_resign(whole, -1, thief), public_key=pinned)
    assert not report.ok and f"signed by key {thief_id}, which is not the trusted key" in str(report.first_problem)
    # A rotation event for it, written by someone with the database but not the old key: it sits under a
    # checkpoint only the thief could sign, so it introduces nothing.
    forged = _resign(whole, -1, thief)
    introduction = copy.deepcopy(forged["key_introductions"][0])
    header = introduction["header"].replace(f"rotate:{appliance['rotation'].new_key}", f"rotate:{thief_id}")
    leaf = audit_verify.event_hash(header.encode(), base64.b64decode(introduction["nonce"]),
                                   base64.b64decode(introduction["body"]))
    tree = MerkleAccumulator()
    tree.append(leaf)
    statement = audit_verify.checkpoint_statement(introduction["checkpoint"]["log"], 1, tree.root(),
                                                  introduction["checkpoint"]["time"])
    introduction |= {"header": header, "position": 0, "proof": [],
                     "checkpoint": {**introduction["checkpoint"], "size": 1, "root": tree.root().hex(),
                                    "key": thief_id, "signature": base64.b64encode(thief.sign(statement)).decode()}}
    forged["key_introductions"].append(introduction)
    report = audit_verify.verify_package(forged, public_key=pinned)
    assert not report.ok and thief_id not in {i.key_id for i in report.introduced}
    kinds = {p.kind for p in report.problems}
    assert {"introduction", "signature"} <= kinds
    # The same rotation event made to name the thief's key no longer matches the old key's checkpoint.
    altered = copy.deepcopy(whole)
    altered["key_introductions"][0]["header"] = header
    altered["public_keys"][thief_id] = base64.b64encode(thief_raw).decode()
    report = audit_verify.verify_package(_resign(altered, -1, thief), public_key=pinned)
    assert not report.ok and "is not in the checkpoint" in " ".join(str(p) for p in report.problems)


def test_the_old_key_cannot_sign_the_log_after_its_successor(appliance):
    """After a compromise: whoever stole the old key cannot extend the log the new key already signs."""
    whole = export(appliance, appliance["slug"])
    report = audit_verify.verify_package(_resign(whole, -1, appliance["old_private"]), public_key=old_key(appliance))
    assert not report.ok and "rotated out" in str(report.first_problem)


def test_a_rotation_recorded_but_not_yet_in_place_is_completed_by_the_next_reader(tmp_path: Path):
    """A rotation that stopped after its transaction committed: a process told the new key is current
    takes it from keys/ (the next key) and keeps the old public half."""
    ring = keys.Keyring(tmp_path)
    old = ring.signing_key_id
    following = audit_verify.key_id_of(ring.next_signing_key_raw())
    other = keys.Keyring(tmp_path)
    other.follow_rotation(following)
    assert other.signing_key_id == following and old in other.retired_public_keys()
    with pytest.raises(keys.KeyUnavailable, match="copy keys/"):
        keys.Keyring(tmp_path).follow_rotation("0123456789abcdef")


def test_the_command_rotates_again_and_lists_every_key_and_a_regulator_follows_the_chain(appliance):
    """Last in this module: a second rotation, so the old pinned key reaches the third key link by link."""
    settings = appliance["settings"]
    env = {"HEALTHOS_HOME": str(settings.home), "HEALTHOS_DATABASE_URL": settings.database_url,
           "HEALTHOS_LOG_FORMAT": "console"}
    runner = CliRunner()
    result = runner.invoke(main, ["audit", "rotate-signing-key"], env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    third = keys.Keyring(settings.home).signing_key_id
    assert f"{third} signs from now on" in result.output
    listed = runner.invoke(main, ["audit", "public-key", "--all"], env=env, catch_exceptions=False)
    assert listed.exit_code == 0, listed.output
    periods = [line for line in listed.stdout.splitlines() if line.startswith("# key ")]
    assert len(periods) == 3 and periods[-1].startswith(f"# key {third}") and "(current)" in periods[-1]
    assert listed.stdout.count("BEGIN PUBLIC KEY") == 3
    # This process's keyring still held the second key: its next checkpoint follows to the third.
    fill(appliance["db"], appliance["slug"], (2,))
    package = export(appliance, appliance["slug"])
    assert package["checkpoints"][-1]["key"] == third
    report = audit_verify.verify_package(package, public_key=old_key(appliance))
    assert report.ok, [str(p) for p in report.problems]
    assert [i.key_id for i in report.introduced] == [appliance["rotation"].new_key, third]


def test_a_backup_restored_after_a_rotation_still_trusts_the_checkpoints_the_old_key_signed(appliance):
    """The backup carries the retired keys' public halves: restored into a fresh home (with the appliance key,
    as a restore needs), the appliance's own verify still trusts what the old key signed."""
    root = Path(tempfile.mkdtemp(prefix="healthos-rotation-restore-", dir="/tmp"))  # outside pytest's 0700 root
    root.chmod(0o755)
    try:
        made = root / "rotated.hbk"
        backup.create(appliance["db"], appliance["keyring"], made)
        target = root / "target"
        (target / "keys").mkdir(parents=True, mode=0o700)
        shutil.copy2(appliance["home"] / "keys" / "appliance.key", target / "keys" / "appliance.key")
        restored = Database.open(Settings.from_env({"HEALTHOS_HOME": str(target)}))
        try:
            keyring = keys.bind(restored, keys.Keyring(target))
            backup.restore(restored, keyring, made)
            retired = sorted(p.name for p in (target / "keys").glob(keys.RETIRED_SIGNING_KEY_GLOB))
            assert retired == sorted(p.name for p in (appliance["home"] / "keys").glob(keys.RETIRED_SIGNING_KEY_GLOB))
            assert retired, "the rotation left no retired key to carry"
            reports = audit.verify_all(restored)
            assert reports and all(report.ok for report in reports), [r.summary() for r in reports]
        finally:
            restored.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_running_the_command_again_after_a_rotation_stopped_past_its_commit_finishes_it_and_rotates_no_further(
        appliance):
    """The operator's first run committed the rotation and stopped before the new key was put in place in keys/
    (a crash, a killed shell); the run after finishes that rotation instead of starting a second one."""
    fresh, settings = appliance["db"], appliance["settings"]
    key_dir = settings.home / "keys"

    def rotation_events() -> int:
        return sum(e["type"].startswith("audit.signing_key.rotate:") for e in audit.read_events(fresh, None))

    keys_before, events_before = len(audit.signing_keys(fresh)), rotation_events()
    with fresh.control() as conn:  # the committed half, then the crash: nothing was moved in keys/
        conn.execute(sa.text(audit._SIGNING_KEY_ROTATION_LOCK))
        recorded = audit._record_signing_key_rotation(conn, appliance["keyring"], None)
    assert (key_dir / keys.NEXT_SIGNING_KEY_FILE).exists()
    assert keys.Keyring(settings.home).signing_key_id == recorded.old_key

    env = {"HEALTHOS_HOME": str(settings.home), "HEALTHOS_DATABASE_URL": settings.database_url,
           "HEALTHOS_LOG_FORMAT": "console"}
    result = CliRunner().invoke(main, ["audit", "rotate-signing-key"], env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert f"recorded the rotation of {recorded.old_key} to {recorded.new_key}" in said
    assert "that rotation is finished now, and no other was started" in said
    assert f"{recorded.new_key} signs from now on" in said and f"seq {recorded.seq} " in said
    assert f"checkpoint at size {recorded.checkpoint_size} signed by {recorded.old_key}" in said
    # One rotation, not two: the recorded key is the current one, in the database and in keys/.
    assert len(audit.signing_keys(fresh)) == keys_before + 1 and rotation_events() == events_before + 1
    assert audit.signing_keys(fresh)[-1].key_id == recorded.new_key
    assert keys.Keyring(settings.home).signing_key_id == recorded.new_key
    assert not (key_dir / keys.NEXT_SIGNING_KEY_FILE).exists()
    assert (key_dir / f"checkpoint-signing.{recorded.old_key}.pub").exists()
    fill(fresh, appliance["slug"], (2,))
    assert audit.export(fresh, appliance["slug"], settings.home / "after-resume.json")
    package = json.loads((settings.home / "after-resume.json").read_text())
    assert package["checkpoints"][-1]["key"] == recorded.new_key
    report = audit_verify.verify_package(package, public_key=old_key(appliance))
    assert report.ok, [str(p) for p in report.problems]
    assert report.introduced[-1].key_id == recorded.new_key
