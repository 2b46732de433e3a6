"""The substrate's password storage: Argon2id hashes in the PHC string format, and a strength check.

Argon2id (RFC 9106) is memory-hard, so a stolen user table costs an attacker memory per guess, not
just a GPU cycle. The hash is stored as a standard PHC string,

    $argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>        (base64 without padding)

which carries its own parameters: hashes made under an old policy keep verifying after the policy
is raised, `needs_rehash` says when to upgrade one at the next successful sign-in, and any other
Argon2 implementation (libargon2, argon2-cffi, Go's x/crypto) can read our table during a migration.

Passwords are NFKC-normalised before hashing, as NIST SP 800-63B §5.1.1.2 advises: the same
password typed on two keyboards (a precomposed "é" or "e" + combining accent; full-width digits)
must verify the same.

`check_password_strength` is deliberately small: length first, plus the two patterns that are
guessed at once. NIST advises against composition rules (one capital, one symbol...), which push
people to "Password1!" without making guessing harder.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
import unicodedata
from dataclasses import dataclass

from cryptography.exceptions import InvalidKey
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

ARGON2_VERSION = 19
"""Argon2 version 1.3 (0x13), the only one RFC 9106 specifies."""

MIN_PASSWORD_LENGTH = 12

# The encoding is read back from the database and its parameters decide how much memory and time
# one sign-in costs. These ceilings keep a corrupted or tampered row from turning a login request
# into a denial of service; they are far above any sensible policy.
_MAX_MEMORY_KIB = 1024 * 1024  # 1 GiB
_MAX_ITERATIONS = 64
_MAX_LANES = 64
_MIN_SALT_BYTES = 8  # Argon2's own minimum; other tools' hashes may use it, ours use 16
_MAX_SALT_BYTES = 64
_MIN_HASH_BYTES = 16
_MAX_HASH_BYTES = 64

_DECIMAL = r"(0|[1-9][0-9]{0,9})"  # PHC forbids leading zeros, so every hash has one spelling
_B64 = r"([A-Za-z0-9+/]+)"
_PHC_ARGON2ID = re.compile(
    rf"\$argon2id\$v={ARGON2_VERSION}\$m={_DECIMAL},t={_DECIMAL},p={_DECIMAL}\${_B64}\${_B64}"
)


@dataclass(frozen=True)
class PasswordPolicy:
    """Argon2id cost parameters for new hashes.

    The defaults are OWASP's Password Storage Cheat Sheet minimum for Argon2id (19 MiB, 2 passes,
    1 lane): about 40 ms per hash on the two-core machine these tests were written on. Raise memory
    first if sign-in latency allows: memory is what makes guessing expensive on GPUs.
    """

    memory_cost_kib: int = 19 * 1024
    iterations: int = 2
    lanes: int = 1
    salt_bytes: int = 16  # RFC 9106 §3.1: 128 bits is sufficient for password hashing
    hash_bytes: int = 32

    def __post_init__(self) -> None:
        if not 1 <= self.lanes <= _MAX_LANES:
            raise ValueError(f"lanes must be between 1 and {_MAX_LANES}, not {self.lanes}")
        if not 8 * self.lanes <= self.memory_cost_kib <= _MAX_MEMORY_KIB:
            raise ValueError(
                f"memory_cost_kib must be between 8 × lanes ({8 * self.lanes}) and {_MAX_MEMORY_KIB},"
                f" not {self.memory_cost_kib}"
            )
        if not 1 <= self.iterations <= _MAX_ITERATIONS:
            raise ValueError(f"iterations must be between 1 and {_MAX_ITERATIONS}, not {self.iterations}")
        if not 16 <= self.salt_bytes <= _MAX_SALT_BYTES:
            raise ValueError(f"salt_bytes must be between 16 and {_MAX_SALT_BYTES}, not {self.salt_bytes}")
        if not _MIN_HASH_BYTES <= self.hash_bytes <= _MAX_HASH_BYTES:
            raise ValueError(
                f"hash_bytes must be between {_MIN_HASH_BYTES} and {_MAX_HASH_BYTES}, not {self.hash_bytes}"
            )


DEFAULT_POLICY = PasswordPolicy()


@dataclass(frozen=True)
class _Argon2idHash:
    """A parsed PHC string."""

    memory_cost_kib: int
    iterations: int
    lanes: int
    salt: bytes
    digest: bytes


def _password_bytes(password: str) -> bytes:
    return unicodedata.normalize("NFKC", password).encode("utf-8")


def _b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")


def _b64decode(text: str) -> bytes | None:
    try:
        data = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except binascii.Error:
        return None
    # Refuse spellings with stray low bits in the last character: one hash, one string.
    return data if _b64encode(data) == text else None


def _format_phc(memory_cost_kib: int, iterations: int, lanes: int, salt: bytes, digest: bytes) -> str:
    return (
        f"$argon2id$v={ARGON2_VERSION}$m={memory_cost_kib},t={iterations},p={lanes}"
        f"${_b64encode(salt)}${_b64encode(digest)}"
    )


def _parse_phc(encoded: object) -> _Argon2idHash | None:
    """The parts of an Argon2id PHC string, or None if it is not one we are willing to compute."""
    if not isinstance(encoded, str):
        return None
    match = _PHC_ARGON2ID.fullmatch(encoded)
    if match is None:
        return None
    memory, iterations, lanes = (int(group) for group in match.group(1, 2, 3))
    salt, digest = _b64decode(match.group(4)), _b64decode(match.group(5))
    if salt is None or digest is None:
        return None
    if not (
        1 <= lanes <= _MAX_LANES
        and 8 * lanes <= memory <= _MAX_MEMORY_KIB
        and 1 <= iterations <= _MAX_ITERATIONS
        and _MIN_SALT_BYTES <= len(salt) <= _MAX_SALT_BYTES
        and _MIN_HASH_BYTES <= len(digest) <= _MAX_HASH_BYTES
    ):
        return None
    return _Argon2idHash(memory, iterations, lanes, salt, digest)


def hash_password(password: str, policy: PasswordPolicy = DEFAULT_POLICY) -> str:
    """An Argon2id PHC string for `password`, with a fresh random salt."""
    salt = secrets.token_bytes(policy.salt_bytes)
    kdf = Argon2id(
        salt=salt,
        length=policy.hash_bytes,
        iterations=policy.iterations,
        lanes=policy.lanes,
        memory_cost=policy.memory_cost_kib,
    )
    digest = kdf.derive(_password_bytes(password))
    return _format_phc(policy.memory_cost_kib, policy.iterations, policy.lanes, salt, digest)


def verify_password(password: str, encoded: str) -> bool:
    """Whether `password` matches the PHC string `encoded`.

    A malformed, truncated or unsupported encoding (including None for an account without a
    password) is False, never an exception. The comparison of hashes is constant-time.
    """
    parsed = _parse_phc(encoded)
    if parsed is None:
        return False
    kdf = Argon2id(
        salt=parsed.salt,
        length=len(parsed.digest),
        iterations=parsed.iterations,
        lanes=parsed.lanes,
        memory_cost=parsed.memory_cost_kib,
    )
    try:
        # Argon2id.verify compares in constant time.
        kdf.verify(_password_bytes(password), parsed.digest)
    except InvalidKey:
        return False
    return True


def needs_rehash(encoded: str, policy: PasswordPolicy = DEFAULT_POLICY) -> bool:
    """Whether `encoded` was made under different parameters than `policy` (or is unreadable).

    Call it after a successful `verify_password`, while the plain password is at hand, and store a
    fresh `hash_password` if it says so.
    """
    parsed = _parse_phc(encoded)
    if parsed is None:
        return True
    return (
        parsed.memory_cost_kib != policy.memory_cost_kib
        or parsed.iterations != policy.iterations
        or parsed.lanes != policy.lanes
        or len(parsed.salt) != policy.salt_bytes
        or len(parsed.digest) != policy.hash_bytes
    )


def check_password_strength(password: str) -> str | None:
    """A message for the person choosing `password` if it is too weak, else None."""
    normalized = unicodedata.normalize("NFKC", password)
    if len(normalized) < MIN_PASSWORD_LENGTH:
        return (
            f"Use at least {MIN_PASSWORD_LENGTH} characters (this one has {len(normalized)})."
            " A short sentence is easier to remember than a jumble of symbols."
        )
    if len(set(normalized)) == 1:
        return "A password made of one repeated character is guessed at once. Use words or a sentence."
    if normalized.isdecimal():
        return (
            "A password of only digits is easy to guess: dates, phone numbers and ID numbers are"
            " tried first. Add some words."
        )
    return None
