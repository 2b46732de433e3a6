"""Nursing services: early warning scores, the medication administration record, nursing tasks and care
plans of one patient.

Every function takes the caller's tenant transaction and the principal acting; none commits. Writes go
through `record.append`, so each is an entry of the one record with its reactions and its audit event;
every read of patient data is noted on the audit seam. Ward-wide views (worklist, handover) are in
`ward.py`; what this layer does when other layers write is in `reactions.py`.
"""

from __future__ import annotations

import datetime as dt
import functools
import uuid
import zoneinfo
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection

from appliance.layers.nursing import meows as maternity_warning
from appliance.layers.nursing import news2 as early_warning
from appliance.layers.nursing import pews as paediatric_warning
from appliance.layers.nursing import schedule, views
from appliance.layers.nursing.errors import Conflict, Invalid, NotFound
from appliance.layers.nursing.models import care_plan, medication_administration, meows, news2, nursing_task, pews
from appliance.layers.nursing.schemas import AdministrationIn, CarePlanIn, TaskIn
from appliance.substrate import record, retraction
from appliance.substrate.age import months_on, years_on
from appliance.substrate.principal import Principal
from appliance.substrate.record import entry, note_access
from appliance.substrate.tenancy import facility_day

# How far back a dose with nothing recorded is still "late", to be given or accounted for: the worklist's
# badge and the MAR's note of late doses on another day look this far back.
LATE_LOOKBACK = dt.timedelta(hours=24)
FUTURE_TOLERANCE = dt.timedelta(minutes=5)  # clocks of ward devices drift; a dose "given" later than this is refused
RISK_RANK = {"high": 4, "medium": 3, "low_medium": 2, "low": 1}
RISK_LABEL = {"high": "High", "medium": "Medium", "low_medium": "Low–medium (3 in one parameter)", "low": "Low"}
# A MEOWS trigger asks for an urgent medical review, the response NEWS2 calls "medium"; a single yellow is
# watched more closely but escalated to no one.
MEOWS_RANK = {"triggered": RISK_RANK["medium"], "yellow": RISK_RANK["low"], "clear": RISK_RANK["low"]}
# A PEWS of 8 or more asks for an urgent review by the child's doctor, who decides on the critical care team:
# NEWS2's "medium" too.
PEWS_RANK = {"triggered": RISK_RANK["medium"], "low": RISK_RANK["low"]}


def _current(table: sa.Table, kind: str, *where: Any) -> sa.Select:
    return views.current_of_kind(table, kind, *where)  # type: ignore[arg-type]


# -- NEWS2 -------------------------------------------------------------------------------------------

ADULT_YEARS = paediatric_warning.CHILD_UNDER_YEARS
# WHO ICD-10 chapter XV (pregnancy, childbirth and the puerperium) and the pregnant-state codes Z33–Z35.
_PREGNANCY_CODES = (sa.func.left(views.condition.c.code, 1) == "O") | sa.func.left(views.condition.c.code, 3).in_(
    ("Z33", "Z34", "Z35"))
# The puerperium MEOWS is charted in after a delivery. Neither the CEMACH chart nor Singh et al. give its length,
# so it is the WHO's: the 42 days after the end of a pregnancy (ICD-10, Volume 2, 5.8.1, "maternal death ... while
# pregnant or within 42 days of termination of pregnancy", the period WHO counts maternal deaths and postpartum
# care over).
PUERPERIUM = dt.timedelta(days=42)


@dataclass(frozen=True)
class Exclusion:
    """Why NEWS2 does not score a patient: a short label for lists, and the sentence for the chart;
    `maternity` when the maternity early warning score (MEOWS) scores her sets instead, `paediatric` when
    the paediatric one (PEWS) does, in the age band `age_band` (a key of `pews.BANDS_BY_KEY`); `child`
    under 16, whichever score applies (a girl in pregnancy is on MEOWS), where NEWS2's SpO2 scale 2 does not."""

    label: str
    reason: str
    maternity: bool = False
    paediatric: bool = False
    age_band: str | None = None
    child: bool = False


def is_child(born: dt.date, day: dt.date) -> bool:
    """Whether a patient born on `born` is a child on `day`: under 16, where PEWS scores their vital signs and
    NEWS2 does not. The one rule of who is a child on the record's charts: which score applies, and whose vital
    signs take a mid-upper-arm circumference and a bilateral pitting oedema finding (`refuse_adult_screening`,
    and the clinic's and the ward's forms, which ask them of a child only)."""
    return years_on(born, day) < ADULT_YEARS


def _child_exclusion(born: dt.date, estimated: bool, day: dt.date) -> Exclusion:
    """A child's: PEWS in the age band of their age on `day`. A birth date estimated from an age in whole
    years (the registration desk's "about 3") puts the real one up to a year earlier; where that year
    spans two of PEWS's age bands its thresholds cannot be chosen, and the set stays unscored, saying why."""
    band = paediatric_warning.age_band(max(0, months_on(born, day)))
    if estimated:
        a_year_before = born.replace(year=born.year - 1, day=min(born.day, 28) if born.month == 2 else born.day)
        earliest = a_year_before + dt.timedelta(days=1)
        oldest = paediatric_warning.age_band(max(0, months_on(earliest, day)))
        if oldest != band:
            return Exclusion(f"under {ADULT_YEARS}, birth date estimated",
                             f"NEWS2 is not used under {ADULT_YEARS} years of age, and PEWS cannot be scored: the "
                             f"birth date is an estimate, from an age in whole years, which could put the child in "
                             f"the {band.label} or the {oldest.label} age band of PEWS. Record the birth date to "
                             f"score the next set", child=True)
    return Exclusion(f"under {ADULT_YEARS}", f"NEWS2 is not used under {ADULT_YEARS} years of age: the paediatric "
                                             f"early warning score (PEWS, age band {band.label}) is charted instead",
                     paediatric=True, age_band=band.key, child=True)


def news2_exclusions(conn: Connection, patient_ids: Sequence[uuid.UUID], at: dt.datetime) -> dict[uuid.UUID, Exclusion]:
    """The patients among `patient_ids` whose vital signs NEWS2 must not score at `at`, with why. The
    RCP validated NEWS2 for adults who are not pregnant: not under 16 (counted on the day of `at` on the
    facility's calendar, as its forms count it: a 16th birthday begins at its midnight), and not in pregnancy or the
    puerperium (an active, confirmed or provisional condition of ICD-10 chapter O or Z33–Z35 whose
    onset, if recorded, is not after `at`; or a delivery in force on her record in the `PUERPERIUM` before
    `at`), where the physiology differs and the maternity early warning score is used instead; a child is
    scored by the paediatric one (PEWS). One statement, as it runs in every set's reaction. Not audited:
    callers read the record under their own event."""
    if not patient_ids:
        return {}
    found = {}
    for patient_id, born, estimated, pregnant, delivered, day in conn.execute(
            _exclusions_statement(), {"patient_ids": list(patient_ids), "at": at}):
        if pregnant is None and delivered is not None:
            days = (at - delivered).days
            pregnant = (f"the puerperium, day {days} after a delivery" if days else
                        "the puerperium, delivered within the last day")
        # Pregnancy first: a girl under 16 in pregnancy or the puerperium is charted on MEOWS, as every
        # woman on a maternity chart is.
        if pregnant is not None:
            found[patient_id] = Exclusion("pregnancy", f"NEWS2 is not used in pregnancy or the puerperium "
                                                       f"({pregnant}): the maternity early warning score (MEOWS) "
                                                       f"is charted instead", maternity=True,
                                          child=is_child(born, day))
        elif is_child(born, day):
            found[patient_id] = _child_exclusion(born, estimated, day)
    return found


@functools.cache
def _exclusions_statement() -> sa.Select:
    """`news2_exclusions`' statement, built once: it runs in the reaction to every set of vital signs, and
    building it afresh (and SQLAlchemy then keying it for its cache) cost more CPU than PostgreSQL spent
    running it — 10% of the server's Python in bench/intake.py (py-spy)."""
    at = sa.bindparam("at", type_=sa.DateTime(timezone=True))
    on = facility_day(at)  # ages and onsets are days of the facility's calendar, not of UTC's
    pregnancy = (
        _current(views.condition, "condition", entry.c.patient_id == views.patient.c.id,
                 entry.c.status != "entered_in_error", views.condition.c.clinical_status == "active",
                 views.condition.c.verification != "differential", _PREGNANCY_CODES,
                 sa.or_(views.condition.c.onset_date.is_(None),
                        views.condition.c.onset_date <= on))
        .with_only_columns(views.condition.c.code + " " + views.condition.c.display)
        .order_by(entry.c.occurred_at.desc()).limit(1).scalar_subquery()
    )
    delivered = (
        _current(views.delivery, "delivery", entry.c.patient_id == views.patient.c.id,
                 entry.c.status != "entered_in_error", views.delivery.c.born_at <= at,
                 views.delivery.c.born_at > at - PUERPERIUM)
        .with_only_columns(sa.func.max(views.delivery.c.born_at)).scalar_subquery()
    )
    return (sa.select(views.patient.c.id, views.patient.c.birth_date, views.patient.c.birth_date_estimated, pregnancy,
                      delivered, on.label("day"))
            .where(views.patient.c.id.in_(sa.bindparam("patient_ids", expanding=True))))


def news2_exclusion(conn: Connection, patient_id: uuid.UUID, at: dt.datetime) -> Exclusion | None:
    """`news2_exclusions` of one patient."""
    return news2_exclusions(conn, [patient_id], at).get(patient_id)


def score_kind(exclusion: Exclusion | None) -> str | None:
    """The early warning score that scores a patient's sets, by why NEWS2 does not (None: none does)."""
    if exclusion is None:
        return "news2"
    return "meows" if exclusion.maternity else "pews" if exclusion.paediatric else None


def current_warning(conn: Connection, principal: Principal, patient_id: uuid.UUID, at: dt.datetime) -> dict:
    """The early warning score that applies to a patient at `at` and its latest value: `kind` news2, or
    meows in pregnancy and the puerperium, or pews for a child, or None with the `exclusion` that says why
    no score applies (a child whose age band is not known); and when the next observations are due
    (`observations_due_at`): the open observations task's time, None when no repeat observations are
    scheduled. A score's own `next_due_at` is the frequency it calls for, not a schedule: an outpatient
    visit schedules none, and discharge or the end of the encounter ends one (`reactions`). The reads are
    audited."""
    _require_patient(conn, patient_id)
    exclusion = news2_exclusion(conn, patient_id, at)
    kind = score_kind(exclusion)
    score = latest_scores(conn, [patient_id], kind).get(patient_id) if kind else None
    if score is not None:
        note_access(conn, principal, "read", patient_id, kind, [score["id"]])
    return {"kind": kind, "score": score, "exclusion": exclusion,
            "observations_due_at": observations_due(conn, principal, patient_id)}


def observations_due(conn: Connection, principal: Principal, patient_id: uuid.UUID) -> dt.datetime | None:
    """When the patient's next observations are due: their open observations task's time, or None when no
    repeat observations are scheduled (a patient on no ward; after discharge or the end of the encounter).
    The read of the task is audited."""
    scheduled = tasks_of(conn, [patient_id], open_only=True, codes=["observations"])[:1]
    if not scheduled:
        return None
    note_access(conn, principal, "read", patient_id, "nursing_task", [scheduled[0]["id"]])
    return scheduled[0]["due_at"]


def news2_view(row: dict) -> dict:
    """A stored score with what follows from it: complete or not, the red flag, the response."""
    scored = early_warning.Score(total=row["total"], scores=row["scores"], missing=row["missing"],
                                 spo2_scale=row["spo2_scale"])
    return {**row, "complete": scored.complete, "red": scored.red, "escalation": scored.escalation,
            "response": scored.response, "band": early_warning.BANDS[scored.risk], "scored": scored.scored}


def meows_view(row: dict) -> dict:
    """A stored MEOWS with what follows from it: the counts of triggers, complete or not, the response."""
    scored = maternity_warning.Score(triggers=row["triggers"], missing=row["missing"])
    return {**row, "reds": scored.reds, "yellows": scored.yellows, "summary": scored.summary,
            "complete": scored.complete, "escalation": scored.escalation, "response": scored.response}


def pews_view(row: dict) -> dict:
    """A stored PEWS with what follows from it: the age band in words, what scored, the response."""
    scored = paediatric_warning.Score(band=row["age_band"], total=row["total"], scores=row["scores"],
                                      missing=row["missing"])
    return {**row, "age_label": scored.age_label, "complete": scored.complete, "escalation": scored.escalation,
            "response": scored.response, "scored": scored.scored,
            "not_recorded": list(paediatric_warning.NOT_RECORDED)}


# The early warning scores' kinds: their detail table and the view of a stored score.
_SCORES: dict[str, tuple[sa.Table, Callable[[dict], dict]]] = {"news2": (news2, news2_view),
                                                              "meows": (meows, meows_view),
                                                              "pews": (pews, pews_view)}


def scores_of(conn: Connection, patient_ids: Sequence[uuid.UUID], kind: str = "news2", *,
              since: dt.datetime | None = None, limit: int | None = None) -> list[dict]:
    """Current early warning scores of these patients (`kind` news2, meows or pews), newest first; not audited
    — callers are."""
    table, view = _SCORES[kind]
    query = _current(table, kind, entry.c.patient_id.in_(patient_ids)).order_by(entry.c.occurred_at.desc())
    if since is not None:
        query = query.where(entry.c.occurred_at >= since)
    if limit:
        query = query.limit(limit)
    return [view(dict(r)) for r in conn.execute(query).mappings()]


def latest_scores(conn: Connection, patient_ids: Sequence[uuid.UUID], kind: str = "news2") -> dict[uuid.UUID, dict]:
    """Each patient's latest early warning score of `kind` (news2, meows or pews); not audited."""
    if not patient_ids:
        return {}
    table, view = _SCORES[kind]
    query = (_current(table, kind, entry.c.patient_id.in_(patient_ids))
             .order_by(entry.c.patient_id, entry.c.occurred_at.desc()).ext(postgresql.distinct_on(entry.c.patient_id)))
    return {r["patient_id"]: view(dict(r)) for r in conn.execute(query).mappings()}


def list_scores(conn: Connection, principal: Principal, patient_id: uuid.UUID, kind: str = "news2",
                limit: int = 200) -> list[dict]:
    """A patient's early warning scores of `kind` (news2, meows or pews), newest first, audited."""
    _require_patient(conn, patient_id)
    rows = scores_of(conn, [patient_id], kind, limit=limit)
    note_access(conn, principal, "read", patient_id, kind, [r["id"] for r in rows])
    return rows


# -- a child's malnutrition screening --------------------------------------------------------------

# The fields of a set of vital signs that screen a child for acute malnutrition (clinical/growth.py).
SCREENING_FIELDS = ("muac_mm", "oedema")


def refuse_adult_screening(detail: dict, exclusion: Exclusion | None) -> None:
    """Refuses (422, naming the field) a set of vital signs holding a MUAC or an oedema finding of a patient who
    was not a child when it was taken (`exclusion`: why NEWS2 does not score them then, None for an adult who
    is not pregnant). They are taken to screen a child for acute malnutrition (the WHO/UNICEF cut-offs read
    them from 6 to 59 months, clinical/growth.py); an adult's nutrition is not assessed by them here. Whatever
    writes the set (the clinical API, the clinic's and the ward's forms, FHIR) meets this one rule, in the
    reaction that scores it."""
    screened = [name for name in SCREENING_FIELDS if detail.get(name) is not None]
    if screened and not (exclusion is not None and exclusion.child):
        raise Invalid(f"MUAC and oedema are recorded to screen a child under {ADULT_YEARS} for acute malnutrition; "
                      f"this patient was {ADULT_YEARS} or older when the set was taken, so leave them empty",
                      field=screened[0])


def _score_of_set(kind: str, alias: str) -> sa.Subquery:
    """The current score of `kind` of the vital signs set in the enclosing query's `entry`, as a lateral
    subquery of its columns (prefixed `alias`_) and its entry id (`alias`_id)."""
    table = _SCORES[kind][0].alias(alias)
    scored_entry = entry.alias(f"{alias}_entry")
    successor = entry.alias(f"{alias}_successor")
    columns = [c.label(f"{alias}_{c.name}") for c in table.c if c.name not in ("entry_id", "vital_signs_id")]
    return (sa.select(*columns, scored_entry.c.id.label(f"{alias}_id"))
            .select_from(table.join(scored_entry, scored_entry.c.id == table.c.entry_id))
            .where(table.c.vital_signs_id == entry.c.id,
                   ~sa.exists().where(successor.c.supersedes == scored_entry.c.id))
            .limit(1).lateral(alias))


def observations(conn: Connection, principal: Principal, patient_id: uuid.UUID, limit: int = 120) -> list[dict]:
    """Vital sign sets, newest first, each with its NEWS2, its MEOWS and its PEWS (None when not scored by it),
    audited."""
    _require_patient(conn, patient_id)
    vitals = views.vital_signs
    scores = {kind: _score_of_set(kind, kind) for kind in _SCORES}
    joined = entry.join(vitals, vitals.c.entry_id == entry.c.id)
    for lateral in scores.values():
        joined = joined.outerjoin(lateral, sa.true())
    rows = conn.execute(
        sa.select(entry.c.id, entry.c.occurred_at, entry.c.author_id, entry.c.encounter_id,
                  *[c for c in vitals.c if c.name != "entry_id"], *[c for s in scores.values() for c in s.c])
        .select_from(joined)
        .where(entry.c.patient_id == patient_id, entry.c.kind == "vital_signs", views.CURRENT)
        .order_by(entry.c.occurred_at.desc()).limit(limit)
    ).mappings().all()
    out = []
    for row in rows:
        item = {key: value for key, value in row.items() if not key.startswith(tuple(f"{k}_" for k in _SCORES))}
        for kind, (_, view) in _SCORES.items():
            prefix = f"{kind}_"
            score = {key.removeprefix(prefix): value for key, value in row.items() if key.startswith(prefix)}
            item[f"{kind}_id"] = score["id"]
            # As `list_scores` gives a score: of the set, at its time.
            item[kind] = (view(score | {"vital_signs_id": row["id"], "occurred_at": row["occurred_at"]})
                          if item[f"{kind}_id"] is not None else None)
        out.append(item)
    note_access(conn, principal, "read", patient_id, "vital_signs", [r["id"] for r in out])
    for kind in _SCORES:
        scored = [r[f"{kind}_id"] for r in out if r[f"{kind}_id"]]
        # MEOWS and PEWS only where the patient has any: most never will, and each note is an audit append
        # (~1 ms).
        if scored or kind == "news2":
            note_access(conn, principal, "read", patient_id, kind, scored)
    return out


def _require_patient(conn: Connection, patient_id: uuid.UUID) -> None:
    if not views.patient_exists(conn, patient_id):
        raise NotFound(f"no patient {patient_id} at this facility", patient_id=str(patient_id))


# -- the medication administration record ------------------------------------------------------------

ADMINISTRATION_FIELDS = [c.name for c in medication_administration.c if c.name != "entry_id"]


def prescriptions_of(conn: Connection, patient_ids: Sequence[uuid.UUID]) -> list[dict]:
    """The current version of every prescription of these patients, with when it started (its first
    version) and when it stopped producing doses (a version that is no longer active), and `came_in_on`:
    None for a prescription on the patient's MAR, else why it is not (`came_in`, below)."""
    if not patient_ids:
        return []
    request = views.medication_request
    first = entry.alias("first_version")
    rows = conn.execute(
        sa.select(entry.c.id.label("version_id"), entry.c.root_id, entry.c.patient_id, entry.c.encounter_id,
                  entry.c.occurred_at.label("version_at"), first.c.occurred_at.label("started_at"),
                  request.c.drug, request.c.dose, request.c.dose_unit, request.c.route, request.c.frequency,
                  request.c.duration_days, request.c.status, request.c.instructions,
                  request.c.allergy_override_reason)
        .select_from(entry.join(request, request.c.entry_id == entry.c.id).join(first, first.c.id == entry.c.root_id))
        .where(entry.c.patient_id.in_(patient_ids), entry.c.kind == "medication_request", views.CURRENT)
        .order_by(first.c.occurred_at)
    ).mappings().all()
    out = []
    stays = views.stays_of(conn, patient_ids)
    decided = views.reconciled(conn, [stay["id"] for stay in stays.values()])
    for row in rows:
        item = dict(row)
        stopped_at = item["version_at"] if item["status"] != "active" else None
        item["ends_at"] = schedule.end_of(item["started_at"], item["duration_days"], stopped_at)
        item["plan"] = schedule.regimen(item["frequency"])
        item["came_in_on"] = came_in(item, stays.get(item["patient_id"]), decided)
        out.append(item)
    return out


def came_in(prescription: dict, stay: dict | None, decided: dict[tuple[uuid.UUID, uuid.UUID], str]) -> str | None:
    """Why a prescription is not on an admitted patient's MAR, or None when it is. An admitted patient
    (`stay`, `views.stays_of`) is given in hospital what was prescribed in the stay: a prescription of one
    of its encounters, or one naming no encounter written since the stay began (a ward doctor prescribing
    without naming the visit means the patient in front of them; prescriptions made by the API, the order
    sets and the tests often name none). One written before, on an earlier visit, came in with the
    patient: a doctor reconciles it on admission (clinical/reconciliation.py), and until then it is
    "to_reconcile", then "hold" (kept off the ward for discharge), "stop" or "continue" (a new
    prescription of the stay gives its doses). A patient who is not admitted (`stay` None) has every
    prescription on their MAR, as before."""
    if stay is None:
        return None
    if prescription["encounter_id"] in stay["encounter_ids"]:
        return None
    if prescription["encounter_id"] is None and stay["started_at"] is not None \
            and prescription["started_at"] >= stay["started_at"]:
        return None
    return decided.get((stay["id"], prescription["root_id"]), "to_reconcile")


def administrations_of(conn: Connection, request_roots: Iterable[uuid.UUID]) -> list[dict]:
    roots = list(request_roots)
    if not roots:
        return []
    query = _current(medication_administration, "medication_administration",
                     medication_administration.c.medication_request_id.in_(roots)).order_by(entry.c.occurred_at)
    return [dict(r) for r in conn.execute(query).mappings()]


def doses_given_between(conn: Connection, patient_ids: Sequence[uuid.UUID], start: dt.datetime,
                        end: dt.datetime) -> list[dict]:
    """The doses of these patients given in [start, end), by when they were given (a given dose's entry
    occurs when it was given), whatever slot each was for: a dose charted at 01:29 for yesterday's 08:00
    is among the night's. Not audited: the caller notes the read."""
    if not patient_ids:
        return []
    query = _current(medication_administration, "medication_administration", entry.c.patient_id.in_(patient_ids),
                     medication_administration.c.outcome == "given", entry.c.occurred_at >= start,
                     entry.c.occurred_at < end).order_by(entry.c.occurred_at)
    return [dict(r) for r in conn.execute(query).mappings()]


def dose_state(scheduled_for: dt.datetime, given: dict | None, now: dt.datetime) -> str:
    if given is not None:
        return "given_late" if given["outcome"] == "given" and given["minutes_late"] else given["outcome"]
    if now > scheduled_for + schedule.LATE_AFTER:
        return "late"
    if now >= scheduled_for - schedule.LATE_AFTER:
        return "due_now"
    return "due"


def mar_lines(conn: Connection, patient_ids: Sequence[uuid.UUID], *, window_start: dt.datetime,
              window_end: dt.datetime, now: dt.datetime, tz: zoneinfo.ZoneInfo,
              prescriptions: list[dict] | None = None) -> list[dict]:
    """Each prescription on the patients' MAR (`came_in`) with its doses in the window and what happened
    to each, from `prescriptions` (`prescriptions_of` these patients, read here if not given); not audited."""
    lines = []
    if prescriptions is None:
        prescriptions = prescriptions_of(conn, patient_ids)
    prescriptions = [p for p in prescriptions if p["came_in_on"] is None]
    by_request: dict[uuid.UUID, list[dict]] = defaultdict(list)
    for given in administrations_of(conn, [p["root_id"] for p in prescriptions]):
        by_request[given["medication_request_id"]].append(given)
    for p in prescriptions:
        plan = p["plan"]
        recorded = by_request.get(p["root_id"], [])
        slots = schedule.doses(plan, start=p["started_at"], end=p["ends_at"], window_start=window_start,
                               window_end=window_end, tz=tz)
        by_slot = {g["scheduled_for"]: g for g in recorded if g["scheduled_for"] is not None}
        # A slot recorded under an earlier reading of the schedule still shows, with what was recorded.
        slots = sorted(set(slots) | {s for s in by_slot if window_start <= s <= window_end})
        unscheduled = [g for g in recorded if g["scheduled_for"] is None
                       and window_start <= (g["administered_at"] or g["occurred_at"]) <= window_end]
        active = p["status"] == "active" and (p["ends_at"] is None or p["ends_at"] > window_start)
        # An as-needed dose is given against the last one and the day's total ("max 4 g in 24 h"), which
        # may lie on yesterday's page: each line carries both, whatever day is shown.
        given_times = [g["administered_at"] for g in recorded if g["outcome"] == "given" and g["administered_at"]]
        last_given = max((t for t in given_times if t <= now), default=None)
        given_last_day = sum(1 for t in given_times if now - dt.timedelta(hours=24) < t <= now)
        if not (slots or unscheduled or active):
            continue
        doses = []
        for slot in slots:
            given = by_slot.get(slot)
            state = dose_state(slot, given, now)
            doses.append({"scheduled_for": slot, "state": state, "late": state in {"late", "given_late"},
                          "administration": given})
        lines.append({
            "patient_id": p["patient_id"], "medication_request_id": p["root_id"], "version_id": p["version_id"],
            "drug": p["drug"], "dose": p["dose"], "dose_unit": p["dose_unit"], "route": p["route"],
            "frequency": p["frequency"], "regimen": plan.label if plan.kind != "unknown" else "not understood",
            "scheduled": plan.scheduled, "duration_days": p["duration_days"], "status": p["status"],
            "instructions": p["instructions"], "allergy_override_reason": p["allergy_override_reason"],
            "started_at": p["started_at"], "ends_at": p["ends_at"], "doses": doses, "unscheduled": unscheduled,
            "last_given_at": last_given, "given_last_day": given_last_day,
        })
    return lines


def mar(conn: Connection, principal: Principal, patient_id: uuid.UUID, *, window_start: dt.datetime,
        window_end: dt.datetime, now: dt.datetime, tz: zoneinfo.ZoneInfo) -> dict:
    _require_patient(conn, patient_id)
    if window_end <= window_start:
        raise Invalid("the window ends before it starts", field="until")
    if window_end - window_start > dt.timedelta(days=31):
        raise Invalid("show at most 31 days of the MAR at once", field="until")
    prescriptions = prescriptions_of(conn, [patient_id])
    lines = mar_lines(conn, [patient_id], window_start=window_start, window_end=window_end, now=now, tz=tz,
                      prescriptions=prescriptions)
    # Last night's late dose is not on this morning's page, yet it is the one the worklist counts: the
    # window says how many late doses of the last day lie outside it, and the earliest, to open its day.
    elsewhere: list[dt.datetime] = []
    read = {line["version_id"] for line in lines}
    for line in mar_lines(conn, [patient_id], window_start=now - LATE_LOOKBACK, window_end=now, now=now, tz=tz,
                          prescriptions=prescriptions):
        outside = [d["scheduled_for"] for d in line["doses"]
                   if d["state"] == "late" and not window_start <= d["scheduled_for"] <= window_end]
        if outside:
            elsewhere += outside
            read.add(line["version_id"])
    elsewhere.sort()
    # What the patient came in on and is not given on the ward: awaiting a doctor's decision, or held.
    came_in_on = [_came_in_view(p) for p in prescriptions if p["came_in_on"] in ("to_reconcile", "hold")
                  and p["status"] == "active"]
    read |= {p["version_id"] for p in came_in_on}
    given_ids = [d["administration"]["id"] for line in lines for d in line["doses"] if d["administration"]]
    given_ids += [g["id"] for line in lines for g in line["unscheduled"]]
    note_access(conn, principal, "read", patient_id, "medication_request", sorted(read))
    note_access(conn, principal, "read", patient_id, "medication_administration", given_ids)
    late = sum(1 for line in lines for d in line["doses"] if d["state"] == "late")
    return {"window_start": window_start, "window_end": window_end, "late": late, "lines": lines,
            "late_elsewhere": len(elsewhere), "first_late_elsewhere_at": elsewhere[0] if elsewhere else None,
            "came_in_on": came_in_on, "to_reconcile": sum(1 for p in came_in_on if p["came_in_on"] == "to_reconcile")}


def _came_in_view(prescription: dict) -> dict:
    return {key: prescription[key] for key in (
        "version_id", "root_id", "drug", "dose", "dose_unit", "route", "frequency", "duration_days", "status",
        "instructions", "started_at", "came_in_on")}


def list_administrations(conn: Connection, principal: Principal, patient_id: uuid.UUID) -> list[dict]:
    """Every dose outcome recorded for the patient, newest first."""
    _require_patient(conn, patient_id)
    rows = [dict(r) for r in conn.execute(
        _current(medication_administration, "medication_administration", entry.c.patient_id == patient_id)
        .order_by(entry.c.occurred_at.desc())).mappings()]
    note_access(conn, principal, "read", patient_id, "medication_administration", [r["id"] for r in rows])
    return rows


def _prescription(conn: Connection, patient_id: uuid.UUID, any_version: uuid.UUID) -> dict:
    root = conn.execute(sa.select(entry.c.root_id).where(
        entry.c.id == any_version, entry.c.patient_id == patient_id, entry.c.kind == "medication_request")).scalar()
    found = [p for p in prescriptions_of(conn, [patient_id]) if p["root_id"] == root] if root else []
    if not found:
        raise Invalid(f"no prescription {any_version} on this patient's chart", field="medication_request_id")
    if found[0]["came_in_on"] is not None:
        raise Conflict(f"{found[0]['drug']} was prescribed before this admission and is not on the ward's MAR: "
                       f"{_NOT_ON_THE_WARD[found[0]['came_in_on']]}", field="medication_request_id")
    return found[0]


_NOT_ON_THE_WARD = {
    "to_reconcile": "it is not given on the ward until a doctor continues it (medicines to reconcile)",
    "hold": "a doctor held it on admission",
    "stop": "a doctor stopped it on admission",
    "continue": "a doctor continued it on admission as a prescription of this stay; record the dose on that one",
}


def _times(slots: list[dt.datetime], tz: zoneinfo.ZoneInfo) -> str:
    return ", ".join(sorted({s.astimezone(tz).strftime("%H:%M") for s in slots})) or "none"


def record_administration(conn: Connection, principal: Principal, patient_id: uuid.UUID, data: AdministrationIn,
                          *, now: dt.datetime, tz: zoneinfo.ZoneInfo) -> dict:
    """Record what happened to one dose: given (when, how much), held, refused or missed (why)."""
    _require_patient(conn, patient_id)
    prescription = _prescription(conn, patient_id, data.medication_request_id)
    plan = prescription["plan"]
    slot = data.scheduled_for.astimezone(dt.UTC) if data.scheduled_for else None
    # Two nurses recording the same dose at once: the second waits, then finds the first's entry.
    lock_key = f"mar:{prescription['root_id']}:{slot.isoformat() if slot else 'prn'}"
    conn.execute(sa.select(sa.func.pg_advisory_xact_lock(sa.func.hashtextextended(lock_key, 0))))
    if slot is not None:
        day = dt.timedelta(seconds=1)
        if slot not in schedule.doses(plan, start=prescription["started_at"], end=prescription["ends_at"],
                                      window_start=slot - day, window_end=slot + day, tz=tz):
            around = schedule.doses(plan, start=prescription["started_at"], end=prescription["ends_at"],
                                    window_start=slot - dt.timedelta(days=1), window_end=slot + dt.timedelta(days=1),
                                    tz=tz)
            raise Invalid(f"{prescription['drug']} has no dose scheduled at that time (its doses fall at "
                          f"{_times(around, tz)})", field="scheduled_for")
        already = conn.execute(
            _current(medication_administration, "medication_administration",
                     medication_administration.c.medication_request_id == prescription["root_id"],
                     medication_administration.c.scheduled_for == slot)
        ).mappings().first()
        if already is not None:
            raise Conflict(f"this dose was already recorded as {already['outcome']}; mark that record entered in "
                           "error to correct it", entry_id=str(already["id"]), field="scheduled_for")
        if data.outcome == "missed" and slot > now:
            raise Invalid("a dose cannot be missed before it is due", field="outcome")
    else:
        if plan.scheduled:
            raise Invalid(f"{prescription['drug']} is scheduled ({plan.label}): choose the dose this records",
                          field="scheduled_for")
        if data.outcome != "given":
            raise Invalid("only a dose given can be recorded without a scheduled time", field="outcome")
        if prescription["status"] != "active":
            raise Conflict(f"this prescription is {prescription['status']}", field="medication_request_id")
    administered_at = None
    late = None
    if data.outcome == "given":
        administered_at = (data.administered_at or now).astimezone(dt.UTC)
        if administered_at > now + FUTURE_TOLERANCE:
            raise Invalid("a dose cannot be given in the future", field="administered_at")
        if administered_at < prescription["started_at"] - FUTURE_TOLERANCE:
            raise Invalid("that time is before the prescription was written", field="administered_at")
        if prescription["ends_at"] is not None and administered_at > prescription["ends_at"] + schedule.LATE_AFTER:
            raise Conflict(f"this prescription ended at {prescription['ends_at'].astimezone(tz):%d %b %H:%M}",
                           field="medication_request_id")
        if slot is not None:
            if administered_at < slot - schedule.LATE_AFTER:
                raise Invalid(f"too early: this dose is due at {slot.astimezone(tz):%d %b %H:%M}",
                              field="administered_at")
            late = schedule.minutes_late(slot, administered_at)
    dose = data.dose if data.dose is not None else prescription["dose"]
    if data.outcome == "given" and dose != prescription["dose"] and not data.reason:
        raise Invalid(f"say why the dose given differs from the {prescription['dose']} {prescription['dose_unit']} "
                      "prescribed", field="reason")
    appended = record.append(
        conn, principal, "medication_administration", patient_id=patient_id,
        encounter_id=prescription["encounter_id"], occurred_at=administered_at or now,
        detail={"medication_request_id": prescription["root_id"], "scheduled_for": slot, "outcome": data.outcome,
                "reason": data.reason, "administered_at": administered_at, "drug": prescription["drug"],
                "dose": dose if data.outcome == "given" else None,
                "dose_unit": prescription["dose_unit"], "route": prescription["route"], "minutes_late": late})
    return _entry_row(appended)


# A dose recorded against the wrong patient or the wrong slot is withdrawn by the nurse who recorded it, within a
# shift of recording it, or by a clinician at any time (ACC-035): the substrate's one rule, as for a set of vital
# signs. Another nurse's dose, or an older one, was handed over as given and may have been acted on.
retraction.register_own("medication_administration", "nursing.mar.retract_own", "dose")


def retract_administration(conn: Connection, principal: Principal, patient_id: uuid.UUID, entry_id: uuid.UUID,
                           reason: str) -> dict:
    """A dose recorded in error: the record stays in the history and the dose is open again. Only its author
    within the hours, or a clinician (`retraction.require`: 403 saying who can)."""
    require_version(conn, patient_id, entry_id, "medication_administration")
    retraction.require(conn, principal, entry_id)
    retracted = record.retract(conn, principal, entry_id, reason)
    return {"id": retracted.id, "root_id": retracted.root_id, "status": retracted.status,
            "reason": retracted.reason, "occurred_at": retracted.occurred_at}


def _entry_row(appended: record.Entry) -> dict:
    return {"id": appended.id, "root_id": appended.root_id, "patient_id": appended.patient_id,
            "encounter_id": appended.encounter_id, "author_id": appended.author_id,
            "occurred_at": appended.occurred_at, "recorded_at": appended.recorded_at, **appended.detail}


def require_version(conn: Connection, patient_id: uuid.UUID, entry_id: uuid.UUID, kind: str) -> None:
    """404 unless `entry_id` is a version of a `kind` record on this patient's chart: asked before anything else of a
    request about it, so a guessed id is not found whatever else was sent."""
    found = conn.execute(sa.select(entry.c.kind).where(entry.c.id == entry_id, entry.c.patient_id == patient_id)
                         ).scalar()
    if found != kind:
        raise NotFound(f"no {kind.replace('_', ' ')} {entry_id} on this patient's record", entry_id=str(entry_id))


# -- nursing tasks -----------------------------------------------------------------------------------

TASK_FIELDS = [c.name for c in nursing_task.c if c.name != "entry_id"]


def task_view(row: dict, now: dt.datetime) -> dict:
    return {**row, "overdue": row["status"] == "open" and row["due_at"] < now}


def tasks_of(conn: Connection, patient_ids: Sequence[uuid.UUID], *, open_only: bool = False,
             codes: Sequence[str] | None = None) -> list[dict]:
    """Current tasks of these patients, soonest due first; not audited — callers are."""
    if not patient_ids:
        return []
    query = _current(nursing_task, "nursing_task", entry.c.patient_id.in_(patient_ids))
    if open_only:
        query = query.where(nursing_task.c.status == "open")
    if codes:
        query = query.where(nursing_task.c.code.in_(codes))
    return [dict(r) for r in conn.execute(query.order_by(nursing_task.c.due_at)).mappings()]


# Entries a reaction writes take ids derived from the entry they react to, and its time: replaying the
# same acts (demo data, an import) writes the same record.
DERIVED = uuid.UUID("5f0c3a5e-8d1b-4c1e-9a57-2b7f1f0a6c11")


def derived_id(*parts: object) -> uuid.UUID:
    return uuid.uuid5(DERIVED, ":".join(str(part) for part in parts))


def new_task(conn: Connection, principal: Principal, patient_id: uuid.UUID, *, code: str, title: str,
             due_at: dt.datetime, encounter_id: uuid.UUID | None = None, ward_code: str | None = None,
             source: record.Entry | None = None, ward_known: bool = False,
             again_for: record.Entry | None = None) -> record.Entry:
    """A task on the ward the patient is on (`ward_code`, else looked up; `ward_known` when the caller
    looked it up already, None meaning no ward). `again_for`: the entry that asks for the source's task a
    second time (a rejected specimen), written when it was."""
    if ward_code is None and not ward_known:
        ward_code = views.ward_of(conn, patient_id, encounter_id)
    key = (source.id, again_for.id) if again_for else (source.id,) if source else None
    return record.append(conn, principal, "nursing_task", patient_id=patient_id, encounter_id=encounter_id,
                         entry_id=derived_id("task", code, *key) if key else None,
                         occurred_at=(again_for or source).occurred_at if source else None,
                         detail={"code": code, "title": title[:200], "due_at": due_at, "status": "open",
                                 "ward_code": ward_code, "source_id": source.root_id if source else None,
                                 "source_kind": source.kind if source else None, "note": None})


def close_task(conn: Connection, principal: Principal, task: dict, status: str, note: str | None,
               cause: record.Entry | None = None, occurred_at: dt.datetime | None = None) -> record.Entry:
    """A task done or cancelled: its next version, with the note saying how (or why); `cause` is the
    entry whose reaction closes it, if one does, and `occurred_at` when it was closed (now by default)."""
    detail = {name: task[name] for name in TASK_FIELDS} | {"status": status, "note": note}
    return record.append(conn, principal, "nursing_task", patient_id=task["patient_id"], supersedes=task["id"],
                         detail=detail, reason=note or status,
                         entry_id=derived_id("close", task["id"], cause.id) if cause else None,
                         occurred_at=cause.occurred_at if cause else occurred_at)


def list_tasks(conn: Connection, principal: Principal, patient_id: uuid.UUID, *, now: dt.datetime,
               open_only: bool = False) -> list[dict]:
    _require_patient(conn, patient_id)
    rows = tasks_of(conn, [patient_id], open_only=open_only)
    rows.sort(key=lambda r: (r["status"] != "open", r["due_at"]))
    note_access(conn, principal, "read", patient_id, "nursing_task", [r["id"] for r in rows])
    return [task_view(r, now) for r in rows]


def add_task(conn: Connection, principal: Principal, patient_id: uuid.UUID, data: TaskIn, *,
             now: dt.datetime) -> dict:
    _require_patient(conn, patient_id)
    if data.encounter_id is not None and conn.execute(sa.select(views.encounter.c.patient_id).where(
            views.encounter.c.id == data.encounter_id)).scalar() != patient_id:
        raise Invalid(f"encounter {data.encounter_id} is not an encounter of this patient", field="encounter_id")
    if data.due_at < now - dt.timedelta(days=1):
        raise Invalid("a new task cannot be due more than a day ago", field="due_at")
    appended = new_task(conn, principal, patient_id, code="other", title=data.title, due_at=data.due_at,
                        encounter_id=data.encounter_id)
    return task_view(_entry_row(appended), now)


def set_task_status(conn: Connection, principal: Principal, patient_id: uuid.UUID, entry_id: uuid.UUID,
                    status: str, note: str | None, *, now: dt.datetime) -> dict:
    require_version(conn, patient_id, entry_id, "nursing_task")
    task = conn.execute(_current(nursing_task, "nursing_task", entry.c.id == entry_id)).mappings().first()
    if task is None:
        raise Conflict("this task has changed since you loaded it; reload the list", entry_id=str(entry_id))
    if task["status"] != "open":
        raise Conflict(f"this task is already {task['status']}", field="status")
    if status == "cancelled" and not note:
        raise Invalid("say why the task is cancelled", field="note")
    if status == "done" and task["code"] == "escalation" and not (note or "").strip():
        # The response a score called for was given by someone: the record keeps who was told and what was
        # done, which a ward's escalation audit asks for; a bare tick says only that the alert went away.
        raise Invalid("say who was told and what was done", field="note")
    if status == "done" and task["code"] == "observations":
        # Done means the set was taken: recording it closes the task (reactions.py). Ticked by hand, the
        # worklist would show the observations done with nothing in the chart.
        raise Conflict("record the observations: this task closes itself when the set is recorded (or cancel it, "
                       "saying why)", field="status")
    return task_view(_entry_row(close_task(conn, principal, dict(task), status, note)), now)


# A task that cannot be done now (the patient is in theatre, the phlebotomist comes at ten) waits, with why,
# at most this long at a time; the tasks that follow a score cannot wait at all.
DEFER_AT_MOST = dt.timedelta(hours=24)
NOT_DEFERRED = {
    "observations": "the observations follow the early warning score: record the set, or cancel it saying why",
    "escalation": "an escalation cannot wait: answer it, or mark it done saying who was told",
}


def defer_task(conn: Connection, principal: Principal, patient_id: uuid.UUID, entry_id: uuid.UUID,
               until: dt.datetime, note: str | None, *, now: dt.datetime, tz: zoneinfo.ZoneInfo) -> dict:
    """An open task due later, with why: its next version, still open, due at `until` (later than it was)."""
    require_version(conn, patient_id, entry_id, "nursing_task")
    task = conn.execute(_current(nursing_task, "nursing_task", entry.c.id == entry_id)).mappings().first()
    if task is None:
        raise Conflict("this task has changed since you loaded it; reload the list", entry_id=str(entry_id))
    if task["status"] != "open":
        raise Conflict(f"this task is already {task['status']}", field="status")
    if task["code"] in NOT_DEFERRED:
        raise Conflict(NOT_DEFERRED[task["code"]], field="status")
    if not (note or "").strip():
        raise Invalid("say why the task waits", field="note")
    if until <= now:
        raise Invalid("a task is deferred to a time still to come", field="until")
    if until > now + DEFER_AT_MOST:
        raise Invalid("a task is deferred by at most 24 hours at a time", field="until")
    if until <= task["due_at"]:
        raise Invalid(f"this task is due at {task['due_at'].astimezone(tz):%d %b %H:%M} already: defer it to a "
                      "later time", field="until")
    detail = {name: task[name] for name in TASK_FIELDS} | {"due_at": until.astimezone(dt.UTC), "note": note.strip()}
    appended = record.append(conn, principal, "nursing_task", patient_id=patient_id, supersedes=task["id"],
                             detail=detail, reason=f"deferred: {note.strip()}"[:500])
    return task_view(_entry_row(appended), now)


# -- care plans --------------------------------------------------------------------------------------


def _care_plan_detail(data: CarePlanIn) -> dict:
    return {"problem": data.problem, "goal": data.goal, "interventions": data.interventions,
            "evaluation": data.evaluation, "status": data.status, "review_due": data.review_due}


def care_plans_of(conn: Connection, patient_ids: Sequence[uuid.UUID], *, active_only: bool = False) -> list[dict]:
    if not patient_ids:
        return []
    query = _current(care_plan, "care_plan", entry.c.patient_id.in_(patient_ids))
    if active_only:
        query = query.where(care_plan.c.status == "active")
    return [dict(r) for r in conn.execute(query.order_by(entry.c.occurred_at.desc())).mappings()]


def list_care_plans(conn: Connection, principal: Principal, patient_id: uuid.UUID) -> list[dict]:
    _require_patient(conn, patient_id)
    rows = care_plans_of(conn, [patient_id])
    rows.sort(key=lambda r: r["status"] != "active")
    note_access(conn, principal, "read", patient_id, "care_plan", [r["id"] for r in rows])
    return rows


def add_care_plan(conn: Connection, principal: Principal, patient_id: uuid.UUID, data: CarePlanIn) -> dict:
    _require_patient(conn, patient_id)
    if data.status != "active":
        raise Invalid("a new care plan starts active; evaluate it later to close it", field="status")
    if data.encounter_id is not None and conn.execute(sa.select(views.encounter.c.patient_id).where(
            views.encounter.c.id == data.encounter_id)).scalar() != patient_id:
        raise Invalid(f"encounter {data.encounter_id} is not an encounter of this patient", field="encounter_id")
    appended = record.append(conn, principal, "care_plan", patient_id=patient_id, encounter_id=data.encounter_id,
                             detail=_care_plan_detail(data))
    return _entry_row(appended)


def update_care_plan(conn: Connection, principal: Principal, patient_id: uuid.UUID, entry_id: uuid.UUID,
                     data: CarePlanIn, reason: str) -> dict:
    """Evaluate or revise a care plan: its next version (the previous stays in the history)."""
    require_version(conn, patient_id, entry_id, "care_plan")
    if data.status != "active" and not data.evaluation:
        raise Invalid(f"a care plan is {data.status} on an evaluation: write it", field="evaluation")
    appended = record.append(conn, principal, "care_plan", patient_id=patient_id, supersedes=entry_id,
                             detail=_care_plan_detail(data), reason=reason)
    return _entry_row(appended)
