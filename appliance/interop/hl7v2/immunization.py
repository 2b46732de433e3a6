"""Immunization messages: VXU^V04 records each dose an outreach team's tablet, a district's EPI register or a
private clinic sends, through the clinical layer's `immunization.record_dose` — the API's own validation, so a
dose given too early is recorded and not counted, and one dated before birth, after death or in the future is
refused — with the vaccine read from the national schedule's one code table (policies/immunization.toml:
each vaccine's own code and its CVX code, which the FHIR facade codes doses with too).

The fields read, as HL7 v2.5.1 places them and CDC's "HL7 Version 2.5.1 Implementation Guide for Immunization
Messaging" (Release 1.5) profiles them for VXU^V04 (MSH, PID, [PD1], [NK1], [PV1], then per dose ORC, RXA,
[RXR], {OBX}); the code tables as HL7's terminology publishes them (terminology.hl7.org CodeSystem v2-0322,
v2-0162, v2-0163) and as HL7's v2-to-FHIR map reads RXA into Immunization
(hl7.org/fhir/uv/v2mappings ConceptMap segment-rxa-to-immunization):

- PID-3: the patient, found as ADT and ORU find one (`patients.known_patient`); one not registered here is AE,
  as ORU's is: a VXU carries no visit to register them with (send ADT^A04 first).
- each RXA is one dose (an ORC before it is the order's envelope, read for nothing here):
  RXA-3 the day given (a full date); RXA-5 the vaccine, in CVX (coding system CVX or HL70292) or by the
  schedule's own code (any other coding system: L, 99xxx), its alternate triplet (RXA-5.4-6) tried too;
  RXA-9 administration notes (CDC's NIP001: 00 a new record, the dose given by the sender — `administered`;
  01-08 historical, from a card or another provider — `historical`; left empty: new); RXA-15 lot; RXA-16 lot
  expiry (a month alone is its last day); RXA-18 why not given (CDC's NIP002: 00 parental decision, 01
  religious exemption and 03 patient decision are `refused`, 02 `other`; a reason of our own, e.g.
  out_of_stock, is taken as it is); RXA-20 completion status (table 0322: CP completed, the default; RE refused,
  NA not administered and PA partially administered are all `not_done`, the reason RXA-18's where given, else
  `refused` for RE and `other` for NA and PA, the status named in the dose's note); RXA-21 action code: A (add)
  only — a correction or deletion (U, D) is made on the patient's chart, where its reason is asked.
- RXR-1 route (table 0162: IM, SC, ID, PO, or their NCIt codes as CDC's guide sends them) and RXR-2 site
  (table 0163: LT/LVL left thigh, RT/RVL right thigh, LA/LD left upper arm, RA/RD right upper arm).
- the dose number: an OBX of LOINC 30973-2 ("Dose number in series") after the RXA. 0 there says the dose is a
  campaign or extra dose (MCV0, a supplementary round), which counts for no dose of the series. Without that
  OBX the dose is the next one the schedule expects of the child (`immunization.next_dose_number`: the first of
  the series not yet given and counted, doses earlier in the same message included); once the series is
  complete such a dose is AE, asking for its number or 0.

A resend is applied once. The same control id gets its first ACK (`feed.py`). A dose this patient already has in
force — same vaccine, same day at the facility, same completion (given, or not given) — is not written again,
and the message is still AA: a tablet resending a session under a new control id leaves one row per dose. A dose
given and a dose refused on one day are both kept, the second is no resend of the first.

All the doses of a message are applied in its one transaction, as the feed's principal: any refused dose (an
unknown vaccine, a date before birth, a missing RXA) is AE naming the segment and field, and nothing is written.
The token needs clinical.immunization.write and the patient look-up's clinical.patient.search and .read. The
doses already recorded, read to judge a resend and the next dose, are noted once on the child's access log.
"""

from __future__ import annotations

import calendar
import datetime as dt
from dataclasses import dataclass

import hl7

from appliance.interop.hl7v2 import messages
from appliance.interop.hl7v2.act import Act, refusals
from appliance.interop.hl7v2.messages import (
    DATA_TYPE_ERROR,
    REQUIRED_FIELD_MISSING,
    TABLE_VALUE_NOT_FOUND,
    not_applied,
    value,
)
from appliance.interop.hl7v2.patients import known_patient
from appliance.layers.clinical import immunization
from appliance.layers.clinical.immunization_schedule import Schedule, Vaccine, load_schedule
from appliance.layers.clinical.schemas import ImmunizationIn
from appliance.substrate.config import Settings
from appliance.substrate.record import note_access
from appliance.substrate.tenancy import facility_timezone

CVX_SYSTEMS = {"CVX", "HL70292"}  # table 0292 is CVX, as messages before v2.5 name it
COMPLETION = {"CP": "completed", "RE": "not_done", "NA": "not_done", "PA": "not_done"}
COMPLETION_WORDS = {"RE": "refused", "NA": "not administered", "PA": "partially administered"}
DEFAULT_REASON = {"RE": "refused", "NA": "other", "PA": "other"}
REFUSAL_REASONS = {"00": "refused", "01": "refused", "02": "other", "03": "refused"}  # CDC's NIP002
OUR_REASONS = {"refused", "contraindicated", "out_of_stock", "child_unwell", "already_immune", "other"}
NEW_RECORD = "00"  # NIP001; 01-08 are historical records of one source or another
HISTORICAL = {f"0{n}" for n in range(1, 9)}
ROUTES = {"IM": "intramuscular", "C28161": "intramuscular", "SC": "subcutaneous", "C38299": "subcutaneous",
          "ID": "intradermal", "C38238": "intradermal", "PO": "oral", "C38288": "oral"}
SITES = {"LT": "left_thigh", "LVL": "left_thigh", "RT": "right_thigh", "RVL": "right_thigh",
         "LA": "left_upper_arm", "LD": "left_upper_arm", "RA": "right_upper_arm", "RD": "right_upper_arm"}
DOSE_NUMBER = "30973-2"  # LOINC: Dose number in series

# What the record may refuse of a dose, and the RXA field its value came from.
RXA_FIELDS = {"given_on": (3, "date/time start of administration"), "vaccine": (5, "administered code"),
              "lot_number": (15, "substance lot number"), "expiry_date": (16, "substance expiration date"),
              "not_done_reason": (18, "substance/treatment refusal reason"), "status": (20, "completion status"),
              "source": (9, "administration notes"), "note": (18, "substance/treatment refusal reason")}


def schedule() -> Schedule:
    """The national schedule the feed records against. The listener is its own process (`healthos hl7 listen`),
    started with the appliance's environment, so it reads the policies that environment names, as the demo's
    population does; `load_schedule` keeps it once read, and the listener refuses to start on a broken file."""
    return load_schedule(Settings.from_env().policies_dir / "immunization.toml")


@dataclass
class Dose:
    """One RXA group as read from the message: where it is, and what it says."""

    sequence: int  # the RXA's place among the message's RXAs (ERR's segment sequence)
    rxa: hl7.Segment
    rxr: tuple[int, hl7.Segment] | None = None
    dose_number: tuple[int, hl7.Segment] | None = None  # the OBX 30973-2 and its place among the OBXs


def _groups(message: hl7.Message) -> list[Dose]:
    doses: list[Dose] = []
    rxr_seen = obx_seen = 0
    for segment in message:
        name = str(segment[0])
        if name == "RXA":
            doses.append(Dose(len(doses) + 1, segment))
        elif name == "RXR":
            rxr_seen += 1
            if doses and doses[-1].rxr is None:
                doses[-1].rxr = (rxr_seen, segment)
        elif name == "OBX":
            obx_seen += 1
            if doses and value(segment, 3).upper() == DOSE_NUMBER:
                doses[-1].dose_number = (obx_seen, segment)
    return doses


def _vaccine(plan: Schedule, dose: Dose) -> Vaccine:
    """RXA-5's vaccine: its CVX code or the schedule's own, the primary triplet then the alternate."""
    where = {"location": ("RXA", dose.sequence, 5), "label": "administered code"}
    sent: list[str] = []
    for first in (1, 4):
        code, system = value(dose.rxa, 5, first), value(dose.rxa, 5, first + 2).upper()
        if not code:
            continue
        in_cvx = system in CVX_SYSTEMS or (not system and code.isascii() and code.isdigit())
        found = plan.vaccine_of_cvx(code) if in_cvx else plan.by_code.get(code.upper())
        if found is not None:
            return found
        sent.append(f"{code} ({'CVX' if in_cvx else system or 'no coding system'})")
    if not sent:
        raise not_applied(REQUIRED_FIELD_MISSING, "is missing: which vaccine was given?", **where)
    known = ", ".join(f"{v.code}" + (f" (CVX {v.cvx})" if v.cvx else "") for v in plan.vaccine)
    raise not_applied(TABLE_VALUE_NOT_FOUND, f"is not a vaccine of the national immunization schedule: send its CVX "
                      f"code (coding system CVX) or the schedule's own code; the schedule has {known}",
                      value=" or ".join(sent), **where)


def _date(text: str, sequence: int, field: int, label: str, *, end_of_period: bool = False) -> dt.date | None:
    if not text:
        return None
    day, partial = messages.hl7_date(text, location=("RXA", sequence, field), label=label)
    if partial and not end_of_period:
        raise not_applied(DATA_TYPE_ERROR, "is not a full date (YYYYMMDD): the day a dose was given is needed",
                          location=("RXA", sequence, field), label=label, value=text)
    if partial:  # an expiry of a month (202706) runs to its last day; of a year, to 31 December
        digits = text[:8]
        month = int(digits[4:6]) if len(digits) >= 6 else 12
        return dt.date(day.year, month, calendar.monthrange(day.year, month)[1])
    return day


def _coded(table: dict[str, str], segment: hl7.Segment, name: str, sequence: int, field: int, label: str,
           names: str) -> str | None:
    code = value(segment, field).upper()
    if not code:
        return None
    if code not in table:
        raise not_applied(TABLE_VALUE_NOT_FOUND, f"is not one this facility records ({names})",
                          location=(name, sequence, field), label=label, value=code)
    return table[code]


def _dose_fields(plan: Schedule, dose: Dose) -> tuple[Vaccine, dict]:
    """The dose as `ImmunizationIn`'s fields (all but its number), from its RXA and RXR."""
    rxa, sequence = dose.rxa, dose.sequence
    action = value(rxa, 21).upper()
    if action not in {"", "A"}:
        raise not_applied(TABLE_VALUE_NOT_FOUND, "is not applied by this interface, which adds doses (A): correct "
                          "or withdraw a recorded dose on the patient's chart, where its reason is asked",
                          location=("RXA", sequence, 21), label="action code", value=action)
    vaccine = _vaccine(plan, dose)
    given_on = _date(value(rxa, 3), sequence, 3, "date/time start of administration")
    if given_on is None:
        raise not_applied(REQUIRED_FIELD_MISSING, "is missing: the day the dose was given is needed",
                          location=("RXA", sequence, 3), label="date/time start of administration")
    completion = value(rxa, 20).upper() or "CP"
    if completion not in COMPLETION:
        raise not_applied(TABLE_VALUE_NOT_FOUND, "is not CP, RE, NA or PA (HL7 table 0322)",
                          location=("RXA", sequence, 20), label="completion status", value=completion)
    notes = value(rxa, 9).upper()
    if notes and notes != NEW_RECORD and notes not in HISTORICAL:
        raise not_applied(TABLE_VALUE_NOT_FOUND, "is not 00 (new record) or 01-08 (historical) (CDC's NIP001)",
                          location=("RXA", sequence, 9), label="administration notes", value=notes)
    fields: dict = {"vaccine": vaccine.code, "given_on": given_on, "status": COMPLETION[completion],
                    "source": "historical" if notes in HISTORICAL else "administered",
                    "lot_number": value(rxa, 15) or None,
                    "expiry_date": _date(value(rxa, 16), sequence, 16, "substance expiration date",
                                         end_of_period=True)}
    if completion != "CP":
        reason_code, reason_text = value(rxa, 18, 1), value(rxa, 18, 2)
        known = reason_code.lower() in OUR_REASONS or reason_code in REFUSAL_REASONS
        reason = (reason_code.lower() if reason_code.lower() in OUR_REASONS
                  else REFUSAL_REASONS.get(reason_code, "other" if reason_code else DEFAULT_REASON[completion]))
        # The reason's words where sent; a code we do not know (recorded as "other") kept in the note as sent.
        said = [f"{COMPLETION_WORDS[completion]} (RXA-20 {completion})",
                reason_text or ("" if known else reason_code)]
        fields |= {"not_done_reason": reason, "note": "; ".join(s for s in said if s)[:1000]}
    if dose.rxr is not None:
        rxr_sequence, rxr = dose.rxr
        fields["route"] = _coded(ROUTES, rxr, "RXR", rxr_sequence, 1, "route", "IM, SC, ID, PO: HL7 table 0162")
        fields["site"] = _coded(SITES, rxr, "RXR", rxr_sequence, 2, "administration site",
                                "LT, LVL, RT, RVL, LA, LD, RA, RD: HL7 table 0163")
    return vaccine, fields


def _numbered(vaccine: Vaccine, dose: Dose) -> tuple[bool, int | None]:
    """The dose number the message gives (OBX 30973-2): (True, n), (True, None) for 0 — a campaign or extra
    dose — or (False, None) when it gives none."""
    if dose.dose_number is None:
        return False, None
    obx_sequence, obx = dose.dose_number
    where = {"location": ("OBX", obx_sequence, 5), "label": "dose number in series"}
    text = value(obx, 5)
    if not (text.isascii() and text.isdigit()):
        raise not_applied(DATA_TYPE_ERROR, "is not a number (0 for a campaign or extra dose)",
                          value=text or "(empty)", **where)
    number = int(text)
    if number > vaccine.doses:
        raise not_applied(TABLE_VALUE_NOT_FOUND, f"is beyond {vaccine.name}'s series of {vaccine.doses} in the "
                          "schedule: send 0 for a campaign or extra dose", value=text, **where)
    return True, number or None


def record_doses(act: Act) -> None:
    """VXU^V04: each RXA a dose of the patient of PID, all in the message's one transaction."""
    patient = known_patient(act)
    act.require("clinical.immunization.write", "record immunizations")
    doses = _groups(act.message)
    if not doses:
        raise not_applied(REQUIRED_FIELD_MISSING, "the message has no RXA segment: no dose to record")
    plan = schedule()
    tz = facility_timezone(act.db, act.tenant)
    today = dt.datetime.now(tz).date()
    # The doses in force, read once for the message (to know a resend, and the next dose of a series) and noted
    # once on the child's access log; each dose written joins them.
    recorded = immunization.current_doses(act.conn, [patient["id"]])
    if recorded:
        note_access(act.conn, act.principal, "read", patient["id"], immunization.KIND, [r["id"] for r in recorded])
    for dose in doses:
        vaccine, fields = _dose_fields(plan, dose)
        if any(r["vaccine"] == vaccine.code and r["status"] == fields["status"]
               and immunization.given_on(r["occurred_at"], tz) == fields["given_on"] for r in recorded):
            continue  # already in force: a resend
        said, number = _numbered(vaccine, dose)
        if not said:
            number = immunization.next_dose_number(vaccine, patient["birth_date"], recorded, today, tz)
            if number is None:
                raise not_applied(REQUIRED_FIELD_MISSING, f"gives no dose number, and {vaccine.name}'s series of "
                                  f"{vaccine.doses} is complete for this child: send the dose number (OBX "
                                  f"{DOSE_NUMBER}), or 0 for a campaign or extra dose",
                                  location=("RXA", dose.sequence, 5), label="administered code")
        with refusals("RXA", dose.sequence, RXA_FIELDS):
            written = immunization.record_dose(
                act.conn, act.principal, patient["id"], ImmunizationIn(**fields, dose_number=number),
                schedule=plan, today=today, tz=tz)
        recorded.append(written["immunization"])
        act.made("immunization", written["immunization"]["id"])
