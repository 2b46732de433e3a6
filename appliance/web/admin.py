"""The facility admin's pages, under `/t/{tenant}/admin/`: the facility's API tokens (issued for a
machine client with exactly the permissions it needs, shown once, revoked at once) and the staff who
work here with their roles, wards and account states.

A token may carry any permission the facility API's routes declare, except identity's own: a machine
client never manages tokens. Accounts for people are created by the appliance operator
(`healthos account create`), who holds the keys to identity; the staff page shows them, read-only.
Issuing and revoking a token are audited (identity.token.issue/revoke). The Interfaces page lists what the HL7 v2
feeds sent without naming a patient; one message as received is patient data, its read audited
(interop.hl7.message.read), and so is its replay (interop.hl7.message.replay).
"""

from __future__ import annotations

import datetime as dt
import re
from collections import defaultdict
from typing import Any

from anyio import to_thread
from litestar import Litestar, Response, Router, get, post
from litestar.response import Template

from appliance.interop.hl7v2 import feed as hl7_feed
from appliance.interop.hl7v2 import history as hl7_history
from appliance.layers.nursing import views
from appliance.substrate import identity
from appliance.substrate.tenancy import facility_today_and_start
from appliance.web import portal
from appliance.web.errors import error_page
from appliance.web.portal import Asking, FormData, Id, NavItem, Query, Tenant, form_values, page, see_other

portal.NAV.extend([
    NavItem("Administration", "tokens", "API tokens", "/admin/tokens", "identity.token.read"),
    NavItem("Administration", "staff", "Staff", "/admin/staff", "identity.membership.read"),
    NavItem("Administration", "interfaces", "Interfaces", "/admin/interfaces", "interop.hl7.read"),
])
portal.NOTICES.update({"token-revoked": "Token revoked: a client presenting it is refused from now on.",
                       "ward-moved": "Ward changed: their next page is the new ward's.",
                       "hl7-replay-applied": "Replayed and applied (AA): the message is in the record, once.",
                       "hl7-replay-refused": "Replayed, and not applied again: nothing of it was written to the "
                                             "record, and what was wrong is listed below."})

API_PREFIX = "/api/t/{tenant"


def token_permissions(app: Litestar) -> dict[str, list[str]]:
    """What a token may be given: each permission a route of the facility API declares (identity's own
    excepted), with the calls it opens ("GET /api/t/{tenant}/patients")."""
    opens: dict[str, list[str]] = defaultdict(list)
    for route in app.routes:
        if not route.path.startswith(API_PREFIX):
            continue
        for handler in getattr(route, "route_handlers", []):
            permission = handler.opt.get("permission")
            if permission and not permission.startswith("identity."):
                path = re.sub(r":\w+}", "}", route.path)
                opens[permission].extend(f"{method} {path}" for method in sorted(handler.http_methods))
    return {permission: sorted(set(calls)) for permission, calls in sorted(opens.items())}


def _tokens_page(request: Asking, tenant: str, *, status: int = 200, issued: dict | None = None,
                 errors: dict | None = None, values: dict | None = None) -> Template:
    with request.app.state.db.control() as conn:
        tokens = identity.api_tokens_of(conn, tenant)
    offered = token_permissions(request.app)
    layers: dict[str, list[str]] = defaultdict(list)
    for permission in offered:
        layers[permission.split(".", 1)[0]].append(permission)
    return page(request, "admin/tokens.html", status=status, active="tokens", tokens=tokens, offered=offered,
                layers=dict(layers), issued=issued, errors=errors or {}, values=values or {"permissions": []})


@get("/tokens", operation_id="PortalApiTokens", opt={"permission": "identity.token.read"}, include_in_schema=False)
async def tokens_page(request: Asking, tenant: Tenant) -> Template:
    """The facility's API tokens, live and revoked, and the form that issues one."""
    return await to_thread.run_sync(lambda: _tokens_page(request, tenant))


@post("/tokens", operation_id="PortalIssueApiToken", opt={"permission": "identity.token.create"},
      include_in_schema=False)
async def issue_token(request: Asking, tenant: Tenant, data: FormData) -> Template:
    """Issue a token: the page that answers shows its value once; it is never shown again."""
    raw = data.get("permission")
    chosen = sorted({p for p in (raw if isinstance(raw, list) else [raw]) if isinstance(p, str) and p})
    name = form_values(data).get("name") or ""
    values: dict[str, Any] = {"name": name, "permissions": chosen}

    def work() -> Template:
        offered = token_permissions(request.app)
        errors = {}
        unknown = [p for p in chosen if p not in offered]
        if unknown:
            errors["permission"] = f"Not a permission a token can carry here: {', '.join(unknown)}."
        elif not chosen:
            errors["permission"] = "Choose at least one permission: a token opens only what it names."
        if not name:
            errors["name"] = "Name the token by what it is for, e.g. 'lab HL7 feed'."
        if not errors:
            try:
                with request.app.state.db.control() as conn:
                    token = identity.issue_machine_token(conn, request.app.state.policy, tenant=tenant, name=name,
                                                         permissions=chosen, by=request.user)
                return _tokens_page(request, tenant, issued={"name": " ".join(name.split()), "token": token,
                                                             "permissions": chosen})
            except identity.IdentityError as refused:
                errors["name"] = str(refused)[:1].upper() + str(refused)[1:] + "."
        return _tokens_page(request, tenant, status=422, errors=errors, values=values)

    return await to_thread.run_sync(work)


@post("/tokens/{token_id:uuid}/revoke", operation_id="PortalRevokeApiToken",
      opt={"permission": "identity.token.revoke"}, include_in_schema=False)
async def revoke_token(request: Asking, tenant: Tenant, token_id: Id) -> Response:
    def work() -> None:
        with request.app.state.db.control() as conn:
            identity.revoke_api_token(conn, token_id, by=request.user, tenant=tenant)

    try:
        await to_thread.run_sync(work)
    except identity.IdentityError:
        # Another facility's token, a guessed id or one already revoked: the same answer for each.
        return error_page(request, 404, "No live API token of this facility has that id.")
    return see_other(request, f"/t/{tenant}/admin/tokens?done=token-revoked")


def _staff_page(request: Asking, tenant: str, *, status: int = 200, errors: dict | None = None) -> Template:
    db = request.app.state.db
    with db.control() as conn:
        staff = identity.staff_of(conn, tenant)
    with db.tenant(tenant) as conn:
        wards = views.wards(conn)
    policy = request.app.state.policy
    return page(request, "admin/staff.html", status=status, active="staff", staff=staff, wards=wards,
                ward_scoped={s["role"] for s in staff if policy.is_ward_scoped(s["role"])}, errors=errors or {})


@get("/staff", operation_id="PortalStaff", opt={"permission": "identity.membership.read"}, include_in_schema=False)
async def staff_page(request: Asking, tenant: Tenant) -> Template:
    """Who works here: name, e-mail, role, ward, and whether the account is active, locked, disabled or
    still awaiting enrolment; a ward-scoped person (a nurse) is moved to another ward from here."""
    return await to_thread.run_sync(lambda: _staff_page(request, tenant))


@post("/staff/{account_id:uuid}/ward", operation_id="PortalMoveWard", opt={"permission": "identity.membership.update"},
      include_in_schema=False)
async def move_ward(request: Asking, tenant: Tenant, account_id: Id, data: FormData) -> Response:
    """Move a ward-scoped person to another of the facility's wards; their next page is that ward's."""
    values = form_values(data)
    role, ward = values.get("role") or "", values.get("ward") or ""

    def work() -> Response:
        db = request.app.state.db
        if not request.app.state.policy.is_ward_scoped(role):
            return error_page(request, 404, "Nobody with a ward-scoped role of that name works here.")
        with db.tenant(tenant) as conn:
            known = {w["code"] for w in views.wards(conn)}
        if ward not in known:
            choose = f"Choose one of this facility's wards ({', '.join(sorted(known))})."
            return _staff_page(request, tenant, status=422, errors={str(account_id): choose})
        try:
            with db.control() as conn:
                identity.set_ward(conn, account_id=account_id, tenant=tenant, role=role, ward=ward, by=request.user)
        except identity.IdentityError:
            # Another facility's person, a guessed id, or a role they do not hold here: the same answer.
            return error_page(request, 404, "Nobody with that role and id works in this facility.")
        return see_other(request, f"/t/{tenant}/admin/staff?done=ward-moved")

    return await to_thread.run_sync(work)


# What the Interfaces page lists: every message, or only those not applied that no resend has put right.
INTERFACE_LISTS = {"": "Every message", "not-applied": "Not applied, not yet put right by a resend"}
SENDERS_SINCE = dt.timedelta(days=30)


@get("/interfaces", operation_id="PortalInterfaces", opt={"permission": "interop.hl7.read"}, include_in_schema=False)
async def interfaces_page(request: Asking, tenant: Tenant, show: Query = "",
                          sender: Query = "") -> Template | Response:
    """The facility's HL7 v2 feeds: today's messages accepted (AA), not applied (AE) and rejected (AR),
    and the last 100 with what was wrong with each and whether a resend was since applied; `show=not-applied`
    lists only those still to put right, `sender` one sending application's. No patient data: the list shows the
    log's clear columns, each message's text on its own page."""
    if show not in INTERFACE_LISTS:
        return error_page(request, 422, f"This page has no list {show[:40]!r}: leave show out for every message, "
                          "or give show=not-applied for those not applied and not since resent")

    def work() -> Template:
        _, midnight = facility_today_and_start(request.app.state.db, tenant)
        with request.app.state.db.tenant(tenant) as conn:
            counts = hl7_history.counts_since(conn, midnight)
            messages = hl7_history.recent(conn, 100, not_applied=show == "not-applied", sender=sender)
            senders = hl7_history.senders_since(conn, midnight - SENDERS_SINCE)
        return page(request, "admin/interfaces.html", active="interfaces", counts=counts, messages=messages,
                    senders=senders, show=show, sender=sender, lists=INTERFACE_LISTS)

    return await to_thread.run_sync(work)


@get("/interfaces/{message_id:uuid}", operation_id="PortalInterfaceMessage",
     opt={"permission": "interop.hl7.message.read"}, include_in_schema=False)
async def interface_message_page(request: Asking, tenant: Tenant, message_id: Id) -> Template | Response:
    """One message a feed sent: what was done with it, its text as received (patient data: the read is audited),
    the resends and replays beside it, and Replay for one not applied, to whom may replay it."""

    def work() -> Template | Response:
        with request.app.state.db.tenant(tenant) as conn:
            message = hl7_history.read_message(conn, tenant, request.user, message_id)
        if message is None:
            # Another facility's message is in its own schema: a guessed id and theirs get the same answer.
            return error_page(request, 404, "No message your feeds sent to this facility has that id.")
        text = message["text"]
        replayable = (request.user.can("interop.hl7.message.replay") and text is not None
                      and message["ack_code"] != "AA" and message["applied_at"] is None
                      and message["token_id"] is not None)
        feed_live = False
        if replayable:
            with request.app.state.db.control_autocommit() as conn:
                feed_live = identity.principal_for_token_id(conn, message["token_id"]) is not None
        return page(request, "admin/interface_message.html", active="interfaces", m=message, replayable=replayable,
                    feed_live=feed_live,
                    segments=[s for s in text.replace("\r\n", "\r").replace("\n", "\r").split("\r") if s]
                    if text else [])

    return await to_thread.run_sync(work)


@post("/interfaces/{message_id:uuid}/replay", operation_id="PortalReplayInterfaceMessage",
      opt={"permission": "interop.hl7.message.replay"}, include_in_schema=False)
async def replay_interface_message(request: Asking, tenant: Tenant, message_id: Id) -> Response:
    """Run a message not applied again as it was received, as its feed: applied once however often it is
    pressed; its result and ACK are recorded beside it. A refusal writes nothing and says why."""
    try:
        replayed, ack = await to_thread.run_sync(
            lambda: hl7_feed.replay(request.app.state.db, tenant, message_id, request.user))
    except hl7_feed.ReplayRefused as refused:
        return error_page(request, refused.status, refused.problem)
    done = "hl7-replay-applied" if ack.code == "AA" else "hl7-replay-refused"
    return see_other(request, f"/t/{tenant}/admin/interfaces/{replayed}?done={done}")


ROUTES = [tokens_page, issue_token, revoke_token, staff_page, move_ward, interfaces_page, interface_message_page,
          replay_interface_message]

admin_router = Router(path="/t/{tenant:str}/admin", route_handlers=ROUTES,
                      exception_handlers=portal.EXCEPTION_HANDLERS, tags=["portal"], include_in_schema=False)
