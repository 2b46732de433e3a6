"""The regulator's offline verifier: it stands alone, verifies whole and partial evidence packages,
proves the log only grew since checkpoints kept earlier, decrypts with the regulator's key, and
catches every corruption of a package thrown at it."""

from __future__ import annotations

import ast
import base64
import copy
import json
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appliance import audit_verify
from appliance.substrate import audit, keys
from tests.conftest import REPO
from tests.substrate.audit_support import fill

# -- it stands alone ------------------------------------------------------------------------------


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            found.add(node.module)
    return found


def test_it_imports_only_the_standard_library_cryptography_and_the_merkle_module():
    stdlib = sys.stdlib_module_names | {"__future__"}
    verifier = _imports(REPO / "appliance" / "audit_verify.py")
    assert {name for name in verifier if name.split(".")[0] not in stdlib} == {
        "cryptography.exceptions", "cryptography.hazmat.primitives",
        "cryptography.hazmat.primitives.asymmetric.ed25519", "cryptography.hazmat.primitives.asymmetric.x25519",
        "cryptography.hazmat.primitives.ciphers.aead", "cryptography.hazmat.primitives.kdf.hkdf",
        "appliance.substrate.merkle"}
    assert all(name.split(".")[0] in stdlib for name in _imports(REPO / "appliance/substrate/merkle.py"))
    for package in ("appliance/__init__.py", "appliance/substrate/__init__.py"):
        assert all(name.split(".")[0] in stdlib for name in _imports(REPO / package))


@pytest.fixture(scope="module")
def evidence(db, tenant_factory, tmp_path_factory) -> dict:
    """A tenant's log (20 events, checkpoints at 5, 12 and 20), exported; the regulator's keys."""
    slug = tenant_factory().slug
    where = tmp_path_factory.mktemp("evidence")
    private, public, _ = keys.generate_regulator_keypair(where / "regulator.pem")
    audit.register_regulator(db, public.read_bytes(), "Inspectorate")
    fill(db, slug, (5, 7))
    middle = datetime.now(UTC)
    fill(db, slug, (8,))
    package = where / "evidence.json"
    audit.export(db, slug, package)
    partial = where / "partial.json"
    audit.export(db, slug, partial, since=middle)
    public_key = where / "appliance.pub"
    public_key.write_bytes(keys.keyring_for(db).public_key_pem())
    held = where / "held.json"
    held.write_text(json.dumps(audit.held_checkpoints(db, slug)))
    return {"slug": slug, "package": package, "partial": partial, "regulator": private, "public_key": public_key,
            "held": held, "dir": where}


def test_a_copy_of_just_its_files_verifies_a_package_on_another_machine(evidence, tmp_path: Path):
    for relative in ("appliance/__init__.py", "appliance/audit_verify.py", "appliance/substrate/__init__.py",
                     "appliance/substrate/merkle.py"):
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / relative, tmp_path / relative)
    shutil.copy(evidence["package"], tmp_path / "evidence.json")
    probe = ("import sys, runpy; sys.argv = ['audit_verify', 'evidence.json']; "
             "code = 0\ntry:\n    runpy.run_module('appliance.audit_verify', run_name='__main__')\n"
             "except SystemExit as exit:\n    code = exit.code\n"
             "import appliance; print('FROM', appliance.__file__)\n"
             "mods = sorted(m for m in sys.modules if m.split('.')[0] not in sys.stdlib_module_names)\n"
             "print('MODULES', ' '.join(mods)); sys.exit(code)")
    # No site (-S): the appliance's installed copy is out of reach; cryptography's directory is on the path,
    # as it would be on the regulator's machine.
    import cryptography

    path = f"{tmp_path}:{Path(cryptography.__file__).parents[1]}"
    result = subprocess.run([sys.executable, "-S", "-c", probe], cwd=tmp_path, capture_output=True, text=True,
                            timeout=60, env={"PYTHONPATH": path, "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK log" in result.stdout
    assert result.stdout.split("FROM", 1)[1].split()[0] == str(tmp_path / "appliance" / "__init__.py")
    modules = result.stdout.split("MODULES", 1)[1].split()
    assert {m.split(".")[0] for m in modules} - {"__main__"} <= {"appliance", "cryptography", "_cffi_backend",
                                                                  "_openssl", "typing_extensions"}
    # (run as __main__, the verifier itself is not listed under its module name)
    assert {m for m in modules if m.startswith("appliance")} == {
        "appliance", "appliance.substrate", "appliance.substrate.merkle"}


# -- verifying ------------------------------------------------------------------------------------


def load(path: Path) -> dict:
    return json.loads(path.read_text())


def pinned(evidence):
    return audit_verify.load_public_key(evidence["public_key"].read_bytes())


def test_a_whole_log_verifies_and_decrypts_with_the_regulators_key(evidence, capsys):
    out = evidence["dir"] / "decrypted.jsonl"
    code = audit_verify.main([str(evidence["package"]), "--public-key", str(evidence["public_key"]),
                              "--regulator-key", str(evidence["regulator"]), "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "OK log" in printed and "20 events, 3 checkpoints" in printed and "decrypted 20 of 20" in printed
    events = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(events) == 20 and events[0]["event"]["resourceType"] == "AuditEvent"
    assert events[0]["header"]["tenant"] == evidence["slug"]


def test_an_evidence_package_is_written_for_its_owner_only(evidence):
    """As a backup is: its headers say when what kind of act was done to which pseudonymous patient."""
    assert evidence["package"].stat().st_mode & 0o777 == 0o600
    assert evidence["partial"].stat().st_mode & 0o777 == 0o600


def test_a_time_window_verifies_by_inclusion_and_consistency_proofs(evidence):
    package = load(evidence["partial"])
    assert not package["range"]["complete"] and package["range"]["first_position"] == 12
    assert all(event["proof"] for event in package["events"]) and package["consistency_proofs"]
    report = audit_verify.verify_package(package, public_key=pinned(evidence),
                                         held=audit_verify.read_held(evidence["held"]))
    assert report.ok, report.problems
    assert report.events == 8 and report.verified_size == 20


def test_a_time_window_says_it_is_part_of_the_log_and_what_a_part_cannot_prove(evidence, capsys):
    assert audit_verify.main([str(evidence["partial"]), "--public-key", str(evidence["public_key"])]) == 0
    printed = capsys.readouterr().out
    assert "this is part of the log" in printed and "positions 12..19 of the 20" in printed, printed
    assert "just outside those positions" in printed
    assert audit_verify.main([str(evidence["package"]), "--public-key", str(evidence["public_key"])]) == 0
    assert "part of the log" not in capsys.readouterr().out


def test_checkpoints_kept_earlier_prove_the_log_only_grew(evidence, db, capsys):
    kept = evidence["dir"] / "kept-now.json"
    assert audit_verify.main([str(evidence["package"]), "--save-checkpoints", str(kept)]) == 0
    fill(db, evidence["slug"], (3,))
    later = evidence["dir"] / "later.json"
    audit.export(db, evidence["slug"], later)
    capsys.readouterr()
    assert audit_verify.main([str(later), "--checkpoints", str(kept), "--public-key",
                              str(evidence["public_key"])]) == 0
    printed = capsys.readouterr().out
    assert "23 events, 4 checkpoints" in printed
    # The run says that the kept checkpoints were checked, not only that the package verifies.
    assert f"the log only grew since the 3 checkpoint(s) kept earlier ({kept})" in printed
    assert "the latest kept at size 20" in printed
    # ...and the older package, shown to a regulator who kept the newer checkpoints, is a rollback.
    newer = evidence["dir"] / "kept-later.json"
    assert audit_verify.main([str(later), "--save-checkpoints", str(newer)]) == 0
    capsys.readouterr()
    assert audit_verify.main([str(evidence["package"]), "--checkpoints", str(newer)]) == 1
    assert "rolled back" in capsys.readouterr().out


def test_a_key_that_is_not_the_appliances_is_not_trusted(evidence, tmp_path: Path, capsys):
    other = keys.Keyring(tmp_path)
    (tmp_path / "other.pub").write_bytes(other.public_key_pem())
    assert audit_verify.main([str(evidence["package"]), "--public-key", str(tmp_path / "other.pub")]) == 1
    assert "not the trusted key" in capsys.readouterr().out


def test_unusable_input_exits_2_with_one_line(tmp_path: Path, capsys):
    (tmp_path / "junk.json").write_text("{not json")
    assert audit_verify.main([str(tmp_path / "junk.json")]) == 2
    assert audit_verify.main([str(tmp_path / "missing.json")]) == 2
    (tmp_path / "other.json").write_text(json.dumps({"format": "something else"}))
    assert audit_verify.main([str(tmp_path / "other.json")]) == 2
    assert "error:" in capsys.readouterr().err


def test_a_kept_checkpoints_file_that_is_not_one_is_named_with_what_it_should_be(evidence, tmp_path: Path, capsys):
    """It was refused with the parser's raw "Expecting value: line 1 column 1", which named neither the file
    nor the file to choose instead."""
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "package.json").write_text(evidence["package"].read_text())
    for wrong in ("notes.txt", "package.json"):
        assert audit_verify.main([str(evidence["package"]), "--checkpoints", str(tmp_path / wrong)]) == 2
        said = capsys.readouterr().err
        assert f"{tmp_path / wrong} is not a file of kept checkpoints" in said and "Expecting value" not in said
        assert "healthos-audit-checkpoints/1" in said and "--save-checkpoints" in said


def test_it_runs_as_a_module(evidence):
    result = subprocess.run([sys.executable, "-m", "appliance.audit_verify", str(evidence["package"]),
                             "--public-key", str(evidence["public_key"])], capture_output=True, text=True, timeout=60,
                            cwd=REPO)
    assert result.returncode == 0 and "OK log" in result.stdout, result.stdout + result.stderr


# -- every corruption of a package is caught ------------------------------------------------------


def _flip_b64(value: str, offset: int) -> str:
    raw = bytearray(base64.b64decode(value))
    raw[offset % len(raw)] ^= 0x01
    return base64.b64encode(bytes(raw)).decode()


def _flip_hex(value: str, offset: int) -> str:
    raw = bytearray(bytes.fromhex(value))
    raw[offset % len(raw)] ^= 0x01
    return raw.hex()


def _set(package: dict, path: tuple, change) -> dict:
    changed = copy.deepcopy(package)
    target = changed
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = change(target[path[-1]])
    return changed


def mutations(package: dict):
    """Corruptions of an evidence package, each one a real change to what it claims."""
    n_events, n_checkpoints = len(package["events"]), len(package["checkpoints"])
    event = st.integers(0, n_events - 1)
    offset = st.integers(0, 4096)

    def header_change(index: int, at: int) -> dict:
        def change(header: str) -> str:
            cut = 23 + at % (len(header) - 24)  # somewhere after the format line, never the final LF
            replacement = "0" if header[cut] != "0" else "1"
            return header[:cut] + replacement + header[cut + 1:]
        return _set(package, ("events", index, "header"), change)

    def drop_events(indices: list[int]) -> dict:
        changed = copy.deepcopy(package)
        changed["events"] = [e for i, e in enumerate(changed["events"]) if i not in set(indices)]
        return changed

    def insert_copy(index: int, at: int) -> dict:
        changed = copy.deepcopy(package)
        changed["events"].insert(at, copy.deepcopy(changed["events"][index]))
        return changed

    def swap(pair: list[int], keep_positions: bool) -> dict:
        changed = copy.deepcopy(package)
        a, b = pair
        events = changed["events"]
        events[a], events[b] = events[b], events[a]
        if keep_positions:  # the positions stay in order; the events under them are exchanged
            events[a]["position"], events[b]["position"] = events[b]["position"], events[a]["position"]
        return changed

    def drop_checkpoints(k: int, with_events: bool) -> dict:
        changed = copy.deepcopy(package)
        changed["checkpoints"] = changed["checkpoints"][:-k]
        if with_events:
            size = changed["checkpoints"][-1]["size"] if changed["checkpoints"] else 0
            changed["events"] = changed["events"][:size]
        return changed

    return st.one_of(
        st.builds(lambda i, o, field: _set(package, ("events", i, field), lambda v: _flip_b64(v, o)),
                  event, offset, st.sampled_from(["body", "nonce"])),
        st.builds(header_change, event, offset),
        st.builds(lambda i, o: _set(package, ("events", i, "hash"), lambda v: _flip_hex(v, o)), event, offset),
        st.builds(lambda i, o: _set(package, ("checkpoints", i, "signature"), lambda v: _flip_b64(v, o)),
                  st.integers(0, n_checkpoints - 1), offset),
        st.builds(lambda i, o: _set(package, ("checkpoints", i, "root"), lambda v: _flip_hex(v, o)),
                  st.integers(0, n_checkpoints - 1), offset),
        st.builds(lambda i, d: _set(package, ("checkpoints", i, "size"), lambda v: v + d),
                  st.integers(0, n_checkpoints - 1), st.sampled_from([-2, -1, 1, 2])),
        st.builds(lambda i: _set(package, ("checkpoints", i, "time"), lambda v: v.replace("Z", "1Z")),
                  st.integers(0, n_checkpoints - 1)),
        st.builds(drop_events, st.lists(event, min_size=1, max_size=3)),
        st.builds(insert_copy, event, st.integers(0, n_events)),
        st.builds(swap, st.lists(event, min_size=2, max_size=2, unique=True), st.booleans()),
        st.builds(lambda k: drop_events(list(range(n_events - k, n_events))), st.integers(1, n_events)),
        st.builds(drop_checkpoints, st.integers(1, n_checkpoints), st.booleans()),
        st.builds(lambda i, seq: _set(package, ("events", i, "seq"), lambda v: v + seq), event,
                  st.sampled_from([-1, 1, 100])),
        st.just(_set(package, ("log", "log_id"), lambda v: v + "x")),
        st.just(_set(package, ("log", "tenant"), lambda v: v + "x")),
    )


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_every_random_corruption_of_a_package_is_detected(evidence, data):
    package = load(evidence["package"])
    held = audit_verify.read_held(evidence["held"])
    corrupted = data.draw(mutations(package))
    assert corrupted != package
    report = audit_verify.verify_package(corrupted, public_key=pinned(evidence), held=held)
    assert not report.ok


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_every_random_corruption_of_a_partial_package_is_detected(evidence, data):
    package = load(evidence["partial"])
    held = audit_verify.read_held(evidence["held"])
    corrupted = data.draw(st.one_of(
        mutations(package),
        st.builds(lambda i, o: _set(package, ("events", i, "proof"),
                                    lambda proof: [_flip_hex(h, o) if j == 0 else h for j, h in enumerate(proof)]),
                  st.integers(0, len(package["events"]) - 1), st.integers(0, 31)),
        st.builds(lambda i, o: _set(package, ("consistency_proofs", i, "proof"),
                                    lambda proof: [_flip_hex(proof[0], o), *proof[1:]]),
                  st.integers(0, len(package["consistency_proofs"]) - 1), st.integers(0, 31)),
    ))
    assert corrupted != package
    report = audit_verify.verify_package(corrupted, public_key=pinned(evidence), held=held)
    assert not report.ok


def test_a_moved_body_names_its_sequence_number(evidence):
    package = load(evidence["package"])
    events = package["events"]
    events[3]["body"], events[4]["body"] = events[4]["body"], events[3]["body"]
    report = audit_verify.verify_package(package, public_key=pinned(evidence))
    assert [p.seq for p in report.problems[:2]] == [events[3]["seq"], events[4]["seq"]]
    assert report.first_problem.kind == "hash"


# -- what it names: the tampering itself, not its echoes -------------------------------------------


def test_two_events_swapped_in_a_partial_package_are_named_as_reordered_not_deleted(evidence):
    package = load(evidence["partial"])
    events = package["events"]
    events[2], events[3] = events[3], events[2]  # each keeps its position and proof: only the order changed
    report = audit_verify.verify_package(package, public_key=pinned(evidence))
    assert [(p.kind, p.seq, p.position) for p in report.problems] == [
        ("order", events[3]["seq"], events[3]["position"])], report.problems
    assert f"comes after position {events[2]['position']}" in report.first_problem.message


def test_an_event_deleted_from_a_partial_package_is_named_by_its_sequence_number(evidence):
    package = load(evidence["partial"])
    deleted = package["events"].pop(3)
    report = audit_verify.verify_package(package, public_key=pinned(evidence))
    assert [(p.kind, p.seq, p.position) for p in report.problems] == [
        ("gap", deleted["seq"], deleted["position"])], report.problems


def test_a_forged_checkpoint_of_a_partial_package_is_named_not_every_event_it_covers(evidence):
    package = _set(load(evidence["partial"]), ("checkpoints", -1, "root"), lambda root: _flip_hex(root, 3))
    report = audit_verify.verify_package(package, public_key=pinned(evidence))
    assert [p.kind for p in report.problems] == ["signature", "signature"], report.problems
    assert "checkpoint at size 20 is not valid" in report.first_problem.message


def test_an_event_deleted_from_a_whole_log_is_named_once_not_also_as_a_truncation(evidence):
    package = load(evidence["package"])
    deleted = package["events"].pop(7)
    report = audit_verify.verify_package(package, public_key=pinned(evidence))
    assert [(p.kind, p.seq, p.position) for p in report.problems] == [
        ("gap", deleted["seq"], deleted["position"])], report.problems


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 300), st.lists(st.integers(1, 80), min_size=1, max_size=8))
def test_a_run_at_a_time_builds_the_same_tree_as_a_leaf_at_a_time(total, cuts):
    from appliance.substrate import merkle

    leaves = [merkle.leaf_hash(n.to_bytes(4, "big")) for n in range(total)]
    one_by_one, by_runs = merkle.MerkleAccumulator(), audit_verify.RunAccumulator()
    start = 0
    for cut in [*cuts, total]:
        run = leaves[start:start + cut]
        for leaf in run:
            one_by_one.append(leaf)
        by_runs.extend_run(run)
        assert by_runs.size == one_by_one.size and by_runs.root() == one_by_one.root()
        assert by_runs.right_edge == one_by_one.right_edge
        start += cut
        if start >= total:
            break


def test_a_period_cut_short_at_either_edge_is_caught(evidence, db, tmp_path: Path):
    """A period's package proves that the events just outside its positions were recorded outside the period:
    leaving out its first event (and moving first_position up) fails whether the edge is dropped or the left-out
    event poses as the edge, and so does leaving out the last event of a period that ends before the log does."""
    key = pinned(evidence)
    whole = load(evidence["partial"])
    assert [(edge["side"], edge["position"]) for edge in whole["edges"]] == [("before", 11)]
    assert audit_verify.verify_package(whole, public_key=key).ok

    def cut_first(package: dict) -> dict:
        left_out = package["events"].pop(0)
        package["range"]["first_position"] = left_out["position"] + 1
        return left_out

    dropped = load(evidence["partial"])
    cut_first(dropped)
    report = audit_verify.verify_package(dropped, public_key=key)
    assert [(p.kind, p.position) for p in report.problems] == [("edge", 12)], report.problems
    assert "an event of the period may have been left out" in report.first_problem.message
    posing = load(evidence["partial"])
    posing["edges"] = [{"side": "before", **cut_first(posing)}]  # its proof is good: only its time betrays it
    report = audit_verify.verify_package(posing, public_key=key)
    assert [(p.kind, p.position) for p in report.problems] == [("edge", 12)], report.problems
    assert "within the period: it was left out of the package" in report.first_problem.message
    bare = load(evidence["partial"])
    del bare["edges"]
    assert [p.kind for p in audit_verify.verify_package(bare, public_key=key).problems] == ["edge"]

    until = tmp_path / "until.json"
    audit.export(db, evidence["slug"], until, until=datetime.fromisoformat(whole["range"]["since"]))
    early = load(until)
    assert (early["range"]["first_position"], early["range"]["last_position"]) == (0, 11)
    assert [(edge["side"], edge["position"]) for edge in early["edges"]] == [("after", 12)]
    assert audit_verify.verify_package(early, public_key=key).ok
    early["events"].pop()
    early["range"]["last_position"] = 10
    report = audit_verify.verify_package(early, public_key=key)
    assert [(p.kind, p.position) for p in report.problems] == [("edge", 11)], report.problems
