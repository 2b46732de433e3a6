"""What the financial layer refuses, each with the HTTP status a route answers with and a message a
billing clerk can act on. They extend the record's errors so one handler serves every layer."""

from __future__ import annotations

from appliance.substrate.record import RecordError


class FinancialError(RecordError):
    status = 400


class NotFound(FinancialError):
    status = 404


class Invalid(FinancialError):
    """Well-formed input that is wrong for the bill (an overpayment, an unknown payer); names the field."""

    status = 422

    def __init__(self, detail: str, field: str | None = None, **extra):
        if field is not None:
            extra["field"] = field
        super().__init__(detail, **extra)


class Conflict(FinancialError):
    """The bill is not in a state that allows this (a final invoice changed, unpriced items left)."""

    status = 409
