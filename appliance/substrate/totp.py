"""The substrate's one-time codes: RFC 6238 TOTP, the second factor of staff sign-in.

TOTP is what every authenticator app speaks (and works on a phone with no network, which an
air-gapped appliance needs): the code is an HMAC of the number of 30-second steps since the Unix
epoch, keyed by a secret shared once through a QR code (`provisioning_uri`).

Two decisions beyond the RFC:

- `verify` returns the time step that matched and refuses any step at or before the last one the
  caller stored for that user, so an observed code cannot be replayed, not even within its own
  30 seconds (RFC 6238 §5.2 recommends this).
- The submitted code is user input and never raises: anything malformed is simply not a match.
  Secrets, algorithms and digit counts come from our own configuration, so a bad one raises
  ValueError.

HMAC comes from `cryptography`, which the substrate already depends on, rather than a TOTP package.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re
import secrets
from datetime import datetime
from urllib.parse import quote, urlencode

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as crypto_hmac

STEP_SECONDS = 30
"""Length of one time step (RFC 6238's X); the value every authenticator app assumes."""

SECRET_BYTES = 20
"""160-bit secrets, the length RFC 4226 §4 recommends (it requires at least 128)."""

_ALGORITHMS: dict[str, type[hashes.HashAlgorithm]] = {
    "SHA1": hashes.SHA1,
    "SHA256": hashes.SHA256,
    "SHA512": hashes.SHA512,
}
_ALLOWED_DIGITS = (6, 8)


def generate_secret() -> str:
    """A fresh shared secret, base32-encoded as authenticator apps expect (32 characters)."""
    return base64.b32encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")


def _decode_secret(secret_b32: str) -> bytes:
    # People type secrets off a screen: tolerate spaces, lower case and missing padding.
    cleaned = re.sub(r"[\s-]", "", secret_b32).upper()
    cleaned += "=" * (-len(cleaned) % 8)
    try:
        key = base64.b32decode(cleaned)
    except binascii.Error as error:
        raise ValueError("TOTP secret is not valid base32") from error
    if not key:
        raise ValueError("TOTP secret is empty")
    return key


def _hash_for(algorithm: str) -> hashes.HashAlgorithm:
    try:
        return _ALGORITHMS[algorithm.upper()]()
    except KeyError:
        raise ValueError(
            f"unsupported TOTP algorithm {algorithm!r}; use one of {', '.join(_ALGORITHMS)}"
        ) from None


def _check_digits(digits: int) -> None:
    if digits not in _ALLOWED_DIGITS:
        raise ValueError(f"TOTP codes have 6 or 8 digits, not {digits}")


def time_step(at_time: float | datetime) -> int:
    """The RFC 6238 counter for a moment: whole 30-second steps since the Unix epoch."""
    if isinstance(at_time, datetime):
        if at_time.tzinfo is None:
            # A naive datetime is local time on some machine; guessing would shift codes by hours.
            raise ValueError("TOTP needs a timezone-aware datetime")
        at_time = at_time.timestamp()
    if at_time < 0:
        raise ValueError("TOTP is undefined before the Unix epoch")
    return int(at_time // STEP_SECONDS)


def _code_for_step(key: bytes, step: int, digits: int, algorithm: hashes.HashAlgorithm) -> str:
    mac = crypto_hmac.HMAC(key, algorithm)
    mac.update(step.to_bytes(8, "big"))
    digest = mac.finalize()
    # Dynamic truncation, RFC 4226 §5.3: the low nibble of the last byte picks 4 bytes, top bit dropped.
    offset = digest[-1] & 0x0F
    value = int.from_bytes(digest[offset : offset + 4], "big") & 0x7FFFFFFF
    return str(value % 10**digits).zfill(digits)


def totp_at(secret_b32: str, for_time: float | datetime, digits: int = 6, algorithm: str = "SHA1") -> str:
    """The code an authenticator shows at `for_time` (Unix seconds or an aware datetime)."""
    _check_digits(digits)
    return _code_for_step(_decode_secret(secret_b32), time_step(for_time), digits, _hash_for(algorithm))


def verify(
    secret_b32: str,
    code: str,
    at_time: float | datetime,
    last_used_step: int | None,
    window: int = 1,
    digits: int = 6,
    algorithm: str = "SHA1",
) -> int | None:
    """The time step `code` belongs to, or None if it is wrong, malformed, or already used.

    Codes from `window` steps either side of `at_time` are accepted, for clock drift and slow
    typing. The caller stores the returned step as the user's `last_used_step`; codes for that
    step or earlier are refused from then on.
    """
    _check_digits(digits)
    if window < 0:
        raise ValueError(f"TOTP window must be zero or more steps, not {window}")
    key = _decode_secret(secret_b32)
    algorithm_instance = _hash_for(algorithm)
    current = time_step(at_time)

    if not isinstance(code, str):
        return None
    # Apps display "123 456"; people paste it with the space.
    submitted = re.sub(r"\s", "", code)
    # ASCII only: str.isdigit would also accept Arabic-Indic and other Unicode digits.
    if not re.fullmatch(rf"[0-9]{{{digits}}}", submitted):
        return None

    matched: int | None = None
    for step in range(max(current - window, 0), current + window + 1):
        if last_used_step is not None and step <= last_used_step:
            continue
        expected = _code_for_step(key, step, digits, algorithm_instance)
        # Keep looking after a match: if two steps in the window share this code, the latest one is
        # recorded, so the same digits cannot be accepted again for the later step.
        if hmac.compare_digest(expected.encode("ascii"), submitted.encode("ascii")):
            matched = step
    return matched


def provisioning_uri(
    secret: str,
    account_name: str,
    issuer: str,
    digits: int = 6,
    algorithm: str = "SHA1",
) -> str:
    """The otpauth:// URI an authenticator app reads from a QR code (Google's Key URI Format)."""
    _check_digits(digits)
    _hash_for(algorithm)
    _decode_secret(secret)
    for name, value in (("account name", account_name), ("issuer", issuer)):
        if not value:
            raise ValueError(f"TOTP {name} must not be empty")
        if ":" in value:
            # The label is "issuer:account"; a colon inside either part makes it ambiguous.
            raise ValueError(f"TOTP {name} must not contain ':'")
    label = f"{quote(issuer, safe='')}:{quote(account_name, safe='')}"
    query = urlencode(
        {
            "secret": re.sub(r"[\s=-]", "", secret).upper(),
            "issuer": issuer,
            "algorithm": algorithm.upper(),
            "digits": digits,
            "period": STEP_SECONDS,
        },
        # %20 rather than "+": several authenticator apps show a "+" literally in the issuer.
        quote_via=quote,
    )
    return f"otpauth://totp/{label}?{query}"
