"""The demo's operating theatre (appliance/layers/clinical/surgery_demo.py): at a hospital with theatres, one case in
each state around today (completed yesterday with its note and charge, one in theatre, scheduled today and tomorrow,
one cancelled with its reason), drawn from its adults, and a second run writes nothing."""

from __future__ import annotations

import datetime as dt
import uuid

import sqlalchemy as sa

from appliance.layers.clinical.demo import demo_principal
from appliance.layers.clinical.surgery_demo import generate_surgery_demo
from tests.layers.clinical.conftest import new_patient
from tests.layers.clinical.test_surgery import THEATRE_CONFIG


def test_the_demo_books_a_case_in_each_state_once(tenant_factory, db):
    hospital = tenant_factory(name="Demo Theatre Hospital", **{
        **THEATRE_CONFIG, "procedures": [{"code": c, "name": n} for c, n in (
            ("APPX", "Appendicectomy"), ("HERNIA", "Inguinal hernia repair"), ("LAPAROTOMY", "Laparotomy"),
            ("ID", "Incision and drainage"))]})
    author = demo_principal(hospital.slug)
    with db.tenant(hospital.slug) as conn:
        for n in range(6):
            new_patient(conn, author, family_name=f"Adult{n}", identifiers=[
                {"system": "national_id", "value": uuid.uuid4().hex[:10]}])
        new_patient(conn, author, family_name="Child", birth_date=dt.date.today() - dt.timedelta(days=900))
    written = generate_surgery_demo(db, [hospital.slug], hospitals=(hospital.slug,))
    assert written == {"completed": 1, "in_theatre": 1, "scheduled": 2, "cancelled": 1}
    with db.tenant(hospital.slug) as conn:
        cases = conn.execute(sa.text(
            "SELECT s.status, s.cancel_reason IS NOT NULL AS why, p.family_name FROM entry e "
            "JOIN surgery s ON s.entry_id = e.id JOIN patient p ON p.id = e.patient_id "
            "WHERE NOT EXISTS (SELECT 1 FROM entry n WHERE n.supersedes = e.id)"
        )).all()
        charged = conn.execute(sa.text("SELECT item_code, status FROM charge WHERE source_kind = 'surgery'")).all()
        notes = conn.execute(sa.text("SELECT count(*) FROM operation_note")).scalar()
    assert "Child" not in {c.family_name for c in cases}
    assert sorted((c.status, c.why) for c in cases) == [("cancelled", True), ("completed", False),
                                                         ("in_theatre", False), ("scheduled", False),
                                                         ("scheduled", False)]
    assert [tuple(c) for c in charged] == [("APPX", "posted")] and notes == 1
    # Every moment a case shows has passed, and each phase was said before the move it allows: Sign In before into
    # theatre, Time Out after it, Sign Out before completed.
    with db.tenant(hospital.slug) as conn:
        moments = conn.execute(sa.text(
            "SELECT s.status, s.started_at, s.ended_at, (s.checklist->'sign_in'->>'at')::timestamptz AS sign_in, "
            "(s.checklist->'time_out'->>'at')::timestamptz AS time_out, "
            "(s.checklist->'sign_out'->>'at')::timestamptz AS sign_out FROM entry e "
            "JOIN surgery s ON s.entry_id = e.id WHERE s.status IN ('in_theatre', 'completed') "
            "AND NOT EXISTS (SELECT 1 FROM entry n WHERE n.supersedes = e.id)")).mappings().all()
    now = dt.datetime.now(dt.UTC)
    for case in moments:
        assert case["sign_in"] < case["started_at"] < case["time_out"] <= now, case
        if case["status"] == "completed":
            assert case["time_out"] < case["sign_out"] < case["ended_at"] <= now, case
    assert generate_surgery_demo(db, [hospital.slug], hospitals=(hospital.slug,)) == {}
