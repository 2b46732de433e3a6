"""The demo population: deterministic from its seed, realistic enough to exercise every read, and
written through the record so the chart, search and history work on it like on any data."""

import datetime as dt
import random
import uuid
import zoneinfo
from pathlib import Path

import pytest
import sqlalchemy as sa

from appliance.layers.clinical import access, chart, delivery, immunization, service
from appliance.layers.clinical.demo import (
    IMAGING_STAGED_FOR,
    demo_principal,
    discharge_time,
    generate_demo_population,
)
from appliance.layers.clinical.immunization_schedule import load_schedule
from appliance.layers.operations.demo import NEWBORN_ALONGSIDE, generate_operations_demo
from appliance.substrate.age import months_on
from appliance.substrate.db import Database
from appliance.substrate.principal import Principal
from appliance.substrate.tenancy import drop_tenant
from tests.layers.clinical.conftest import CLINICAL_CONFIG
from tests.layers.operations.conftest import OPERATIONS_CONFIG

AS_OF = dt.date(2026, 11, 25)
POLICIES = Path(__file__).parents[3] / "policies" / "immunization.toml"
END = dt.datetime.combine(AS_OF, dt.time(17), dt.UTC)  # the demo's "now" on that day
PATIENTS = 200


@pytest.fixture(scope="module")
def year(db: Database, tenant_factory):
    """One demo year that most tests here read, written once (each test wrote its own, ~40 s of the suite): a
    facility with the clinical catalogue, a general ward and a maternity ward (so its mothers deliver), under a
    fixed slug, since the demo's draws depend on the seed and the slug. Tests only read it, but for the operations
    demo the births test adds, which writes no clinical row the tests before it read."""
    wards = [{"code": "GEN", "name": "General ward", "kind": "inpatient", "beds": 10},
             {"code": "MAT", "name": "Maternity", "kind": "maternity", "beds": 30}]
    config = tenant_factory(slug="demo_year", **CLINICAL_CONFIG, wards=wards)
    return config, generate_demo_population(db, config.slug, seed=4, patients=PATIENTS, as_of=AS_OF)


def snapshot(db: Database, slug: str) -> dict:
    with db.tenant(slug) as conn:
        return {
            "patients": conn.execute(sa.text(
                "SELECT id, mrn, family_name, given_names, birth_date FROM patient ORDER BY id")).all(),
            "kinds": conn.execute(sa.text("SELECT kind, count(*) FROM entry GROUP BY kind ORDER BY kind")).all(),
            # Entries are recorded when written down in the demo's past and charges posted then; what falls
            # after the demo's end (its last hours' results) is recorded, and charged, when generated.
            "entries": conn.execute(sa.text(
                "SELECT id, kind, CASE WHEN kind <> 'charge' OR occurred_at <= :end THEN occurred_at END, "
                "CASE WHEN recorded_at <= :end THEN recorded_at END FROM entry ORDER BY id"), {"end": END}).all(),
        }


def test_same_seed_same_population(db: Database, tenant_factory):
    config = tenant_factory(slug="demo_determinism", **CLINICAL_CONFIG)
    counts = generate_demo_population(db, config.slug, seed=11, patients=40, as_of=AS_OF)
    first = snapshot(db, config.slug)
    drop_tenant(db, config.slug)
    tenant_factory(slug="demo_determinism", **CLINICAL_CONFIG)
    generate_demo_population(db, config.slug, seed=11, patients=40, as_of=AS_OF)
    assert snapshot(db, config.slug) == first
    assert counts["patient"] == 40 and counts["encounter"] >= 40
    # A second run on a populated facility adds nothing (`healthos up --demo` runs it at each start).
    assert generate_demo_population(db, config.slug, seed=11, patients=40, as_of=AS_OF) == {}
    assert snapshot(db, config.slug) == first


def test_the_population_is_a_realistic_year_of_care(db: Database, year):
    config, counts = year
    assert counts["patient"] >= PATIENTS  # and the babies born in it: counted in the births test
    for kind in ("encounter", "vital_signs", "condition", "medication_request", "service_request", "result",
                 "result_signoff", "note"):
        assert counts[kind] > 50, kind
    with db.tenant(config.slug) as conn:
        span = conn.execute(sa.text("SELECT min(started_at), max(started_at) FROM encounter")).one()
        classes = dict(conn.execute(sa.text("SELECT encounter_class, count(*) FROM encounter GROUP BY 1")).all())
        flags = dict(conn.execute(sa.text("SELECT coalesce(flag, '-'), count(*) FROM result GROUP BY 1")).all())
        sexes = dict(conn.execute(sa.text("SELECT sex, count(*) FROM patient GROUP BY 1")).all())
        # An adult's weight, visit to visit, over the year: their own, not a new person's each time.
        weight_spans = conn.execute(sa.text(
            "SELECT max(v.weight_kg) - min(v.weight_kg) FROM vital_signs v JOIN entry e ON e.id = v.entry_id "
            "JOIN patient p ON p.id = e.patient_id WHERE p.birth_date < :adult GROUP BY e.patient_id "
            "HAVING count(*) > 1"), {"adult": AS_OF - dt.timedelta(days=19 * 366)}).scalars().all()
        # A child of 6-59 months is screened for acute malnutrition on arriving (not at each ward round).
        sets = conn.execute(sa.text(
            "SELECT p.birth_date, e.occurred_at, v.muac_mm, v.oedema, v.consciousness IS NOT NULL AS round "
            "FROM vital_signs v JOIN entry e ON e.id = v.entry_id JOIN patient p ON p.id = e.patient_id")).all()
        # Finished means ended by the demo's end; an encounter still going then is in progress.
        misdated = conn.execute(sa.text(
            "SELECT count(*) FROM encounter WHERE (status = 'finished' AND (ended_at IS NULL OR ended_at > :end)) "
            "OR (status = 'in_progress' AND ended_at IS NOT NULL)"), {"end": END}).scalar()
        unsafe = conn.execute(sa.text(
            "SELECT count(*) FROM medication_request m JOIN entry e ON e.id = m.entry_id "
            "WHERE m.allergy_override_reason IS NULL AND EXISTS (SELECT 1 FROM allergy a JOIN entry ae "
            "ON ae.id = a.entry_id WHERE ae.patient_id = e.patient_id AND lower(m.drug) LIKE "
            "'%' || lower(a.substance) || '%')")).scalar()
        # A chronic drug prescribed again at a follow-up is a refill: one active prescription per drug.
        doubled = conn.execute(sa.text(
            "SELECT count(*) FROM (SELECT e.patient_id, m.drug FROM medication_request m JOIN entry e "
            "ON e.id = m.entry_id WHERE m.status = 'active' GROUP BY 1, 2 HAVING count(*) > 1) d")).scalar()
        refilled = conn.execute(sa.text(
            "SELECT count(*) FROM (SELECT e.patient_id, m.drug FROM medication_request m JOIN entry e "
            "ON e.id = m.entry_id WHERE m.duration_days IS NULL GROUP BY 1, 2 HAVING count(*) > 1) r")).scalar()
    assert doubled == 0 and refilled > 0
    assert (AS_OF - span[0].date()).days > 200 and span[1].date() <= AS_OF
    assert classes["outpatient"] > classes.get("inpatient", 0) > 0
    assert flags.get("N", 0) > 0 and (flags.get("H", 0) + flags.get("L", 0) + flags.get("A", 0)) > 0
    assert set(sexes) == {"female", "male"}
    assert unsafe == 0  # the generator never prescribes a drug the patient is recorded allergic to
    assert misdated == 0
    assert len(weight_spans) > 20 and max(weight_spans) < 5, sorted(weight_spans)[-5:]
    zone = zoneinfo.ZoneInfo(config.timezone)
    screened = [s.muac_mm for s in sets if s.muac_mm is not None]
    assert all((s.muac_mm is not None) == (not s.round and 6 <= months_on(s.birth_date, s.occurred_at.astimezone(
        zone).date()) <= 59) for s in sets)
    assert all(s.oedema is False for s in sets if s.muac_mm is not None)
    assert len(screened) > 20 and any(m < 125 for m in screened) and any(m >= 125 for m in screened)
    # Children under five have their vaccines by the schedule: most counting, some due and not given with a
    # reason, and defaulters on the list of children due or overdue (a vaccinator has someone to trace).
    with db.tenant(config.slug) as conn:
        doses = dict(conn.execute(sa.text("SELECT status, count(*) FROM immunization GROUP BY 1")).all())
        owed = immunization.due_list(conn, demo_principal(config.slug), schedule=load_schedule(POLICIES),
                                     today=AS_OF, tz=zone)
    assert doses["completed"] > 100 and 0 < doses["not_done"] < doses["completed"] / 10, doses
    assert owed["counts"]["overdue"] > 0 and len(owed["children"]) < counts["patient"] / 3, owed["counts"]


def test_inpatients_go_home_at_ward_discharge_hours(db: Database, year):
    config, _ = year
    with db.tenant(config.slug) as conn:
        hours = conn.execute(sa.text(
            "SELECT extract(hour FROM ended_at AT TIME ZONE 'Africa/Nairobi') FROM encounter "
            "WHERE encounter_class = 'inpatient' AND status = 'finished'")).scalars().all()
    assert len(hours) > 20 and all(8 <= hour < 18 for hour in hours)
    assert any(hour < 12 for hour in hours) and any(hour >= 12 for hour in hours)


def test_about_a_third_of_discharges_fall_before_noon():
    # ~31 discharges in a 200-patient demo are too few to pin a proportion (5 of 31 is 2 sd from 35%),
    # so the hour weights are checked on many draws: before noon is 35% ± 0.75 points (1 sd) at n = 4,000.
    zone = zoneinfo.ZoneInfo("Africa/Nairobi")
    timing = random.Random(8)
    admitted = dt.datetime(2026, 3, 1, 9, tzinfo=dt.UTC)
    local = [discharge_time(timing, zone, admitted, days=3).astimezone(zone) for _ in range(4000)]
    assert {at.date() for at in local} == {dt.date(2026, 3, 4)}
    assert all(8 <= at.hour < 18 for at in local)
    assert 0.30 <= sum(1 for at in local if at.hour < 12) / len(local) <= 0.40


def test_the_wards_last_observations_are_hours_before_the_moment_the_demo_stands_at(db: Database, tenant_factory):
    """Started at 22:30 UTC, as the operations and nursing demos are: the people in the wards had their last
    observations in the four hours before. The population stopped at 17:00 UTC whatever the hour, so from
    then on the wards' sets were up to seven hours older than the other demos' now, and overdue."""
    moment = END + dt.timedelta(hours=5, minutes=30)
    config = tenant_factory(slug="demo_moment", **OPERATIONS_CONFIG)  # beds: some of the 30 are in one now
    generate_demo_population(db, config.slug, seed=5, patients=30, as_of=moment)
    with db.tenant(config.slug) as conn:
        latest = conn.execute(sa.text("SELECT max(occurred_at) FROM entry WHERE kind = 'vital_signs'")).scalar()
    assert moment - dt.timedelta(hours=4) <= latest <= moment


def test_demo_patients_open_like_any_chart(db: Database, year):
    config, _ = year
    reader = demo_principal(config.slug, "reader")
    with db.tenant(config.slug) as conn:
        busiest = conn.execute(sa.text(
            "SELECT patient_id FROM encounter GROUP BY patient_id ORDER BY count(*) DESC, patient_id LIMIT 1")).scalar()
        summary = chart.chart_summary(conn, reader, busiest)
        found = service.search_patients(conn, reader, name=summary["patient"]["family_name"])
    assert summary["encounters"] and summary["patient"]["identifiers"]
    assert busiest in [r["id"] for r in found]


def test_the_demo_patient_gets_results_the_portal_holds_back(db: Database, tenant_factory):
    """An HIV test (given in person) and a chest X-ray (shown later), reviewed today; a facility that does
    not offer HIV tests gets the X-ray only."""
    from pathlib import Path

    from appliance.layers.clinical.demo import generate_release_demo
    from appliance.layers.patient.release import load_release_rules, release
    from tests.e2e.history import CLINICAL_CONFIG as IMAGING_CONFIG
    from tests.layers.clinical.conftest import new_patient
    from tests.web.test_me_release import HIV

    rules = load_release_rules(Path(__file__).resolve().parents[3] / "policies" / "release.toml")
    offering = tenant_factory(**{**IMAGING_CONFIG, "catalogue": [*IMAGING_CONFIG["catalogue"], HIV]})
    without = tenant_factory(**IMAGING_CONFIG)
    for config, expected in ((offering, ["68961-2", "36643-5"]), (without, ["36643-5"])):
        with db.tenant(config.slug) as conn:
            patient_id = new_patient(conn, demo_principal(config.slug))["id"]
        assert generate_release_demo(db, config.slug, patient_id) == expected
        with db.tenant(config.slug) as conn:
            reviewed = [dict(row) for row in conn.execute(sa.text(
                "SELECT r.code, s.occurred_at AS signed_at FROM result r JOIN entry e ON e.id = r.entry_id "
                "JOIN result_signoff so ON so.result_id = r.entry_id JOIN entry s ON s.id = so.entry_id "
                "WHERE e.patient_id = :p"), {"p": patient_id}).mappings()]
        held = release(reviewed, rules, dt.datetime.now(dt.UTC))
        assert held.shown == [] and held.in_person == expected.count("68961-2")
        assert [result["code"] for result, _ in held.later] == ["36643-5"]


def test_mothers_in_the_maternity_ward_delivered_and_their_babies_are_registered(db: Database, year):
    """Each delivery of the demo (the maternity ward's women after a delivery) names its babies' charts, each a
    "Baby of <family>" born on the day of the birth with the mother its next of kin and its birth weight; the
    same seed gives the same births."""
    config, counts = year
    zone = zoneinfo.ZoneInfo(config.timezone)
    reader = demo_principal(config.slug, "reader")
    with db.tenant(config.slug) as conn:
        rows = conn.execute(sa.text(
            "SELECT x.patient_id, d.born_at, d.babies, p.family_name, p.given_names, x.encounter_id "
            "FROM entry x JOIN delivery d ON d.entry_id = x.id JOIN patient p ON p.id = x.patient_id")).all()
        babies = [(row, baby) for row in rows for baby in row.babies]
        assert rows and counts["delivery"] == len(rows) and counts["patient"] == PATIENTS + sum(
            1 for _, baby in babies if baby["patient_id"])
        for row, baby in babies:
            assert row.encounter_id is not None and row.born_at <= END
            assert isinstance(baby["weight_g"], int)  # whole grams: a mother read '3,240.0 g' of her baby
            if baby["patient_id"] is None:
                assert baby["outcome"] != "live_birth" and baby["apgar_1"] is None
                continue
            chart_of = service.patient_of(conn, baby["patient_id"])
            assert chart_of["family_name"] == row.family_name and chart_of["given_names"].startswith("Baby")
            assert chart_of["birth_date"] == row.born_at.astimezone(zone).date() and chart_of["sex"] == baby["sex"]
            assert chart_of["next_of_kin"][0]["relationship"] == "mother"
            assert delivery.born_to(conn, chart_of["id"])["mother_id"] == row.patient_id
            weight = conn.execute(sa.text("SELECT weight_kg FROM vital_signs WHERE entry_id = :e"),
                                  {"e": baby["weight_entry_id"]}).scalar()
            assert weight == delivery.kilograms(baby["weight_g"])
        read = delivery.read(conn, reader, rows[0].patient_id)
    assert read["deliveries"][0]["babies"] and all(2 <= b["apgar_1"] <= 10 for _, b in babies if b["apgar_1"])
    assert {b["outcome"] for _, b in babies} >= {"live_birth"}

    # Each live-born baby lies in its mother's bed: an encounter alongside hers and no bed of its own; once the
    # operations demo gives her a maternity bed, on her ward, whose nurses open its chart without breaking the glass.
    generate_operations_demo(db, config.slug, seed=7, days_back=1, as_of=END)
    with db.tenant(config.slug) as conn:
        placed = conn.execute(sa.text(
            "SELECT (b->>'patient_id')::uuid AS baby, s.ward_code FROM entry x JOIN delivery d ON d.entry_id = x.id "
            "CROSS JOIN jsonb_array_elements(d.babies) b JOIN inpatient_stay s ON s.encounter_id = x.encounter_id "
            "WHERE b->>'patient_id' IS NOT NULL AND s.discharged_at IS NULL")).all()
        assert placed
        for baby_id, ward in placed:
            assert [tuple(e) for e in conn.execute(sa.text(
                "SELECT e.status, e.ward_code, e.reason, s.id FROM encounter e LEFT JOIN inpatient_stay s "
                "ON s.encounter_id = e.id WHERE e.patient_id = :p"), {"p": baby_id})] == [
                ("in_progress", ward, delivery.BORN_HERE, None)]
            midwife = Principal(account_id=uuid.uuid4(), kind="staff", display_name="Midwife", tenant=config.slug,
                                role="nurse", ward=ward, ward_scoped=True)
            assert access.has_care_relationship(conn, midwife, baby_id)
    assert NEWBORN_ALONGSIDE == delivery.BORN_HERE  # the operations layer reads the clinical layer's reason by value


def test_imaging_orders_have_an_indication_their_study_performed_and_the_newest_each_worklist_state(
        db: Database, year):
    """Every imaging order of the demo says why it was asked for and has its study performed before its report;
    of the last days' orders the newest awaits its study, the next is performed and waiting for its report, the
    next is reported and waiting for the clinician's sign-off, so the imaging worklist shows each state."""
    config, counts = year
    with db.tenant(config.slug) as conn:
        orders = conn.execute(sa.text("""
            SELECT o.id, o.occurred_at AS ordered_at, sr.clinical_info,
                   (SELECT array_agg(p.occurred_at) FROM specimen_receipt r JOIN entry p ON p.id = r.entry_id
                     WHERE r.service_request_id = o.id AND p.kind = 'imaging_performed') AS performed,
                   (SELECT min(re.occurred_at) FROM result v JOIN entry re ON re.id = v.entry_id
                     WHERE v.service_request_id = o.id) AS reported,
                   (SELECT count(*) FROM result v JOIN result_signoff so ON so.result_id = v.entry_id
                     WHERE v.service_request_id = o.id) AS signed
            FROM entry o JOIN service_request sr ON sr.entry_id = o.id WHERE sr.category = 'imaging'
            ORDER BY o.occurred_at DESC, o.id DESC""")).all()
    assert len(orders) > 20 and all(o.clinical_info for o in orders)
    assert counts["imaging_performed"] == sum(len(o.performed or []) for o in orders)
    for o in orders:  # one study, after the order, before its report and the demo's moment
        assert o.performed is None or (len(o.performed) == 1 and o.ordered_at <= o.performed[0] <= END
                                       and (o.reported is None or o.performed[0] <= o.reported)), o
        assert o.reported is None or o.performed, o  # nothing reported that was not performed
    states = {"awaiting_study" if not o.performed else "performed" if o.reported is None
              else "reported" if o.signed == 0 else "signed_off"
              for o in orders if o.ordered_at > END - IMAGING_STAGED_FOR}
    assert states >= {"awaiting_study", "performed", "reported"}, states
