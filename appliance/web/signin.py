"""The front door: sign-in with password then TOTP, enrolment with a locally rendered QR code,
facility switching, sign-out and sign-out everywhere, and the caller's own identity as JSON."""

from __future__ import annotations

import base64
import io
from typing import Annotated
from urllib.parse import urlencode

import segno
from anyio import to_thread
from litestar import Request, Response, get, post
from litestar.datastructures import State
from litestar.enums import RequestEncodingType
from litestar.params import Body, FromQuery
from litestar.response import Redirect, Template
from pydantic import BaseModel

from appliance.substrate import identity, totp
from appliance.web.auth import SESSION_COOKIE
from appliance.web.errors import error_page, sentence
from appliance.web.navigation import landing

PUBLIC = {"public": True}


class SignInForm(BaseModel):
    email: str = ""
    password: str = ""
    next: str = ""


class CodeForm(BaseModel):
    code: str = ""
    next: str = ""


def return_to(target: str | None) -> str:
    """Where to go after signing in: the page that sent the person here, if it is a path of this
    appliance (`/t/...?q=x`), else the front page. Anything that could leave the appliance — another
    host (`//host`, `/\\host`), a scheme, a control character — goes to the front page instead."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return "/"
    if any(ord(c) < 0x20 or c in "\\\x7f" for c in target) or len(target) > 2000:
        return "/"
    if target.split("?")[0] in ("/signin", "/signin/mfa", "/enrol", "/signout"):
        return "/"
    return target


def _then(target: str) -> str:
    """The query carrying `target` onwards, when it is not the front page."""
    return "" if target == "/" else "?" + urlencode({"next": target})


class EnrolForm(BaseModel):
    code: str = ""
    password: str = ""
    totp_code: str = ""


class FacilityForm(BaseModel):
    tenant: str = ""
    role: str = ""


Form = Body(media_type=RequestEncodingType.URL_ENCODED)


def _secure(request: Request) -> bool:
    return request.scope.get("scheme") == "https"


def _with_session(response: Response, request: Request, token: str) -> Response:
    response.set_cookie(SESSION_COOKIE, token, path="/", httponly=True, samesite="strict", secure=_secure(request))
    return response


def _clear_session(response: Response, request: Request) -> Response:
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@get("/signin", operation_id="IdentitySignInPage", tags=["identity"], opt=PUBLIC, sync_to_thread=False,
      include_in_schema=False)
def signin_page(request: Request, next: FromQuery[str] = "", enrolled: FromQuery[str] = "") -> Template:
    """`enrolled=1`: back from choosing a password (`enrol`), told the account is ready."""
    return Template("signin.html", context={"error": None, "email": "", "next": return_to(next),
                                            "enrolled": enrolled == "1"})


@post("/signin", operation_id="IdentitySignIn", tags=["identity"], opt=PUBLIC, sync_to_thread=True,
      include_in_schema=False)
def signin(request: Request, state: State, data: Annotated[SignInForm, Form]) -> Response:
    with state.db.control() as conn:
        account_id = identity.check_password(conn, data.email, data.password)
        if account_id is not None:
            mfa = identity.needs_mfa(conn, account_id)
            if not mfa:
                identity.signin_complete(conn, account_id)
            token = identity.start_session(conn, account_id, mfa_passed=not mfa)
    if account_id is None:
        # The failure was counted and audited (committed above) before the refusal is shown.
        return Template("signin.html", context={"error": sentence(identity.SIGNIN_REFUSED), "email": data.email,
                                                "next": return_to(data.next)}, status_code=401)
    target = return_to(data.next)
    return _with_session(Redirect(f"/signin/mfa{_then(target)}" if mfa else target), request, token)


@get("/signin/mfa", operation_id="IdentityMfaPage", tags=["identity"], opt=PUBLIC, sync_to_thread=False,
     include_in_schema=False)
def mfa_page(request: Request, next: FromQuery[str] = "") -> Response:
    if request.scope.get("auth") is None:
        return Redirect(f"/signin{_then(return_to(next))}")
    return Template("mfa.html", context={"error": None, "next": return_to(next)})


@post("/signin/mfa", operation_id="IdentityMfa", tags=["identity"], opt=PUBLIC, sync_to_thread=True,
      include_in_schema=False)
def mfa(request: Request, state: State, data: Annotated[CodeForm, Form]) -> Response:
    live: identity.LiveSession | None = request.scope.get("auth")
    if live is None:
        return Redirect("/signin")
    with state.db.control() as conn:
        passed = identity.check_totp(conn, live.account_id, data.code)
        if passed:
            identity.revoke_session(conn, live.id)  # a new token after the second factor: no session fixation
            token = identity.start_session(conn, live.account_id, mfa_passed=True)
            identity.signin_complete(conn, live.account_id)
    if not passed:
        return Template("mfa.html", context={"error": sentence(identity.SIGNIN_REFUSED), "next": return_to(data.next)},
                        status_code=401)
    return _with_session(Redirect(return_to(data.next)), request, token)


def _qr_svg_data_uri(uri: str) -> str:
    # A standalone SVG document, with its namespace: an <img> shows nothing of the inline form (`svg_inline`, meant
    # for HTML), which has none.
    svg = io.BytesIO()
    segno.make(uri, error="m").save(svg, kind="svg", scale=5, dark="#111", light="#fff", xmldecl=False)
    return "data:image/svg+xml;base64," + base64.b64encode(svg.getvalue()).decode()


@get("/enrol", operation_id="IdentityEnrolPage", tags=["identity"], opt=PUBLIC, include_in_schema=False)
async def enrol_page(state: State, code: FromQuery[str] = "") -> Template:
    # Async with an explicit thread hop: Litestar 2.25 returned this handler's coroutine unawaited when
    # it was declared sync with sync_to_thread=True (a 500 on every enrolment link).
    def pending() -> identity.PendingEnrolment:
        with state.db.control() as conn:
            return identity.pending_enrolment(conn, code)

    try:
        row = await to_thread.run_sync(pending)
    except identity.IdentityError as refused:
        return Template("enrol.html", context={"error": sentence(str(refused)), "code": None}, status_code=404)
    uri = totp.provisioning_uri(row.totp_secret, row.email, "HealthOS")
    return Template("enrol.html", context={
        "error": None, "code": code, "email": row.email, "secret": row.totp_secret,
        "qr": _qr_svg_data_uri(uri), "mfa_required": row.mfa_required,
    })


@post("/enrol", operation_id="IdentityEnrol", tags=["identity"], opt=PUBLIC, sync_to_thread=True,
      include_in_schema=False)
def enrol(request: Request, state: State, data: Annotated[EnrolForm, Form]) -> Response:
    try:
        with state.db.control() as conn:
            identity.complete_enrolment(conn, data.code, data.password, data.totp_code or None)
    except identity.IdentityError as refused:
        with state.db.control() as conn:
            try:
                row = identity.pending_enrolment(conn, data.code)
            except identity.IdentityError:
                return Template("enrol.html", context={"error": sentence(str(refused)), "code": None},
                                status_code=404)
        uri = totp.provisioning_uri(row.totp_secret, row.email, "HealthOS")
        return Template("enrol.html", status_code=422, context={
            "error": sentence(str(refused)), "code": data.code, "email": row.email, "secret": row.totp_secret,
            "qr": _qr_svg_data_uri(uri), "mfa_required": row.mfa_required,
        })
    return Redirect("/signin?enrolled=1")


@post("/signout", operation_id="IdentitySignOut", tags=["identity"], opt={"permission": "identity.session.revoke"},
      sync_to_thread=True, include_in_schema=False)
def signout(request: Request, state: State) -> Response:
    with state.db.control() as conn:
        identity.revoke_session(conn, request.user.session_id)
    return _clear_session(Redirect("/signin"), request)


@post("/signout/everywhere", operation_id="IdentitySignOutEverywhere", tags=["identity"],
      opt={"permission": "identity.session.revoke"}, sync_to_thread=True, include_in_schema=False)
def signout_everywhere(request: Request, state: State) -> Response:
    with state.db.control() as conn:
        identity.revoke_all_sessions(conn, request.user.account_id)
    return _clear_session(Redirect("/signin"), request)


@post("/session/facility", operation_id="IdentitySwitchFacility", tags=["identity"],
      opt={"permission": "identity.session.read"}, sync_to_thread=True, include_in_schema=False)
def switch_facility(request: Request, state: State, data: Annotated[FacilityForm, Form]) -> Response:
    try:
        with state.db.control() as conn:
            identity.switch_tenant(conn, request.user.session_id, request.user.account_id, data.tenant, data.role)
    except identity.IdentityError as refused:
        return error_page(request, 403, str(refused))  # the home page's form: a page, not JSON
    return Redirect("/")


@post("/session/alive", operation_id="IdentityKeepSessionAlive", tags=["identity"],
      opt={"permission": "identity.session.read"}, sync_to_thread=False, include_in_schema=False, status_code=204)
def keep_alive(request: Request) -> None:
    """Typing in a form is activity: a page's script posts here (with the page's CSRF token) while the
    person types, at most once a minute, so a long note is not lost to the idle timeout. A request is what
    marks a session seen (`identity.load_session`, in the authentication middleware): this one does
    nothing else. A session already ended answers 401, and the page says so."""


@get("/", operation_id="PortalHome", tags=["portal"], opt={"permission": "identity.session.read"},
     sync_to_thread=True, include_in_schema=False)
def home(request: Request, state: State) -> Template:
    with state.db.control() as conn:
        memberships = identity.memberships_of(conn, request.user.account_id)
    return Template("home.html", context={"principal": request.user, "memberships": memberships,
                                          "landing": landing(request.user)})


class Me(BaseModel):
    account_id: str
    display_name: str
    kind: str
    tenant: str | None
    role: str | None
    permissions: list[str]


@get("/api/me", operation_id="IdentityWhoAmI", tags=["identity"], opt={"permission": "identity.session.read"},
     sync_to_thread=False)
def who_am_i(request: Request) -> Me:
    """The caller's own identity, facility, role and permissions."""
    principal = request.user
    return Me(account_id=str(principal.account_id), display_name=principal.display_name, kind=principal.kind,
              tenant=principal.tenant, role=principal.role, permissions=sorted(principal.permissions))


ROUTES = [signin_page, signin, mfa_page, mfa, enrol_page, enrol, signout, signout_everywhere, switch_facility,
          keep_alive, home, who_am_i]
