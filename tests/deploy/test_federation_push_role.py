"""The appliance role's national push on a schedule: with the ministry's address set, a systemd timer and
the oneshot service it starts, which runs `healthos national push` as the appliance with its environment;
with none (the default), no unit at all, so an air-gapped appliance never calls out. The role's tasks run
for real against a directory standing for /etc/systemd/system (this machine runs no systemd to enable
them), and `systemd-analyze verify` reads what they wrote."""

from __future__ import annotations

import configparser
import json
import os
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from appliance.cli import main
from tests.deploy.harness import BIN, PLAYBOOKS, recap

ROLE = PLAYBOOKS / "roles" / "appliance"
MINISTRY = "https://moh.example.org"
UNITS = ("healthos-national-push.service", "healthos-national-push.timer")


def _play(root: Path, **variables) -> subprocess.CompletedProcess:
    """The role's federation tasks, and the appliance's own unit beside them (the push requires it)."""
    for directory in ("systemd", "etc/tls", "home"):
        (root / directory).mkdir(parents=True, exist_ok=True)
    (root / "opt" / "current").mkdir(parents=True, exist_ok=True)
    if not (root / "opt" / "current" / "venv").exists():  # the release the units run: this checkout's
        (root / "opt" / "current" / "venv").symlink_to(BIN.parent)
    playbook = root / "push-schedule.yml"
    playbook.write_text(json.dumps([{"hosts": "localhost", "gather_facts": False, "tasks": [
        {"name": "The appliance role's national push tasks", "ansible.builtin.include_role": {
            "name": str(ROLE), "tasks_from": "federation", "public": True}},
        {"name": "The appliance's unit", "ansible.builtin.template": {
            "src": str(ROLE / "templates" / "healthos.service.j2"),
            "dest": "{{ appliance_systemd_dir }}/healthos.service", "mode": "0644"}},
    ]}]))
    (root / "vars.json").write_text(json.dumps({
        "ansible_connection": "local", "ansible_python_interpreter": str(BIN / "python"),
        "appliance_systemd_dir": str(root / "systemd"), "appliance_config_dir": str(root / "etc"),
        "appliance_prefix": str(root / "opt"), "appliance_home": str(root / "home"), "appliance_group": "root",
        "appliance_tenants_dir": str(root / "etc" / "tenants"), **variables}))
    env = {**os.environ, "ANSIBLE_CONFIG": str(PLAYBOOKS / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1",
           "ANSIBLE_LOCAL_TEMP": str(root / ".tmp"), "ANSIBLE_HOME": str(root / ".ansible")}
    return subprocess.run([str(BIN / "ansible-playbook"), "-i", "localhost,", "-e", f"@{root / 'vars.json'}",
                           str(playbook)], capture_output=True, text=True, env=env, cwd=PLAYBOOKS, timeout=300)


def _unit(path: Path) -> configparser.ConfigParser:
    unit = configparser.ConfigParser(strict=False, interpolation=None, comment_prefixes=("#",))
    unit.optionxform = str  # systemd's keys are case-sensitive
    unit.read_string(path.read_text())
    return unit


def test_a_ministry_address_installs_a_timer_running_the_push_as_the_appliance(tmp_path):
    ca_file = tmp_path / "ministry-ca.crt"
    ca_file.write_text("-----BEGIN CERTIFICATE-----\n(the ministry's CA)\n-----END CERTIFICATE-----\n")
    configured = {"appliance_federation_push_to": MINISTRY, "appliance_federation_push_ca_file": str(ca_file)}

    done = _play(tmp_path, **configured)

    assert done.returncode == 0, done.stdout[-4000:]
    systemd, etc = tmp_path / "systemd", tmp_path / "etc"
    timer = _unit(systemd / "healthos-national-push.timer")
    assert dict(timer["Timer"]) == {"OnCalendar": "*-*-* 02:30:00", "RandomizedDelaySec": "30min",
                                    "Persistent": "true", "Unit": "healthos-national-push.service"}
    assert timer["Install"]["WantedBy"] == "timers.target"
    service = _unit(systemd / "healthos-national-push.service")
    assert service["Unit"]["Requisite"] == "healthos.service"  # never starts the appliance (or its database)
    assert {key: service["Service"][key] for key in ("Type", "User", "Group", "EnvironmentFile")} == {
        "Type": "oneshot", "User": "healthos", "Group": "root", "EnvironmentFile": f"{etc}/healthos.env"}
    argv = shlex.split(service["Service"]["ExecStart"])
    assert argv == [f"{tmp_path}/opt/current/venv/bin/healthos", "national", "push", "--wait", "300",
                    "--to", MINISTRY, "--ca-file", f"{etc}/tls/ministry-ca.crt"]
    assert (etc / "tls" / "ministry-ca.crt").read_text() == ca_file.read_text()
    # The CLI takes those options as written (the CA file among them must exist).
    push = main.commands["national"].commands["push"]
    assert push.make_context("push", argv[3:]).params["address"] == MINISTRY
    if shutil.which("systemd-analyze"):
        verified = subprocess.run(["systemd-analyze", "verify", "--man=no", *(str(systemd / u) for u in UNITS)],
                                  capture_output=True, text=True, timeout=60)
        assert verified.returncode == 0 and not verified.stderr.strip(), verified.stderr

    again = _play(tmp_path, **configured)
    assert again.returncode == 0 and recap(again.stdout)["changed"] == 0, again.stdout[-4000:]


def test_without_a_ministry_address_no_unit_is_installed(tmp_path):
    done = _play(tmp_path)
    assert done.returncode == 0, done.stdout[-4000:]
    assert sorted(path.name for path in (tmp_path / "systemd").iterdir()) == ["healthos.service"]
    assert not (tmp_path / "etc" / "tls" / "ministry-ca.crt").exists()


@pytest.mark.parametrize(("variables", "named"), [
    ({"appliance_federation_push_to": "http://moh.example.org"}, "it must be the ministry appliance's https://"),
    ({"appliance_federation_push_to": MINISTRY, "appliance_service_manager": "direct"},
     "is scheduled by a systemd timer, and appliance_service_manager is direct"),
])
def test_a_push_that_could_not_run_stops_the_play_naming_why(tmp_path, variables, named):
    done = _play(tmp_path, **variables)
    assert done.returncode != 0 and named in " ".join(done.stdout.split()), done.stdout[-3000:]
    assert not any(path.name.startswith("healthos-national-push") for path in (tmp_path / "systemd").iterdir())
