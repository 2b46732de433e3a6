"""The patient's own view across facilities: which facilities hold a record of this person (their
one-identity subject, merges followed), and who opened it — the access log of each facility's audit
trail, decrypted for this patient alone.

A patient principal carries a subject, never a facility: each facility that registration noted as
holding a chart of that subject (`control.subject_facility`) is asked, in its own transaction, for its
charts of the subject, and nothing the patient sees names another person. Reading the access log is
itself recorded in each facility's log (`patient.access_log.read`).

Nor a chart that may be another person's: a desk can confirm a national ID whose holder has another birth date or
sex, and that chart is then the holder's subject's. Charts of one subject that disagree are not shown together
(`portal_records`), and no account is invited from such a chart (`disputed_link`) until a registration is corrected.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

import sqlalchemy as sa
import structlog

from appliance.substrate import audit, identity
from appliance.substrate.db import Database
from appliance.substrate.principal import Principal
from appliance.substrate.tenancy import list_tenants
from appliance.substrate.tenant_config import dial

log = structlog.get_logger(__name__)

# What a line of the access log says was done, in words a patient reads.
VERBS = {"R": "looked at", "C": "recorded", "U": "changed", "D": "removed", "E": "used"}
THINGS = {"chart": "your chart", "condition": "a health problem", "allergy": "an allergy",
          "medication_request": "a prescription", "service_request": "a test order", "result": "a result",
          "result_signoff": "a result's review", "result_disclosure": "that a result was given to you in person",
          "specimen_receipt": "the laboratory's receipt of your sample",
          "immunization": "a vaccination", "immunization_due": "the list of children due a vaccination",
          "family_planning": "a family planning visit",
          "document": "a document filed on your chart (a scan or photograph: a letter, a form, a result)",
          "document_content": "a document filed on your chart, opened or downloaded",
          "family_planning_due": "the list of family planning clients due back",
          "imaging_performed": "that your X-ray or scan was done",
          "vital_signs": "vital signs", "note": "a note", "discharge_summary": "your discharge summary",
          "death": "a death certificate", "referral": "a referral to another facility",
          "delivery": "the record of a birth (your delivery, or your own birth)",
          "antenatal": "an antenatal care visit (your pregnancy card)",
          "antenatal_clinic": "the antenatal clinic's list of pregnant women",
          "surgery": "an operation (its booking, its safety checklist in theatre)",
          "operation_note": "the surgeon's note of your operation",
          "tb_treatment": "your TB treatment card (its registration and outcome)",
          "tb_follow_up": "a check-up during your TB treatment (sputum results, weight)",
          "tb_register": "the facility's TB treatment register",
          "tb_register_hiv_status": "the facility's TB treatment register, with your HIV status",
          "hiv_care": "your HIV care card (enrolment, ART number, status in care)",
          "hiv_regimen": "your HIV treatment (ART) regimen",
          "hiv_visit": "an HIV clinic visit or ARV pick-up",
          "hiv_viral_load": "a viral load result",
          "hiv_register": "the facility's ART register",
          "encounter": "a visit", "encounter_status": "a visit's progress", "demographics": "your details",
          "news2": "an early warning score", "meows": "an early warning score", "pews": "an early warning score",
          "allergy_alert": "an allergy warning on a prescription", "handover": "a nurses' handover",
          "medication_reconciliation": "a review of the medicines you came into hospital on",
          "transfer": "your move to another ward", "access_log": "this access log",
          "patient": "your details", "timeline": "your record's history", "results": "your results",
          "invoice": "a bill", "payment": "a payment", "charge": "a charge for your care",
          "account": "your billing account", "balance": "what you owe", "receivable": "your unpaid bills",
          "coverage": "your insurance cover", "claim": "an insurance claim for your care",
          "invoice_adjustment": "a discount or exemption on your bill", "invoice_credit": "a credit on your bill",
          "refund": "a refund to you", "portal_invitation": "your invitation to this portal",
          "worklist": "a ward's list of its patients",
          "incident": "a patient safety report naming you (a quality record kept to learn from, not your chart)",
          "appointment": "an appointment", "appointment_status": "an appointment's progress",
          "admission": "your admission to a ward", "discharge": "your discharge", "bed_assignment": "your bed",
          "expected_discharge": "the day your ward expects you to go home",
          "medication_administration": "a dose given to you", "dispense": "a medicine the pharmacy handed you",
          "dispense_return": "medicine you brought back to the pharmacy",
          "nursing_task": "a nursing task",
          "blood_request": "a request for blood for you",
          "blood_unit": "a unit of blood reserved, issued or given to you",
          "transfusion": "a blood transfusion (the bedside check, your observations, any reaction)",
          "care_plan": "a care plan", "fluid": "your fluid balance chart (what you drank and passed)",
          "diet_order": "your diet order (what you may eat, or nil by mouth)",
          "kitchen_list": "the kitchen's list of diets for a meal (your bed, name, diet and food allergies)",
          "ed_arrival": "your arrival at the emergency unit",
          "ed_triage": "your emergency triage", "ed_seen": "that you were seen in the emergency unit",
          "ed_decision": "an emergency unit decision", "ed_departure": "your leaving the emergency unit"}


# Events whose words are not "verb + thing".
DESCRIBED = {"patient.record.export": "downloaded your record",
             "record.patient.search": "found you in a search (your name, birth date and numbers)",
             # The acts on an appointment, the patient's own on the portal or the desk's (operations/scheduling.py
             # names them on the audit seam).
             "record.appointment_booking.create": "booked an appointment",
             "record.appointment_move.create": "moved an appointment",
             "record.appointment_cancellation.create": "cancelled an appointment",
             "record.appointment_check_in.create": "checked you in for an appointment",
             "record.appointment_no_show.create": "recorded that you did not come to an appointment",
             # A request for blood cancelled (appliance/layers/clinical/blood.py): the units go back to stock.
             "record.blood_request_cancellation.amend": "cancelled a request for blood for you"}


def describe(event_type: str, action: str, figures: Mapping[str, str] | None = None) -> str:
    """'looked at your chart', 'recorded a prescription': one access log line in words. A command center
    drill-down (`record.kpi.<id>.read`) names the figure, by `figures` (KPI id to its name) when given."""
    if event_type in DESCRIBED:
        return DESCRIBED[event_type]
    parts = event_type.split(".")
    kind = parts[1] if parts[0] in ("record", "patient") and len(parts) > 2 else parts[0]
    if kind == "kpi" and len(parts) > 3:
        figure = (figures or {}).get(parts[2]) or parts[2].replace("_", " ")
        return f"{VERBS.get(action, 'used')} your record in the list behind a facility's figure: {figure}"
    thing = THINGS.get(kind, kind.replace("_", " "))
    return f"{VERBS.get(action, 'used')} {thing}"


@dataclass(frozen=True)
class AccessGroup:
    """One line of a day of the access log: the accesses one person made at one facility that read the same in
    words ('looked at vital signs'), how many and from when to when (the facility's time). A break-the-glass
    access is a line of its own, with its reason, never folded into a count; a refused one is apart from those
    that were not."""

    facility: dict
    who: dict
    what: str
    refused: bool
    break_the_glass: bool
    reason: str | None
    first: dt.datetime
    last: dt.datetime
    count: int


@dataclass(frozen=True)
class AccessDay:
    """The accesses of one day (the facility's day), newest first, and their lines (`AccessGroup`), the one
    with the latest access first."""

    day: dt.date
    entries: list[audit.AccessEntry]
    groups: list[AccessGroup]


def by_day(entries: list[audit.AccessEntry], zones: Mapping[str, dt.tzinfo],
           figures: Mapping[str, str] | None = None) -> list[AccessDay]:
    """The access log (newest first, as `access_log` gives it) as days, newest first, each day in the zone of
    the facility that recorded it (`zones`, by tenant; UTC for one not named)."""
    days: dict[dt.date, list[audit.AccessEntry]] = {}
    for e in entries:
        days.setdefault(e.recorded.astimezone(zones.get(e.facility["tenant"], dt.UTC)).date(), []).append(e)
    return [AccessDay(day, listed, _groups(listed, zones, figures))
            for day, listed in sorted(days.items(), reverse=True)]


def days_page(days: list[AccessDay], page: int, size: int) -> tuple[list[AccessDay], int, int]:
    """Page `page` (1 the newest) of the days, `size` a page: the days, the page they are (one past the last is
    the last) and how many pages there are (one, however few days)."""
    pages = max(1, -(-len(days) // size))
    page = min(max(page, 1), pages)
    return days[(page - 1) * size:page * size], page, pages


def _groups(entries: list[audit.AccessEntry], zones: Mapping[str, dt.tzinfo],
            figures: Mapping[str, str] | None) -> list[AccessGroup]:
    grouped: dict[tuple, list[tuple[audit.AccessEntry, str]]] = {}
    for e in entries:
        what = describe(e.event_type, e.action, figures)
        refused = bool(e.outcome) and e.outcome != "success"
        person = (e.who.get("account") or e.who.get("kind"), e.who.get("name"), e.who.get("role"))
        key = (e.facility["tenant"], *person, what, refused, e.seq if e.break_the_glass else None)
        grouped.setdefault(key, []).append((e, what))
    groups = []
    for members in grouped.values():
        first, what = members[0]
        zone = zones.get(first.facility["tenant"], dt.UTC)
        times = [e.recorded.astimezone(zone) for e, _ in members]
        groups.append(AccessGroup(facility=first.facility, who=first.who, what=what,
                                  refused=bool(first.outcome) and first.outcome != "success",
                                  break_the_glass=first.break_the_glass, reason=first.reason,
                                  first=min(times), last=max(times), count=len(members)))
    return sorted(groups, key=lambda g: g.last, reverse=True)


@dataclass(frozen=True)
class Holding:
    """A facility's chart of this patient."""

    tenant: str
    facility: str
    patient_id: uuid.UUID
    timezone: str = "UTC"  # the facility's, for the times a patient reads
    # How the patient reaches it (its tenant file's `phone`, `opening_hours`), where the portal says to phone or come.
    phone: str | None = None
    opening_hours: str | None = None

    @property
    def whom_to_phone(self) -> str:
        """'Hillview Health Centre on +254 20 555 0100', as a refusal telling the patient to phone says it (the name
        alone where the facility's file gives no number)."""
        return f"{self.facility} on {self.phone}" if self.phone else self.facility

    @property
    def tel(self) -> str | None:
        """The number as a link a phone dials ('tel:+254205550100')."""
        return f"tel:{dial(self.phone)}" if self.phone else None


@dataclass(frozen=True)
class _Chart:
    holding: Holding
    birth_date: dt.date | None
    sex: str | None

    @property
    def person(self) -> tuple[dt.date | None, str | None]:
        return self.birth_date, self.sex


@dataclass(frozen=True)
class _Charts:
    person: tuple[dt.date | None, str | None]  # the subject's birth date and sex: what the national-ID question asks
    charts: list[_Chart]
    invited_from: tuple[str, uuid.UUID] | None  # the facility and chart the account asked for was invited from

    def chart(self, tenant: str, patient_id: uuid.UUID) -> _Chart | None:
        return next((c for c in self.charts if (c.holding.tenant, c.holding.patient_id) == (tenant, patient_id)),
                    None)


def _charts_of(db: Database, subject_id: uuid.UUID, account_id: uuid.UUID | None = None) -> _Charts:
    """The person's record in the identity index, their charts at every active facility that holds one
    (`identity.facilities_of`: only those facilities are asked), each with its birth date and sex, and the chart
    the account `account_id` was invited from."""
    subject, account = identity.subject, identity.account
    with db.control() as conn:
        subjects, holding = identity.facilities_of(conn, subject_id)
        # The survivor (the one of them merged into none), and the account's chart, in one round trip.
        person = conn.execute(sa.select(
            subject.c.birth_date, subject.c.sex,
            sa.select(account.c.invited_from_tenant).where(account.c.id == account_id).scalar_subquery(),
            sa.select(account.c.invited_from_patient).where(account.c.id == account_id).scalar_subquery(),
        ).where(subject.c.id.in_(subjects), subject.c.merged_into.is_(None))).one()
    charts = []
    for tenant in list_tenants(db):
        if tenant["status"] != "active" or tenant["slug"] not in holding:
            continue
        with db.tenant(tenant["slug"]) as conn:
            rows = conn.execute(sa.text("SELECT id, birth_date, sex FROM patient WHERE subject_id = ANY(:subjects) "
                                        "ORDER BY mrn"), {"subjects": subjects}).all()
        charts += [_Chart(Holding(tenant["slug"], tenant["name"], row.id, tenant["timezone"], tenant["phone"],
                                  tenant["opening_hours"]), row.birth_date, row.sex) for row in rows]
    return _Charts((person[0], person[1]), charts, (person[2], person[3]) if person[3] is not None else None)


@dataclass(frozen=True)
class Records:
    """What an account reads of its person (`records_of`): the charts shown, and how many were left out."""

    shown: list[Holding]
    withheld: int = 0


def portal_records(db: Database, subject_id: uuid.UUID | None, *, account_id: uuid.UUID | None = None) -> Records:
    """The charts of this person at every facility that holds one, by facility name, as the account `account_id`
    reads them. When two of them disagree in birth date or sex (`identity.differing`), one was linked over a
    differing answer to the national-ID question (the desk said a card was right that was another person's,
    `clinical.service.link_registration`): shown together, each person would read the other's record. Then only
    the charts agreeing with the one the account was invited from are shown (else with the person's record in
    the identity index), until a facility corrects the registration in error (`disputed_link` refuses a new
    invitation from such a chart meanwhile)."""
    if subject_id is None:
        return Records([])
    found = _charts_of(db, subject_id, account_id)
    shown = [c.holding for c in found.charts]
    if any(identity.differing(one.person, other.person) for one in found.charts for other in found.charts):
        own = found.chart(*found.invited_from) if found.invited_from else None
        reference = own.person if own is not None else found.person
        shown = [c.holding for c in found.charts if not identity.differing(reference, c.person)]
        # The account and how many, never whose charts nor what differs.
        log.warning("portal.charts_withheld", account=str(account_id), withheld=len(found.charts) - len(shown))
    return Records(sorted(shown, key=lambda h: (h.facility, str(h.patient_id))), len(found.charts) - len(shown))


def records_of(db: Database, reader: Principal) -> list[Holding]:
    """The charts a patient's account reads of its person (`portal_records`), by facility name."""
    return portal_records(db, reader.subject_id, account_id=reader.account_id).shown


def disputed_link(db: Database, tenant: str, patient_id: uuid.UUID, subject_id: uuid.UUID) -> list[str]:
    """What chart `patient_id` of `tenant` differs in ("birth date", "sex") from the person it is linked to, when
    that link is in dispute: the chart disagrees with the person's record in the identity index (what the
    national-ID question compared it with), and it was linked over that differing answer, the desk confirming it
    (`identity.link_dispute`, recorded since c0016), or, for a link made before, it disagrees with another of the
    person's charts too. An account invited from it would be another person's, on the holder's records. A chart
    corrected since to agree with the index is not in dispute, nor one of before c0016 that is the person's only
    chart or disagrees with the index alone (its registration corrected since the index's record was made). Empty
    when none is."""
    found = _charts_of(db, subject_id)
    this = found.chart(tenant, patient_id)
    if this is None:
        return []
    differs = identity.differing(found.person, this.person)
    if not differs:
        return []
    if any(identity.differing(this.person, c.person) for c in found.charts if c is not this):
        return differs
    with db.control() as conn:
        return differs if identity.link_dispute(conn, tenant, patient_id) is not None else []


def access_log(db: Database, principal: Principal, holdings: list[Holding]) -> list[audit.AccessEntry]:
    """Every recorded access to these charts, newest first; the reading is recorded at each facility."""
    entries = [entry for holding in holdings
               for entry in audit.patient_access_log(db, holding.tenant, holding.patient_id)]
    for holding in holdings:
        with db.tenant(holding.tenant) as conn:
            audit.append(conn, tenant=holding.tenant, principal=principal, event_type="patient.access_log.read",
                         action="R", patient_id=holding.patient_id)
    return sorted(entries, key=lambda e: (e.recorded, e.seq), reverse=True)
