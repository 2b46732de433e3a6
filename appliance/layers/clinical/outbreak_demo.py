"""The demo's outbreak (`healthos up --demo`): a cluster of meningococcal meningitis at the demo health centre, so
the ministry's Alerts page (appliance/national/surveillance.py) has an alert to show and acknowledge. The year
the clinical demo writes holds no notifiable disease that alerts: its malaria and diarrhoea are weekly diseases
without a threshold (policies/surveillance.toml says why).

Three children of the demo population (2 to 14 years old, drawn by a stream fixed by the seed and the facility)
come to the clinic on days of one ISO week, the week of a day and a half before the demo's moment, and are
diagnosed with meningococcal meningitis (A39.0), each an outpatient visit written as the clinical demo writes
one, by its principal; three cases reach meningitis's 2 a week. The rest of the population is what the clinical
demo gave. Skipped where the facility already holds the demo's cluster.
"""

from __future__ import annotations

import datetime as dt
import uuid

import sqlalchemy as sa

from appliance.layers.clinical import icd10
from appliance.layers.clinical.demo import demo_principal
from appliance.substrate import record
from appliance.substrate.db import Database
from appliance.substrate.demo import demo_stream
from appliance.substrate.tenancy import facility_timezone

DEMO_FACILITY = "hillview_hc"  # a health centre: a catchment under 30 000, for which meningitis's threshold is set
CODE = "A39.0"
CHILDREN = 3

# Children of 2 to 14 with no death recorded, in MRN order: what the seed's stream draws from.
_CANDIDATES = sa.text(
    "SELECT p.id FROM patient p WHERE p.birth_date BETWEEN :born_after AND :born_before AND NOT EXISTS ("
    " SELECT 1 FROM entry d WHERE d.patient_id = p.id AND d.kind = 'death') ORDER BY p.mrn")


def generate_outbreak_demo(db: Database, slug: str = DEMO_FACILITY, seed: int = 2026,
                           as_of: dt.datetime | None = None) -> int:
    """Write the cluster at facility `slug` (the demo's: DEMO_FACILITY), in the week before `as_of` (default now);
    returns the cases written (0: skipped, the cluster is there already)."""
    author = demo_principal(slug)
    end = as_of or dt.datetime.now(dt.UTC)
    zone = facility_timezone(db, slug)
    anchor = (end - dt.timedelta(hours=36)).astimezone(zone)
    monday = anchor.date() - dt.timedelta(days=anchor.weekday())
    days = [max(monday, anchor.date() - dt.timedelta(days=n)) for n in (3, 1, 0)]  # one ISO week, before `end`
    draw = demo_stream("outbreak", seed, slug)
    code = icd10.lookup(CODE)
    with db.tenant(slug) as conn:
        if conn.execute(sa.text(
                "SELECT 1 FROM entry x JOIN condition c ON c.entry_id = x.id "
                "WHERE x.kind = 'condition' AND x.author_id = :author AND c.code = :code LIMIT 1"),
                {"author": author.account_id, "code": CODE}).first():
            return 0
        today = end.astimezone(zone).date()
        candidates = conn.execute(_CANDIDATES, {"born_after": today - dt.timedelta(days=15 * 365),
                                                "born_before": today - dt.timedelta(days=2 * 366)}).scalars().all()
        if len(candidates) < CHILDREN:
            return 0
        entries = []
        for patient_id, day in zip(draw.sample(candidates, CHILDREN), days, strict=True):
            when = dt.datetime.combine(day, dt.time(draw.randint(8, 14), draw.randint(0, 59)), zone)
            visit = uuid.UUID(int=draw.getrandbits(128), version=4)
            entries += [
                record.NewEntry("encounter", patient_id, {
                    "id": visit, "patient_id": patient_id, "encounter_class": "outpatient", "status": "finished",
                    "reason": "Fever, headache and neck stiffness", "ward_code": None, "planned_for": None,
                    "started_at": when, "ended_at": when + dt.timedelta(minutes=90)}, visit, when, recorded_at=when),
                record.NewEntry("encounter_status", patient_id, {
                    "encounter_id": visit, "from_status": "arrived", "to_status": "in_progress"}, visit,
                    when + dt.timedelta(minutes=10), recorded_at=when + dt.timedelta(minutes=10)),
                record.NewEntry("condition", patient_id, {
                    "code": code.code, "display": code.display, "clinical_status": "active",
                    "verification": "confirmed", "onset_date": day - dt.timedelta(days=1), "resolved_date": None,
                    "note": "Lumbar puncture: turbid CSF; Gram-negative diplococci"}, visit,
                    when + dt.timedelta(minutes=60), recorded_at=when + dt.timedelta(minutes=60)),
                record.NewEntry("encounter_status", patient_id, {
                    "encounter_id": visit, "from_status": "in_progress", "to_status": "finished"}, visit,
                    when + dt.timedelta(minutes=90), recorded_at=when + dt.timedelta(minutes=90)),
            ]
        record.append_many(conn, author, entries)
    return CHILDREN
