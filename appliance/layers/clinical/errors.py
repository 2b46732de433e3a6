"""What the clinical layer refuses, each with the HTTP status a route answers with and a message a
clinician can act on. They extend the record's errors so one handler serves both."""

from __future__ import annotations

from appliance.substrate.record import RecordError


class ClinicalError(RecordError):
    status = 400


class NotFound(ClinicalError):
    status = 404


class Invalid(ClinicalError):
    """Input that is well-formed JSON but clinically or structurally wrong; names the field."""

    status = 422

    def __init__(self, detail: str, field: str | None = None, **extra):
        if field is not None:
            extra["field"] = field
        super().__init__(detail, **extra)


class Conflict(ClinicalError):
    status = 409


class TooOften(ClinicalError):
    """A question asked more often than the appliance answers it (a guess repeated to learn what it guards)."""

    status = 429
