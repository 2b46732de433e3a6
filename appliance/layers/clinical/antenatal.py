"""Antenatal care: the clinical layer's `antenatal` entry (tenant revision t0033), one per antenatal care (ANC) contact
on the woman's record, and what is read from them: her ANC card (the pregnancy's dating and due date, the
gestational age today, each contact, the flags, the WHO schedule's contacts kept, missed and due) and the facility's
ANC clinic list (every woman with an open pregnancy). The arithmetic and the rules are `antenatal_rules`'s.

A pregnancy is the run of contacts that share its first contact's record id (`pregnancy_id`). A new contact joins
the woman's latest pregnancy while it is open on the contact's day, else starts a new one, which must then be dated
(an LMP or an ultrasound). A pregnancy is open until a delivery recorded for her (in force: clinical/delivery.py)
on or after its first contact's day ends it, or until 45 weeks from its LMP have passed (closed with no outcome
recorded here: a birth elsewhere, a loss); a contact after either starts a new pregnancy. The contact's number is
derived: its place among the pregnancy's contacts in force, by day.

A contact's day is the entry's `occurred_at` on the facility's calendar (now for a contact today, noon of an
earlier day otherwise, as immunization.py does), so a correction may correct it. Td (tetanus-diphtheria) is
recorded on the contact, not as an `immunization`: the national schedule (policies/immunization.toml) is the
children's and has no dose for a pregnant woman.

Writes go through `record.append` (audited as a write of the woman's record); every read of the card is noted on
the audit seam, with the delivery it shows ending a pregnancy, and the clinic list notes each woman it names.
"""

from __future__ import annotations

import datetime as dt
import uuid
import zoneinfo

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from appliance.layers.clinical import antenatal_rules as rules
from appliance.layers.clinical import delivery, service
from appliance.layers.clinical.antenatal_schemas import AntenatalIn
from appliance.layers.clinical.errors import Invalid, NotFound
from appliance.layers.clinical.models import antenatal, patient
from appliance.layers.clinical.registers import hiv_confirmed_by
from appliance.substrate import age, deaths, record
from appliance.substrate.principal import Principal
from appliance.substrate.record import current_clause, entry, note_access, note_list_read

KIND = "antenatal"
CLINIC_LIST = "antenatal_clinic"  # how the ANC clinic list reads on each woman's access log
AGES = (10, 55)  # a woman's age at an antenatal contact: outside it the chart is the wrong one
ULTRASOUND_WEEKS = (4, 42)
IPTP_FROM_WEEKS = 13  # IPTp-SP is given from the second trimester, never in the first
# WHO's policy (2012, reaffirmed in the 2016 ANC recommendations): IPTp-SP at each scheduled contact from 13 weeks,
# "provided that the doses are given at least one month apart"; taken as four weeks, as national schedules write it.
IPTP_APART = dt.timedelta(weeks=4)
PRESENTATION_FROM_WEEKS = 28  # the baby's presentation is recorded in late pregnancy
CLOSED_AFTER = dt.timedelta(days=rules.MAX_GESTATION_DAYS)  # from the LMP: no pregnancy goes on past 45 weeks
_NOON = dt.time(12, 0)
# What is plausible of each measure (a figure outside is a slip: kilograms for grams, a digit too many).
RANGES = {"systolic_mmhg": (50, 260, "mmHg"), "diastolic_mmhg": (30, 160, "mmHg"), "weight_kg": (25, 250, "kg"),
          "fundal_height_cm": (5, 50, "cm"), "fetal_heart_rate": (50, 240, "beats a minute"),
          "haemoglobin_g_dl": (2, 25, "g/dL"), "gravida": (1, 25, ""), "td_dose": (1, 5, ""), "iptp_dose": (1, 8, ""),
          # Births before this pregnancy: fewer than the most pregnancies recorded, whether or not gravida is given.
          "para": (0, 24, "")}
_DETAIL_FIELDS = ("lmp", "ultrasound_on", "ultrasound_weeks", "ultrasound_days", "gravida", "para", "systolic_mmhg",
                  "diastolic_mmhg", "weight_kg", "fundal_height_cm", "fetal_heart_rate", "fetal_movements",
                  "presentation", "urine_protein", "haemoglobin_g_dl", "syphilis_test", "syphilis_treated",
                  "hiv_test", "td_dose", "iptp_dose", "iron_folic_acid", "danger_signs", "next_visit_on", "note")
_COLUMNS = (entry.c.id, entry.c.root_id, entry.c.patient_id, entry.c.status.label("entry_status"),
            entry.c.encounter_id, entry.c.author_id, entry.c.occurred_at, entry.c.recorded_at,
            *(c for c in antenatal.c if c.name != "entry_id"))


# -- reading --------------------------------------------------------------------------------------------------


def contacts_of(conn: Connection, patient_ids: list[uuid.UUID], tz: zoneinfo.ZoneInfo) -> list[dict]:
    """The contacts in force of these women, oldest first, each with its day (`seen_on`). Unaudited: the caller
    notes the read of what it shows."""
    if not patient_ids:
        return []
    rows = conn.execute(
        sa.select(*_COLUMNS).select_from(entry.join(antenatal, antenatal.c.entry_id == entry.c.id))
        .where(entry.c.patient_id.in_(patient_ids), entry.c.kind == KIND, current_clause(),
               entry.c.status != "entered_in_error")
        .order_by(entry.c.occurred_at, entry.c.recorded_at)).mappings()
    return [{**row, "seen_on": row["occurred_at"].astimezone(tz).date()} for row in rows]


def _dating_of(contacts: list[dict]) -> rules.Dating:
    """A pregnancy's dating from its contacts, oldest first: each contact's own dating, folded."""
    dating = None
    for c in contacts:
        scan = (c["ultrasound_on"], c["ultrasound_weeks"], c["ultrasound_days"] or 0) if c["ultrasound_on"] else None
        dating = rules.date_pregnancy(c["lmp"], scan, dating)
    return dating or rules.Dating(contacts[0]["edd"], contacts[0]["dated_by"])


def _deliveries(conn: Connection, patient_id: uuid.UUID, tz: zoneinfo.ZoneInfo) -> list[dict]:
    return [{**d, "born_on": d["born_at"].astimezone(tz).date()} for d in delivery.deliveries_of(conn, patient_id)]


def _ended_by(first_seen: dt.date, births: list[dict], before: dt.date | None = None) -> dict | None:
    """The delivery that ended a pregnancy first seen on `first_seen` (the earliest on or after that day, and on or
    before `before` where given)."""
    found = [d for d in births if d["born_on"] >= first_seen and (before is None or d["born_on"] <= before)]
    return min(found, key=lambda d: d["born_at"]) if found else None


def pregnancies(contacts: list[dict], births: list[dict], today: dt.date) -> list[dict]:
    """The woman's pregnancies, latest first, from her contacts (oldest first) and her deliveries in force."""
    grouped: dict[uuid.UUID, list[dict]] = {}
    for c in contacts:
        grouped.setdefault(c["pregnancy_id"], []).append(c)
    shaped = []
    for pregnancy_id, run in grouped.items():
        dating = _dating_of(run)
        lmp = dating.edd - dt.timedelta(days=rules.TERM_DAYS)
        ended = _ended_by(run[0]["seen_on"], births)
        status = "delivered" if ended else ("closed" if today > lmp + CLOSED_AFTER else "open")
        numbered = [{**c, "number": n, "gestation": rules.weeks_and_days(c["gestation_days"])}
                    for n, c in enumerate(run, start=1)]
        latest = run[-1]
        slots = rules.schedule(dating.edd, [(c["gestation_days"], c["seen_on"]) for c in run], today)
        next_due = next((s.due_on for s in slots if s.state == "due"), None) if status == "open" else None
        booked = latest["next_visit_on"] if status == "open" else None
        next_on = booked or next_due
        ga_today = rules.gestation_days(dating.edd, today) if status == "open" else None
        shaped.append({
            "id": pregnancy_id, "status": status, "edd": dating.edd, "dated_by": dating.dated_by,
            "lmp": next((c["lmp"] for c in reversed(run) if c["lmp"]), None),
            "gestation_today": rules.weeks_and_days(ga_today) if ga_today is not None else None,
            "gestation_days_today": ga_today,
            "gravida": next((c["gravida"] for c in run if c["gravida"] is not None), None),
            "para": next((c["para"] for c in run if c["para"] is not None), None),
            "flags": rules.pregnancy_flags(run) if status == "open" else [],
            "contacts": numbered, "schedule": [vars(s) for s in slots] if status == "open" else [],
            "next_contact_on": next_on, "overdue": next_on is not None and next_on < today,
            "ended_by": {"delivery_id": ended["root_id"], "born_at": ended["born_at"],
                         "gestation_weeks": ended["gestation_weeks"], "gestation_days": ended["gestation_days"]}
            if ended else None})
    return sorted(shaped, key=lambda p: p["contacts"][0]["seen_on"], reverse=True)


def card(conn: Connection, principal: Principal, patient_id: uuid.UUID, *, today: dt.date,
         tz: zoneinfo.ZoneInfo, noting_none: bool = True) -> dict:
    """The woman's ANC card: her pregnancies, latest first. The read is noted (with the deliveries it shows ending
    a pregnancy); `noting_none=False` notes nothing where there is nothing (a man's access log says nothing of
    antenatal care)."""
    service.require_patient(conn, patient_id)
    contacts = contacts_of(conn, [patient_id], tz)
    found = pregnancies(contacts, _deliveries(conn, patient_id, tz) if contacts else [], today)
    if contacts or noting_none:
        note_access(conn, principal, "read", patient_id, KIND, [c["id"] for c in contacts])
    ended = [p["ended_by"]["delivery_id"] for p in found if p["ended_by"]]
    if ended:
        note_access(conn, principal, "read", patient_id, "delivery", ended)
    return {"patient_id": patient_id, "today": today, "pregnancies": found}


def pregnant_today(conn: Connection, patient_ids: list[uuid.UUID], *, today: dt.date,
                   tz: zoneinfo.ZoneInfo) -> set[uuid.UUID]:
    """Of these women, those whose latest pregnancy on the ANC card is open today. Unaudited: it names no one, a
    caller that shows whom it found notes the read."""
    by_woman: dict[uuid.UUID, list[dict]] = {}
    for c in contacts_of(conn, patient_ids, tz):
        by_woman.setdefault(c["patient_id"], []).append(c)
    return {woman for woman, contacts in by_woman.items()
            if pregnancies(contacts, _deliveries(conn, woman, tz), today)[0]["status"] == "open"}


def withdrawn_contacts(conn: Connection, principal: Principal, patient_id: uuid.UUID) -> list[dict]:
    """The contacts marked entered in error on the woman's card, newest first, each with the gestational age it gave:
    who withdrew it, when and why (`service.list_withdrawn`, which audits the read). Kept out of `card`, which the
    woman's own record (/me) and the API read too: the list is the chart tab's."""
    return [{**w, "gestation": rules.weeks_and_days(w["gestation_days"])}
            for w in service.list_withdrawn(conn, principal, patient_id, antenatal, KIND)]


# A woman recorded deceased at any facility (appliance/substrate/deaths.py) is on no clinic's list: a midwife tracing
# one overdue would call a bereaved family.
_LIVING = sa.text("NOT EXISTS (SELECT 1 FROM control.subject_death_of(patient.subject_id, patient.id))")


def clinic(conn: Connection, principal: Principal, *, today: dt.date, tz: zoneinfo.ZoneInfo) -> dict:
    """The facility's living women with an open pregnancy, overdue and flagged first: gestational age today, contacts
    so far, the next contact (overdue or not) and the flags. Each woman listed is noted as read."""
    recent = conn.execute(
        sa.select(entry.c.patient_id).distinct().select_from(entry.join(antenatal, antenatal.c.entry_id == entry.c.id))
        .where(entry.c.kind == KIND, antenatal.c.edd >= today - (CLOSED_AFTER - dt.timedelta(days=rules.TERM_DAYS))
               )).scalars().all()
    women = {row["id"]: dict(row) for row in conn.execute(
        sa.select(patient.c.id, patient.c.mrn, patient.c.given_names, patient.c.family_name)
        .where(patient.c.id.in_(recent), _LIVING)).mappings()}
    by_woman: dict[uuid.UUID, list[dict]] = {}
    for c in contacts_of(conn, list(women), tz):
        by_woman.setdefault(c["patient_id"], []).append(c)
    listed = []
    for woman_id, contacts in by_woman.items():
        latest = pregnancies(contacts, _deliveries(conn, woman_id, tz), today)[0]
        if latest["status"] != "open":
            continue
        listed.append({**women[woman_id], "patient_id": woman_id, "pregnancy_id": latest["id"], "edd": latest["edd"],
                       "gestation_today": latest["gestation_today"], "contacts": len(latest["contacts"]),
                       "next_contact_on": latest["next_contact_on"], "overdue": latest["overdue"],
                       "flags": latest["flags"]})
    listed.sort(key=lambda w: (not w["overdue"], not w["flags"], w["edd"], w["family_name"]))
    note_list_read(conn, principal, CLINIC_LIST, [{"patient_id": w["patient_id"], "id": w["pregnancy_id"]}
                                                  for w in listed])
    return {"today": today, "women": listed}


# -- writing --------------------------------------------------------------------------------------------------


def _refuse_ranges(data: AntenatalIn, gestation_days: int, day: dt.date) -> None:
    for name, (low, high, unit) in RANGES.items():
        value = getattr(data, name)
        if value is not None and not low <= value <= high:
            words = name.replace("_", " ").replace(" mmhg", "").replace(" g dl", "").replace(" kg", "")
            raise Invalid(f"a {words} of {value}{' ' + unit if unit else ''} is outside what is recorded "
                          f"({low}-{high}{' ' + unit if unit else ''})", field=name)
    if (data.systolic_mmhg is None) != (data.diastolic_mmhg is None):
        missing = "diastolic_mmhg" if data.diastolic_mmhg is None else "systolic_mmhg"
        raise Invalid("give the blood pressure as both figures, systolic over diastolic", field=missing)
    if data.systolic_mmhg is not None and data.diastolic_mmhg >= data.systolic_mmhg:
        raise Invalid(f"a diastolic pressure of {data.diastolic_mmhg} is not below the systolic of "
                      f"{data.systolic_mmhg}: are they the wrong way round?", field="diastolic_mmhg")
    if data.para is not None and data.gravida is not None and not 0 <= data.para < data.gravida:
        raise Invalid(f"para {data.para} with gravida {data.gravida}: para counts the births before this "
                      "pregnancy, so it is less than gravida", field="para")
    weeks = gestation_days // 7
    if data.iptp_dose is not None and weeks < IPTP_FROM_WEEKS:
        raise Invalid(f"IPTp-SP is not given in the first trimester: this contact is at {weeks} weeks "
                      f"(from {IPTP_FROM_WEEKS})", field="iptp_dose")
    if data.presentation is not None and weeks < PRESENTATION_FROM_WEEKS:
        raise Invalid(f"the presentation is recorded from {PRESENTATION_FROM_WEEKS} weeks; this contact is at "
                      f"{weeks}", field="presentation")
    if data.next_visit_on is not None and data.next_visit_on <= day:
        raise Invalid("the next visit is after this contact's day", field="next_visit_on")
    # A visit booked after the pregnancy could have ended (a mistyped year) would stand in for the schedule's next
    # contact and keep her off the clinic's overdue list for good.
    last_day = day + dt.timedelta(days=rules.MAX_GESTATION_DAYS - gestation_days)
    if data.next_visit_on is not None and data.next_visit_on > last_day:
        raise Invalid(f"the next visit on {data.next_visit_on.isoformat()} is after this pregnancy reaches "
                      f"{rules.MAX_GESTATION_DAYS // 7} weeks on {last_day.isoformat()}: check the date",
                      field="next_visit_on")


def _refuse_iptp(data: AntenatalIn, day: dt.date, others: list[dict]) -> None:
    """An IPTp-SP dose refused where the pregnancy's other contacts (`others`, the corrected one left out) hold the
    same dose number, or another dose less than IPTP_APART from this one's day, either side: SP taken twice in a
    fortnight, or a dose recorded twice."""
    if data.iptp_dose is None:
        return
    doses = [c for c in others if c["iptp_dose"] is not None]
    same = next((c for c in doses if c["iptp_dose"] == data.iptp_dose), None)
    if same is not None:
        raise Invalid(f"IPTp-SP dose {data.iptp_dose} is already recorded in this pregnancy, on "
                      f"{same['seen_on'].isoformat()}: give the next dose's number, or correct that contact",
                      field="iptp_dose")
    near = next((c for c in doses if abs(c["seen_on"] - day) < IPTP_APART), None)
    if near is not None:
        raise Invalid(f"IPTp-SP dose {near['iptp_dose']} was given on {near['seen_on'].isoformat()}: doses are given "
                      f"at least {IPTP_APART.days // 7} weeks apart, so none on {day.isoformat()}", field="iptp_dose")


def _refuse_dating(data: AntenatalIn, day: dt.date) -> tuple[dt.date, int, int] | None:
    """The ultrasound's dating as (day, weeks, days), after refusing what cannot be one; None without a scan."""
    if data.lmp is not None and data.lmp > day:
        raise Invalid("the last menstrual period is after the contact's day", field="lmp")
    given = [data.ultrasound_on, data.ultrasound_weeks]
    if all(v is None for v in given) and data.ultrasound_days is None:
        return None
    if any(v is None for v in given):
        raise Invalid("an ultrasound dating is the day of the scan and the gestational age it measured, in weeks "
                      "(and days)", field="ultrasound_on" if data.ultrasound_on is None else "ultrasound_weeks")
    if data.ultrasound_on > day:
        raise Invalid("the ultrasound's day is after the contact's day", field="ultrasound_on")
    if not ULTRASOUND_WEEKS[0] <= data.ultrasound_weeks <= ULTRASOUND_WEEKS[1]:
        raise Invalid(f"an ultrasound dates a pregnancy from {ULTRASOUND_WEEKS[0]} to {ULTRASOUND_WEEKS[1]} weeks, "
                      f"not {data.ultrasound_weeks}", field="ultrasound_weeks")
    if not 0 <= (data.ultrasound_days or 0) <= 6:
        raise Invalid("the days past the completed weeks are 0 to 6", field="ultrasound_days")
    return data.ultrasound_on, data.ultrasound_weeks, data.ultrasound_days or 0


def no_care_because(patient: dict, day: dt.date) -> str | None:
    """Why no antenatal contact on `day` can be recorded on this patient's record (a man's; a girl or woman outside
    AGES that day), or None when one can. An unknown birth date is not a reason: the sex still decides."""
    if patient["sex"] == "male":
        return "this record is a man's: antenatal care is recorded on the woman's record"
    born = patient["birth_date"]
    if born is None:
        return None
    years = age.years_on(born, day) if day >= born else -1
    if not AGES[0] <= years <= AGES[1]:
        return (f"this patient was {max(years, 0)} years old on {day.isoformat()}: antenatal care is recorded for a "
                f"woman of {AGES[0]} to {AGES[1]}")
    return None


def may_hold_care(patient: dict, today: dt.date) -> bool:
    """Whether this record can hold antenatal care, recorded or to record: not a man's, nor a girl too young for
    any (a woman past AGES keeps the card of her past pregnancies)."""
    return no_care_because(patient, today) is None or (
        patient["sex"] != "male" and age.years_on(patient["birth_date"], today) > AGES[1])


def _woman(conn: Connection, principal: Principal, patient_id: uuid.UUID, data: AntenatalIn, day: dt.date,
           today: dt.date, tz: zoneinfo.ZoneInfo) -> None:
    woman = service.patient_of(conn, patient_id)
    service.require_chart(conn, patient_id, data.encounter_id)
    if day > today and woman["sex"] != "male":
        raise Invalid(f"the contact's day, {day.isoformat()}, is in the future", field="seen_on")
    refused = no_care_because(woman, day)
    if refused is not None:
        raise Invalid(refused, field="patient_id")
    death = deaths.death_of(conn, patient_id)
    if death is not None and day >= death.died_at.astimezone(tz).date():
        raise Invalid(f"this woman was {deaths.sentence(death)}: no contact on {day.isoformat()} can be recorded",
                      field="seen_on")
    if data.hiv_test in ("negative", "positive") and (
            confirmed := hiv_confirmed_by(conn, principal, patient_id, day, refusing=KIND)) is not None:
        raise Invalid(f"this woman is enrolled in HIV care here, HIV confirmed on {confirmed.isoformat()}: record "
                      "her HIV status as known positive, not a new test's result", field="hiv_test")


def _open_pregnancy(contacts: list[dict], births: list[dict], day: dt.date,
                    leaving_out: uuid.UUID | None = None) -> tuple[uuid.UUID, list[dict]] | None:
    """The woman's pregnancy a contact on `day` belongs to (its id and its other contacts), or None: her latest
    pregnancy begun on or before `day`, neither ended by a delivery nor past 45 weeks on that day."""
    grouped: dict[uuid.UUID, list[dict]] = {}
    for c in contacts:
        if c["root_id"] != leaving_out:
            grouped.setdefault(c["pregnancy_id"], []).append(c)
    begun = [(run[0]["seen_on"], pid, run) for pid, run in grouped.items() if run[0]["seen_on"] <= day]
    if not begun:
        return None
    first_seen, pregnancy_id, run = max(begun, key=lambda b: b[0])
    lmp = _dating_of(run).edd - dt.timedelta(days=rules.TERM_DAYS)
    if day > lmp + CLOSED_AFTER or _ended_by(first_seen, births, before=day) is not None:
        return None
    return pregnancy_id, run


def _detail(conn: Connection, patient_id: uuid.UUID, data: AntenatalIn, day: dt.date, tz: zoneinfo.ZoneInfo, *,
            correcting: dict | None = None) -> dict:
    """The contact's detail, after refusing what it cannot hold (422, naming the field): its pregnancy (the open one,
    or the corrected contact's), dating, ranges and flags."""
    scan = _refuse_dating(data, day)
    contacts = contacts_of(conn, [patient_id], tz)
    if correcting is not None:
        run = [c for c in contacts if c["pregnancy_id"] == correcting["pregnancy_id"]
               and c["root_id"] != correcting["root_id"]]
        pregnancy_id = correcting["pregnancy_id"]
    else:
        found = _open_pregnancy(contacts, _deliveries(conn, patient_id, tz), day)
        pregnancy_id, run = found if found else (None, [])
    earlier = [c for c in run if c["seen_on"] <= day]
    dating = rules.date_pregnancy(data.lmp, scan, _dating_of(earlier) if earlier else None)
    if dating is None and run:  # a contact corrected to a day before every other: the pregnancy's dating
        dating = _dating_of(run)
    if dating is None:
        raise Invalid("this is the first contact of a pregnancy: give the first day of the last menstrual period, or "
                      "the ultrasound's day and the gestational age it measured", field="lmp")
    gestation = rules.gestation_days(dating.edd, day)
    if not 0 <= gestation <= rules.MAX_GESTATION_DAYS:
        raise Invalid(f"that dating gives a gestational age of {gestation // 7} weeks on {day.isoformat()}: a "
                      f"pregnancy is from 0 to {rules.MAX_GESTATION_DAYS // 7} weeks; check the date given",
                      field="ultrasound_weeks" if scan else "lmp")
    _refuse_ranges(data, gestation, day)
    _refuse_iptp(data, day, run)
    positive_before = any(c["syphilis_test"] == "positive" for c in earlier)
    if data.syphilis_treated and data.syphilis_test != "positive" and not positive_before:
        raise Invalid("treatment for syphilis is recorded for a positive test, at this contact or an earlier one of "
                      "the pregnancy", field="syphilis_treated")
    detail = data.model_dump(include=set(_DETAIL_FIELDS))
    detail["danger_signs"] = sorted(set(data.danger_signs), key=list(rules.DANGER_SIGNS).index)
    # A contact recording no treatment does not flag again a positive test already treated in this pregnancy.
    treated = data.syphilis_treated or any(c["syphilis_treated"] for c in earlier)
    detail.update(pregnancy_id=pregnancy_id, edd=dating.edd, dated_by=dating.dated_by, gestation_days=gestation,
                  flags=rules.contact_flags(gestation_days=gestation, systolic=data.systolic_mmhg,
                                            diastolic=data.diastolic_mmhg, urine_protein=data.urine_protein,
                                            haemoglobin=data.haemoglobin_g_dl, syphilis_test=data.syphilis_test,
                                            syphilis_treated=treated, danger_signs=data.danger_signs))
    return detail


def _occurred_at(day: dt.date, today: dt.date, tz: zoneinfo.ZoneInfo) -> dt.datetime | None:
    return None if day == today else dt.datetime.combine(day, _NOON, tzinfo=tz)


def _written(conn: Connection, patient_id: uuid.UUID, appended: record.Entry, tz: zoneinfo.ZoneInfo) -> dict:
    """The contact as written, numbered in its pregnancy."""
    run = [c for c in contacts_of(conn, [patient_id], tz) if c["pregnancy_id"] == appended.detail["pregnancy_id"]]
    number, written = next((n, c) for n, c in enumerate(run, start=1) if c["id"] == appended.id)
    return {**written, "number": number, "gestation": rules.weeks_and_days(written["gestation_days"])}


def record_contact(conn: Connection, principal: Principal, patient_id: uuid.UUID, data: AntenatalIn, *,
                   today: dt.date, tz: zoneinfo.ZoneInfo) -> dict:
    """Record one ANC contact on the woman's record (see the module's docstring for its pregnancy)."""
    day = data.seen_on or today
    _woman(conn, principal, patient_id, data, day, today, tz)
    detail = _detail(conn, patient_id, data, day, tz)
    new_id = uuid.uuid4()
    detail["pregnancy_id"] = detail["pregnancy_id"] or new_id
    appended = record.append(conn, principal, KIND, patient_id=patient_id, encounter_id=data.encounter_id,
                             entry_id=new_id, detail=detail, occurred_at=_occurred_at(day, today, tz))
    return _written(conn, patient_id, appended, tz)


def _contact(conn: Connection, patient_id: uuid.UUID, entry_id: uuid.UUID) -> dict:
    """The version `entry_id` of one of the woman's contacts, or 404."""
    row = conn.execute(
        sa.select(entry.c.root_id, antenatal.c.pregnancy_id)
        .select_from(entry.join(antenatal, antenatal.c.entry_id == entry.c.id))
        .where(entry.c.id == entry_id, entry.c.patient_id == patient_id, entry.c.kind == KIND)).mappings().first()
    if row is None:
        raise NotFound(f"no antenatal contact {entry_id} on this patient's record", entry_id=str(entry_id))
    return dict(row)


def correct_contact(conn: Connection, principal: Principal, patient_id: uuid.UUID, entry_id: uuid.UUID,
                    data: AntenatalIn, reason: str, *, today: dt.date, tz: zoneinfo.ZoneInfo) -> dict:
    """The contact's next version, with the reason; it stays in its pregnancy. A version corrected since: 409."""
    loaded = _contact(conn, patient_id, entry_id)
    day = data.seen_on or today
    _woman(conn, principal, patient_id, data, day, today, tz)
    detail = _detail(conn, patient_id, data, day, tz, correcting=loaded)
    appended = record.append(conn, principal, KIND, patient_id=patient_id, encounter_id=data.encounter_id,
                             detail=detail, supersedes=entry_id, reason=reason,
                             occurred_at=_occurred_at(day, today, tz) or dt.datetime.now(tz))
    return _written(conn, patient_id, appended, tz)


def enter_in_error(conn: Connection, principal: Principal, patient_id: uuid.UUID, entry_id: uuid.UUID,
                   reason: str) -> dict:
    """Mark a contact entered in error (the wrong woman, recorded twice), with the reason: kept in its history, no
    longer on the card nor counted."""
    _contact(conn, patient_id, entry_id)
    return service.retract_entry(conn, principal, patient_id, entry_id, reason)
