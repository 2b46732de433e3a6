"""The demo's referrals (`healthos up --demo`): patients sent up the demo's referral chain, the health centre to the
district hospital and the district hospital to the referral hospital, one in each state (two still waiting, an
emergency and a routine one; accepted, with the person registered at the hospital from the letter; declined with a
reason; completed with the feedback; withdrawn), so "Referrals received" and "Referrals sent" have something to show
at every step. Who is referred and why is drawn from a stream fixed by the seed and the facility (adults of the
demo population with an active problem); the referrals go through the same service a clinician's do
(`referral.send`, `.accept`...), written by the clinical demo's principal of each facility. Skipped where the sender
already holds a demo referral, and between facilities that are not both present.
"""

from __future__ import annotations

import uuid

import sqlalchemy as sa

from appliance.layers.clinical import referral, service
from appliance.layers.clinical.demo import demo_principal
from appliance.layers.clinical.schemas import ReferralFeedbackIn, ReferralIn
from appliance.substrate import record
from appliance.substrate.db import Database
from appliance.substrate.demo import demo_stream

# Sender, receiver: the demo facilities' referral chain (tenants/).
DEMO_CHAIN = (("hillview_hc", "lakeshore_district"), ("lakeshore_district", "riverside_referral"))
# What happens to each of a sender's demo referrals, in order: the urgency, then what the receiver does.
PLAN = (("emergency", None), ("routine", None), ("urgent", "accept"), ("routine", "decline"),
        ("urgent", "complete"), ("routine", "withdraw"))
REASONS = {
    "emergency": ("Suspected ectopic pregnancy: abdominal pain, positive test, low blood pressure",
                  "Pain for 6 hours, pulse 118, BP 86/50; IV line and fluids started, nil by mouth."),
    "urgent": ("Blood pressure uncontrolled on two drugs, with headaches",
               "BP 184/112 on amlodipine and hydrochlorothiazide for three months; no chest pain; fundi not seen."),
    "routine": ("Review of a chronic problem not improving at this level",
                "Seen four times this year; treated per the national guideline without the expected response."),
}
DECLINED = "Manage at your level per the national guideline; refer again if there are danger signs"
FEEDBACK = {"findings": "Seen in the medical clinic; hypertensive, no end-organ damage on examination or tests",
            "treatment": "Started losartan 50 mg daily; creatinine and potassium normal",
            "advice": "Recheck blood pressure in 2 weeks; refer again if above 160/100 on three drugs"}
WITHDRAWN = "The patient chose to attend another hospital nearer their family"


def _sent_before(db: Database, slug: str) -> bool:
    with db.tenant(slug) as conn:
        return conn.execute(sa.select(record.entry.c.id).where(
            record.entry.c.kind == "referral", record.entry.c.author_id == demo_principal(slug).account_id,
        ).limit(1)).first() is not None


# Adults (18 and over) with an active problem in force, in MRN order: what the seed's stream draws from.
_CANDIDATES = sa.text(
    "SELECT p.id FROM patient p WHERE p.birth_date <= current_date - interval '18 years' AND EXISTS ("
    " SELECT 1 FROM entry e JOIN condition c ON c.entry_id = e.id WHERE e.patient_id = p.id"
    " AND c.clinical_status = 'active' AND NOT EXISTS (SELECT 1 FROM entry s WHERE s.supersedes = e.id))"
    " ORDER BY p.mrn")


def _referred(db: Database, slug: str, seed: int, count: int) -> list[uuid.UUID]:
    """Adults of the facility with an active problem, drawn by the seed's stream."""
    with db.tenant(slug) as conn:
        candidates = list(conn.execute(_CANDIDATES).scalars())
    return demo_stream("referral", seed, slug).sample(candidates, min(count, len(candidates)))


def generate_referral_demo(db: Database, slugs: list[str], seed: int = 2026,
                           chain: tuple[tuple[str, str], ...] = DEMO_CHAIN) -> dict[str, int]:
    """The demo referrals between the facilities of `slugs` along `chain`; how many in each state were written."""
    counts: dict[str, int] = {}
    for sender, receiver in chain:
        if sender not in slugs or receiver not in slugs or _sent_before(db, sender):
            continue
        referring, answering = demo_principal(sender), demo_principal(receiver)
        to = referral.destination(db, sender, receiver)
        for patient_id, (urgency, outcome) in zip(_referred(db, sender, seed, len(PLAN)), PLAN, strict=False):
            service.subject_of(db, sender, referring, patient_id)  # a demo chart may not be linked yet
            reason, summary = REASONS[urgency]
            with db.tenant(sender) as conn:
                items = referral.letter_items(conn, referring, patient_id)
                sent = referral.send(conn, referring, patient_id, ReferralIn(
                    to_tenant=receiver, urgency=urgency, reason=reason, summary=summary,
                    problem_ids=[i["id"] for i in items["problems"]], allergy_ids=[i["id"] for i in items["allergies"]],
                    medication_ids=[i["id"] for i in items["medications"]]), to)
            if outcome == "withdraw":
                with db.tenant(sender) as conn:
                    referral.withdraw(conn, referring, sent["id"], WITHDRAWN)
            elif outcome in {"accept", "complete"}:
                referral.accept(db, receiver, answering, sent["id"])
                if outcome == "complete":
                    with db.tenant(receiver) as conn:
                        referral.give_feedback(conn, answering, sent["id"], ReferralFeedbackIn(**FEEDBACK))
            elif outcome == "decline":
                with db.tenant(receiver) as conn:
                    referral.decline(conn, answering, sent["id"], DECLINED)
            state = {"accept": "accepted", "decline": "declined", "complete": "completed",
                     "withdraw": "withdrawn"}.get(outcome or "", "sent")
            counts[state] = counts.get(state, 0) + 1
    return counts
