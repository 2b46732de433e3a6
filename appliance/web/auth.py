"""Who is asking, and may they: the authentication middleware, the one permission guard, and the
security headers every response carries.

- A request is authenticated by a session cookie (browsers) or a bearer API token (machines). The
  middleware resolves it to a `Principal` in `scope["user"]`, or leaves `None`.
- Cookie-authenticated requests may only *read* under `/api/`: writes there need a bearer token.
  Page forms carry a CSRF token (Litestar's CSRF middleware); SameSite=Strict cookies do the rest.
  The patient's own API (`/api/me/`) is the exception: a patient holds no API token, so its writes take
  the session, with the CSRF token in the `x-csrf-token` header (the app's CSRFConfig checks that path).
- Every route declares `opt={"permission": "layer.resource.action"}` or `opt={"public": True}`;
  the guard fails closed on a route that declares neither. A tenant route (`{tenant}` in its path)
  also requires the principal to be working in that tenant.
"""

from __future__ import annotations

import asyncio
import contextvars

from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers import BaseRouteHandler
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from appliance.substrate import identity
from appliance.substrate.db import Database, UnknownTenant
from appliance.substrate.policy import AccessPolicy
from appliance.substrate.principal import Principal
from appliance.substrate.tenancy import facility_name
from appliance.substrate.token_cache import TokenCache

SESSION_COOKIE = "healthos_session"
UNSAFE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
# Under /api/, the one path a session may write to (CSRF-checked): the patient's own acts (web/me_appointments.py).
SESSION_API = "/api/me/"
# A patient who follows a staff link (a bookmark, an address passed on) reads where their own record is, not
# "this needs a facility role" or a permission's name, which are for staff and hospital IT.
PATIENT_AT_STAFF_PAGE = ("this page is for the staff of {facility}, not part of your record: what {facility} holds of "
                         "you is under Your record")
PATIENT_AT_APPLIANCE_PAGE = ("this page is for the staff who run this system, not part of your record: what each "
                             "facility holds of you is under Your record")

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)


def _cookie(scope: Scope, name: str) -> str | None:
    for key, value in scope.get("headers") or []:
        if key == b"cookie":
            for part in value.decode("latin-1").split(";"):
                k, _, v = part.strip().partition("=")
                if k == name:
                    return v
    return None


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers") or []:
        if key == name:
            return value.decode("latin-1")
    return None


def _bearer(scope: Scope) -> str | None:
    authorization = _header(scope, b"authorization") or ""
    if authorization.lower().startswith("bearer "):
        return authorization[7:].strip()
    return None


def resolve(db: Database, policy: AccessPolicy, scope: Scope,
            tokens: TokenCache | None = None) -> tuple[Principal | None, identity.LiveSession | None]:
    """The principal behind a request (and its session, even one still waiting for MFA). An address naming a
    facility this appliance does not have raises UnknownTenant, with `scope["user"]` the one asking (if anyone is
    signed in), so that a patient is answered in their words."""
    tenant = (scope.get("path_params") or {}).get("tenant")
    if tenant is not None and not db.tenant_exists(tenant):
        scope["user"] = _who(db, policy, scope, tokens)[0]
        raise UnknownTenant(tenant)
    return _who(db, policy, scope, tokens)


def _who(db: Database, policy: AccessPolicy, scope: Scope,
         tokens: TokenCache | None) -> tuple[Principal | None, identity.LiveSession | None]:
    bearer = _bearer(scope)
    if bearer is not None:
        generation = tokens.generation if tokens is not None else 0
        with db.control_autocommit() as conn:
            principal = identity.principal_for_token(conn, bearer, policy)
        if principal is not None and tokens is not None:
            tokens.remember(identity.token_digest(bearer), principal, generation)
        return principal, None
    token = _cookie(scope, SESSION_COOKIE)
    if not token:
        return None, None
    with db.control_autocommit() as conn:
        live = identity.load_session(conn, token)
    if live is None:
        return None, None
    if not live.mfa_passed:
        return None, live
    return identity.principal_for_session(live, policy), live


def _remembered(db: Database, tokens: TokenCache | None, scope: Scope) -> Principal | None:
    """A bearer token's principal from the token cache, when nothing needs the database: the tenant
    in the path is one this process has already found, and the token was seen since the last change
    to any token or account."""
    if tokens is None:
        return None
    bearer = _bearer(scope)
    if bearer is None or not bearer.startswith(identity.TOKEN_PREFIX):
        return None
    tenant = (scope.get("path_params") or {}).get("tenant")
    if tenant is not None and not db.tenant_known(tenant):
        return None
    return tokens.lookup(identity.token_digest(bearer))


def authentication_middleware(app: ASGIApp) -> ASGIApp:
    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            state = scope["litestar_app"].state
            # An unknown tenant raises here, before authentication, on purpose: facility names are
            # public, and a 404 naming the slug tells a mistyped URL apart from a refusal.
            # The loop's own executor rather than anyio's worker threads: every request makes this hop,
            # and anyio's cancel scope and thread handover cost ~105 µs of CPU per hop against ~36 µs
            # (measured with 32 hops in flight). The context is copied so log lines keep the request id.
            tokens = state.get("token_cache")
            principal, live = _remembered(state.db, tokens, scope), None
            if principal is None:
                principal, live = await asyncio.get_running_loop().run_in_executor(
                    None, contextvars.copy_context().run, resolve, state.db, state.policy, scope, tokens)
            path = scope.get("path", "")
            if principal is not None and principal.session_id and scope.get("method") in UNSAFE_METHODS \
                    and path.startswith("/api/") and not path.startswith(SESSION_API):
                principal = None  # cookie sessions only read the API; writes need a bearer token
            scope["user"] = principal
            scope["auth"] = live
        await app(scope, receive, send)

    return middleware


async def permission_guard(connection: ASGIConnection, handler: BaseRouteHandler) -> None:
    # A coroutine, though it does no I/O: Litestar runs a plain-function guard on a worker thread, and
    # that hop (~0.1 ms of CPU here) would be paid by every request for a few attribute reads.
    if handler.opt.get("public"):
        return
    permission = handler.opt.get("permission")
    if not permission:
        # Fail closed: a route that forgot to declare its permission is reachable by nobody.
        raise PermissionDeniedException(f"route {connection.scope.get('path_template')} declares no permission")
    principal: Principal | None = connection.scope.get("user")
    if principal is None:
        raise NotAuthorizedException("sign in first (your session may have expired or been signed out)")
    tenant = connection.path_params.get("tenant")
    if tenant is not None and tenant != principal.tenant:
        if principal.is_patient:
            # The middleware has found the tenant already; its name is cached after the first ask.
            name = await asyncio.get_running_loop().run_in_executor(
                None, facility_name, connection.app.state.db, tenant)
            raise PermissionDeniedException(PATIENT_AT_STAFF_PAGE.format(facility=name))
        raise PermissionDeniedException(
            "you are not working in this facility" if principal.tenant else "this needs a facility role")
    if tenant is None and principal.token_id is not None:
        # A token is one facility's machine client: whatever it was issued with, it never opens the
        # appliance's own pages (operator, regulator, ministry), which no facility role reaches either.
        raise PermissionDeniedException("an API token acts only inside its own facility's API")
    if not principal.can(permission):
        raise PermissionDeniedException(
            PATIENT_AT_APPLIANCE_PAGE if principal.is_patient else f"your role may not do this ({permission})")


def security_headers_middleware(app: ASGIApp) -> ASGIApp:
    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        static = scope.get("path", "").startswith("/static/")
        tls = scope.get("scheme") == "https"

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"no-referrer"),
                    (b"x-frame-options", b"DENY"),
                    (b"cross-origin-opener-policy", b"same-origin"),
                    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
                ]
                if not static:
                    # Pages and API answers may hold patient data: never cached by a browser or a proxy.
                    headers.append((b"cache-control", b"no-store"))
                if tls:
                    headers.append((b"strict-transport-security", b"max-age=31536000; includeSubDomains"))
                existing = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"cache-control"
                            or static]
                message["headers"] = existing + headers
            await send(message)

        await app(scope, receive, send_with_headers)

    return middleware
