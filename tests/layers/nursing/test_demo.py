"""The nursing demo over a facility the clinical and operations demos filled: the patients in the wards at
the demo's moment have their admission assessments done and the last day's doses recorded, once."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

import sqlalchemy as sa

from appliance.layers.clinical.demo import demo_principal, generate_demo_population
from appliance.layers.clinical.schemas import VitalSignsIn
from appliance.layers.nursing import fluid, service
from appliance.layers.nursing.demo import generate_nursing_demo
from appliance.layers.operations import adt
from appliance.layers.operations.demo import generate_operations_demo
from appliance.substrate import record
from appliance.substrate.principal import Principal
from tests.layers.nursing.conftest import NORMAL, NURSING_CONFIG, admit
from tests.layers.operations.conftest import OPERATIONS_CONFIG

AS_OF = dt.datetime(2026, 6, 30, 17, 0, tzinfo=dt.UTC)


def test_the_wards_have_their_assessments_done_and_the_days_doses_recorded(db, tenant_factory):
    # A fixed slug: the demo's streams depend on it, so what is asserted holds the same every run.
    wards = [w | {"beds": 8} if w["code"] == "MAT" else w for w in OPERATIONS_CONFIG["wards"]]
    config = tenant_factory(slug="demo_nursing", **{**OPERATIONS_CONFIG, "wards": wards})
    generate_demo_population(db, config.slug, seed=6, patients=160, as_of=AS_OF.date())
    generate_operations_demo(db, config.slug, seed=6, days_back=20, as_of=AS_OF)
    with db.tenant(config.slug) as conn:  # a glucose ordered on the ward three hours before the moment
        on_ward = conn.execute(sa.text("SELECT patient_id, encounter_id FROM inpatient_stay "
                                       "WHERE discharged_at IS NULL AND ward_code <> 'MAT' LIMIT 1")).one()
        record.append(conn, demo_principal(config.slug), "service_request", patient_id=on_ward.patient_id,
                      encounter_id=on_ward.encounter_id, occurred_at=AS_OF - dt.timedelta(hours=3),
                      detail={"category": "lab", "code": "2345-7", "display": "Glucose", "priority": "routine",
                              "status": "active", "clinical_info": None, "order_set": None})
        # Prescriptions written two minutes before their first dose is due (15:00): a dose given "a
        # little early" must still not be before the prescription was written.
        for stay in conn.execute(sa.text("SELECT patient_id, encounter_id FROM inpatient_stay WHERE discharged_at "
                                         "IS NULL AND ward_code <> 'MAT' ORDER BY patient_id LIMIT 8")).all():
            record.append(conn, demo_principal(config.slug), "medication_request", patient_id=stay.patient_id,
                          encounter_id=stay.encounter_id, occurred_at=AS_OF - dt.timedelta(hours=2, minutes=2),
                          detail={"drug": "Paracetamol", "dose": Decimal(1000), "dose_unit": "mg", "route": "oral",
                                  "frequency": "every 6 hours", "duration_days": 3, "status": "active",
                                  "instructions": None, "allergy_override_reason": None, "order_set": None})
    counts = generate_nursing_demo(db, config.slug, seed=6, as_of=AS_OF)
    assert counts["admission_assessment"] > 0 and counts["given"] > counts["held"] + counts["refused"]
    assert counts["observations_scheduled"] > 0
    assert generate_nursing_demo(db, config.slug, seed=6, as_of=AS_OF) == {}  # written once
    # The inpatients' diet orders for the kitchen's list: a diabetic, a renal, one nil by mouth awaiting theatre.
    with db.tenant(config.slug) as conn:
        diets = dict(conn.execute(sa.text("SELECT diet, count(*) FROM diet_order GROUP BY diet")).all())
    assert counts["diet_orders"] == sum(diets.values()) > 0
    assert (diets.get("diabetic"), diets.get("renal"), diets.get("npo")) == (1, 1, 1), diets
    with db.tenant(config.slug) as conn:
        overdue = conn.execute(sa.text(
            "SELECT count(*) FROM nursing_task t JOIN entry e ON e.id = t.entry_id WHERE t.code = "
            "'admission_assessment' AND t.status = 'open' AND t.due_at < :as_of AND NOT EXISTS "
            "(SELECT 1 FROM entry n WHERE n.supersedes = e.id)"), {"as_of": AS_OF}).scalar()
        # A ward patient's specimen is taken within 100 minutes of the order; the order waits for the lab.
        untaken = conn.execute(sa.text(
            "SELECT count(*) FROM nursing_task t JOIN entry e ON e.id = t.entry_id "
            "JOIN inpatient_stay s ON s.patient_id = e.patient_id AND s.discharged_at IS NULL "
            "WHERE t.code = 'collect_specimen' AND t.status = 'open' AND e.occurred_at < :taken_by "
            "AND NOT EXISTS (SELECT 1 FROM entry n WHERE n.supersedes = e.id)"),
            {"taken_by": AS_OF - dt.timedelta(minutes=100)}).scalar()
        # An escalation is answered by a review within 50 minutes; the patient stays escalated by the score.
        unanswered = conn.execute(sa.text(
            "SELECT count(*) FROM nursing_task t JOIN entry e ON e.id = t.entry_id "
            "WHERE t.code = 'escalation' AND t.status = 'open' AND e.occurred_at < :answered_by "
            "AND NOT EXISTS (SELECT 1 FROM entry n WHERE n.supersedes = e.id)"),
            {"answered_by": AS_OF - dt.timedelta(minutes=50)}).scalar()
        # Everyone on a ward with a NEWS2 has their next observations as a task.
        unscheduled = conn.execute(sa.text(
            "SELECT count(DISTINCT e.patient_id) FROM news2 n JOIN entry e ON e.id = n.entry_id "
            "JOIN inpatient_stay s ON s.patient_id = e.patient_id AND s.discharged_at IS NULL "
            "WHERE NOT EXISTS (SELECT 1 FROM nursing_task t JOIN entry te ON te.id = t.entry_id "
            "WHERE te.patient_id = e.patient_id AND t.code = 'observations' AND t.status = 'open' "
            "AND NOT EXISTS (SELECT 1 FROM entry n2 WHERE n2.supersedes = te.id))")).scalar()
        # The women in the maternity ward: delivered or in pregnancy, so their sets are scored by MEOWS
        # (some triggering), never by NEWS2, and their next observations are scheduled too.
        mothers = conn.execute(sa.text(
            "SELECT s.patient_id, (SELECT count(*) FROM news2 n JOIN entry ne ON ne.id = n.entry_id "
            " WHERE ne.encounter_id = s.encounter_id) AS news2, "
            "(SELECT array_agg(m.risk) FROM meows m JOIN entry me ON me.id = m.entry_id "
            " WHERE me.encounter_id = s.encounter_id) AS meows, "
            "EXISTS (SELECT 1 FROM nursing_task t JOIN entry te ON te.id = t.entry_id WHERE te.patient_id = "
            " s.patient_id AND t.code = 'observations' AND t.status = 'open') AS scheduled "
            "FROM inpatient_stay s WHERE s.ward_code = 'MAT' AND s.discharged_at IS NULL")).all()
        # A score says what its set holds: none scored as complete from a set missing a parameter.
        inconsistent = conn.execute(sa.text(
            "SELECT (SELECT count(*) FROM news2 n JOIN vital_signs v ON v.entry_id = n.vital_signs_id "
            " WHERE n.missing = '[]' AND (v.consciousness IS NULL OR v.supplemental_oxygen IS NULL)) + "
            "(SELECT count(*) FROM meows m JOIN vital_signs v ON v.entry_id = m.vital_signs_id "
            " WHERE m.missing = '[]' AND v.consciousness IS NULL)")).scalar()
        doses = conn.execute(sa.text(
            "SELECT a.outcome, a.scheduled_for, a.administered_at, a.reason, s.admitted_at "
            "FROM medication_administration a JOIN entry e ON e.id = a.entry_id "
            "JOIN inpatient_stay s ON s.patient_id = e.patient_id AND s.discharged_at IS NULL")).all()
        # Three adults on a fluid chart; one oliguric, found at its last measurement, its escalation open.
        charted = conn.execute(sa.text("SELECT DISTINCT e.patient_id FROM fluid f JOIN entry e ON e.id = f.entry_id"
                                       )).scalars().all()
        oliguria = conn.execute(sa.text(
            "SELECT e.patient_id FROM nursing_task t JOIN entry e ON e.id = t.entry_id WHERE t.code = 'escalation' "
            "AND t.source_kind = 'fluid' AND t.status = 'open' "
            "AND NOT EXISTS (SELECT 1 FROM entry n WHERE n.supersedes = e.id)")).scalars().all()
        rates = {pid: fluid.rate_now(fluid.lines_of(conn, [pid], AS_OF - dt.timedelta(days=1)),
                                     fluid.latest_weights(conn, [pid]).get(pid)) for pid in charted}
    assert counts["fluid_charts"] == len(charted) == 3
    assert len(oliguria) == 1 and [pid for pid, rate in rates.items() if rate.oliguric] == oliguria
    assert all(rate.judged for rate in rates.values())
    assert overdue == 0 and unscheduled == 0 and inconsistent == 0 and untaken == 0 and unanswered == 0
    assert counts["escalations_answered"] > 0
    assert counts["specimens_taken"] > 0
    assert mothers and all(m.news2 == 0 and len(m.meows) == 2 and m.scheduled for m in mothers)
    assert {risk for m in mothers for risk in m.meows} >= {"clear", "triggered"}, mothers
    assert doses and all(d.scheduled_for >= d.admitted_at and d.scheduled_for <= AS_OF - dt.timedelta(hours=1)
                         for d in doses)
    assert all((d.outcome == "given") == (d.administered_at is not None and d.reason is None) for d in doses)
    assert all(d.administered_at is None or d.administered_at < AS_OF for d in doses)


def test_observations_are_scheduled_from_the_newest_score_of_any_kind(db, tenant_factory):
    """A 16-year-old's PEWS from when he was 15 beat his NEWS2 of yesterday: the demo merged the kinds with
    PEWS last, and scheduled his observations from April, overdue for months."""
    config = tenant_factory(**NURSING_CONFIG)
    now = dt.datetime.now(dt.UTC)
    born = now.date().replace(year=now.year - 17) + dt.timedelta(days=300)  # turned 16 about two months ago
    nurse = Principal(account_id=uuid.uuid4(), kind="staff", display_name="Nurse", tenant=config.slug, role="nurse")
    with db.tenant(config.slug) as conn:
        teen = admit(conn, nurse, born=born, ward=None)
        detail = VitalSignsIn.model_validate(NORMAL).model_dump(exclude={"encounter_id"})
        for taken in (now - dt.timedelta(days=150), now - dt.timedelta(days=1)):  # a PEWS at 15, a NEWS2 at 16
            record.append(conn, nurse, "vital_signs", patient_id=teen["id"], encounter_id=teen["encounter_id"],
                          occurred_at=taken, detail=detail)
        # Scored before he was on a ward, as the clinical demo's sets are: the demo schedules them.
        adt.admit(conn, nurse, teen["id"], ward_code="GEN", reason="Appendicectomy")
    generate_nursing_demo(db, config.slug, as_of=now)
    with db.tenant(config.slug) as conn:
        [task] = service.tasks_of(conn, [teen["id"]], open_only=True, codes=["observations"])
        [news2] = service.scores_of(conn, [teen["id"]])
    assert task["title"].startswith("Observations due (last NEWS2") and task["due_at"] == news2["next_due_at"]
