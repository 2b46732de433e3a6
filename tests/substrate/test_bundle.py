"""The bundle format: what the builder writes, both checkers (the appliance's, with `cryptography`, and
the playbook's module, with the standard library and `openssl`) accept, and any single changed byte,
foreign key, missing signature, extra or missing file, or link is refused by both."""

from __future__ import annotations

import importlib.util
import io
import json
import random
import tarfile
from pathlib import Path

import pytest

from appliance.substrate import bundle

REPO = Path(__file__).resolve().parents[2]


def _module():
    spec = importlib.util.spec_from_file_location("healthos_bundle_module",
                                                  REPO / "playbooks" / "library" / "healthos_bundle.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


playbook_module = _module()
playbook_check = playbook_module.check


@pytest.fixture
def signed(tmp_path):
    private, public, key_id = bundle.generate_signing_key(tmp_path / "keys" / "signing.pem")
    (tmp_path / "a.txt").write_text("hello\n")
    (tmp_path / "b.bin").write_bytes(bytes(range(256)) * 9)
    path = bundle.write_bundle(tmp_path / "x.tar", "healthos-appliance-9.9.9-test",
                               {"a.txt": tmp_path / "a.txt", "wheels/b.whl": tmp_path / "b.bin"},
                               {"name": "healthos-appliance", "version": "9.9.9", "platform": "test",
                                "built_epoch": 1_700_000_000}, bundle.load_signing_key(private))
    assert path["signing_key"] == key_id
    return tmp_path / "x.tar", bundle.load_public_key(public.read_bytes()), public


def test_a_signed_bundle_passes_both_checkers_and_unpacks(signed, tmp_path):
    path, key, public = signed
    check = bundle.check_bundle(path, key)
    assert check.ok, check.problems
    assert check.manifest["version"] == "9.9.9"
    manifest, _, problems = playbook_check(str(path), str(public))
    assert manifest is not None and not problems
    playbook_module.unpack(str(path), manifest, str(tmp_path / "unpacked"))
    assert (tmp_path / "unpacked" / "wheels" / "b.whl").read_bytes() == bytes(range(256)) * 9
    bundle.extract_bundle(path, key, tmp_path / "out")
    assert (tmp_path / "out" / "a.txt").read_text() == "hello\n"
    assert (tmp_path / "out" / "wheels" / "b.whl").read_bytes() == bytes(range(256)) * 9


# Where a USTAR header (POSIX.1-1988) keeps each field: (offset, length) within the member's 512-byte block.
USTAR_FIELDS = ((0, 100), (100, 8), (108, 8), (116, 8), (124, 12), (136, 12), (148, 8), (156, 1), (157, 100),
                (257, 6), (263, 2), (265, 32), (297, 32), (329, 8), (337, 8), (345, 155), (500, 12))


def _positions_in_every_section(path: Path) -> list[int]:
    """Byte offsets that reach every section of the archive: the first, middle and last byte of each field of each
    member's header, the first and last byte of each member's data and of its padding, of the end blocks and of the
    file, and four bytes drawn at random (seeded: the same on every run) in every 512-byte block. Every single byte
    was checked once (~10,000 checks, 17 s): a change is refused by what the section it falls in means (a header
    field, the signed data, padding or end blocks the checker reads as junk), so a byte of each field and each block
    proves the property at ~3% of the cost."""
    draw = random.Random(20261127)
    size = path.stat().st_size
    positions: set[int] = set()
    with tarfile.open(path) as tar:
        members = tar.getmembers()
    data_end = 0
    for member in members:
        for start, length in USTAR_FIELDS:
            field_at = member.offset + start
            positions |= {field_at, field_at + length // 2, field_at + length - 1}
        data_end = member.offset_data + member.size
        padded_end = member.offset_data + -(-member.size // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE
        positions |= {member.offset_data, data_end - 1}
        if padded_end > data_end:
            positions |= {data_end, padded_end - 1}
        data_end = padded_end
    positions |= {data_end, data_end + tarfile.BLOCKSIZE - 1, data_end + tarfile.BLOCKSIZE, size - 1}
    for block in range(0, size, tarfile.BLOCKSIZE):
        positions |= {block + draw.randrange(tarfile.BLOCKSIZE) for _ in range(4)}
    return sorted(position for position in positions if position < size)


def test_a_changed_byte_in_every_field_and_block_is_refused(signed, tmp_path):
    path = signed[0]
    positions = _positions_in_every_section(path)
    assert len(positions) > 250 and len({position // tarfile.BLOCKSIZE for position in positions}) == \
        path.stat().st_size // tarfile.BLOCKSIZE  # every block of the file, padding and end blocks included
    _refuses_changed_bytes(signed, tmp_path, positions)


def test_changed_bytes_across_the_archive_are_refused(signed, tmp_path):
    _refuses_changed_bytes(signed, tmp_path, range(0, signed[0].stat().st_size, 53))


def _refuses_changed_bytes(signed, tmp_path, positions) -> None:
    path, key, public = signed
    data = path.read_bytes()
    altered = tmp_path / "altered.tar"
    for offset in positions:
        copy = bytearray(data)
        copy[offset] ^= 0x01
        altered.write_bytes(bytes(copy))
        assert not bundle.check_bundle(altered, key).ok, f"byte {offset} changed and accepted"
    # the playbook's checker over a sample (it runs openssl for each signature check)
    for offset in range(0, len(data), 401):
        copy = bytearray(data)
        copy[offset] ^= 0x01
        altered.write_bytes(bytes(copy))
        assert playbook_check(str(altered), str(public))[0] is None, f"byte {offset} accepted by the module"


def test_another_key_is_refused_and_named(signed, tmp_path):
    path, _, _ = signed
    _, other_public, other_id = bundle.generate_signing_key(tmp_path / "other.pem")
    check = bundle.check_bundle(path, bundle.load_public_key(other_public.read_bytes()))
    assert not check.ok and other_id in check.problems[0]
    assert playbook_check(str(path), str(other_public))[0] is None


def _rewrite(path: Path, out: Path, change) -> Path:
    """A structurally valid tar with members changed by `change(name, data) -> [(name, data)]`."""
    with tarfile.open(path) as source, tarfile.open(out, "w", format=tarfile.USTAR_FORMAT) as target:
        for member in source:
            data = source.extractfile(member).read()
            for name, content in change(member.name, data):
                info = tarfile.TarInfo(name)
                info.size, info.mtime, info.mode = len(content), member.mtime, 0o644
                target.addfile(info, io.BytesIO(content))
    return out


@pytest.mark.parametrize("case, expected", [
    ("unsigned", "unsigned"),
    ("extra", "not in the manifest"),
    ("missing", "missing from the bundle"),
])
def test_unsigned_extra_or_missing_files_are_refused(signed, tmp_path, case, expected):
    path, key, public = signed

    def change(name, data):
        inner = name.partition("/")[2]
        if case == "unsigned" and inner == bundle.SIGNATURE:
            return []
        if case == "missing" and inner == "a.txt":
            return []
        if case == "extra" and inner == "a.txt":
            return [(name, data), (name.replace("a.txt", "evil.txt"), b"x")]
        return [(name, data)]

    altered = _rewrite(path, tmp_path / f"{case}.tar", change)
    check = bundle.check_bundle(altered, key)
    assert not check.ok and any(expected in p for p in check.problems), check.problems
    assert playbook_check(str(altered), str(public))[0] is None


def test_links_are_refused(signed, tmp_path):
    path, key, public = signed
    out = tmp_path / "link.tar"
    with tarfile.open(path) as source, tarfile.open(out, "w", format=tarfile.USTAR_FORMAT) as target:
        for member in source:
            target.addfile(member, source.extractfile(member))
        link = tarfile.TarInfo(member.name.partition("/")[0] + "/etc-passwd")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        target.addfile(link)
    check = bundle.check_bundle(out, key)
    assert not check.ok and any("not a regular file" in p for p in check.problems)
    assert playbook_check(str(out), str(public))[0] is None


def test_manifest_lists_every_file_with_its_digest(signed):
    path, key, _ = signed
    manifest = bundle.verify_bundle(path, key)
    assert set(manifest["files"]) == {"a.txt", "wheels/b.whl"}
    assert json.dumps(manifest)  # plain JSON, readable by anyone auditing a bundle
