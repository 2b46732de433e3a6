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
