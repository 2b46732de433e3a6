"""The operations API over real HTTP: ADT, ED, scheduling and the command center as JSON; structured
refusals; every route refused to another facility's credentials and to a guessed id; the audit trail
of every read and write of patient data; permissions by role."""

from __future__ import annotations

import datetime as dt
import uuid
import zoneinfo

import pytest
import sqlalchemy as sa

from tests.conftest import FACILITY_ZONE
from tests.layers.operations.conftest import OPERATIONS_CONFIG, new_patient

GUESS = str(uuid.uuid4())


@pytest.fixture
def api(token_client, facility):
    return token_client(facility.slug, role="bed_manager")


@pytest.fixture
def patient_id(db, facility, bed_manager):
    with db.tenant(facility.slug) as conn:
        return str(new_patient(conn, bed_manager))


def _audit_count(db, slug: str, patient: str | None = None) -> int:
    with db.tenant(slug) as conn:
        if patient is None:
            return conn.execute(sa.text("SELECT count(*) FROM audit_event")).scalar()
        return conn.execute(sa.text("SELECT count(*) FROM audit_event WHERE patient_ref IS NOT NULL")).scalar()


def test_admit_transfer_discharge_over_http(api, facility, patient_id, db):
    before = _audit_count(db, facility.slug)
    admitted = api.post(f"/api/t/{facility.slug}/admissions", json={"patient_id": patient_id, "ward_code": "GEN"})
    assert admitted.status_code == 201, admitted.text
    stay = admitted.json()
    assert set(stay) == {"id", "patient_id", "encounter_id", "ward_code", "bed_code", "source", "admitted_at",
                         "discharged_at", "disposition"}
    board = api.get(f"/api/t/{facility.slug}/beds", params={"ward": "GEN"}).json()
    bed = next(b for b in board[0]["bed_list"] if b["code"] == stay["bed_code"])
    assert bed["state"] == "occupied" and bed["patient_id"] == patient_id and bed["mrn"]
    moved = api.post(f"/api/t/{facility.slug}/patients/{patient_id}/transfer", json={"ward_code": "MAT"})
    assert moved.status_code == 201 and moved.json()["ward_code"] == "MAT"
    gone = api.post(f"/api/t/{facility.slug}/patients/{patient_id}/discharge", json={"disposition": "died"})
    assert gone.status_code == 201 and gone.json()["disposition"] == "died"
    cleaned = api.put(f"/api/t/{facility.slug}/beds/{moved.json()['bed_code']}/state", json={"state": "available"})
    assert cleaned.status_code == 200 and cleaned.json()["state"] == "available"
    assert _audit_count(db, facility.slug) > before  # writes and the bed-board read of the occupant


def test_refusals_are_structured_and_name_the_field(api, facility, patient_id):
    base = f"/api/t/{facility.slug}"
    missing = api.post(f"{base}/admissions", json={"patient_id": patient_id})
    assert missing.status_code == 422 and "ward_code" in missing.text
    wrong = api.post(f"{base}/admissions", json={"patient_id": patient_id, "ward_code": "ED"})
    assert wrong.status_code == 422 and wrong.json()["field"] == "ward_code"
    naive = api.post(f"{base}/admissions", json={"patient_id": patient_id, "ward_code": "GEN",
                                                 "at": "2026-01-01T10:00:00"})
    assert naive.status_code == 422
    unknown = api.post(f"{base}/admissions", json={"patient_id": GUESS, "ward_code": "GEN"})
    assert unknown.status_code == 404
    extra = api.post(f"{base}/admissions", json={"patient_id": patient_id, "ward_code": "GEN", "bed": "x"})
    assert extra.status_code == 422
    junk = api.post(f"{base}/admissions", content=b"\x00{not json", headers={"content-type": "application/json"})
    assert junk.status_code in {400, 422}
    full = api.post(f"{base}/admissions", json={"patient_id": patient_id, "ward_code": "GEN", "bed_code": "GEN-99"})
    assert full.status_code == 422 and full.json()["field"] == "bed_code"
    bad_day = api.get(f"{base}/clinics/MOPC/slots", params={"date": "yesterday"})
    assert bad_day.status_code == 422 and bad_day.json()["field"] == "date"
    assert api.get(f"{base}/command-center/no_such_kpi/entries").status_code == 404


def test_ed_visit_and_admission_from_the_ed_over_http(api, facility, patient_id):
    base = f"/api/t/{facility.slug}"
    visit = api.post(f"{base}/ed/arrivals", json={"patient_id": patient_id, "arrival_mode": "ambulance",
                                                  "complaint": "short of breath"})
    assert visit.status_code == 201, visit.text
    encounter_id = visit.json()["id"]
    assert api.post(f"{base}/ed/visits/{encounter_id}/triage", json={"acuity": 2}).json()["acuity"] == 2
    assert api.post(f"{base}/ed/visits/{encounter_id}/triage", json={"acuity": 9}).status_code == 422
    assert api.post(f"{base}/ed/visits/{encounter_id}/seen", json={}).json()["seen_at"]
    assert api.post(f"{base}/ed/visits/{encounter_id}/decision", json={"decision": "admit"}).status_code == 201
    assert encounter_id in {v["id"] for v in api.get(f"{base}/ed/visits").json()}
    unseen = api.post(f"{base}/ed/visits/{encounter_id}/departure", json={"disposition": "left_without_being_seen"})
    assert unseen.status_code == 409
    admitted = api.post(f"{base}/admissions", json={"patient_id": patient_id, "ward_code": "GEN",
                                                    "ed_encounter_id": encounter_id})
    assert admitted.status_code == 201 and admitted.json()["source"] == "emergency"
    assert encounter_id not in {v["id"] for v in api.get(f"{base}/ed/visits").json()}


def test_booking_over_http_and_parallel_double_booking_refused(api, facility, patient_id):
    base = f"/api/t/{facility.slug}"
    day = (dt.date.today() + dt.timedelta(days=9)).isoformat()
    assert [c["code"] for c in api.get(f"{base}/clinics").json()] == ["MOPC"]
    slots = api.get(f"{base}/clinics/MOPC/slots", params={"date": day}).json()
    booked = api.post(f"{base}/appointments", json={"patient_id": patient_id, "slot_id": slots[0]["id"]})
    assert booked.status_code == 201
    again = api.post(f"{base}/appointments", json={"patient_id": patient_id, "slot_id": slots[0]["id"]})
    assert again.status_code == 409 and again.json()["field"] == "slot_id"
    moved = api.post(f"{base}/appointments/{booked.json()['id']}/reschedule", json={"slot_id": slots[1]["id"]})
    assert moved.status_code == 201 and moved.json()["slot_id"] == slots[1]["id"]
    listed = api.get(f"{base}/clinics/MOPC/appointments", params={"date": day}).json()
    assert [a["id"] for a in listed] == [booked.json()["id"]] and listed[0]["mrn"]
    cancelled = api.post(f"{base}/appointments/{booked.json()['id']}/status", json={"action": "cancelled"})
    assert cancelled.status_code == 201 and cancelled.json()["status"] == "cancelled"


def test_a_clinics_slots_default_to_the_facilitys_today_not_the_servers(token_client, tenant_factory):
    """As the clinic page does: a facility whose date differs from UTC's now (one side of the date line or
    the other, by the hour) is answered its own today's slots when no date is given."""
    zone = "Pacific/Kiritimati" if dt.datetime.now(dt.UTC).hour >= 11 else "Pacific/Pago_Pago"  # UTC+14, UTC-11
    far = tenant_factory(name="Line Islands Clinic", **{**OPERATIONS_CONFIG, "timezone": zone})
    local_today = dt.datetime.now(zoneinfo.ZoneInfo(zone)).date()
    assert local_today != dt.datetime.now(dt.UTC).date()
    slots = token_client(far.slug, role="bed_manager").get(f"/api/t/{far.slug}/clinics/MOPC/slots")
    assert slots.status_code == 200 and slots.json()
    days = {dt.datetime.fromisoformat(s["starts_at"]).astimezone(zoneinfo.ZoneInfo(zone)).date() for s in slots.json()}
    assert days == {local_today}


def test_a_check_in_over_http_opens_the_visit_and_with_it_the_chart(api, signed_in, facility, patient_id):
    base = f"/api/t/{facility.slug}"
    day = (dt.date.today() + dt.timedelta(days=10)).isoformat()
    clinician = signed_in("clinician", facility.slug)
    chart = f"{base}/patients/{patient_id}/chart"
    assert clinician.get(chart).status_code == 403  # registered only: no care relationship yet
    slot = api.get(f"{base}/clinics/MOPC/slots", params={"date": day}).json()[2]
    booked = api.post(f"{base}/appointments", json={"patient_id": patient_id, "slot_id": slot["id"]}).json()
    checked = api.post(f"{base}/appointments/{booked['id']}/status", json={"action": "checked_in"})
    assert checked.status_code == 201 and checked.json()["encounter_id"]
    opened = clinician.get(chart)
    assert opened.status_code == 200
    [visit] = [e for e in opened.json()["encounters"] if e["id"] == checked.json()["encounter_id"]]
    assert (visit["encounter_class"], visit["status"]) == ("outpatient", "arrived")


def test_command_center_json_matches_the_figures_and_drills_down(api, facility, patient_id, db):
    base = f"/api/t/{facility.slug}"
    before = api.get(f"{base}/command-center").json()
    occupancy = next(k for k in before["kpis"] if k["id"] == "bed_occupancy")
    assert occupancy["target"] == 85 and len(occupancy["trend"]) == 14
    assert [k["number"] for k in before["kpis"] if not k["companion"]] == [1, 2, 3, 4, 5, 6, 7, 8]
    api.post(f"{base}/admissions", json={"patient_id": patient_id, "ward_code": "GEN"})
    after = next(k for k in api.get(f"{base}/command-center").json()["kpis"] if k["id"] == "bed_occupancy")
    assert after["numerator"] == occupancy["numerator"] + 1  # the next request sees the admission
    audited = _audit_count(db, facility.slug)
    drilled = api.get(f"{base}/command-center/bed_occupancy/entries").json()
    assert patient_id in {e["patient_id"] for e in drilled["entries"]}
    assert _audit_count(db, facility.slug) >= audited + len({e["patient_id"] for e in drilled["entries"]})


def test_permissions_by_role(signed_in, token_client, facility, patient_id):
    base = f"/api/t/{facility.slug}"
    registrar = token_client(facility.slug, role="registrar")
    assert registrar.post(f"{base}/admissions", json={"patient_id": patient_id, "ward_code": "GEN"}).status_code == 403
    assert registrar.get(f"{base}/clinics").status_code == 200
    nurse = signed_in("nurse", facility.slug)
    assert nurse.get(f"{base}/beds").status_code == 200
    assert nurse.get(f"{base}/command-center").status_code == 200
    assert nurse.get(f"{base}/command-center/bed_occupancy/entries").status_code == 403
    # A browser session reads the API but never writes through it.
    manager = signed_in("bed_manager", facility.slug)
    assert manager.post(f"{base}/admissions", json={"patient_id": patient_id, "ward_code": "GEN"}).status_code in {
        401, 403}
    assert signed_in("billing_clerk", facility.slug).get(f"{base}/ed/visits").status_code == 403


ROUTES = [
    ("GET", "/wards", None), ("GET", "/beds", None), ("PUT", "/beds/GEN-01/state", {"state": "blocked"}),
    ("POST", "/admissions", {"patient_id": GUESS, "ward_code": "GEN"}),
    ("POST", f"/patients/{GUESS}/transfer", {"ward_code": "GEN"}),
    ("POST", f"/patients/{GUESS}/discharge", {"disposition": "home"}),
    ("POST", "/ed/arrivals", {"patient_id": GUESS}), ("GET", "/ed/visits", None),
    ("POST", f"/ed/visits/{GUESS}/triage", {"acuity": 3}), ("POST", f"/ed/visits/{GUESS}/seen", {}),
    ("POST", f"/ed/visits/{GUESS}/decision", {"decision": "admit"}),
    ("POST", f"/ed/visits/{GUESS}/departure", {"disposition": "discharged"}),
    ("GET", "/clinics", None), ("GET", "/clinics/MOPC/slots", None), ("GET", "/clinics/MOPC/appointments", None),
    ("POST", "/appointments", {"patient_id": GUESS, "slot_id": GUESS}),
    ("POST", f"/appointments/{GUESS}/reschedule", {"slot_id": GUESS}),
    ("POST", f"/appointments/{GUESS}/status", {"action": "cancelled"}),
    ("GET", "/command-center", None), ("GET", "/command-center/bed_occupancy/entries", None),
    ("GET", f"/patients/{GUESS}/expected-discharge", None),
]


def _named(routes: list) -> list[str]:
    """Test names without the random guessed id: every pytest-xdist worker collects the module, and their names
    must agree."""
    return [f"{method} {path}".replace(GUESS, "{guess}") for method, path, _ in routes]


@pytest.mark.parametrize(("method", "path", "body"), ROUTES, ids=_named(ROUTES))
def test_another_facility_is_refused_every_route(token_client, signed_in, facility, other_facility, method, path,
                                                 body):
    """The attacker holds a bed manager's token and a session at another facility and aims them here."""
    attacker = token_client(other_facility.slug, role="bed_manager")
    answer = attacker.request(method, f"/api/t/{facility.slug}{path}", json=body)
    assert answer.status_code == 403, answer.text
    assert "not working in this facility" in answer.json()["detail"]
    if method == "GET":
        browser = signed_in("bed_manager", other_facility.slug)
        assert browser.get(f"/api/t/{facility.slug}{path}").status_code == 403
    anonymous = token_client(facility.slug, permissions=[]).request(method, f"/api/t/{facility.slug}{path}", json=body)
    assert anonymous.status_code == 403


GUESSED = [(m, p, b) for m, p, b in ROUTES if GUESS in p or (b and GUESS in b.values())]


@pytest.mark.parametrize(("method", "path", "body"), GUESSED, ids=_named(GUESSED))
def test_a_guessed_id_finds_nothing(api, facility, method, path, body):
    answer = api.request(method, f"/api/t/{facility.slug}{path}", json=body)
    assert answer.status_code in {404, 422}, answer.text
    assert answer.json()["detail"]


def test_another_facilitys_patient_is_not_found_here(api, db, other_facility, facility, bed_manager):
    with db.tenant(other_facility.slug) as conn:
        theirs = str(new_patient(conn, bed_manager))
    answer = api.post(f"/api/t/{facility.slug}/admissions", json={"patient_id": theirs, "ward_code": "GEN"})
    assert answer.status_code == 404


def test_a_departure_recorded_as_died_by_mistake_is_corrected_over_the_api(token_client, db, facility, other_facility,
                                                                          bed_manager):
    """A clinician corrects an ED departure recorded as died to how the patient left, with a reason; the bed manager
    who recorded it, another facility's clinician, a guessed visit and another patient's id are refused, and a
    refusal writes nothing."""
    from appliance.layers.operations import ed
    from tests.rows import RowCounts, changed

    with db.tenant(facility.slug) as conn:
        patient_id, other_id = new_patient(conn, bed_manager), new_patient(conn, bed_manager)
        visit = ed.arrive(conn, bed_manager, patient_id, complaint="chest pain")
        ed.depart(conn, bed_manager, patient_id, visit["id"], disposition="died")
    correction = f"/api/t/{facility.slug}/deaths/to-certify/{visit['id']}/correction"
    body = {"patient_id": str(patient_id), "disposition": "discharged", "reason": "another patient's row clicked"}
    clinician = token_client(facility.slug, role="clinician")
    recorder, intruder = token_client(facility.slug, role="bed_manager"), token_client(other_facility.slug,
                                                                                      role="clinician")
    with db.control_autocommit() as conn:
        counts = RowCounts(conn, facility.slug)
        before = counts.read()
        assert recorder.post(correction, json=body).status_code == 403
        assert intruder.post(correction, json=body).status_code == 403
        guessed = clinician.post(f"/api/t/{facility.slug}/deaths/to-certify/{GUESS}/correction", json=body)
        assert guessed.status_code == 404 and "no departure here recorded as died" in guessed.json()["detail"]
        assert clinician.post(correction, json={**body, "patient_id": str(other_id)}).status_code == 404
        unwanted = clinician.post(correction, json={**body, "disposition": "admitted"})
        assert unwanted.status_code == 422 and "corrected to one of discharged" in unwanted.json()["detail"]
        assert not changed(before, counts.read())

    corrected = clinician.post(correction, json=body)
    assert corrected.status_code == 200, corrected.text
    assert corrected.json()["disposition"] == "discharged"
    listed = clinician.get(f"/api/t/{facility.slug}/deaths/to-certify").json()
    assert str(visit["id"]) not in {row["encounter_id"] for row in listed}
    assert clinician.post(correction, json=body).status_code == 404  # corrected already


def _expected(facility, patient: str) -> str:
    return f"/api/t/{facility.slug}/patients/{patient}/expected-discharge"


def test_the_expected_discharge_date_is_set_changed_with_its_history_and_counted(api, token_client, db, facility,
                                                                                 other_facility, bed_manager):
    """A clinician says a patient admitted three days ago goes home tomorrow, then today: each a version of the
    stay's date, the first kept in its history; the bed board and the command centre's counts show the current one,
    the wards' counts adding up to the facility's. A day before the admission, a mistyped year or the same date again
    is a 422 naming expected_on, nothing written; the bed manager may read but not set it; another facility's
    clinician, a guessed patient, one not admitted and another facility's patient are refused."""
    base = f"/api/t/{facility.slug}"
    with db.tenant(facility.slug) as conn:
        patient, waiting = str(new_patient(conn, bed_manager)), str(new_patient(conn, bed_manager))
    admitted_at = dt.datetime.now(dt.UTC) - dt.timedelta(days=3)
    stay = api.post(f"{base}/admissions", json={"patient_id": patient, "ward_code": "GEN",
                                                "at": admitted_at.isoformat()}).json()
    today = dt.datetime.now(FACILITY_ZONE).date()
    before = api.get(f"{base}/command-center").json()["expected_discharges"]
    clinician = token_client(facility.slug, role="clinician")

    first = clinician.put(_expected(facility, patient), json={"expected_on": str(today + dt.timedelta(days=1))})
    assert first.status_code == 200, first.text
    assert first.json()["expectation"] == "tomorrow" and first.json()["stay_id"] == stay["id"]
    changed = clinician.put(_expected(facility, patient), json={"expected_on": str(today), "note": "after physio"})
    assert changed.status_code == 200 and changed.json()["expectation"] == "today", changed.text
    read = api.get(_expected(facility, patient)).json()  # the bed manager reads it
    assert read["expected_on"] == str(today) and read["note"] == "after physio"
    assert [(v["expected_on"], v["status"]) for v in read["versions"]] == [
        (str(today + dt.timedelta(days=1)), "final"), (str(today), "amended")]
    with db.tenant(facility.slug) as conn:
        chain = conn.execute(sa.text("SELECT supersedes FROM entry WHERE id = :id"),
                             {"id": changed.json()["entry_id"]}).scalar()
    assert str(chain) == first.json()["entry_id"]  # a change supersedes, never overwrites
    board = api.get(f"{base}/beds", params={"ward": "GEN"}).json()[0]["bed_list"]
    assert next(b for b in board if b["code"] == stay["bed_code"])["expected_discharge_on"] == str(today)

    after = api.get(f"{base}/command-center").json()["expected_discharges"]
    assert (after["today"], after["tomorrow"]) == (before["today"] + 1, before["tomorrow"])
    for count in ("admitted", "today", "tomorrow", "overdue", "not_set"):
        assert after[count] == sum(w[count] for w in after["wards"])
    gen = next(w for w in after["wards"] if w["code"] == "GEN")
    assert gen["today"] == next(w for w in before["wards"] if w["code"] == "GEN")["today"] + 1
    overdue = clinician.put(_expected(facility, patient), json={"expected_on": str(today - dt.timedelta(days=1))})
    assert overdue.status_code == 200 and overdue.json()["expectation"] == "overdue"
    assert api.get(f"{base}/command-center").json()["expected_discharges"]["overdue"] == before["overdue"] + 1

    with db.tenant(facility.slug) as conn:
        entries = conn.execute(sa.text("SELECT count(*) FROM entry")).scalar()
    admitted_on = admitted_at.astimezone(FACILITY_ZONE).date()
    for body, says in [
            ({"expected_on": str(admitted_on - dt.timedelta(days=1))},
             f"is before the admission on {admitted_on:%d %B %Y}"),
            ({"expected_on": str(today.replace(year=today.year + 2))}, "is more than a year ahead: check the year"),
            ({"expected_on": str(today - dt.timedelta(days=1))}, "is already the expected discharge date")]:
        refused = clinician.put(_expected(facility, patient), json=body)
        assert refused.status_code == 422 and says in refused.json()["detail"], refused.text
        assert refused.json()["field"] == "expected_on"
    assert clinician.put(_expected(facility, patient), json={"expected_on": "tomorrow"}).status_code == 422
    assert api.put(_expected(facility, patient), json={"expected_on": str(today)}).status_code == 403
    intruder = token_client(other_facility.slug, role="clinician")
    assert intruder.put(_expected(facility, patient), json={"expected_on": str(today)}).status_code == 403
    assert intruder.get(_expected(facility, patient)).status_code == 403
    with db.tenant(other_facility.slug) as conn:
        theirs = str(new_patient(conn, bed_manager))
    for someone in (GUESS, waiting, theirs):  # guessed, not admitted, another facility's
        missing = clinician.put(_expected(facility, someone), json={"expected_on": str(today)})
        assert missing.status_code == 404 and "not admitted here" in missing.json()["detail"], missing.text
    with db.tenant(facility.slug) as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM entry")).scalar() == entries
        assert conn.execute(sa.text("SELECT expected_discharge_on FROM inpatient_stay WHERE id = :id"),
                            {"id": stay["id"]}).scalar() == today - dt.timedelta(days=1)
