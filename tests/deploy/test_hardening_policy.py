"""policies/hardening.toml and the playbooks agree: every control is applied by a task named and tagged
with its id, and every switch it names is a documented role default and in the example inventory."""

from __future__ import annotations

import tomllib

from tests.deploy.harness import PLAYBOOKS, REPO


def controls() -> list[dict]:
    return tomllib.loads((REPO / "policies" / "hardening.toml").read_text())["control"]


def test_every_control_is_a_named_and_tagged_task_in_its_role():
    for control in controls():
        role_dir = PLAYBOOKS / "roles" / control["role"]
        text = "\n".join(p.read_text() for p in role_dir.rglob("*") if p.is_file())
        assert f"{control['id']} |" in text or f"# {control['id']}" in text, control
        assert control["id"] in text


def test_every_switch_is_a_role_default_explained_in_the_example_inventory():
    defaults = "\n".join(p.read_text() for p in (PLAYBOOKS / "roles").glob("*/defaults/main.yml"))
    inventory = (PLAYBOOKS / "inventories" / "example" / "group_vars" / "healthos.yml").read_text()
    for control in controls():
        if control["variable"]:
            assert f"\n{control['variable']}:" in defaults, control
            assert control["variable"] in inventory, control


def test_ids_are_unique_and_well_formed():
    ids = [c["id"] for c in controls()]
    assert len(ids) == len(set(ids))
    assert all(len(i) == 7 and i[3] == "-" and i[:3].isupper() and i[4:].isdigit() for i in ids)
