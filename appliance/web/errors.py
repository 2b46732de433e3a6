"""How failures reach a client: a structured JSON body with a message a person understands, a
status that says whose fault it was, and never a stack trace."""

from __future__ import annotations

import structlog
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.response import Redirect
from litestar.status_codes import HTTP_404_NOT_FOUND, HTTP_500_INTERNAL_SERVER_ERROR

from appliance.substrate.db import InvalidSlug, UnknownTenant

log = structlog.get_logger(__name__)


def problem(status: int, detail: str, **extra) -> Response:
    return Response({"status_code": status, "detail": detail, **extra}, status_code=status)


def unknown_tenant(_: Request, exc: UnknownTenant) -> Response:
    return problem(HTTP_404_NOT_FOUND, str(exc), tenant=exc.slug)


def invalid_slug(_: Request, exc: InvalidSlug) -> Response:
    return problem(HTTP_404_NOT_FOUND, f"no tenant by that name: {exc}")


def http_exception(request: Request, exc: HTTPException) -> Response:
    if exc.status_code == 401 and request.method == "GET" and not request.url.path.startswith("/api/"):
        return Redirect("/signin")  # a person at a browser is sent to the front door, not shown JSON
    extra = {}
    if isinstance(exc, ValidationException) and exc.extra:
        extra["errors"] = exc.extra
    return problem(exc.status_code, exc.detail, **extra)


def unexpected(request: Request, exc: Exception) -> Response:
    # Logged with its traceback for the operator; the client learns only that it was our fault.
    log.error("unhandled_error", path=request.scope.get("path_template", ""), exc_info=exc)
    return problem(HTTP_500_INTERNAL_SERVER_ERROR,
                   "the appliance could not complete this request; the error was logged with its request id")


handlers = {
    UnknownTenant: unknown_tenant,
    InvalidSlug: invalid_slug,
    HTTPException: http_exception,
    Exception: unexpected,
}
