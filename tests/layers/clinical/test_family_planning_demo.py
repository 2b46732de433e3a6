"""The demo's family planning clinic (appliance/layers/clinical/family_planning_demo.py): nineteen visits across the
year at a facility, through the service a nurse's do, so its clients due list has a woman due this week and one
overdue; the same clients from the same seed, and a second run writes nothing."""

from __future__ import annotations

import datetime as dt
import zoneinfo

from appliance.layers.clinical import family_planning
from appliance.layers.clinical.demo import demo_principal
from appliance.layers.clinical.family_planning_demo import PROGRAMME_FILE, generate_family_planning_demo
from appliance.layers.clinical.family_planning_policy import load_programme
from tests.layers.clinical.conftest import new_patient


def test_the_demo_writes_a_year_of_visits_once_and_the_due_list_has_clients(tenant_factory, db):
    clinic = tenant_factory(name="Demo Family Planning Clinic")
    author = demo_principal(clinic.slug)
    today = dt.date(2026, 11, 27)
    with db.tenant(clinic.slug) as conn:
        for n in range(10):
            new_patient(conn, author, family_name=f"Woman{n}", sex="female", birth_date=dt.date(1996, 1, 1 + n))
        new_patient(conn, author, family_name="Man", sex="male", birth_date=dt.date(1985, 5, 5))
        new_patient(conn, author, family_name="Girl", sex="female", birth_date=dt.date(2016, 5, 5))
    assert generate_family_planning_demo(db, [clinic.slug], as_of=today, facilities=(clinic.slug,)) == 19
    utc = zoneinfo.ZoneInfo("UTC")
    with db.tenant(clinic.slug) as conn:
        due = family_planning.due_list(conn, author, programme=load_programme(PROGRAMME_FILE), today=today, tz=utc)
        clients = {r["patient_id"] for r in family_planning.current_visits(conn, None)}
        names = {r["family_name"] for r in conn.exec_driver_sql(
            "SELECT family_name FROM patient WHERE id = ANY(%s)", ([str(c) for c in clients],)).mappings()}
    assert due["counts"] == {"due": 1, "overdue": 1}
    assert [(c["method"], c["state"], c["due_on"]) for c in due["clients"]] == [
        ("DMPA_IM", "overdue", today - dt.timedelta(days=9)), ("DMPA_SC", "due", today + dt.timedelta(days=3))]
    assert len(clients) == 9 and "Man" in names and "Girl" not in names
    assert generate_family_planning_demo(db, [clinic.slug], as_of=today, facilities=(clinic.slug,)) == 0
