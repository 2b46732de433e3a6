"""Referrals: a patient sent from this facility to another of the appliance, on one identity, and the answer.

Sending (the referring facility, a clinician, from the chart): to which facility (the appliance's registry; one of
its clinics, or the facility decides), how urgent (routine, urgent, emergency), why, and the letter: a clinical
summary the clinician writes and the items of this chart they choose to send (active problems, allergies, current
medications, recent results), copied as they stand at sending, with who the person is. The receiving facility reads
that letter and nothing else of this chart. The act is a `referral` entry through `record.append` (audited there);
its reaction (`on_referral`) writes the exchange's row in the same transaction (`substrate.referrals`, control
c0011), so both commit or neither does.

Receiving: the facility addressed lists the referrals to it, open ones first and the most pressing first. It accepts
one onto its own chart of the person: the chart it holds of the one-identity subject, or one it registers from the
letter's identity linked to that subject, as any cross-facility registration is (`service.with_subject`), and may
book the visit in a slot of the referral's clinic in the same transaction (the operations layer's booking, which the
app's assembly registers: `register_booking`); else the desk books it from the chart. Or it declines with a reason
the referring facility reads. After the visit its clinician writes the feedback (the counter-referral: findings,
what was done, advice), which the referring facility reads in its referrals sent and on the patient's referrals
there. The referring facility may withdraw one not yet answered. Every read of a referral (its letter is patient
data) and every act is audited in the facility that does it, on its own chart of the person where it has one.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from appliance.layers.clinical.errors import ClinicalError, Invalid
from appliance.layers.clinical.models import allergy, condition, medication_request, patient, patient_identifier
from appliance.layers.clinical.schemas import PatientIn, ReferralFeedbackIn, ReferralIn
from appliance.layers.clinical.service import current_rows, register_patient, require_chart, results_of, with_subject
from appliance.substrate import deaths, identity, record, referrals
from appliance.substrate.db import Database
from appliance.substrate.principal import Principal
from appliance.substrate.record import Entry, note_access, note_list_read
from appliance.substrate.tenancy import tenant_table

URGENCY_WORDS = {"emergency": "Emergency", "urgent": "Urgent", "routine": "Routine"}
STATUS_WORDS = {"sent": "Sent, awaiting an answer", "accepted": "Accepted", "declined": "Declined",
                "withdrawn": "Withdrawn", "completed": "Completed, feedback given"}
# A referral's state in the patient's own view (/me): where it stands, in their words.
STATUS_FOR_PATIENT = {"sent": "waiting for their answer", "accepted": "accepted: they will see you",
                      "declined": "declined", "withdrawn": "withdrawn", "completed": "seen; they wrote back"}
ITEM_WORDS = {"problems": "Active problems", "allergies": "Allergies", "medications": "Current medications",
              "results": "Recent results"}
# How many of the chart's latest results the form offers to send.
RECENT_RESULTS = 10
# How long an appointment's reason may be (the operations layer's limit), of which the referral's takes its share.
APPOINTMENT_REASON_MAX = 500


class Booking(NamedTuple):
    """Booking the visit is the operations layer's, which this one does not import: the app's assembly registers
    its booking act (`register_booking`), called as act(conn, principal, patient_id, slot_id, reason, clinic_code)
    and returning the appointment, and the permission it needs. Accepting with a slot calls it in the
    acceptance's transaction."""

    act: Callable[..., dict]
    permission: str


_BOOKING: dict[str, Booking] = {}


def register_booking(act: Callable[..., dict], permission: str) -> None:
    _BOOKING["booking"] = Booking(act, permission)


class MayNotBook(ClinicalError):
    """Accepting with a slot books an appointment, which the booking's own permission allows."""

    status = 403


def _referred_clinics(clinics: list[dict]) -> tuple[list[dict], dict[str, str]]:
    """The clinics a facility takes referrals at (those its tenant file marks `takes_referrals`; all of them when
    it marks none), and the names of the others by code."""
    taking = [c for c in clinics if c.get("takes_referrals")] or clinics
    return ([{"code": c["code"], "name": c["name"]} for c in taking],
            {c["code"]: c["name"] for c in clinics if c not in taking})


def destinations(db: Database, tenant: str) -> list[dict]:
    """The facilities of this appliance a patient can be referred to (every active one but this), each with the
    clinics it takes referrals at (`clinics`) and the names of those it does not (`closed_clinics`, by code)."""
    with db.control_autocommit() as conn:
        rows = conn.execute(
            sa.select(tenant_table.c.slug, tenant_table.c.name, tenant_table.c.facility_type,
                      tenant_table.c.config["clinics"].label("clinics"))
            .where(tenant_table.c.status == "active", tenant_table.c.slug != tenant)
            .order_by(tenant_table.c.name)).mappings().all()
    found = []
    for row in rows:
        taking, closed = _referred_clinics(row.clinics or [])
        found.append({"tenant": row.slug, "name": row.name, "facility_type": row.facility_type, "clinics": taking,
                      "closed_clinics": closed})
    return found


def destination(db: Database, tenant: str, to_tenant: str) -> dict:
    """The facility referred to, or a 422 naming the field (an unknown facility, or this one)."""
    if to_tenant == tenant:
        raise Invalid("a patient is referred to another facility, not to the one referring them", field="to_tenant")
    found = next((d for d in destinations(db, tenant) if d["tenant"] == to_tenant), None)
    if found is None:
        raise Invalid(f'there is no facility "{to_tenant}" on this appliance to refer to', field="to_tenant")
    return found


# -- the letter ------------------------------------------------------------------------------------------------


def _problem_line(row: dict) -> dict:
    return {"code": row["code"], "display": row["display"], "onset_date": _iso(row["onset_date"])}


def _allergy_line(row: dict) -> dict:
    return {"substance": row["substance"], "reaction": row["reaction"], "severity": row["severity"],
            "criticality": row["criticality"]}


def _medication_line(row: dict) -> dict:
    return {"drug": row["drug"], "dose": f"{row['dose']:g} {row['dose_unit']}" if row["dose"] is not None else None,
            "route": row["route"], "frequency": row["frequency"]}


def _result_line(row: dict) -> dict:
    value = row["value_text"] if row["value_numeric"] is None else f"{row['value_numeric']:g}"
    return {"code": row["code"], "display": row["display"], "value": value, "unit": row["unit"],
            "flag": row["flag"], "taken_at": _iso(row["occurred_at"])}


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def _candidates(conn: Connection, patient_id: uuid.UUID) -> dict[str, list[dict]]:
    """The chart's items a letter may carry, current versions only, each with its id and its line."""
    return {
        "problems": [{"id": r["id"], **_problem_line(r)}
                     for r in current_rows(conn, condition, patient_id, condition.c.clinical_status == "active")],
        "allergies": [{"id": r["id"], **_allergy_line(r)}
                      for r in current_rows(conn, allergy, patient_id, allergy.c.clinical_status == "active")],
        "medications": [{"id": r["id"], **_medication_line(r)} for r in
                        current_rows(conn, medication_request, patient_id, medication_request.c.status == "active")],
        "results": [{"id": r["id"], **_result_line(r)} for r in results_of(conn, patient_id, limit=RECENT_RESULTS)],
    }


def letter_items(conn: Connection, principal: Principal, patient_id: uuid.UUID) -> dict[str, list[dict]]:
    """What the referral form offers to send, audited as a read of each item shown."""
    require_chart(conn, patient_id, None)
    found = _candidates(conn, patient_id)
    for kind, rows in (("condition", found["problems"]), ("allergy", found["allergies"]),
                       ("medication_request", found["medications"]), ("result", found["results"])):
        if rows:
            note_access(conn, principal, "read", patient_id, kind, [r["id"] for r in rows],
                        detail={"for": "referral letter"})
    return found


def _chosen(found: dict[str, list[dict]], data: ReferralIn) -> dict[str, list[dict]]:
    chosen: dict[str, list[dict]] = {}
    for key, ids, field in (("problems", data.problem_ids, "problem_ids"), ("allergies", data.allergy_ids,
                            "allergy_ids"), ("medications", data.medication_ids, "medication_ids"),
                            ("results", data.result_ids, "result_ids")):
        offered = {row["id"]: row for row in found[key]}
        missing = [str(i) for i in ids if i not in offered]
        if missing:
            raise Invalid(f"{ITEM_WORDS[key].lower()} to send must be current items of this chart "
                          f"({len(missing)} {'is' if len(missing) == 1 else 'are'} not)", field=field, ids=missing)
        chosen[key] = [{k: v for k, v in offered[i].items() if k != "id"} for i in dict.fromkeys(ids)]
    return chosen


def _person(conn: Connection, patient_id: uuid.UUID) -> dict:
    """Who the letter is about, as the receiving facility registers them."""
    row = conn.execute(sa.select(patient.c.family_name, patient.c.given_names, patient.c.birth_date, patient.c.sex,
                                 patient.c.phone, patient.c.mrn).where(patient.c.id == patient_id)).one()
    national_id = conn.execute(sa.select(patient_identifier.c.value).where(
        patient_identifier.c.patient_id == patient_id, patient_identifier.c.system == "national_id")).scalar()
    return {"family_name": row.family_name, "given_names": row.given_names, "birth_date": row.birth_date.isoformat(),
            "sex": row.sex, "phone": row.phone, "national_id": national_id, "referring_mrn": row.mrn}


def send(conn: Connection, principal: Principal, patient_id: uuid.UUID, data: ReferralIn, to: dict) -> dict:
    """Refer the patient to facility `to` (one of `destinations`): the `referral` entry here and the exchange's
    row, in this transaction. The chart must be linked to its one-identity person (the route links it first)."""
    require_chart(conn, patient_id, None)
    if data.clinic is not None and data.clinic not in {c["code"] for c in to["clinics"]}:
        if data.clinic in to["closed_clinics"]:
            taking = ", ".join(c["name"] for c in to["clinics"])
            raise Invalid(f'{to["name"]}\'s {to["closed_clinics"][data.clinic]} ({data.clinic}) does not take '
                          f"referrals: refer to {taking}, or let the facility decide the clinic", field="clinic")
        raise Invalid(f'{to["name"]} has no clinic "{data.clinic}" to refer to', field="clinic")
    items = _chosen(_candidates(conn, patient_id), data)
    referral_id = uuid.uuid4()
    record.append(conn, principal, "referral", patient_id=patient_id, detail={
        "referral_id": referral_id, "to_tenant": to["tenant"], "to_facility": to["name"], "clinic": data.clinic,
        "urgency": data.urgency, "reason": data.reason, "summary": data.summary, "items": items})
    return get(conn, principal, referral_id)


def on_referral(conn: Connection, principal: Principal, appended: Entry) -> None:
    """The exchange's row, written with the entry: the letter is the entry's summary and items, who the person is,
    and who refers them."""
    subject_id = conn.execute(sa.select(patient.c.subject_id).where(patient.c.id == appended.patient_id)).scalar()
    if subject_id is None:
        raise Invalid("this chart is not linked to a person of the one identity; it cannot be referred",
                      field="patient_id")
    detail = appended.detail
    letter = {"summary": detail["summary"], "items": detail["items"], "patient": _person(conn, appended.patient_id),
              "referred_by": principal.display_name}
    referrals.send(conn, referral_id=detail["referral_id"], subject_id=subject_id, patient_id=appended.patient_id,
                   entry_id=appended.root_id, sent_by=principal.account_id, to_tenant=detail["to_tenant"],
                   clinic=detail["clinic"], urgency=detail["urgency"], reason=detail["reason"], letter=letter)


# What each side is told of a referral from a chart linked to its person over a differing national-ID answer.
KEPT_APART_SENT = (
    "This chart was linked to a person by a national ID whose holder has another birth date or sex, the desk having "
    "confirmed the number: the receiving facility takes the patient onto a chart of their own, not its chart of that "
    "person, until a clinician here confirms the identity from documents or the national ID is corrected.")
KEPT_APART_RECEIVED = (
    "The referring facility linked this patient by a national ID whose holder has another birth date or sex, and the "
    "identity is not confirmed: the patient is registered here from the letter as a person of their own, without "
    "that national ID, not on a chart of the number's holder.")


def kept_apart(db: Database, tenant: str, patient_id: uuid.UUID) -> str | None:
    """What the referring facility is told when chart `patient_id`'s link is in dispute (`KEPT_APART_SENT`)."""
    with db.control_autocommit() as conn:
        return KEPT_APART_SENT if identity.link_dispute(conn, tenant, patient_id) is not None else None


def refuse_referral_for_deceased(conn: Connection, patient_id: uuid.UUID | None) -> None:
    """No referral of a person recorded deceased at any facility: the one they would be sent to would book them."""
    deaths.refuse_if_deceased(conn, patient_id, "a referral")


record.register_reaction("referral", on_referral)
record.register_guard("referral", refuse_referral_for_deceased)


# -- reading ---------------------------------------------------------------------------------------------------


def _shaped(side: str, row: dict) -> dict:
    """A row as this facility reads it: its own chart of the person, never the other facility's."""
    mine = row["from_patient"] if side == "sent" else row["to_patient"]
    return {**{k: v for k, v in row.items() if k not in {"from_patient", "to_patient", "subject_id"}},
            "side": side, "patient_id": mine}


def _open_first(row: dict) -> tuple:
    return (row["status"] not in {"sent", "accepted"}, referrals.URGENCIES.index(row["urgency"]),
            -row["sent_at"].timestamp())


def sent(conn: Connection, principal: Principal, patient_id: uuid.UUID | None = None) -> list[dict]:
    """The referrals this facility sent (of one patient's chart, if named), newest first; audited on each chart."""
    rows = [_shaped("sent", r) for r in referrals.listed(conn, "sent", patient_id=patient_id)]
    note_list_read(conn, principal, "referral", rows)
    return rows


def received(conn: Connection, principal: Principal, patient_id: uuid.UUID | None = None) -> list[dict]:
    """The referrals addressed to this facility: those still to answer or to see first, emergency before urgent
    before routine, newest first within each; audited (on this facility's chart of the person once accepted)."""
    rows = sorted((_shaped("received", r) for r in referrals.listed(conn, "received", patient_id=patient_id)),
                  key=_open_first)
    note_list_read(conn, principal, "referral", rows)
    return rows


def get(conn: Connection, principal: Principal, referral_id: uuid.UUID) -> dict:
    """One referral this facility sent or received, with its letter (404 for anyone else's); audited."""
    side, row = referrals.one(conn, referral_id)
    shaped = _shaped(side, row)
    note_access(conn, principal, "read", shaped["patient_id"], "referral", [referral_id], detail={"side": side})
    return shaped


# -- acting ----------------------------------------------------------------------------------------------------


def _acted(conn: Connection, principal: Principal, referral_id: uuid.UUID, what: referrals.Act, **kwargs) -> dict:
    referrals.act(conn, referral_id, what, by=principal.account_id, **kwargs)
    side, row = referrals.one(conn, referral_id)
    shaped = _shaped(side, row)
    note_access(conn, principal, "update", shaped["patient_id"], "referral", [referral_id], detail={"act": what})
    return shaped


def withdraw(conn: Connection, principal: Principal, referral_id: uuid.UUID, reason: str) -> dict:
    """The referring facility withdraws a referral not yet answered (409 once answered)."""
    return _acted(conn, principal, referral_id, "withdraw", text=reason)


def decline(conn: Connection, principal: Principal, referral_id: uuid.UUID, reason: str) -> dict:
    """The receiving facility declines the referral, with a reason the referring facility reads."""
    return _acted(conn, principal, referral_id, "decline", text=reason)


def give_feedback(conn: Connection, principal: Principal, referral_id: uuid.UUID, data: ReferralFeedbackIn) -> dict:
    """The counter-referral, once the patient was seen: the referral is completed, and the letter is kept on this
    facility's chart as a note (a copy in the file, as on paper): what this facility's clinician wrote about its
    patient is part of its own record, read with the chart and corrected as any note, not only the exchange's."""
    completed = _acted(conn, principal, referral_id, "complete",
                       feedback={**data.model_dump(), "written_by": principal.display_name})
    parts = [("Findings", data.findings), ("What was done", data.treatment), ("Advice", data.advice)]
    record.append(conn, principal, "note", patient_id=completed["patient_id"], detail={
        "template_code": None, "title": f"Referral feedback to {completed['from_facility']}", "fields": {},
        "text": "\n\n".join(f"{label}: {text}" for label, text in parts if text)})
    return completed


def accept(db: Database, tenant: str, principal: Principal, referral_id: uuid.UUID,
           slot_id: uuid.UUID | None = None) -> dict:
    """Accept a referral addressed to this facility onto its chart of the person: the one it holds of the
    one-identity subject, else one registered now from the letter's identity and linked to the subject (the
    subject's own control transaction first, as every registration's). Returns the referral, `registered`,
    whether the chart is new, and `appointment`. A withdrawn or already answered referral is refused (409) with
    nothing registered.

    With `slot_id`, the visit is booked in that slot (of the referral's clinic, when it names one) in the same
    transaction as the acceptance, its reason naming the referral: a slot taken meanwhile (409), in the past or
    of another clinic (422) refuses the whole, so the referral stays to accept with another slot, nothing booked,
    accepted or registered.

    A referral from a chart whose link to its person is in dispute (`identity.link_dispute`) is never put on this
    facility's chart of that person: the patient is registered from the letter as a person of their own, without
    its national ID, and `kept_apart` says why."""
    with db.tenant(tenant) as conn:
        side, row = referrals.one(conn, referral_id)
    if side != "received":
        raise referrals.ReferralNotFound(f"no referral {referral_id} addressed to this facility",
                                         referral_id=str(referral_id))
    if row["status"] != "sent":
        raise referrals.ReferralConflict(f"this referral is {row['status']}: it can no longer be accepted")
    booking = _BOOKING.get("booking")
    if slot_id is not None and booking is None:
        raise Invalid("this appliance books no appointments: accept, then book from the chart", field="slot_id")
    if slot_id is not None and booking is not None and not principal.can(booking.permission):
        raise MayNotBook(f"booking the visit needs {booking.permission}: accept without a slot and have the desk "
                         "book it", field="slot_id")
    with db.control() as conn:
        person = identity.subject_ids_resolving_to(conn, identity.resolve_subject(conn, row["subject_id"]))
        disputed = identity.link_dispute(conn, row["from_tenant"], row["from_patient"]) is not None
    chart = None if disputed else _chart_of(db, tenant, person)
    registered = chart is None
    with db.tenant(tenant) as conn:
        if chart is None:
            who = row["letter"]["patient"]
            # From a chart whose link is in dispute, the letter's person may not be the national ID's holder: a person
            # of their own here, without that number, until the referring facility resolves it.
            linked = with_subject(db, PatientIn.model_validate({
                "family_name": who["family_name"], "given_names": who["given_names"],
                "birth_date": who["birth_date"], "sex": who["sex"], "phone": who.get("phone"),
                "subject_id": None if disputed else row["subject_id"],
                "identifiers": [{"system": "national_id", "value": who["national_id"]}]
                if who.get("national_id") and not disputed else [],
            }), tenant=tenant, chart_conn=conn)
            chart = register_patient(conn, principal, linked)["id"]
        accepted = _acted(conn, principal, referral_id, "accept", patient_id=chart)
        appointment = None
        if slot_id is not None and booking is not None:
            appointment = booking.act(conn, principal, chart, slot_id, _visit_reason(row), row["clinic"])
    return {**accepted, "registered": registered, "appointment": appointment,
            "kept_apart": KEPT_APART_RECEIVED if disputed else None}


def _visit_reason(row: dict) -> str:
    """The booked visit's reason: the referral it answers, so the clinic's list says why the patient comes."""
    said = f"Referral from {row['from_facility'] or row['from_tenant']} ({row['id']}): {row['reason']}"
    return said if len(said) <= APPOINTMENT_REASON_MAX else said[:APPOINTMENT_REASON_MAX - 1] + "…"


def _chart_of(db: Database, tenant: str, person: list[uuid.UUID]) -> uuid.UUID | None:
    with db.tenant(tenant) as conn:
        return conn.execute(sa.select(patient.c.id).where(patient.c.subject_id.in_(person))
                            .order_by(patient.c.registered_at).limit(1)).scalar()
