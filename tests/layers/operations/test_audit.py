"""Every read and write of patient data by the operations layer passes the record's audit seam: each
act below is watched through the seam's own access hook (the one the audit trail feeds from), and the
audit trail itself gains the events, tagged with the patient, in the same transaction."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import pytest
import sqlalchemy as sa

from appliance.layers.operations import adt, command_center, ed, scheduling, service
from appliance.substrate import record
from tests.layers.operations.conftest import new_patient


@pytest.fixture
def seen():
    calls: list[tuple[str, object, str]] = []

    def hook(conn, principal, action, patient_id, entity_kind, ids):
        calls.append((action, patient_id, entity_kind))

    record.register_access_hook(hook)
    yield calls
    record.unregister_access_hook(hook)


def test_each_act_and_each_read_of_patient_data_is_audited(db, facility, bed_manager, seen, definitions):
    with db.tenant(facility.slug) as conn:
        patient_id = new_patient(conn, bed_manager)
        other = new_patient(conn, bed_manager)
    seen.clear()
    steps = [
        (lambda conn: ed.arrive(conn, bed_manager, patient_id), {("create", "encounter"), ("create", "ed_arrival")}),
        (lambda conn: ed.board(conn, bed_manager), {("read", "ed_arrival")}),
        (lambda conn: adt.admit(conn, bed_manager, patient_id, ward_code="GEN",
                                ed_encounter_id=ed.board(conn, bed_manager)[0]["id"]),
         {("create", "admission"), ("create", "ed_departure")}),
        (lambda conn: service.bed_board(conn, bed_manager, "GEN"), {("read", "admission")}),
        (lambda conn: adt.current_stay(conn, bed_manager, patient_id), {("read", "admission")}),
        (lambda conn: adt.transfer(conn, bed_manager, patient_id, ward_code="MAT"), {("create", "transfer")}),
        (lambda conn: adt.discharge(conn, bed_manager, patient_id, disposition="home"), {("create", "discharge")}),
    ]
    for act, expected in steps:
        seen.clear()
        with db.tenant(facility.slug) as conn:
            act(conn)
        assert expected <= {(a, k) for a, p, k in seen if p == patient_id}, (expected, seen)
    day = dt.date.today() + dt.timedelta(days=4)
    with db.tenant(facility.slug) as conn:
        slot = scheduling.slots(conn, "MOPC", day)[0]
        seen.clear()
        booked = scheduling.book(conn, bed_manager, other, slot["id"])
        scheduling.change(conn, bed_manager, booked["id"], "cancelled")
        scheduling.day_list(conn, bed_manager, "MOPC", day)
    # Each act on the appointment is audited as what it was (scheduling.AUDITED_AS), so the access log says it.
    assert {("create", "appointment_booking"), ("create", "appointment_cancellation"), ("read", "appointment")} <= {
        (a, k) for a, p, k in seen if p == other}
    seen.clear()
    with db.tenant(facility.slug) as conn:
        command_center.figures(conn, definitions, tz=zoneinfo.ZoneInfo("Africa/Nairobi"))
    assert [s for s in seen if s[1] is not None] == []  # aggregates name nobody: nothing to audit
    with db.tenant(facility.slug) as conn:
        command_center.drilldown(conn, bed_manager, command_center.definition_of(definitions, "average_length_of_stay"),
                                 tz=zoneinfo.ZoneInfo("Africa/Nairobi"))
    assert ("read", patient_id, "kpi.average_length_of_stay") in seen


def test_the_audit_trail_holds_the_events_in_the_same_transaction(db, facility, bed_manager):
    with db.tenant(facility.slug) as conn:
        patient_id = new_patient(conn, bed_manager)
    with db.tenant(facility.slug) as conn:
        before = conn.execute(sa.text("SELECT count(*) FROM audit_event")).scalar()
        adt.admit(conn, bed_manager, patient_id, ward_code="GEN")
        inside = conn.execute(sa.text("SELECT event_type FROM audit_event WHERE seq > (SELECT max(seq) - 5 FROM "
                                      "audit_event) ORDER BY seq")).scalars().all()
        after = conn.execute(sa.text("SELECT count(*) FROM audit_event")).scalar()
    assert after > before and "record.admission.create" in inside
