"""The hl7 role refuses feeds it could not run — two with one port, a feed without its permissions —
before it touches the host: the play stops at its first task, naming the problem."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from tests.deploy.harness import BIN, PLAYBOOKS


def _play(tmp_path, feeds: list[dict]) -> subprocess.CompletedProcess:
    playbook = tmp_path / "hl7-only.yml"
    role = PLAYBOOKS / "roles" / "hl7"
    playbook.write_text(f"- hosts: localhost\n  gather_facts: false\n  roles:\n    - role: {role}\n")
    variables = tmp_path / "vars.json"
    variables.write_text(json.dumps({
        "ansible_connection": "local", "ansible_python_interpreter": str(BIN / "python"),
        "appliance_config_dir": str(tmp_path / "etc"), "appliance_prefix": str(tmp_path / "opt"),
        "appliance_group": "root", "appliance_service_manager": "direct", "hl7_feeds": feeds}))
    env = {**os.environ, "ANSIBLE_CONFIG": str(PLAYBOOKS / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1",
           "ANSIBLE_LOCAL_TEMP": str(tmp_path / ".tmp"), "ANSIBLE_HOME": str(tmp_path / ".ansible")}
    return subprocess.run([str(BIN / "ansible-playbook"), "-i", "localhost,", "-e", f"@{variables}", str(playbook)],
                          capture_output=True, text=True, env=env, cwd=PLAYBOOKS, timeout=300)


LAB = {"name": "lab", "tenant": "hillview_hc", "port": 2575, "permissions": ["clinical.result.create"]}


@pytest.mark.parametrize(("feeds", "named"), [
    ([LAB, {**LAB, "name": "registration"}], "each feed needs its own name and its own port"),
    ([LAB, {**LAB, "port": 2576}], "each feed needs its own name and its own port"),
    ([{**LAB, "permissions": []}], "each of hl7_feeds needs name"),
    ([{**LAB, "name": "lab feed"}], "each of hl7_feeds needs name"),
])
def test_feeds_that_cannot_run_stop_the_play_before_it_touches_the_host(tmp_path, feeds, named):
    done = _play(tmp_path, feeds)
    assert done.returncode != 0 and named in done.stdout, done.stdout[-3000:]
    assert not (tmp_path / "etc").exists() and not (tmp_path / "opt").exists()
