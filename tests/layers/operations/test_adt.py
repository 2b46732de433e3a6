"""ADT, the emergency department and scheduling against a real tenant schema: the rules each act keeps,
what it leaves on the record and the projections, and (acceptance 3) placements under concurrency:
20 parallel admissions for 10 beds place exactly 10; parallel bookings of one slot book it once."""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa

from appliance.layers.clinical import service as clinical
from appliance.layers.clinical.schemas import EncounterIn
from appliance.layers.operations import adt, deaths, discharge_plan, ed, scheduling, service
from appliance.layers.operations.errors import Conflict, Invalid, NotFound, Refused
from appliance.layers.operations.models import bed, inpatient_stay
from appliance.substrate import record
from appliance.substrate.principal import Principal
from tests.conftest import FACILITY_ZONE
from tests.layers.operations.conftest import OPERATIONS_CONFIG, new_patient


def _patients(db, facility, principal, n: int) -> list[uuid.UUID]:
    with db.tenant(facility.slug) as conn:
        return [new_patient(conn, principal) for _ in range(n)]


def _race(db, slug: str, attempts: list, act) -> list:
    """Run every attempt at once (a barrier releases them together), each in its own transaction."""
    barrier = threading.Barrier(len(attempts))

    def one(argument):
        barrier.wait()
        try:
            with db.tenant(slug) as conn:
                return act(conn, argument)
        except Conflict as exc:
            return exc

    with ThreadPoolExecutor(max_workers=len(attempts)) as pool:
        return list(pool.map(one, attempts))


def _bed_states(db, slug: str, ward: str) -> dict[str, str]:
    with db.tenant(slug) as conn:
        return dict(conn.execute(sa.select(bed.c.code, bed.c.state).where(bed.c.ward_code == ward)).all())


def test_twenty_parallel_admissions_for_ten_beds_place_exactly_ten(db, tenant_factory, bed_manager):
    facility = tenant_factory(wards=[{"code": "GEN", "name": "General", "kind": "inpatient", "beds": 10}])
    patients = _patients(db, facility, bed_manager, 20)
    outcomes = _race(db, facility.slug, patients,
                     lambda conn, patient_id: adt.admit(conn, bed_manager, patient_id, ward_code="GEN"))
    placed = [o for o in outcomes if isinstance(o, dict)]
    refused = [o for o in outcomes if isinstance(o, Conflict)]
    assert len(placed) == 10 and len(refused) == 10
    assert len({o["bed_code"] for o in placed}) == 10
    assert all("no bed is available" in r.detail or "taken" in r.detail for r in refused)
    assert set(_bed_states(db, facility.slug, "GEN").values()) == {"occupied"}
    with db.tenant(facility.slug) as conn:
        admissions = conn.execute(sa.select(sa.func.count()).where(record.entry.c.kind == "admission")).scalar()
        stays = conn.execute(sa.select(sa.func.count()).select_from(inpatient_stay)).scalar()
        inpatient = conn.execute(sa.text("SELECT count(*) FROM encounter WHERE encounter_class = 'inpatient'")).scalar()
    assert admissions == stays == inpatient == 10  # a refused admission left no entry, stay or encounter


def test_twenty_parallel_admissions_to_one_named_bed_place_one(db, tenant_factory, bed_manager):
    facility = tenant_factory(wards=[{"code": "GEN", "name": "General", "kind": "inpatient", "beds": 10}])
    patients = _patients(db, facility, bed_manager, 20)
    outcomes = _race(db, facility.slug, patients, lambda conn, patient_id: adt.admit(
        conn, bed_manager, patient_id, ward_code="GEN", bed_code="GEN-03"))
    assert sum(isinstance(o, dict) for o in outcomes) == 1
    assert all("GEN-03" in o.detail for o in outcomes if isinstance(o, Conflict))


def test_parallel_bookings_of_one_slot_book_it_once(db, facility, bed_manager):
    patients = _patients(db, facility, bed_manager, 12)
    with db.tenant(facility.slug) as conn:
        target = scheduling.slots(conn, "MOPC", dt.date.today() + dt.timedelta(days=3))[0]
    outcomes = _race(db, facility.slug, patients, lambda conn, patient_id: scheduling.book(
        conn, bed_manager, patient_id, target["id"]))
    assert sum(isinstance(o, dict) for o in outcomes) == 1
    assert sum(isinstance(o, Conflict) for o in outcomes) == 11
    with db.tenant(facility.slug) as conn:
        free = {s["id"]: s["free"] for s in scheduling.slots(conn, "MOPC", dt.date.today() + dt.timedelta(days=3))}
        entries = conn.execute(sa.text("SELECT count(*) FROM appointment_change WHERE slot_id = :s"),
                               {"s": target["id"]}).scalar()
    assert free[target["id"]] is False and entries == 1


# -- ADT ----------------------------------------------------------------------------------------------


def test_a_discharge_recorded_as_died_by_mistake_is_corrected_by_a_clinician(db, facility, bed_manager):
    """The bed manager clicked 'died' on the wrong patient: a clinician corrects the discharge to home with a reason,
    a new version at the discharge's own time (the history keeps 'died'), and the patient leaves the deaths to
    certify. The bed manager may not; another patient's stay, or a guessed one, is not found; nothing written."""
    clinician = Principal(account_id=uuid.uuid4(), kind="staff", display_name="Clinician", tenant=facility.slug,
                          role="clinician", permissions=frozenset({"clinical.*"}))
    patient_id, other_id = _patients(db, facility, bed_manager, 2)
    with db.tenant(facility.slug) as conn:
        stay = adt.admit(conn, bed_manager, patient_id, ward_code="GEN")
        died = adt.discharge(conn, bed_manager, patient_id, disposition="died")
        assert deaths.uncertified_death(conn, clinician, patient_id)["encounter_id"] == stay["encounter_id"]
        entries = conn.execute(sa.select(sa.func.count()).select_from(record.entry)).scalar()
        with pytest.raises(Refused):
            deaths.correct_died_departure(conn, bed_manager, patient_id, stay["encounter_id"], disposition="home",
                                          reason="wrong patient")
        for patient, encounter_id in [(other_id, stay["encounter_id"]), (patient_id, uuid.uuid4())]:
            with pytest.raises(NotFound):
                deaths.correct_died_departure(conn, clinician, patient, encounter_id, disposition="home",
                                              reason="wrong patient")
        with pytest.raises(Invalid, match="say why"):
            deaths.correct_died_departure(conn, clinician, patient_id, stay["encounter_id"], disposition="home",
                                          reason=" ")
        with pytest.raises(Invalid, match="one of home"):
            deaths.correct_died_departure(conn, clinician, patient_id, stay["encounter_id"], disposition="died",
                                          reason="wrong patient")
        assert conn.execute(sa.select(sa.func.count()).select_from(record.entry)).scalar() == entries

        corrected = deaths.correct_died_departure(conn, clinician, patient_id, stay["encounter_id"],
                                                  disposition="home", reason="wrong patient's row clicked")
        assert adt.stay_of(conn, stay["id"])["disposition"] == "home"
        versions = record.history(conn, corrected["entry_id"])
        assert [(v.status, v.detail["disposition"]) for v in versions] == [("final", "died"), ("amended", "home")]
        assert versions[1].reason == "wrong patient's row clicked"
        assert versions[1].occurred_at == versions[0].occurred_at == died["discharged_at"]
        assert deaths.uncertified_death(conn, clinician, patient_id) is None
        assert patient_id not in {r["patient_id"] for r in deaths.to_certify(conn, clinician)}


def test_admission_opens_an_inpatient_encounter_and_discharge_finishes_it(db, facility, bed_manager):
    (patient_id,) = _patients(db, facility, bed_manager, 1)
    with db.tenant(facility.slug) as conn:
        stay = adt.admit(conn, bed_manager, patient_id, ward_code="MAT", reason="labour")
        assert stay["bed_code"].startswith("MAT-") and stay["source"] == "direct"
        encounter = conn.execute(sa.text("SELECT encounter_class, status, ward_code FROM encounter WHERE id = :e"),
                                 {"e": stay["encounter_id"]}).one()
        assert tuple(encounter) == ("inpatient", "in_progress", "MAT")
        moved = adt.transfer(conn, bed_manager, patient_id, ward_code="GEN", reason="post-partum care")
        assert moved["ward_code"] == "GEN" and moved["bed_code"].startswith("GEN-")
        ward_now = conn.execute(sa.text("SELECT ward_code FROM encounter WHERE id = :e"),
                                {"e": stay["encounter_id"]}).scalar()
        assert ward_now == "GEN"  # the clinical reaction moved the encounter: care follows the patient
        done = adt.discharge(conn, bed_manager, patient_id, disposition="left_against_advice")
        assert done["disposition"] == "left_against_advice" and done["discharged_at"] is not None
        status, ended = conn.execute(sa.text("SELECT status, ended_at FROM encounter WHERE id = :e"),
                                     {"e": stay["encounter_id"]}).one()
        kinds = [k for (k,) in conn.execute(sa.select(record.entry.c.kind).where(
            record.entry.c.encounter_id == stay["encounter_id"]).order_by(record.entry.c.recorded_at))]
        states = dict(conn.execute(sa.select(bed.c.code, bed.c.state).where(
            bed.c.code.in_([stay["bed_code"], moved["bed_code"]]))).all())
    assert status == "finished" and ended == done["discharged_at"]
    assert {"encounter", "admission", "transfer", "discharge", "encounter_status"} <= set(kinds)
    assert states == {stay["bed_code"]: "cleaning", moved["bed_code"]: "cleaning"}


def test_the_maternity_ward_takes_women_and_newborns_not_men(db, facility, bed_manager):
    with db.tenant(facility.slug) as conn:
        man = new_patient(conn, bed_manager, family_name="Kariuki", given_names="Muriuki", sex="male")
        boy = new_patient(conn, bed_manager, family_name="Wanjiru", given_names="Baby boy", sex="male",
                          birth_date=dt.date.today() - dt.timedelta(days=3))
        before = conn.execute(sa.select(sa.func.count()).select_from(record.entry)).scalar()
    with pytest.raises(Invalid, match="Maternity is a maternity ward, for women and newborns, and this patient is "
                                      "registered as male"), db.tenant(facility.slug) as conn:
        adt.admit(conn, bed_manager, man, ward_code="MAT")
    with db.tenant(facility.slug) as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(record.entry)).scalar() == before
        adt.admit(conn, bed_manager, man, ward_code="GEN")
    with pytest.raises(Invalid, match="registered as male"), db.tenant(facility.slug) as conn:
        adt.transfer(conn, bed_manager, man, ward_code="MAT")  # the bed board's "Transfer to: Maternity" slip
    with db.tenant(facility.slug) as conn:  # a newborn boy lies beside his mother
        assert adt.admit(conn, bed_manager, boy, ward_code="MAT")["ward_code"] == "MAT"
        adt.discharge(conn, bed_manager, boy, disposition="home")
        adt.discharge(conn, bed_manager, man, disposition="home")


def test_a_newborns_age_for_the_maternity_ward_is_counted_on_the_facilitys_calendar(db, tenant_factory, bed_manager):
    """At 01:30 in Nairobi (22:30 UTC the evening before) a boy born 28 days ago by Nairobi's calendar is past the
    neonatal period, though UTC's date makes him 27 days old: the maternity ward refuses him, and takes a boy born a
    day later."""
    nairobi = tenant_factory(name="Nairobi Maternity", timezone="Africa/Nairobi", wards=[
        {"code": "MAT", "name": "Maternity", "kind": "maternity", "beds": 2}])
    now = dt.datetime.now(dt.UTC)
    late_evening = now.replace(hour=22, minute=30, second=0, microsecond=0)
    if late_evening > now:
        late_evening -= dt.timedelta(days=1)
    facility_day = late_evening.date() + dt.timedelta(days=1)  # 01:30 the next day in Nairobi
    principal = Principal(account_id=uuid.uuid4(), kind="staff", display_name="Bed Manager", tenant=nairobi.slug,
                          role="bed_manager")
    with db.tenant(nairobi.slug) as conn:
        past, newborn = (new_patient(conn, principal, family_name="Wanjiru", given_names="Baby boy", sex="male",
                                     birth_date=facility_day - dt.timedelta(days=days)) for days in (28, 27))
    with pytest.raises(Invalid, match="registered as male"), db.tenant(nairobi.slug) as conn:
        adt.admit(conn, principal, past, ward_code="MAT", at=late_evening)
    with db.tenant(nairobi.slug) as conn:
        assert adt.admit(conn, principal, newborn, ward_code="MAT", at=late_evening)["ward_code"] == "MAT"


def test_adt_refusals_leave_nothing_behind(db, facility, bed_manager):
    (patient_id,) = _patients(db, facility, bed_manager, 1)
    with db.tenant(facility.slug) as conn:
        before = conn.execute(sa.select(sa.func.count()).select_from(record.entry)).scalar()
    for attempt, error, text in [
        (dict(ward_code="ED"), Invalid, "not an inpatient ward"),
        (dict(ward_code="NOPE"), Invalid, "no ward NOPE"),
        (dict(ward_code="GEN", bed_code="MAT-01"), Invalid, "no bed MAT-01 in ward GEN"),
        (dict(ward_code="GEN", at=dt.datetime.now(dt.UTC) + dt.timedelta(hours=2)), Invalid, "future"),
        (dict(ward_code="GEN", source="emergency"), Invalid, "names the ED visit"),
        (dict(ward_code="GEN", ed_encounter_id=uuid.uuid4()), NotFound, "no emergency visit"),
    ]:
        with pytest.raises(error, match=text), db.tenant(facility.slug) as conn:
            adt.admit(conn, bed_manager, patient_id, **attempt)
    with pytest.raises(NotFound), db.tenant(facility.slug) as conn:
        adt.admit(conn, bed_manager, uuid.uuid4(), ward_code="GEN")
    with pytest.raises(NotFound, match="not admitted"), db.tenant(facility.slug) as conn:
        adt.discharge(conn, bed_manager, patient_id, disposition="home")
    with db.tenant(facility.slug) as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(record.entry)).scalar() == before
        adt.admit(conn, bed_manager, patient_id, ward_code="GEN")
    with pytest.raises(Conflict, match="already admitted"), db.tenant(facility.slug) as conn:
        adt.admit(conn, bed_manager, patient_id, ward_code="MAT")
    with pytest.raises(Invalid, match="disposition"), db.tenant(facility.slug) as conn:
        adt.discharge(conn, bed_manager, patient_id, disposition="vanished")
    with pytest.raises(Invalid, match="before the admission"), db.tenant(facility.slug) as conn:
        adt.discharge(conn, bed_manager, patient_id, disposition="home",
                      at=dt.datetime.now(dt.UTC) - dt.timedelta(days=2))


def test_bed_states_by_hand_never_empty_an_occupied_bed(db, facility, bed_manager):
    (patient_id,) = _patients(db, facility, bed_manager, 1)
    with db.tenant(facility.slug) as conn:
        stay = adt.admit(conn, bed_manager, patient_id, ward_code="GEN")
    with pytest.raises(Conflict, match="occupied"), db.tenant(facility.slug) as conn:
        service.set_bed_state(conn, bed_manager, stay["bed_code"], "available")
    with pytest.raises(Invalid), db.tenant(facility.slug) as conn:
        service.set_bed_state(conn, bed_manager, "GEN-10", "occupied")
    with pytest.raises(NotFound), db.tenant(facility.slug) as conn:
        service.set_bed_state(conn, bed_manager, "NOPE-01", "blocked")
    with db.tenant(facility.slug) as conn:
        adt.discharge(conn, bed_manager, patient_id, disposition="home")
        service.set_bed_state(conn, bed_manager, stay["bed_code"], "blocked")
    with pytest.raises(Conflict, match="blocked"), db.tenant(facility.slug) as conn:
        adt.admit(conn, bed_manager, patient_id, ward_code="GEN", bed_code=stay["bed_code"])
    with db.tenant(facility.slug) as conn:
        service.set_bed_state(conn, bed_manager, stay["bed_code"], "available")
        board = service.bed_board(conn, bed_manager, "GEN")
    assert board[0]["code"] == "GEN" and {b["code"] for b in board[0]["bed_list"]} >= {stay["bed_code"]}


# -- the emergency department --------------------------------------------------------------------------


def test_ed_visit_timestamps_in_order_and_admission_from_the_ed(db, facility, bed_manager):
    (patient_id,) = _patients(db, facility, bed_manager, 1)
    with db.tenant(facility.slug) as conn:
        visit = ed.arrive(conn, bed_manager, patient_id, arrival_mode="ambulance", complaint="fever")
        assert conn.execute(sa.text("SELECT encounter_class, status, ward_code FROM encounter WHERE id = :e"),
                            {"e": visit["id"]}).one() == ("emergency", "arrived", "ED")
        ed.triage(conn, bed_manager, visit["id"], acuity=3)
        ed.seen(conn, bed_manager, visit["id"])
        ed.decide(conn, bed_manager, visit["id"], decision="admit")
        board = ed.board(conn, bed_manager)
        assert visit["id"] in {row["id"] for row in board}
        stay = adt.admit(conn, bed_manager, patient_id, ward_code="GEN", ed_encounter_id=visit["id"])
        after = ed.visit_of(conn, visit["id"])
        statuses = dict(conn.execute(sa.text("SELECT id, status FROM encounter WHERE patient_id = :p"),
                                     {"p": patient_id}).all())
    assert stay["source"] == "emergency"
    assert after["disposition"] == "admitted" and after["admitted_encounter_id"] == stay["encounter_id"]
    assert after["departed_at"] == stay["admitted_at"]
    assert statuses == {visit["id"]: "finished", stay["encounter_id"]: "in_progress"}


def test_ed_refusals(db, facility, bed_manager):
    (patient_id,) = _patients(db, facility, bed_manager, 1)
    with db.tenant(facility.slug) as conn:
        visit = ed.arrive(conn, bed_manager, patient_id)
    with pytest.raises(Conflict, match="already in the emergency"), db.tenant(facility.slug) as conn:
        ed.arrive(conn, bed_manager, patient_id)
    with pytest.raises(Invalid, match="acuity"), db.tenant(facility.slug) as conn:
        ed.triage(conn, bed_manager, visit["id"], acuity=6)
    with pytest.raises(Invalid, match="before the patient arrived"), db.tenant(facility.slug) as conn:
        ed.seen(conn, bed_manager, visit["id"], at=visit["arrived_at"] - dt.timedelta(minutes=5))
    with pytest.raises(Invalid, match="admit the patient"), db.tenant(facility.slug) as conn:
        ed.depart(conn, bed_manager, patient_id, visit["id"], disposition="admitted")
    with db.tenant(facility.slug) as conn:
        ed.seen(conn, bed_manager, visit["id"])
    with pytest.raises(Conflict, match="already been seen"), db.tenant(facility.slug) as conn:
        ed.seen(conn, bed_manager, visit["id"])
    with pytest.raises(Conflict, match="left against advice"), db.tenant(facility.slug) as conn:
        ed.depart(conn, bed_manager, patient_id, visit["id"], disposition="left_without_being_seen")
    with db.tenant(facility.slug) as conn:
        ed.depart(conn, bed_manager, patient_id, visit["id"], disposition="left_against_advice")
    with pytest.raises(Conflict, match="already left"), db.tenant(facility.slug) as conn:
        ed.decide(conn, bed_manager, visit["id"], decision="admit")
    with pytest.raises(NotFound), db.tenant(facility.slug) as conn:
        ed.triage(conn, bed_manager, uuid.uuid4(), acuity=2)
    # A patient in a bed does not also arrive in the ED (on both boards, and not admissible from it): nothing written.
    with db.tenant(facility.slug) as conn:
        stay = adt.admit(conn, bed_manager, patient_id, ward_code="GEN")
        before = conn.execute(sa.select(sa.func.count()).select_from(record.entry)).scalar()
    with pytest.raises(Conflict, match=f"admitted, in bed {stay['bed_code']}, not arriving"), \
            db.tenant(facility.slug) as conn:
        ed.arrive(conn, bed_manager, patient_id)
    with db.tenant(facility.slug) as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(record.entry)).scalar() == before
        adt.discharge(conn, bed_manager, patient_id, disposition="home")
        assert ed.arrive(conn, bed_manager, patient_id)["departed_at"] is None  # back after going home: a new visit


# -- scheduling ----------------------------------------------------------------------------------------------


def test_book_reschedule_check_in_cancel_and_no_show(db, facility, bed_manager):
    first, second = _patients(db, facility, bed_manager, 2)
    day = dt.date.today() + dt.timedelta(days=5)
    with db.tenant(facility.slug) as conn:
        slots = scheduling.slots(conn, "MOPC", day)
        assert len(slots) == 8 and all(s["free"] for s in slots)  # 08:00-12:00 in 30-minute slots
        booked = scheduling.book(conn, bed_manager, first, slots[0]["id"], reason="review")
        moved = scheduling.reschedule(conn, bed_manager, booked["id"], slots[1]["id"])
        assert moved["slot_id"] == slots[1]["id"]
        other = scheduling.book(conn, bed_manager, second, slots[0]["id"])  # the freed slot books again
        listed = scheduling.day_list(conn, bed_manager, "MOPC", day)
        assert [a["id"] for a in listed] == [other["id"], booked["id"]]
        assert scheduling.change(conn, bed_manager, other["id"], "cancelled")["status"] == "cancelled"
        assert scheduling.change(conn, bed_manager, booked["id"], "checked_in")["status"] == "checked_in"
        actions = [a for (a,) in conn.execute(sa.text(
            "SELECT action FROM appointment_change c JOIN entry e ON e.id = c.entry_id "
            "WHERE appointment_id = :a ORDER BY e.recorded_at, e.occurred_at"), {"a": booked["id"]})]
    assert actions == ["booked", "rescheduled", "checked_in"]
    with pytest.raises(Conflict, match="checked in cannot"), db.tenant(facility.slug) as conn:
        scheduling.change(conn, bed_manager, booked["id"], "no_show")
    with db.tenant(facility.slug) as conn:
        third = scheduling.book(conn, bed_manager, second, slots[2]["id"])
    with pytest.raises(Conflict, match="after the appointment"), db.tenant(facility.slug) as conn:
        scheduling.change(conn, bed_manager, third["id"], "no_show")
    with pytest.raises(Conflict, match="already booked"), db.tenant(facility.slug) as conn:
        scheduling.book(conn, bed_manager, first, slots[2]["id"])
    with pytest.raises(Invalid, match="no slot"), db.tenant(facility.slug) as conn:
        scheduling.book(conn, bed_manager, first, uuid.uuid4())
    with pytest.raises(NotFound, match="no clinic"), db.tenant(facility.slug) as conn:
        scheduling.slots(conn, "NOPE", day)
    yesterday = dt.date.today() - dt.timedelta(days=2)
    with pytest.raises(Invalid, match="in the past"), db.tenant(facility.slug) as conn:
        scheduling.book(conn, bed_manager, first, scheduling.slots(conn, "MOPC", yesterday)[0]["id"])


def test_a_patient_sees_the_appointments_still_to_come(db, facility, bed_manager):
    from appliance.substrate import audit
    from appliance.substrate.principal import Principal

    patient_id, = _patients(db, facility, bed_manager, 1)
    # Days no other test of this module books on (they share the facility's clinic).
    soon, later = dt.date.today() + dt.timedelta(days=11), dt.date.today() + dt.timedelta(days=12)
    with db.tenant(facility.slug) as conn:
        second = scheduling.book(conn, bed_manager, patient_id, scheduling.slots(conn, "MOPC", later)[2]["id"])
        first = scheduling.book(conn, bed_manager, patient_id, scheduling.slots(conn, "MOPC", soon)[0]["id"])
        dropped = scheduling.book(conn, bed_manager, patient_id, scheduling.slots(conn, "MOPC", soon)[3]["id"])
        scheduling.change(conn, bed_manager, dropped["id"], "cancelled")
    own = Principal(account_id=uuid.uuid4(), kind="patient", display_name="The patient", role="patient")
    with db.tenant(facility.slug) as conn:
        upcoming = scheduling.upcoming_of_patient(conn, own, patient_id)
    assert [a["id"] for a in upcoming] == [first["id"], second["id"]]  # soonest first, the cancelled one gone
    assert upcoming[0]["clinic"] and upcoming[0]["local_start"].utcoffset() is not None
    reads = [e for e in audit.patient_access_log(db, facility.slug, patient_id)
             if e.event_type == "record.appointment.read"]
    assert reads and reads[-1].who["kind"] == "patient"


def test_check_in_starts_the_outpatient_visit_or_joins_the_open_one(db, facility, bed_manager):
    first, second = _patients(db, facility, bed_manager, 2)
    day = dt.date.today() + dt.timedelta(days=6)
    with db.tenant(facility.slug) as conn:
        slots = scheduling.slots(conn, "MOPC", day)
        morning = scheduling.book(conn, bed_manager, first, slots[0]["id"], reason="diabetes review")
        later = scheduling.book(conn, bed_manager, first, slots[4]["id"])
        unseen = scheduling.book(conn, bed_manager, second, slots[1]["id"])
        checked = scheduling.change(conn, bed_manager, morning["id"], "checked_in")
        visit = conn.execute(sa.text(
            "SELECT patient_id, encounter_class, status, reason, planned_for, started_at FROM encounter "
            "WHERE id = :id"), {"id": checked["encounter_id"]}).one()
        noted_on = conn.execute(sa.text(
            "SELECT e.encounter_id FROM appointment_change c JOIN entry e ON e.id = c.entry_id "
            "WHERE c.appointment_id = :a AND c.action = 'checked_in'"), {"a": morning["id"]}).scalar()
        joined = scheduling.change(conn, bed_manager, later["id"], "checked_in")
        cancelled = scheduling.change(conn, bed_manager, unseen["id"], "cancelled")
        visits = conn.execute(sa.text("SELECT count(*) FROM encounter WHERE patient_id = :p"), {"p": first}).scalar()
        listed = {a["id"]: a["encounter_id"] for a in scheduling.day_list(conn, bed_manager, "MOPC", day)}
    assert morning["encounter_id"] is None and unseen["encounter_id"] is None  # booked: no visit yet
    assert (visit.patient_id, visit.encounter_class, visit.status, visit.reason) == (
        first, "outpatient", "arrived", "diabetes review")
    assert visit.planned_for == slots[0]["starts_at"] and visit.started_at is not None
    assert noted_on == checked["encounter_id"]  # the check-in entry is on the visit it opened
    # A second appointment of the same patient while the visit is open joins it: one visit, not two.
    assert joined["encounter_id"] == checked["encounter_id"] and visits == 1
    assert cancelled["encounter_id"] is None
    assert listed[morning["id"]] == listed[later["id"]] == checked["encounter_id"]


def test_a_visit_left_open_since_an_earlier_day_is_not_joined(db, facility, bed_manager):
    (patient_id,) = _patients(db, facility, bed_manager, 1)
    day = dt.date.today() + dt.timedelta(days=7)
    with db.tenant(facility.slug) as conn:
        stale = clinical.open_encounter(conn, bed_manager, patient_id, EncounterIn(encounter_class="outpatient"))
        conn.execute(sa.text("UPDATE encounter SET started_at = now() - interval '2 days' WHERE id = :id"),
                     {"id": stale["id"]})
        booked = scheduling.book(conn, bed_manager, patient_id, scheduling.slots(conn, "MOPC", day)[5]["id"])
        checked = scheduling.change(conn, bed_manager, booked["id"], "checked_in")
    assert checked["encounter_id"] not in (None, stale["id"])


def test_parallel_arrivals_of_one_patient_open_one_ed_visit(db, facility, bed_manager):
    (patient_id,) = _patients(db, facility, bed_manager, 1)
    outcomes = _race(db, facility.slug, [patient_id] * 8,
                     lambda conn, who: ed.arrive(conn, bed_manager, who, complaint="fall"))
    assert sum(isinstance(o, dict) for o in outcomes) == 1
    with db.tenant(facility.slug) as conn:
        visits = conn.execute(sa.text("SELECT count(*) FROM ed_visit WHERE patient_id = :p"),
                              {"p": patient_id}).scalar()
        arrivals = conn.execute(sa.select(sa.func.count()).where(record.entry.c.kind == "ed_arrival",
                                                                 record.entry.c.patient_id == patient_id)).scalar()
    assert visits == arrivals == 1


def test_an_admission_uses_a_planned_inpatient_encounter_and_starts_it(db, facility, bed_manager):
    from appliance.layers.clinical import service as clinical
    from appliance.layers.clinical.schemas import EncounterIn

    (patient_id,) = _patients(db, facility, bed_manager, 1)
    with db.tenant(facility.slug) as conn:
        planned = clinical.open_encounter(conn, bed_manager, patient_id, EncounterIn(
            encounter_class="inpatient", status="planned", reason="elective hernia repair"))
        stay = adt.admit(conn, bed_manager, patient_id, ward_code="GEN", source="elective",
                         encounter_id=planned["id"])
        row = conn.execute(sa.text("SELECT status, ward_code, started_at FROM encounter WHERE id = :e"),
                           {"e": planned["id"]}).one()
        inpatient = conn.execute(sa.text("SELECT count(*) FROM encounter WHERE patient_id = :p"),
                                 {"p": patient_id}).scalar()
    assert stay["encounter_id"] == planned["id"] and inpatient == 1
    assert (row.status, row.ward_code) == ("in_progress", "GEN") and row.started_at == stay["admitted_at"]
    (walk_in,) = _patients(db, facility, bed_manager, 1)
    with pytest.raises(Invalid, match="open inpatient encounter"), db.tenant(facility.slug) as conn:
        visit = clinical.open_encounter(conn, bed_manager, walk_in, EncounterIn(encounter_class="outpatient",
                                                                                  status="in_progress"))
        adt.admit(conn, bed_manager, walk_in, ward_code="GEN", encounter_id=visit["id"])
    with pytest.raises(Invalid, match="not an encounter of this patient"), db.tenant(facility.slug) as conn:
        adt.admit(conn, bed_manager, walk_in, ward_code="GEN", encounter_id=planned["id"])


def test_an_admission_naming_no_encounter_takes_the_one_a_clinician_opened(db, facility, bed_manager):
    """A clinician admits the patient to the ward (an inpatient encounter, no bed); the bed manager then puts
    them in a bed without naming it: one encounter for the stay, and the discharge finishes it, so nothing is
    left open on the ward's lists. A patient with only a finished stay behind them gets a new encounter."""
    (patient_id,) = _patients(db, facility, bed_manager, 1)
    open_encounters = sa.text("SELECT id FROM encounter WHERE patient_id = :p AND status <> 'finished'")
    with db.tenant(facility.slug) as conn:
        admitted = clinical.open_encounter(conn, bed_manager, patient_id, EncounterIn(
            encounter_class="inpatient", status="in_progress", ward_code="GEN", reason="pneumonia"))
        stay = adt.admit(conn, bed_manager, patient_id, ward_code="GEN")
        assert stay["encounter_id"] == admitted["id"]
        assert conn.execute(open_encounters, {"p": patient_id}).scalars().all() == [admitted["id"]]
        adt.discharge(conn, bed_manager, patient_id, disposition="home")
        assert conn.execute(open_encounters, {"p": patient_id}).scalars().all() == []
        again = adt.admit(conn, bed_manager, patient_id, ward_code="GEN")
    assert again["encounter_id"] != admitted["id"]


def test_a_patient_in_a_bed_is_not_admitted_a_second_time_by_a_clinician(db, facility, bed_manager):
    """The bed board admitted the patient first: a clinician starting an inpatient admission for them is
    refused (409, naming the one under way) and writes nothing; a planned admission may still be booked."""
    from appliance.layers.clinical.errors import Conflict as ClinicalConflict

    (patient_id,) = _patients(db, facility, bed_manager, 1)
    with db.tenant(facility.slug) as conn:
        stay = adt.admit(conn, bed_manager, patient_id, ward_code="GEN")
    second = "already has an inpatient admission in progress on ward GEN"
    with pytest.raises(ClinicalConflict, match=second) as refused, db.tenant(facility.slug) as conn:
        clinical.open_encounter(conn, bed_manager, patient_id, EncounterIn(
            encounter_class="inpatient", status="in_progress", ward_code="GEN"))
    assert refused.value.extra["encounter_id"] == str(stay["encounter_id"])
    with db.tenant(facility.slug) as conn:
        count = sa.text("SELECT count(*) FROM encounter WHERE patient_id = :p")
        assert conn.execute(count, {"p": patient_id}).scalar() == 1
        clinical.open_encounter(conn, bed_manager, patient_id, EncounterIn(encounter_class="inpatient",
                                                                            status="planned"))
        assert conn.execute(count, {"p": patient_id}).scalar() == 2


def test_two_changes_of_the_expected_discharge_date_at_once_chain_and_a_ward_nurse_keeps_to_her_ward(
        db, tenant_factory, bed_manager):
    """Two clinicians changing one stay's expected discharge date at the same moment queue on the stay: both versions
    are kept, the second superseding the first, and the stay shows the last. A nurse whose membership names the
    maternity ward is refused (403) a general ward patient's date, nothing written, and sets her own ward's; the date
    moves with the patient on a transfer."""
    facility = tenant_factory(name="Discharge Planning Facility", **OPERATIONS_CONFIG)  # the module's wards fill up
    [patient] = _patients(db, facility, bed_manager, 1)
    with db.tenant(facility.slug) as conn:
        stay = adt.admit(conn, bed_manager, patient, ward_code="GEN")
    today = dt.datetime.now(FACILITY_ZONE).date()
    days = [today + dt.timedelta(days=n) for n in (2, 3)]
    _race(db, facility.slug, days, lambda conn, day: discharge_plan.set_expected(conn, bed_manager, patient,
                                                                                 expected_on=day))
    with db.tenant(facility.slug) as conn:
        versions = record.history(conn, conn.execute(sa.select(inpatient_stay.c.expected_discharge_entry_id).where(
            inpatient_stay.c.id == stay["id"])).scalar_one())
        shown = conn.execute(sa.select(inpatient_stay.c.expected_discharge_on)
                             .where(inpatient_stay.c.id == stay["id"])).scalar_one()
    assert sorted(v.detail["expected_on"] for v in versions) == days and [v.status for v in versions] == [
        "final", "amended"]
    assert shown == versions[-1].detail["expected_on"]

    nurse = Principal(account_id=uuid.uuid4(), kind="staff", display_name="Ward nurse", tenant=facility.slug,
                      role="nurse", ward="MAT", ward_scoped=True)
    with pytest.raises(Refused, match="you plan the discharges of MAT's patients"), db.tenant(facility.slug) as conn:
        discharge_plan.set_expected(conn, nurse, patient, expected_on=today)
    with db.tenant(facility.slug) as conn:
        adt.transfer(conn, bed_manager, patient, ward_code="MAT")
        assert discharge_plan.history(conn, nurse, patient)["expected_on"] == shown  # it moved with her
        set_here = discharge_plan.set_expected(conn, nurse, patient, expected_on=today, note="baby feeding well")
        assert set_here["ward_code"] == "MAT" and set_here["expectation"] == "today"
        adt.discharge(conn, bed_manager, patient, disposition="home")
