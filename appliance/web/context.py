"""Per-request context: a request id, the tenant from the path, bound into every log line; and the files
a request uploaded, closed when it ends."""

from __future__ import annotations

import re
import time
import uuid

import structlog
from litestar.datastructures import UploadFile
from litestar.types import ASGIApp, Empty, Message, Receive, Scope, Send
from litestar.utils.scope.state import ScopeState

from appliance.web import errors

log = structlog.get_logger("appliance.request")
_CLIENT_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")


def request_context_middleware(app: ASGIApp) -> ASGIApp:
    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        supplied = dict(scope.get("headers") or []).get(b"x-request-id", b"").decode("latin-1")
        request_id = supplied if _CLIENT_REQUEST_ID.fullmatch(supplied) else uuid.uuid4().hex
        tenant = (scope.get("path_params") or {}).get("tenant")
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id, tenant=tenant)
        started = time.perf_counter()
        status = {"code": 500}

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await app(scope, receive, send_with_id)
        except BaseException as exc:
            # Answered by the application's handlers, outside this middleware: log what they will send,
            # not a 500 for every refusal that passes this way (an unknown facility is a 404).
            status["code"] = errors.status_of(exc)
            raise
        finally:
            log.info(
                "request",
                method=scope.get("method"),
                route=scope.get("path_template") or "(unmatched)",
                status=status["code"],
                ms=round((time.perf_counter() - started) * 1000, 2),
            )
            structlog.contextvars.clear_contextvars()

    return middleware


def close_uploads_middleware(app: ASGIApp) -> ASGIApp:
    """Close the files of a multipart form once the request is answered. A handler closes what it reads,
    but a form refused before its handler runs — the CSRF check reads the form to find its token, and a
    permission or CSRF refusal follows — would leave its spooled files to the garbage collector. Litestar
    keeps the parsed form in the request's scope state."""
    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await app(scope, receive, send)
        finally:
            form = ScopeState.from_scope(scope).form if scope["type"] == "http" else Empty
            if form is not Empty:
                for value in form.values():
                    for item in value if isinstance(value, list) else [value]:
                        if isinstance(item, UploadFile):
                            item.file.close()

    return middleware
