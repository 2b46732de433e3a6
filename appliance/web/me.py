"""The patient portal, `/me`: a patient's own record from every facility that holds one (allergies,
problems, medicines, results a clinician has reviewed as the release rules let them show — some later,
some only once a clinician has given them in person, `policies/release.toml` — a mother's deliveries (as the
release rules' `[delivery]` lets them show), visits, appointments to come, bills), and who opened it — each
access from the facilities' audit trails, break-the-glass marked with its stated reason.

A patient signs in to an account linked to their one-identity subject; the pages take no patient id,
so there is nothing to guess: the subject comes from the session alone. Each facility's part is read in
that facility's transaction and audited there as the patient's own read. A patient's account is made
by the facility's front desk or clinician (`portal.invite_patient`, on the patient's registration
page), with a one-time enrolment link for the patient, as staff accounts are.

`/me/appointments` (appliance/web/me_appointments.py) is where they cancel, move and book appointments;
`/me/immunizations` (appliance/web/me_immunizations.py) is their vaccination card; `/me/documents`
(appliance/web/me_documents.py) the files on their record the release rules show them, to download.

`/me/bills/<facility>/<invoice>` is one of their bills line by line, with what was taken off, paid and is owed.

`/me/record.json` is the same record as a file to keep or to take to another clinician: what the page
shows (results only once released to the patient) and the vaccination card, nothing they do not, with each
facility's times in its own zone. Taking it away is recorded at each facility as an export of the chart.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
import zoneinfo
from decimal import Decimal

from litestar import Request, Response, get
from litestar.datastructures import State
from litestar.exceptions import NotFoundException, ValidationException
from litestar.params import FromPath, FromQuery
from litestar.response import Template

from appliance.layers.clinical import (
    antenatal,
    chart,
    delivery,
    discharge,
    family_planning,
    hiv,
    referral,
    tuberculosis,
)
from appliance.layers.clinical import service as clinical
from appliance.layers.clinical.errors import NotFound
from appliance.layers.clinical.family_planning_routes import programme_of
from appliance.layers.clinical.hiv_routes import programme_of as hiv_programme_of
from appliance.layers.clinical.tuberculosis_routes import regimens_of
from appliance.layers.financial import service as financial
from appliance.layers.financial.errors import NotFound as NoSuchBill
from appliance.layers.financial.money import format_money
from appliance.layers.operations import scheduling
from appliance.layers.operations.routes import kpi_definitions
from appliance.layers.patient import portal as patient_portal
from appliance.layers.patient.release import release
from appliance.substrate import audit
from appliance.web import me_appointments, me_documents, me_immunizations
from appliance.web.discharge import ward_names
from appliance.web.portal import (
    ENCOUNTER_CLASSES,
    FLAGS,
    Clock,
    is_abnormal,
    number,
    people_named,
    reference_range,
    result_value,
)

RESULTS_SHOWN = 20
VISITS_SHOWN = 10
BILLS_SHOWN = 20
# Every final bill is read, not only those shown: what the patient owes is the sum over all of them.
BILLS_READ = 10_000
# Days of the access log a page shows; each day is said in a few lines, and lists its every access on its own page.
ACCESS_DAYS_SHOWN = 7
MARKS = ("HH", "LL", "AA", "H", "L", "A")  # the result flags that say "outside the usual", gravest first
# A delivery in a mother's words: how she gave birth, and each baby (fresh or macerated is the clinicians' reading).
BIRTH_MODES = {"spontaneous_vaginal": "vaginal birth", "assisted_vaginal": "vaginal birth helped by vacuum or forceps",
               "caesarean": "caesarean section", "breech_vaginal": "vaginal birth, bottom or feet first (breech)"}
BABY_OUTCOMES = {"live_birth": "born alive", "fresh_stillbirth": "stillborn", "macerated_stillbirth": "stillborn"}
BABY_SEXES = {"female": "a girl", "male": "a boy", "unknown": "sex not told at birth"}
# A problem's verification in a patient's words: "differential", said bare, read as a diagnosis made.
VERIFICATION_WORDS = {"provisional": "not yet confirmed", "differential": "a possibility still being checked"}
# A discharge summary held back (clinical.discharge.held_from_portal), in the patient's words: what it holds is not
# hinted at, as a result given in person is not named before it is given.
SUMMARY_HELD = ("Your discharge summary will be given to you at your next visit: a clinician goes through part of it "
                "with you in person first, and it shows here after that.")
FP_REMOVED = "removed"  # a family planning visit that took out an implant or IUD, in her record's words


def _ongoing(card: dict) -> dict | None:
    """Of a woman's ANC card, what she reads of her ongoing pregnancy: the due date, the weeks today and the next
    contact; no test result, no flag."""
    current = next((p for p in card["pregnancies"] if p["status"] == "open"), None)
    if current is None:
        return None
    return {"edd": current["edd"], "weeks": current["gestation_today"], "next_contact_on": current["next_contact_on"],
            "gestation_days": current["gestation_days_today"], "overdue": current["overdue"]}


def _facility_records(state: State, request: Request, holdings: list[patient_portal.Holding], *,
                      export: bool = False) -> list[dict]:
    """Each facility's part of the record (of `holdings`, the account's `patient_portal.records_of`), as the page
    shows it; `export` reads it whole, for the file, and records in each facility's transaction that it was
    taken away."""
    records = []
    for holding in holdings:
        with state.db.tenant(holding.tenant) as conn:
            summary = chart.chart_summary(conn, request.user, holding.patient_id)
            # The summary's results do not carry when one was given in person (its SQL is a frozen
            # function); the release rules need it, so it is asked for here, in one query.
            given = clinical.disclosed_at_of(conn, holding.patient_id, [r["id"] for r in summary["results"]])
            for result in summary["results"]:
                result["disclosed_at"] = given.get(result["id"])
            appointments = scheduling.upcoming_of_patient(conn, request.user, holding.patient_id)
            bills = financial.bills_of_patient(conn, request.user, holding.patient_id, limit=BILLS_READ)
            # Those signed while a result to be given in person was untold are held back until it is given.
            discharges = discharge.patients_own(conn, request.user, holding.patient_id,
                                                state.release_rules.in_person_rule)
            wards = ward_names(conn) if discharges else {}
            # Where this facility referred them, when, and where it stands: not the letter, which is the clinicians'.
            referrals = referral.sent(conn, request.user, holding.patient_id)
            # Her deliveries, as corrected since (the read noted as her own where she has any: a man's log says
            # nothing of births).
            births = delivery.deliveries(conn, request.user, holding.patient_id, noting_none=False) \
                if state.release_rules.deliveries_shown else []
            # Her ongoing pregnancy's due date and next contact (noted as her own read only where she has a card).
            zone = zoneinfo.ZoneInfo(holding.timezone)
            pregnancy = _ongoing(antenatal.card(conn, request.user, holding.patient_id,
                                                today=dt.datetime.now(zone).date(), tz=zone, noting_none=False)) \
                if state.release_rules.antenatal_shown else None
            # Her family planning visits and next day due (noted as her own read only where she has any).
            here = zoneinfo.ZoneInfo(holding.timezone)
            contraception = family_planning.own_record(
                conn, request.user, holding.patient_id, programme=programme_of(state),
                today=dt.datetime.now(here).date(), tz=here) if state.release_rules.family_planning_shown else None
            # Their HIV care card's dates, never a viral load's value (noted as their own read only where enrolled).
            art = hiv.own_record(conn, request.user, holding.patient_id, programme=hiv_programme_of(state),
                                 today=dt.datetime.now(here).date()) if state.release_rules.hiv_care_shown else None
            # Their TB treatment's phase and dates, never a follow-up's findings (noted only where registered here).
            tb = tuberculosis.own_record(
                conn, request.user, holding.patient_id, regimens=regimens_of(state),
                today=dt.datetime.now(here).date()) if state.release_rules.tb_care_shown else None
            if export:
                audit.append(conn, tenant=holding.tenant, principal=request.user, event_type="patient.record.export",
                             action="E", patient_id=holding.patient_id)
        released = release(summary["results"], state.release_rules, dt.datetime.now(dt.UTC))
        summary["results"] = released.shown if export else released.shown[:RESULTS_SHOWN]
        summary["encounters"] = summary["encounters"] if export else summary["encounters"][:VISITS_SHOWN]
        # Dates as the patient lived them, at the facility: a result taken at 01:30 in Nairobi is of that
        # day there (the staff's pages say so too), not of the day before in UTC.
        clock = Clock(zoneinfo.ZoneInfo(holding.timezone))
        owed = sum((b["outstanding"] for b in bills if b["payer_code"] is None), Decimal(0))
        # A bill corrected after the patient paid it owes them the difference back until the cashier records the
        # refund; an insurer's invoice overpaid is refunded to the insurer, not to them.
        refund_due = sum((b["overpaid"] for b in bills if b["payer_code"] is None), Decimal(0))
        # The marks the shown results carry, each said once, the gravest first, for the line saying what they mean.
        marked = [FLAGS[flag][0] for flag in MARKS if any(result["flag"] == flag for result in summary["results"])]
        records.append({"holding": holding, "summary": summary, "appointments": appointments,
                        "bills": bills if export else bills[:BILLS_SHOWN], "bills_total": len(bills), "owed": owed,
                        "refund_due": refund_due,
                        "marked": marked,
                        "later": [(result, clock.local(at)) for result, at in released.later],
                        "in_person": released.in_person, "clock": clock, "discharges": discharges, "wards": wards,
                        "referrals": referrals, "deliveries": births,
                        "family_planning": contraception, "pregnancy": pregnancy, "hiv_care": art,
                        "tb_care": tb})
    return records


@get("/me", operation_id="PatientRecord", tags=["patient"], opt={"permission": "patient.record.read"},
     sync_to_thread=True, include_in_schema=False)
def record_page(request: Request, state: State) -> Template:
    found = patient_portal.portal_records(state.db, request.user.subject_id, account_id=request.user.account_id)
    return Template("me.html", context={
        "principal": request.user, "records": _facility_records(state, request, found.shown),
        "withheld": found.withheld, "tab": "record", "flags": FLAGS,
        "birth_modes": BIRTH_MODES, "baby_outcomes": BABY_OUTCOMES, "baby_sexes": BABY_SEXES,
        "encounter_classes": ENCOUNTER_CLASSES, "result_value": result_value, "reference_range": reference_range,
        "is_abnormal": is_abnormal, "number": number, "money": format_money, "verification_words": VERIFICATION_WORDS,
        "referral_states": referral.STATUS_FOR_PATIENT, "summary_held": SUMMARY_HELD})


@get("/me/access", operation_id="PatientAccessLog", tags=["patient"], opt={"permission": "patient.access_log.read"},
     sync_to_thread=True, include_in_schema=False)
def access_page(request: Request, state: State, who: FromQuery[str] = "others", page: FromQuery[str] = "1",
                day: FromQuery[str | None] = None) -> Template:
    """Who opened the record, a day at a time, newest first: each day says who did what, and how many times
    from when to when ('Nurse Achieng looked at vital signs 14 times, 08:10–11:40'), not one line per read (a
    child's morning on the ward is some two hundred); `day` lists that day's every access. Break-the-glass
    accesses are each named at the top, whatever the page. By default everyone but the patient, whose own reads
    (three or so each time they open their record) would otherwise fill the page; `who=all` shows them too."""
    # Asked here, not by the framework's types, so a link mistyped gets a sentence a parent reads.
    if not page.isdigit() or int(page) < 1:
        raise ValidationException(f"there is no page {page!r} of the log: pages are numbered from 1, the newest days")
    try:
        day = dt.date.fromisoformat(day) if day is not None else None
    except ValueError:
        raise ValidationException(f"{day!r} is not a day: give it as the page links to one, e.g. 2026-11-27") from None
    holdings = patient_portal.records_of(state.db, request.user)
    entries = patient_portal.access_log(state.db, request.user, holdings)
    me = str(request.user.account_id)
    everyone = who == "all"
    listed = entries if everyone else [e for e in entries if e.who.get("account") != me]
    clocks = {h.tenant: Clock(zoneinfo.ZoneInfo(h.timezone)) for h in holdings}
    figures = {definition.id: definition.name for definition in kpi_definitions(state)}
    days = patient_portal.by_day(listed, {tenant: clock.tz for tenant, clock in clocks.items()}, figures)
    shown, at, pages = patient_portal.days_page(days, int(page), ACCESS_DAYS_SHOWN)
    neighbours = {}
    if day is not None:
        shown = [d for d in days if d.day == day]
        later = [d.day for d in days if d.day > day]
        earlier = [d.day for d in days if d.day < day]
        neighbours = {"later": later[-1] if later else None, "earlier": earlier[0] if earlier else None}
    return Template("me_access.html", context={
        "principal": request.user, "tab": "access", "holdings": holdings, "days": shown, "day": day,
        "neighbours": neighbours, "page": at, "pages": pages, "days_total": len(days),
        "clocks": clocks, "zones": sorted({h.timezone for h in holdings}), "everyone": everyone,
        "own": len(entries) - len([e for e in entries if e.who.get("account") != me]),
        "total": len(listed), "me": me, "describe": patient_portal.describe, "figures": figures,
        "whose": "&who=all" if everyone else "",
        "break_glass": [e for e in entries if e.break_the_glass],
        "by_facility": {h.tenant: sum(1 for e in entries if e.facility["tenant"] == h.tenant) for h in holdings},
    })


def _iso(day: dt.date | None) -> str | None:
    return day.isoformat() if day else None


def _as_file(record: dict) -> dict:
    """One facility's part of the record as the file carries it: the page's fields, named for a reader."""
    s, clock = record["summary"], record["clock"]
    patient = s["patient"]
    return {
        "facility": record["holding"].facility, "time_zone": str(clock.tz), "record_number": patient["mrn"],
        "name": f"{patient['given_names']} {patient['family_name']}", "born": patient["birth_date"].isoformat(),
        "allergies": [{"substance": a["substance"], "reaction": a["reaction"], "severity": a["severity"]}
                      for a in s["allergies"]],
        "health_problems": [{"problem": p["display"], "icd10": p["code"], "verification": p["verification"],
                             "since": p["onset_date"].isoformat() if p["onset_date"] else None} for p in s["problems"]],
        "medicines": [{"medicine": m["drug"], "dose": f"{number(m['dose'])} {m['dose_unit']}".strip(),
                       "route": m["route"], "how_often": m["frequency"], "days": m["duration_days"]}
                      for m in s["medications"]],
        "results": [{"test": x["display"], "result": result_value(x), "usual_range": reference_range(x) or None,
                     "flag": FLAGS[x["flag"]][0] if x["flag"] in FLAGS else None, "taken": clock.iso(x["occurred_at"])}
                    for x in s["results"]],
        "results_reviewed_shown_later": [{"test": x["display"], "taken": clock.iso(x["occurred_at"]),
                                          "shown_from": at.isoformat(timespec="minutes")} for x, at in record["later"]],
        "results_given_in_person_first": record["in_person"],
        "appointments": [{"at": a["local_start"].isoformat(timespec="minutes"), "clinic": a["clinic"],
                          "status": a["status"]} for a in record["appointments"]],
        "visits": [{"on": clock.iso(e["started_at"] or e["planned_for"]),
                    "kind": ENCOUNTER_CLASSES.get(e["encounter_class"], e["encounter_class"]), "status": e["status"]}
                   for e in s["encounters"]],
        "pregnancy": {"due_date": record["pregnancy"]["edd"].isoformat(), "weeks": record["pregnancy"]["weeks"],
                      "next_contact": record["pregnancy"]["next_contact_on"].isoformat()
                      if record["pregnancy"]["next_contact_on"] else None} if record["pregnancy"] else None,
        "family_planning": {
            "next_due": f["standing"]["due_on"].isoformat() if f["standing"]["due_on"] else None,
            "visits": [{"on": v["given_on"].isoformat(), "method": v["method_name"] or v["method"],
                        "what": FP_REMOVED if v["service"] == "removal" else f"{v['quantity']} {v['unit'] or 'unit'}"
                        + ("" if v["quantity"] == 1 else "s")} for v in f["visits"]],
        } if (f := record["family_planning"]) else None,
        "hiv_care": {
            "art_number": h["art_number"], "status": h["status"], "status_on": _iso(h["status_on"]),
            "art_started_on": _iso(h["art_started_on"]), "regimen": h["regimen_name"] or h["regimen"],
            "next_appointment": _iso(h["next_appointment_on"]), "arvs_until": _iso(h["arvs_until"]),
            "viral_load_due": _iso(h["viral_load_due_on"]),
        } if (h := record["hiv_care"]) else None,
        "tb_care": {
            "register_number": t["register_number"], "regimen": t["regimen_name"] or t["regimen"],
            "started_on": _iso(t["started_on"]), "ends_on": _iso(t["ends_on"]), "phase": t["phase"],
            "phase_until": _iso(t["phase_until"]), "next_sputum_check": _iso(t["next_sputum_on"]),
            "outcome": t["outcome"], "outcome_on": _iso(t["outcome_on"]),
        } if (t := record["tb_care"]) else None,
        "deliveries": [{
            "born": clock.iso(d["born_at"]), "how": BIRTH_MODES[d["mode"]],
            "weeks_pregnant": f"{d['gestation_weeks']}+{d['gestation_days']}",
            "babies": [{"baby": b["number"], "born": BABY_OUTCOMES[b["outcome"]], "sex": BABY_SEXES[b["sex"]],
                        "weight_g": b["weight_g"]} for b in d["babies"]]} for d in record["deliveries"]],
        "discharge_summaries": [{
            "admitted": clock.iso(d["stay"]["started_at"]), "discharged": clock.iso(d["stay"]["ended_at"]) or None,
            "ward": record["wards"].get(d["stay"]["ward_code"], d["stay"]["ward_code"]),
            "signed": clock.iso(d["occurred_at"]),
            **({"held": SUMMARY_HELD} if d["held"] else
               {f.label: d["fields"][f.key] for f in discharge.TEMPLATE.fields if d["fields"].get(f.key)})}
            for d in record["discharges"]],
        "you_owe": format_money(record["owed"], record["bills"][0]["currency"]) if record["bills"] else None,
        "refund_due_to_you": format_money(record["refund_due"], record["bills"][0]["currency"])
        if record["refund_due"] > 0 else None,
        "bills": [{"invoice": b["number"], "on": clock.iso(b["finalised_at"]),
                   "paid_by": "you" if b["payer_code"] is None else b["payer"],
                   "total": format_money(b["total"], b["currency"]),
                   "still_owed": format_money(b["outstanding"], b["currency"]),
                   **({"refund_due_to_you": format_money(b["overpaid"], b["currency"])}
                      if b["overpaid"] > 0 and b["payer_code"] is None else {})} for b in record["bills"]],
    }


@get("/me/record.json", operation_id="PatientRecordDownload", tags=["patient"],
     opt={"permission": "patient.record.read"}, sync_to_thread=True, include_in_schema=False)
def download(request: Request, state: State) -> Response:
    """The patient's record from every facility as one JSON file (see the module docstring)."""
    now = dt.datetime.now(dt.UTC)
    document = {"record_of": request.user.display_name, "downloaded_at": now.isoformat(timespec="seconds"),
                "about": "Your record from every facility on this appliance that holds one, as your record page "
                         "shows it: results once they are released to you. Times are each facility's own.",
                "facilities": [_as_file(record) for record in _facility_records(
                    state, request, patient_portal.records_of(state.db, request.user), export=True)]}
    card = me_immunizations.vaccination_card(state, request)
    if card.shown:  # the card's doses of every facility, judged together, as /me/immunizations shows them
        document["vaccinations"] = card.model_dump(mode="json", exclude={"shown"})
    return Response(json.dumps(document, indent=1, ensure_ascii=False).encode(), media_type="application/json",
                    headers={"content-disposition": f'attachment; filename="my-health-record-{now:%Y-%m-%d}.json"',
                             "cache-control": "no-store"})


@get("/me/discharge-summaries/{facility:str}/{entry_id:uuid}", operation_id="PatientDischargeSummary", tags=["patient"],
     opt={"permission": "patient.record.read"}, sync_to_thread=True, include_in_schema=False)
def discharge_page(request: Request, state: State, facility: FromPath[str], entry_id: FromPath[uuid.UUID]) -> Template:
    """One of the patient's own discharge summaries, to read and print: only from a facility that holds their
    chart, and only one written on that chart (anything else is not found). The read is audited there. One the
    portal holds back (a result to be given in person first) says so, and nothing of what it says. (The
    facility is not named `tenant`: a patient works in none, and a tenant route is one's working facility's.)"""
    for holding in patient_portal.records_of(state.db, request.user):
        if holding.tenant != facility:
            continue
        with state.db.tenant(facility) as conn:
            try:
                (summary,) = discharge.patients_own(conn, request.user, holding.patient_id,
                                                    state.release_rules.in_person_rule, entry_id=entry_id)
            except NotFound:
                continue
            patient = clinical.get_patient(conn, request.user, holding.patient_id)
            wards = ward_names(conn)
        return Template("me_discharge.html", context={
            "principal": request.user, "tab": "record", "summary": summary, "patient": patient, "wards": wards,
            "facility_name": holding.facility, "holding": holding, "clock": Clock(zoneinfo.ZoneInfo(holding.timezone)),
            "template": discharge.TEMPLATE, "iso_date": dt.date.fromisoformat, "held": SUMMARY_HELD,
            "names": people_named(state.db, {summary["record_author_id"], summary["author_id"]})})
    raise NotFoundException("no such discharge summary in your record")


@get("/me/bills/{facility:str}/{invoice_id:uuid}", operation_id="PatientBill", tags=["patient"],
     opt={"permission": "patient.record.read"}, sync_to_thread=True, include_in_schema=False)
def bill_page(request: Request, state: State, facility: FromPath[str], invoice_id: FromPath[uuid.UUID]) -> Template:
    """One of the patient's own final bills, line by line (what each charge was for), with what was taken off, paid
    and is still owed: only from a facility that holds their chart, and only a bill of that chart (anything else is
    not found, and is not read, so no one else's record notes it). The read is audited there."""
    for holding in patient_portal.records_of(state.db, request.user):
        if holding.tenant != facility:
            continue
        with state.db.tenant(facility) as conn:
            try:
                found = financial.invoice_row(conn, invoice_id)
            except NoSuchBill:
                break
            if found["patient_id"] != holding.patient_id or found["status"] != "final":
                continue  # another of this person's charts at the facility may hold it
            bill = financial.get_invoice(conn, request.user, invoice_id)
        return Template("me_bill.html", context={
            "principal": request.user, "tab": "record", "bill": bill, "facility_name": holding.facility,
            "holding": holding,
            "clock": Clock(zoneinfo.ZoneInfo(holding.timezone)), "money": format_money})
    raise NotFoundException("no such bill in your record")


ROUTES = [record_page, access_page, download, discharge_page, bill_page, *me_appointments.ROUTES,
          *me_immunizations.ROUTES, *me_documents.ROUTES]
