"""Today's patients: the list a clinician lands on, as a page (/t/<facility>/today) and as the API
(/api/t/<facility>/encounters/today). Which encounters are today's in the facility's own time zone, "mine"
and "all", the audit of each patient listed, who may open it, and refusals from another facility."""

from __future__ import annotations

import datetime as dt
import uuid
import zoneinfo

import pytest
import sqlalchemy as sa
from litestar.testing import TestClient

from appliance.layers.clinical import service, worklist
from appliance.layers.clinical.models import encounter
from appliance.layers.clinical.schemas import EncounterIn, NoteIn, ResultIn, ServiceRequestIn
from appliance.layers.operations import scheduling
from appliance.substrate import audit, identity
from appliance.substrate.principal import Principal
from tests.layers.clinical.conftest import CLINICAL_CONFIG, new_patient

# UTC+14 all year: the facility's day and UTC's differ for 14 hours of every day, so a list that took
# "today" from the server's clock would miss or add a boundary encounter whenever the suite runs.
ZONE = "Pacific/Kiritimati"


def principal_of(person, tenant: str) -> Principal:
    return Principal(account_id=person.account_id, kind="staff", display_name=f"Test {person.role}", tenant=tenant,
                     role=person.role)


@pytest.fixture(scope="module")
def facility(tenant_factory):
    return tenant_factory(name="Equator Line Hospital", timezone=ZONE, **CLINICAL_CONFIG)


@pytest.fixture(scope="module")
def elsewhere(tenant_factory):
    return tenant_factory(name="Elsewhere Hospital")


@pytest.fixture(scope="module")
def doctors(person_factory, facility):
    return person_factory("clinician", facility.slug), person_factory("clinician", facility.slug)


@pytest.fixture(scope="module")
def day(db, facility, elsewhere, doctors):
    """Encounters around the facility's today: those that are today's and those that are not."""
    dr_a, dr_b = (principal_of(d, facility.slug) for d in doctors)
    desk = Principal(account_id=uuid.uuid4(), kind="staff", display_name="Desk", tenant=facility.slug,
                     role="registrar")
    _, begins, ends = worklist.facility_day(zoneinfo.ZoneInfo(ZONE))
    made: dict[str, dict] = {}
    with db.tenant(facility.slug) as conn:
        def visit(key: str, family: str, by: Principal, **encounter_in) -> dict:
            patient = new_patient(conn, desk, family_name=family)
            opened = service.open_encounter(conn, by, patient["id"], EncounterIn.model_validate(encounter_in))
            made[key] = {"patient": patient, "encounter": opened}
            return opened

        visit("seen", "Seenbyanna", dr_a, encounter_class="outpatient", status="in_progress", reason="Cough")
        waiting = visit("waiting", "Waitingforben", desk, encounter_class="emergency", reason="Fall")
        service.write_note(conn, dr_b, made["waiting"]["patient"]["id"],
                           NoteIn(title="Triage", text="Seen briefly", encounter_id=waiting["id"]))
        visit("expected", "Expectedearly", desk, encounter_class="outpatient", status="planned",
              planned_for=begins + dt.timedelta(minutes=30))
        visit("expected_late", "Expectedlate", desk, encounter_class="outpatient", status="planned",
              planned_for=ends - dt.timedelta(minutes=30))
        visit("tomorrow", "Tomorrowonly", desk, encounter_class="outpatient", status="planned",
              planned_for=ends + dt.timedelta(minutes=30))
        visit("yesterday", "Missedyesterday", desk, encounter_class="outpatient", status="planned",
              planned_for=begins - dt.timedelta(minutes=30))
        done = visit("done", "Donetoday", desk, encounter_class="outpatient")
        service.transition_encounter(conn, desk, made["done"]["patient"]["id"], done["id"], "in_progress")
        service.transition_encounter(conn, desk, made["done"]["patient"]["id"], done["id"], "finished")
        before = visit("done_before", "Donebefore", desk, encounter_class="outpatient")
        service.transition_encounter(conn, desk, made["done_before"]["patient"]["id"], before["id"], "in_progress")
        service.transition_encounter(conn, desk, made["done_before"]["patient"]["id"], before["id"], "finished")
        conn.execute(sa.update(encounter).where(encounter.c.id == before["id"])
                     .values(ended_at=begins - dt.timedelta(hours=1)))  # finished before today began
        cancelled = visit("cancelled", "Cancelledtoday", desk, encounter_class="outpatient", status="planned",
                          planned_for=begins + dt.timedelta(hours=2))
        service.transition_encounter(conn, desk, made["cancelled"]["patient"]["id"], cancelled["id"], "cancelled")
    other_desk = Principal(account_id=uuid.uuid4(), kind="staff", display_name="Desk", tenant=elsewhere.slug,
                           role="registrar")
    with db.tenant(elsewhere.slug) as conn:
        stranger = new_patient(conn, other_desk, family_name="Strangerelsewhere")
        service.open_encounter(conn, other_desk, stranger["id"], EncounterIn(encounter_class="outpatient"))
    return made


TODAYS = {"seen", "waiting", "expected", "expected_late", "done"}


def same_encounters(rows: list[dict], day: dict, keys) -> bool:
    return {r["id"] for r in rows} == {day[k]["encounter"]["id"] for k in keys}


def test_todays_encounters_are_the_facilitys_day_being_seen_first(db, facility, doctors, day):
    dr_a = principal_of(doctors[0], facility.slug)
    with db.tenant(facility.slug) as conn:
        today = worklist.todays_encounters(conn, dr_a, tz=zoneinfo.ZoneInfo(ZONE))
    assert same_encounters(today["encounters"], day, TODAYS), [r["family_name"] for r in today["encounters"]]
    assert [r["status"] for r in today["encounters"]][:2] == ["in_progress", "arrived"]
    assert today["encounters"][-1]["status"] == "finished"
    assert today["date"] == dt.datetime.now(zoneinfo.ZoneInfo(ZONE)).date()
    assert today["counts"] == {"all": 5, "mine": 1} and not today["cut_short"]


def test_mine_is_what_the_clinician_opened_or_wrote_in(db, facility, doctors, day):
    dr_a, dr_b = (principal_of(d, facility.slug) for d in doctors)
    with db.tenant(facility.slug) as conn:
        for doctor, theirs in ((dr_a, {"seen"}), (dr_b, {"waiting"})):
            mine = worklist.todays_encounters(conn, doctor, tz=zoneinfo.ZoneInfo(ZONE), whose="mine")
            assert same_encounters(mine["encounters"], day, theirs)
            assert mine["counts"] == {"all": 5, "mine": 1}


def test_the_page_links_each_patient_to_the_chart_and_audits_each_read(db, app, facility, doctors, day):
    client = TestClient(app=app, raise_server_exceptions=False)
    with db.control() as conn:
        client.cookies.set("healthos_session", identity.start_session(conn, doctors[1].account_id, mfa_passed=True))
    page = client.get(f"/t/{facility.slug}/today")
    assert page.status_code == 200, page.text
    for key in TODAYS:
        assert f'/t/{facility.slug}/patients/{day[key]["patient"]["id"]}/chart"' in page.text, key
    for key in ("tomorrow", "yesterday", "done_before", "cancelled"):
        assert day[key]["patient"]["family_name"].upper() not in page.text, key
    assert "STRANGERELSEWHERE" not in page.text
    assert "All at this facility (5)" in page.text and "Mine (1)" in page.text
    assert "Being seen" in page.text and "Emergency visit" in page.text and 'aria-current="page">Today' in page.text

    mine = client.get(f"/t/{facility.slug}/today", params={"whose": "mine"})
    assert mine.status_code == 200
    assert "WAITINGFORBEN" in mine.text and "SEENBYANNA" not in mine.text
    for key in TODAYS:
        events = [e for e in audit.patient_access_log(db, facility.slug, day[key]["patient"]["id"])
                  if e.who.get("account") == str(doctors[1].account_id)]
        assert any(e.event_type == "record.encounter.read" for e in events), key
    # The 'mine' view read one patient only: the others' logs hold the one read of the 'all' view.
    seen = [e for e in audit.patient_access_log(db, facility.slug, day["seen"]["patient"]["id"])
            if e.who.get("account") == str(doctors[1].account_id)]
    assert len(seen) == 1

    assert client.get(f"/t/{facility.slug}/today", params={"whose": "everyone"}).status_code == 400


def test_a_clinician_lands_on_it_and_other_roles_may_not_open_it(signed_in, facility, day):
    clinician = signed_in("clinician", facility.slug)
    assert clinician.get(f"/t/{facility.slug}", follow_redirects=False).headers["location"] == \
        f"/t/{facility.slug}/today"
    assert f'href="/t/{facility.slug}/today"' in clinician.get("/").text
    for role in ("nurse", "registrar", "billing_clerk", "bed_manager", "facility_admin"):
        other = signed_in(role, facility.slug)
        assert other.get(f"/t/{facility.slug}/today").status_code == 403, role
        assert other.get(f"/api/t/{facility.slug}/encounters/today").status_code == 403, role
        assert f'href="/t/{facility.slug}/today"' not in other.get(f"/t/{facility.slug}", follow_redirects=True).text


def test_a_nurse_a_bed_manager_and_a_billing_clerk_land_on_their_worklists_not_on_patient_search(signed_in, facility):
    """Each may search for a patient, the navigation's page before their own: a nurse who signed in was sent to an
    empty search box, her ward's worklist (what the README says nurses work from) two rows down the menu."""
    for role, own_page in (("nurse", "/ward"), ("bed_manager", "/beds"), ("billing_clerk", "/billing"),
                           ("registrar", "/patients")):
        client = signed_in(role, facility.slug)
        landed = client.get(f"/t/{facility.slug}", follow_redirects=False)
        assert landed.headers["location"] == f"/t/{facility.slug}{own_page}", role


def test_another_facilitys_session_or_token_is_refused_and_sees_nobody(signed_in, token_client, facility, elsewhere,
                                                                       day):
    intruder = signed_in("clinician", elsewhere.slug)
    for path in (f"/t/{facility.slug}/today", f"/t/{facility.slug}/today?whose=mine",
                 f"/api/t/{facility.slug}/encounters/today"):
        refused = intruder.get(path)
        assert refused.status_code == 403, path
        assert "SEENBYANNA" not in refused.text.upper()
    token = token_client(elsewhere.slug, role="clinician")
    assert token.get(f"/api/t/{facility.slug}/encounters/today").status_code == 403
    guessed = intruder.get(f"/t/no_such_{uuid.uuid4().hex[:8]}/today")
    assert guessed.status_code == 404
    # Its own list holds its own patient and none of this facility's.
    own = intruder.get(f"/t/{elsewhere.slug}/today")
    assert own.status_code == 200 and "STRANGERELSEWHERE" in own.text and "SEENBYANNA" not in own.text


def test_the_api_filters_by_whose_and_refuses_anything_else(token_client, app, facility, day):
    api = token_client(facility.slug, role="clinician")
    everyone = api.get(f"/api/t/{facility.slug}/encounters/today")
    assert everyone.status_code == 200, everyone.text
    body = everyone.json()
    assert body["whose"] == "all" and body["timezone"] == ZONE and body["counts"]["all"] == 5
    assert {e["id"] for e in body["encounters"]} == {str(day[k]["encounter"]["id"]) for k in TODAYS}
    assert set(body["encounters"][0]) == {"id", "patient_id", "mrn", "family_name", "given_names", "birth_date", "sex",
                                          "encounter_class", "status", "reason", "ward_code", "planned_for",
                                          "started_at", "ended_at", "opened_by", "mine"}
    mine = api.get(f"/api/t/{facility.slug}/encounters/today", params={"whose": "mine"})
    assert mine.status_code == 200 and mine.json()["encounters"] == []  # the token's account wrote nothing
    bad = api.get(f"/api/t/{facility.slug}/encounters/today", params={"whose": "everyone"})
    assert bad.status_code == 422 and "whose" in bad.json()["detail"]

    schema = api.get("/schema/openapi.json").json()
    operation = schema["paths"]["/api/t/{tenant}/encounters/today"]["get"]
    assert operation["operationId"] == "ClinicalListTodaysEncounters"
    assert {"bearer": ["clinical.worklist.read"]} in operation["security"]
    whose = next(p for p in operation["parameters"] if p["name"] == "whose")
    assert set(whose["schema"]["enum"]) == {"mine", "all"} and "opened" in whose["description"]


def test_results_to_review_are_the_clinicians_orders_and_every_critical_one_critical_first(db, app, signed_in, facility,
                                                                                         elsewhere, doctors, day):
    """A critical result reached the chart and nothing told anyone: the clinician saw it only by opening that
    patient's chart (and one for a patient who went home was seen at their next visit). Today's patients now
    lists the results waiting for the clinician's review: their own orders' and every critical one, critical
    first, the flag in words, each linked to the result; another's order's result that is not critical, a
    signed one and one for a patient never seen here are not listed; each listed patient's read is audited."""
    dr_a, dr_b = (principal_of(d, facility.slug) for d in doctors)
    lab = Principal(account_id=uuid.uuid4(), kind="staff", display_name="Lab", tenant=facility.slug, role="clinician")
    seen, waiting, expected = (day[k]["patient"]["id"] for k in ("seen", "waiting", "expected"))
    with db.tenant(facility.slug) as conn:
        glucose_order = service.order_test(conn, dr_a, seen, ServiceRequestIn(code="2345-7"))
        high = service.record_result(conn, lab, seen, ResultIn(code="2345-7", value="9.1",
                                                               service_request_id=glucose_order["id"]))
        critical = service.record_result(conn, lab, waiting, ResultIn(code="2345-7", value="1.6", flag="LL"))
        others_order = service.order_test(conn, dr_b, expected, ServiceRequestIn(code="70569-9"))
        others_result = service.record_result(conn, lab, expected, ResultIn(
            code="70569-9", value="negative", service_request_id=others_order["id"]))
        signed = service.record_result(conn, lab, expected, ResultIn(code="2345-7", value="31.0", flag="HH"))
        service.sign_result(conn, dr_b, expected, signed["id"], None)
        unseen = new_patient(conn, lab, family_name="Laboratoryonly")
        service.record_result(conn, lab, unseen["id"], ResultIn(code="2345-7", value="1.2", flag="LL"))
    client = TestClient(app=app, raise_server_exceptions=False)
    with db.control() as conn:
        client.cookies.set("healthos_session", identity.start_session(conn, doctors[0].account_id, mfa_passed=True))
    page = client.get(f"/t/{facility.slug}/today")
    assert page.status_code == 200, page.text
    section = page.text.split('id="results-to-review"')[1].split("</section>")[0]
    assert "1 critical" in section
    rows = section.split("<tbody>")[1].split("</tr>")[:-1]
    assert len(rows) == 2, rows
    assert "WAITINGFORBEN" in rows[0] and "1.6 mmol/L" in rows[0] and "Critical low" in rows[0]
    assert f'/patients/{waiting}/results#result-{critical["id"]}"' in rows[0]
    assert "SEENBYANNA" in rows[1] and "9.1 mmol/L" in rows[1] and "High" in rows[1] and ">you</td>" in rows[1]
    assert "LABORATORYONLY" not in section and "EXPECTEDEARLY" not in section
    events = [e for e in audit.patient_access_log(db, facility.slug, seen)
              if e.who.get("account") == str(doctors[0].account_id) and e.event_type == "record.result.read"]
    assert events, "the list's read of the result is audited"
    # The other clinician's list holds the critical one and their own order's, not dr_a's; the chart's banner
    # names the critical one first.
    with db.tenant(facility.slug) as conn:
        theirs = worklist.results_to_review(conn, dr_b)
    assert [r["id"] for r in theirs["results"]] == [critical["id"], others_result["id"]]
    chart = client.get(f"/t/{facility.slug}/patients/{waiting}/chart").text
    banner = chart.split('aria-label="Results to review"')[1].split("</div>")[0]
    assert "1 critical" in banner and '<span class="badge flag-critical">Critical low</span>' in banner
    assert high["flag"] == "H"
    # Another facility's clinician sees none of it, on their own list or on this facility's.
    intruder = signed_in("clinician", elsewhere.slug)
    assert "WAITINGFORBEN" not in intruder.get(f"/t/{elsewhere.slug}/today").text
    assert intruder.get(f"/t/{facility.slug}/today").status_code == 403


def test_another_clinicians_critical_result_names_who_ordered_it(db, app, facility, doctors, day):
    """A critical result of another's order reached everyone's list with its 'Ordered by' blank: the clinician who
    saw it first could not tell whom to tell. It now names the order's author, and says a result answering no
    order has none."""
    dr_b = principal_of(doctors[1], facility.slug)
    lab = Principal(account_id=uuid.uuid4(), kind="staff", display_name="Lab", tenant=facility.slug, role="clinician")
    waiting = day["waiting"]["patient"]["id"]
    with db.control() as conn:
        conn.execute(sa.update(identity.account).where(identity.account.c.id == doctors[1].account_id)
                     .values(display_name="Dr Wambui Kariuki"))
    with db.tenant(facility.slug) as conn:
        order = service.order_test(conn, dr_b, waiting, ServiceRequestIn(code="2345-7"))
        ordered = service.record_result(conn, lab, waiting, ResultIn(code="2345-7", value="1.4",
                                                                     service_request_id=order["id"]))
        unordered = service.record_result(conn, lab, waiting, ResultIn(code="2345-7", value="35.5"))
    client = TestClient(app=app, raise_server_exceptions=False)
    with db.control() as conn:
        client.cookies.set("healthos_session", identity.start_session(conn, doctors[0].account_id, mfa_passed=True))
    section = client.get(f"/t/{facility.slug}/today").text.split('id="results-to-review"')[1].split("</section>")[0]
    rows = {row.split("#result-")[1].split('"')[0]: row for row in section.split("<tbody>")[1].split("</tr>")[:-1]}
    assert '<td class="ordered-by">Dr Wambui Kariuki</td>' in rows[str(ordered["id"])]
    assert '<td class="ordered-by"><span class="muted">no order</span></td>' in rows[str(unordered["id"])]


def test_the_list_keeps_to_one_class_of_visit(db, app, facility, doctors, day):
    """At a hospital the list began with every inpatient on the wards (74 at the demo's referral hospital)
    and the outpatients waiting for the clinic came last. A clinician now keeps it to outpatient visits,
    emergency visits or inpatient admissions, each tab with how many it holds, 'mine' kept alongside."""
    client = TestClient(app=app, raise_server_exceptions=False)
    with db.control() as conn:
        client.cookies.set("healthos_session", identity.start_session(conn, doctors[1].account_id, mfa_passed=True))
    page = client.get(f"/t/{facility.slug}/today", params={"visit": "emergency"})
    assert page.status_code == 200, page.text
    listed = page.text.split('id="todays-patients"')[1]
    assert "WAITINGFORBEN" in listed and "SEENBYANNA" not in listed and "DONETODAY" not in listed
    assert "Outpatient visits (4)" in page.text and "Emergency visits (1)" in page.text
    assert "Inpatient admissions (0)" in page.text
    assert f'href="/t/{facility.slug}/today?whose=mine&amp;visit=emergency"' in page.text
    outpatients = client.get(f"/t/{facility.slug}/today", params={"visit": "outpatient"}).text
    assert "SEENBYANNA" in outpatients and "WAITINGFORBEN" not in outpatients.split('id="todays-patients"')[1]
    none = client.get(f"/t/{facility.slug}/today", params={"whose": "mine", "visit": "inpatient"})
    assert none.status_code == 200 and "No inpatient admission is among your patients today" in none.text
    assert client.get(f"/t/{facility.slug}/today", params={"visit": "ward"}).status_code == 400
    with db.tenant(facility.slug) as conn:
        dr_b = principal_of(doctors[1], facility.slug)
        mine = worklist.todays_encounters(conn, dr_b, tz=zoneinfo.ZoneInfo(ZONE), whose="mine", visit="emergency")
    assert same_encounters(mine["encounters"], day, {"waiting"})
    assert mine["visits"] == {"outpatient": 0, "emergency": 1, "inpatient": 0}


def test_those_booked_for_today_and_not_yet_checked_in_are_expected(db, signed_in, tenant_factory):
    """A clinic's appointments reach the list before their visits exist: booked for the facility's today
    and not yet checked in (a check-in opens the visit, listed above from then on), each read audited; not
    under "mine", which the record cannot say of an appointment; another day or a cancelled one not."""
    clinics = [{"code": "MOPC", "name": "Medical outpatient clinic", "slot_minutes": 30,
                "sessions": [{"weekdays": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"], "start": "00:00",
                              "end": "23:30"}]}]
    place = tenant_factory(name="Clinic Day Hospital", timezone=ZONE, clinics=clinics, **CLINICAL_CONFIG)
    desk = Principal(account_id=uuid.uuid4(), kind="staff", display_name="Desk", tenant=place.slug, role="registrar")
    today, _, _ = worklist.facility_day(zoneinfo.ZoneInfo(ZONE))
    booked: dict[str, dict] = {}
    with db.tenant(place.slug) as conn:
        for key, day, slot_index in (("coming", today, 20), ("arrived", today, 21), ("cancelled", today, 22),
                                     ("tomorrow", today + dt.timedelta(days=1), 20)):
            patient = new_patient(conn, desk, family_name=f"Booked{key}")
            slot = scheduling.slots(conn, "MOPC", day)[slot_index]
            booked[key] = {"patient": patient,
                           "appointment": scheduling.book(conn, desk, patient["id"], slot["id"], "review",
                                                          backdated=True)}
        scheduling.change(conn, desk, booked["arrived"]["appointment"]["id"], "checked_in")
        scheduling.change(conn, desk, booked["cancelled"]["appointment"]["id"], "cancelled", reason="travelling")

    clinician = signed_in("clinician", place.slug)
    page = clinician.get(f"/t/{place.slug}/today")
    assert page.status_code == 200, page.text
    expected = page.text.split('id="expected"')[1].split("</section>")[0]
    assert "BOOKEDCOMING" in expected and "Medical outpatient clinic" in expected
    assert f'/t/{place.slug}/patients/{booked["coming"]["patient"]["id"]}/chart"' in expected
    for key in ("arrived", "cancelled", "tomorrow"):
        assert f"BOOKED{key.upper()}" not in expected, key
    assert "BOOKEDARRIVED" in page.text.split('id="todays-patients"')[1]  # its visit, opened at check-in
    reads = [e for e in audit.patient_access_log(db, place.slug, booked["coming"]["patient"]["id"])
             if e.event_type == "record.appointment.read"]
    assert len(reads) == 1 and reads[0].who["role"] == "clinician"
    assert 'id="expected"' not in clinician.get(f"/t/{place.slug}/today", params={"whose": "mine"}).text
    assert 'id="expected"' not in clinician.get(f"/t/{place.slug}/today", params={"visit": "inpatient"}).text
