"""The tenant portal's referral pages: "Referrals" on a patient's chart (those sent from it, their answers and
feedback, and "Refer to another facility": the form with the facility, urgency, reason, the summary and the chart
items to send), and the facility's "Referrals received" (open ones first, the most pressing first) and "Referrals
sent", each referral's page with its letter and what this facility may do with it: accept (registering the person
here from the letter when there is no chart of them yet, and booking the visit in a free slot of the referral's
clinic if one is chosen: this room registers scheduling's booking with the clinical layer), decline with a reason,
write the feedback after the visit, or withdraw one sent and not yet answered.

It keeps the portal's rules (see `portal.py`): each route declares the permission the API declares for the same act
(`clinical.referral.read`, `.write`, `.accept`, `.answer`); the chart's pages pass the care-relationship guard; the
record and the exchange are read and written only through the clinical layer's referral service
(appliance/layers/clinical/referral.py, audited there); what is refused comes back beside its field with what was
typed kept (422), or as a sentence on the referral's page (409); Post/Redirect/Get. No script.
"""

from __future__ import annotations

import uuid
from typing import Any

import sqlalchemy as sa
from litestar import Response, Router, get, post
from litestar.response import Template
from pydantic import ValidationError

from appliance.layers.clinical import referral
from appliance.layers.clinical.death_routes import link_to_person
from appliance.layers.clinical.schemas import ReferralAcceptIn, ReferralFeedbackIn, ReferralIn, Retraction
from appliance.layers.operations import scheduling
from appliance.substrate.db import Database
from appliance.substrate.record import RecordError
from appliance.web import portal
from appliance.web.portal import (
    HELPERS,
    PATIENT,
    Asking,
    FormData,
    Id,
    Tenant,
    banner,
    field_errors,
    form_values,
    page,
    people_named,
    see_other,
    template_message,
)

portal.NOTICES.update({
    "referral-sent": "Referral sent. The facility referred to sees it with your letter; its answer and feedback "
                     "come back here.",
    "referral-withdrawn": "Referral withdrawn, with your reason.",
    "referral-accepted": "Referral accepted. The patient's chart here is linked to the same person: book the visit "
                         "from it.",
    "referral-registered": "Referral accepted, and the patient registered here from the letter (linked to the same "
                           "person): book the visit from the chart.",
    "referral-booked": "Referral accepted and the visit booked in the slot chosen: it is on the clinic's list, "
                       "its reason naming the referral.",
    "referral-declined": "Referral declined; the referring facility reads your reason.",
    "referral-completed": "Feedback sent to the referring facility; the referral is completed.",
})
portal.NAV.append(portal.NavItem("Clinical", "referrals", "Referrals received", "/referrals",
                                 "clinical.referral.read"))
portal.CHART_TABS.insert(len(portal.CHART_TABS) - 1,
                         portal.ChartTab("referrals", "Referrals", "/referrals", "clinical.referral.read"))

def _timeline_referrals(conn, principal, patient_id: uuid.UUID) -> list[dict]:
    return referral.sent(conn, principal, patient_id) + referral.received(conn, principal, patient_id)


def _timeline_words(row: dict) -> tuple[str, str]:
    urgency = referral.URGENCY_WORDS[row["urgency"]].lower()
    what = (f"Referred to {row['to_facility'] or row['to_tenant']} ({urgency})" if row["side"] == "sent"
            else f"Referred here from {row['from_facility'] or row['from_tenant']} ({urgency})")
    return what, f"{referral.STATUS_WORDS[row['status']]}: {row['reason']}"


# On the patient's timeline the day it was sent, where it stands now.
portal.TIMELINE_SOURCES.append(portal.TimelineSource("clinical", "referral", "Referrals", "clinical.referral.read",
                                                     _timeline_referrals, _timeline_words, lambda row: row["sent_at"]))

WORDS = {"urgency": referral.URGENCY_WORDS, "status": referral.STATUS_WORDS, "items": referral.ITEM_WORDS}
ONE = "/referrals/{referral_id:uuid}"
BOOKING_PERMISSION = "operations.appointment.create"
# How far ahead the referral's page offers its clinic's free slots to book on accepting.
SLOTS_AHEAD_DAYS = 14


def _book_referred_visit(conn, principal, patient_id: uuid.UUID, slot_id: uuid.UUID, reason: str,
                         clinic_code: str | None) -> dict:
    return scheduling.book(conn, principal, patient_id, slot_id, reason, clinic_code=clinic_code)


# Accepting a referral may book its visit (the API's and this page's): the clinical layer cannot import scheduling.
referral.register_booking(_book_referred_visit, BOOKING_PERMISSION)


def _names(db: Database, rows: list[dict]) -> dict:
    return people_named(db, {r[k] for r in rows for k in ("sent_by", "answered_by", "completed_by")})


# -- from the chart ----------------------------------------------------------------------------------------------


@get(PATIENT + "/referrals", operation_id="PortalPatientReferrals", opt={"permission": "clinical.referral.read"},
     sync_to_thread=True, include_in_schema=False)
def patient_referrals(request: Asking, tenant: Tenant, patient_id: Id) -> Template:
    """The patient's referrals: sent from this chart (with each answer and feedback) and received onto it."""
    db: Database = request.app.state.db
    with db.tenant(tenant) as conn:
        top = banner(conn, request.user, patient_id)
        rows = referral.sent(conn, request.user, patient_id) + referral.received(conn, request.user, patient_id)
    return page(request, "referral/patient.html", active="patients", patient_id=patient_id, tab="referrals", **top,
                rows=rows, names=_names(db, rows), words=WORDS, **HELPERS)


def _form_page(request: Asking, tenant: str, patient_id: uuid.UUID, *, status: int = 200,
               values: dict | None = None, chosen: set[str] | None = None, errors: dict | None = None) -> Template:
    db: Database = request.app.state.db
    with db.tenant(tenant) as conn:
        top = banner(conn, request.user, patient_id)
        items = referral.letter_items(conn, request.user, patient_id)
    options = []
    for to in referral.destinations(db, tenant):
        options.append((to["tenant"], f"{to['name']} — the facility decides the clinic"))
        options.extend((f"{to['tenant']}:{c['code']}", f"{to['name']} — {c['name']}") for c in to["clinics"])
    return page(request, "referral/form.html", status=status, active="patients", patient_id=patient_id,
                tab="referrals", **top, values=values or {"urgency": "routine"}, errors=errors or {}, items=items,
                chosen=chosen or set(), destinations=options, words=WORDS, **HELPERS)


@get(PATIENT + "/referrals/new", operation_id="PortalReferralForm", opt={"permission": "clinical.referral.write"},
     sync_to_thread=True, include_in_schema=False)
def referral_form(request: Asking, tenant: Tenant, patient_id: Id) -> Template:
    """Refer to another facility: where, how urgent, why, and the letter."""
    return _form_page(request, tenant, patient_id)


def _chosen(data: dict[str, Any]) -> tuple[set[str], dict[str, list[str]]]:
    """The ticked items ("problems:<id>"), and their ids by the API's field."""
    raw = data.get("item") or []
    ticked = {v for v in (raw if isinstance(raw, list) else [raw]) if isinstance(v, str) and ":" in v}
    by_field: dict[str, list[str]] = {"problem_ids": [], "allergy_ids": [], "medication_ids": [], "result_ids": []}
    fields = {"problems": "problem_ids", "allergies": "allergy_ids", "medications": "medication_ids",
              "results": "result_ids"}
    for value in sorted(ticked):
        kind, _, item_id = value.partition(":")
        if kind in fields:
            by_field[fields[kind]].append(item_id)
    return ticked, by_field


@post(PATIENT + "/referrals", operation_id="PortalSendReferral", opt={"permission": "clinical.referral.write"},
      sync_to_thread=True, include_in_schema=False)
def send(request: Asking, tenant: Tenant, patient_id: Id, data: FormData) -> Response:
    """Send the referral; the signed-in clinician refers."""
    values = form_values(data)
    ticked, items = _chosen(data)
    to_tenant, _, clinic = (values.get("destination") or "").partition(":")
    db: Database = request.app.state.db
    errors: dict[str, str] = {}
    try:
        body = ReferralIn.model_validate({"to_tenant": to_tenant, "clinic": clinic or None,
                                          "urgency": values.get("urgency"), "reason": values.get("reason") or "",
                                          "summary": values.get("summary") or "", **items})
        to = referral.destination(db, tenant, body.to_tenant)
        link_to_person(request.app.state, request, tenant, patient_id)
        with db.tenant(tenant) as conn:
            referral.send(conn, request.user, patient_id, body, to)
    except ValidationError as exc:
        errors = field_errors(exc, rename={("to_tenant",): "destination", ("clinic",): "destination"})
    except RecordError as exc:
        if exc.status != 422:
            raise
        where = {"to_tenant": "destination", "clinic": "destination"}.get(exc.extra.get("field"), "form")
        errors = {where: template_message(exc.detail)}
    else:
        return see_other(request, f"/t/{tenant}/patients/{patient_id}/referrals?done=referral-sent")
    return _form_page(request, tenant, patient_id, status=422, values=values, chosen=ticked, errors=errors)


# -- the facility's lists and one referral -----------------------------------------------------------------------


def _list_page(request: Asking, tenant: str, side: str) -> Template:
    db: Database = request.app.state.db
    with db.tenant(tenant) as conn:
        rows = referral.received(conn, request.user) if side == "received" else referral.sent(conn, request.user)
    return page(request, "referral/list.html", active="referrals", side=side, rows=rows, names=_names(db, rows),
                words=WORDS, **HELPERS)


@get("/referrals", operation_id="PortalReferralsReceived", opt={"permission": "clinical.referral.read"},
     sync_to_thread=True, include_in_schema=False)
def received_page(request: Asking, tenant: Tenant) -> Template:
    """Referrals addressed to this facility: open ones first, emergency before urgent before routine."""
    return _list_page(request, tenant, "received")


@get("/referrals/sent", operation_id="PortalReferralsSent", opt={"permission": "clinical.referral.read"},
     sync_to_thread=True, include_in_schema=False)
def sent_page(request: Asking, tenant: Tenant) -> Template:
    """Referrals this facility sent, with their answers and feedback."""
    return _list_page(request, tenant, "sent")


def _one_page(request: Asking, tenant: str, referral_id: uuid.UUID, *, status: int = 200,
              values: dict | None = None, errors: dict | None = None) -> Template:
    db: Database = request.app.state.db
    with db.tenant(tenant) as conn:
        found = referral.get(conn, request.user, referral_id)
        slots = _free_slots(request, tenant, conn, found)
    return page(request, "referral/one.html", status=status, active="referrals", r=found,
                names=_names(db, [found]), words=WORDS, values=values or {}, errors=errors or {}, slots=slots,
                **HELPERS)


def _free_slots(request: Asking, tenant: str, conn, found: dict) -> list[tuple[str, str]] | None:
    """The free slots of the referral's clinic in the next SLOTS_AHEAD_DAYS days, to book on accepting; None
    where none is offered (not open to accept, no clinic named or none of this facility's, or the signed-in
    person does not book)."""
    if not (found["side"] == "received" and found["status"] == "sent" and found["clinic"]
            and request.user.can(BOOKING_PERMISSION)
            and any(c["code"] == found["clinic"] for c in scheduling.clinics(conn))):
        return None
    clock = portal.facility_clock(request, tenant)
    now = conn.execute(sa.select(sa.func.now())).scalar_one()
    return [(str(s["id"]), clock.when(s["starts_at"]))
            for s in scheduling.slots(conn, found["clinic"], clock.today, SLOTS_AHEAD_DAYS)
            if s["free"] and s["starts_at"] > now]


@get(ONE, operation_id="PortalReferral", opt={"permission": "clinical.referral.read"}, sync_to_thread=True,
     include_in_schema=False)
def referral_page(request: Asking, tenant: Tenant, referral_id: Id) -> Template:
    """One referral with its letter, and the acts this facility may take on it."""
    return _one_page(request, tenant, referral_id)


def _act(request: Asking, tenant: str, referral_id: uuid.UUID, values: dict, done: str, act) -> Response:
    """Run an act on a referral; a refusal is shown on its page beside the field, or as the page's sentence."""
    try:
        act()
    except ValidationError as exc:
        errors = field_errors(exc)
    except RecordError as exc:
        if exc.status not in {409, 422}:
            raise
        errors = {exc.extra.get("field") if exc.status == 422 and exc.extra.get("field") else "form":
                  template_message(exc.detail)}
    else:
        return see_other(request, f"/t/{tenant}/referrals/{referral_id}?done={done}")
    return _one_page(request, tenant, referral_id, status=409 if "form" in errors else 422, values=values,
                     errors=errors)


def _with_reason(request: Asking, tenant: str, referral_id: uuid.UUID, data: dict, done: str, act) -> Response:
    """An act that takes a reason the other facility reads (withdrawing, declining)."""
    values = form_values(data)

    def run() -> None:
        reason = Retraction.model_validate({"reason": values.get("reason") or ""}).reason
        with request.app.state.db.tenant(tenant) as conn:
            act(conn, request.user, referral_id, reason)
    return _act(request, tenant, referral_id, values, done, run)


@post(ONE + "/withdraw", operation_id="PortalWithdrawReferral", opt={"permission": "clinical.referral.write"},
      sync_to_thread=True, include_in_schema=False)
def withdraw(request: Asking, tenant: Tenant, referral_id: Id, data: FormData) -> Response:
    """Withdraw a referral this facility sent and nobody has answered, saying why."""
    return _with_reason(request, tenant, referral_id, data, "referral-withdrawn", referral.withdraw)


@post(ONE + "/accept", operation_id="PortalAcceptReferral", opt={"permission": "clinical.referral.accept"},
      sync_to_thread=True, include_in_schema=False)
def accept(request: Asking, tenant: Tenant, referral_id: Id, data: FormData) -> Response:
    """Accept onto this facility's chart of the person, registering them from the letter if there is none, and
    book the visit in the slot chosen, if one is, in the same transaction: a slot taken meanwhile leaves the
    referral unaccepted, the page saying so beside the slots."""
    values = form_values(data)
    try:
        chosen = ReferralAcceptIn.model_validate({"slot_id": values.get("slot_id") or None})
        accepted = referral.accept(request.app.state.db, tenant, request.user, referral_id, chosen.slot_id)
    except ValidationError as exc:
        return _one_page(request, tenant, referral_id, status=422, values=values, errors=field_errors(exc))
    except RecordError as exc:
        if exc.status not in {403, 409, 422}:
            raise
        where = "slot_id" if exc.extra.get("field") == "slot_id" else "form"
        said = template_message(exc.detail)
        if where == "slot_id":
            said = template_message(f"{exc.detail}. The referral is not accepted yet")
        return _one_page(request, tenant, referral_id, status=exc.status, values=values, errors={where: said})
    done = ("referral-booked" if accepted["appointment"] else
            "referral-registered" if accepted["registered"] else "referral-accepted")
    return see_other(request, f"/t/{tenant}/referrals/{referral_id}?done={done}")


@post(ONE + "/decline", operation_id="PortalDeclineReferral", opt={"permission": "clinical.referral.answer"},
      sync_to_thread=True, include_in_schema=False)
def decline(request: Asking, tenant: Tenant, referral_id: Id, data: FormData) -> Response:
    """Decline a referral addressed here, with the reason the referring facility reads."""
    return _with_reason(request, tenant, referral_id, data, "referral-declined", referral.decline)


@post(ONE + "/feedback", operation_id="PortalReferralFeedback", opt={"permission": "clinical.referral.answer"},
      sync_to_thread=True, include_in_schema=False)
def feedback(request: Asking, tenant: Tenant, referral_id: Id, data: FormData) -> Response:
    values = form_values(data)

    def act() -> None:
        body = ReferralFeedbackIn.model_validate({"findings": values.get("findings") or "",
                                                  "treatment": values.get("treatment") or "",
                                                  "advice": values.get("advice") or ""})
        with request.app.state.db.tenant(tenant) as conn:
            referral.give_feedback(conn, request.user, referral_id, body)
    return _act(request, tenant, referral_id, values, "referral-completed", act)


ROUTES = [patient_referrals, referral_form, send, received_page, sent_page, referral_page, withdraw, accept,
          decline, feedback]

referral_router = Router(path="/t/{tenant:str}", route_handlers=ROUTES, exception_handlers=portal.EXCEPTION_HANDLERS,
                         guards=[portal.care_relationship_guard], tags=["portal"], include_in_schema=False)
