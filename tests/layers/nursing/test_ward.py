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
        vitals(conn, nurse, patient, NORMAL)  # at the clinic, before the admission: no ward's schedule
        admitted = adt.admit(conn, nurse, patient["id"], ward_code="GEN", reason="Cellulitis")
        listed = ward.worklist(conn, nurse, GEN, now=dt.datetime.now(dt.UTC) + dt.timedelta(hours=13), tz=TZ)
        mine = next(p for p in listed["patients"] if p["patient_id"] == patient["id"])
        assert mine["bed_code"] == admitted["bed_code"] and mine["news2"]["total"] == 0
        # The clinic's set schedules nothing on the ward; the ward takes its first set on arrival.
        assert mine["observations_due_at"] == admitted["admitted_at"] and mine["observations_overdue"]
        assert sorted(t["code"] for t in mine["tasks"]) == ["admission_assessment", "observations"]
        adt.discharge(conn, nurse, patient["id"], disposition="home")
        assert service.tasks_of(conn, [patient["id"]], open_only=True) == []
        cancelled = service.tasks_of(conn, [patient["id"]])
        assert [(t["status"], t["note"]) for t in cancelled] == [("cancelled", "patient discharged")] * 2
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


def test_a_dose_given_late_across_the_shift_boundary_is_handed_over_by_the_shift_that_gave_it(
        db, facility, clinician, nurse):
    from decimal import Decimal

    from appliance.layers.nursing.schemas import AdministrationIn
    from appliance.substrate import record

    def at(day: int, hour: int, minute: int = 0) -> dt.datetime:
        return dt.datetime(2026, 11, day, hour, minute, tzinfo=TZ)

    now = at(21, 10, 30)
    with db.tenant(facility.slug) as conn:
        patient = admit(conn, clinician, family="Ekirapa")
        rx = record.append(conn, clinician, "medication_request", patient_id=patient["id"], occurred_at=at(20, 7),
                           encounter_id=patient["encounter_id"], detail={
                               "drug": "Ceftriaxone", "dose": Decimal(1), "dose_unit": "g", "route": "IV",
                               "frequency": "once daily", "duration_days": 3, "status": "active",
                               "instructions": None, "allergy_override_reason": None, "order_set": None})
        # Yesterday's 08:00 dose, charted as given at 01:29 in the night shift; today's 08:00 on time.
        for slot, given_at in ((at(20, 8), at(21, 1, 29)), (at(21, 8), at(21, 8, 5))):
            service.record_administration(conn, nurse, patient["id"], AdministrationIn.model_validate({
                "medication_request_id": rx.id, "scheduled_for": slot, "outcome": "given", "administered_at": given_at,
                "reason": "IV access lost on the day shift" if slot == at(20, 8) else None}), now=now, tz=TZ)
        shifts = {name: ward.handover_summary(conn, nurse, GEN, now=now, tz=TZ, shift_start=start, shift_end=end)
                  for name, start, end in (("day 20", at(20, 7), at(20, 19)), ("night", at(20, 19), at(21, 7)),
                                           ("day 21", at(21, 7), at(21, 19)))}
    doses = {name: next(p for p in s["patients"] if p["patient_id"] == patient["id"])["doses"]
             for name, s in shifts.items()}
    assert doses["night"] == [{"drug": "Ceftriaxone 1 g IV", "scheduled_for": at(20, 8), "given_at": at(21, 1, 29),
                               "state": "given_late", "minutes_late": 17 * 60 + 29,
                               "reason": "IV access lost on the day shift"}]
    # The day shift it was due in handed it over as late, not given: nothing was given in that shift.
    assert [(d["scheduled_for"], d["state"], d["given_at"]) for d in doses["day 20"]] == [(at(20, 8), "late", None)]
    assert [(d["scheduled_for"], d["state"], d["given_at"]) for d in doses["day 21"]] == [
        (at(21, 8), "given", at(21, 8, 5))]
