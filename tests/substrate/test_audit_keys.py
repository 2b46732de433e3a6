"""Keys of the audit trail: the appliance key on disk or from a passphrase, the signing key, data keys
rotated, sealed to a regulator, and destroyed with their tenant (crypto-shredding)."""

from __future__ import annotations

import json
import stat
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives import serialization

from appliance import audit_verify
from appliance.substrate import audit, keys
from appliance.substrate.tenancy import drop_tenant
from tests.substrate.audit_support import fill


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# -- the keyring ----------------------------------------------------------------------------------


def test_the_appliance_key_is_made_once_0600_in_a_0700_directory(tmp_path: Path):
    ring = keys.Keyring(tmp_path)
    key = ring.appliance_key()
    path = tmp_path / "keys" / "appliance.key"
    assert len(key) == 32 and path.read_bytes() == key
    assert mode(path) == 0o600 and mode(tmp_path / "keys") == 0o700
    assert keys.Keyring(tmp_path).appliance_key() == key  # another process reads the same key


def test_a_key_file_others_can_read_is_refused(tmp_path: Path):
    keys.Keyring(tmp_path).appliance_key()
    (tmp_path / "keys" / "appliance.key").chmod(0o644)
    with pytest.raises(keys.KeyUnavailable, match="chmod 600"):
        keys.Keyring(tmp_path).appliance_key()


def test_a_passphrase_derives_the_key_and_a_wrong_one_is_told_apart(tmp_path: Path):
    phrase = "correct horse battery staple, ministry edition"
    key = keys.Keyring(tmp_path, passphrase=phrase).appliance_key()
    assert keys.Keyring(tmp_path, passphrase=phrase).appliance_key() == key
    assert not (tmp_path / "keys" / "appliance.key").exists()  # nothing on disk opens the data keys
    kdf = json.loads((tmp_path / "keys" / "appliance.kdf.json").read_text())
    assert kdf["kdf"] == "argon2id" and key.hex() not in json.dumps(kdf)
    with pytest.raises(keys.WrongApplianceKey, match="passphrase"):
        keys.Keyring(tmp_path, passphrase="a guess").appliance_key()


def test_the_signing_key_is_encrypted_on_disk_and_stable(tmp_path: Path):
    ring = keys.Keyring(tmp_path)
    statement = b"healthos-audit-checkpoint/1\n"
    signature = ring.sign(statement)
    path = tmp_path / "keys" / "checkpoint-signing.pem"
    assert mode(path) == 0o600 and b"ENCRYPTED PRIVATE KEY" in path.read_bytes()
    again = keys.Keyring(tmp_path)
    assert again.signing_key_id == ring.signing_key_id
    again.public_key().verify(signature, statement)
    pinned = audit_verify.load_public_key(ring.public_key_pem())
    assert audit_verify.key_id_of(pinned.public_bytes(serialization.Encoding.Raw,
                                                      serialization.PublicFormat.Raw)) == ring.signing_key_id


def test_a_data_key_wrapped_by_another_appliance_does_not_open(tmp_path: Path):
    ours, theirs = keys.Keyring(tmp_path / "a"), keys.Keyring(tmp_path / "b")
    wrapped = ours.wrap(b"k" * 32, key_id="k1", log_id="log")
    assert ours.unwrap(wrapped, key_id="k1", log_id="log") == b"k" * 32
    with pytest.raises(keys.WrongApplianceKey):
        theirs.unwrap(wrapped, key_id="k1", log_id="log")
    with pytest.raises(keys.WrongApplianceKey):  # relabelled to another key or log
        ours.unwrap(wrapped, key_id="k2", log_id="log")


def test_sealing_to_a_regulator_round_trips_and_binds_the_key_id(tmp_path: Path):
    private_path, public_path, public = keys.generate_regulator_keypair(tmp_path / "regulator.pem")
    assert mode(private_path) == 0o600
    regulator = audit_verify.Regulator.load(private_path.read_bytes())
    sealed = audit_verify.seal(b"d" * 32, public, key_id="k1", log_id="log")
    assert audit_verify.unseal(sealed, regulator.private, key_id="k1", log_id="log") == b"d" * 32
    with pytest.raises(audit_verify.InvalidTag):
        audit_verify.unseal(sealed, regulator.private, key_id="k2", log_id="log")
    assert keys.load_regulator_public_key(public_path.read_bytes()).public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw) == public.public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    with pytest.raises(FileExistsError):
        keys.generate_regulator_keypair(private_path)


# -- rotation -------------------------------------------------------------------------------------


def test_rotation_new_events_use_the_new_key_and_old_ones_stay_readable(db, tenant_factory):
    slug = tenant_factory().slug
    patient = str(uuid.uuid4())
    fill(db, slug, (3,), patients=[patient])
    before = audit.read_events(db, slug)
    new_key = audit.rotate_key(db, slug)
    keys.forget()  # as another process would: nothing cached, the tenant schema says which key is current
    fill(db, slug, (3,), patients=[patient])
    events = audit.read_events(db, slug)
    assert {e["key"] for e in events[:3]} == {before[0]["key"]} != {new_key.key_id}
    assert {e["key"] for e in events[3:]} == {new_key.key_id}
    assert all(e["event"] is not None for e in events)  # every generation decrypts
    assert len(audit.patient_access_log(db, slug, patient)) == 6  # found under both keys' references
    assert audit.verify(db, slug, decrypt=True).decrypted == 6
    rotations = [e for e in audit.read_events(db, None) if e["type"] == "audit.key.rotate"]
    assert rotations and rotations[-1]["event"]["detail"]["key"] == new_key.key_id


# -- regulators -----------------------------------------------------------------------------------


def test_a_regulator_decrypts_exported_evidence_with_their_own_key(db, tenant_factory, tmp_path: Path):
    slug = tenant_factory().slug
    fill(db, slug, (4,))  # written before the regulator's key is registered: sealed at registration
    private_path, public_path, _ = keys.generate_regulator_keypair(tmp_path / "ministry.pem")
    regulator_id, sealed = audit.register_regulator(db, public_path.read_bytes(), "Ministry of Health")
    assert sealed >= 1 and len(regulator_id) == 16
    fill(db, slug, (2,))  # and after: sealed when made
    package = tmp_path / "evidence.json"
    audit.export(db, slug, package)
    stranger_path, _, _ = keys.generate_regulator_keypair(tmp_path / "stranger.pem")

    decrypted: list[dict] = []
    report = audit_verify.verify_package(json.loads(package.read_text()),
                                         regulator=audit_verify.Regulator.load(private_path.read_bytes()),
                                         decrypted=decrypted)
    assert report.ok and report.decrypted == report.events == 6
    assert all(item["event"]["resourceType"] == "AuditEvent" for item in decrypted)
    assert decrypted[0]["header"]["tenant"] == slug

    not_theirs = audit_verify.verify_package(json.loads(package.read_text()),
                                             regulator=audit_verify.Regulator.load(stranger_path.read_bytes()))
    assert not_theirs.ok and not_theirs.decrypted == 0


# -- crypto-shredding -----------------------------------------------------------------------------


def test_dropping_a_tenant_shreds_its_keys_while_its_log_still_verifies(db, tenant_factory, tmp_path: Path):
    slug = tenant_factory().slug
    private_path, public_path, _ = keys.generate_regulator_keypair(tmp_path / "regulator.pem")
    audit.register_regulator(db, public_path.read_bytes(), "regulator")
    fill(db, slug, (4, 4))
    audit.rotate_key(db, slug)
    fill(db, slug, (2,))
    with db.tenant(slug) as conn:  # committed but not yet checkpointed when the drop comes
        audit.append(conn, tenant=slug, principal=None, event_type="chart.read", action="R")
    before = audit.verify(db, slug)
    assert before.ok and before.pending == 1
    with db.control() as conn:
        key_ids = conn.execute(sa.text("SELECT key_id FROM control.audit_data_key WHERE tenant = :t"),
                               {"t": slug}).scalars().all()
    assert len(key_ids) == 2

    drop_tenant(db, slug)

    after = audit.verify(db, slug)
    assert after.ok, after.problems
    assert after.events == 11 and after.pending == 0 and after.log_id == before.log_id
    events = audit.read_events(db, slug)
    assert len(events) == 11 and all(e["event"] is None for e in events)  # no body of it decrypts
    keys.forget()
    with db.control() as conn:
        for key_id in key_ids:
            with pytest.raises(keys.KeyDestroyed):
                keys.load(conn, key_id)
        assert conn.execute(sa.text("SELECT count(*) FROM control.audit_data_key_seal WHERE key_id = ANY(:k)"),
                            {"k": key_ids}).scalar() == 0
        assert conn.execute(sa.text("SELECT count(*) FROM control.audit_data_key WHERE key_id = ANY(:k) "
                                    "AND wrapped IS NULL AND destroyed_at IS NOT NULL"), {"k": key_ids}).scalar() == 2

    package = tmp_path / "after-drop.json"
    audit.export(db, slug, package)
    report = audit_verify.verify_package(json.loads(package.read_text()),
                                         regulator=audit_verify.Regulator.load(private_path.read_bytes()))
    assert report.ok and report.events == 11 and report.decrypted == 0  # not even the regulator now
    drops = [e for e in audit.read_events(db, None) if e["type"] == "tenant.drop"]
    assert drops[-1]["event"]["detail"]["tenant"] == slug
    assert sorted(drops[-1]["event"]["detail"]["data_keys_destroyed"]) == sorted(key_ids)
    assert any(r.log_id == before.log_id and r.ok for r in audit.verify_all(db))


def test_a_tenant_made_again_under_the_same_slug_gets_a_new_log_and_new_keys(db, tenant_factory):
    config = tenant_factory()
    fill(db, config.slug, (2,))
    first = audit.verify(db, config.slug).log_id
    drop_tenant(db, config.slug)
    again = tenant_factory(slug=config.slug)
    fill(db, again.slug, (3,))
    report = audit.verify(db, again.slug)
    assert report.ok and report.log_id != first and report.events == 3
    assert all(e["event"] is not None for e in audit.read_events(db, again.slug))


def test_writers_racing_on_a_tenants_first_event_make_one_key(db, tenant_factory):
    import threading

    slug = tenant_factory().slug
    start = threading.Barrier(8)
    errors: list[BaseException] = []

    def first_event() -> None:
        try:
            start.wait()
            keys.forget()
            with db.tenant(slug) as conn:
                audit.append(conn, tenant=slug, principal=None, event_type="chart.read", action="R")
        except BaseException as exc:  # reported in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=first_event) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    with db.control() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM control.audit_data_key WHERE tenant = :t"),
                            {"t": slug}).scalar() == 1
    assert audit.checkpoint(db, slug).size == 8


def unsealed_for(db, regulator_id: str) -> int:
    with db.control() as conn:
        return conn.execute(sa.text(
            "SELECT count(*) FROM control.audit_data_key k WHERE k.wrapped IS NOT NULL AND NOT EXISTS "
            "(SELECT 1 FROM control.audit_data_key_seal s WHERE s.key_id = k.key_id AND s.regulator_key_id = :r)"),
            {"r": regulator_id}).scalar()


def test_keys_made_while_a_regulator_registers_are_sealed_to_it(db, tenant_factory, tmp_path: Path):
    import threading

    slugs = [tenant_factory().slug for _ in range(6)]
    _, public_path, _ = keys.generate_regulator_keypair(tmp_path / "late.pem")
    start = threading.Barrier(len(slugs) + 1)
    errors: list[BaseException] = []

    def first_event(slug: str) -> None:
        try:
            start.wait()
            with db.tenant(slug) as conn:
                audit.append(conn, tenant=slug, principal=None, event_type="chart.read", action="R")
        except BaseException as exc:  # reported in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=first_event, args=(slug,)) for slug in slugs]
    for thread in threads:
        thread.start()
    start.wait()
    regulator_id, _ = audit.register_regulator(db, public_path.read_bytes(), "late")
    for thread in threads:
        thread.join()
    assert not errors, errors
    assert unsealed_for(db, regulator_id) == 0


def test_a_regulator_registered_on_a_new_appliance_can_open_its_first_events(settings, tmp_path: Path):
    """The registration's own event makes the appliance log's first key: that key is sealed too."""
    from appliance.substrate.config import Settings
    from appliance.substrate.db import Database
    from appliance.substrate.migrate import migrate_control

    fresh = Database.open(Settings.from_env({"HEALTHOS_HOME": str(tmp_path / "home")}))
    try:
        migrate_control(fresh)
        private_path, public_path, _ = keys.generate_regulator_keypair(tmp_path / "first.pem")
        regulator_id, sealed = audit.register_regulator(fresh, public_path.read_bytes(), "first")
        assert sealed == 1 and unsealed_for(fresh, regulator_id) == 0
        package = tmp_path / "appliance.json"
        audit.export(fresh, None, package)
        report = audit_verify.verify_package(json.loads(package.read_text()),
                                             regulator=audit_verify.Regulator.load(private_path.read_bytes()))
        assert report.ok and report.events >= 1 and report.decrypted == report.events
    finally:
        fresh.close()
