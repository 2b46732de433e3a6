"""What the nursing layer does when an entry is appended — in the same transaction, so the score, the
task or its cancellation exists the moment the act does, or not at all.

- `vital_signs` → a `news2` entry scoring the set where NEWS2 is validated (`service.news2_exclusion`:
  not under 16, not in pregnancy or the puerperium), a `meows` entry in pregnancy and the puerperium, a
  `pews` entry for a child (in the age band of their age when the set was taken); a corrected set is
  re-scored (the score's next version), one entered in error takes its score with it. A child's set on
  NEWS2's SpO2 scale 2 is refused (422), with the whole write, as is a MUAC or an oedema finding of anyone
  but a child (`service.refuse_adult_screening`).
- `news2`, `meows`, `pews` → for a patient on a ward: the next observations become a task due at the
  score's minimum monitoring frequency (the previous one is done), unless the set left out an item the last
  score's set measured and that score's set is due sooner (it stays due), and a score needing more than a
  ward-based response (NEWS2 above "low", a MEOWS trigger, a PEWS of 8 or more) raises an escalation task
  (one open at a time, replaced only by a higher risk); a score withdrawn with its set cancels the escalation it
  raised, if still open, saying why, and the next observations are due, and an escalation is raised again, as the
  latest remaining score asks.
- `service_request` (a laboratory order) → "collect specimen", due by the order's priority; a revoked or
  retracted order cancels it, and the laboratory's receipt of the specimen (`specimen_receipt`) or a `result`
  for the order completes it.
- `delivery` (clinical) → for a mother on a ward with a baby born alive: "newborn checks" on her task list,
  due within `NEWBORN_CHECKS_WITHIN` of the birth (the babies lie with her, on her ward).
- an inpatient stay reaching a ward → "admission assessment" within `ADMISSION_ASSESSMENT_WITHIN`, and the
  first observations due at once (unless already scheduled), done by the first set recorded; once per stay,
  from whichever comes first of the `encounter` opened in progress on a ward (a clinician admitting from the
  clinic, the bed given later), the planned one arriving (`encounter_status`), or the bed board's `admission`
  (operations layer); `discharge` cancels the patient's open tasks.
- `encounter_status` (clinical) → an encounter finished or cancelled cancels its open tasks, unless the
  patient is still on a ward (admitted from the emergency department).
- `fluid` (this layer's fluid balance chart) → urine output below KDIGO's 0.5 ml/kg/h over 6 hours
  (`fluid.urine_rate`) raises the escalation task, "inform the doctor", for a patient on a ward (one open at a
  time; a score's escalation neither replaces it nor is replaced by it).
- `antenatal` (clinical) → a contact with pre-eclampsia's severe features raises the same escalation task for a
  woman on a ward (one open at a time from such contacts).
"""

from __future__ import annotations

import datetime as dt
import functools
import uuid

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from appliance.layers.nursing import fluid, service, views
from appliance.layers.nursing import meows as maternity_warning
from appliance.layers.nursing import news2 as early_warning
from appliance.layers.nursing import pews as paediatric_warning
from appliance.layers.nursing.errors import Invalid
from appliance.layers.nursing.models import meows, news2, nursing_task, pews
from appliance.substrate import record
from appliance.substrate.principal import Principal
from appliance.substrate.record import Entry, entry

SPECIMEN_DUE = {"stat": dt.timedelta(minutes=15), "urgent": dt.timedelta(hours=1), "routine": dt.timedelta(hours=4)}
ADMISSION_ASSESSMENT_WITHIN = dt.timedelta(hours=6)  # the nursing admission assessment of most ward policies
NEWBORN_CHECKS_WITHIN = dt.timedelta(hours=1)  # the first check of a newborn on the ward, within the hour of birth
_SCORE_TABLES = {"news2": news2, "meows": meows, "pews": pews}


def _score_of(conn: Connection, kind: str, vital_signs_id: uuid.UUID) -> uuid.UUID | None:
    table = _SCORE_TABLES[kind]
    return conn.execute(
        sa.select(entry.c.id).select_from(entry.join(table, table.c.entry_id == entry.c.id))
        .where(table.c.vital_signs_id == vital_signs_id, views.CURRENT)
    ).scalar()


def _news2_detail(detail: dict, occurred_at: dt.datetime, _: service.Exclusion | None) -> dict | None:
    observed = early_warning.Observations(
        respiratory_rate=detail.get("respiratory_rate"), spo2_percent=detail.get("spo2_percent"),
        supplemental_oxygen=detail.get("supplemental_oxygen"), systolic_mmhg=detail.get("systolic_mmhg"),
        heart_rate_bpm=detail.get("heart_rate_bpm"), consciousness=detail.get("consciousness"),
        temperature_c=detail.get("temperature_c"), spo2_scale=detail.get("spo2_scale") or 1,
    )
    if not early_warning.measured_any(observed):
        return None
    scored = early_warning.score(observed)
    return {"total": scored.total, "scores": scored.scores, "missing": scored.missing, "spo2_scale": scored.spo2_scale,
            "risk": scored.risk, "next_due_at": occurred_at + scored.next_observation_in}


def _meows_detail(detail: dict, occurred_at: dt.datetime, _: service.Exclusion | None) -> dict | None:
    observed = maternity_warning.Observations(
        temperature_c=detail.get("temperature_c"), systolic_mmhg=detail.get("systolic_mmhg"),
        diastolic_mmhg=detail.get("diastolic_mmhg"), heart_rate_bpm=detail.get("heart_rate_bpm"),
        respiratory_rate=detail.get("respiratory_rate"), spo2_percent=detail.get("spo2_percent"),
        consciousness=detail.get("consciousness"),
    )
    if not maternity_warning.measured_any(observed):
        return None
    scored = maternity_warning.score(observed)
    return {"triggers": scored.triggers, "missing": scored.missing, "risk": scored.risk,
            "next_due_at": occurred_at + scored.next_observation_in}


def _pews_detail(detail: dict, occurred_at: dt.datetime, exclusion: service.Exclusion | None) -> dict | None:
    observed = paediatric_warning.Observations(
        heart_rate_bpm=detail.get("heart_rate_bpm"), systolic_mmhg=detail.get("systolic_mmhg"),
        respiratory_rate=detail.get("respiratory_rate"), spo2_percent=detail.get("spo2_percent"),
        supplemental_oxygen=detail.get("supplemental_oxygen"), oxygen_l_min=detail.get("oxygen_l_min"),
    )
    if exclusion is None or exclusion.age_band is None or not paediatric_warning.measured_any(observed):
        return None
    scored = paediatric_warning.score(observed, paediatric_warning.BANDS_BY_KEY[exclusion.age_band])
    return {"age_band": scored.band, "total": scored.total, "scores": scored.scores, "missing": scored.missing,
            "risk": scored.risk, "next_due_at": occurred_at + scored.next_observation_in}


_SCORERS = {"news2": _news2_detail, "meows": _meows_detail, "pews": _pews_detail}


def score_vital_signs(conn: Connection, principal: Principal, vitals: Entry) -> None:
    """Score the set by the early warning score that applies to the patient when it was taken; a
    corrected set's score is superseded by the new one (or retracted, when no score applies now)."""
    kind = exclusion = None
    if vitals.status != "entered_in_error" and vitals.patient_id is not None:
        exclusion = service.news2_exclusion(conn, vitals.patient_id, vitals.occurred_at)
        kind = service.score_kind(exclusion)
        if exclusion is not None and exclusion.child and vitals.detail.get("spo2_scale") == 2:
            # Scale 2 is NEWS2's, for an adult's prescribed hypercapnic target; a set saying so of a child
            # would chart a target no paediatric score has.
            raise Invalid(f"SpO₂ scale 2 is not used under {service.ADULT_YEARS} years of age: it is NEWS2's "
                          f"target for adults with hypercapnic respiratory failure, and a child's saturation is "
                          f"scored on the usual target: record the set without the scale", field="spo2_scale")
        service.refuse_adult_screening(vitals.detail, exclusion)
        if kind is None:
            _unscored_set_recorded(conn, principal, vitals)
    detail = _SCORERS[kind](vitals.detail, vitals.occurred_at, exclusion) if kind else None
    for other in _SCORE_TABLES:
        previous = _score_of(conn, other, vitals.supersedes) if vitals.supersedes else None
        if other == kind and detail is not None:
            record.append(conn, principal, kind, patient_id=vitals.patient_id, encounter_id=vitals.encounter_id,
                          occurred_at=vitals.occurred_at, supersedes=previous,
                          reason=vitals.reason if previous else None, entry_id=service.derived_id(kind, vitals.id),
                          detail={"vital_signs_id": vitals.id, **detail})
        elif previous is not None:
            record.retract(conn, principal, previous, vitals.reason or "the vital signs it scored were withdrawn")


def _score_terms(score: Entry) -> tuple[str, int, str]:
    """How tasks name a score, its rank among escalations and the response it calls for."""
    detail = score.detail
    if score.kind == "meows":
        scored = maternity_warning.Score(triggers=detail["triggers"], missing=detail["missing"])
        return f"MEOWS {scored.summary}", service.MEOWS_RANK[scored.risk], scored.response
    if score.kind == "pews":
        return (f"PEWS {detail['total']}", service.PEWS_RANK[detail["risk"]],
                paediatric_warning.RESPONSES[detail["risk"]])
    return f"NEWS2 {detail['total']}", service.RISK_RANK[detail["risk"]], early_warning.RESPONSES[detail["risk"]]


def schedule_observations(conn: Connection, principal: Principal, score: Entry) -> None:
    if score.patient_id is None:
        return
    if score.status == "entered_in_error":
        _score_withdrawn(conn, principal, score)
        return
    ward = views.ward_of(conn, score.patient_id, score.encounter_id)
    if ward is None:
        # No repeat observations for a patient on no ward (an outpatient visit, vitals charted between
        # visits): a clinic records vitals once, and NEWS2's monitoring frequencies are minimums for patients
        # in continuous care (a ward, the emergency department). A schedule here would be overdue from four
        # hours after the visit, for good. The score, and its response when it calls for escalation, stay
        # on the chart for the clinician in the room.
        return
    detail = score.detail
    open_tasks = service.tasks_of(conn, [score.patient_id], open_only=True, codes=["observations", "escalation"])
    # A set that left out what the last score's set measured (a pulse taken as a child is weighed, twenty minutes
    # after a PEWS of 12) scored low on what it held: it is charted, but the set that score asked for sooner is
    # still due, not put off to four hours on the strength of one item.
    sooner = [t for t in open_tasks if t["code"] == "observations" and t["due_at"] < detail["next_due_at"]
              and t["source_kind"] == score.kind and _measured_less(conn, score, t["source_id"])]
    if not sooner:
        for task in open_tasks:
            if task["code"] == "observations":
                service.close_task(conn, principal, task, "done", "observations recorded", score)
        service.new_task(conn, principal, score.patient_id, code="observations", ward_code=ward,
                         encounter_id=score.encounter_id, due_at=detail["next_due_at"], source=score,
                         title=_observations_title(score))
    _escalate(conn, principal, score, ward, open_tasks)


def _measured_less(conn: Connection, score: Entry, earlier_root: uuid.UUID) -> bool:
    """Whether `score`'s set left out an item the set of the earlier score `earlier_root` (of the same kind)
    measured."""
    table = _SCORE_TABLES[score.kind]
    missing = conn.execute(
        sa.select(table.c.missing).select_from(entry.join(table, table.c.entry_id == entry.c.id))
        .where(entry.c.root_id == earlier_root).order_by(entry.c.recorded_at.desc()).limit(1)).scalar()
    return missing is not None and bool(set(score.detail["missing"]) - set(missing))


def _escalate(conn: Connection, principal: Principal, score: Entry, ward: str, open_tasks: list[dict],
              again_for: Entry | None = None) -> None:
    """Raise the escalation `score` calls for, unless one of the patient's `open_tasks` already escalates at its level
    or higher; a lower one it supersedes is cancelled. `again_for`: the withdrawn score whose escalation this one
    takes over (`_score_withdrawn`), which names the task apart from any `score` raised before."""
    named, rank, response = _score_terms(score)
    if rank <= service.RISK_RANK["low"]:
        return
    # An oliguria escalation (`fluid_escalation`) is another matter: a higher score neither answers nor replaces it.
    escalations = [t for t in open_tasks if t["code"] == "escalation" and t["source_kind"] in _SCORE_TABLES]
    if any(_rank_of(conn, t["source_id"]) >= rank for t in escalations):
        return  # already escalated at this level or higher; the open task stands until a nurse closes it
    for task in escalations:
        service.close_task(conn, principal, task, "cancelled", f"superseded by a higher score ({named})",
                           again_for or score)
    service.new_task(conn, principal, score.patient_id, code="escalation", ward_code=ward,
                     encounter_id=score.encounter_id, due_at=score.occurred_at, source=score, again_for=again_for,
                     title=f"{named} — {response.split(':')[0]}")


def _observations_title(score: Entry) -> str:
    interval = score.detail["next_due_at"] - score.occurred_at
    return f"Observations due (last {_score_terms(score)[0]}; at least every {_every(interval)})"


def _score_withdrawn(conn: Connection, principal: Principal, withdrawn: Entry) -> None:
    """A score withdrawn with its set (`score_vital_signs`: the set entered in error, charted on the wrong patient)
    no longer calls for what it asked for. The escalation it raised, while still open, is cancelled with the reason
    and stays in the task's history (a nurse may have called the doctor already; one she closed stays as she closed
    it). The next observations it scheduled are due again as the patient's latest remaining score asks, or at once
    when none remains: a NEWS2 of 9 on the wrong chart asked that patient's nurse for a set every 15 minutes. And that
    latest remaining score escalates again as it asks (`_escalate_remaining`): a NEWS2 of 7 charted in error had
    cancelled, as superseded, the escalation of the 5 before it, which still stands."""
    remaining = _latest_score(conn, withdrawn.patient_id)
    for task in service.tasks_of(conn, [withdrawn.patient_id], open_only=True, codes=["escalation", "observations"]):
        if task["source_id"] != withdrawn.root_id:
            continue
        service.close_task(conn, principal, task, "cancelled",
                           f"the observations it {'escalated' if task['code'] == 'escalation' else 'followed'} "
                           f"were entered in error: {withdrawn.reason}", withdrawn)
        if task["code"] == "observations":
            service.new_task(conn, principal, withdrawn.patient_id, code="observations", ward_code=task["ward_code"],
                             ward_known=True, encounter_id=task["encounter_id"],
                             due_at=remaining.detail["next_due_at"] if remaining else withdrawn.occurred_at,
                             source=remaining or withdrawn, again_for=withdrawn if remaining else None,
                             title=_observations_title(remaining) if remaining else
                             "Observations due (the last set was entered in error)")
    if remaining is not None:
        _escalate_remaining(conn, principal, remaining, withdrawn)


def _escalate_remaining(conn: Connection, principal: Principal, remaining: Entry, withdrawn: Entry) -> None:
    """The escalation the patient's latest score still in force calls for, once a withdrawn one is off the chart: as
    `schedule_observations` raised it when that score was charted, unless an open one stands at its level or higher,
    or its own was answered (a nurse marked it done, saying who was told; asking her again would say nothing new)."""
    ward = views.ward_of(conn, remaining.patient_id, remaining.encounter_id)
    if ward is None:
        return
    escalations = service.tasks_of(conn, [remaining.patient_id], codes=["escalation"])
    if any(t["source_id"] == remaining.root_id and t["status"] == "done" for t in escalations):
        return
    _escalate(conn, principal, remaining, ward, [t for t in escalations if t["status"] == "open"], again_for=withdrawn)


def _latest_score(conn: Connection, patient_id: uuid.UUID) -> Entry | None:
    """The patient's latest current early warning score of any kind, None when none remains."""
    latest = [score for kind in _SCORE_TABLES
              if (score := service.latest_scores(conn, [patient_id], kind).get(patient_id))]
    if not latest:
        return None
    return record.get_entry(conn, max(latest, key=lambda score: score["occurred_at"])["id"])


def _rank_of(conn: Connection, score_root: uuid.UUID | None) -> int:
    """The escalation rank of the latest version of the score `score_root` (NEWS2, MEOWS or PEWS); 0 if none."""
    if score_root is None:
        return 0
    news2_risk, meows_risk, pews_risk = conn.execute(
        sa.select(news2.c.risk, meows.c.risk, pews.c.risk).select_from(
            entry.outerjoin(news2, news2.c.entry_id == entry.c.id).outerjoin(meows, meows.c.entry_id == entry.c.id)
            .outerjoin(pews, pews.c.entry_id == entry.c.id))
        .where(entry.c.root_id == score_root).order_by(entry.c.recorded_at.desc()).limit(1)
    ).one_or_none() or (None, None, None)
    if news2_risk is not None:
        return service.RISK_RANK[news2_risk]
    if pews_risk is not None:
        return service.PEWS_RANK[pews_risk]
    return service.MEOWS_RANK.get(meows_risk, 0)


def _every(interval: dt.timedelta) -> str:
    minutes = int(interval.total_seconds() // 60)
    return f"{minutes // 60} hours" if minutes >= 120 else ("hour" if minutes == 60 else f"{minutes} minutes")


def _cancel_from(conn: Connection, principal: Principal, source_root: uuid.UUID, status: str, note: str,
                 cause: Entry) -> None:
    open_tasks = conn.execute(
        views.current_of_kind(nursing_task, "nursing_task", nursing_task.c.source_id == source_root,
                              nursing_task.c.status == "open")
    ).mappings().all()
    for task in open_tasks:
        service.close_task(conn, principal, dict(task), status, note, cause)


# The clinical layer's results, read by SQL (layers never import each other): which order each answers.
_ANSWERS = sa.table("result", sa.column("entry_id"), sa.column("service_request_id"))


@functools.cache
def _specimen_statement() -> sa.Select:
    """Whether a lab order is answered, whether its encounter is closed, and the ward its specimen task
    goes to, in one statement built once: a lab order is placed many times a day, and building this
    afresh (with SQLAlchemy keying it for its cache) cost more CPU than running it (bench/intake.py). A
    NULL encounter matches no encounter and orders no ward first."""
    order_root, encounter_id = sa.bindparam("order_root"), sa.bindparam("encounter_id")
    answered = sa.exists().where(_ANSWERS.c.service_request_id == order_root, entry.c.id == _ANSWERS.c.entry_id,
                                 views.CURRENT)
    closed = sa.exists().where(views.encounter.c.id == encounter_id,
                               views.encounter.c.status.in_(("finished", "cancelled")))
    return sa.select(answered, closed,
                     views.ward_of_query(sa.bindparam("patient_id"), encounter_id).scalar_subquery())


def specimen_task(conn: Connection, principal: Principal, order: Entry) -> None:
    if order.supersedes is not None:
        if order.status == "entered_in_error" or order.detail.get("status") != "active":
            _cancel_from(conn, principal, order.root_id, "cancelled",
                         "order entered in error" if order.status == "entered_in_error" else "order revoked", order)
        return
    detail = order.detail
    if detail.get("category") != "lab" or detail.get("status") != "active" or order.patient_id is None:
        return
    # Orders loaded with their history (imports, demo data) may arrive already answered or closed; asked
    # in one statement with the ward the task goes to (a lab order is placed many times a day).
    answered, closed, ward = conn.execute(_specimen_statement(), {
        "order_root": order.root_id, "encounter_id": order.encounter_id, "patient_id": order.patient_id}).one()
    if answered or closed:
        return
    due = order.occurred_at + SPECIMEN_DUE.get(detail.get("priority", "routine"), SPECIMEN_DUE["routine"])
    service.new_task(conn, principal, order.patient_id, code="collect_specimen", encounter_id=order.encounter_id,
                     due_at=due, source=order, ward_code=ward, ward_known=True,
                     title=f"Collect specimen: {detail.get('display', 'laboratory test')}"
                           + (f" ({detail['priority']})" if detail.get("priority") in {"urgent", "stat"} else ""))


def specimen_collected(conn: Connection, principal: Principal, result: Entry) -> None:
    order_root = result.detail.get("service_request_id")
    if order_root is not None and result.status != "entered_in_error":
        _cancel_from(conn, principal, order_root, "done", "result received", result)


# The clinical layer's specimen receipts and orders, read by SQL: which order a receipt was of, and the order's
# test and priority, for the task a rejected specimen asks for.
_RECEIPTS = sa.table("specimen_receipt", sa.column("entry_id"), sa.column("service_request_id"))
_ORDERS = sa.table("service_request", sa.column("entry_id"), sa.column("display"), sa.column("priority"))


def specimen_received(conn: Connection, principal: Principal, receipt: Entry) -> None:
    """The laboratory received the order's specimen (the clinical layer's bench, `specimen_receipt`): it was
    collected, so the ward's task to collect it is done, and no longer shows overdue while the lab tests it.
    A receipt entered in error is the laboratory rejecting the specimen (haemolysed, clotted): another must be
    collected, so the task opens again, due as the order's priority asks, saying why."""
    if receipt.status != "entered_in_error":
        order_root = receipt.detail.get("service_request_id")
        if order_root is not None:
            _cancel_from(conn, principal, order_root, "done", "specimen received at the laboratory", receipt)
        return
    order = conn.execute(
        sa.select(entry.c.id, _ORDERS.c.display, _ORDERS.c.priority)
        .select_from(_RECEIPTS.join(entry, entry.c.root_id == _RECEIPTS.c.service_request_id)
                     .join(_ORDERS, _ORDERS.c.entry_id == entry.c.id))
        .where(_RECEIPTS.c.entry_id == receipt.supersedes, views.CURRENT)).first()
    if order is None or receipt.patient_id is None:
        return
    priority = order.priority or "routine"
    service.new_task(conn, principal, receipt.patient_id, code="collect_specimen", encounter_id=receipt.encounter_id,
                     due_at=receipt.occurred_at + SPECIMEN_DUE.get(priority, SPECIMEN_DUE["routine"]),
                     source=record.get_entry(conn, order.id), again_for=receipt,
                     title=f"Collect specimen again: {order.display} (rejected: {receipt.reason})"[:200])


# The entries that put an inpatient stay on a ward: whichever comes first asks for its admission tasks.
ADMITTED_BY = ("encounter", "encounter_status", "admission")
_ARRIVED = ("arrived", "in_progress")
# The reason of a newborn's encounter alongside its mother's stay (the clinical layer's delivery.BORN_HERE, read by
# value: layers never import each other): the baby is not admitted; the ward's newborn checks are on her list.
NEWBORN_ALONGSIDE = "Born here, with the mother"


def _admission_tasks(conn: Connection, principal: Principal, source: Entry, encounter_id: uuid.UUID | None,
                     ward: str | None, at: dt.datetime) -> None:
    """The admission assessment, due within `ADMISSION_ASSESSMENT_WITHIN`, and a first set of observations due
    at once, for a stay on `ward`: once per stay (its inpatient encounter), whichever act puts it there first.
    A clinician admitting from the clinic names the ward before the bed board gives a bed, often hours later:
    the tasks followed the bed, and the ward's nurses had no assessment to do for a patient already in their
    care. The first observations come without it: a patient with no vital signs had no observations task at
    all, and the worklist said only "none recorded". Not when observations are already scheduled: a patient
    admitted from the emergency department keeps the schedule the department's last score set. The first set
    closes it (the score's reaction, or `_unscored_set_recorded` when no early warning score applies)."""
    if ward is None or encounter_id is None or source.patient_id is None:
        return
    tasks = service.tasks_of(conn, [source.patient_id], codes=["admission_assessment", "observations"])
    if any(t["code"] == "admission_assessment" and t["encounter_id"] == encounter_id for t in tasks):
        return  # the stay reached the ward before (its bed comes later): its tasks are asked for already
    service.new_task(conn, principal, source.patient_id, code="admission_assessment", encounter_id=encounter_id,
                     ward_code=ward, source=source, due_at=at + ADMISSION_ASSESSMENT_WITHIN,
                     title="Admission assessment")
    if any(t["code"] == "observations" and t["status"] == "open" for t in tasks):
        return
    service.new_task(conn, principal, source.patient_id, code="observations", encounter_id=encounter_id,
                     ward_code=ward, source=source, due_at=at, title="Observations due (first set on admission)")


def admission_tasks_from_admission(conn: Connection, principal: Principal, admission: Entry) -> None:
    """The bed board's admission (operations layer) of a stay not yet on the ward."""
    if admission.status != "final":
        return
    ward = admission.detail.get("ward_code") or admission.detail.get("ward")
    _admission_tasks(conn, principal, admission, admission.detail.get("encounter_id") or admission.encounter_id,
                     ward, admission.occurred_at)


def admission_tasks_from_encounter(conn: Connection, principal: Principal, opened: Entry) -> None:
    """An inpatient encounter opened under way on a ward (the clinician's admission, or the bed board's)."""
    detail = opened.detail
    if (opened.status != "final" or opened.supersedes is not None or detail.get("encounter_class") != "inpatient"
            or detail.get("status") not in _ARRIVED or detail.get("reason") == NEWBORN_ALONGSIDE):
        return
    _admission_tasks(conn, principal, opened, detail.get("id") or opened.encounter_id, detail.get("ward_code"),
                     detail.get("started_at") or opened.occurred_at)


def admission_tasks_from_arrival(conn: Connection, principal: Principal, change: Entry) -> None:
    """A planned inpatient encounter on a ward whose patient arrives (booked at the front desk, arrived by hand
    or by the bed board's admission, which moves it)."""
    if change.status != "final" or change.detail.get("to_status") not in _ARRIVED:
        return
    encounter_id = change.detail.get("encounter_id") or change.encounter_id
    found = conn.execute(sa.select(views.encounter.c.encounter_class, views.encounter.c.ward_code)
                         .where(views.encounter.c.id == encounter_id)).first()
    if found is not None and found.encounter_class == "inpatient":
        _admission_tasks(conn, principal, change, encounter_id, found.ward_code, change.occurred_at)


def newborn_checks(conn: Connection, principal: Principal, delivered: Entry) -> None:
    """A delivery with a baby born alive, on the stay of a mother on a ward: the newborn checks are the ward's task, on
    the mother's list. Not on a correction (the babies were checked for already) nor for a mother on no ward; a delivery
    entered in error takes its open task off the list."""
    if delivered.status == "entered_in_error":
        _cancel_from(conn, principal, delivered.root_id, "cancelled", "delivery entered in error", delivered)
        return
    if delivered.status != "final" or delivered.patient_id is None:
        return
    live = sum(1 for baby in delivered.detail.get("babies", ()) if baby.get("outcome") == "live_birth")
    # The babies lie with her on the stay the delivery belongs to; one on no encounter was born before any stay she
    # is on now (weeks before an admission for malaria): her ward has no newborn to check.
    if delivered.encounter_id is None:
        return
    ward = views.ward_of(conn, delivered.patient_id, delivered.encounter_id) if live else None
    if ward is None:
        return
    service.new_task(conn, principal, delivered.patient_id, code="newborn_checks", ward_code=ward, ward_known=True,
                     encounter_id=delivered.encounter_id, source=delivered,
                     due_at=delivered.detail["born_at"] + NEWBORN_CHECKS_WITHIN,
                     title="Newborn checks" + (f" ({live} babies)" if live > 1 else ""))


# What makes a set of vital signs a set of observations: a weight alone does not do the first set.
_OBSERVED = ("respiratory_rate", "spo2_percent", "heart_rate_bpm", "systolic_mmhg", "temperature_c", "consciousness")


def _unscored_set_recorded(conn: Connection, principal: Principal, vitals: Entry) -> None:
    """A set no early warning score applies to (a child whose PEWS age band is unknown) still does the
    first observations asked for on admission; a scored set's reaction does it otherwise."""
    if vitals.supersedes is not None or not any(vitals.detail.get(name) is not None for name in _OBSERVED):
        return
    for task in service.tasks_of(conn, [vitals.patient_id], open_only=True, codes=["observations"]):
        if task["source_kind"] in ADMITTED_BY:
            service.close_task(conn, principal, task, "done", "observations recorded", vitals)


def discharged(conn: Connection, principal: Principal, discharge: Entry) -> None:
    if discharge.status == "entered_in_error" or discharge.patient_id is None:
        return
    for task in service.tasks_of(conn, [discharge.patient_id], open_only=True):
        service.close_task(conn, principal, task, "cancelled", "patient discharged", discharge)


def encounter_ended(conn: Connection, principal: Principal, change: Entry) -> None:
    """An encounter finished or cancelled takes its open tasks with it, as a discharge does: its next
    observations above all, which would otherwise stay overdue on the worklist and the chart for good.
    Not while the patient is still on a ward through another encounter: an admission from the emergency
    department ends the ED visit as the stay begins, and the observations the ED scheduled carry on to the
    ward. (The clinical layer appends the change before it moves the encounter's own status, and the ED
    visit ends after the stay's encounter is opened: hence "another".)"""
    ended = change.detail.get("to_status")
    if change.status == "entered_in_error" or change.patient_id is None or ended not in ("finished", "cancelled"):
        return
    encounter_id = change.detail.get("encounter_id") or change.encounter_id
    on_a_ward = sa.exists().where(views.encounter.c.patient_id == change.patient_id,
                                  views.encounter.c.id != encounter_id, views.encounter.c.status.in_(views.OPEN),
                                  views.encounter.c.ward_code.is_not(None))
    # A discharge finishes its encounter too; `discharged` cancels the tasks then, saying why.
    by_discharge = sa.exists().where(entry.c.encounter_id == encounter_id, entry.c.kind == "discharge")
    if conn.execute(sa.select(on_a_ward | by_discharge)).scalar():
        return
    for task in service.tasks_of(conn, [change.patient_id], open_only=True):
        if task["encounter_id"] == encounter_id:
            service.close_task(conn, principal, task, "cancelled", f"encounter {ended}", change)


def fluid_escalation(conn: Connection, principal: Principal, line: Entry) -> None:
    """Urine output charted (or corrected) and found oliguric over the 6 hours ending at it raises the escalation
    task for a patient on a ward, unless one for oliguria is open already; it stays until a nurse marks it
    done saying who was told. A line entered in error raises nothing and withdraws nothing: the doctor may have
    been told already, which the nurse closing the task says."""
    detail = line.detail
    if (line.status == "entered_in_error" or line.patient_id is None or detail.get("direction") != "output"
            or detail.get("route") != "urine"):
        return
    rate = fluid.urine_rate_at(conn, line.patient_id, line.occurred_at)
    if not rate.oliguric:
        return
    _escalate_once(conn, principal, line, f"Oliguria: urine {rate.rate_ml_kg_h} ml/kg/h over {fluid.OLIGURIA_HOURS} h "
                                          f"(below {fluid.OLIGURIA_ML_PER_KG_HOUR}) — inform the doctor")


def _escalate_once(conn: Connection, principal: Principal, source: Entry, title: str) -> None:
    """The escalation task, "inform the doctor", raised by `source` for a patient on a ward, unless one raised by an
    entry of its kind is open already; it stays until a nurse marks it done saying who was told."""
    ward = views.ward_of(conn, source.patient_id, source.encounter_id)
    if ward is None:
        return  # as for a score (`schedule_observations`): a ward's escalation, for a patient on a ward
    open_tasks = service.tasks_of(conn, [source.patient_id], open_only=True, codes=["escalation"])
    if any(task["source_kind"] == source.kind for task in open_tasks):
        return
    service.new_task(conn, principal, source.patient_id, code="escalation", ward_code=ward, ward_known=True,
                     encounter_id=source.encounter_id, due_at=source.occurred_at, source=source, title=title)


def antenatal_escalation(conn: Connection, principal: Principal, contact: Entry) -> None:
    """An antenatal contact (clinical/antenatal.py) that raised pre-eclampsia's severe features (`flags` holds
    "severe_features": a pressure of 160/110 or more, or headache, blurred vision or convulsions) raises the
    escalation task for a woman on a ward, as oliguria does. In the antenatal clinic (no ward) the flag is on her
    card and the clinic's list, for the clinician seeing her."""
    if (contact.status == "entered_in_error" or contact.patient_id is None
            or "severe_features" not in contact.detail.get("flags", ())):
        return
    _escalate_once(conn, principal, contact, "Severe features of pre-eclampsia at the antenatal contact — inform the "
                                             "doctor")


REACTIONS = {
    "vital_signs": [score_vital_signs],
    "news2": [schedule_observations],
    "meows": [schedule_observations],
    "pews": [schedule_observations],
    "service_request": [specimen_task],
    "result": [specimen_collected],
    "specimen_receipt": [specimen_received],
    "delivery": [newborn_checks],
    "encounter": [admission_tasks_from_encounter],
    "encounter_status": [encounter_ended, admission_tasks_from_arrival],
    "admission": [admission_tasks_from_admission],
    "discharge": [discharged],
    "fluid": [fluid_escalation],
    "antenatal": [antenatal_escalation],
}
for _kind, _reactions in REACTIONS.items():
    for _reaction in _reactions:
        record.register_reaction(_kind, _reaction)
