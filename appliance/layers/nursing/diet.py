"""Diet orders, nil by mouth before theatre, and the kitchen's list: what each inpatient may eat, meal by meal.

A `diet_order` entry (tenant t0040) says what an admitted patient may eat from when (default now) until when (open):
one diet, the diets combined with it (halal and diabetic), the IDDSI texture level for dysphagia and a note. The
allergies are the record's (the clinical layer's `allergy` entries, read here, never re-entered). Clinicians and
nurses write it. A patient has one order record: a new order is its next version and is followed from its own start
(the order before it stays in force until then, so "nil by mouth from midnight" leaves tonight's supper as it was),
a correction replaces the version before it (`corrects`), and entered in error withdraws the order (the ward writes
a new one). An outpatient has no diet order.

The diets:

- therapeutic milks F-75 (stabilisation) and F-100 (rehabilitation) for severe acute malnutrition: WHO, Guidelines
  for the inpatient treatment of severely malnourished children (Ashworth, Khanum, Jackson, Schofield, 2003) and
  Guideline: updates on the management of severe acute malnutrition in infants and children (2013);
- texture: the IDDSI Framework's eight levels, 0 (thin) to 7 (regular): drinks 0-4, foods 3-7 (International
  Dysphagia Diet Standardisation Initiative, Complete IDDSI Framework Detailed Definitions 2.0, 2019,
  https://iddsi.org/framework/; Cichero et al., Dysphagia 2017;32:293-314).

Nil by mouth before theatre is computed, not written: an operation booked on the patient's record (the clinical
layer's `surgery`, scheduled or in theatre; read here by SQL, layers never import each other) makes the patient
fast from a fixed time before its planned start — no solid food from 6 hours before, clear fluids until 2 hours
before (ASA, Practice Guidelines for Preoperative Fasting, Anesthesiology 2017;126:376-393, light meal 6 h, clear
liquids 2 h; the ESA's 2011 perioperative fasting guideline says the same). The ward board shows it and the kitchen's
list flags the patient's tray. Nothing is written, so a cancelled or completed case ends it at once, a moved case
moves it, and surgery's code is not touched. A case still scheduled 12 hours after its planned start is the theatre
list's to close, and no longer starves the patient here.

The kitchen's list is, for one meal of one day (breakfast, lunch, supper at the tenant file's `[nursing]` hours),
ward by ward: bed, name, the diet in force at the meal, texture, the food allergies on the record, nil by mouth
flagged; a patient admitted without an order is listed as "no diet ordered", the ward's to fix. Listing a patient
reads their record: each is noted on their access log, as the ward's worklist does.
"""

from __future__ import annotations

import datetime as dt
import uuid
import zoneinfo
from collections import defaultdict
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from appliance.layers.nursing import service, views
from appliance.layers.nursing.errors import Invalid
from appliance.layers.nursing.models import DIETS, nursing_setting
from appliance.substrate import record
from appliance.substrate.principal import Principal
from appliance.substrate.record import note_access
from appliance.substrate.tenant_config import NursingConfig

DIET_WORDS = {
    "normal": "Normal", "soft": "Soft", "clear_liquid": "Clear liquid", "full_liquid": "Full liquid",
    "diabetic": "Diabetic", "renal": "Renal", "low_salt": "Low salt",
    "high_energy_protein": "High energy, high protein",
    "gluten_free": "Gluten free", "halal": "Halal", "vegetarian": "Vegetarian", "npo": "Nil by mouth",
    "enteral": "Enteral feeding (tube)", "f75": "F-75 therapeutic milk (stabilisation)",
    "f100": "F-100 therapeutic milk (rehabilitation)",
}
assert set(DIET_WORDS) == set(DIETS)
# Diets that are the whole of what the patient takes: nothing is combined with them and the kitchen sends no tray.
NOTHING_ELSE = ("npo", "enteral", "f75", "f100")
IDDSI = {0: "0 Thin", 1: "1 Slightly thick", 2: "2 Mildly thick", 3: "3 Liquidised / moderately thick",
         4: "4 Pureed / extremely thick", 5: "5 Minced and moist", 6: "6 Soft and bite-sized", 7: "7 Regular"}
MEALS = ("breakfast", "lunch", "supper")

SOLIDS_STOP = dt.timedelta(hours=6)  # ASA 2017: a light meal at least 6 hours before
CLEAR_FLUIDS_STOP = dt.timedelta(hours=2)  # ASA 2017: clear liquids at least 2 hours before
STALE_CASE = dt.timedelta(hours=12)  # a case this far past its planned start is the theatre list's to close
BOARD_AHEAD = dt.timedelta(hours=24)  # the ward board shows an operation planned within the next day
BACKDATED_AT_MOST = dt.timedelta(days=1)
AHEAD_AT_MOST = dt.timedelta(days=14)


# -- reading the orders ------------------------------------------------------------------------------

_ORDERS = sa.text("""
    SELECT e.id, e.root_id, e.patient_id, e.status, e.author_id, e.recorded_at, e.reason,
           d.diet, d.also, d.iddsi_level, d.starts_at, d.ends_at, d.corrects, d.note
    FROM entry e LEFT JOIN diet_order d ON d.entry_id = e.id
    WHERE e.patient_id = ANY(:ids) AND e.kind = 'diet_order'
    ORDER BY e.recorded_at, e.id""")


def _versions(conn: Connection, patient_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, list[dict]]:
    """Every version of every diet order of these patients, oldest first; not audited (callers are)."""
    found: dict[uuid.UUID, list[dict]] = defaultdict(list)
    if patient_ids:
        for row in conn.execute(_ORDERS, {"ids": list(patient_ids)}).mappings():
            found[row["patient_id"]].append(dict(row))
    return found


def live_chain(versions: list[dict]) -> list[dict]:
    """The versions of the patient's order record in force (its latest root, unless entered in error), oldest
    first; [] when there is none or it was withdrawn."""
    if not versions:
        return []
    root = versions[-1]["root_id"]
    chain = [v for v in versions if v["root_id"] == root]
    return [] if chain[-1]["status"] == "entered_in_error" else chain


def in_force(chain: list[dict], at: dt.datetime) -> dict | None:
    """The version that says what the patient may eat at `at`: the latest that started by then (a version that
    starts later leaves the one before it in force until it does; a correction replaces the one before it
    outright), if it has not ended."""
    i = len(chain) - 1
    while i >= 0:
        version = chain[i]
        if version["starts_at"] <= at:
            return version if version["ends_at"] is None or at < version["ends_at"] else None
        i -= 2 if version["corrects"] else 1
    return None


def label(version: dict | None) -> str:
    """'Diabetic, halal; IDDSI 5 Minced and moist' — a diet in words; 'No diet ordered' for none."""
    if version is None:
        return "No diet ordered"
    words = ", ".join([DIET_WORDS[version["diet"]], *(DIET_WORDS[d].lower() for d in version["also"])])
    return words + (f"; IDDSI {IDDSI[version['iddsi_level']]}" if version["iddsi_level"] is not None else "")


def _view(version: dict) -> dict:
    return {"id": version["id"], "root_id": version["root_id"], "status": version["status"],
            "recorded_by": version["author_id"], "recorded_at": version["recorded_at"], "reason": version["reason"],
            "diet": version["diet"], "also": list(version["also"] or []), "iddsi_level": version["iddsi_level"],
            "starts_at": version["starts_at"], "ends_at": version["ends_at"], "corrects": version["corrects"],
            "note": version["note"], "label": label(version) if version["diet"] else "Entered in error",
            "texture": IDDSI.get(version["iddsi_level"]) if version["diet"] else None}


# -- nil by mouth before theatre ---------------------------------------------------------------------

_CASES = sa.text("""
    SELECT e.root_id, e.patient_id, s.procedure, s.planned_at, s.status, s.theatre
    FROM entry e JOIN surgery s ON s.entry_id = e.id
    WHERE e.patient_id = ANY(:ids) AND e.kind = 'surgery' AND e.status <> 'entered_in_error'
      AND NOT EXISTS (SELECT 1 FROM entry n WHERE n.supersedes = e.id)
      AND s.status IN ('scheduled', 'in_theatre') AND s.planned_at BETWEEN :since AND :until
    ORDER BY s.planned_at""")


def fasting_state(planned_at: dt.datetime, at: dt.datetime) -> str | None:
    """What a patient whose operation is planned at `planned_at` may take at `at`: 'nil_by_mouth' (nothing, from
    2 hours before), 'clear_fluids_only' (no food, from 6 hours before), or None (eats as ordered; also once the
    case is stale, 12 hours past its planned start)."""
    if at >= planned_at + STALE_CASE or at < planned_at - SOLIDS_STOP:
        return None
    return "nil_by_mouth" if at >= planned_at - CLEAR_FLUIDS_STOP else "clear_fluids_only"


def operations_around(conn: Connection, patient_ids: Sequence[uuid.UUID], at: dt.datetime,
                      ahead: dt.timedelta) -> dict[uuid.UUID, dict]:
    """Each patient's first open operation (scheduled or in theatre) planned between 12 hours before `at` and
    `ahead` after it; not audited (callers are)."""
    if not patient_ids:
        return {}
    found: dict[uuid.UUID, dict] = {}
    for row in conn.execute(_CASES, {"ids": list(patient_ids), "since": at - STALE_CASE, "until": at + ahead}
                            ).mappings():
        found.setdefault(row["patient_id"], dict(row))
    return found


def fasting(case: dict | None, at: dt.datetime) -> dict | None:
    """The nil-by-mouth suggestion an operation makes at `at`: when food and clear fluids stop, and the state."""
    if case is None:
        return None
    planned = case["planned_at"]
    return {"case_id": case["root_id"], "procedure": case["procedure"], "theatre": case["theatre"],
            "planned_at": planned, "case_status": case["status"], "solids_stop_at": planned - SOLIDS_STOP,
            "clear_fluids_stop_at": planned - CLEAR_FLUIDS_STOP, "state": fasting_state(planned, at)}


# -- writing an order --------------------------------------------------------------------------------


def _admitted(conn: Connection, patient_id: uuid.UUID) -> dict:
    service._require_patient(conn, patient_id)
    stay = views.stays_of(conn, [patient_id]).get(patient_id)
    if stay is None or stay["id"] is None:
        raise Invalid("this patient is not admitted: a diet order is for an inpatient on a ward (an outpatient eats "
                      "at home); admit the patient first", field="patient_id")
    return stay


def _detail(data, now: dt.datetime, *, corrects: bool) -> dict:
    """The order's detail, or a refusal (422) naming the field."""
    if data.diet not in DIETS:
        raise Invalid(f"'{data.diet}' is not a diet the kitchen knows: choose one of "
                      f"{', '.join(DIETS)}", field="diet")
    also = list(dict.fromkeys(data.also))
    for other in also:
        if other not in DIETS:
            raise Invalid(f"'{other}' is not a diet the kitchen knows", field="also")
        if other in NOTHING_ELSE or other == "normal" or other == data.diet:
            raise Invalid(f"{DIET_WORDS[other].lower()} is not combined with {DIET_WORDS[data.diet].lower()}: "
                          "order it as the diet itself", field="also")
    if also and data.diet in NOTHING_ELSE:
        raise Invalid(f"{DIET_WORDS[data.diet].lower()} is all the patient takes: nothing is combined with it",
                      field="also")
    if data.iddsi_level is not None and data.diet in ("npo", "enteral"):
        raise Invalid(f"a patient on {DIET_WORDS[data.diet].lower()} takes nothing by mouth: no IDDSI texture",
                      field="iddsi_level")
    if data.iddsi_level is not None and data.iddsi_level not in IDDSI:
        raise Invalid("the IDDSI level is 0 (thin) to 7 (regular)", field="iddsi_level")
    starts = (data.starts_at or now).astimezone(dt.UTC)
    if starts < now - BACKDATED_AT_MOST:
        raise Invalid("the order starts more than a day ago: order diets as they start", field="starts_at")
    if starts > now + AHEAD_AT_MOST:
        raise Invalid("the order starts more than 14 days ahead: order it nearer the time", field="starts_at")
    ends = data.ends_at.astimezone(dt.UTC) if data.ends_at else None
    if ends is not None and ends <= starts:
        raise Invalid(f"the order ends ({ends:%Y-%m-%d %H:%M} UTC) before it starts ({starts:%Y-%m-%d %H:%M} UTC)",
                      field="ends_at")
    return {"diet": data.diet, "also": also, "iddsi_level": data.iddsi_level, "starts_at": starts, "ends_at": ends,
            "corrects": corrects, "note": data.note or None}


def _written(appended: record.Entry) -> dict:
    return _view({"id": appended.id, "root_id": appended.root_id, "status": appended.status,
                  "author_id": appended.author_id, "recorded_at": appended.recorded_at, "reason": appended.reason,
                  **appended.detail})


def place(conn: Connection, principal: Principal, patient_id: uuid.UUID, data, *, now: dt.datetime) -> dict:
    """A new diet order: the next version of the patient's order record (followed from its start), or its first."""
    stay = _admitted(conn, patient_id)
    detail = _detail(data, now, corrects=False)
    chain = live_chain(_versions(conn, [patient_id]).get(patient_id, []))
    appended = record.append(conn, principal, "diet_order", patient_id=patient_id, encounter_id=stay["id"],
                             supersedes=chain[-1]["id"] if chain else None, detail=detail,
                             reason="new diet order" if chain else None)
    return _written(appended)


def correct(conn: Connection, principal: Principal, patient_id: uuid.UUID, order_id: uuid.UUID, data, reason: str,
            *, now: dt.datetime) -> dict:
    """A correction: the next version, replacing the one corrected (which must be the current one: 409 if not)."""
    service.require_version(conn, patient_id, order_id, "diet_order")
    stay = _admitted(conn, patient_id)
    detail = _detail(data, now, corrects=True)
    return _written(record.append(conn, principal, "diet_order", patient_id=patient_id, encounter_id=stay["id"],
                                  supersedes=order_id, detail=detail, reason=reason.strip()))


def retract(conn: Connection, principal: Principal, patient_id: uuid.UUID, order_id: uuid.UUID, reason: str) -> dict:
    """An order entered in error: withdrawn, the patient has no diet order until one is written."""
    service.require_version(conn, patient_id, order_id, "diet_order")
    retracted = record.retract(conn, principal, order_id, reason)
    return {"id": retracted.id, "root_id": retracted.root_id, "status": retracted.status, "reason": retracted.reason}


# -- the patient's diet ------------------------------------------------------------------------------

_ALLERGIES = sa.text("""
    SELECT e.id, e.patient_id, a.substance, a.category, a.reaction, a.severity
    FROM entry e JOIN allergy a ON a.entry_id = e.id
    WHERE e.patient_id = ANY(:ids) AND e.kind = 'allergy' AND e.status <> 'entered_in_error'
      AND NOT EXISTS (SELECT 1 FROM entry n WHERE n.supersedes = e.id) AND a.clinical_status = 'active'
    ORDER BY a.substance""")


def _allergies(conn: Connection, patient_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, list[dict]]:
    found: dict[uuid.UUID, list[dict]] = defaultdict(list)
    if patient_ids:
        for row in conn.execute(_ALLERGIES, {"ids": list(patient_ids)}).mappings():
            found[row["patient_id"]].append(dict(row))
    return found


def of_patient(conn: Connection, principal: Principal, patient_id: uuid.UUID, *, now: dt.datetime) -> dict:
    """The order in force now, the one to come (a version starting later), every version newest first, the
    patient's active allergies (food first: the kitchen's) and the nil-by-mouth suggestion of an operation
    booked within the next day. The read is audited."""
    service._require_patient(conn, patient_id)
    versions = _versions(conn, [patient_id]).get(patient_id, [])
    chain = live_chain(versions)
    current = in_force(chain, now)
    latest = chain[-1] if chain else None
    allergies = sorted(_allergies(conn, [patient_id]).get(patient_id, []), key=lambda a: a["category"] != "food")
    case = operations_around(conn, [patient_id], now, BOARD_AHEAD).get(patient_id)
    note_access(conn, principal, "read", patient_id, "diet_order", [v["id"] for v in versions])
    if allergies:
        note_access(conn, principal, "read", patient_id, "allergy", [a["id"] for a in allergies])
    return {"patient_id": patient_id, "admitted": bool(views.stays_of(conn, [patient_id]).get(patient_id)),
            "current": _view(current) if current else None,
            "upcoming": _view(latest) if latest and latest["starts_at"] > now and latest is not current else None,
            "label": label(current), "history": [_view(v) for v in reversed(versions)],
            "allergies": [{k: a[k] for k in ("substance", "category", "reaction", "severity")} for a in allergies],
            "fasting": fasting(case, now)}


def ward_summary(conn: Connection, patient_ids: Sequence[uuid.UUID], *, now: dt.datetime) -> dict[uuid.UUID, dict]:
    """For the ward's worklist: each patient's diet in force now (or none) and the nil-by-mouth suggestion of an
    operation within the next day. Not audited: the worklist notes each patient it lists."""
    versions = _versions(conn, patient_ids)
    cases = operations_around(conn, patient_ids, now, BOARD_AHEAD)
    summary = {}
    for pid in patient_ids:
        current = in_force(live_chain(versions.get(pid, [])), now)
        suggestion = fasting(cases.get(pid), now)
        summary[pid] = {"diet": current["diet"] if current else None, "label": label(current),
                        "iddsi_level": current["iddsi_level"] if current else None,
                        "nil_by_mouth": bool(current and current["diet"] == "npo")
                        or bool(suggestion and suggestion["state"]),
                        "fasting": suggestion}
    return summary


# -- the kitchen's list ------------------------------------------------------------------------------


def meal_times(conn: Connection) -> dict[str, dt.time]:
    """When the facility serves each meal, local time: the tenant file's `[nursing]`, or the defaults."""
    defaults = NursingConfig()
    row = conn.execute(sa.select(nursing_setting.c.breakfast_at, nursing_setting.c.lunch_at,
                                 nursing_setting.c.supper_at)).first()
    found = dict(zip(MEALS, row, strict=True)) if row else {}
    return {meal: found.get(meal) or getattr(defaults, meal) for meal in MEALS}


def next_meal(conn: Connection, now: dt.datetime, tz: zoneinfo.ZoneInfo,
              meal: str | None = None) -> tuple[str, dt.date]:
    """The next meal the kitchen serves after `now` (today's next, else tomorrow's breakfast), or, with `meal`
    named, that meal's next serving: today's if it is still to come, else tomorrow's. A kitchen asking for supper
    at eight in the evening is preparing tomorrow's, not reading one already eaten."""
    local = now.astimezone(tz)
    times = meal_times(conn)
    if meal is not None:
        if meal not in MEALS:
            raise Invalid(f"choose the meal: {', '.join(MEALS)}", field="meal")
        return meal, local.date() + dt.timedelta(days=0 if local.time() < times[meal] else 1)
    for each in MEALS:
        if local.time() < times[each]:
            return each, local.date()
    return MEALS[0], local.date() + dt.timedelta(days=1)


def meal_moment(day: dt.date, at: dt.time, tz: zoneinfo.ZoneInfo) -> dt.datetime:
    """The meal's time on `day` in the facility's zone, in UTC."""
    return dt.datetime.combine(day, at, tzinfo=tz).astimezone(dt.UTC)


def kitchen_list(conn: Connection, principal: Principal, wards: list[dict], *, meal: str, day: dt.date,
                 tz: zoneinfo.ZoneInfo) -> dict:
    """The kitchen's list for `meal` on `day`, ward by ward: every admitted patient on the ward with the diet in
    force at the meal, texture, food allergies and whether they are nil by mouth then (ordered, or fasting for
    theatre); those without an order are counted as 'no diet ordered'. Each patient listed is audited."""
    if meal not in MEALS:
        raise Invalid(f"choose the meal: {', '.join(MEALS)}", field="meal")
    served_at = meal_moment(day, meal_times(conn)[meal], tz)
    shown = []
    for ward in wards:
        on_ward = views.patients_on_ward(conn, ward["code"])
        stays = views.stays_of(conn, [p["id"] for p in on_ward])
        patients = [p for p in on_ward if stays.get(p["id"], {}).get("id") == p["encounter_id"]]
        ids = [p["id"] for p in patients]
        versions = _versions(conn, ids)
        allergies = _allergies(conn, ids)
        cases = operations_around(conn, ids, served_at, SOLIDS_STOP)
        rows, counts = [], defaultdict(int)
        for p in patients:
            order = in_force(live_chain(versions.get(p["id"], [])), served_at)
            suggestion = fasting(cases.get(p["id"]), served_at)
            fasting_now = bool(suggestion and suggestion["state"])
            nil = bool(order and order["diet"] == "npo") or fasting_now
            counts[label(order) if not nil else "Nil by mouth"] += 1
            rows.append({
                "patient_id": p["id"], "bed_code": p["bed_code"], "mrn": p["mrn"],
                "name": f"{p['family_name'].upper()}, {p['given_names']}",
                "diet": order["diet"] if order else None, "label": label(order),
                "texture": IDDSI.get(order["iddsi_level"]) if order and order["iddsi_level"] is not None else None,
                "note": order["note"] if order else None, "ordered": order is not None,
                "food_allergies": [a["substance"] for a in allergies.get(p["id"], []) if a["category"] == "food"],
                "nil_by_mouth": nil, "fasting": suggestion if fasting_now else None})
            note_access(conn, principal, "read", p["id"], "kitchen_list", [p["id"]],
                        detail={"ward": ward["code"], "meal": meal, "day": day.isoformat()})
        shown.append({"ward_code": ward["code"], "ward_name": ward["name"], "patients": rows,
                      "no_order": sum(1 for r in rows if not r["ordered"] and not r["nil_by_mouth"]),
                      "nil_by_mouth": sum(1 for r in rows if r["nil_by_mouth"]),
                      "counts": dict(sorted(counts.items()))})
    return {"meal": meal, "day": day, "served_at": served_at, "wards": shown}


def kitchen_wards(conn: Connection) -> list[dict]:
    """The wards whose patients eat from the kitchen: every active ward but the emergency department."""
    return [dict(r) for r in conn.execute(sa.select(views.ward.c.code, views.ward.c.name, views.ward.c.kind)
                                          .where(views.ward.c.active, views.ward.c.kind != "emergency")
                                          .order_by(views.ward.c.code)).mappings()]


__all__ = ["correct", "in_force", "kitchen_list", "of_patient", "place", "retract", "ward_summary"]
