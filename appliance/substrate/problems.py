"""How a refused request is said: the sentence of a validation failure, in the same words whichever room
answers it (the layers' JSON APIs, the portal's forms, a tenant file, an HL7 message)."""

from __future__ import annotations

import re

# What pydantic puts before a validator's own words ("Value error, the dose needs its unit").
_VALIDATOR_PREFIX = re.compile(r"^(Value error|Assertion failed), ")


def validator_message(message: str) -> str:
    """A pydantic error message as a person reads it: a validator's own words, without pydantic's prefix."""
    return _VALIDATOR_PREFIX.sub("", message)


def invalid_request_detail(errors: object, fallback: str) -> str:
    """The sentence of a 422 for a request body or query the framework refused, from its errors (a list of
    {key, message}): the fields it named and the first message, a rule across fields in its own words, else
    `fallback` (the framework's own detail)."""
    listed = [e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else []
    named = [e["key"] for e in listed if e.get("key")]
    messages = [validator_message(str(e.get("message", ""))) for e in listed]
    if named:
        return f"invalid {', '.join(named)}: {messages[0]}"
    return messages[0] if messages and messages[0] else fallback


NUL_IN_TEXT = "text cannot hold the NUL character (U+0000): remove it and send again; nothing was recorded"


def nul_in_text(exc: BaseException) -> bool:
    """Whether `exc` is psycopg refusing a NUL in a text parameter (PostgreSQL text cannot hold one): raised
    before the statement reaches the server, so the transaction it was part of rolls back whole, and the client
    that sent it (a scanner's output, a pasted binary) is told, on whichever route it used."""
    orig = getattr(exc, "orig", None)
    return orig is not None and type(orig).__name__ == "DataError" and "cannot contain NUL" in str(orig)
