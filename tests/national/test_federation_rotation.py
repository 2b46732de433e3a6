"""Federation across a hospital's signing-key rotation: the ministry registered the hospital by its key;
after `rotate-signing-key` the hospital's packages carry the proof of the rotation (the old key's
checkpoint over the rotation event), and the ministry accepts the new key by the offline verifier's rule,
records it for that hospital and needs no proof next time — while a thief's key with a made-up or altered
introduction stays refused, with nothing changed.

The hospital rotates its key, so it is an appliance of its own (its own home, keys and embedded cluster,
as in tests/substrate/test_audit_signing_key.py); the ministry is the session's appliance, posted to over
its real HTTP route.
"""

from __future__ import annotations

import base64
import copy
import json
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from litestar.testing import TestClient

from appliance import audit_verify
from appliance.national import federation
from appliance.national import indicators as national
from appliance.substrate import audit, keys
from appliance.substrate.config import Settings
from appliance.substrate.db import Database
from appliance.substrate.migrate import migrate_control
from tests.national.test_federation import _facility
from tests.national.test_indicators import DEFINITIONS_FILE
from tests.test_cli import run  # noqa: F401  (the CLI fixture)

# Months long past, apart from the other federation tests'.
BEFORE, FORGED, AFTER, NEXT = (national.Period(2003, month) for month in (1, 2, 3, 4))
JSON = {"content-type": "application/json"}
NAME = f"Rotating County Hospital {secrets.token_hex(2)}"


@pytest.fixture(scope="module")
def definitions() -> national.Definitions:
    return national.load_definitions(DEFINITIONS_FILE)


@pytest.fixture(scope="module")
def client(app) -> Iterator[TestClient]:
    with TestClient(app=app, raise_server_exceptions=False) as test_client:
        yield test_client


def _posted(client: TestClient, package: dict):
    return client.post(federation.PACKAGES_PATH, content=json.dumps(package).encode(), headers=JSON)


def _package(definitions, keyring: keys.Keyring, month: national.Period, key_proof: dict | None = None) -> dict:
    org_unit = f"KE-ROT-{secrets.token_hex(3)}"
    return federation.make_package([_facility(definitions, org_unit, f"Rotating {month.value}")], month, definitions,
                                   keyring, key_proof=key_proof)


@pytest.fixture(scope="module")
def hospital(db, client, definitions):
    """The hospital's appliance, registered at the ministry by its first key, which signed its package for
    BEFORE; then it rotates its key."""
    # Outside pytest's root, which any pytest starting meanwhile makes 0700 again, locking the cluster's
    # system user out of its data directory (it could not be stopped).
    home = Path(tempfile.mkdtemp(prefix="healthos-rotating-hospital-", dir="/tmp"))
    own = Database.open(Settings.from_env({"HEALTHOS_HOME": str(home)}))
    keyring = keys.bind(own, keys.Keyring(home))
    try:
        migrate_control(own)
        old_key = keyring.signing_key_id
        old_private = keyring.signing_key()  # kept by the test alone, to play a thief of the rotated-out key
        federation.register_peer(db, NAME, keyring.public_key_pem())
        assert federation.key_proof(own) == {}  # not rotated: its package is as it always was
        sent = _posted(client, _package(definitions, keyring, BEFORE))
        assert sent.status_code == 201, sent.text
        rotation = audit.rotate_signing_key(own)
        assert rotation.old_key == old_key
        yield {"db": own, "keyring": keyring, "rotation": rotation, "old_private": old_private}
    finally:
        own.close()
        shutil.rmtree(home, ignore_errors=True)


class _StolenKey:
    """Signs as `make_package` asks a keyring to, with a private key taken from the hospital."""

    def __init__(self, private):
        self.sign = private.sign
        self._raw = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)

    def public_key_raw(self) -> bytes:
        return self._raw


def _registered(db) -> dict[str, str]:
    return {peer.name: peer.key_id for peer in federation.peers(db)}


def _rekeys(db) -> int:
    return len(audit.read_events(db, None, event_type="national.peer.rekey"))


# Runs before the accepted rotation below: these forgeries lean on the ministry still holding the first key.
def test_a_thiefs_key_with_a_made_up_or_altered_introduction_is_refused(db, client, definitions, hospital,
                                                                       tmp_path):
    rotation = hospital["rotation"]
    thief = keys.Keyring(tmp_path / "thief")
    thief_key = thief.signing_key_id
    genuine = federation.key_proof(hospital["db"])
    introduction = genuine["key_introductions"][-1]
    assert f"type=audit.signing_key.rotate:{rotation.new_key}\n" in introduction["header"]

    def naming_the_thief(checkpoint_key: str | None = None) -> dict:
        proof = copy.deepcopy(genuine)
        item = proof["key_introductions"][-1]
        item["header"] = item["header"].replace(rotation.new_key, thief_key)
        proof["public_keys"][thief_key] = base64.b64encode(thief.public_key_raw()).decode()
        if checkpoint_key is not None:  # the thief's own signature over the checkpoint, under a key id it picks
            checkpoint = audit_verify.Checkpoint.from_json(item["checkpoint"])
            item["checkpoint"]["key"] = checkpoint_key
            item["checkpoint"]["signature"] = base64.b64encode(thief.sign(checkpoint.statement())).decode()
        return proof

    refusals = {
        # the hospital's own rotation event, altered to name the thief's key
        "altered": (naming_the_thief(), f"is not in the checkpoint at size {rotation.checkpoint_size} it names "
                                        "(altered or moved)"),
        # a rotation under a checkpoint the thief signed with its own key
        "own checkpoint": (naming_the_thief(thief_key), f"signed by key {thief_key}, which no registered "
                                                        "appliance holds"),
        # ... or signed by the thief while claiming to be the hospital's registered key
        "claimed checkpoint": (naming_the_thief(rotation.old_key), f"is under a checkpoint signed by key "
                                                                   f"{rotation.old_key}, which is not a trusted key"),
        # no proof at all
        "none": ({}, "which is not registered here; register the sending appliance first"),
    }
    for case, (proof, reason) in refusals.items():
        refused = _posted(client, _package(definitions, thief, FORGED, proof))
        assert refused.status_code == 403, (case, refused.text)
        detail = refused.json()["detail"]
        assert f"signed by key {thief_key}, which is not registered here" in detail, (case, detail)
        assert reason in detail, (case, detail)

    assert _registered(db)[NAME] == rotation.old_key
    assert thief_key not in _registered(db).values()
    assert not federation.received_facilities(db, FORGED, definitions)
    assert not [e for e in audit.read_events(db, None, event_type="national.peer.rekey")
                if e["event"]["detail"]["name"] == NAME]


def test_a_rotated_hospitals_package_is_received_and_its_new_key_recorded(db, client, definitions, hospital,
                                                                         run):  # noqa: F811
    rotation, keyring = hospital["rotation"], hospital["keyring"]
    assert keyring.signing_key_id == rotation.new_key
    before = _rekeys(db)

    without_proof = _posted(client, _package(definitions, keyring, AFTER))
    assert without_proof.status_code == 403
    assert f"signed by key {rotation.new_key}, which is not registered here" in without_proof.json()["detail"]

    sent = _posted(client, _package(definitions, keyring, AFTER, federation.key_proof(hospital["db"])))
    assert sent.status_code == 201, sent.text
    assert sent.json()["appliance"] == NAME

    assert _registered(db)[NAME] == rotation.new_key
    assert rotation.old_key not in _registered(db).values()
    # The month the first key signed is still the hospital's, now under its new key.
    assert {f.source for f in federation.received_facilities(db, BEFORE, definitions)} == {NAME}
    assert {f.source for f in federation.received_facilities(db, AFTER, definitions)} == {NAME}
    assert _rekeys(db) == before + 1
    event = audit.read_events(db, None, event_type="national.peer.rekey")[-1]["event"]
    assert event["detail"] == {"name": NAME, "old_key": rotation.old_key, "new_key": rotation.new_key,
                               "via": "https from testclient", "seq": rotation.seq,
                               "keys": [rotation.old_key, rotation.new_key]}

    # The next package needs no proof; a proof sent again changes nothing.
    assert _posted(client, _package(definitions, keyring, NEXT)).status_code == 201
    assert _rekeys(db) == before + 1

    # The key rotated out, stolen, is no longer the hospital's: nothing it signs is accepted.
    stolen = _posted(client, _package(definitions, _StolenKey(hospital["old_private"]), NEXT))
    assert stolen.status_code == 403
    assert f"signed by key {rotation.old_key}, which is not registered here" in stolen.json()["detail"]
    assert _registered(db)[NAME] == rotation.new_key

    listed = run("national", "peer", "list", "--period", NEXT.value)
    assert listed.exit_code == 0, listed.output
    lines = [line for line in listed.output.splitlines() if line.startswith(NAME)]
    assert lines[0].startswith(f"{NAME}\t{rotation.new_key}\t{NEXT.value}: 1 facility")
    assert lines[1].startswith(f"{NAME}\t{rotation.new_key}\tkey rotated: replaced key {rotation.old_key} on ")
    assert f"proven by its rotation (seq {rotation.seq} of its audit log)" in lines[1]
