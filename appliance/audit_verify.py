"""The regulator's verifier for HealthOS audit evidence, and the definition of its format.

    python -m appliance.audit_verify PACKAGE.json [--public-key KEY.pem] [--checkpoints HELD.json]
                                                  [--regulator-key PRIVATE.pem] [--out EVENTS.jsonl]
                                                  [--save-checkpoints HELD.json]

It depends on the Python standard library and `cryptography`, and inside `appliance` only on
`appliance.substrate.merkle` (itself standard library only), so it can be copied to a machine that
has never seen the appliance and run there, offline. `healthos audit verify` runs the same checks
(`LogVerifier`) over the database; the appliance writes what this module reads.

An audit **event** is three byte strings:

- the *header*, in clear, ASCII, one `name=value` per line in this order, each line ending in LF::

      healthos-audit-event/1
      log=<log id>
      tenant=<tenant slug, or - for the appliance's own log>
      seq=<sequence number>
      time=<YYYY-MM-DDTHH:MM:SS.ffffffZ>
      type=<event type, e.g. chart.read>
      key=<id of the data key that encrypted the body>
      patient=<pseudonymous patient reference (hex HMAC under the data key), or ->

- a 12-byte *nonce*;
- the *body*: AES-256-GCM under the data key, of a FHIR AuditEvent-shaped JSON object, with the header
  as associated data — so a body moved to another event, position, log or tenant does not decrypt.

Its **leaf hash** is RFC 9162's `SHA-256(0x00 || header || nonce || body)`; the header's fixed number
of lines delimits it. A log's leaves, in position order, form the RFC 9162 Merkle tree, and a
**checkpoint** is the Ed25519 signature of the appliance's checkpoint key over::

      healthos-audit-checkpoint/1
      log=<log id>
      size=<tree size>
      root=<tree root, hex>
      time=<YYYY-MM-DDTHH:MM:SS.ffffffZ>

A tenant's data keys are **sealed** to each registered regulator's X25519 key: an ephemeral X25519
key agreement, HKDF-SHA256 (salt = ephemeral public || regulator public, info
`healthos-audit-key-seal/1`) and AES-256-GCM with the key's id and log as associated data; the sealed
key is `ephemeral public (32) || nonce (12) || ciphertext`. Key ids are the first 8 bytes of the
SHA-256 of the raw public key, in hex.

The appliance may **rotate** its checkpoint key (`healthos audit rotate-signing-key`). The rotation is
an event of the appliance's own log whose type names the new key, `audit.signing_key.rotate:<key id>`,
put under a checkpoint signed by the old key before the new key signs anything. An evidence package
carries every such introduction (`key_introductions`: the event, the old key's checkpoint over it and
its inclusion proof) and the public keys they name. Pinned to a key with `--public-key`, the verifier
trusts that key, and a newer key only when a trusted key's checkpoint proves its introduction, in
order (a chain of rotations is followed link by link). It then holds each introduced key to its
place: a checkpoint it signed may not be dated before its introduction, and once a newer key has
signed a checkpoint of the log, an older key's later checkpoint is refused (a key rotated out after
a compromise cannot sign the log's future). A key named in the package that no trusted key
introduced is not trusted, however well it signs. Without `--public-key` every key in the package is
trusted, and the verifier says so.

What a passing verification proves: every event's hash matches its contents, the events in position
order produce the root of every checkpoint, every checkpoint carries a valid signature of the
pinned public key (or of a key it introduced), and every checkpoint the regulator kept from earlier
is still a prefix of the log (the log only grew). What it names when it fails: the first bad sequence
number and what is wrong.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import hmac
import itertools
import json
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from operator import itemgetter
from pathlib import Path

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from appliance.substrate.merkle import MerkleAccumulator, verify_consistency, verify_inclusion

EVENT_FORMAT = "healthos-audit-event/1"
CHECKPOINT_FORMAT = "healthos-audit-checkpoint/1"
PACKAGE_FORMAT = "healthos-audit-evidence/1"
HELD_CHECKPOINTS_FORMAT = "healthos-audit-checkpoints/1"
SEAL_FORMAT = "healthos-audit-key-seal/1"
KEY_INTRODUCTION = "audit.signing_key.rotate"  # the event type, `:<new key id>` appended
PATIENT_REF_INFO = b"healthos-audit-patient-ref/1"
HEADER_FIELDS = ("log", "tenant", "seq", "time", "type", "key", "patient")
NONCE_SIZE = 12

_SHA256 = hashlib.sha256


# -- the format -----------------------------------------------------------------------------------


def format_time(moment: datetime) -> str:
    """The one spelling of a time in headers and checkpoints: UTC, microseconds, `Z`."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def event_header(*, log_id: str, tenant: str | None, seq: int, time: str, event_type: str, key_id: str,
                 patient_ref: str | None) -> bytes:
    return (f"{EVENT_FORMAT}\nlog={log_id}\ntenant={tenant or '-'}\nseq={seq}\ntime={time}\ntype={event_type}\n"
            f"key={key_id}\npatient={patient_ref or '-'}\n").encode("ascii")


class FormatError(ValueError):
    """Evidence that does not have the shape this module defines."""


def parse_header(header: bytes) -> dict:
    """The fields of a header; FormatError if it is not exactly the documented shape."""
    try:
        lines = header.decode("ascii").split("\n")
    except UnicodeDecodeError as exc:
        raise FormatError("header is not ASCII") from exc
    if len(lines) != len(HEADER_FIELDS) + 2 or lines[0] != EVENT_FORMAT or lines[-1] != "":
        raise FormatError("header does not have the healthos-audit-event/1 shape")
    fields: dict = {}
    for name, line in zip(HEADER_FIELDS, lines[1:-1], strict=True):
        key, sep, value = line.partition("=")
        if key != name or not sep or not value:
            raise FormatError(f"header line {line!r} should be {name}=<value>")
        fields[name] = value
    try:
        fields["seq"] = int(fields["seq"])
    except ValueError as exc:
        raise FormatError("header seq is not a number") from exc
    for name in ("tenant", "patient"):
        if fields[name] == "-":
            fields[name] = None
    return fields


# SHA-256 states that have already taken the RFC 9162 prefix: a copy fed the rest hashes the same bytes
# as prefix + data without first joining them into a new string. Per-call overhead is most of the cost
# of hashing a ~500-byte event or a 65-byte node, so this is ~10% of the verifier's time.
_LEAF_STATE, _NODE_STATE = _SHA256(b"\x00"), _SHA256(b"\x01")


def event_hash(header: bytes, nonce: bytes, body: bytes) -> bytes:
    """The event's RFC 9162 leaf hash: SHA-256(0x00 || header || nonce || body)."""
    state = _LEAF_STATE.copy()
    state.update(header)
    state.update(nonce)
    state.update(body)
    return state.digest()


def checkpoint_statement(log_id: str, size: int, root: bytes, time: str) -> bytes:
    return f"{CHECKPOINT_FORMAT}\nlog={log_id}\nsize={size}\nroot={root.hex()}\ntime={time}\n".encode("ascii")


def key_id_of(public_key: bytes) -> str:
    """The id of an Ed25519 or X25519 public key (raw 32 bytes): first 8 bytes of its SHA-256, hex."""
    return _SHA256(public_key).hexdigest()[:16]


def key_introduction_type(key_id: str) -> str:
    """The event type of the rotation that introduces the checkpoint key `key_id`."""
    return f"{KEY_INTRODUCTION}:{key_id}"


def introduced_key(event_type: str) -> str | None:
    """The key id a rotation event's type introduces, or None for any other event."""
    head, sep, key_id = event_type.partition(":")
    if head != KEY_INTRODUCTION or not sep or len(key_id) != 16 or key_id.strip("0123456789abcdef"):
        return None
    return key_id


def _raw_public(key: X25519PublicKey | Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _seal_aad(key_id: str, log_id: str) -> bytes:
    return f"{SEAL_FORMAT}\nkey={key_id}\nlog={log_id}\n".encode("ascii")


def _seal_key(shared: bytes, ephemeral: bytes, recipient: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=ephemeral + recipient,
                info=SEAL_FORMAT.encode()).derive(shared)


def seal(data_key: bytes, recipient: X25519PublicKey, *, key_id: str, log_id: str) -> bytes:
    """Seal a data key to a regulator's X25519 public key (see the module docstring)."""
    ephemeral = X25519PrivateKey.generate()
    ephemeral_public = _raw_public(ephemeral.public_key())
    aead_key = _seal_key(ephemeral.exchange(recipient), ephemeral_public, _raw_public(recipient))
    nonce = os.urandom(NONCE_SIZE)
    return ephemeral_public + nonce + AESGCM(aead_key).encrypt(nonce, data_key, _seal_aad(key_id, log_id))


def unseal(sealed: bytes, private: X25519PrivateKey, *, key_id: str, log_id: str) -> bytes:
    """Open a sealed data key with the regulator's private key; InvalidTag if it is not ours or altered."""
    if len(sealed) < 32 + NONCE_SIZE + 16:
        raise InvalidTag()
    ephemeral_public, nonce, ciphertext = sealed[:32], sealed[32:32 + NONCE_SIZE], sealed[32 + NONCE_SIZE:]
    shared = private.exchange(X25519PublicKey.from_public_bytes(ephemeral_public))
    aead_key = _seal_key(shared, ephemeral_public, _raw_public(private.public_key()))
    return AESGCM(aead_key).decrypt(nonce, ciphertext, _seal_aad(key_id, log_id))


def patient_ref_key(data_key: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=PATIENT_REF_INFO).derive(data_key)


def patient_ref(ref_key: bytes, patient_id: str) -> str:
    """The pseudonymous patient reference in a header: HMAC-SHA256 of the patient id, 16 bytes, hex."""
    return hmac.new(ref_key, str(patient_id).encode("utf-8"), hashlib.sha256).hexdigest()[:32]


def decrypt_body(data_key: bytes, header: bytes, nonce: bytes, body: bytes) -> dict:
    """The event's AuditEvent JSON; InvalidTag if the key is wrong or anything was altered."""
    return json.loads(AESGCM(data_key).decrypt(nonce, body, header))


# -- checking a log -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Checkpoint:
    log_id: str
    size: int
    root: bytes
    time: str
    key_id: str
    signature: bytes

    def statement(self) -> bytes:
        return checkpoint_statement(self.log_id, self.size, self.root, self.time)

    def to_json(self) -> dict:
        return {"log": self.log_id, "size": self.size, "root": self.root.hex(), "time": self.time,
                "key": self.key_id, "signature": base64.b64encode(self.signature).decode()}

    @classmethod
    def from_json(cls, data: Mapping) -> Checkpoint:
        try:
            return cls(str(data["log"]), int(data["size"]), bytes.fromhex(data["root"]), str(data["time"]),
                       str(data["key"]), base64.b64decode(data["signature"], validate=True))
        except (KeyError, TypeError, ValueError, binascii.Error) as exc:
            raise FormatError(f"malformed checkpoint {data!r:.120}: {exc}") from exc


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a log: what, and where (sequence number and position when known)."""

    kind: str
    message: str
    seq: int | None = None
    position: int | None = None

    def __str__(self) -> str:
        where = []
        if self.seq is not None:
            where.append(f"seq {self.seq}")
        if self.position is not None:
            where.append(f"position {self.position}")
        return f"{', '.join(where) or 'log'}: {self.message}"


def problem_order(problem: Problem) -> tuple:
    """Problems in log order: by position, then sequence number; those with neither last."""
    return (problem.position is None, problem.position if problem.position is not None else 0,
            problem.seq is None, problem.seq if problem.seq is not None else 0)


@dataclass
class Report:
    log_id: str
    tenant: str | None
    events: int = 0
    checkpoints: int = 0
    verified_size: int = 0
    pending: int = 0
    decrypted: int = 0
    problems: list[Problem] = field(default_factory=list)
    latest: Checkpoint | None = None
    introduced: list[KeyIntroduction] = field(default_factory=list)  # keys trusted through the pinned one

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def first_problem(self) -> Problem | None:
        return self.problems[0] if self.problems else None

    def summary(self) -> str:
        name = f"log {self.log_id} ({'tenant ' + self.tenant if self.tenant else 'appliance'})"
        if self.ok:
            latest = (f"; latest checkpoint: size {self.latest.size}, root {self.latest.root.hex()}, "
                      f"{self.latest.time}, key {self.latest.key_id}") if self.latest else ""
            pending = f"; {self.pending} event(s) awaiting their first checkpoint" if self.pending else ""
            return f"OK {name}: {self.events} events, {self.checkpoints} checkpoints verified{latest}{pending}"
        first = self.problems[0]
        return f"FAILED {name}: first bad {first}" + (
            f" (and {len(self.problems) - 1} more problem(s))" if len(self.problems) > 1 else "")


def load_public_key(data: bytes) -> Ed25519PublicKey:
    """An Ed25519 public key from PEM, or from its raw 32 bytes in hex or base64."""
    text = data.strip()
    if text.startswith(b"-----BEGIN"):
        key = serialization.load_pem_public_key(text)
        if not isinstance(key, Ed25519PublicKey):
            raise FormatError("the public key is not an Ed25519 key")
        return key
    for decode in (bytes.fromhex, lambda s: base64.b64decode(s, validate=True)):
        try:
            raw = decode(text.decode("ascii"))
        except (ValueError, binascii.Error):
            continue
        if len(raw) == 32:
            return Ed25519PublicKey.from_public_bytes(raw)
    raise FormatError("not an Ed25519 public key (PEM, or 32 bytes in hex or base64)")


def signature_ok(checkpoint: Checkpoint, trusted: Mapping[str, Ed25519PublicKey]) -> bool:
    key = trusted.get(checkpoint.key_id)
    if key is None:
        return False
    try:
        key.verify(checkpoint.signature, checkpoint.statement())
    except InvalidSignature:
        return False
    return True


@dataclass(frozen=True)
class KeyIntroduction:
    """A checkpoint key trusted because a trusted key's checkpoint proves the rotation that introduced it."""

    key_id: str
    by: str  # the key whose checkpoint covers the rotation event
    time: str  # when the rotation was recorded: the key signs nothing dated before
    seq: int  # the rotation event's sequence number in the appliance's log
    checkpoint_size: int


@dataclass
class KeyChain:
    """The keys a verification trusts: the pinned one and those it introduced, each with its place in
    the chain (the pinned key 0, a key it introduced 1, ...), and what was wrong with an introduction."""

    keys: dict[str, Ed25519PublicKey]
    rank: dict[str, int] = field(default_factory=dict)
    introduced: list[KeyIntroduction] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    def place_problem(self, checkpoint: Checkpoint, newest: str | None) -> str | None:
        """Why `checkpoint` may not be signed by its key where it stands (`newest`: the newest key that
        signed an earlier checkpoint of the log), or None."""
        for introduction in self.introduced:
            if introduction.key_id == checkpoint.key_id and checkpoint.time < introduction.time:
                return (f"the checkpoint at size {checkpoint.size} is signed by key {checkpoint.key_id} and dated "
                        f"{checkpoint.time}, before the rotation that introduced that key ({introduction.time})")
        if newest is not None and self.rank.get(checkpoint.key_id, 0) < self.rank.get(newest, 0):
            return (f"the checkpoint at size {checkpoint.size} is signed by key {checkpoint.key_id}, which was "
                    f"rotated out: the newer key {newest} had already signed this log")
        return None


def follow_introductions(package: Mapping, pinned: Mapping[str, Ed25519PublicKey]) -> KeyChain:
    """The pinned keys and every key a trusted key introduced, in the package's `key_introductions`."""
    chain = KeyChain(dict(pinned), {key_id: 0 for key_id in pinned})
    offered = package.get("public_keys") or {}
    for item in package.get("key_introductions") or []:
        try:
            checkpoint = Checkpoint.from_json(item["checkpoint"])
            position, seq = int(item["position"]), int(item["seq"])
            header = item["header"].encode("ascii")
            leaf = event_hash(header, _b64(item["nonce"]), _b64(item["body"]))
            proof = [bytes.fromhex(h) for h in item.get("proof") or []]
            fields = parse_header(header)
        except (KeyError, TypeError, ValueError, AttributeError, binascii.Error, FormatError) as exc:
            chain.problems.append(Problem("introduction", f"a malformed signing key introduction: {exc}"))
            continue
        key_id = introduced_key(fields["type"])
        why = None
        if key_id is None:
            why = "names no signing key"
        elif (fields["seq"], fields["log"], fields["tenant"]) != (seq, checkpoint.log_id, None):
            why = "is not the event of the appliance's log its checkpoint signs"
        elif checkpoint.key_id not in chain.keys or not signature_ok(checkpoint, chain.keys):
            why = f"is under a checkpoint signed by key {checkpoint.key_id}, which is not a trusted key"
        elif not verify_inclusion(leaf, position, checkpoint.size, proof, checkpoint.root):
            why = f"is not in the checkpoint at size {checkpoint.size} it names (altered or moved)"
        elif key_id not in chain.keys:
            try:
                raw = _b64(offered[key_id])
                if key_id_of(raw) != key_id:
                    raise ValueError("another key's")
                public = Ed25519PublicKey.from_public_bytes(raw)
            except (KeyError, TypeError, ValueError, binascii.Error):
                why = "comes without that key's public half"
            else:
                chain.keys[key_id] = public
                chain.rank[key_id] = chain.rank.get(checkpoint.key_id, 0) + 1
                chain.introduced.append(KeyIntroduction(key_id, checkpoint.key_id, fields["time"], seq,
                                                        checkpoint.size))
        if why is not None:
            chain.problems.append(Problem("introduction", f"the rotation to signing key {key_id or '?'} (seq {seq} "
                                          f"of the appliance's log) {why}"))
    return chain


def check_checkpoints(log_id: str, checkpoints: list[Checkpoint], trusted: Mapping[str, Ed25519PublicKey],
                      chain: KeyChain | None = None) -> tuple[list[Checkpoint], list[tuple[int, str, str]]]:
    """The checkpoints that are well signed, for this log, in increasing size; and what is wrong with
    the others, as (first position they cover, kind, message) — the caller names the sequence number.
    With `chain`, each key must also sign in its place in the chain of rotations (`KeyChain`)."""
    good: list[Checkpoint] = []
    problems: list[tuple[int, str, str]] = []
    previous: Checkpoint | None = None
    newest: str | None = None
    for checkpoint in checkpoints:
        first = previous.size if previous else 0
        if checkpoint.log_id != log_id:
            problems.append((first, "signature", f"the checkpoint at size {checkpoint.size} names log "
                             f"{checkpoint.log_id}"))
            continue
        if previous is not None and checkpoint.size <= previous.size:
            problems.append((checkpoint.size, "checkpoint", f"checkpoint at size {checkpoint.size} comes after one "
                             f"at size {previous.size}: checkpoints out of order or duplicated"))
            continue
        if checkpoint.key_id not in trusted:
            problems.append((first, "signature", f"the checkpoint at size {checkpoint.size} is signed by key "
                             f"{checkpoint.key_id}, which is not the trusted key (nor one a rotation of it "
                             "introduced)"))
            continue
        if not signature_ok(checkpoint, trusted):
            problems.append((first, "signature", f"the signature of the checkpoint at size {checkpoint.size} "
                             "is not valid"))
            continue
        misplaced = chain.place_problem(checkpoint, newest) if chain is not None else None
        if misplaced is not None:
            problems.append((first, "signature", misplaced))
            continue
        if chain is not None and (newest is None or chain.rank.get(checkpoint.key_id, 0) > chain.rank.get(newest, 0)):
            newest = checkpoint.key_id
        if previous is not None and checkpoint.time < previous.time:
            problems.append((first, "checkpoint", f"checkpoint at size {checkpoint.size} is dated "
                             f"{checkpoint.time}, before the previous one ({previous.time})"))
        good.append(checkpoint)
        previous = checkpoint
    return good, problems


_SEQ, _STORED_HASH = itemgetter(1), itemgetter(5)  # columns of the rows `LogVerifier.events` takes


class RunAccumulator(MerkleAccumulator):
    """`merkle.MerkleAccumulator` that also takes a run of leaves at once, for speed: the run is cut
    into whole subtrees aligned on the tree so far, each hashed level by level, then joined to the
    right edge with the same carries `append` makes one leaf at a time."""

    def extend_run(self, leaves: Sequence[bytes]) -> None:
        node_state, start, total = _NODE_STATE.copy, 0, len(leaves)
        while start < total:
            size = self.size
            width = size & -size if size else 1 << ((total - start).bit_length() - 1)
            while width > total - start:
                width >>= 1
            level = leaves[start:start + width]
            while len(level) > 1:
                nodes = []
                for left, right in zip(level[::2], level[1::2], strict=True):  # a perfect subtree: even count
                    state = node_state()
                    state.update(left)
                    state.update(right)
                    nodes.append(state.digest())
                level = nodes
            node, carry = level[0], size // width
            edge = self._edge  # the right edge: one perfect subtree per set bit of the size (see merkle.py)
            while carry & 1:
                state = node_state()
                state.update(edge.pop())
                state.update(node)
                node = state.digest()
                carry >>= 1
            edge.append(node)
            self._size = size + width
            start += width


class LogVerifier:
    """Replays one log in position order and checks it against its checkpoints, in O(log n) memory.

    Give it the log's checkpoints and the trusted public keys up front, then every event in
    position order (`event`, or `missing` for a position whose event is gone), then call `finish`.
    Checkpoints the regulator kept from an earlier verification (`held`) are checked as prefixes of
    the log: their roots must be recomputed from the same leaves, which is the consistency proof
    done the direct way.

    When a root does not match and no single event was seen to be altered, the problem is narrowed
    to the events between the last matching checkpoint and this one: within one checkpoint the
    appliance assigns positions in sequence order, so a sequence number out of order names a
    reordered or inserted event, and a sequence number missing from the run names a deleted one.
    """

    def __init__(self, *, log_id: str, tenant: str | None, checkpoints: Iterable[Checkpoint],
                 trusted_keys: Mapping[str, Ed25519PublicKey], held: Iterable[Checkpoint] = (),
                 check_header_prefix: bool = True, chain: KeyChain | None = None):
        self.report = Report(log_id=log_id, tenant=tenant)
        self._log_id = log_id
        self._tenant = tenant
        self._check_prefix = check_header_prefix
        self._problems: list[Problem] = []
        self._acc = RunAccumulator()
        self._next_position = 0
        self._last_seq: int | None = None
        self._range_seqs: list[int] = []
        self._range_tainted = False
        self._diverged = False
        self._rolled_back: list[Checkpoint] = []

        self._checkpoints, self._unnamed = check_checkpoints(log_id, list(checkpoints), trusted_keys, chain)
        self.report.checkpoints = len(self._checkpoints)
        # Sizes at which a root is known: every well-signed checkpoint, and every held checkpoint.
        self._targets: dict[int, list[tuple[str, Checkpoint]]] = {}
        for checkpoint in self._checkpoints:
            self._targets.setdefault(checkpoint.size, []).append(("checkpoint", checkpoint))
        latest_size = max((c.size for c in self._checkpoints), default=0)
        for kept in held:
            if kept.log_id != log_id:
                self._problem("held", f"a held checkpoint belongs to log {kept.log_id}, not {log_id}")
                continue
            if not signature_ok(kept, trusted_keys):
                self._problem("held", f"the held checkpoint at size {kept.size} has no valid signature")
                continue
            if kept.size > latest_size:
                self._rolled_back.append(kept)
                continue
            self._targets.setdefault(kept.size, []).append(("held", kept))
        if 0 in self._targets:
            self._check_root(0)
        self._sizes = sorted(size for size in self._targets if size > 0)
        self._target_index = 0
        self._range_start = 0
        self.report.latest = self._checkpoints[-1] if self._checkpoints else None

    # -- events ---------------------------------------------------------------------------------

    def _problem(self, kind: str, message: str, *, seq: int | None = None, position: int | None = None) -> None:
        self._problems.append(Problem(kind, message, seq, position))

    def event(self, position: int, seq: int, header: bytes, nonce: bytes, body: bytes,
              stored_hash: bytes | None) -> bytes:
        """Check one event; returns its recomputed leaf hash."""
        if position != self._next_position:
            self._position_jump(position, seq)
        if self._check_prefix and not header.startswith(
            f"{EVENT_FORMAT}\nlog={self._log_id}\ntenant={self._tenant or '-'}\nseq={seq}\n".encode()
        ):
            self._problem("header", "the header does not name this log, tenant and sequence number "
                          "(moved from another log or position)", seq=seq, position=position)
            self._range_tainted = True
        leaf = event_hash(header, nonce, body)
        if stored_hash is not None and leaf != stored_hash:
            self._problem("hash", "the event's contents do not match its hash (header, body or hash altered)",
                          seq=seq, position=position)
            self._range_tainted = True
        self._leaf(position, seq, leaf)
        return leaf

    def events(self, rows: Sequence[tuple]) -> None:
        """Check many events, in position order: rows of (position, seq, header, nonce, body, stored hash).

        The same checks as `event`, done a run at a time up to the next checkpoint: the leaf hashes and
        their comparison as comprehensions, the tree fed in one loop. Anything unusual in a run (a
        position out of step, a deleted event, a header to check, a problem waiting for its sequence
        number) sends that run through `event` one by one, so the problems named are the same."""
        start, total = 0, len(rows)
        while start < total:
            if self._target_index < len(self._sizes):
                room = self._sizes[self._target_index] - self._acc.size
            else:
                room = total - start
            run = rows[start:start + max(room, 1)]
            start += len(run)
            first = run[0][0]
            if (self._unnamed or first != self._next_position
                    or run[-1][0] != first + len(run) - 1 or any(row[2] is None for row in run)):
                for row in run:
                    if row[2] is None:
                        self.missing(row[0], row[1])
                    else:
                        self.event(*row)
                continue
            if self._check_prefix:
                prefix = f"{EVENT_FORMAT}\nlog={self._log_id}\ntenant={self._tenant or '-'}\nseq=".encode()
                for row in [row for row in run if not row[2].startswith(b"%s%d\n" % (prefix, row[1]))]:
                    self._problem("header", "the header does not name this log, tenant and sequence number "
                                  "(moved from another log or position)", seq=row[1], position=row[0])
                    self._range_tainted = True
            leaf_state, leaves = _LEAF_STATE.copy, []
            for _, _, header, nonce, body, _ in run:  # event_hash, inlined: a call per event costs ~5%
                state = leaf_state()
                state.update(header)
                state.update(nonce)
                state.update(body)
                leaves.append(state.digest())
            # Compared as whole lists first (a C loop); only a run that differs is searched event by event.
            if leaves != list(map(_STORED_HASH, run)):
                for index in [i for i, (leaf, row) in enumerate(zip(leaves, run, strict=True))
                              if row[5] is not None and leaf != row[5]]:
                    self._problem("hash", "the event's contents do not match its hash (header, body or hash "
                                  "altered)", seq=run[index][1], position=run[index][0])
                    self._range_tainted = True
            self._acc.extend_run(leaves)
            self._range_seqs.extend(map(_SEQ, run))
            self._last_seq = run[-1][1]
            self._next_position = run[-1][0] + 1
            self.report.events += len(run)
            self._after_leaf()

    def missing(self, position: int, seq: int | None) -> None:
        """The log has a position here but its event is gone."""
        if position != self._next_position:
            self._position_jump(position, seq)
        self._problem("missing", "the event at this position has been deleted", seq=seq, position=position)
        self._range_tainted = True
        # Its leaf is unknown: the roots from here on cannot match, and are not reported again.
        self._leaf(position, seq, b"\xff" * 32)
        self._diverged = True

    def _position_jump(self, position: int, seq: int | None) -> None:
        if position > self._next_position:
            gap = position - self._next_position
            if seq is not None and self._last_seq is not None and seq - self._last_seq - 1 == gap:
                # The sequence numbers skip exactly as many as the positions do: those are the deleted.
                named, which = self._last_seq + 1, f" (seq {self._last_seq + 1}..{seq - 1})"
            else:
                named, which = seq, f" (before seq {seq})"
            self._problem("gap", f"positions {self._next_position}..{position - 1}{which} are missing "
                          "(events deleted)", seq=named, position=self._next_position)
        else:
            self._problem("order", f"position {position} appears again or out of order", seq=seq, position=position)
        self._range_tainted = True
        self._diverged = True
        self._next_position = position

    def _leaf(self, position: int, seq: int | None, leaf: bytes) -> None:
        if self._unnamed and seq is not None:
            self._name_pending(position, seq)
        self._acc.append(leaf)
        self._next_position = position + 1
        if seq is not None:
            self._range_seqs.append(seq)
            self._last_seq = seq
        self.report.events += 1
        self._after_leaf()

    def _after_leaf(self) -> None:
        if self._target_index < len(self._sizes) and self._acc.size == self._sizes[self._target_index]:
            self._check_root(self._acc.size)
            self._target_index += 1
            self._range_start = self._acc.size
            self._range_seqs = []
            self._range_tainted = False

    def _name_pending(self, position: int, seq: int) -> None:
        waiting = []
        for at, kind, message in self._unnamed:
            if at <= position:
                self._problem(kind, message, seq=seq, position=position)
            else:
                waiting.append((at, kind, message))
        self._unnamed = waiting

    def _check_root(self, size: int) -> None:
        root = self._acc.root()
        for source, checkpoint in self._targets[size]:
            if checkpoint.root == root:
                if source == "checkpoint":
                    self.report.verified_size = max(self.report.verified_size, size)
                continue
            if self._diverged:
                continue  # already reported at the first root that failed
            self._diverged = True
            what = ("the checkpoint" if source == "checkpoint" else "a checkpoint kept from " + checkpoint.time)
            if source == "held":
                prefix = f"the log was rewritten: {what} at size {size} is no longer a prefix of it; "
            else:
                prefix = f"{what} at size {size} does not match the events: "
            if self._range_tainted:
                self._problem("root", prefix + "follows from the altered event named above", position=size - 1)
                return
            seq, position, cause = self._locate()
            self._problem("root", prefix + cause, seq=seq, position=position)

    def _locate(self) -> tuple[int | None, int, str]:
        seqs = self._range_seqs
        for index in range(1, len(seqs)):
            if seqs[index] <= seqs[index - 1]:
                # Either the earlier one is too large (an intruder, or moved up) or this one too small:
                # blame the earlier one when the run is in order without it.
                culprit = index - 1 if index < 2 or seqs[index - 2] < seqs[index] else index
                return (seqs[culprit], self._range_start + culprit,
                        f"sequence number {seqs[culprit]} is out of order among {seqs[max(culprit - 1, 0)]}.."
                        f"{seqs[min(culprit + 1, len(seqs) - 1)]} (events reordered or inserted)")
        present = set(seqs)
        for index in range(1, len(seqs)):
            for candidate in range(seqs[index - 1] + 1, seqs[index]):
                if candidate not in present:
                    return (candidate, self._range_start + index,
                            f"sequence number {candidate} is missing between {seqs[index - 1]} and "
                            f"{seqs[index]} (event deleted)")
        first = seqs[0] if seqs else None
        return (first, self._range_start,
                f"events from position {self._range_start} on were altered, inserted, deleted or reordered")

    # -- the end --------------------------------------------------------------------------------

    def finish(self) -> Report:
        size = self._acc.size
        latest = self._checkpoints[-1].size if self._checkpoints else 0
        for target in self._sizes[self._target_index:]:
            if self._next_position >= target:
                continue  # the positions reach it: the leaves it lacks are the deleted events named above
            for source, checkpoint in self._targets[target]:
                last = f" after seq {self._last_seq}" if self._last_seq is not None else ""
                self._problem("truncated",
                              f"the log was truncated: {'the' if source == 'checkpoint' else 'a held'} checkpoint "
                              f"at size {checkpoint.size} covers {checkpoint.size - size} more event(s) than the "
                              f"log holds; the events{last} are gone", position=size)
        for kept in self._rolled_back:
            last = f"; the events after seq {self._last_seq} are gone" if self._last_seq is not None else ""
            self._problem("rollback", f"rolled back: a checkpoint kept from {kept.time} has size {kept.size}, but "
                          f"the log's latest checkpoint has size {latest}{last}", position=latest)
        if size > latest:
            self._problem("uncovered", f"{size - latest} event(s) from position {latest} on are in the log but in no "
                          "signed checkpoint (a checkpoint was removed, or events were inserted)",
                          seq=self._first_uncovered_seq(latest), position=latest)
        for at, kind, message in self._unnamed:
            self._problem(kind, message, position=at)
        self._unnamed = []
        self._problems.sort(key=problem_order)
        self.report.problems = self._problems
        return self.report

    def _first_uncovered_seq(self, latest: int) -> int | None:
        offset = latest - self._range_start
        if 0 <= offset < len(self._range_seqs):
            return self._range_seqs[offset]
        return None


# -- evidence packages ----------------------------------------------------------------------------


def _b64(value: str) -> bytes:
    return base64.b64decode(value, validate=True)


def _trusted_keys(package: Mapping, pinned: Ed25519PublicKey | None) -> dict[str, Ed25519PublicKey]:
    if pinned is not None:
        return {key_id_of(_raw_public(pinned)): pinned}
    keys = {}
    for key_id, raw in (package.get("public_keys") or {}).items():
        keys[key_id] = Ed25519PublicKey.from_public_bytes(_b64(raw))
        if key_id_of(_b64(raw)) != key_id:
            raise FormatError(f"public key {key_id} does not have that id")
    return keys


@dataclass
class Regulator:
    """A regulator's private key, and the data keys it has unsealed from a package."""

    private: X25519PrivateKey
    data_keys: dict[str, bytes] = field(default_factory=dict)

    @property
    def key_id(self) -> str:
        return key_id_of(_raw_public(self.private.public_key()))

    @classmethod
    def load(cls, pem: bytes, password: bytes | None = None) -> Regulator:
        key = serialization.load_pem_private_key(pem, password=password)
        if not isinstance(key, X25519PrivateKey):
            raise FormatError("the regulator key is not an X25519 private key")
        return cls(key)

    def open_keys(self, package: Mapping, log_id: str) -> list[str]:
        """Unseal every data key in the package sealed to this regulator; returns the problems."""
        problems = []
        for entry in package.get("data_keys") or []:
            for seal_entry in entry.get("seals") or []:
                if seal_entry.get("regulator") != self.key_id:
                    continue
                try:
                    self.data_keys[entry["key"]] = unseal(_b64(seal_entry["sealed"]), self.private,
                                                          key_id=entry["key"], log_id=log_id)
                except (InvalidTag, ValueError, binascii.Error):
                    problems.append(f"the data key {entry.get('key')} sealed to this regulator does not open")
        return problems


def read_package(path: Path) -> dict:
    try:
        package = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise FormatError(f"{path}: cannot read the package: {exc}") from exc
    if not isinstance(package, dict) or package.get("format") != PACKAGE_FORMAT:
        raise FormatError(f"{path}: not a {PACKAGE_FORMAT} package")
    return package


def read_held(path: Path) -> list[Checkpoint]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, ValueError) as exc:
        raise FormatError(f"{path}: cannot read the checkpoints: {exc}") from exc
    return parse_held(text, str(path))[1]


def parse_held(text: str | bytes, source: str) -> tuple[dict, list[Checkpoint]]:
    """A kept checkpoints file's log (`log_id`, `tenant`) and checkpoints; `source` names it in errors."""
    # Said to a regulator who chose the wrong file: which file, and which one to choose instead, not the parser's
    # "Expecting value: line 1 column 1", which reads as a fault of the appliance.
    kept_by = (f"a file of kept checkpoints is the JSON document ({HELD_CHECKPOINTS_FORMAT}) saved by the regulator "
               "console's 'Keep the checkpoints', `healthos audit checkpoint --out` or this verifier's "
               "--save-checkpoints")
    try:
        data = json.loads(text)
    except ValueError:
        raise FormatError(f"{source} is not a file of kept checkpoints: it is not JSON; {kept_by}") from None
    if not isinstance(data, dict) or data.get("format") != HELD_CHECKPOINTS_FORMAT:
        raise FormatError(f"{source} is not a file of kept checkpoints: it is JSON of another kind; {kept_by}")
    log = data.get("log") if isinstance(data.get("log"), dict) else {}
    return log, [Checkpoint.from_json(item) for item in data.get("checkpoints") or []]


def held_checkpoints_document(log_id: str, tenant: str | None, checkpoints: Sequence[Checkpoint],
                              public_keys: Mapping[str, bytes]) -> dict:
    """The file a regulator keeps: a log's signed checkpoints, to prove later that the log only grew."""
    return {"format": HELD_CHECKPOINTS_FORMAT, "log": {"log_id": log_id, "tenant": tenant},
            "public_keys": {key_id: base64.b64encode(raw).decode() for key_id, raw in public_keys.items()},
            "checkpoints": [c.to_json() for c in checkpoints]}


def verify_package(package: Mapping, *, public_key: Ed25519PublicKey | None = None,
                   held: Sequence[Checkpoint] = (), regulator: Regulator | None = None,
                   decrypted: list[dict] | None = None) -> Report:
    """Verify an evidence package offline; with a regulator key, decrypt its bodies into `decrypted`."""
    log = package.get("log") or {}
    log_id, tenant = str(log.get("log_id")), log.get("tenant")
    trusted = _trusted_keys(package, public_key)
    # Pinned, a key is trusted only through the chain of rotations from the pinned one; unpinned, every
    # key in the package already is, and the chain adds nothing.
    chain = follow_introductions(package, trusted) if public_key is not None else None
    if chain is not None:
        trusted = chain.keys
    checkpoints = [Checkpoint.from_json(item) for item in package.get("checkpoints") or []]
    span = package.get("range") or {}
    complete = bool(span.get("complete"))
    verifier = LogVerifier(log_id=log_id, tenant=tenant, checkpoints=checkpoints if complete else [],
                           trusted_keys=trusted, held=held if complete else (), chain=chain)
    report = verifier.report
    extra: list[Problem] = list(chain.problems) if chain is not None else []
    if regulator is not None:
        extra += [Problem("decrypt", message) for message in regulator.open_keys(package, log_id)]
    anchor = None if complete else _check_partial_checkpoints(
        log_id, checkpoints, trusted, package, held, report, extra, chain)
    first = int(span.get("first_position", 0))
    expected = first
    placement = _Placement()  # a partial package's positions
    batch: list[tuple] = []
    for item in package.get("events") or []:
        if isinstance(item, dict) and item.get("missing"):
            position, seq = int(item["position"]), int(item["seq"])
            if complete:
                batch.append((position, seq, None, None, None, None))
            else:
                placement.check(position, seq, extra)
                extra.append(Problem("missing", "the event at this position has been deleted", seq=seq,
                                     position=position))
                expected = position + 1
            continue
        try:
            position, seq = int(item["position"]), int(item["seq"])
            header = item["header"].encode("ascii")
            nonce, body = _b64(item["nonce"]), _b64(item["body"])
            stored = bytes.fromhex(item["hash"]) if item.get("hash") else None
        except (KeyError, TypeError, ValueError, binascii.Error) as exc:
            extra.append(Problem("format", f"malformed event: {exc}", position=expected))
            continue
        if complete:
            batch.append((position, seq, header, nonce, body, stored))
            if len(batch) >= 4096:
                verifier.events(batch)
                batch = []
        else:
            placement.check(position, seq, extra)
            _check_included(item, (log_id, tenant), position, seq, header, nonce, body, stored, anchor, extra)
            expected = position + 1
            report.events += 1
        if regulator is not None:
            _decrypt_into(regulator, item, header, nonce, body, seq, position, decrypted, extra, report)
    if batch:
        verifier.events(batch)
    for item in package.get("unpositioned") or []:
        _check_unpositioned(item, (log_id, tenant), report, extra)
    if not complete:
        last = int(span.get("last_position", first - 1 if placement.highest is None else placement.highest))
        extra += placement.absent(first, last)
        extra += _check_edges(package, (log_id, tenant), span, first, last, anchor)
    report = verifier.finish() if complete else report
    report.problems = sorted(report.problems + extra, key=problem_order)
    report.introduced = chain.introduced if chain is not None else []
    return report


def _check_partial_checkpoints(log_id: str, checkpoints: list[Checkpoint], trusted: Mapping[str, Ed25519PublicKey],
                               package: Mapping, held: Sequence[Checkpoint], report: Report,
                               extra: list[Problem], chain: KeyChain | None = None) -> Checkpoint | None:
    """A partial export: every checkpoint signed and consistent with the next; held ones still in the log.

    Returns the checkpoint the events' inclusion proofs lead to."""
    trusted_check, problems = check_checkpoints(log_id, checkpoints, trusted, chain)
    extra += [Problem(kind, message, position=at) for at, kind, message in problems]
    report.checkpoints = len(trusted_check)
    proofs = {(int(p["from"]), int(p["to"])): [bytes.fromhex(h) for h in p["proof"]]
              for p in package.get("consistency_proofs") or []}
    for older, newer in itertools.pairwise(trusted_check):
        proof = proofs.get((older.size, newer.size))
        if proof is None or not verify_consistency(older.size, newer.size, older.root, newer.root, proof):
            extra.append(Problem("consistency", f"the checkpoint at size {newer.size} is not an extension of the "
                                 f"one at size {older.size} (log rewritten)", position=older.size))
    by_size = {c.size: c for c in trusted_check}
    latest = trusted_check[-1] if trusted_check else None
    for kept in held:
        if latest is None or kept.size > latest.size:
            extra.append(Problem("rollback", f"rolled back: a checkpoint kept from {kept.time} has size {kept.size}, "
                                 f"but the log's latest has size {latest.size if latest else 0}",
                                 position=latest.size if latest else 0))
        elif kept.size in by_size and by_size[kept.size].root != kept.root:
            extra.append(Problem("rollback", f"the log was rewritten: the checkpoint kept from {kept.time} at size "
                                 f"{kept.size} has another root", position=kept.size))
        elif kept.size not in by_size and kept.size > 0:
            extra.append(Problem("rollback", f"the checkpoint kept from {kept.time} at size {kept.size} is no longer "
                                 "in the log", position=kept.size))
    anchor_size = (package.get("range") or {}).get("anchor_size")
    anchor = by_size.get(int(anchor_size)) if anchor_size is not None else latest
    report.latest = latest
    report.verified_size = latest.size if latest else 0
    if anchor is None and package.get("events"):
        extra.append(Problem("signature", "no validly signed checkpoint covers the exported events, so where "
                             "they stand in the log cannot be checked"))
    return anchor


@dataclass
class _Placement:
    """The positions a partial package's events came at, in the order they came, and their sequence numbers."""

    seqs_at: dict[int, int] = field(default_factory=dict)
    highest: int | None = None

    def check(self, position: int, seq: int, extra: list[Problem]) -> None:
        """A position seen before is an event copied in; one below the highest seen so far is out of order.
        Positions never seen are named at the end (`absent`): an event moved up the package is late, not
        deleted."""
        if position in self.seqs_at:
            extra.append(Problem("order", f"position {position} appears twice (the second time as seq {seq}): "
                                 "an event inserted or copied", seq=seq, position=position))
            return
        if self.highest is not None and position < self.highest:
            extra.append(Problem("order", f"position {position} (seq {seq}) comes after position {self.highest} "
                                 f"(seq {self.seqs_at[self.highest]}): events reordered", seq=seq, position=position))
        self.seqs_at[position] = seq
        self.highest = position if self.highest is None else max(self.highest, position)

    def absent(self, first: int, last: int) -> list[Problem]:
        """The positions from `first` to `last` no event holds, one problem per run; the deleted events'
        sequence numbers are named when their neighbours' skip exactly that many."""
        seqs_at, problems, position = self.seqs_at, [], first
        while position <= last:
            if position in seqs_at:
                position += 1
                continue
            start = position
            while position <= last and position not in seqs_at:
                position += 1
            before, after = seqs_at.get(start - 1), seqs_at.get(position)
            if after is None:
                problems.append(Problem("truncated", f"positions {start}..{position - 1} are missing from the "
                                        "package" + (f" (after seq {before})" if before is not None else ""),
                                        position=start))
            elif before is not None and after - before - 1 == position - start:
                problems.append(Problem("gap", f"positions {start}..{position - 1} (seq {before + 1}..{after - 1}) "
                                        "are missing (events deleted)", seq=before + 1, position=start))
            else:
                problems.append(Problem("gap", f"positions {start}..{position - 1} (before seq {after}) are missing "
                                        "(events deleted)", seq=after, position=start))
        return problems


def _check_included(item: Mapping, log: tuple[str, str | None], position: int, seq: int, header: bytes, nonce: bytes,
                    body: bytes, stored: bytes | None, anchor: Checkpoint | None, extra: list[Problem]) -> None:
    try:
        fields = parse_header(header)
    except FormatError as exc:
        extra.append(Problem("header", str(exc), seq=seq, position=position))
        fields = {}
    if fields and (fields["seq"], fields["log"], fields["tenant"]) != (seq, *log):
        extra.append(Problem("header", "the header does not name this log, tenant and sequence number "
                             "(moved from another log or position)", seq=seq, position=position))
    leaf = event_hash(header, nonce, body)
    if stored is not None and leaf != stored:
        extra.append(Problem("hash", "the event's contents do not match its hash (header, body or hash altered)",
                             seq=seq, position=position))
        return
    if anchor is None:
        return  # nothing signed to place it against: said once for the package, not once per event
    proof = [bytes.fromhex(h) for h in item.get("proof") or []]
    if not verify_inclusion(leaf, position, anchor.size, proof, anchor.root):
        extra.append(Problem("inclusion", "the event is not at this position in the signed log "
                             "(altered, inserted or moved)", seq=seq, position=position))


def _check_edges(package: Mapping, log: tuple[str, str | None], span: Mapping, first: int, last: int,
                 anchor: Checkpoint | None) -> list[Problem]:
    """A period's events are all in its package only if the events just outside its positions lie outside its
    time: each such edge must be in the package, proven at its position in the signed log, and recorded before
    `since` or from `until` on. (Times spell the same width in UTC, so they compare as text.)"""
    if anchor is None or first > last:
        return []
    since, until = span.get("since"), span.get("until")
    edges = {item.get("side"): item for item in package.get("edges") or [] if isinstance(item, dict)}
    problems: list[Problem] = []
    for side, position in (("before", first - 1), ("after", last + 1)):
        if not 0 <= position < anchor.size:
            continue
        item = edges.get(side)
        if item is None or str(item.get("position")) != str(position):
            problems.append(Problem("edge", f"the package does not prove which event lies just {side} its events: "
                                    "an event of the period may have been left out", position=position))
            continue
        try:
            seq, header = int(item["seq"]), item["header"].encode("ascii")
            nonce, body = _b64(item["nonce"]), _b64(item["body"])
            stored = bytes.fromhex(item["hash"]) if item.get("hash") else None
            recorded = parse_header(header)["time"]
        except (KeyError, TypeError, ValueError, binascii.Error, FormatError) as exc:
            problems.append(Problem("format", f"malformed edge event: {exc}", position=position))
            continue
        proven: list[Problem] = []
        _check_included(item, log, position, seq, header, nonce, body, stored, anchor, proven)
        problems += proven
        if not proven and (since is None or recorded >= since) and (until is None or recorded < until):
            problems.append(Problem("edge", f"the event just {side} the package's events was recorded at {recorded}, "
                                    "within the period: it was left out of the package", seq=seq, position=position))
    return problems


def _check_unpositioned(item: Mapping, log: tuple[str, str | None], report: Report, extra: list[Problem]) -> None:
    """An event the appliance holds but has not (yet) put in the log: fine while queued for a checkpoint."""
    try:
        seq = int(item["seq"])
        header = item["header"].encode("ascii")
        leaf = event_hash(header, _b64(item["nonce"]), _b64(item["body"]))
        fields = parse_header(header)
    except (KeyError, TypeError, ValueError, binascii.Error, FormatError) as exc:
        extra.append(Problem("format", f"malformed event outside the log: {exc}"))
        return
    if (fields["seq"], fields["log"], fields["tenant"]) != (seq, *log) or leaf.hex() != item.get("hash"):
        extra.append(Problem("hash", "an event outside the log does not match its hash or names another log",
                             seq=seq))
    elif item.get("queued"):
        report.pending += 1
    else:
        extra.append(Problem("unpositioned", "the event is in no checkpoint and not queued for one "
                             "(inserted outside the appliance, or its queue entry was deleted)", seq=seq))


def _decrypt_into(regulator: Regulator, item: Mapping, header: bytes, nonce: bytes, body: bytes, seq: int,
                  position: int, decrypted: list[dict] | None, extra: list[Problem], report: Report) -> None:
    try:
        fields = parse_header(header)
    except FormatError:
        return  # already reported
    key = regulator.data_keys.get(fields["key"])
    if key is None:
        return  # destroyed (crypto-shredded) or never sealed to this regulator: counted, not an error
    try:
        event = decrypt_body(key, header, nonce, body)
    except InvalidTag:
        extra.append(Problem("decrypt", "the body does not decrypt under its data key with this header "
                             "(altered, or moved from elsewhere)", seq=seq, position=position))
        return
    report.decrypted += 1
    if decrypted is not None:
        decrypted.append({"seq": seq, "position": position, "header": fields, "event": event})


# -- command line ---------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m appliance.audit_verify",
        description="Verify a HealthOS audit evidence package offline; optionally decrypt it with the "
                    "regulator's key. Exit status: 0 verified, 1 problems found, 2 unusable input.")
    parser.add_argument("package", type=Path, help="the evidence package (JSON) from `healthos audit export`")
    parser.add_argument("--public-key", type=Path,
                        help="the appliance's checkpoint public key, obtained out of band (PEM, or raw hex/base64); "
                             "without it the key inside the package is trusted")
    parser.add_argument("--checkpoints", type=Path, action="append", default=[],
                        help="checkpoints kept from an earlier verification: prove the log only grew since")
    parser.add_argument("--regulator-key", type=Path, help="the regulator's X25519 private key (PEM) to decrypt bodies")
    parser.add_argument("--out", type=Path, help="write decrypted events here as JSON lines (default: stdout)")
    parser.add_argument("--save-checkpoints", type=Path,
                        help="after a successful verification, write the package's checkpoints here to keep")
    args = parser.parse_args(argv)

    def say(line: str) -> None:
        sys.stdout.write(line + "\n")

    try:
        package = read_package(args.package)
        pinned = load_public_key(args.public_key.read_bytes()) if args.public_key else None
        held = [c for path in args.checkpoints for c in read_held(path)]
        regulator = Regulator.load(args.regulator_key.read_bytes()) if args.regulator_key else None
    except (OSError, FormatError, ValueError) as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    if pinned is None:
        say("note: trusting the public key inside the package; pin the appliance's key with --public-key")
    decrypted: list[dict] = []
    try:
        report = verify_package(package, public_key=pinned, held=held, regulator=regulator, decrypted=decrypted)
    except FormatError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    say(report.summary())
    if pinned is not None and report.introduced:
        # Said whether or not it verified: which keys were trusted, and why, is what the regulator relies on.
        say(f"trusted: the pinned key {key_id_of(_raw_public(pinned))}, and the key(s) its rotations introduced: "
            + "; ".join(f"{i.key_id} (introduced by {i.by} at {i.time}, seq {i.seq} of the appliance's log, under "
                        f"its checkpoint at size {i.checkpoint_size})" for i in report.introduced))
    span = package.get("range") or {}
    if report.ok and not span.get("complete", True):
        # A part reads like a whole log in the line above: say which part, and what a part cannot prove.
        say(f"this is part of the log: the events recorded from {span.get('since') or 'its start'} until "
            f"{span.get('until') or 'the export'}, positions {span.get('first_position')}..{span.get('last_position')} "
            f"of the {span.get('anchor_size')} its latest checkpoint covers; each is proven to be in the signed log, "
            "and so are the events just outside those positions, recorded outside the period")
    if held and report.ok:
        # Without this line a run with --checkpoints reads exactly like one without: the regulator could
        # not tell that the kept checkpoints were checked, which is what proves the log only grew.
        latest = max(held, key=lambda checkpoint: checkpoint.size)
        say(f"the log only grew since the {len(held)} checkpoint(s) kept earlier "
            f"({', '.join(str(path) for path in args.checkpoints)}): each is a prefix of it, the latest kept "
            f"at size {latest.size}, signed {latest.time}")
    for problem in report.problems[:50]:
        say(f"  - [{problem.kind}] {problem}")
    if len(report.problems) > 50:
        say(f"  ... {len(report.problems) - 50} more")
    if regulator is not None:
        say(f"decrypted {report.decrypted} of {report.events} event bodies with regulator key {regulator.key_id}"
            + ("" if report.decrypted == report.events else
               " (the others' data keys were destroyed or never sealed to this key)"))
        lines = "".join(json.dumps(item, sort_keys=True) + "\n" for item in decrypted)
        if args.out:
            args.out.write_text(lines, encoding="utf-8")
            say(f"decrypted events written to {args.out}")
        else:
            sys.stdout.write(lines)
    if report.ok and args.save_checkpoints:
        log = package.get("log") or {}
        document = held_checkpoints_document(
            str(log.get("log_id")), log.get("tenant"), [Checkpoint.from_json(c) for c in package["checkpoints"]],
            {k: _b64(v) for k, v in (package.get("public_keys") or {}).items()})
        args.save_checkpoints.write_text(json.dumps(document, indent=1), encoding="utf-8")
        say(f"checkpoints kept in {args.save_checkpoints}")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
