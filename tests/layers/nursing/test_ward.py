"""A ward's view of the record, at the service level: who is on the ward (with the bed the operations
layer gave them), what the worklist puts first, what the handover carries, and when a shift starts."""

from __future__ import annotations

import datetime as dt

from appliance.layers.nursing import service, ward
from appliance.layers.nursing.schemas import CarePlanIn
from tests.layers.nursing.conftest import HIGH, NORMAL, TZ, admit, vitals

GEN = {"code": "GEN", "name": "General ward"}


def test_an_admitted_patient_is_on_the_worklist_in_her_bed_and_discharge_clears_her_tasks(db, facility, nurse):
    from appliance.layers.operations import adt  # the operations layer writes admissions; read here as a user would

    with db.tenant(facility.slug) as conn:
        patient = admit(conn, nurse, ward=None, encounter_class="outpatient", family="Zawadi")
        admitted = adt.admit(conn, nurse, patient["id"], ward_code="GEN", reason="Cellulitis")
        listed = ward.worklist(conn, nurse, GEN, now=dt.datetime.now(dt.UTC), tz=TZ)
        mine = next(p for p in listed["patients"] if p["patient_id"] == patient["id"])
        assert mine["bed_code"] == admitted["bed_code"]
        assert [t["code"] for t in mine["tasks"]] == ["admission_assessment"]
        adt.discharge(conn, nurse, patient["id"], disposition="home")
        assert service.tasks_of(conn, [patient["id"]], open_only=True) == []
        [cancelled] = service.tasks_of(conn, [patient["id"]])
        assert (cancelled["status"], cancelled["note"]) == ("cancelled", "patient discharged")
        listed = ward.worklist(conn, nurse, GEN, now=dt.datetime.now(dt.UTC), tz=TZ)
        assert patient["id"] not in [p["patient_id"] for p in listed["patients"]]


def test_the_worklist_orders_by_risk_then_overdue_observations(db, tenant_factory, nurse):
    config = tenant_factory(name="Ward ordering", wards=[{"code": "GEN", "name": "General ward", "beds": 5}])
    with db.tenant(config.slug) as conn:
        calm = admit(conn, nurse, family="Amani")
        medium = admit(conn, nurse, family="Baraka")
        high = admit(conn, nurse, family="Chausiku")
        vitals(conn, nurse, calm, NORMAL)
        vitals(conn, nurse, medium, NORMAL | {"respiratory_rate": 22, "heart_rate_bpm": 115,
                                              "temperature_c": "38.5"})
        vitals(conn, nurse, high, HIGH)
        later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=13)  # every set is overdue by then
        listed = ward.worklist(conn, nurse, {"code": "GEN", "name": "General ward"}, now=later, tz=TZ)
    assert [p["name"].split(",")[0] for p in listed["patients"]] == ["CHAUSIKU", "BARAKA", "AMANI"]
    assert listed["escalations"] == 2
    assert all(p["observations_overdue"] for p in listed["patients"])


def test_the_handover_carries_the_shift(db, facility, nurse, clinician):
    with db.tenant(facility.slug) as conn:  # two transactions: two moments (now() is the transaction's)
        patient = admit(conn, nurse, family="Dalmas")
        vitals(conn, nurse, patient, NORMAL)
    with db.tenant(facility.slug) as conn:
        vitals(conn, nurse, patient, HIGH)
        service.add_care_plan(conn, nurse, patient["id"], CarePlanIn(
            problem="Breathlessness", goal="SpO2 ≥ 94 % on air", interventions=["Sit upright", "Oxygen as prescribed"]))
        now = dt.datetime.now(dt.UTC)
        summary = ward.handover_summary(conn, nurse, GEN, now=now, tz=TZ, shift_start=now - dt.timedelta(hours=1),
                                        shift_end=now + dt.timedelta(hours=1))
        kept = ward.record_handover(conn, nurse, GEN, now=now, tz=TZ, shift_start=None, shift_end=None,
                                    note="Dalmas needs a medical review")
        [recent] = [h for h in ward.recent_handovers(conn, nurse, "GEN", limit=1)]
    mine = next(p for p in summary["patients"] if p["patient_id"] == patient["id"])
    assert mine["news2"] == {"latest": 9, "latest_risk": "high", "worst_in_shift": 9, "sets_in_shift": 2,
                             "trend": "rising", "exclusion": None}
    assert mine["care_plans"] == [{"problem": "Breathlessness", "goal": "SpO2 ≥ 94 % on air", "evaluation": None}]
    assert recent["id"] == kept["id"] and recent["note"] == "Dalmas needs a medical review"
    assert str(patient["id"]) in {p["patient_id"] for p in recent["summary"]}


def test_shifts_run_seven_to_seven_in_facility_time():
    day = dt.datetime(2026, 11, 26, 9, 0, tzinfo=TZ)
    assert ward.current_shift(day, TZ) == (dt.datetime(2026, 11, 26, 7, tzinfo=TZ), dt.datetime(2026, 11, 26, 19,
                                                                                                 tzinfo=TZ))
    evening = dt.datetime(2026, 11, 26, 23, 0, tzinfo=TZ)
    assert ward.current_shift(evening, TZ) == (dt.datetime(2026, 11, 26, 19, tzinfo=TZ),
                                               dt.datetime(2026, 11, 27, 7, tzinfo=TZ))
    small_hours = dt.datetime(2026, 11, 27, 3, 0, tzinfo=TZ)
    assert ward.current_shift(small_hours, TZ) == ward.current_shift(evening, TZ)
