"""Synthetic patient safety incidents for a demo facility: ten reports over the last year, as a district hospital's
wards make them (falls most, a medication error caught before it reached the patient, a pressure injury, a
wrong-patient near miss reported anonymously, an infection), most reviewed and closed with what was learned, two
under review, two still open: the newest a fall with severe harm, for immediate review. Written through the
service (`incidents.report`, `incidents.add_review`), audited as any report; they name no patient. Deterministic
from a seed (the hours of the day), written once.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from appliance.layers.operations import incidents
from appliance.layers.operations.demo import DEMO_NAMESPACE
from appliance.layers.operations.models import INPATIENT_WARD_KINDS, incident, ward
from appliance.layers.operations.schemas import IncidentIn, ReviewEventIn
from appliance.substrate.db import Database
from appliance.substrate.demo import demo_author, demo_stream
from appliance.substrate.principal import Principal

# days ago, type, outcome, what happened, what was done at once, anonymous, how far the review went
STORIES = [
    (340, "fall", "mild", "Patient got up at night without calling; found sitting on the floor, a graze on the elbow.",
     "Helped to bed, examined, graze dressed; bed lowered.", False, "closed"),
    (300, "medication", "near_miss", "Amoxicillin drawn up for a patient with a recorded penicillin allergy.",
     "Stopped at the second nurse's check; the prescriber changed the antibiotic.", False, "closed"),
    (250, "pressure_injury", "moderate", "Category 2 pressure injury on the sacrum found on day six of the stay.",
     "Turning chart every two hours, pressure-relieving mattress requested.", False, "closed"),
    (200, "fall", "none", "Patient slipped on a wet floor near the ward toilets and sat down; no injury.",
     "Examined, no injury found; floor dried and a sign put out.", False, "closed"),
    (150, "patient_identification", "near_miss", "Blood sample labelled with the neighbouring bed's name.",
     "Sample discarded and taken again at the bedside with the wristband checked.", True, "closed"),
    (110, "fall", "moderate", "Elderly patient fell walking to the bathroom; wrist painful and swollen.",
     "X-ray: distal radius fracture; orthopaedics consulted, cast applied.", False, "review"),
    (75, "infection", "mild", "Redness and discharge at a peripheral cannula site on day three.",
     "Cannula removed, site swabbed, doctor informed.", False, "closed"),
    (40, "medication", "mild", "Evening insulin dose given twice after a handover.",
     "Glucose checked hourly overnight; low at 3.4 mmol/L, treated.", False, "review"),
    (12, "fall", "mild", "Patient slid off the trolley while being moved to the bed.",
     "Examined by the doctor on call; bruise on the hip, no fracture.", False, "open"),
    (3, "fall", "severe", "Patient fell from bed during the night and hit the head; drowsy afterwards.",
     "Neurological observations, urgent CT head requested, family informed.", False, "open"),
]
LEARNED = {
    "fall": "Falls risk assessed on admission; beds kept at their lowest at night; call bells within reach.",
    "medication": "Allergies read aloud at the second check; the chart's allergy banner is checked before drawing up.",
    "pressure_injury": "Skin assessed on admission and daily; turning charts audited weekly.",
    "patient_identification": "Samples labelled at the bedside only, after checking the wristband with the patient.",
    "infection": "Cannula sites checked every shift and the cannula resited by 72 hours.",
}
FACTORS = {"fall": ["patient", "environment"], "medication": ["staff", "communication"],
           "pressure_injury": ["staff", "organisation"], "patient_identification": ["staff", "environment"],
           "infection": ["staff"]}


def demo_principal(slug: str, who: str = "safety") -> Principal:
    return demo_author(DEMO_NAMESPACE, slug, who, "quality_manager" if who == "quality" else "nurse")


def generate_incident_demo(db: Database, slug: str, seed: int = 2026, as_of: dt.datetime | None = None) -> dict:
    """Write facility `slug`'s demo incidents (see the module docstring); nothing if it has any report already.
    Returns what was written: reports, and review events by kind."""
    reporter, manager = demo_principal(slug), demo_principal(slug, "quality")
    rng = demo_stream("incidents", seed, slug)
    with db.tenant(slug) as conn:
        if conn.execute(sa.select(incident.c.id).limit(1)).first() is not None:
            return {}
        places = conn.execute(sa.select(ward.c.code, ward.c.kind).where(ward.c.active).order_by(ward.c.code)).all()
        wards = [code for code, kind in places if kind in INPATIENT_WARD_KINDS] or [code for code, _ in places]
        if not wards:
            return {}
        now = as_of or conn.execute(sa.select(sa.func.now())).scalar_one()
        counts: dict[str, int] = {"incident": 0}
        for days_ago, kind, outcome, what, done, anonymous, stage in STORIES:
            occurred = now - dt.timedelta(days=days_ago, hours=rng.randint(1, 20), minutes=rng.randint(0, 59))
            reported = occurred + dt.timedelta(minutes=rng.randint(20, 180))
            found = incidents.report(conn, reporter, IncidentIn(
                occurred_at=occurred, ward_code=wards[rng.randrange(len(wards))], incident_type=kind,
                description=what, outcome=outcome, immediate_action=done, anonymous=anonymous), at=reported)
            counts["incident"] += 1
            if stage == "open":
                continue
            step = reported
            events = [ReviewEventIn(kind="contributing_factors", factors=FACTORS[kind]),
                      ReviewEventIn(kind="action", action=LEARNED[kind].split(";")[0],
                                    action_owner="Ward nurse in charge",
                                    action_due=(reported + dt.timedelta(days=30)).date())]
            if stage == "closed":
                events += [ReviewEventIn(kind="severity_confirmed", harm=outcome),
                           ReviewEventIn(kind="closed", note=LEARNED[kind])]
            for event in events:
                step = min(step + dt.timedelta(days=rng.randint(1, 6), hours=rng.randint(0, 8)), now)
                incidents.add_review(conn, manager, found["id"], event, at=step)
                counts[event.kind] = counts.get(event.kind, 0) + 1
        return counts
