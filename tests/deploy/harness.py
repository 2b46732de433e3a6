"""The deployment harness: a throwaway signing key, a real bundle, and `playbooks/site.yml` run for real
against this machine inside a network namespace that has only loopback (no route anywhere else).

Used by tests/deploy/test_deploy.py and bench/deploy.py. Everything the play installs goes under one
root directory (prefix, home, configuration, backups), so a run leaves the machine as it was apart
from the `healthos` system user; the service runs through the documented `direct` fallback because
containers and CI have no systemd.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
PLAYBOOKS = REPO / "playbooks"
HL7_PORT = 2575


def keygen(directory: Path) -> tuple[Path, Path]:
    private = directory / f"signing-{secrets.token_hex(3)}.pem"
    subprocess.run([str(BIN / "healthos"), "bundle", "keygen", "--out", str(private)], check=True, capture_output=True)
    return private, private.with_name(private.name + ".pub")


def build_bundle(key: Path, out_dir: Path, version: str | None = None) -> tuple[Path, float]:
    started = time.monotonic()
    argv = [sys.executable, str(REPO / "images" / "build.py"), "--key", str(key), "--out", str(out_dir)]
    if version:
        argv += ["--version", version]
    done = subprocess.run(argv, check=True, capture_output=True, text=True)
    return Path(json.loads(done.stdout.strip().splitlines()[-1])["bundle"]), time.monotonic() - started


@dataclass
class Site:
    """One appliance host: a root directory for everything the play writes, and a network namespace."""

    root: Path
    public_key: Path
    netns: str = field(default_factory=lambda: f"healthos-{secrets.token_hex(3)}")
    https_port: int = 8443
    redirect_port: int = 8080

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)  # the appliance's user must traverse it
        subprocess.run(["ip", "netns", "add", self.netns], check=True, capture_output=True)
        subprocess.run(["ip", "-n", self.netns, "link", "set", "lo", "up"], check=True, capture_output=True)
        (self.root / "hosts.yml").write_text("healthos:\n  hosts:\n    localhost:\n")

    @property
    def prefix(self) -> Path:
        return self.root / "opt"

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def config(self) -> Path:
        return self.root / "etc"

    def variables(self, bundle: Path) -> dict:
        return {
            "ansible_connection": "local", "ansible_python_interpreter": sys.executable,
            "bundle_file": str(bundle), "bundle_public_key_file": str(self.public_key),
            "bundle_store_dir": str(self.root / "bundles"), "bundle_releases_dir": str(self.prefix / "releases"),
            "appliance_prefix": str(self.prefix), "appliance_home": str(self.home),
            "appliance_config_dir": str(self.config), "appliance_service_manager": "direct",
            "appliance_example_tenants": True, "appliance_listen_address": "127.0.0.1",
            "appliance_https_port": self.https_port, "appliance_http_redirect_port": self.redirect_port,
            "appliance_workers": 2, "appliance_ready_timeout": 120,
            "backup_dir": str(self.root / "backups"), "backup_cron_file": str(self.root / "cron-healthos-backup"),
            "hl7_feeds": [{"name": "registration", "tenant": "lakeshore_district", "port": HL7_PORT,
                           "permissions": ["clinical.patient.search", "clinical.patient.read",
                                           "clinical.patient.create", "clinical.encounter.create"]}],
        }

    def inside(self, argv: list[str], **kwargs) -> subprocess.CompletedProcess:
        """Run a command in the namespace (loopback only)."""
        return subprocess.run(["ip", "netns", "exec", self.netns, *argv], capture_output=True, text=True,
                              check=False, **kwargs)

    def play(self, bundle: Path, *extra: str) -> tuple[subprocess.CompletedProcess, float]:
        variables = self.root / "vars.json"
        variables.write_text(json.dumps(self.variables(bundle)))
        env = {**os.environ, "ANSIBLE_CONFIG": str(PLAYBOOKS / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1",
               "ANSIBLE_LOCAL_TEMP": str(self.root / ".ansible-tmp"), "ANSIBLE_HOME": str(self.root / ".ansible")}
        started = time.monotonic()
        done = self.inside([str(BIN / "ansible-playbook"), "-i", str(self.root / "hosts.yml"),
                            "-e", f"@{variables}", str(PLAYBOOKS / "site.yml"), *extra], cwd=PLAYBOOKS, env=env,
                           timeout=1200)
        return done, time.monotonic() - started

    def healthos(self, *argv: str) -> subprocess.CompletedProcess:
        return self.inside([str(self.prefix / "bin" / "healthos"), "--log-format", "console", *argv], timeout=600)

    def ready(self) -> tuple[int, str]:
        """GET /ready over HTTPS, trusting only the local CA the play made."""
        script = ("import ssl, sys, urllib.request, urllib.error\n"
                  "ctx = ssl.create_default_context(cafile=sys.argv[1])\n"
                  "try:\n"
                  "    r = urllib.request.urlopen(sys.argv[2], context=ctx, timeout=10)\n"
                  "    print(r.status, r.read().decode())\n"
                  "except urllib.error.HTTPError as e:\n"
                  "    print(e.code, e.read().decode())\n")
        done = self.inside([sys.executable, "-c", script, str(self.config / "tls" / "ca.crt"),
                            f"https://localhost:{self.https_port}/ready"])
        status, _, body = done.stdout.strip().partition(" ")
        return (int(status) if status.isdigit() else -1), body or done.stderr

    def wait_ready(self, timeout: float = 120) -> float:
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.ready()[0] == 200:
                return time.monotonic() - started
            time.sleep(1)
        raise TimeoutError(f"/ready did not answer 200 within {timeout} s: {self.ready()}")

    def service(self, action: str) -> subprocess.CompletedProcess:
        return self.inside([str(self.prefix / "bin" / "healthos-service"), action], timeout=180)

    def close(self) -> None:
        if (self.prefix / "bin" / "healthos-service").exists():
            self.service("stop")
        subprocess.run(["ip", "netns", "del", self.netns], check=False, capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)


def recap(output: str) -> dict[str, int]:
    """The PLAY RECAP counters of localhost."""
    match = re.search(r"^localhost\s*:\s*(.*)$", output, re.M)
    assert match, output[-3000:]
    return {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", match.group(1))}


def add_tenants(site: Site, count: int) -> None:
    """More facility files (copies of a demo one under new slugs), applied at the next start."""
    template = (site.config / "tenants" / "hillview_hc.toml").read_text()
    for index in range(count):
        slug = f"upgrade_{index:02d}"
        # Each its own DHIS2 organisation unit: two facilities under one are refused at start (tenancy.py).
        text = template.replace('slug = "hillview_hc"', f'slug = "{slug}"').replace(
            'name = "Hillview Health Centre"', f'name = "Upgrade facility {index}"', 1).replace(
            'dhis2_org_unit = "KE-HLV-HC"', f'dhis2_org_unit = "KE-UPG-{index:02d}"', 1)
        path = site.config / "tenants" / f"{slug}.toml"
        path.write_text(text)
        shutil.chown(path, "root", "healthos")
        path.chmod(0o640)


def flip_byte(source: Path, target: Path, offset: int) -> Path:
    data = bytearray(source.read_bytes())
    data[offset] ^= 0x01
    target.write_bytes(bytes(data))
    return target
