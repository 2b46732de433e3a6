"""The demo's referrals (appliance/layers/clinical/referral_demo.py): along the chain, one of each state per sender,
the patients drawn by the seed, the accepted ones registered at the receiver on the same person, written once."""

from __future__ import annotations

import uuid

import sqlalchemy as sa

from appliance.layers.clinical import referral_demo, service
from appliance.layers.clinical.demo import demo_principal
from appliance.layers.clinical.schemas import ConditionIn, PatientIn
from tests.layers.clinical.conftest import CLINICAL_CONFIG


def adults_with_a_problem(db, slug: str, n: int) -> None:
    principal = demo_principal(slug)
    with db.tenant(slug) as conn:
        for i in range(n):
            made = service.register_patient(conn, principal, PatientIn.model_validate({
                "family_name": f"Demo{i}", "given_names": "Referred", "birth_date": "1970-01-01", "sex": "male",
                "identifiers": [{"system": "national_id", "value": uuid.uuid4().hex[:10]}]}))
            service.add_condition(conn, principal, made["id"], ConditionIn(code="I10"))


def test_one_referral_in_each_state_per_sender_written_once(db, tenant_factory):
    chain = [tenant_factory(name=name, **CLINICAL_CONFIG).slug for name in ("Demo HC", "Demo DH", "Demo RH")]
    for slug in chain[:2]:
        adults_with_a_problem(db, slug, len(referral_demo.PLAN))
    pairs = ((chain[0], chain[1]), (chain[1], chain[2]))
    drawn = referral_demo._referred(db, chain[0], 2026, len(referral_demo.PLAN))
    counts = referral_demo.generate_referral_demo(db, chain, chain=pairs)
    assert counts == {"sent": 4, "accepted": 2, "declined": 2, "completed": 2, "withdrawn": 2}
    with db.control() as conn:
        rows = conn.execute(sa.text("SELECT from_tenant, from_patient, status, to_patient FROM control.referral "
                                    "WHERE from_tenant = ANY(:s)"), {"s": chain}).all()
    assert {r.from_patient for r in rows if r.from_tenant == chain[0]} == set(drawn)  # the seed's draw
    with db.tenant(chain[1]) as conn:
        registered = set(conn.execute(sa.text("SELECT id FROM patient WHERE subject_id IS NOT NULL")).scalars())
    assert {r.to_patient for r in rows if r.from_tenant == chain[0] and r.to_patient} <= registered
    assert referral_demo.generate_referral_demo(db, chain, chain=pairs) == {}
