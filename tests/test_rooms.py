"""House rules that keep the tree honest: room dependencies, the README's room map, lint."""

import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

BIN = Path(sys.executable).parent


def test_room_dependencies_hold():
    """import-linter contracts in pyproject.toml: rooms depend downwards, layers never on each other,
    only the substrate imports cryptography."""
    result = subprocess.run([str(BIN / "lint-imports"), "--no-cache"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def room_map() -> list[str]:
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Map of the rooms", 1)[1].split("\n## ", 1)[0]
    block = section.split("```", 2)[1]
    return [m.group(1).rstrip("/") for m in re.finditer(r"^\s*([A-Za-z_.][\w./-]*/?)\s{2,}", block, re.M)]


def test_readme_room_map_matches_the_tree():
    mapped = room_map()
    assert mapped, "README has no room map"
    for entry in mapped:
        assert (REPO / entry).exists(), f"README maps {entry}, which is not in the tree"
    rooms = {f"appliance/{p.name}" for p in (REPO / "appliance").iterdir() if p.is_dir() and p.name != "__pycache__"}
    rooms |= {f"appliance/layers/{p.name}" for p in (REPO / "appliance/layers").iterdir()
              if p.is_dir() and p.name != "__pycache__"}
    not_rooms = {"appliance", "var", "dist", "build", "test-artifacts"}  # appliance/ is mapped room by room
    rooms |= {p.name for p in REPO.iterdir() if p.is_dir() and not p.name.startswith(".")
              and p.name not in not_rooms and not p.name.endswith(".egg-info")}
    missing = sorted(rooms - set(mapped))
    assert not missing, f"rooms in the tree that the README's map does not name: {missing}"


def test_ruff_is_clean():
    result = subprocess.run([str(BIN / "ruff"), "check", "--no-cache", "."], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout
