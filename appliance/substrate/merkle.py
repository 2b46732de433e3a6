"""The substrate's Merkle tree: the hashing that makes the audit log tamper-evident.

The tree has the shape of RFC 9162 (Certificate Transparency v2; the hashing is that of RFC 6962)
over SHA-256. We follow a published standard instead of inventing a chain format so that a
regulator's verifier, written by someone else in another language, can check two things without
reading the whole log or trusting the appliance:

- *inclusion*: this event is in the log whose signed root is R (a proof of log2(n) hashes);
- *consistency*: the log with root R2 at size n2 extends the log with root R1 at size n1, so
  nothing recorded before n1 was rewritten or removed (again log2(n2) hashes).

Leaves and interior nodes are hashed with different one-byte prefixes (0x00 and 0x01), so a pair
of leaves can never be passed off as one interior node (second-preimage resistance).

This module is pure: it hashes bytes and never touches the database. The generators work on a list
of leaf hashes held in memory; `MerkleAccumulator` computes the root of a stream in O(log n)
memory, for a verifier replaying millions of events.

The verifiers return False for any claim that does not check out, including impossible sizes and
indices: proofs arrive from outside, and a malformed one is a failed verification, not a crash.
The generators raise ValueError on out-of-range arguments, which there are a caller's mistake.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

HASH_SIZE = 32
"""Bytes in every hash this module produces or accepts (SHA-256)."""

EMPTY_ROOT = hashlib.sha256(b"").digest()
"""Root of the tree with no leaves: SHA-256 of the empty string (RFC 9162 §2.1.1)."""

_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"


def leaf_hash(data: bytes) -> bytes:
    """Hash one log entry as a leaf: SHA-256(0x00 || data)."""
    return hashlib.sha256(_LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Hash two child hashes into their parent: SHA-256(0x01 || left || right)."""
    return hashlib.sha256(_NODE_PREFIX + left + right).digest()


def _split_point(size: int) -> int:
    """The largest power of two strictly smaller than `size` (which must be at least 2).

    RFC 9162 splits every tree there, so the left subtree is always perfect and the tree of the
    first n leaves is embedded unchanged in every later tree; that is what consistency proofs rely on.
    """
    return 1 << ((size - 1).bit_length() - 1)


def _subtree_root(hashes: Sequence[bytes], start: int, end: int) -> bytes:
    """MTH of the leaves hashes[start:end], without copying slices of a possibly huge list."""
    size = end - start
    if size == 0:
        return EMPTY_ROOT
    if size == 1:
        return hashes[start]
    k = _split_point(size)
    return node_hash(_subtree_root(hashes, start, start + k), _subtree_root(hashes, start + k, end))


def _check_leaf_hashes(hashes: Sequence[bytes]) -> None:
    for position, value in enumerate(hashes):
        if len(value) != HASH_SIZE:
            raise ValueError(
                f"leaf hash at position {position} is {len(value)} bytes, expected {HASH_SIZE};"
                " pass leaf_hash(data), not the data itself"
            )


def root_from_leaf_hashes(hashes: Sequence[bytes]) -> bytes:
    """The Merkle Tree Hash (RFC 9162 §2.1.1) of a list of leaf hashes."""
    _check_leaf_hashes(hashes)
    return _subtree_root(hashes, 0, len(hashes))


def inclusion_proof(hashes: Sequence[bytes], index: int) -> list[bytes]:
    """The audit path (RFC 9162 §2.1.3.1) proving leaf `index` is in the tree of `hashes`.

    The path lists sibling subtree roots from the leaf upwards.
    """
    _check_leaf_hashes(hashes)
    if not 0 <= index < len(hashes):
        raise ValueError(f"leaf index {index} is outside a tree of {len(hashes)} leaves")
    path: list[bytes] = []
    start, end = 0, len(hashes)
    # Walk down from the root, remembering the sibling at each level; the path is read bottom-up,
    # so it is reversed at the end.
    while end - start > 1:
        k = _split_point(end - start)
        if index < start + k:
            path.append(_subtree_root(hashes, start + k, end))
            end = start + k
        else:
            path.append(_subtree_root(hashes, start, start + k))
            start = start + k
    path.reverse()
    return path


def verify_inclusion(
    leaf_hash: bytes, index: int, tree_size: int, proof: Sequence[bytes], root: bytes
) -> bool:
    """Check an audit path with the algorithm of RFC 9162 §2.1.3.2."""
    if not 0 <= index < tree_size:
        return False
    if len(leaf_hash) != HASH_SIZE or len(root) != HASH_SIZE:
        return False
    if any(len(sibling) != HASH_SIZE for sibling in proof):
        return False
    fn, sn = index, tree_size - 1
    computed = leaf_hash
    for sibling in proof:
        if sn == 0:
            # More path elements than the tree has levels: trailing garbage.
            return False
        if fn & 1 or fn == sn:
            computed = node_hash(sibling, computed)
            if not fn & 1:
                # The node is the last, lone child of a level: it moves up without a sibling.
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            computed = node_hash(computed, sibling)
        fn >>= 1
        sn >>= 1
    return sn == 0 and computed == root


def consistency_proof(hashes: Sequence[bytes], old_size: int) -> list[bytes]:
    """The proof (RFC 9162 §2.1.4.1) that the tree of `hashes` extends its first `old_size` leaves.

    Sizes 0 and len(hashes) give an empty proof: every tree extends the empty tree and itself.
    """
    _check_leaf_hashes(hashes)
    new_size = len(hashes)
    if not 0 <= old_size <= new_size:
        raise ValueError(f"old size {old_size} is outside 0..{new_size}, the size of the newer tree")
    if old_size in (0, new_size):
        return []
    return _subproof(hashes, old_size, 0, new_size, old_is_whole_subtree=True)


def _subproof(
    hashes: Sequence[bytes], old_size: int, start: int, end: int, *, old_is_whole_subtree: bool
) -> list[bytes]:
    """SUBPROOF(m, D[start:end], b) of RFC 9162 §2.1.4.1, with m counted from `start`."""
    size = end - start
    if old_size == size:
        # When the old tree is a whole subtree the verifier already holds its root, so it is left out.
        return [] if old_is_whole_subtree else [_subtree_root(hashes, start, end)]
    k = _split_point(size)
    if old_size <= k:
        return [
            *_subproof(hashes, old_size, start, start + k, old_is_whole_subtree=old_is_whole_subtree),
            _subtree_root(hashes, start + k, end),
        ]
    return [
        *_subproof(hashes, old_size - k, start + k, end, old_is_whole_subtree=False),
        _subtree_root(hashes, start, start + k),
    ]


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    """Check a consistency proof with the algorithm of RFC 9162 §2.1.4.2."""
    if not 0 <= old_size <= new_size:
        return False
    if len(old_root) != HASH_SIZE or len(new_root) != HASH_SIZE:
        return False
    if any(len(node) != HASH_SIZE for node in proof):
        return False
    if old_size == new_size:
        return not proof and old_root == new_root
    if old_size == 0:
        # The RFC defines proofs only for 0 < m < n; the empty tree is a prefix of every tree, and
        # its root can only be the hash of nothing.
        return not proof and old_root == EMPTY_ROOT
    if not proof:
        return False

    path = list(proof)
    if old_size & (old_size - 1) == 0:
        # The old tree is a perfect subtree of the new one; its root is the starting node.
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    old_computed = new_computed = path[0]
    for node in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            old_computed = node_hash(node, old_computed)
            new_computed = node_hash(node, new_computed)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            new_computed = node_hash(new_computed, node)
        fn >>= 1
        sn >>= 1
    return sn == 0 and old_computed == old_root and new_computed == new_root


class MerkleAccumulator:
    """The root of a growing log, kept in O(log n) memory as leaves stream past.

    It holds the right edge of the tree: the roots of the perfect subtrees whose sizes are the
    binary digits of the leaf count, largest first (at most 64 hashes for any log that fits in a
    64-bit counter). Appending a leaf merges equal-sized subtrees like a binary carry. Its root
    always equals `root_from_leaf_hashes` of everything appended, so `healthos audit verify` can
    recompute a signed root from millions of events without holding them. In transparency-dev's
    terms this is the compact range [0, size).
    """

    __slots__ = ("_edge", "_size")

    def __init__(self) -> None:
        self._edge: list[bytes] = []
        self._size = 0

    @property
    def size(self) -> int:
        """Number of leaves appended so far."""
        return self._size

    @property
    def right_edge(self) -> tuple[bytes, ...]:
        """Roots of the perfect subtrees that make up the tree so far, largest (leftmost) first."""
        return tuple(self._edge)

    def append(self, leaf_hash: bytes) -> None:
        """Add the next leaf, given as its leaf hash (see `leaf_hash`)."""
        if len(leaf_hash) != HASH_SIZE:
            raise ValueError(
                f"leaf hash is {len(leaf_hash)} bytes, expected {HASH_SIZE}; pass leaf_hash(data)"
            )
        node = leaf_hash
        carry = self._size
        # Each trailing 1 bit of the old size is a perfect subtree as large as `node`: merge them.
        while carry & 1:
            node = node_hash(self._edge.pop(), node)
            carry >>= 1
        self._edge.append(node)
        self._size += 1

    def extend(self, leaf_hashes: Iterable[bytes]) -> None:
        """Append leaf hashes in order."""
        for value in leaf_hashes:
            self.append(value)

    def root(self) -> bytes:
        """The Merkle Tree Hash of all leaves appended so far."""
        if not self._edge:
            return EMPTY_ROOT
        # RFC 9162 splits at the largest power of two, so the root nests the edge right-to-left:
        # H(s0, H(s1, ... H(s_{k-1}, s_k))).
        root = self._edge[-1]
        for subtree in reversed(self._edge[:-1]):
            root = node_hash(subtree, root)
        return root


CompactRange = MerkleAccumulator
"""The same class under the name Certificate Transparency implementations give it."""
