"""The demo's TB register (appliance/layers/clinical/tb_demo.py): six cases across the year at the district hospital,
the adults diagnosed with pulmonary TB first, each outcome the WHO rules allow (cured with its smears), two on
treatment, numbered in the register in sequence; the same cases from the same seed, and a second run writes
nothing."""

from __future__ import annotations

import datetime as dt
import uuid

import sqlalchemy as sa

from appliance.layers.clinical import service
from appliance.layers.clinical.demo import demo_principal
from appliance.layers.clinical.schemas import ConditionIn
from appliance.layers.clinical.tb_demo import generate_tb_demo
from tests.layers.clinical.conftest import new_patient


def test_the_demo_registers_six_cases_across_the_year_once(tenant_factory, db):
    hospital = tenant_factory(name="Demo TB Hospital")
    author = demo_principal(hospital.slug)
    with db.tenant(hospital.slug) as conn:
        for n in range(8):
            new_patient(conn, author, family_name=f"Adult{n}", identifiers=[
                {"system": "national_id", "value": uuid.uuid4().hex[:10]}])
        diagnosed = new_patient(conn, author, family_name="Coughing", identifiers=[
            {"system": "national_id", "value": uuid.uuid4().hex[:10]}])
        service.add_condition(conn, author, diagnosed["id"], ConditionIn(code="A15.0", verification="confirmed"))
        new_patient(conn, author, family_name="Child", birth_date=dt.date.today() - dt.timedelta(days=900))
    today = dt.date(2026, 11, 27)
    written = generate_tb_demo(db, [hospital.slug], as_of=today, hospital=hospital.slug)
    assert written == {"cured": 1, "treatment_completed": 1, "died": 1, "lost_to_follow_up": 1, "on_treatment": 2}
    with db.tenant(hospital.slug) as conn:
        cases = conn.execute(sa.text(
            "SELECT t.register_number, t.started_on, t.outcome, p.family_name FROM entry e "
            "JOIN tb_treatment t ON t.entry_id = e.id JOIN patient p ON p.id = e.patient_id "
            "WHERE NOT EXISTS (SELECT 1 FROM entry n WHERE n.supersedes = e.id) ORDER BY t.started_on")).all()
        smears = conn.execute(sa.text("SELECT count(*) FROM tb_follow_up WHERE smear = 'negative'")).scalar()
    assert [(c.started_on, c.outcome) for c in cases] == [
        (today - dt.timedelta(days=330), "cured"), (today - dt.timedelta(days=300), "treatment_completed"),
        (today - dt.timedelta(days=270), "died"), (today - dt.timedelta(days=240), "lost_to_follow_up"),
        (today - dt.timedelta(days=100), None), (today - dt.timedelta(days=45), None)]
    assert [c.register_number for c in cases] == [f"2026/{n:04d}" for n in range(1, 7)]
    assert "Coughing" in {c.family_name for c in cases} and "Child" not in {c.family_name for c in cases}
    assert smears == 5
    assert generate_tb_demo(db, [hospital.slug], as_of=today, hospital=hospital.slug) == {}
