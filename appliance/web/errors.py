"""How failures reach a client: a structured JSON body with a message a person understands, a
status that says whose fault it was, and never a stack trace — or, for a person at a browser asking for
a page (not `/api/`), the same message as a page with a way back."""

from __future__ import annotations

from urllib.parse import urlencode

import sqlalchemy as sa
import structlog
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.response import Redirect, Template
from litestar.status_codes import (
    HTTP_404_NOT_FOUND,
    HTTP_422_UNPROCESSABLE_ENTITY,
    HTTP_429_TOO_MANY_REQUESTS,
    HTTP_500_INTERNAL_SERVER_ERROR,
    HTTP_503_SERVICE_UNAVAILABLE,
)

from appliance.substrate.db import InvalidSlug, UnknownTenant
from appliance.substrate.problems import NUL_IN_TEXT, nul_in_text
from appliance.web.navigation import landing

log = structlog.get_logger(__name__)
NO_PAGE = "there is no page at this address; it may have been mistyped, or the link is out of date"
# A browser's posts throttled are the sign-in pages' alone (app.THROTTLED_POSTS): the framework's 'Too Many Requests'
# said neither why nor what to do, and its way back led to the same refusal.
# The throttle's Retry-After says how long is left of the minute; a person reads it in words.
SIGN_IN_THROTTLED = ("too many sign-ins were tried from this device or its network in the last minute: wait {wait}, "
                     "then sign in again")


def problem(status: int, detail: str, **extra) -> Response:
    return Response({"status_code": status, "detail": detail, **extra}, status_code=status)


def sentence(text: str) -> str:
    """A refusal as a person reads it on a page: a capital first letter and a full stop. The services'
    messages are written lower-case and unstopped, to read inside a JSON `detail` or after the CLI's
    "error: "."""
    text = text[:1].upper() + text[1:]
    return text if text.endswith((".", "?", "!")) else text + "."


def _asked_by_patient(request: Request) -> bool:
    principal = request.scope.get("user")
    return principal is not None and principal.is_patient


def error_page(request: Request, status: int, detail: str) -> Response:
    """The refusal or failure as a page: what happened in a sentence, and the way back to one's facility."""
    principal = request.scope.get("user")
    # A patient's way back is their own record, the page they know (their home page is a link to it).
    patient = _asked_by_patient(request)
    return Template("portal/error.html", status_code=status, context={
        "status": status, "detail": sentence(detail), "principal": principal,
        "home": "/me" if patient else landing(principal), "patient": patient,
    })


def _wants_page(request: Request) -> bool:
    # A person at a browser following a link or typing an address; API clients ask for JSON.
    return not request.url.path.startswith("/api/") and "text/html" in request.headers.get("accept", "")


def _refusal(request: Request, status: int, detail: str, **extra) -> Response:
    return error_page(request, status, detail) if _wants_page(request) else problem(status, detail, **extra)


# A patient who follows a mistyped or old link to a facility's page reads of a facility and their record, not of a
# "tenant" or of the characters a code may hold, which are for hospital IT.
PATIENT_AT_UNKNOWN_FACILITY = ("no facility on this system is at this address (the link may be mistyped or out of "
                               "date): what each facility holds of you is under Your record")


def unknown_tenant(request: Request, exc: UnknownTenant) -> Response:
    if _asked_by_patient(request):
        return _refusal(request, HTTP_404_NOT_FOUND, PATIENT_AT_UNKNOWN_FACILITY)
    return _refusal(request, HTTP_404_NOT_FOUND, str(exc), tenant=exc.slug)


def invalid_slug(request: Request, exc: InvalidSlug) -> Response:
    if _asked_by_patient(request):
        return _refusal(request, HTTP_404_NOT_FOUND, PATIENT_AT_UNKNOWN_FACILITY)
    return _refusal(request, HTTP_404_NOT_FOUND, f"no tenant by that name: {exc}")


def sign_in_first(request: Request) -> Redirect:
    """A person at a browser without a session goes to the front door, and is brought back afterwards
    to the page they asked for (the sign-in pages check it is a page of this appliance)."""
    wanted = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return Redirect("/signin" if wanted == "/" else f"/signin?{urlencode({'next': wanted})}")


def http_exception(request: Request, exc: HTTPException) -> Response:
    if exc.status_code == 401 and request.method == "GET" and not request.url.path.startswith("/api/"):
        return sign_in_first(request)  # not shown JSON
    if exc.status_code == HTTP_429_TOO_MANY_REQUESTS and _wants_page(request):
        seconds = (exc.headers or {}).get("Retry-After")
        wait = f"{seconds} second{'' if seconds == '1' else 's'}" if seconds else "a minute"
        refusal = error_page(request, exc.status_code, SIGN_IN_THROTTLED.format(wait=wait))
    elif _wants_page(request):
        no_route = exc.status_code == HTTP_404_NOT_FOUND and exc.detail == "Not Found"  # the router's own
        refusal = error_page(request, exc.status_code, NO_PAGE if no_route else exc.detail)
    else:
        extra = {}
        if isinstance(exc, ValidationException) and exc.extra:
            extra["errors"] = exc.extra
        refusal = problem(exc.status_code, exc.detail, **extra)
    # What the exception says beyond its sentence: a throttled client's Retry-After, a 405's Allow.
    for name, value in (exc.headers or {}).items():
        refusal.set_header(name, value)
    return refusal


def unexpected(request: Request, exc: Exception) -> Response:
    # Logged with its traceback for the operator; the client learns only that it was our fault.
    log.error("unhandled_error", path=request.scope.get("path_template", ""), exc_info=exc)
    return _refusal(request, HTTP_500_INTERNAL_SERVER_ERROR,
                    "the appliance could not complete this request; the error was logged with its request id")


def data_error(request: Request, exc: sa.exc.DataError) -> Response:
    """A NUL in any text a client sent (a scanner's output, a pasted binary) is the client's to fix, said
    so on every route at once; any other DataError is our fault."""
    if nul_in_text(exc):
        return _refusal(request, HTTP_422_UNPROCESSABLE_ENTITY, NUL_IN_TEXT)
    return unexpected(request, exc)


# Seconds a client is asked to wait when no database connection came free in the pool's timeout (30 s).
BUSY_RETRY_AFTER = 5


def database_busy(request: Request, exc: sa.exc.TimeoutError) -> Response:
    """No database connection came free in time: the appliance is overloaded, not broken, and the request
    wrote nothing (it never had a transaction). Said so, with when to try again, not as our fault."""
    log.warning("database_pool_exhausted", path=request.scope.get("path_template", ""))
    refusal = _refusal(request, HTTP_503_SERVICE_UNAVAILABLE, "the appliance is busier than it can answer just "
                       f"now and did nothing with this request: try again in {BUSY_RETRY_AFTER} seconds")
    refusal.set_header("Retry-After", str(BUSY_RETRY_AFTER))
    return refusal


def status_of(exc: BaseException) -> int:
    """The status these handlers answer `exc` with: for the request log, written where the exception
    passes on its way to them."""
    if isinstance(exc, HTTPException):
        return exc.status_code
    if isinstance(exc, UnknownTenant | InvalidSlug):
        return HTTP_404_NOT_FOUND
    if nul_in_text(exc):
        return HTTP_422_UNPROCESSABLE_ENTITY
    if isinstance(exc, sa.exc.TimeoutError):
        return HTTP_503_SERVICE_UNAVAILABLE
    return HTTP_500_INTERNAL_SERVER_ERROR


handlers = {
    UnknownTenant: unknown_tenant,
    InvalidSlug: invalid_slug,
    HTTPException: http_exception,
    sa.exc.DataError: data_error,
    sa.exc.TimeoutError: database_busy,
    Exception: unexpected,
}
