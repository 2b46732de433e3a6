"""What the operations layer refuses, each with the HTTP status a route answers with and a message a
bed manager or a registrar can act on. They extend the record's errors so one handler serves both."""

from __future__ import annotations

from appliance.substrate.record import RecordError


class OperationsError(RecordError):
    status = 400

    def __init__(self, detail: str, field: str | None = None, **extra):
        if field is not None:
            extra["field"] = field
        super().__init__(detail, **extra)


class NotFound(OperationsError):
    status = 404


class Invalid(OperationsError):
    """Well-formed input that cannot be done as asked (a time before the arrival, a ward with no beds)."""

    status = 422


class Conflict(OperationsError):
    """The state of the facility is in the way: the bed is taken, the slot is booked, the patient left."""

    status = 409


class Refused(OperationsError):
    """The asker's role reaches only part of the facility (a nurse's ward), and this is outside it."""

    status = 403
