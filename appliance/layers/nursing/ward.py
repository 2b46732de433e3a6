"""A ward's view of the record: the worklist the nurses of a ward work from, the drug round, and the shift
handover.

Both are built from the record as it is now — patients with an open encounter on the ward, their latest
early warning score (NEWS2, or MEOWS in pregnancy and the puerperium, or PEWS for a child), their open
tasks and the doses of their prescriptions — with no copy kept anywhere else. Reading a ward's list reads each patient's
record, so each patient listed gets their own audit event, and the list shows up in that patient's
access log.

A recorded handover (`handover` entry) keeps the summary as it was handed over, with the nurse's note.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
import zoneinfo
from collections import defaultdict

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from appliance.layers.nursing import diet, fluid, schedule, service, views
from appliance.layers.nursing.errors import Invalid
from appliance.layers.nursing.models import handover
from appliance.layers.nursing.schemas import HandoverPatient
from appliance.substrate import record
from appliance.substrate.age import years_on
from appliance.substrate.principal import Principal
from appliance.substrate.record import entry, note_access

DAY_SHIFT = (dt.time(7), dt.time(19))  # day 07:00–19:00, night 19:00–07:00, facility time
DUE_SOON = dt.timedelta(hours=1)


def _name(row: dict) -> str:
    return f"{row['family_name'].upper()}, {row['given_names']}"


def worklist(conn: Connection, principal: Principal, ward: dict, *, now: dt.datetime,
             tz: zoneinfo.ZoneInfo) -> dict:
    """Every patient on the ward: escalations first (highest NEWS2 risk, a MEOWS trigger or a PEWS of 8 or
    more ranking with NEWS2's "medium"), then observations overdue,
    with each patient's open tasks and the doses due now or late, and for a patient on a fluid balance chart
    today's balance and whether the urine output is oliguric (`oliguric`, shown with the escalations), and each
    patient's diet now and whether they are nil by mouth (ordered, or fasting for an operation)."""
    patients = views.patients_on_ward(conn, ward["code"])
    ids = [p["id"] for p in patients]
    scores = service.latest_scores(conn, ids)
    excluded = service.news2_exclusions(conn, ids, now)
    maternity = service.latest_scores(conn, [pid for pid, why in excluded.items() if why.maternity], "meows")
    paediatric = service.latest_scores(conn, [pid for pid, why in excluded.items() if why.paediatric], "pews")
    tasks: dict[uuid.UUID, list[dict]] = defaultdict(list)
    for task in service.tasks_of(conn, ids, open_only=True):
        tasks[task["patient_id"]].append(service.task_view(task, now))
    due: dict[uuid.UUID, int] = defaultdict(int)
    late: dict[uuid.UUID, int] = defaultdict(int)
    first_late: dict[uuid.UUID, dt.datetime] = {}  # the MAR's day to open: a late dose may be yesterday's
    prescriptions = service.prescriptions_of(conn, ids)
    # Medicines a patient came in on wait for a doctor's decision off the MAR: counted apart, never late.
    to_reconcile: dict[uuid.UUID, int] = defaultdict(int)
    for prescription in prescriptions:
        if prescription["came_in_on"] == "to_reconcile" and prescription["status"] == "active":
            to_reconcile[prescription["patient_id"]] += 1
    for line in service.mar_lines(conn, ids, window_start=now - service.LATE_LOOKBACK, window_end=now + DUE_SOON,
                                  now=now, tz=tz, prescriptions=prescriptions):
        for dose in line["doses"]:
            if dose["state"] == "late":
                late[line["patient_id"]] += 1
                first_late[line["patient_id"]] = min(first_late.get(line["patient_id"], dose["scheduled_for"]),
                                                     dose["scheduled_for"])
            elif dose["state"] in {"due_now", "due"}:
                due[line["patient_id"]] += 1
    fluids = fluid.ward_summary(conn, ids, now=now, tz=tz)
    diets = diet.ward_summary(conn, ids, now=now)
    today = now.astimezone(tz).date()
    listed = []
    for p in patients:
        # A score from before NEWS2 stopped applying (say, before the pregnancy was recorded) is not a
        # risk to sort or escalate by.
        score = None if p["id"] in excluded else scores.get(p["id"])
        mother = maternity.get(p["id"])
        child = paediatric.get(p["id"])
        obs_task = next((t for t in tasks[p["id"]] if t["code"] == "observations"), None)
        # Without an open observations task, a score taken in this stay still says when the next set is
        # due; one from an earlier visit (a clinic's set) schedules nothing here.
        due_at = obs_task["due_at"] if obs_task else next(
            (s["next_due_at"] for s in (score, mother, child) if s and s["encounter_id"] == p["encounter_id"]), None)
        listed.append({
            "patient_id": p["id"], "mrn": p["mrn"], "name": _name(p), "age": years_on(p["birth_date"], today),
            "birth_date": p["birth_date"], "sex": p["sex"], "reason": p["reason"], "encounter_id": p["encounter_id"],
            "bed_code": p["bed_code"], "expected_discharge_on": p["expected_discharge_on"],
            "news2": score, "meows": mother, "pews": child,
            "escalated": any(s and s["escalation"] for s in (score, mother, child)),
            "oliguric": bool(p["id"] in fluids and fluids[p["id"]]["urine"].oliguric),
            "news2_exclusion": dataclasses.asdict(excluded[p["id"]]) if p["id"] in excluded else None,
            "observations_due_at": due_at, "observations_overdue": bool(due_at and due_at < now),
            "tasks": tasks[p["id"]], "doses_due": due[p["id"]], "doses_late": late[p["id"]],
            "first_late_at": first_late.get(p["id"]), "to_reconcile": to_reconcile[p["id"]],
            "fluid": fluids.get(p["id"]), "diet": diets.get(p["id"]),
        })
        note_access(conn, principal, "read", p["id"], "worklist", [p["id"]], detail={"ward": ward["code"]})
    listed.sort(key=lambda item: (
        -_rank(item), -(item["news2"]["total"] if item["news2"] else -1),
        not item["observations_overdue"], item["bed_code"] or "~", item["name"]))
    return {"ward_code": ward["code"], "ward_name": ward["name"], "at": now, "patients": listed,
            "escalations": sum(1 for item in listed if item["escalated"]),
            "oliguric": sum(1 for item in listed if item["oliguric"])}


def _rank(item: dict) -> int:
    """How urgent a listed patient's latest early warning score is (0: none)."""
    if item["news2"]:
        return service.RISK_RANK[item["news2"]["risk"]]
    if item["meows"]:
        return service.MEOWS_RANK[item["meows"]["risk"]]
    if item["pews"]:
        return service.PEWS_RANK[item["pews"]["risk"]]
    return 0


# A drug round gives the doses due within the hour either side of it (the late window of the MAR, after which a
# dose with nothing recorded is late), and every late one still open from the last day.
ROUND_WINDOW = schedule.LATE_AFTER


def drug_round(conn: Connection, principal: Principal, ward: dict, *, now: dt.datetime,
               tz: zoneinfo.ZoneInfo) -> dict:
    """The ward's drug round now, one walk down the ward: per patient on it, their active allergies and the
    scheduled doses of their MAR (`service.mar_lines`, its rule of what is due and late) with nothing recorded
    that are late (up to `service.LATE_LOOKBACK` back) or due within `ROUND_WINDOW` of now, with the doses of the
    round already recorded (due in the window, or recorded within it) to show what is done. Patients with a late
    dose first, the earliest late first, then by bed. Each patient listed is read as the MAR reads them: their
    prescriptions and the doses shown noted on their access log, and the allergies shown."""
    patients = views.patients_on_ward(conn, ward["code"])
    ids = [p["id"] for p in patients]
    prescriptions = service.prescriptions_of(conn, ids)
    lines: dict[uuid.UUID, list[dict]] = defaultdict(list)
    for line in service.mar_lines(conn, ids, window_start=now - service.LATE_LOOKBACK, window_end=now + ROUND_WINDOW,
                                  now=now, tz=tz, prescriptions=prescriptions):
        for dose in line["doses"]:
            given = dose["administration"]
            if given is None:
                wanted = dose["state"] in {"late", "due_now"}
            else:  # recorded: shown while the round goes on, a late one given now among them
                wanted = now - ROUND_WINDOW <= max(dose["scheduled_for"], given["recorded_at"])
            if wanted:
                lines[line["patient_id"]].append({**line, "slot": dose})
    to_reconcile: dict[uuid.UUID, int] = defaultdict(int)
    for prescription in prescriptions:
        if prescription["came_in_on"] == "to_reconcile" and prescription["status"] == "active":
            to_reconcile[prescription["patient_id"]] += 1
    allergies: dict[uuid.UUID, list[dict]] = defaultdict(list)
    for row in _chart_rows(conn, views.allergy, "allergy", ids, views.allergy.c.clinical_status == "active"):
        allergies[row["patient_id"]].append(row)
    today = now.astimezone(tz).date()
    listed = []
    for p in patients:
        doses = sorted(lines[p["id"]], key=lambda d: (d["slot"]["scheduled_for"], d["drug"]))
        late = [d["slot"]["scheduled_for"] for d in doses if d["slot"]["state"] == "late"]
        listed.append({
            "patient_id": p["id"], "mrn": p["mrn"], "name": _name(p), "age": years_on(p["birth_date"], today),
            "birth_date": p["birth_date"], "sex": p["sex"], "bed_code": p["bed_code"],
            "allergies": [a["substance"] for a in allergies[p["id"]]], "doses": doses, "late": len(late),
            "first_late_at": min(late, default=None),
            "open": sum(1 for d in doses if d["slot"]["administration"] is None),
            "to_reconcile": to_reconcile[p["id"]]})
        shown = {d["version_id"] for d in doses}
        given = [d["slot"]["administration"]["id"] for d in doses if d["slot"]["administration"]]
        note_access(conn, principal, "read", p["id"], "medication_request", sorted(shown),
                    detail={"ward": ward["code"], "view": "drug_round"})
        if given:
            note_access(conn, principal, "read", p["id"], "medication_administration", given,
                        detail={"ward": ward["code"], "view": "drug_round"})
        if allergies[p["id"]]:
            note_access(conn, principal, "read", p["id"], "allergy", [a["id"] for a in allergies[p["id"]]],
                        detail={"ward": ward["code"], "view": "drug_round"})
    # Overdue first: a dose an hour past its time waits on no one's bed order.
    listed.sort(key=lambda item: (item["first_late_at"] is None, item["first_late_at"] or now,
                                  item["bed_code"] or "~", item["name"]))
    return {"ward_code": ward["code"], "ward_name": ward["name"], "at": now,
            "window_start": now - ROUND_WINDOW, "window_end": now + ROUND_WINDOW, "patients": listed,
            "late": sum(item["late"] for item in listed), "open": sum(item["open"] for item in listed)}


def current_shift(now: dt.datetime, tz: zoneinfo.ZoneInfo) -> tuple[dt.datetime, dt.datetime]:
    """The shift `now` falls in: day 07:00–19:00 or night 19:00–07:00, facility time."""
    local = now.astimezone(tz)
    day = local.date()
    start_day = dt.datetime.combine(day, DAY_SHIFT[0], tzinfo=tz)
    end_day = dt.datetime.combine(day, DAY_SHIFT[1], tzinfo=tz)
    if start_day <= local < end_day:
        return start_day.astimezone(dt.UTC), end_day.astimezone(dt.UTC)
    if local >= end_day:
        return end_day.astimezone(dt.UTC), (start_day + dt.timedelta(days=1)).astimezone(dt.UTC)
    return (end_day - dt.timedelta(days=1)).astimezone(dt.UTC), start_day.astimezone(dt.UTC)


def _shift(now: dt.datetime, tz: zoneinfo.ZoneInfo, start: dt.datetime | None,
           end: dt.datetime | None) -> tuple[dt.datetime, dt.datetime]:
    if start is None and end is None:
        return current_shift(now, tz)
    if start is None or end is None:
        raise Invalid("give both the start and the end of the shift, or neither", field="shift_start")
    if end <= start:
        raise Invalid("the shift ends before it starts", field="shift_end")
    if end - start > dt.timedelta(hours=24):
        raise Invalid("a shift is at most 24 hours", field="shift_end")
    return start.astimezone(dt.UTC), end.astimezone(dt.UTC)


def _chart_rows(conn: Connection, table: sa.TableClause, kind: str, ids: list[uuid.UUID], *where) -> list[dict]:
    if not ids:
        return []
    query = views.current_of_kind(table, kind, entry.c.patient_id.in_(ids), *where).order_by(entry.c.occurred_at)
    return [dict(r) for r in conn.execute(query).mappings()]


def handover_summary(conn: Connection, principal: Principal, ward: dict, *, now: dt.datetime,
                     tz: zoneinfo.ZoneInfo, shift_start: dt.datetime | None = None,
                     shift_end: dt.datetime | None = None) -> dict:
    """What the outgoing shift hands on, per patient on the ward, from the record: why they are here,
    problems and allergies, the NEWS2 (or MEOWS, or PEWS) now and at its worst this shift, the doses given in the shift
    (when, late ones marked late) and those due in it not given (with why) or late, tasks still open, care
    plans, and results that arrived during the shift."""
    start, end = _shift(now, tz, shift_start, shift_end)
    patients = views.patients_on_ward(conn, ward["code"])
    ids = [p["id"] for p in patients]
    problems = defaultdict(list)
    for row in _chart_rows(conn, views.condition, "condition", ids, views.condition.c.clinical_status == "active"):
        problems[row["patient_id"]].append(f"{row['code']} {row['display']}")
    allergies = defaultdict(list)
    for row in _chart_rows(conn, views.allergy, "allergy", ids, views.allergy.c.clinical_status == "active"):
        allergies[row["patient_id"]].append(row["substance"])
    results = defaultdict(list)
    for row in _chart_rows(conn, views.result, "result", ids, entry.c.occurred_at >= start, entry.c.occurred_at < end):
        value = row["value_text"] if row["value_numeric"] is None else f"{row['value_numeric']} {row['unit'] or ''}"
        results[row["patient_id"]].append({"test": row["display"], "value": value.strip(), "flag": row["flag"],
                                           "abnormal": row["flag"] not in (None, "N")})
    latest = service.latest_scores(conn, ids)
    excluded = service.news2_exclusions(conn, ids, now)
    mothers = [pid for pid, why in excluded.items() if why.maternity]
    latest_meows = service.latest_scores(conn, mothers, "meows")
    children = [pid for pid, why in excluded.items() if why.paediatric]
    latest_pews = service.latest_scores(conn, children, "pews")
    shift_scores, shift_meows, shift_pews = defaultdict(list), defaultdict(list), defaultdict(list)
    for kind, patients_of_kind, in_shift_of in (("news2", ids, shift_scores), ("meows", mothers, shift_meows),
                                                ("pews", children, shift_pews)):
        for score in service.scores_of(conn, patients_of_kind, kind, since=start) if patients_of_kind else []:
            if score["occurred_at"] < end:
                in_shift_of[score["patient_id"]].append(score)
    doses = _shift_doses(conn, ids, start, end, now=now, tz=tz)
    open_tasks = defaultdict(list)
    for task in service.tasks_of(conn, ids, open_only=True):
        open_tasks[task["patient_id"]].append({"title": task["title"], "due_at": task["due_at"],
                                               "overdue": task["due_at"] < now, "note": task["note"]})
    plans = defaultdict(list)
    for plan in service.care_plans_of(conn, ids, active_only=True):
        plans[plan["patient_id"]].append({"problem": plan["problem"], "goal": plan["goal"],
                                          "evaluation": plan["evaluation"]})
    today = now.astimezone(tz).date()
    summary = []
    for p in patients:
        pid = p["id"]
        in_shift = sorted(shift_scores[pid], key=lambda s: s["occurred_at"])
        worst = max(in_shift, key=lambda s: s["total"]) if in_shift else None
        now_score = latest.get(pid)
        summary.append({
            "patient_id": pid, "mrn": p["mrn"], "name": _name(p), "age": years_on(p["birth_date"], today),
            "birth_date": p["birth_date"], "sex": p["sex"], "reason": p["reason"], "since": p["started_at"],
            "bed_code": p["bed_code"],
            "problems": problems[pid], "allergies": allergies[pid],
            "news2": {"latest": now_score["total"] if now_score else None,
                      "latest_risk": now_score["risk"] if now_score else None,
                      "worst_in_shift": worst["total"] if worst else None,
                      "sets_in_shift": len(in_shift),
                      "trend": _trend(in_shift),
                      "exclusion": excluded[pid].reason if pid in excluded else None},
            "meows": _handover_meows(latest_meows.get(pid), shift_meows[pid]) if pid in mothers else None,
            "pews": _handover_pews(latest_pews.get(pid), shift_pews[pid]) if pid in children else None,
            "doses": doses[pid], "open_tasks": open_tasks[pid], "care_plans": plans[pid], "results": results[pid],
        })
        note_access(conn, principal, "read", pid, "handover", [pid], detail={"ward": ward["code"]})
    return {"ward_code": ward["code"], "ward_name": ward["name"], "shift_start": start, "shift_end": end,
            "patients": summary}


def _shift_doses(conn: Connection, ids: list[uuid.UUID], start: dt.datetime, end: dt.datetime, *,
                 now: dt.datetime, tz: zoneinfo.ZoneInfo) -> dict[uuid.UUID, list[dict]]:
    """Per patient, the doses of the shift in the order they happened: every dose given during it, at the
    time it was given, whatever slot it was for (late ones marked late); and the doses due in it that were
    not given — held, refused or missed (with why), or late with nothing recorded."""
    doses: dict[uuid.UUID, list[dict]] = defaultdict(list)
    for given in service.doses_given_between(conn, ids, start, end):
        doses[given["patient_id"]].append({
            "drug": f"{given['drug']} {given['dose']} {given['dose_unit']} {given['route']}",
            "scheduled_for": given["scheduled_for"], "given_at": given["administered_at"],
            "state": "given_late" if given["minutes_late"] else "given", "minutes_late": given["minutes_late"],
            "reason": given["reason"]})
    for line in service.mar_lines(conn, ids, window_start=start, window_end=min(end, now) if now > start else end,
                                  now=now, tz=tz):
        for dose in line["doses"]:
            given, state = dose["administration"], dose["state"]
            if given is not None and given["outcome"] == "given":
                if given["administered_at"] < end:
                    continue  # listed above, in the shift it was given in (this one or the one before)
                # Given in a later shift: at the end of this one it was still outstanding, which is what
                # this shift handed over; the giving belongs to the later shift.
                state = service.dose_state(dose["scheduled_for"], None, end)
            if state in {"held", "refused", "missed", "late"}:
                doses[line["patient_id"]].append({
                    "drug": f"{line['drug']} {line['dose']} {line['dose_unit']} {line['route']}",
                    "scheduled_for": dose["scheduled_for"], "given_at": None, "state": state, "minutes_late": None,
                    "reason": given["reason"] if given and state == given["outcome"] else None})
    for listed in doses.values():
        listed.sort(key=lambda dose: dose["given_at"] or dose["scheduled_for"])
    return doses


def _handover_meows(latest: dict | None, in_shift: list[dict]) -> dict:
    return {"latest_risk": latest["risk"] if latest else None, "latest": latest["summary"] if latest else None,
            "latest_triggers": latest["triggers"] if latest else {},
            "triggered_in_shift": sum(1 for score in in_shift if score["escalation"]), "sets_in_shift": len(in_shift)}


def _handover_pews(latest: dict | None, in_shift: list[dict]) -> dict:
    in_order = sorted(in_shift, key=lambda s: s["occurred_at"])
    worst = max(in_order, key=lambda s: s["total"]) if in_order else None
    return {"latest": latest["total"] if latest else None, "latest_risk": latest["risk"] if latest else None,
            "age_band": latest["age_label"] if latest else None,
            "worst_in_shift": worst["total"] if worst else None, "sets_in_shift": len(in_order),
            "triggered_in_shift": sum(1 for score in in_order if score["escalation"]), "trend": _trend(in_order)}


def _trend(scores: list[dict]) -> str:
    if len(scores) < 2:
        return "one set" if scores else "no observations"
    first, last = scores[0]["total"], scores[-1]["total"]
    return "rising" if last > first else ("falling" if last < first else "steady")


def record_handover(conn: Connection, principal: Principal, ward: dict, *, now: dt.datetime,
                    tz: zoneinfo.ZoneInfo, shift_start: dt.datetime | None, shift_end: dt.datetime | None,
                    note: str | None) -> dict:
    """Keep the handover as it was given: a `handover` entry with the summary and the nurse's note."""
    summary = handover_summary(conn, principal, ward, now=now, tz=tz, shift_start=shift_start, shift_end=shift_end)
    appended = record.append(conn, principal, "handover", patient_id=None, detail={
        "ward_code": ward["code"], "shift_start": summary["shift_start"], "shift_end": summary["shift_end"],
        "summary": [HandoverPatient.model_validate(p).model_dump(mode="json") for p in summary["patients"]],
        "note": note})
    return {**summary, "id": appended.id, "note": note}


def recent_handovers(conn: Connection, principal: Principal, ward_code: str, limit: int = 5) -> list[dict]:
    rows = conn.execute(
        views.current_of_kind(handover, "handover", handover.c.ward_code == ward_code)
        .order_by(handover.c.shift_end.desc()).limit(limit)
    ).mappings().all()
    found = [dict(r) for r in rows]
    for row in found:
        ids = {uuid.UUID(p["patient_id"]) for p in row["summary"]}
        for pid in ids:
            note_access(conn, principal, "read", pid, "handover", [row["id"]], detail={"ward": ward_code})
    return found


__all__ = ["current_shift", "drug_round", "handover_summary", "recent_handovers", "record_handover", "worklist"]
