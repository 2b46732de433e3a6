"""Antenatal care in the tenant portal: a woman's "Antenatal" chart tab — her ANC card (the pregnancy's dating and
due date, the gestational age today, the flags, the WHO schedule's contacts kept, missed and due, the contacts
recorded) and the form a midwife or clinician records a contact with, its correction and its withdrawal — and the
facility's "ANC clinic" list, every woman with an open pregnancy.

It keeps the portal's rules (appliance/web/portal.py): server-rendered, no script, each route declares the
permission the antenatal API declares for the same act (`clinical.antenatal.read` / `.write`: clinicians, and
nurses through ACC-003, midwives being nurses here), patient pages pass the care-relationship guard, forms carry
the CSRF token and Post/Redirect/Get, and a refusal is the page again with its sentence beside the field and
everything typed kept (422), nothing written. The record is read and written only through the clinical layer's
`antenatal` service, which audits each read and write and each woman the list names.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from typing import Any

from litestar import Response, Router, get, post
from litestar.response import Template
from pydantic import ValidationError
from sqlalchemy.engine import Connection

from appliance.layers.clinical import antenatal
from appliance.layers.clinical import antenatal_rules as rules
from appliance.layers.clinical.antenatal_schemas import AntenatalIn
from appliance.layers.clinical.errors import NotFound
from appliance.layers.clinical.schemas import Retraction
from appliance.substrate.record import RecordError, note_access
from appliance.web import portal
from appliance.web.portal import (
    HELPERS,
    PATIENT,
    Asking,
    ChartTab,
    FormData,
    Id,
    NavItem,
    Tenant,
    banner,
    facility_clock,
    field_errors,
    form_values,
    page,
    people_named,
    see_other,
    template_message,
)

READ, WRITE = "clinical.antenatal.read", "clinical.antenatal.write"
portal.CHART_TABS.insert(len(portal.CHART_TABS) - 1, ChartTab("antenatal", "Antenatal", "/antenatal", READ,
                                                               applies=antenatal.may_hold_care))
portal.NAV.append(NavItem("Clinical", "antenatal", "ANC clinic", "/antenatal/clinic", READ))
portal.NOTICES.update({
    "anc-recorded": "Antenatal contact recorded.",
    "anc-flagged": "Antenatal contact recorded. It raised a flag: see the card.",
    "anc-corrected": "Contact corrected; the earlier version stays in its history with your reason.",
    "anc-withdrawn": "Contact marked entered in error, with your reason; the card no longer reads it.",
})


def _timeline_contacts(conn: Connection, principal: Any, patient_id: uuid.UUID) -> list[dict]:
    rows = antenatal.contacts_of(conn, [patient_id], dt.UTC)  # the timeline places each by its own time
    note_access(conn, principal, "read", patient_id, antenatal.KIND, [r["id"] for r in rows])
    return rows


def _timeline_words(row: dict) -> tuple[str, str]:
    found = [f"BP {row['systolic_mmhg']}/{row['diastolic_mmhg']}"] if row["systolic_mmhg"] else []
    found += [rules.FLAGS[f].split(" (")[0].split(":")[0] for f in row["flags"]]
    return f"Antenatal contact at {rules.weeks_and_days(row['gestation_days'])} weeks", " · ".join(found)


# On the woman's timeline at the contact's own time: a correction may correct the day.
portal.TIMELINE_SOURCES.append(portal.TimelineSource("clinical", antenatal.KIND, "Antenatal care", READ,
                                                     _timeline_contacts, _timeline_words,
                                                     lambda row: row["occurred_at"]))
FIELDS = ("seen_on", "lmp", "ultrasound_on", "ultrasound_weeks", "ultrasound_days", "gravida", "para",
          "systolic_mmhg", "diastolic_mmhg", "weight_kg", "fundal_height_cm", "fetal_heart_rate", "fetal_movements",
          "presentation", "urine_protein", "haemoglobin_g_dl", "syphilis_test", "hiv_test", "td_dose", "iptp_dose",
          "next_visit_on", "note")
TICKED = ("syphilis_treated", "iron_folic_acid")
SIGNS = "f.danger_signs"  # a multiple choice: the portal keeps `f.` fields as lists
CHOICES = {
    "fetal_movements": [("present", "Present"), ("reduced", "Reduced"), ("absent", "Absent")],
    "presentation": [("cephalic", "Cephalic"), ("breech", "Breech"), ("transverse", "Transverse")],
    "urine_protein": [("negative", "Negative"), ("trace", "Trace"), ("1+", "+"), ("2+", "++"), ("3+", "+++")],
    "syphilis_test": [("not_done", "Not done"), ("negative", "Negative"), ("positive", "Positive")],
    "hiv_test": [("not_done", "Not done"), ("negative", "Negative"), ("positive", "Positive"),
                 ("known_positive", "Known positive")],
}
STATE_WORDS = {"kept": "Kept", "missed": "Missed", "due": "Next due", "upcoming": "Upcoming"}
STATUS_WORDS = {"open": "Ongoing", "delivered": "Ended by a delivery", "closed": "Closed (past 45 weeks)"}


def _page(request: Asking, tenant: str, patient_id: uuid.UUID, *, status: int = 200, values: dict | None = None,
          errors: dict | None = None, form: str = "contact", correcting: dict | None = None) -> Template:
    clock = facility_clock(request, tenant)
    with request.app.state.db.tenant(tenant) as conn:
        top = banner(conn, request.user, patient_id)
        found = antenatal.card(conn, request.user, patient_id, today=clock.today, tz=clock.tz)
        withdrawn = antenatal.withdrawn_contacts(conn, request.user, patient_id)
    names = people_named(request.app.state.db, {c["author_id"] for p in found["pregnancies"] for c in p["contacts"]}
                         | {w["withdrawn_by"] for w in withdrawn})
    # A man's record, a girl's or a woman's past the age: the page says why there is no contact to record.
    refused = antenatal.no_care_because(top["patient"], clock.today)
    return page(request, "antenatal/card.html", status=status, active="patients", patient_id=patient_id,
                tab="antenatal", found=found, nothing_to_record=template_message(refused) if refused else None,
                withdrawn=withdrawn, choices=CHOICES, danger_signs=rules.DANGER_SIGNS, flag_words=rules.FLAGS,
                state_words=STATE_WORDS, status_words=STATUS_WORDS, names=names, form=form, correcting=correcting,
                values=values or {"seen_on": clock.today.isoformat(), "syphilis_test": "not_done",
                                  "hiv_test": "not_done"},
                errors=errors or {}, **top, **HELPERS)


@get(PATIENT + "/antenatal", operation_id="PortalAntenatalCard", opt={"permission": READ}, sync_to_thread=True,
     include_in_schema=False)
def card_page(request: Asking, tenant: Tenant, patient_id: Id) -> Template:
    """The woman's ANC card and the form to record a contact."""
    return _page(request, tenant, patient_id)


def _contact_in(values: dict, day_default: str) -> AntenatalIn:
    body: dict[str, Any] = {k: values[k] for k in FIELDS if values.get(k) not in ("", None)}
    body.setdefault("seen_on", day_default)
    body.update({k: values.get(k) == "true" for k in TICKED})
    signs = values.get(SIGNS) or []
    body["danger_signs"] = signs if isinstance(signs, list) else [signs]
    return AntenatalIn.model_validate(body)


def _write(request: Asking, tenant: str, patient_id: uuid.UUID, values: dict, act: Callable[[Connection], Any],
           done: Callable[[Any], str], *, form: str = "contact", correcting: dict | None = None) -> Response:
    """One form's write in a tenant transaction; what the schema or the layer refuses (422) comes back beside the
    field it names with the form as sent; done, the card with what happened."""
    try:
        with request.app.state.db.tenant(tenant) as conn:
            outcome = act(conn)
    except ValidationError as exc:
        errors = field_errors(exc, rename={("danger_signs",): SIGNS})
    except RecordError as exc:
        if exc.status not in {409, 422}:
            raise
        where = exc.extra.get("field") if exc.status == 422 else None
        errors = {"form" if where in (None, "patient_id") else where: template_message(exc.detail)}
    else:
        return see_other(request, f"/t/{tenant}/patients/{patient_id}/antenatal?done={done(outcome)}")
    return _page(request, tenant, patient_id, status=422, values=values, errors=errors, form=form,
                 correcting=correcting)


@post(PATIENT + "/antenatal", operation_id="PortalRecordAntenatalContact", opt={"permission": WRITE},
      sync_to_thread=True, include_in_schema=False)
def record_contact(request: Asking, tenant: Tenant, patient_id: Id, data: FormData) -> Response:
    """Record an ANC contact; the card then shows it, its flags and the schedule."""
    values = form_values(data)
    clock = facility_clock(request, tenant)
    return _write(request, tenant, patient_id, values, lambda conn: antenatal.record_contact(
        conn, request.user, patient_id, _contact_in(values, clock.today.isoformat()), today=clock.today,
        tz=clock.tz), lambda written: "anc-flagged" if written["flags"] else "anc-recorded")


def _current_contact(request: Asking, tenant: str, patient_id: uuid.UUID, entry_id: uuid.UUID) -> dict:
    """The contact in force named by `entry_id` (read through the card: a guessed id, or a version since replaced,
    is not one of them)."""
    clock = facility_clock(request, tenant)
    with request.app.state.db.tenant(tenant) as conn:
        found = antenatal.card(conn, request.user, patient_id, today=clock.today, tz=clock.tz)
    contact = next((c for p in found["pregnancies"] for c in p["contacts"] if c["id"] == entry_id), None)
    if contact is None:
        raise NotFound(f"no antenatal contact {entry_id} in force on this patient's record", entry_id=str(entry_id))
    return contact


@get(PATIENT + "/antenatal/{entry_id:uuid}/correct", operation_id="PortalCorrectAntenatalContactForm",
     opt={"permission": WRITE}, sync_to_thread=True, include_in_schema=False)
def correct_form(request: Asking, tenant: Tenant, patient_id: Id, entry_id: Id) -> Template:
    """The form to correct a contact, filled with it as it stands."""
    contact = _current_contact(request, tenant, patient_id, entry_id)
    values: dict[str, Any] = {k: ("" if contact.get(k) is None else str(contact[k])) for k in FIELDS if k != "seen_on"}
    values["seen_on"] = contact["seen_on"].isoformat()
    values.update({k: "true" if contact[k] else "" for k in TICKED})
    values[SIGNS] = list(contact["danger_signs"])
    return _page(request, tenant, patient_id, values=values, form="correct", correcting=contact)


@post(PATIENT + "/antenatal/{entry_id:uuid}", operation_id="PortalCorrectAntenatalContact",
      opt={"permission": WRITE}, sync_to_thread=True, include_in_schema=False)
def correct_contact(request: Asking, tenant: Tenant, patient_id: Id, entry_id: Id, data: FormData) -> Response:
    """A corrected version of the contact, with the reason; the earlier one stays in its history."""
    values = form_values(data)
    clock = facility_clock(request, tenant)

    def act(conn: Connection) -> dict:
        reason = Retraction.model_validate({"reason": values.get("reason") or ""}).reason
        return antenatal.correct_contact(conn, request.user, patient_id, entry_id,
                                         _contact_in(values, clock.today.isoformat()), reason, today=clock.today,
                                         tz=clock.tz)

    return _write(request, tenant, patient_id, values, act, lambda _: "anc-corrected", form="correct",
                  correcting={"id": entry_id})


@post(PATIENT + "/antenatal/{entry_id:uuid}/entered-in-error", operation_id="PortalWithdrawAntenatalContact",
      opt={"permission": WRITE}, sync_to_thread=True, include_in_schema=False)
def withdraw_contact(request: Asking, tenant: Tenant, patient_id: Id, entry_id: Id, data: FormData) -> Response:
    """Mark a contact entered in error, with the reason."""
    values = form_values(data)
    return _write(request, tenant, patient_id, values, lambda conn: antenatal.enter_in_error(
        conn, request.user, patient_id, entry_id, Retraction.model_validate({"reason": values.get("reason")}).reason),
        lambda _: "anc-withdrawn", form=f"withdraw-{entry_id}")


@get("/antenatal/clinic", operation_id="PortalAntenatalClinic", opt={"permission": READ}, sync_to_thread=True,
     include_in_schema=False)
def clinic_page(request: Asking, tenant: Tenant) -> Template:
    """The facility's women with an open pregnancy: overdue and flagged first."""
    clock = facility_clock(request, tenant)
    with request.app.state.db.tenant(tenant) as conn:
        listed = antenatal.clinic(conn, request.user, today=clock.today, tz=clock.tz)
    return page(request, "antenatal/clinic.html", active="antenatal", listed=listed, flag_words=rules.FLAGS,
                **HELPERS)


ROUTES = [card_page, record_contact, correct_form, correct_contact, withdraw_contact, clinic_page]

antenatal_router = Router(path="/t/{tenant:str}", route_handlers=ROUTES, exception_handlers=portal.EXCEPTION_HANDLERS,
                          guards=[portal.care_relationship_guard], tags=["portal"], include_in_schema=False)
