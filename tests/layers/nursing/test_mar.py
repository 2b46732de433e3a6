"""The medication administration record: doses scheduled from the prescriptions, each dose's outcome
with its reason and time, late flags, and what the record refuses."""

from __future__ import annotations

import dataclasses
import datetime as dt
from decimal import Decimal

import pytest
import sqlalchemy as sa

from appliance.layers.clinical import service as clinical
from appliance.layers.nursing import service
from appliance.layers.nursing.errors import Conflict, Invalid
from appliance.layers.nursing.schemas import AdministrationIn
from appliance.substrate import record
from tests.layers.nursing.conftest import TZ, admit


def at(day: int, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime(2026, 11, day, hour, minute, tzinfo=TZ)


NOW = at(21, 10, 30)
PRESCRIBED = at(20, 7)
WINDOW = {"window_start": at(20, 0), "window_end": at(22, 0), "now": NOW, "tz": TZ}


def prescribe(conn, principal, patient, frequency: str, *, start: dt.datetime = PRESCRIBED, days: int | None = 3,
              drug: str = "Amoxicillin", dose: int = 500) -> record.Entry:
    """A prescription written at `start` (appended directly: the clinical route writes "now")."""
    return record.append(conn, principal, "medication_request", patient_id=patient["id"], occurred_at=start,
                         encounter_id=patient["encounter_id"], detail={
                             "drug": drug, "dose": Decimal(dose), "dose_unit": "mg", "route": "oral",
                             "frequency": frequency, "duration_days": days, "status": "active", "instructions": None,
                             "allergy_override_reason": None, "order_set": None})


def give(conn, principal, patient, data: dict) -> dict:
    return service.record_administration(conn, principal, patient["id"], AdministrationIn.model_validate(data),
                                         now=NOW, tz=TZ)


def test_doses_outcomes_and_late_flags(db, facility, clinician, nurse):
    with db.tenant(facility.slug) as conn:
        patient = admit(conn, clinician)
        rx = prescribe(conn, clinician, patient, "twice daily")
        on_time = give(conn, nurse, patient, {"medication_request_id": rx.id, "scheduled_for": at(20, 8),
                                              "outcome": "given", "administered_at": at(20, 8, 10)})
        late = give(conn, nurse, patient, {"medication_request_id": rx.id, "scheduled_for": at(20, 20),
                                           "outcome": "given", "administered_at": at(20, 21, 30),
                                           "reason": "patient in theatre"})
        held = give(conn, nurse, patient, {"medication_request_id": rx.id, "scheduled_for": at(22, 8),
                                           "outcome": "held", "reason": "nil by mouth for surgery"})
        chart = service.mar(conn, nurse, patient["id"], **WINDOW | {"window_end": at(22, 12)})
    assert (on_time["minutes_late"], late["minutes_late"]) == (None, 90)
    assert on_time["dose"] == Decimal(500) and on_time["drug"] == "Amoxicillin"
    assert held["administered_at"] is None and held["reason"] == "nil by mouth for surgery"
    [line] = chart["lines"]
    assert line["regimen"] == "BD" and line["scheduled"]
    states = [(d["scheduled_for"].astimezone(TZ).strftime("%d %H"), d["state"], d["late"]) for d in line["doses"]]
    assert states == [("20 08", "given", False), ("20 20", "given_late", True), ("21 08", "late", True),
                      ("21 20", "due", False), ("22 08", "held", False)]
    assert chart["late"] == 1


def test_a_dose_given_is_a_record_entry_for_billing(db, facility, clinician, nurse):
    with db.tenant(facility.slug) as conn:
        patient = admit(conn, clinician)
        rx = prescribe(conn, clinician, patient, "once daily")
        given = give(conn, nurse, patient, {"medication_request_id": rx.id, "scheduled_for": at(21, 8),
                                            "outcome": "given", "administered_at": at(21, 8, 5)})
        stored = record.get_entry(conn, given["id"])
    assert stored.kind == "medication_administration" and stored.author_id == nurse.account_id
    assert stored.occurred_at == at(21, 8, 5) and stored.encounter_id == patient["encounter_id"]
    assert stored.detail["medication_request_id"] == rx.root_id and stored.detail["outcome"] == "given"


@pytest.mark.parametrize(("data", "error", "field"), [
    ({"scheduled_for": at(20, 9), "outcome": "given", "administered_at": at(20, 9)}, Invalid, "scheduled_for"),
    ({"scheduled_for": at(21, 20), "outcome": "missed", "reason": "asleep"}, Invalid, "outcome"),
    ({"scheduled_for": at(21, 20), "outcome": "given", "administered_at": at(21, 10)}, Invalid, "administered_at"),
    ({"scheduled_for": at(21, 8), "outcome": "given", "administered_at": at(21, 12)}, Invalid, "administered_at"),
    ({"outcome": "given"}, Invalid, "scheduled_for"),
    ({"scheduled_for": at(21, 8), "outcome": "given", "administered_at": at(21, 8), "dose": 250}, Invalid, "reason"),
])
def test_what_the_mar_refuses(db, facility, clinician, nurse, data, error, field):
    with db.tenant(facility.slug) as conn:
        patient = admit(conn, clinician)
        rx = prescribe(conn, clinician, patient, "BD")
        with pytest.raises(error) as refused:
            give(conn, nurse, patient, {"medication_request_id": rx.id} | data)
    assert refused.value.extra["field"] == field


def test_not_given_needs_a_reason():
    with pytest.raises(ValueError, match="say why the dose was refused"):
        AdministrationIn.model_validate({"medication_request_id": "7d0e3d1e-3b4c-4a39-9d8e-0d2f5f0c8a11",
                                         "scheduled_for": at(21, 8), "outcome": "refused"})


def test_one_outcome_per_dose_until_withdrawn(db, facility, clinician, nurse, policy):
    with db.tenant(facility.slug) as conn:
        patient = admit(conn, clinician)
        rx = prescribe(conn, clinician, patient, "BD")
        first = give(conn, nurse, patient, {"medication_request_id": rx.id, "scheduled_for": at(21, 8),
                                            "outcome": "refused", "reason": "nauseated"})
        with pytest.raises(Conflict, match="already recorded as refused"):
            give(conn, nurse, patient, {"medication_request_id": rx.id, "scheduled_for": at(21, 8),
                                        "outcome": "given", "administered_at": at(21, 9)})
        # Withdrawn by the nurse who recorded it, holding her role's permissions as her route would (ACC-035).
        author = dataclasses.replace(nurse, permissions=policy.permissions_of("nurse"))
        service.retract_administration(conn, author, patient["id"], first["id"], "recorded against the wrong dose")
        again = give(conn, nurse, patient, {"medication_request_id": rx.id, "scheduled_for": at(21, 8),
                                            "outcome": "given", "administered_at": at(21, 9)})
        [line] = service.mar(conn, nurse, patient["id"], **WINDOW)["lines"]
    assert again["outcome"] == "given"
    assert [d["state"] for d in line["doses"] if d["scheduled_for"] == at(21, 8)] == ["given"]


def test_a_missed_dose_is_recorded_with_its_reason(db, facility, clinician, nurse):
    with db.tenant(facility.slug) as conn:
        patient = admit(conn, clinician)
        rx = prescribe(conn, clinician, patient, "every 8 hours")
        missed = give(conn, nurse, patient, {"medication_request_id": rx.id, "scheduled_for": at(21, 6),
                                             "outcome": "missed", "reason": "patient off the ward for CT"})
        [line] = service.mar(conn, nurse, patient["id"], **WINDOW)["lines"]
    assert missed["outcome"] == "missed" and missed["dose"] is None
    assert [(d["scheduled_for"].astimezone(TZ).strftime("%d %H"), d["state"]) for d in line["doses"]] == [
        ("20 14", "late"), ("20 22", "late"), ("21 06", "missed"), ("21 14", "due"), ("21 22", "due")]


def test_as_needed_doses_are_recorded_as_given_without_a_slot(db, facility, clinician, nurse):
    with db.tenant(facility.slug) as conn:
        patient = admit(conn, clinician)
        rx = prescribe(conn, clinician, patient, "every 6 hours as needed", drug="Paracetamol", dose=1000)
        given = give(conn, nurse, patient, {"medication_request_id": rx.id, "outcome": "given",
                                            "administered_at": at(21, 3), "reason": "pain 6/10"})
        with pytest.raises(Invalid, match="only a dose given"):
            give(conn, nurse, patient, {"medication_request_id": rx.id, "outcome": "held", "reason": "asleep"})
        with pytest.raises(Invalid, match="no dose scheduled"):
            give(conn, nurse, patient, {"medication_request_id": rx.id, "scheduled_for": at(21, 6),
                                        "outcome": "given", "administered_at": at(21, 6)})
        [line] = service.mar(conn, nurse, patient["id"], **WINDOW)["lines"]
    assert (line["scheduled"], line["doses"], [u["id"] for u in line["unscheduled"]]) == (False, [], [given["id"]])


def test_a_stopped_prescription_stops_its_doses(db, facility, clinician, nurse):
    with db.tenant(facility.slug) as conn:
        patient = admit(conn, clinician)
        rx = prescribe(conn, clinician, patient, "BD", days=None)
        stopped = clinical.change_medication_status(conn, clinician, patient["id"], rx.id, "stopped", "rash")
        stopped_at = conn.execute(sa.select(record.entry.c.occurred_at)
                                  .where(record.entry.c.id == stopped["id"])).scalar()
        lines = service.mar_lines(conn, [patient["id"]], window_start=at(20, 0),
                                  window_end=stopped_at + dt.timedelta(days=3), now=NOW, tz=TZ)
    [line] = lines
    assert line["status"] == "stopped" and line["ends_at"] == stopped_at
    assert all(d["scheduled_for"] < stopped_at for d in line["doses"])


def test_an_unknown_prescription_is_refused(db, facility, clinician, nurse):
    with db.tenant(facility.slug) as conn:
        patient = admit(conn, clinician)
        other = admit(conn, clinician, family="Njoroge")
        rx = prescribe(conn, clinician, other, "BD")
        with pytest.raises(Invalid, match="no prescription") as refused:
            give(conn, nurse, patient, {"medication_request_id": rx.id, "scheduled_for": at(21, 8),
                                        "outcome": "given", "administered_at": at(21, 8)})
    assert refused.value.extra["field"] == "medication_request_id"


def test_two_nurses_recording_one_dose_at_once_record_it_once(db, facility, clinician, nurse):
    """The second waits for the first (an advisory lock on the dose), then finds its entry: 409."""
    import threading

    with db.tenant(facility.slug) as conn:
        patient = admit(conn, clinician)
        rx = prescribe(conn, clinician, patient, "BD")
    first_wrote, release = threading.Event(), threading.Event()
    outcomes: dict[str, object] = {}

    def first() -> None:
        with db.tenant(facility.slug) as conn:
            outcomes["first"] = give(conn, nurse, patient, {"medication_request_id": rx.id, "scheduled_for": at(21, 8),
                                                            "outcome": "given", "administered_at": at(21, 8, 2)})
            first_wrote.set()
            release.wait(10)

    def second() -> None:
        first_wrote.wait(10)
        try:
            with db.tenant(facility.slug) as conn:
                give(conn, nurse, patient, {"medication_request_id": rx.id, "scheduled_for": at(21, 8),
                                            "outcome": "given", "administered_at": at(21, 8, 3)})
        except Conflict as exc:
            outcomes["second"] = exc

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    first_wrote.wait(10)
    threads[1].join(1.0)
    assert threads[1].is_alive(), "the second nurse did not wait for the first"
    release.set()
    for thread in threads:
        thread.join(15)
    assert isinstance(outcomes.get("second"), Conflict)
    with db.tenant(facility.slug) as conn:
        recorded = service.administrations_of(conn, [rx.root_id])
    assert [r["id"] for r in recorded] == [outcomes["first"]["id"]]
