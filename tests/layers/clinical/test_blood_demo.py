"""The demo's blood bank and bedside record (appliance/layers/clinical/blood_demo.py,
appliance/layers/nursing/transfusion_demo.py): a stock across components and groups with one expiring, four units
given over the year to grouped adults on no ward now, each of the patient's own group, started, observed and ended
(one stopped for a febrile reaction, its task answered; each checked with a demo nurse's account), today's unit
reserved and today's unit issued to a ward's patient still waiting; a second run writes nothing."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from appliance.layers.clinical import blood, service
from appliance.layers.clinical.blood_demo import PAST_DAYS, STOCK, generate_blood_demo
from appliance.layers.clinical.demo import demo_principal
from appliance.layers.clinical.schemas import EncounterIn, ResultIn
from appliance.layers.nursing.transfusion_demo import generate_transfusion_demo
from appliance.substrate import identity
from appliance.substrate.tenancy import facility_timezone
from tests.layers.clinical.conftest import new_patient
from tests.layers.clinical.test_blood import BLOOD_CONFIG


def test_the_demo_stocks_the_bank_gives_a_years_units_and_leaves_todays_work_once(tenant_factory, db, policy):
    hospital = tenant_factory(name="Demo Blood Hospital", **BLOOD_CONFIG)
    author = demo_principal(hospital.slug)
    with db.tenant(hospital.slug) as conn:
        for n, group in enumerate(("A+", "O-", "B+", "O+", "AB+", "A-", "O+", "B-")):
            patient = new_patient(conn, author, family_name=f"Adult{n}")["id"]
            service.record_result(conn, author, patient, ResultIn(code="882-1", value=group))
            if n >= 6:
                service.open_encounter(conn, author, patient, EncounterIn(
                    encounter_class="inpatient", status="in_progress", ward_code="GEN"))
    # Run as of half past midnight (yesterday's, so always past): today's unit is issued today, not in the two
    # hours before now, which then fell yesterday and the bedside demo transfused it (failed at 00:36 Nairobi).
    zone = facility_timezone(db, hospital.slug)
    early = dt.datetime.combine(dt.datetime.now(zone).date() - dt.timedelta(days=1), dt.time(0, 30), zone)
    written = generate_blood_demo(db, [hospital.slug], hospitals=(hospital.slug,), as_of=early)
    stocked = sum(many for *_, many, _left in STOCK)
    assert written == {"received": stocked, "reserved": len(PAST_DAYS) + 2, "issued": len(PAST_DAYS) + 1}
    assert generate_transfusion_demo(db, policy, hospital.slug, as_of=early) == len(PAST_DAYS)
    today = dt.date.today()
    with db.tenant(hospital.slug) as conn:
        stock = blood.stock(conn, author, today=today)
        given = conn.execute(sa.text(
            "SELECT t.status, t.reaction, t.vitals_15min_id IS NOT NULL AS observed, u.abo, u.rhd, e.patient_id, "
            "t.checked_by_account, t.checked_by "
            "FROM entry e JOIN transfusion t ON t.entry_id = e.id JOIN blood_unit u ON u.unit_number = t.unit_number "
            "WHERE NOT EXISTS (SELECT 1 FROM entry n WHERE n.supersedes = e.id)")).mappings().all()
        groups = {row["patient_id"]: blood.patient_group(conn, row["patient_id"]) for row in given}
        tasks = conn.execute(sa.text(
            "SELECT t.status FROM entry e JOIN nursing_task t ON t.entry_id = e.id WHERE t.source_kind = "
            "'transfusion' AND NOT EXISTS (SELECT 1 FROM entry n WHERE n.supersedes = e.id)")).scalars().all()
        waiting = conn.execute(sa.text(
            "SELECT count(*) FROM blood_unit_event e WHERE e.kind = 'issued' AND NOT EXISTS ("
            "SELECT 1 FROM blood_unit_event t WHERE t.unit_id = e.unit_id AND t.kind = 'transfused')")).scalar()
        on_ward = conn.execute(sa.text(
            "SELECT count(*) FROM blood_unit_event e JOIN encounter en ON en.patient_id = e.patient_id "
            "WHERE e.kind = 'reserved' AND en.ward_code = 'GEN' AND e.recorded_at >= :day"),
            {"day": early - dt.timedelta(minutes=30)}).scalar()
    assert stock["expiring"] >= 2 and stock["grid"]["red_cells"]["O RhD negative"] == 2
    assert sorted((g["status"], g["reaction"], g["observed"]) for g in given) == [
        ("completed", "none", True)] * (len(PAST_DAYS) - 1) + [("stopped", "febrile", True)]
    assert all((g["abo"], g["rhd"]) == (groups[g["patient_id"]]["abo"], groups[g["patient_id"]]["rhd"])
               for g in given)
    assert tasks == ["done"] and waiting == 1 and on_ward == 2
    # Each bedside check named one of the facility's demo nurses by account, never the demo's writer.
    with db.control() as conn:
        nurses = {m["account_id"]: m["name"] for m in identity.staff_of(conn, hospital.slug) if m["role"] == "nurse"}
    assert all(nurses.get(g["checked_by_account"]) == g["checked_by"] for g in given)
    assert generate_blood_demo(db, [hospital.slug], hospitals=(hospital.slug,)) == {
        "received": 0, "reserved": 0, "issued": 0}
    assert generate_transfusion_demo(db, policy, hospital.slug) == 0
