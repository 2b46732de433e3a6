"""Federation over HTTPS: a hospital's package posted to the ministry's appliance
(`POST /api/national/packages`) is checked by the same `receive_package` as a file carried in — a
registered key's package is received, anything else refused with its reason and nothing kept — and
`healthos national push` sends one over a real TLS connection, verifying the ministry's certificate."""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
import sqlalchemy as sa
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from litestar.testing import TestClient

from appliance.national import federation
from appliance.national import indicators as national
from appliance.substrate import audit, keys
from appliance.substrate.db import Database
from appliance.substrate.embedded import APP_ROLE
from appliance.substrate.migrate import migrate_control
from appliance.substrate.shared_store import SharedStore
from appliance.web.app import create_app
from tests.conftest import served_in_thread
from tests.national.test_federation import _facility, _kept
from tests.national.test_indicators import DEFINITIONS_FILE
from tests.test_cli import _free_port, run  # noqa: F401  (the CLI fixture)

# Months long past and org units of their own, apart from test_federation's.
MONTH = national.Period(2004, 3)
JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def definitions() -> national.Definitions:
    return national.load_definitions(DEFINITIONS_FILE)


@pytest.fixture(scope="module")
def hilltop(db, tmp_path_factory) -> keys.Keyring:
    """Another appliance, registered here: its packages are accepted."""
    keyring = keys.Keyring(tmp_path_factory.mktemp("hilltop-appliance"))
    federation.register_peer(db, "Hilltop Regional Hospital", keyring.public_key_pem())
    return keyring


@pytest.fixture(scope="module")
def client(app) -> Iterator[TestClient]:
    with TestClient(app=app, raise_server_exceptions=False) as test_client:
        yield test_client


def _posted(client: TestClient, package: dict | bytes, headers: dict | None = None):
    body = package if isinstance(package, bytes) else json.dumps(package).encode()
    return client.post(federation.PACKAGES_PATH, content=body, headers=JSON if headers is None else headers)


def test_a_registered_appliances_package_posted_is_received(client, db, definitions, hilltop):
    package = federation.make_package([_facility(definitions, "KE-HLT-001", "Hilltop General")], MONTH, definitions,
                                      hilltop)

    answer = _posted(client, package)

    assert answer.status_code == 201, answer.text
    assert answer.json() == {"appliance": "Hilltop Regional Hospital", "period": MONTH.value, "month": "March 2004",
                             "facilities": 1, "replaced": False, "not_reported": [], "ignored": []}
    received = federation.received_facilities(db, MONTH, definitions)
    assert [(f.org_unit, f.source) for f in received] == [("KE-HLT-001", "Hilltop Regional Hospital")]
    assert national.total(received, "opd_attendance").value == 52
    event = audit.read_events(db, None, event_type="national.package.receive")[-1]["event"]["detail"]
    assert event["peer"] == "Hilltop Regional Hospital" and event["via"] == "https from testclient"


def test_a_posted_package_is_refused_with_its_reason_and_nothing_kept(client, db, definitions, hilltop, tmp_path):
    month = national.Period(2004, 4)
    before = _kept(db)

    stranger = federation.make_package([_facility(definitions, "KE-HLT-010", "X")], month, definitions,
                                       keys.Keyring(tmp_path / "stranger"))
    refused = _posted(client, stranger)
    assert refused.status_code == 403
    assert "which is not registered here; register the sending appliance first" in refused.json()["detail"]

    altered = federation.make_package([_facility(definitions, "KE-HLT-011", "Y")], month, definitions, hilltop)
    altered["facilities"][0]["figures"]["opd_attendance"]["total"] = 9000
    refused = _posted(client, altered)
    assert refused.status_code == 403 and "signature does not verify" in refused.json()["detail"]

    wrong_rule = federation.make_package([_facility(definitions, "KE-HLT-012", "Z")], month,
                                         replace(definitions, threshold=1), hilltop)
    refused = _posted(client, wrong_rule)
    assert refused.status_code == 422 and "disclosure threshold of 1" in refused.json()["detail"]

    assert _posted(client, b"[" * 100_000).json()["detail"].startswith("the file is not a package: not JSON")

    too_big = _posted(client, b" " * (2 * 1024 * 1024 + 1))
    assert too_big.status_code == 413 and "larger than 2 MiB" in too_big.json()["detail"]

    as_form = _posted(client, altered, headers={"content-type": "application/x-www-form-urlencoded"})
    assert as_form.status_code == 415
    assert as_form.json()["detail"] == "a package is sent as application/json, not application/x-www-form-urlencoded"

    assert _kept(db) == before
    assert not [f for f in federation.received_facilities(db, month, definitions)]


def test_a_package_posted_from_another_version_of_the_indicator_list_is_received_and_says_so(client, db, definitions,
                                                                                              hilltop):
    from tests.national.test_federation import ADDED, _previous

    previous = _previous(definitions)
    package = federation.make_package([_facility(previous, "KE-HLT-030", "Hilltop Outreach")],
                                      national.Period(2004, 7), previous, hilltop)

    # The module's client is near the per-client rate limit, which every app over this database counts alike.
    SharedStore(db).delete_all()
    answer = _posted(client, package)

    assert answer.status_code == 201, answer.text
    assert (answer.json()["not_reported"], answer.json()["ignored"]) == (list(ADDED), [])


def test_a_package_clashing_with_what_is_held_is_a_conflict_and_changes_nothing(client, db, definitions, hilltop,
                                                                               tmp_path):
    month = national.Period(2004, 5)
    package = federation.make_package([_facility(definitions, "KE-HLT-020", "Hilltop Annex")], month, definitions,
                                      hilltop)
    assert _posted(client, package).status_code == 201
    before = _kept(db)

    again = _posted(client, package)
    assert again.status_code == 409
    assert "is already here; a package replaces it only if produced later" in again.json()["detail"]

    rival = keys.Keyring(tmp_path / "rival")
    federation.register_peer(db, "Rival District Office", rival.public_key_pem())
    claimed = federation.make_package([_facility(definitions, "KE-HLT-020", "Hilltop Annex")], month, definitions,
                                      rival)
    clash = _posted(client, claimed)
    assert clash.status_code == 409
    assert "was already reported for May 2004 by Hilltop Regional Hospital" in clash.json()["detail"]
    assert _kept(db) == before


def test_package_posts_are_rate_limited_per_client(db, settings):
    SharedStore(db).delete_all()  # the module's posts so far, counted in the database every app shares
    limited = TestClient(app=create_app(db, replace(settings, signin_attempts_per_minute=3)),
                         raise_server_exceptions=False)
    statuses = [_posted(limited, b"{}").status_code for _ in range(4)]
    assert statuses == [422, 422, 422, 429]
    # Counted apart from sign-in: the same client may still try to sign in.
    assert limited.post("/signin", data={"email": "x@test.invalid", "password": "y"}).status_code != 429


# -- healthos national push, over a real TLS connection ----------------------------------------------


def _certificate(subject: str, key, issuer: x509.Certificate | None = None, issuer_key=None) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    now = dt.datetime.now(dt.UTC)
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer.subject if issuer else name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1)))
    if issuer is None:  # a CA
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True).add_extension(
            x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                          data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                          encipher_only=False, decipher_only=False), critical=True)
    else:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
    return builder.sign(issuer_key or key, hashes.SHA256())


def _pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


@dataclass(frozen=True)
class Ministry:
    db: Database
    address: str
    ca_file: Path
    other_ca_file: Path


@pytest.fixture(scope="module")
def ministry(db, settings, tmp_path_factory) -> Iterator[Ministry]:
    """The ministry's appliance: a database of its own (in the session's cluster), a home of its own
    (so its own appliance key), served by uvicorn over TLS with a certificate its own CA signed."""
    if db.cluster is None:
        pytest.skip("needs the embedded cluster to make the ministry's database in")
    home = tmp_path_factory.mktemp("ministry")
    (home / "pg" / "data").mkdir(parents=True)
    # The keyring of a database is found by its socket directory's home (keys._home_of).
    (home / "pg" / "run").symlink_to(db.cluster.socket_dir)
    name = f"ministry_{secrets.token_hex(4)}"
    db.cluster._psql("postgres", f"CREATE DATABASE {name} OWNER {APP_ROLE}")  # the superuser, as bootstrap does
    ministry_db = Database(sa.create_engine(
        db.cluster.url(database=name).replace(str(db.cluster.socket_dir), str(home / "pg" / "run"))))
    migrate_control(ministry_db)

    ca_key, other_key, server_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    ca = _certificate("Ministry of Health CA", ca_key)
    (home / "ca.crt").write_bytes(_pem(ca))
    (home / "other-ca.crt").write_bytes(_pem(_certificate("Someone else's CA", other_key)))
    (home / "server.crt").write_bytes(_pem(_certificate("127.0.0.1", server_key, ca, ca_key)))
    (home / "server.key").write_bytes(server_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))

    port = _free_port()
    app = create_app(ministry_db, replace(settings, home=home, tls=True))
    try:
        with served_in_thread(app, port, "ministry-uvicorn", ssl_certfile=str(home / "server.crt"),
                              ssl_keyfile=str(home / "server.key")):
            yield Ministry(ministry_db, f"https://127.0.0.1:{port}", home / "ca.crt", home / "other-ca.crt")
    finally:
        ministry_db.engine.dispose()
        db.cluster._psql("postgres", f"DROP DATABASE {name} WITH (FORCE)")


def test_push_sends_the_month_over_https_to_the_ministry(run, db, definitions, ministry, tenant_factory):  # noqa: F811
    facility = tenant_factory(name="Pushing Clinic", dhis2_org_unit=f"KE-PSH-{secrets.token_hex(3)}")
    month = national.Period(2004, 5)

    refused = run("national", "push", "--period", month.value, "--to", ministry.address,
                  "--ca-file", str(ministry.ca_file))
    assert refused.exit_code == 1, refused.output
    assert "not sent: " in refused.output and "is not registered here; register the sending appliance first" in \
        refused.output.replace("\n", " ")
    assert "Traceback" not in refused.output
    # Exported, then not sent: the trail says the push failed and why, not that the month went out.
    (exported, push) = _export_then_push(db)
    assert exported["event"]["detail"] == {"period": month.value, "facilities": push["event"]["detail"]["facilities"]}
    assert push["event"]["outcomeDesc"] == "failure"
    assert push["event"]["detail"]["to"] == f"{ministry.address}{federation.PACKAGES_PATH}"
    assert "is not registered here" in push["event"]["detail"]["reason"]

    federation.register_peer(ministry.db, "Lakeside Hospital Appliance", keys.keyring_for(db).public_key_pem())
    sent = run("national", "push", "--period", month.value, "--to", ministry.address + "/",
               "--ca-file", str(ministry.ca_file))

    assert sent.exit_code == 0, sent.output
    assert f"received by {ministry.address}{federation.PACKAGES_PATH} from Lakeside Hospital Appliance, May 2004" \
        in sent.output
    received = federation.received_facilities(ministry.db, month, definitions)
    assert facility.dhis2_org_unit in {f.org_unit for f in received}
    assert {f.source for f in received} == {"Lakeside Hospital Appliance"}
    exported, push = _export_then_push(db)
    assert exported["event"]["detail"] == {"period": month.value, "facilities": len(received)}
    assert push["event"]["outcomeDesc"] == "success"
    assert push["event"]["detail"] == {"period": month.value, "produced_at": push["event"]["detail"]["produced_at"],
                                       "facilities": len(received), "replaced": False,
                                       "to": f"{ministry.address}{federation.PACKAGES_PATH}"}


def _export_then_push(db) -> tuple[dict, dict]:
    """The appliance log's last export event and the push event that follows it (the same run)."""
    exported = audit.read_events(db, None, event_type="national.package.export")[-1]
    (push,) = audit.read_events(db, None, event_type="national.package.push", first_seq=exported["seq"])
    return exported, push


def test_push_refuses_a_certificate_its_ca_did_not_sign_and_plain_http(run, ministry):  # noqa: F811
    untrusted = run("national", "push", "--period", "2004-06", "--to", ministry.address,
                    "--ca-file", str(ministry.other_ca_file))
    assert untrusted.exit_code == 1
    assert "its certificate could not be verified" in untrusted.output and "--ca-file" in untrusted.output
    assert "Traceback" not in untrusted.output
    assert not federation.received_facilities(ministry.db, national.Period(2004, 6),
                                              national.load_definitions(DEFINITIONS_FILE))

    plain = run("national", "push", "--to", ministry.address.replace("https://", "http://"))
    assert plain.exit_code == 1 and "is not an https:// address" in plain.output


def test_push_to_a_ministry_that_cannot_be_reached_fails_saying_so(run, db):  # noqa: F811
    nobody = f"https://127.0.0.1:{_free_port()}"  # nothing listens there

    failed = run("national", "push", "--period", "2004-09", "--to", nobody)

    assert failed.exit_code == 1
    assert (f"error: September 2004: not sent: {nobody}{federation.PACKAGES_PATH} could not be reached (Connection "
            "refused): check the address and the link to it") in " ".join(failed.output.split())
    assert "Traceback" not in failed.output
    exported, push = _export_then_push(db)
    assert exported["event"]["detail"]["period"] == "2004-09" and push["event"]["outcomeDesc"] == "failure"
    assert push["event"]["detail"]["reason"] == (f"{nobody}{federation.PACKAGES_PATH} could not be reached "
                                                 "(Connection refused): check the address and the link to it")


def test_a_month_before_any_facility_recorded_is_not_packaged_nor_sent_and_the_timer_stays_well(
        run, db, ministry, tmp_path):  # noqa: F811
    """A new appliance's monthly timer pushes the month before its facilities moved onto it: the ministry would
    refuse a package of no facility, so none is made. The push says so and succeeds (the timer is not failed for
    it); a package asked for is refused saying why, and no file is written."""
    events_before = len(audit.read_events(db, None, event_type="national.package.push"))

    pushed = run("national", "push", "--period", "1999-06", "--to", ministry.address, "--ca-file",
                 str(ministry.ca_file), "--wait", "5")
    assert pushed.exit_code == 0, pushed.output
    said = " ".join(pushed.output.split())
    assert "June 1999: nothing sent: no facility of this appliance records in June 1999 (the first records from " \
        in said and "so there is nothing to send for that month" in said
    assert len(audit.read_events(db, None, event_type="national.package.push")) == events_before
    assert not federation.received_facilities(ministry.db, national.Period(1999, 6),
                                              national.load_definitions(DEFINITIONS_FILE))

    packaged = run("national", "package", "--period", "1999-06", "--out", str(tmp_path / "june.json"))
    assert packaged.exit_code == 1
    assert "June 1999: no package written: no facility of this appliance records in June 1999" in \
        " ".join(packaged.output.split())
    assert "Traceback" not in packaged.output and not (tmp_path / "june.json").exists()


def test_pushing_a_month_twice_leaves_the_ministry_one_package_of_the_same_figures(run, db, ministry,  # noqa: F811
                                                                                   tenant_factory):
    tenant_factory(name="Twice Sent Clinic", dhis2_org_unit=f"KE-TWC-{secrets.token_hex(3)}")
    with contextlib.suppress(federation.PackageConflict):  # registered already by the push test above
        federation.register_peer(ministry.db, "Lakeside Hospital Appliance", keys.keyring_for(db).public_key_pem())
    month = national.Period(2004, 8)

    def held() -> list:
        with ministry.db.control() as conn:
            return conn.execute(sa.select(federation.national_package)
                                .where(federation.national_package.c.period == month.value)).mappings().all()

    # As the playbook's timer runs it: the running appliance's database, never started by the push.
    first = run("national", "push", "--period", month.value, "--to", ministry.address, "--ca-file",
                str(ministry.ca_file), "--wait", "5")
    assert first.exit_code == 0, first.output
    (sent,) = held()
    again = run("national", "push", "--period", month.value, "--to", ministry.address, "--ca-file",
                str(ministry.ca_file), "--wait", "5")

    assert again.exit_code == 0, again.output
    assert "replacing the earlier package" in again.output
    (kept,) = held()  # one package of the month from this appliance, not two
    assert kept["facilities"] == sent["facilities"] and kept["produced_at"] > sent["produced_at"]
