"""The demo's ART clinic (appliance/layers/clinical/hiv_demo.py), six people of its twelve (each person is some
eight audited writes, and the stories are the first three): the adults diagnosed with HIV disease first, suppressed
but for one unsuppressed, one interrupted and one transferred out, ART numbers in sequence; a second run writes
nothing."""

from __future__ import annotations

import datetime as dt
import uuid

from appliance.layers.clinical import hiv, service
from appliance.layers.clinical.demo import demo_principal
from appliance.layers.clinical.hiv_demo import PROGRAMME_FILE, generate_hiv_demo
from appliance.layers.clinical.schemas import ConditionIn
from tests.layers.clinical.conftest import new_patient

PEOPLE = 6


def test_the_demo_starts_people_on_art_with_one_of_each_story_once(tenant_factory, db):
    hospital = tenant_factory(name="Demo ART Hospital")
    author = demo_principal(hospital.slug)
    with db.tenant(hospital.slug) as conn:
        for n in range(PEOPLE):
            new_patient(conn, author, family_name=f"Adult{n}", identifiers=[
                {"system": "national_id", "value": uuid.uuid4().hex[:10]}])
        diagnosed = new_patient(conn, author, family_name="Diagnosed", identifiers=[
            {"system": "national_id", "value": uuid.uuid4().hex[:10]}])
        service.add_condition(conn, author, diagnosed["id"], ConditionIn(code="B20.0", verification="confirmed"))
        new_patient(conn, author, family_name="Child", birth_date=dt.date.today() - dt.timedelta(days=900))
    today = dt.date(2026, 11, 27)
    assert generate_hiv_demo(db, [hospital.slug], as_of=today, hospitals=(hospital.slug,), people=PEOPLE) == {
        hospital.slug: PEOPLE}
    with db.tenant(hospital.slug) as conn:
        listed = hiv.register(conn, author, programme=hiv.load_programme(PROGRAMME_FILE), today=today)
    people = listed["people"]
    assert [p["art_number"] for p in people] == [f"ART-{n:05d}" for n in range(1, PEOPLE + 1)]
    names = {p["patient"]["family_name"] for p in people}
    assert "Diagnosed" in names and "Child" not in names
    assert (listed["counts"]["active"], listed["counts"]["iit"], listed["counts"]["transferred_out"]) == (
        PEOPLE - 2, 1, 1)
    assert [p["unsuppressed"] for p in people].count(True) == 1
    suppressed = [p for p in people if p["last_viral_load"] and not p["unsuppressed"]]
    assert suppressed and all(p["last_viral_load"]["copies_per_ml"] < 1000 for p in suppressed)
    assert generate_hiv_demo(db, [hospital.slug], as_of=today, hospitals=(hospital.slug,), people=PEOPLE) == {}
