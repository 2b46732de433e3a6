"""Synthetic nursing record for the patients in a demo facility's wards at the demo's moment, written
after the clinical and operations demos have put them there (`healthos up --demo`): their next
observations scheduled (and a high score escalated) as on a ward, each admission assessment done within
a few hours of admission, each laboratory specimen taken within two hours of its order, each escalation
answered by a review within the hour, and each scheduled dose of the last day recorded — given mostly,
on time or a little late, now and then held or refused with the reason — except those due in the last
hour, which the ward still has to give. A few adults are on a fluid balance chart (IV fluids, a catheter),
one of them passing too little urine in the last six hours, so the chart, the ward's oliguria marker and its
escalation task have something to show. The inpatients have diet orders for the kitchen's list: most a normal or
everyday diet, a diabetic (one with diabetes on the problem list where there is one), a renal diet (kidney disease
likewise), a child on F-75, one nil by mouth awaiting theatre, and on each ward one admitted patient left without an
order, the ward's to fix. So a demo ward looks like a ward at work rather than one where
nothing was ever done. Deterministic from a seed and the facility; written through this layer's
services, so each act is an entry of the one record with its reactions (a dose given is charged) and its
audit event.
"""

from __future__ import annotations

import datetime as dt
import random
import uuid

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from appliance.layers.nursing import diet, fluid, reactions, service, views
from appliance.layers.nursing.schemas import AdministrationIn
from appliance.substrate import record
from appliance.substrate.db import Database
from appliance.substrate.demo import demo_author, demo_stream
from appliance.substrate.principal import Principal
from appliance.substrate.tenancy import facility_timezone

DEMO_NAMESPACE = uuid.UUID("6d1f2c8e-0b7a-4f3e-9c55-1e2d3f4a5b6c")
DOSES_SINCE = dt.timedelta(hours=24)
STILL_TO_GIVE = dt.timedelta(hours=1)  # doses due this recently are the ward's to give
REVIEWED = ["Doctor on call informed; patient reviewed, plan in the notes",
            "Team on call informed; reviewed at the bedside, plan in the notes"]
FLUID_CHARTS = 3  # adults on a fluid balance chart, the first of them oliguric
FLUID_HOURS = 20  # charted hourly for this long before the demo's moment
NOT_GIVEN = {"held": ["Nil by mouth before theatre", "Blood pressure below the prescriber's limit"],
             "refused": ["Patient refused: nauseated", "Patient asleep, family asked to wait"]}


def demo_principal(slug: str) -> Principal:
    return demo_author(DEMO_NAMESPACE, slug, "nursing", "nurse")


def _done_within(conn: Connection, principal: Principal, ids: list[uuid.UUID], code: str, rng: random.Random,
                 minutes: tuple[int, int], now: dt.datetime, notes: list[str] | None = None) -> int:
    """Close the open `code` tasks of these patients as done `minutes` (a range drawn from `rng`) after
    each was set, where that is already past; returns how many."""
    done = 0
    for task in service.tasks_of(conn, ids, open_only=True, codes=[code]):
        done_at = task["occurred_at"] + dt.timedelta(minutes=rng.randint(*minutes))
        if done_at < now:
            service.close_task(conn, principal, task, "done", rng.choice(notes) if notes else None,
                               occurred_at=done_at)
            done += 1
    return done


def generate_nursing_demo(db: Database, slug: str, seed: int = 2026,
                          as_of: dt.datetime | None = None) -> dict[str, int]:
    """Write the nursing record of the patients in the wards now (see the module docstring). Returns how
    many of each act were written: nothing if the facility already holds it."""
    principal, rng, tz = demo_principal(slug), demo_stream("nursing", seed, slug), facility_timezone(db, slug)
    counts = {"observations_scheduled": 0, "admission_assessment": 0, "specimens_taken": 0, "escalations_answered": 0,
              "given": 0, "held": 0, "refused": 0}
    with db.tenant(slug) as conn:
        if conn.execute(sa.select(record.entry.c.id).where(record.entry.c.author_id == principal.account_id)
                        .limit(1)).first() is not None:
            return {}
        now = as_of or conn.execute(sa.select(sa.func.now())).scalar_one()
        admitted = {p["id"]: p["started_at"] for ward in views.wards(conn)
                    for p in views.patients_on_ward(conn, ward["code"]) if p["started_at"] is not None}
        ids = sorted(admitted)
        # Their observations were scored before the operations demo put them on a ward, so the reaction
        # that schedules the next set (and escalates a high score) found no ward then: it runs now.
        # (The first set asked for on admission is not a schedule: the score replaces it.)
        scheduled = {t["patient_id"] for t in service.tasks_of(conn, ids, open_only=True, codes=["observations"])
                     if t["source_kind"] not in reactions.ADMITTED_BY}
        # The newest score of any kind: a patient's kind changes (a child turns 16, a pregnancy ends), and
        # a PEWS from before the sixteenth birthday must not schedule from months ago.
        latest: dict[uuid.UUID, dict] = {}
        for kind in ("news2", "meows", "pews"):
            for patient_id, score in service.latest_scores(conn, ids, kind).items():
                if patient_id not in latest or score["occurred_at"] > latest[patient_id]["occurred_at"]:
                    latest[patient_id] = score
        for patient_id, score in latest.items():
            if patient_id not in scheduled:
                reactions.schedule_observations(conn, principal, record.get_entry(conn, score["id"]))
                counts["observations_scheduled"] += 1
        counts["admission_assessment"] = _done_within(conn, principal, ids, "admission_assessment", rng, (20, 300),
                                                      now)
        # A specimen is taken within the hour or two after the order, and the order then waits for the
        # laboratory: left open, each was a "collect specimen" task overdue since the morning. From a
        # stream of its own, so the doses below are what the seed always gave.
        counts["specimens_taken"] = _done_within(conn, principal, ids, "collect_specimen",
                                                 demo_stream("nursing-specimens", seed, slug), (10, 100), now)
        # A triggered score was answered: the team called and the patient reviewed within the hour (the
        # patient stays on the escalation list until a set scores lower; only the call is done).
        counts["escalations_answered"] = _done_within(conn, principal, ids, "escalation",
                                                      demo_stream("nursing-escalations", seed, slug), (10, 50), now,
                                                      notes=REVIEWED)
        for line in service.mar_lines(conn, ids, window_start=now - DOSES_SINCE, window_end=now - STILL_TO_GIVE,
                                      now=now, tz=tz):
            for dose in line["doses"]:
                slot = dose["scheduled_for"]
                if dose["administration"] is not None or slot < admitted[line["patient_id"]]:
                    continue
                outcome = rng.choices(["given", "held", "refused"], weights=[94, 3, 3])[0]
                # A little early or late, but never before the prescription was written: its first dose
                # falls on the hour after it, which can be minutes later (the demo failed on such a one).
                given_at = min(max(slot + dt.timedelta(minutes=rng.randint(-20, 50)), line["started_at"]),
                               now - dt.timedelta(minutes=5))
                service.record_administration(conn, principal, line["patient_id"], AdministrationIn(
                    medication_request_id=line["medication_request_id"], scheduled_for=slot, outcome=outcome,
                    reason=None if outcome == "given" else rng.choice(NOT_GIVEN[outcome]),
                    administered_at=given_at if outcome == "given" else None),
                    # a dose held or refused is recorded at its round, not at the demo's moment
                    now=now if outcome == "given" else min(slot + dt.timedelta(minutes=10), now), tz=tz)
                counts[outcome] += 1
        counts["fluid_charts"] = _fluid_charts(conn, principal, demo_stream("nursing-fluids", seed, slug), now)
        counts["diet_orders"] = _diet_orders(conn, principal, demo_stream("nursing-diets", seed, slug), now)
    return counts


# (the problem list's ICD-10 categories that call for it, the diet, its note); the last goes to the next adult.
DIETS_FOR_CONDITIONS = (({"E10", "E11", "E12", "E13", "E14"}, "diabetic", "No sugar in tea; snack at bedtime"),
                        ({"N17", "N18", "N19"}, "renal", "Fluid restriction as charted"),
                        (set(), "npo", "Nil by mouth awaiting theatre"))
EVERYDAY_DIETS = (("normal", ()), ("normal", ()), ("normal", ()), ("soft", ()), ("low_salt", ()),
                  ("high_energy_protein", ()), ("normal", ("halal",)), ("vegetarian", ()))


def _diet_orders(conn: Connection, principal: Principal, rng: random.Random, now: dt.datetime) -> int:
    """A diet order for the inpatients on the wards (not the emergency department), from their admission: across the
    facility, one with diabetes (ICD-10 E10-E14 on the problem list, else the first adult) diabetic, one with kidney
    disease (N17-N19, else the next adult) renal, the next adult nil by mouth awaiting theatre, the youngest child
    under five on F-75, the rest an everyday diet; on each ward of four or more, the last admitted is left without an
    order."""
    admitted: list[dict] = []
    for ward in diet.kitchen_wards(conn):
        patients = views.patients_on_ward(conn, ward["code"])
        stays = views.stays_of(conn, [p["id"] for p in patients])
        on_ward = sorted((p for p in patients if stays.get(p["id"], {}).get("id") == p["encounter_id"]),
                         key=lambda p: (p["started_at"] or now, p["id"]))
        admitted += on_ward[:-1] if len(on_ward) >= 4 else on_ward
    codes: dict[uuid.UUID, set[str]] = {}
    for row in conn.execute(views.current_of_kind(views.condition, "condition",
                                                  record.entry.c.patient_id.in_([p["id"] for p in admitted]),
                                                  views.condition.c.clinical_status == "active")):
        codes.setdefault(row.patient_id, set()).add(row.code[:3])
    adults = [p for p in admitted if not service.is_child(p["birth_date"], now.date())]
    small = sorted((p for p in admitted if p["birth_date"] > now.date() - dt.timedelta(days=5 * 365)),
                   key=lambda p: p["birth_date"], reverse=True)
    chosen: dict[uuid.UUID, tuple[str, tuple[str, ...], str | None]] = {}
    for wanted, code, note in DIETS_FOR_CONDITIONS:
        free = [p for p in adults if p["id"] not in chosen]
        found = next((p for p in free if codes.get(p["id"], set()) & wanted), free[0] if free else None)
        if found is not None:
            chosen[found["id"]] = (code, (), note)
    if small:
        chosen[small[0]["id"]] = ("f75", (), "Every 3 hours, day and night (WHO stabilisation phase)")
    orders: list[record.NewEntry] = []
    for p in admitted:
        code, also, note = chosen.get(p["id"]) or (*rng.choice(EVERYDAY_DIETS), None)
        starts = min(p["started_at"] or now, now)
        orders.append(record.NewEntry("diet_order", p["id"], encounter_id=p["encounter_id"], occurred_at=starts,
                                      detail={"diet": code, "also": list(also), "iddsi_level": None,
                                              "starts_at": starts if code != "npo" else now - dt.timedelta(hours=2),
                                              "ends_at": None, "corrects": False, "note": note}))
    record.append_many(conn, principal, orders)
    return len(orders)


def _fluid_charts(conn: Connection, principal: Principal, rng: random.Random, now: dt.datetime) -> int:
    """Adults on a general, surgical or intensive care ward put on a fluid balance chart: weighed, an IV
    litre every eight hours, a drink now and then, and urine measured every hour from a catheter. The first's
    catheter bag, emptied six hours before the last measurement (twenty minutes ago), then holds 60 to 100 ml:
    below 0.5 ml/kg/h at any weight drawn, found at that last measurement, which raises the escalation (a
    fresh one: the demo answers older ones). The others pass plenty."""
    wards = [row.code for row in conn.execute(sa.select(views.ward.c.code).where(
        views.ward.c.active, views.ward.c.kind.in_(("inpatient", "surgical", "icu"))).order_by(views.ward.c.code))]
    adults = sorted(p["id"] for code in wards for p in views.patients_on_ward(conn, code)
                    if not service.is_child(p["birth_date"], now.date()))
    chosen = rng.sample(adults, min(FLUID_CHARTS, len(adults)))
    for index, patient_id in enumerate(chosen):
        weight = rng.randint(55, 85)
        started = now - dt.timedelta(hours=FLUID_HOURS, minutes=20)
        record.append(conn, principal, "vital_signs", patient_id=patient_id, occurred_at=started,
                      detail={"weight_kg": weight})
        for hour in range(FLUID_HOURS + 1):
            at = started + dt.timedelta(hours=hour)
            if hour % 8 == 0:
                fluid.record_line(conn, principal, patient_id, direction="intake", route="iv", volume_ml=1000,
                                  occurred_at=at, note="Sodium chloride 0.9%", now=now)
            if hour % 3 == 1:
                fluid.record_line(conn, principal, patient_id, direction="intake", route="oral",
                                  volume_ml=rng.choice((100, 150, 200)), occurred_at=at, note=None, now=now)
            if index == 0 and hour > FLUID_HOURS - fluid.OLIGURIA_HOURS:
                if hour == FLUID_HOURS:
                    fluid.record_line(conn, principal, patient_id, direction="output", route="urine",
                                      volume_ml=rng.randint(60, 100), occurred_at=at, note="Catheter bag", now=now)
                continue
            fluid.record_line(conn, principal, patient_id, direction="output", route="urine",
                              volume_ml=rng.randint(60, 110), occurred_at=at, note=None, now=now)
    return len(chosen)
