"""Patient safety incidents (appliance/layers/operations/incidents.py) through their API: reporting and its refusals,
anonymity, the quality manager's review and its history, who may read what, and the falls rate over a month built by
hand."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
import zoneinfo

import pytest
import sqlalchemy as sa

from appliance.layers.clinical import service as clinical
from appliance.layers.clinical.schemas import EncounterIn
from appliance.layers.operations import adt, incidents, incidents_demo, kpis
from appliance.substrate import audit, identity
from appliance.substrate.kpis import Window
from tests.layers.operations.conftest import new_patient

NAIROBI = zoneinfo.ZoneInfo("Africa/Nairobi")


@pytest.fixture(scope="module")
def patients(db, facility, other_facility, bed_manager):
    with db.tenant(facility.slug) as conn:
        cared_for = new_patient(conn, bed_manager, family_name="Wanjiru")
        clinical.open_encounter(conn, bed_manager, cared_for, EncounterIn(encounter_class="outpatient"))
    with db.tenant(other_facility.slug) as conn:
        elsewhere = new_patient(conn, dataclasses.replace(bed_manager, tenant=other_facility.slug))
    return {"cared_for": cared_for, "elsewhere": elsewhere}


def fall(**overrides) -> dict:
    body = {"occurred_at": (dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)).isoformat(), "ward_code": "GEN",
            "incident_type": "fall", "description": "Found on the floor beside the bed at the night round.",
            "outcome": "moderate", "immediate_action": "Examined by the doctor on call; X-ray of the hip ordered."}
    return {**body, **overrides}


def count(db, facility, table: str = "incident") -> int:
    with db.tenant(facility.slug) as conn:
        return conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one()


def api(facility) -> str:
    return f"/api/t/{facility.slug}/incidents"


def test_refused_reports_write_nothing(db, facility, other_facility, token_client, patients):
    nurse = token_client(facility.slug, role="nurse")
    before = count(db, facility)
    refusals = {
        "occurred_at": fall(occurred_at=(dt.datetime.now(dt.UTC) + dt.timedelta(hours=3)).isoformat()),
        "ward_code": fall(ward_code="NOWHERE"),
        "incident_type": fall(incident_type="bad_luck"),
        "description": fall(description=""),
        "immediate_action": fall(immediate_action="x" * 2001),
        "patient_id": fall(patient_id=str(patients["elsewhere"])),  # another facility's patient, as a guessed id is
        "outcome": fall(outcome="catastrophic"),
    }
    for field, body in refusals.items():
        answer = nurse.post(api(facility), json=body)
        assert answer.status_code == 422, (field, answer.text)
        assert answer.json()["detail"], field
        assert field in (answer.json().get("field") or answer.text), field
    assert count(db, facility) == before


def test_a_report_reviewed_and_closed_keeps_its_history_and_its_reader_audited(db, facility, token_client, signed_in,
                                                                                 patients):
    nurse = token_client(facility.slug, role="nurse")
    reported = nurse.post(api(facility), json=fall(patient_id=str(patients["cared_for"]), outcome="severe"))
    assert reported.status_code == 201, reported.text
    incident = reported.json()
    assert (incident["status"], incident["immediate_review"], incident["names_patient"]) == ("open", True, True)
    quiet = nurse.post(api(facility), json=fall(outcome="near_miss", incident_type="medication",
                                                description="Ten times the dose drawn up; the second check caught it."))
    assert quiet.status_code == 201

    manager = token_client(facility.slug, role="quality_manager")
    listed = manager.get(api(facility)).json()
    assert listed[0]["id"] == incident["id"]  # severe harm first, for immediate review
    assert "patient_id" not in listed[0] and "description" not in listed[0]
    assert [r["id"] for r in manager.get(api(facility), params={"incident_type": "medication"}).json()] == \
        [quiet.json()["id"]]
    assert manager.get(api(facility), params={"status": "sideways"}).status_code == 422

    review = f"{api(facility)}/{incident['id']}/review"
    assert manager.post(review, json={"kind": "closed", "note": "Too soon."}).status_code == 409
    assert manager.post(review, json={"kind": "contributing_factors", "factors": []}).status_code == 422
    assert manager.post(review, json={"kind": "action", "action": "Bed rails"}).status_code == 422
    assert count(db, facility, "incident_review") == 0
    for event in ({"kind": "contributing_factors", "factors": ["staff", "environment"]},
                  {"kind": "action", "action": "Falls risk assessment on admission", "action_owner": "Ward sister GEN",
                   "action_due": (dt.date.today() + dt.timedelta(days=30)).isoformat()},
                  {"kind": "severity_confirmed", "harm": "moderate"},
                  {"kind": "closed", "note": "Night rounds now check the bed's height and the call bell."}):
        assert manager.post(review, json=event).status_code == 201, event
    assert manager.post(review, json={"kind": "note", "note": "Late."}).status_code == 409
    whole = manager.get(f"{api(facility)}/{incident['id']}").json()
    assert [e["kind"] for e in whole["review"]] == ["contributing_factors", "action", "severity_confirmed", "closed"]
    assert (whole["status"], whole["confirmed_harm"], whole["immediate_review"]) == ("closed", "moderate", False)
    assert whole["patient"]["id"] == str(patients["cared_for"])

    # The reporter sees their report's status and what was learned, not the review's workings.
    mine = nurse.get(f"{api(facility)}/mine").json()
    assert {r["id"]: r["status"] for r in mine}[incident["id"]] == "closed"
    own = nurse.get(f"{api(facility)}/{incident['id']}").json()
    assert own["review"] == [] and own["learning_summary"].startswith("Night rounds")

    # The month's counts, by kind and harm, for the command center: counts only.
    month = manager.get(f"{api(facility)}/summary").json()
    falls = next(row for row in month["by_type"] if row["incident_type"] == "fall")
    assert falls["by_outcome"]["severe"] >= 1 and month["by_outcome"]["near_miss"] >= 1
    assert manager.get(f"{api(facility)}/summary", params={"month": "2026-13"}).status_code == 422

    log = audit.patient_access_log(db, facility.slug, patients["cared_for"])
    incident_events = [e.event_type for e in log if e.event_type.startswith("record.incident.")]
    assert incident_events[0] == "record.incident.create"
    assert {"record.incident.read", "record.incident.update"} <= set(incident_events)


def test_an_anonymous_report_names_its_reporter_nowhere_the_facility_reads(db, facility, token_client, patients,
                                                                           signed_in):
    nurse = token_client(facility.slug, role="nurse")
    answer = nurse.post(api(facility), json=fall(anonymous=True, patient_id=str(patients["cared_for"]),
                                                 outcome="mild"))
    assert answer.status_code == 201
    incident_id = answer.json()["id"]
    with db.tenant(facility.slug) as conn:
        stored = conn.execute(sa.text("SELECT * FROM incident WHERE id = :id"), {"id": incident_id}).mappings().one()
    assert stored["anonymous"] and stored["reported_by"] is None and stored["reporter_name"] is None
    machine_account = _account_of(db, nurse.token)
    assert machine_account not in {str(v) for v in stored.values()}
    manager = token_client(facility.slug, role="quality_manager")
    listed = {r["id"]: r for r in manager.get(api(facility)).json()}
    assert listed[incident_id]["reporter_name"] is None and listed[incident_id]["anonymous"]
    assert manager.get(f"{api(facility)}/{incident_id}").json()["reporter_name"] is None
    # Nor its time: to the hour only, in the answer, the list and the report, or beside the audit log's times the
    # minute would say who was at a screen then. The table keeps the exact time, for the month's counts.
    for given in (answer.json(), listed[incident_id], manager.get(f"{api(facility)}/{incident_id}").json()):
        reported = dt.datetime.fromisoformat(given["reported_at"])
        assert (reported.minute, reported.second, reported.microsecond) == (0, 0, 0), given["reported_at"]
        assert reported.astimezone(dt.UTC) == stored["reported_at"].astimezone(dt.UTC).replace(minute=0, second=0,
                                                                                                microsecond=0)
    # Nor its number: its place between two named reports, whose times are exact, would give the minute back.
    assert [given["number"] for given in (answer.json(), listed[incident_id])] == [None, None]
    assert manager.get(f"{api(facility)}/{incident_id}").json()["number"] is None
    assert all(isinstance(r["number"], int) for r in listed.values() if not r["anonymous"])
    quality = signed_in("quality_manager", facility.slug)
    page = quality.get(f"/t/{facility.slug}/incidents/{incident_id}").text
    said = page.split('id="reported">')[1].split("</dd>")[0]
    assert "in the hour from" in said and "anonymous" in said
    assert '<h1 id="incident-title">Anonymous incident report</h1>' in page
    row = quality.get(f"/t/{facility.slug}/incidents").text.split(f'id="incident-{incident_id}"')[1].split("</tr>")[0]
    assert f'/incidents/{incident_id}"><span title="An anonymous report has no number' in row
    # Nor do the command center's entries behind its figures (the bed manager's drill-down): the fall is "anonymous
    # report", and its days to close count from the hour, or they and the closing's time would give the minute.
    review = f"{api(facility)}/{incident_id}/review"
    for event in ({"kind": "severity_confirmed", "harm": "mild"}, {"kind": "closed", "note": "Bed rails checked."}):
        assert manager.post(review, json=event).status_code == 201, event
    now = dt.datetime.now(dt.UTC)
    with db.tenant(facility.slug) as conn:
        window = Window(now - dt.timedelta(hours=3), now + dt.timedelta(minutes=1), NAIROBI)
        [fell] = [e for e in kpis.falls_entries(conn, window, 100) if str(e["entry_id"]) == incident_id]
        [closed] = [e for e in kpis.incident_close_entries(conn, window, 100) if str(e["entry_id"]) == incident_id]
    assert fell["label"] == "fall on GEN: mild (anonymous report)"
    assert closed["label"] == "fall (anonymous report): report to closing"
    from_the_hour = stored["reported_at"].astimezone(dt.UTC).replace(minute=0, second=0, microsecond=0)
    assert float(closed["measure"]) * 86400 == pytest.approx((closed["occurred_at"] - from_the_hour).total_seconds())
    assert incident_id not in {r["id"] for r in nurse.get(f"{api(facility)}/mine").json()}
    assert nurse.get(f"{api(facility)}/{incident_id}").status_code == 404  # nobody's, not even the reporter's
    # The patient's access log names no one for it; the reporter is only in the report's own event, sealed in the
    # audit trail the regulator reads.
    log = audit.patient_access_log(db, facility.slug, patients["cared_for"])
    created = [e for e in log if e.event_type == "record.incident.create" and e.detail.get("reported") == "anonymously"]
    assert created and all(e.who["account"] is None for e in created)
    assert machine_account not in {e.who["account"] for e in log}
    sealed = [e for e in audit.read_events(db, facility.slug, event_type="operations.incident.report")
              if incident_id in str(e["event"])]
    assert sealed and machine_account in str(sealed[0]["event"]["agent"])


def test_named_reports_are_numbered_on_without_a_gap_where_an_anonymous_one_fell(db, facility, token_client):
    """Named, anonymous, named: the two named reports take consecutive numbers, and the anonymous one none, in the
    table as in the answers; the table itself refuses an anonymous report a number and a named one none."""
    nurse = token_client(facility.slug, role="nurse")
    before_count = count(db, facility)
    before, anonymous, after = (nurse.post(api(facility), json=fall(anonymous=anonymously)).json()
                                for anonymously in (False, True, False))
    assert after["number"] == before["number"] + 1 and anonymous["number"] is None
    with db.tenant(facility.slug) as conn:
        stored = conn.execute(sa.text("SELECT number FROM incident WHERE id = :id"), {"id": anonymous["id"]}).scalar()
    assert stored is None
    unnumbered = sa.text("""INSERT INTO incident (id, number, occurred_at, ward_code, incident_type, description,
        outcome, immediate_action, anonymous, reported_by, reporter_name) VALUES (:id, :number, now(), 'GEN', 'fall',
        'A fall.', 'none', 'Examined.', :anonymous, :by, :name)""")
    for check, anonymously, number in (("incident_numbered_when_named", True, after["number"] + 1),
                                       ("incident_numbered_when_named", False, None)):
        with pytest.raises(sa.exc.IntegrityError, match=check), db.tenant(facility.slug) as conn:
            conn.execute(unnumbered, {"id": uuid.uuid4(), "number": number, "anonymous": anonymously,
                                      "by": None if anonymously else uuid.uuid4(),
                                      "name": None if anonymously else "Nurse Test"})
    assert count(db, facility) == before_count + 3


def _account_of(db, token: str) -> str:
    with db.control() as conn:
        return str(identity.principal_for_token(conn, token).account_id)


def test_another_facility_a_guessed_id_and_another_reporter_are_refused(db, facility, other_facility, token_client,
                                                                          signed_in, patients):
    nurse = token_client(facility.slug, role="nurse")
    incident_id = nurse.post(api(facility), json=fall()).json()["id"]
    before = (count(db, facility), count(db, facility, "incident_review"))
    intruder = token_client(other_facility.slug, role="quality_manager")
    for answer in (intruder.get(api(facility)), intruder.get(f"{api(facility)}/{incident_id}"),
                   intruder.post(api(facility), json=fall()),
                   intruder.post(f"{api(facility)}/{incident_id}/review", json={"kind": "note", "note": "x"}),
                   intruder.get(f"{api(facility)}/summary")):
        assert answer.status_code == 403, answer.text
    # Their own facility's address with our id: not there.
    assert intruder.get(f"{api(other_facility)}/{incident_id}").status_code == 404
    assert intruder.post(f"{api(other_facility)}/{incident_id}/review",
                         json={"kind": "note", "note": "x"}).status_code == 404
    manager = token_client(facility.slug, role="quality_manager")
    guessed = uuid.uuid4()
    assert manager.get(f"{api(facility)}/{guessed}").status_code == 404
    assert manager.post(f"{api(facility)}/{guessed}/review", json={"kind": "note", "note": "x"}).status_code == 404
    colleague = signed_in("nurse", facility.slug)
    assert colleague.get(api(facility)).status_code == 403  # the review list is the quality manager's
    assert colleague.get(f"{api(facility)}/{incident_id}").status_code == 404  # another's report
    registrar = token_client(facility.slug, role="registrar")
    assert registrar.post(f"{api(facility)}/{incident_id}/review",
                          json={"kind": "note", "note": "x"}).status_code == 403
    assert (count(db, facility), count(db, facility, "incident_review")) == before


def test_falls_per_1000_occupied_bed_days_over_a_month_built_by_hand(db, facility, bed_manager, definitions):
    """February 2025, facility time: one stay of 10 days (1-11 Feb), one of 5 of its days (25 Jan - 6 Feb): 15
    occupied bed-days. Two falls that reached the patient on GEN count; a near miss, a fall in the ED (not an
    inpatient bed) and one in March do not: 2 / 15 x 1,000 = 133.33."""
    at = lambda day, month=2: dt.datetime(2025, month, day, tzinfo=NAIROBI)  # noqa: E731
    with db.tenant(facility.slug) as conn:
        first, second = new_patient(conn, bed_manager), new_patient(conn, bed_manager)
        adt.admit(conn, bed_manager, second, ward_code="GEN", at=at(25, 1))
        adt.discharge(conn, bed_manager, second, disposition="home", at=at(6))
        adt.admit(conn, bed_manager, first, ward_code="GEN", at=at(1))
        adt.discharge(conn, bed_manager, first, disposition="home", at=at(11))
        for ward_code, day, month, outcome in (("GEN", 3, 2, "mild"), ("GEN", 9, 2, "none"),
                                               ("GEN", 4, 2, "near_miss"), ("ED", 5, 2, "moderate"),
                                               ("GEN", 2, 3, "mild")):
            conn.execute(sa.text("""INSERT INTO incident (id, number, occurred_at, ward_code, incident_type,
                description, outcome, immediate_action, anonymous, reported_by, reporter_name)
                VALUES (:id, nextval('incident_named_number_seq'), :at, :ward, 'fall', 'A fall.', :outcome,
                        'Examined.', false, :by, 'Test')"""),
                {"id": uuid.uuid4(), "at": at(day, month), "ward": ward_code, "outcome": outcome,
                 "by": bed_manager.account_id})
        [february] = kpis.falls_per_1000_bed_days(conn, [Window(at(1), at(1, 3), NAIROBI)])
        entries = kpis.falls_entries(conn, Window(at(1), at(1, 3), NAIROBI), 10)
    assert (february.numerator, february.denominator) == (2, pytest.approx(15))
    assert february.value == pytest.approx(2 / 15 * 1000)
    assert [e["label"].split(":")[0] for e in entries] == ["fall on GEN", "fall on GEN"]
    assert "falls_per_1000_bed_days" in {d.id for d in definitions}


def test_the_demo_writes_a_year_of_reports_once(db, other_facility):
    written = incidents_demo.generate_incident_demo(db, other_facility.slug)
    assert (written["incident"], written["closed"], written["contributing_factors"]) == (10, 6, 8)
    assert incidents_demo.generate_incident_demo(db, other_facility.slug) == {}
    with db.tenant(other_facility.slug) as conn:
        listed = incidents.review_list(conn, NAIROBI)
    assert [r["status"] for r in listed].count("closed") == 6
    assert (listed[0]["immediate_review"], listed[0]["outcome"]) == (True, "severe")
    assert sum(r["anonymous"] for r in listed) == 1 and all(not r["names_patient"] for r in listed)


def test_a_time_long_past_and_a_month_out_of_range_are_refused_and_the_list_still_reads(db, facility, token_client):
    # A report dated 0001-01-01 at +14:00 falls before the year 1 in UTC: stored, it made the quality manager's list
    # a 500 for every reader from then on; a month of 9999 had no following month.
    nurse = token_client(facility.slug, role="nurse")
    before = count(db, facility)
    for when in ("0001-01-01T00:00:00+14:00", (dt.datetime.now(dt.UTC) - dt.timedelta(days=11 * 366)).isoformat()):
        answer = nurse.post(api(facility), json=fall(occurred_at=when))
        assert answer.status_code == 422 and answer.json()["field"] == "occurred_at", answer.text
    assert count(db, facility) == before
    manager = token_client(facility.slug, role="quality_manager")
    for path in ("", "/summary"):
        for month in ("9999-12", "0001-01"):
            answer = manager.get(f"{api(facility)}{path}", params={"month": month})
            assert answer.status_code == 422 and answer.json()["field"] == "month", (path, month, answer.text)
    assert manager.get(api(facility)).status_code == 200
