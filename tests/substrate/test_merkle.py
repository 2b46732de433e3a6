"""Tests for the RFC 9162 Merkle tree: published vectors first, then properties over random trees.

The known answers are the RFC 6962 test vectors shared by Certificate Transparency implementations
(google/certificate-transparency, and transparency-dev/merkle's proof/verify_test.go and
proof/proof_test.go, which carry them forward). An independent implementation agreeing with them
is what lets a regulator's verifier agree with ours.
"""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.substrate.merkle import (
    EMPTY_ROOT,
    CompactRange,
    MerkleAccumulator,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root_from_leaf_hashes,
    verify_consistency,
    verify_inclusion,
)

# The eight leaves of the RFC 6962 test tree, as raw entry bytes.
RFC6962_LEAVES = [
    b"",
    b"\x00",
    b"\x10",
    b"\x20\x21",
    b"\x30\x31",
    b"\x40\x41\x42\x43",
    b"\x50\x51\x52\x53\x54\x55\x56\x57",
    b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f",
]
RFC6962_LEAF_HASHES = [leaf_hash(leaf) for leaf in RFC6962_LEAVES]

# Published root of the tree of the first n leaves, for n = 1..8.
RFC6962_ROOTS = {
    1: "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    2: "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    3: "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    4: "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    5: "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    6: "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    7: "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    8: "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
}

# Published inclusion proofs as (0-based leaf index, tree size, path). The CT sources number
# leaves from 1; the indices here are theirs minus one.
RFC6962_INCLUSION_PROOFS = [
    (0, 1, []),
    (
        0,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        5,
        8,
        [
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (
        1,
        5,
        [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
]

# Published consistency proofs as (old size, new size, proof).
RFC6962_CONSISTENCY_PROOFS = [
    (1, 1, []),
    (
        1,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        [
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (
        6,
        7,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
]

# Hypothesis would otherwise keep an example database in the working tree; these properties are
# cheap enough to rediscover failures from scratch.
PROPERTY_SETTINGS = settings(database=None, max_examples=150)


def _root(size: int) -> bytes:
    return bytes.fromhex(RFC6962_ROOTS[size])


def _unhex(proof: list[str]) -> list[bytes]:
    return [bytes.fromhex(node) for node in proof]


def _flip(value: bytes, position: int, mask: int = 0x10) -> bytes:
    corrupted = bytearray(value)
    corrupted[position] ^= mask
    return bytes(corrupted)


# --- Known answers ----------------------------------------------------------------------------


def test_empty_tree_root_is_sha256_of_nothing() -> None:
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert root_from_leaf_hashes([]) == EMPTY_ROOT
    assert MerkleAccumulator().root() == EMPTY_ROOT


def test_leaf_and_node_hashes_use_domain_separation_prefixes() -> None:
    assert leaf_hash(b"abc") == hashlib.sha256(b"\x00abc").digest()
    left, right = leaf_hash(b"l"), leaf_hash(b"r")
    assert node_hash(left, right) == hashlib.sha256(b"\x01" + left + right).digest()


@pytest.mark.parametrize("size", sorted(RFC6962_ROOTS))
def test_published_roots_for_every_size(size: int) -> None:
    assert root_from_leaf_hashes(RFC6962_LEAF_HASHES[:size]) == _root(size)


@pytest.mark.parametrize("size", sorted(RFC6962_ROOTS))
def test_accumulator_reaches_published_roots(size: int) -> None:
    accumulator = MerkleAccumulator()
    accumulator.extend(RFC6962_LEAF_HASHES[:size])
    assert accumulator.size == size
    assert accumulator.root() == _root(size)


@pytest.mark.parametrize(("index", "size", "proof"), RFC6962_INCLUSION_PROOFS)
def test_published_inclusion_proofs_are_generated_and_verify(index: int, size: int, proof: list[str]) -> None:
    hashes = RFC6962_LEAF_HASHES[:size]
    assert inclusion_proof(hashes, index) == _unhex(proof)
    assert verify_inclusion(hashes[index], index, size, _unhex(proof), _root(size))


@pytest.mark.parametrize(("old_size", "new_size", "proof"), RFC6962_CONSISTENCY_PROOFS)
def test_published_consistency_proofs_are_generated_and_verify(
    old_size: int, new_size: int, proof: list[str]
) -> None:
    assert consistency_proof(RFC6962_LEAF_HASHES[:new_size], old_size) == _unhex(proof)
    assert verify_consistency(old_size, new_size, _root(old_size), _root(new_size), _unhex(proof))


SOME_HASH = bytes.fromhex("abacaba000000000000000000000000000000000000000000060061e00123456")


def _inclusion_probes(index: int, size: int, proof: list[bytes], root: bytes, leaf: bytes):
    """Wrong claims around a valid inclusion proof, after the probes the CT test suites use."""
    yield "index - 1", (leaf, index - 1, size, proof, root)
    yield "index + 1", (leaf, index + 1, size, proof, root)
    yield "index ^ 2", (leaf, index ^ 2, size, proof, root)
    yield "size * 2", (leaf, index, size * 2, proof, root)
    yield "size // 2", (leaf, index, size // 2, proof, root)
    yield "wrong leaf", (leaf_hash(b"WrongLeaf"), index, size, proof, root)
    yield "empty root", (leaf, index, size, proof, EMPTY_ROOT)
    yield "random root", (leaf, index, size, proof, SOME_HASH)
    yield "trailing garbage", (leaf, index, size, [*proof, b""], root)
    yield "trailing root", (leaf, index, size, [*proof, root], root)
    yield "preceding garbage", (leaf, index, size, [b"", *proof], root)
    yield "preceding root", (leaf, index, size, [root, *proof], root)
    for position in range(len(proof)):
        corrupted = list(proof)
        corrupted[position] = _flip(corrupted[position], 0, 0x08)
        yield f"proof[{position}] bit flipped", (leaf, index, size, corrupted, root)
    if proof:
        yield "removed component", (leaf, index, size, proof[:-1], root)
    if len(proof) > 1:
        yield "inserted component", (leaf, index, size, [proof[0], SOME_HASH, *proof[1:]], root)


@pytest.mark.parametrize(("index", "size", "proof"), RFC6962_INCLUSION_PROOFS[1:])
def test_published_inclusion_proofs_refuse_every_wrong_claim(index: int, size: int, proof: list[str]) -> None:
    probes = _inclusion_probes(index, size, _unhex(proof), _root(size), RFC6962_LEAF_HASHES[index])
    accepted = [name for name, claim in probes if verify_inclusion(*claim)]
    assert accepted == []


def _consistency_probes(old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: list[bytes]):
    yield "old size - 1", (old_size - 1, new_size, old_root, new_root, proof)
    yield "old size + 1", (old_size + 1, new_size, old_root, new_root, proof)
    yield "old size ^ 2", (old_size ^ 2, new_size, old_root, new_root, proof)
    yield "new size * 2", (old_size, new_size * 2, old_root, new_root, proof)
    yield "new size // 2", (old_size, new_size // 2, old_root, new_root, proof)
    yield "wrong old root", (old_size, new_size, SOME_HASH, new_root, proof)
    yield "wrong new root", (old_size, new_size, old_root, SOME_HASH, proof)
    yield "swapped roots", (old_size, new_size, new_root, old_root, proof)
    yield "empty proof", (old_size, new_size, old_root, new_root, [])
    yield "trailing garbage", (old_size, new_size, old_root, new_root, [*proof, b""])
    yield "trailing old root", (old_size, new_size, old_root, new_root, [*proof, old_root])
    yield "trailing new root", (old_size, new_size, old_root, new_root, [*proof, new_root])
    yield "preceding garbage", (old_size, new_size, old_root, new_root, [b"", *proof])
    yield "preceding old root", (old_size, new_size, old_root, new_root, [old_root, *proof])
    yield "preceding new root", (old_size, new_size, old_root, new_root, [new_root, *proof])
    yield "preceding proof[0]", (old_size, new_size, old_root, new_root, [proof[0], *proof])
    yield "truncated proof", (old_size, new_size, old_root, new_root, proof[:-1])
    for position in range(len(proof)):
        corrupted = list(proof)
        corrupted[position] = _flip(corrupted[position], 0)
        yield f"proof[{position}] bit flipped", (old_size, new_size, old_root, new_root, corrupted)


@pytest.mark.parametrize(("old_size", "new_size", "proof"), RFC6962_CONSISTENCY_PROOFS[1:])
def test_published_consistency_proofs_refuse_every_wrong_claim(
    old_size: int, new_size: int, proof: list[str]
) -> None:
    probes = _consistency_probes(old_size, new_size, _root(old_size), _root(new_size), _unhex(proof))
    accepted = [name for name, claim in probes if verify_consistency(*claim)]
    assert accepted == []


# Proof shapes published in transparency-dev/merkle's proof/proof_test.go, which names proof nodes
# by (level, index) in the stored tree. Each node is written here as the half-open range of leaves
# it covers; a range that is not a power of two long is one of their "rehashed" nodes, the root of
# a right-edge subtree that is not yet perfect. The leaves are arbitrary: a shape holds for any data.
PUBLISHED_INCLUSION_SHAPES = [
    (1, 0, []),
    (2, 0, [(1, 2)]),
    (2, 1, [(0, 1)]),
    (3, 1, [(0, 1), (2, 3)]),
    (7, 0, [(1, 2), (2, 4), (4, 7)]),
    (7, 1, [(0, 1), (2, 4), (4, 7)]),
    (7, 2, [(3, 4), (0, 2), (4, 7)]),
    (7, 3, [(2, 3), (0, 2), (4, 7)]),
    (7, 4, [(5, 6), (6, 7), (0, 4)]),
    (7, 5, [(4, 5), (6, 7), (0, 4)]),
    (7, 6, [(4, 6), (0, 4)]),
    (4, 2, [(3, 4), (0, 2)]),
    (5, 3, [(2, 3), (0, 2), (4, 5)]),
    (6, 3, [(2, 3), (0, 2), (4, 6)]),
    (6, 4, [(5, 6), (0, 4)]),
    (15, 10, [(11, 12), (8, 10), (12, 15), (0, 8)]),
    (31, 24, [(25, 26), (26, 28), (28, 31), (16, 24), (0, 16)]),
    (95, 81, [(80, 81), (82, 84), (84, 88), (88, 95), (64, 80), (0, 64)]),
]

PUBLISHED_CONSISTENCY_SHAPES = [
    (1, 2, [(1, 2)]),
    (1, 4, [(1, 2), (2, 4)]),
    (1, 6, [(1, 2), (2, 4), (4, 6)]),
    (2, 3, [(2, 3)]),
    (2, 8, [(2, 4), (4, 8)]),
    (3, 7, [(2, 3), (3, 4), (0, 2), (4, 7)]),
    (4, 7, [(4, 7)]),
    (5, 7, [(4, 5), (5, 6), (6, 7), (0, 4)]),
    (6, 7, [(4, 6), (6, 7), (0, 4)]),
    (7, 8, [(6, 7), (7, 8), (4, 6), (0, 4)]),
    (1, 1, []),
    (5, 5, []),
    (8, 8, []),
    (2, 4, [(2, 4)]),
    (3, 5, [(2, 3), (3, 4), (0, 2), (4, 5)]),
    (3, 6, [(2, 3), (3, 4), (0, 2), (4, 6)]),
    (4, 6, [(4, 6)]),
    (1, 7, [(1, 2), (2, 4), (4, 7)]),
    (10, 15, [(8, 10), (10, 12), (12, 15), (0, 8)]),
    (24, 31, [(16, 24), (24, 31), (0, 16)]),
    (81, 95, [(80, 81), (81, 82), (82, 84), (84, 88), (88, 95), (64, 80), (0, 64)]),
]

NUMBERED_LEAF_HASHES = [leaf_hash(n.to_bytes(4, "big")) for n in range(95)]


def _ranges(shape: list[tuple[int, int]]) -> list[bytes]:
    return [root_from_leaf_hashes(NUMBERED_LEAF_HASHES[start:end]) for start, end in shape]


@pytest.mark.parametrize(("size", "index", "shape"), PUBLISHED_INCLUSION_SHAPES)
def test_inclusion_proofs_have_the_published_shape(size: int, index: int, shape: list) -> None:
    hashes = NUMBERED_LEAF_HASHES[:size]
    proof = inclusion_proof(hashes, index)
    assert proof == _ranges(shape)
    assert verify_inclusion(hashes[index], index, size, proof, root_from_leaf_hashes(hashes))


@pytest.mark.parametrize(("old_size", "new_size", "shape"), PUBLISHED_CONSISTENCY_SHAPES)
def test_consistency_proofs_have_the_published_shape(old_size: int, new_size: int, shape: list) -> None:
    hashes = NUMBERED_LEAF_HASHES[:new_size]
    proof = consistency_proof(hashes, old_size)
    assert proof == _ranges(shape)
    old_root = root_from_leaf_hashes(hashes[:old_size])
    assert verify_consistency(old_size, new_size, old_root, root_from_leaf_hashes(hashes), proof)


# --- Edges and refusals -----------------------------------------------------------------------


def test_single_leaf_tree_root_is_the_leaf_hash_and_its_proof_is_empty() -> None:
    only = leaf_hash(b"data")
    assert root_from_leaf_hashes([only]) == only
    assert inclusion_proof([only], 0) == []
    assert verify_inclusion(only, 0, 1, [], only)
    assert not verify_inclusion(only, 0, 1, [], b"")
    assert not verify_inclusion(b"", 0, 1, [], only)


@pytest.mark.parametrize(("index", "size"), [(0, 0), (1, 0), (1, 1), (2, 1), (-1, 1)])
def test_verify_inclusion_refuses_impossible_positions(index: int, size: int) -> None:
    assert not verify_inclusion(SOME_HASH, index, size, [], SOME_HASH)


@pytest.mark.parametrize("index", [-1, 8, 100])
def test_inclusion_proof_rejects_out_of_range_index(index: int) -> None:
    with pytest.raises(ValueError, match=f"leaf index {index} is outside a tree of 8 leaves"):
        inclusion_proof(RFC6962_LEAF_HASHES, index)


@pytest.mark.parametrize("old_size", [-1, 9])
def test_consistency_proof_rejects_out_of_range_old_size(old_size: int) -> None:
    with pytest.raises(ValueError, match=f"old size {old_size} is outside 0..8"):
        consistency_proof(RFC6962_LEAF_HASHES, old_size)


def test_raw_entries_passed_as_leaf_hashes_are_rejected() -> None:
    with pytest.raises(ValueError, match="pass leaf_hash"):
        root_from_leaf_hashes([b"not a hash"])
    with pytest.raises(ValueError, match="pass leaf_hash"):
        MerkleAccumulator().append(b"not a hash")


def test_consistency_from_the_empty_tree_needs_no_proof() -> None:
    root8 = _root(8)
    assert consistency_proof(RFC6962_LEAF_HASHES, 0) == []
    assert verify_consistency(0, 8, EMPTY_ROOT, root8, [])
    assert verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [])
    # The empty tree has exactly one root, and needs no proof nodes.
    assert not verify_consistency(0, 8, root8, root8, [])
    assert not verify_consistency(0, 8, EMPTY_ROOT, root8, [EMPTY_ROOT])


def test_consistency_of_a_tree_with_itself_requires_equal_roots_and_no_proof() -> None:
    assert verify_consistency(5, 5, _root(5), _root(5), [])
    assert not verify_consistency(5, 5, _root(5), _root(6), [])
    assert not verify_consistency(5, 5, _root(5), _root(5), [_root(5)])


@pytest.mark.parametrize(("old_size", "new_size"), [(1, 0), (2, 1), (8, 5), (-1, 3)])
def test_consistency_refuses_time_travel_and_negative_sizes(old_size: int, new_size: int) -> None:
    assert not verify_consistency(old_size, new_size, SOME_HASH, SOME_HASH, [SOME_HASH])


def test_compact_range_is_the_accumulator() -> None:
    assert CompactRange is MerkleAccumulator


def test_accumulator_root_matches_batch_root_at_every_prefix() -> None:
    # 300 leaves cross several powers of two, where the right edge collapses into one subtree.
    stream = [leaf_hash(n.to_bytes(4, "big")) for n in range(300)]
    accumulator = MerkleAccumulator()
    for size, value in enumerate(stream, start=1):
        accumulator.append(value)
        assert accumulator.root() == root_from_leaf_hashes(stream[:size])


def test_accumulator_memory_grows_with_the_number_of_binary_digits_not_leaves() -> None:
    accumulator = MerkleAccumulator()
    accumulator.extend(NUMBERED_LEAF_HASHES[:1] * 1023)
    assert accumulator.size == 1023
    assert len(accumulator.right_edge) == 10  # 1023 = 0b1111111111: one perfect subtree per bit
    accumulator.append(NUMBERED_LEAF_HASHES[0])
    assert len(accumulator.right_edge) == 1


# --- Properties over random trees --------------------------------------------------------------

trees = st.lists(st.binary(max_size=12), min_size=1, max_size=70).map(
    lambda entries: [leaf_hash(entry) for entry in entries]
)


@PROPERTY_SETTINGS
@given(hashes=trees, data=st.data())
def test_every_inclusion_proof_verifies(hashes: list[bytes], data: st.DataObject) -> None:
    index = data.draw(st.integers(0, len(hashes) - 1), label="index")
    proof = inclusion_proof(hashes, index)
    assert verify_inclusion(hashes[index], index, len(hashes), proof, root_from_leaf_hashes(hashes))


@PROPERTY_SETTINGS
@given(hashes=trees, data=st.data())
def test_any_single_byte_corruption_breaks_an_inclusion_proof(
    hashes: list[bytes], data: st.DataObject
) -> None:
    index = data.draw(st.integers(0, len(hashes) - 1), label="index")
    proof = inclusion_proof(hashes, index)
    root = root_from_leaf_hashes(hashes)
    leaf = hashes[index]
    targets = ["leaf", "root"] + (["proof"] if proof else [])
    target = data.draw(st.sampled_from(targets), label="target")
    byte = data.draw(st.integers(0, 31), label="byte")
    mask = data.draw(st.integers(1, 255), label="mask")
    if target == "leaf":
        leaf = _flip(leaf, byte, mask)
    elif target == "root":
        root = _flip(root, byte, mask)
    else:
        element = data.draw(st.integers(0, len(proof) - 1), label="element")
        proof[element] = _flip(proof[element], byte, mask)
    assert not verify_inclusion(leaf, index, len(hashes), proof, root)


@PROPERTY_SETTINGS
@given(hashes=trees, data=st.data())
def test_every_consistency_proof_verifies(hashes: list[bytes], data: st.DataObject) -> None:
    old_size = data.draw(st.integers(0, len(hashes)), label="old_size")
    proof = consistency_proof(hashes, old_size)
    old_root = root_from_leaf_hashes(hashes[:old_size])
    assert verify_consistency(old_size, len(hashes), old_root, root_from_leaf_hashes(hashes), proof)


@PROPERTY_SETTINGS
@given(hashes=trees, data=st.data())
def test_any_single_byte_corruption_breaks_a_consistency_proof(
    hashes: list[bytes], data: st.DataObject
) -> None:
    # From size 1 up: a proof from the empty tree is empty and never looks at the new root.
    old_size = data.draw(st.integers(1, len(hashes)), label="old_size")
    proof = consistency_proof(hashes, old_size)
    old_root = root_from_leaf_hashes(hashes[:old_size])
    new_root = root_from_leaf_hashes(hashes)
    targets = ["old root", "new root"] + (["proof"] if proof else [])
    target = data.draw(st.sampled_from(targets), label="target")
    byte = data.draw(st.integers(0, 31), label="byte")
    mask = data.draw(st.integers(1, 255), label="mask")
    if target == "old root":
        old_root = _flip(old_root, byte, mask)
    elif target == "new root":
        new_root = _flip(new_root, byte, mask)
    else:
        element = data.draw(st.integers(0, len(proof) - 1), label="element")
        proof[element] = _flip(proof[element], byte, mask)
    assert not verify_consistency(old_size, len(hashes), old_root, new_root, proof)


@PROPERTY_SETTINGS
@given(hashes=st.lists(st.binary(min_size=32, max_size=32), max_size=300))
def test_accumulator_root_equals_batch_root(hashes: list[bytes]) -> None:
    accumulator = MerkleAccumulator()
    accumulator.extend(hashes)
    assert accumulator.size == len(hashes)
    assert accumulator.root() == root_from_leaf_hashes(hashes)
