"""Tests for RFC 6238 TOTP: the RFC's Appendix B vectors, then the acceptance window and replay rules."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta, timezone
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from appliance.substrate.totp import (
    STEP_SECONDS,
    generate_secret,
    provisioning_uri,
    time_step,
    totp_at,
    verify,
)

# RFC 6238 Appendix B seeds: the ASCII digits repeated to the hash's natural key length.
SEEDS = {
    "SHA1": b"12345678901234567890",
    "SHA256": b"12345678901234567890123456789012",
    "SHA512": b"1234567890123456789012345678901234567890123456789012345678901234",
}

# RFC 6238 Appendix B, every row: (Unix time, algorithm, 8-digit TOTP).
RFC6238_VECTORS = [
    (59, "SHA1", "94287082"),
    (59, "SHA256", "46119246"),
    (59, "SHA512", "90693936"),
    (1111111109, "SHA1", "07081804"),
    (1111111109, "SHA256", "68084774"),
    (1111111109, "SHA512", "25091201"),
    (1111111111, "SHA1", "14050471"),
    (1111111111, "SHA256", "67062674"),
    (1111111111, "SHA512", "99943326"),
    (1234567890, "SHA1", "89005924"),
    (1234567890, "SHA256", "91819424"),
    (1234567890, "SHA512", "93441116"),
    (2000000000, "SHA1", "69279037"),
    (2000000000, "SHA256", "90698825"),
    (2000000000, "SHA512", "38618901"),
    (20000000000, "SHA1", "65353130"),
    (20000000000, "SHA256", "77737706"),
    (20000000000, "SHA512", "47863826"),
]

NOW = 1_700_000_000.0
SECRET = base64.b32encode(SEEDS["SHA1"]).decode("ascii")


def _b32(seed: bytes) -> str:
    return base64.b32encode(seed).decode("ascii")


@pytest.mark.parametrize(("unix_time", "algorithm", "expected"), RFC6238_VECTORS)
def test_rfc6238_appendix_b(unix_time: int, algorithm: str, expected: str) -> None:
    assert totp_at(_b32(SEEDS[algorithm]), unix_time, digits=8, algorithm=algorithm) == expected


@pytest.mark.parametrize(("unix_time", "algorithm", "expected"), RFC6238_VECTORS)
def test_rfc6238_vectors_verify_at_their_own_time(unix_time: int, algorithm: str, expected: str) -> None:
    step = verify(_b32(SEEDS[algorithm]), expected, unix_time, None, digits=8, algorithm=algorithm)
    assert step == unix_time // STEP_SECONDS


def test_six_digit_code_is_the_low_digits_of_the_eight_digit_one() -> None:
    # Both come from the same truncated value, modulo 10^6 and 10^8.
    assert totp_at(SECRET, 59) == "287082"


def test_aware_datetimes_give_the_same_code_as_unix_seconds() -> None:
    moment = datetime.fromtimestamp(1111111109, tz=UTC)
    assert totp_at(SECRET, moment, digits=8) == "07081804"
    elsewhere = moment.astimezone(timezone(timedelta(hours=3)))
    assert totp_at(SECRET, elsewhere, digits=8) == "07081804"


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        totp_at(SECRET, datetime(2024, 1, 1))


def test_generated_secrets_are_160_bit_base32_and_distinct() -> None:
    first, second = generate_secret(), generate_secret()
    assert len(first) == 32
    assert len(base64.b32decode(first)) == 20
    assert first != second


def test_secrets_typed_by_people_are_tolerated() -> None:
    typed = " ".join(SECRET[i : i + 4] for i in range(0, len(SECRET), 4)).lower()
    assert totp_at(typed, 59, digits=8) == "94287082"


@pytest.mark.parametrize("secret", ["not base32!", "", "   "])
def test_invalid_secrets_raise(secret: str) -> None:
    with pytest.raises(ValueError, match="TOTP secret"):
        totp_at(secret, NOW)


def test_unsupported_settings_raise() -> None:
    with pytest.raises(ValueError, match="unsupported TOTP algorithm 'MD5'"):
        totp_at(SECRET, NOW, algorithm="MD5")
    with pytest.raises(ValueError, match="6 or 8 digits, not 7"):
        totp_at(SECRET, NOW, digits=7)
    with pytest.raises(ValueError, match="window"):
        verify(SECRET, "123456", NOW, None, window=-1)
    with pytest.raises(ValueError, match="before the Unix epoch"):
        totp_at(SECRET, -1)


@pytest.mark.parametrize("offset", [-1, 0, 1])
def test_codes_one_step_either_side_are_accepted(offset: int) -> None:
    code = totp_at(SECRET, NOW + offset * STEP_SECONDS)
    assert verify(SECRET, code, NOW, None) == time_step(NOW) + offset


@pytest.mark.parametrize("offset", [-2, 2, -3, 3])
def test_codes_two_or_more_steps_away_are_refused(offset: int) -> None:
    code = totp_at(SECRET, NOW + offset * STEP_SECONDS)
    assert code != totp_at(SECRET, NOW)  # a coincidence would make this test meaningless
    assert verify(SECRET, code, NOW, None) is None


def test_a_wider_window_reaches_further() -> None:
    code = totp_at(SECRET, NOW + 2 * STEP_SECONDS)
    assert verify(SECRET, code, NOW, None, window=2) == time_step(NOW) + 2
    assert verify(SECRET, totp_at(SECRET, NOW - STEP_SECONDS), NOW, None, window=0) is None


def test_a_code_is_accepted_once() -> None:
    code = totp_at(SECRET, NOW)
    used = verify(SECRET, code, NOW, None)
    assert used == time_step(NOW)
    # Same code, same 30 seconds, replayed by someone who watched it being typed.
    assert verify(SECRET, code, NOW + 5, used) is None


def test_codes_older_than_the_last_used_step_are_refused() -> None:
    used = time_step(NOW)
    earlier = totp_at(SECRET, NOW - STEP_SECONDS)
    assert verify(SECRET, earlier, NOW, used) is None
    later = totp_at(SECRET, NOW + STEP_SECONDS)
    assert verify(SECRET, later, NOW, used) == used + 1


def test_codes_with_a_space_are_accepted() -> None:
    code = totp_at(SECRET, NOW)
    assert verify(SECRET, f"{code[:3]} {code[3:]}", NOW, None) == time_step(NOW)


@pytest.mark.parametrize(
    "code",
    [
        "",
        "12345",
        "1234567",
        "12345a",
        "abcdef",
        "١٢٣٤٥٦",  # Arabic-Indic digits: str.isdigit() says yes, we say no
        "123456\x00",
        "+12345",
        "-12345",
        "12.456",
        "9" * 1000,
        None,
        123456,
        b"123456",
    ],
)
def test_malformed_codes_are_refused_without_raising(code: object) -> None:
    assert verify(SECRET, code, NOW, None) is None  # type: ignore[arg-type]


def test_eight_digit_verification_refuses_six_digit_codes() -> None:
    eight = totp_at(SECRET, NOW, digits=8)
    assert verify(SECRET, eight, NOW, None, digits=8) == time_step(NOW)
    assert verify(SECRET, eight[-6:], NOW, None, digits=8) is None


def test_provisioning_uri_is_percent_encoded() -> None:
    uri = provisioning_uri(SECRET, "amina.o@clinic example.org", "Kisumu County & Referral")
    parts = urlsplit(uri)
    assert parts.scheme == "otpauth"
    assert parts.netloc == "totp"
    assert parts.path == "/Kisumu%20County%20%26%20Referral:amina.o%40clinic%20example.org"
    assert "+" not in uri
    query = parse_qs(parts.query)
    assert query == {
        "secret": [SECRET],
        "issuer": ["Kisumu County & Referral"],
        "algorithm": ["SHA1"],
        "digits": ["6"],
        "period": ["30"],
    }
    issuer, account = (unquote(part) for part in parts.path[1:].split(":"))
    assert (issuer, account) == ("Kisumu County & Referral", "amina.o@clinic example.org")


def test_provisioning_uri_carries_non_default_settings() -> None:
    uri = provisioning_uri(SECRET, "nurse", "HealthOS", digits=8, algorithm="sha256")
    assert uri.endswith("?secret=" + SECRET + "&issuer=HealthOS&algorithm=SHA256&digits=8&period=30")


def test_provisioning_uri_encodes_non_ascii_names_as_utf8() -> None:
    uri = provisioning_uri(SECRET, "Zoë", "Hôpital")
    assert uri.startswith("otpauth://totp/H%C3%B4pital:Zo%C3%AB?")


@pytest.mark.parametrize(
    ("account", "issuer", "message"),
    [("a:b", "HealthOS", "account name must not contain"), ("nurse", "Health:OS", "issuer must not")],
)
def test_provisioning_uri_refuses_colons_in_the_label(account: str, issuer: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        provisioning_uri(SECRET, account, issuer)
