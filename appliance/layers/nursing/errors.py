"""What the nursing layer refuses, each with the HTTP status a route answers with and a message a nurse
can act on. They extend the record's errors so one handler serves every layer."""

from __future__ import annotations

from appliance.substrate.record import RecordError


class NursingError(RecordError):
    status = 400


class NotFound(NursingError):
    status = 404


class Forbidden(NursingError):
    status = 403


class Invalid(NursingError):
    """Well-formed input that is clinically or structurally wrong; names the field."""

    status = 422

    def __init__(self, detail: str, field: str | None = None, **extra):
        if field is not None:
            extra["field"] = field
        super().__init__(detail, **extra)


class Conflict(NursingError):
    status = 409
