"""The imaging department's bench over real HTTP and the real record (appliance/layers/clinical/imaging.py): the
radiographer's role holds the worklist and 'performed', not the report and nothing of the chart; the worklist's
order, indication and audit; a study performed, then reported by a clinician (findings, impression, an unexpected
finding flagged) as the order's result on the ordering clinician's review list and the chart; a critical finding a
critical result, on every clinician's list and the ward's; a correction; and
refusals (422 with a sentence, 409 out of turn) writing nothing, another facility's credentials, guessed ids and a
lab order's id refused on every route."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
import sqlalchemy as sa
from pydantic import ValidationError

from appliance.layers.clinical import service, worklist
from appliance.layers.clinical.schemas import EncounterIn, ResultIn, ServiceRequestIn
from appliance.substrate import audit, record
from appliance.substrate.principal import Principal
from tests.layers.clinical.conftest import born_years_ago, new_patient

IMAGING = "/api/t/{tenant}/imaging"
XRAY, FBC, HB = "36643-5", "58410-2", "718-7"
REPORT = {"findings": "Right apical cavity with surrounding consolidation. No effusion.",
          "impression": "Appearances of active pulmonary tuberculosis.", "unexpected": True}


@pytest.fixture(scope="module")
def doctor(facility, person_factory) -> Principal:
    """The ordering clinician: the review list is of the orders they placed."""
    person = person_factory("clinician", facility.slug)
    return Principal(account_id=person.account_id, kind="staff", display_name="Dr Imaging Orders",
                     tenant=facility.slug, role="clinician")


@pytest.fixture(scope="module")
def studies(db, facility, doctor) -> dict:
    """A patient seen today with a routine chest X-ray (its indication given), a STAT one and a blood count (the
    laboratory's); a second patient with a routine X-ray ordered earlier."""
    with db.tenant(facility.slug) as conn:
        patient = new_patient(conn, doctor, family_name="Chebet", given_names="Mercy", sex="female",
                              birth_date=born_years_ago(41))
        visit = service.open_encounter(conn, doctor, patient["id"], EncounterIn(encounter_class="outpatient"))
        earlier = new_patient(conn, doctor, family_name="Mutua", given_names="John", sex="male",
                              birth_date=born_years_ago(7))
        first = service.order_test(conn, doctor, earlier["id"], ServiceRequestIn(code=XRAY))["id"]
    orders = {}
    for name, code, priority, why in (("routine", XRAY, "routine", "cough for 3 weeks, night sweats: ?TB"),
                                      ("stat", XRAY, "stat", "stab wound right chest: ?pneumothorax"),
                                      ("blood", FBC, "routine", None)):
        with db.tenant(facility.slug) as conn:  # a transaction each: an order's time is its transaction's
            orders[name] = service.order_test(conn, doctor, patient["id"], ServiceRequestIn(
                code=code, priority=priority, clinical_info=why, encounter_id=visit["id"]))["id"]
    return {"patient": patient["id"], "earlier": earlier["id"], "first": first, **orders}


@pytest.fixture(scope="module")
def radiographer(facility, token_client):
    """The facility's radiographer's API client (a token with the role's permissions)."""
    return token_client(facility.slug, role="radiographer")


@pytest.fixture(scope="module")
def radiologist(facility, token_client):
    """A clinician who reports (ACC-002's clinical.* holds clinical.imaging.report)."""
    return token_client(facility.slug, role="clinician")


@pytest.fixture(scope="module")
def token_client(app, db, policy):
    """The suite's token clients, made once for the module (tests/conftest.py's is per test)."""
    from litestar.testing import TestClient

    from appliance.substrate import identity

    def make(tenant: str, *, role: str):
        with db.control() as conn:
            machine = identity.create_account(conn, policy, kind="machine", display_name=f"Imaging {role}",
                                              role="facility_admin", tenant=tenant,
                                              email=f"img-{uuid.uuid4().hex[:8]}@test.invalid")
            token = identity.issue_api_token(conn, account_id=machine.account_id, tenant=tenant, name="imaging",
                                             permissions=sorted(policy.permissions_of(role)))
        client = TestClient(app=app, raise_server_exceptions=False)
        client.headers["authorization"] = f"Bearer {token}"
        return client

    return make


def _written(db, facility) -> int:
    """Entries in the facility's record: a refusal adds none."""
    with db.tenant(facility.slug) as conn:
        return conn.execute(sa.text("SELECT count(*) FROM entry")).scalar()


def night_xray(db, facility, doctor, *, hours_ago: float, family_name: str) -> tuple[uuid.UUID, dt.datetime]:
    """A chest X-ray ordered `hours_ago` (the evening's order a radiographer records in the morning): the order
    as order_test writes it, at its own time. Its id and when it was ordered."""
    with db.tenant(facility.slug) as conn:
        patient = new_patient(conn, doctor, family_name=family_name, given_names="Night", sex="male",
                              birth_date=born_years_ago(30))
        ordered_at = conn.execute(sa.select(sa.func.now())).scalar_one() - dt.timedelta(hours=hours_ago)
        order = record.append(conn, doctor, "service_request", patient_id=patient["id"], occurred_at=ordered_at,
                              detail={"category": "imaging", "code": XRAY, "display": "Chest X-ray",
                                      "priority": "urgent", "status": "active", "order_set": None,
                                      "clinical_info": "fell from a motorbike at 21:00: ?rib fractures"})
    return order.id, ordered_at


def test_the_radiographer_holds_the_worklist_and_performed_not_the_report_nor_the_chart(policy, radiographer,
                                                                                       facility, studies):
    assert policy.permissions_of("radiographer") == {"clinical.imaging.read", "clinical.imaging.perform",
                                                     "identity.session.read", "identity.session.revoke",
                                                     "operations.ward.read", "operations.incident.report"}
    patient = f"/api/t/{facility.slug}/patients/{studies['patient']}"
    for path in ("/chart", "/results", "/orders", ""):
        assert radiographer.get(patient + path).status_code == 403, path
    assert radiographer.get(patient + "/chart", headers={"x-break-glass-reason": "checking the request"}
                            ).status_code == 403
    assert radiographer.get(f"/api/t/{facility.slug}/patients", params={"name": "Chebet"}).status_code == 403
    assert radiographer.get(f"/api/t/{facility.slug}/lab/orders").status_code == 403
    report = radiographer.post(f"{IMAGING.format(tenant=facility.slug)}/orders/{studies['routine']}/report",
                               json=REPORT)
    assert report.status_code == 403, report.text


def test_the_worklist_puts_stat_then_the_oldest_first_with_the_indication_and_audits_each_patient(
        radiographer, db, facility, studies):
    answer = radiographer.get(IMAGING.format(tenant=facility.slug) + "/orders")
    assert answer.status_code == 200, answer.text
    mine = (str(studies["patient"]), str(studies["earlier"]))
    listed = [o for o in answer.json()["orders"] if o["patient_id"] in mine]
    assert [o["id"] for o in listed] == [str(studies[k]) for k in ("stat", "first", "routine")]  # no blood count
    stat, first, routine = listed
    assert (stat["priority"], stat["state"], stat["sex"], stat["age"], stat["location"]) == (
        "stat", "awaiting_study", "female", "41 y", "outpatient")
    assert routine["clinical_info"] == "cough for 3 weeks, night sweats: ?TB" and first["clinical_info"] is None
    assert (first["age"], first["family_name"], first["performed_at"], first["reports"]) == ("7 y", "Mutua", None, [])
    assert set(stat) >= {"mrn", "given_names", "ordered_by", "ordered_at", "display", "code"}
    assert not {"birth_date", "identifiers", "encounter_id", "results", "analytes"} & set(stat)
    assert answer.json()["counts"]["awaiting_study"] >= 3
    performed = radiographer.get(IMAGING.format(tenant=facility.slug) + "/orders", params={"state": "performed"})
    assert all(o["state"] == "performed" for o in performed.json()["orders"])
    refused = radiographer.get(IMAGING.format(tenant=facility.slug) + "/orders", params={"state": "specimen_received"})
    assert refused.status_code == 422 and "state" in refused.json()["detail"], refused.text
    read = [e for e in audit.patient_access_log(db, facility.slug, studies["earlier"])
            if e.event_type == "record.service_request.read" and e.detail.get("list") == "imaging"]
    assert read, "the patient listed has the read in their access log"


def test_a_study_performed_then_reported_reaches_the_clinicians_review_list_flagged(
        radiographer, radiologist, db, facility, studies, doctor):
    base, order = IMAGING.format(tenant=facility.slug), studies["routine"]
    before = _written(db, facility)
    early = radiologist.post(f"{base}/orders/{order}/report", json=REPORT)
    assert early.status_code == 409 and "record the study performed first" in early.json()["detail"], early.text
    wordy = radiographer.post(f"{base}/orders/{order}/performed", json={"note": "x" * 501})
    assert wordy.status_code == 422 and "note" in wordy.json()["detail"], wordy.text
    assert _written(db, facility) == before
    done = radiographer.post(f"{base}/orders/{order}/performed", json={"note": "PA and lateral"})
    assert done.status_code == 200, done.text
    assert (done.json()["state"], done.json()["performed_note"]) == ("performed", "PA and lateral")
    assert done.json()["performed_at"] is not None and done.json()["performed_by"] is not None
    again = radiographer.post(f"{base}/orders/{order}/performed", json={})
    assert again.status_code == 409 and "already recorded as performed" in again.json()["detail"]
    with db.tenant(facility.slug) as conn:
        kinds = conn.execute(sa.text("SELECT e.kind FROM entry e JOIN specimen_receipt r ON r.entry_id = e.id "
                                     "WHERE r.service_request_id = :o"), {"o": order}).scalars().all()
    assert kinds == ["imaging_performed"]
    assert any(e.event_type == "record.imaging_performed.create"
               for e in audit.patient_access_log(db, facility.slug, studies["patient"]))

    before = _written(db, facility)
    blank = radiologist.post(f"{base}/orders/{order}/report", json={**REPORT, "impression": "  "})
    assert blank.status_code == 422 and "impression" in blank.json()["detail"], blank.text
    long = radiologist.post(f"{base}/orders/{order}/report", json={**REPORT, "findings": "y" * 20_001})
    assert long.status_code == 422 and "findings" in long.json()["detail"], long.text
    assert _written(db, facility) == before
    reported = radiologist.post(f"{base}/orders/{order}/report", json=REPORT)
    assert reported.status_code == 200, reported.text
    assert reported.json()["state"] == "reported"
    [report] = reported.json()["reports"]
    assert (report["impression"], report["findings"], report["critical"], report["unexpected"], report["flag"],
            report["signed"]) == (REPORT["impression"], REPORT["findings"], False, True, "A", False)
    twice = radiologist.post(f"{base}/orders/{order}/report", json=REPORT)
    assert twice.status_code == 409 and "correct the report" in twice.json()["detail"]
    with db.tenant(facility.slug) as conn:
        review = worklist.results_to_review(conn, doctor)["results"]
        [charted] = service.results_of(conn, studies["patient"], entry_ids=[uuid.UUID(report["id"])])
    mine = [r for r in review if r["patient_id"] == studies["patient"]]
    assert [(str(r["id"]), r["flag"], r["value_text"]) for r in mine] == [
        (report["id"], "A", REPORT["impression"])]  # the report, flagged, as an abnormal lab result is
    assert (charted["code"], charted["note"], charted["author_id"]) == (XRAY, REPORT["findings"],
                                                                         uuid.UUID(report["reported_by"]))
    # Reported: the stat study, still to perform, comes before it on the worklist.
    listed = [o["id"] for o in radiographer.get(f"{base}/orders").json()["orders"]]
    assert listed.index(str(studies["stat"])) < listed.index(str(order))


def test_a_critical_finding_is_a_critical_result_and_an_unexpected_one_stays_the_orderers(
        radiographer, radiologist, db, facility, doctor):
    """A tension pneumothorax reported as 'critical or unexpected' was flagged A, abnormal, as a renal cyst seen on
    the same film would be: it waited on the ordering doctor's list alone, as no critical lab value does. A critical
    finding is now flagged AA, a critical result: first on every clinician's results to review (the orderer named)
    and on its ward's critical list until a doctor signs it off; an unexpected one, not urgent, stays A, the
    orderer's to read."""
    base = IMAGING.format(tenant=facility.slug)
    with db.tenant(facility.slug) as conn:
        patient = new_patient(conn, doctor, family_name="Kiprop", given_names="Amos", sex="male",
                              birth_date=born_years_ago(24))
        visit = service.open_encounter(conn, doctor, patient["id"], EncounterIn(encounter_class="emergency"))
        tension, cyst = (service.order_test(conn, doctor, patient["id"], ServiceRequestIn(
            code=XRAY, priority="stat", clinical_info=why, encounter_id=visit["id"]))["id"]
            for why in ("stab wound left chest, short of breath: ?pneumothorax", "follow-up of pneumonia"))
    for order in (tension, cyst):
        assert radiographer.post(f"{base}/orders/{order}/performed", json={}).status_code == 200
    critical = radiologist.post(f"{base}/orders/{tension}/report", json={
        "findings": "Large left pneumothorax with mediastinal shift to the right.",
        "impression": "Left tension pneumothorax.", "critical": True, "unexpected": True})
    assert critical.status_code == 200, critical.text
    [report] = critical.json()["reports"]
    assert (report["flag"], report["critical"], report["unexpected"]) == ("AA", True, False)
    unexpected = radiologist.post(f"{base}/orders/{cyst}/report", json={
        "findings": "Resolving consolidation. Incidental 3 cm cyst at the upper pole of the left kidney.",
        "impression": "Resolving pneumonia; incidental renal cyst.", "unexpected": True})
    [incidental] = unexpected.json()["reports"]
    assert (incidental["flag"], incidental["critical"], incidental["unexpected"]) == ("A", False, True)
    colleague = Principal(account_id=uuid.uuid4(), kind="staff", display_name="Dr On Call", tenant=facility.slug,
                          role="clinician")
    with db.tenant(facility.slug) as conn:
        theirs = worklist.results_to_review(conn, colleague)
        ward = worklist.critical_unreviewed(conn, colleague, [patient["id"]])
        orderers = worklist.results_to_review(conn, doctor)["results"]
    assert theirs["results"][0]["id"] == uuid.UUID(report["id"]) and theirs["critical"] >= 1
    assert theirs["results"][0]["ordered_by"] == doctor.account_id  # whom to telephone
    assert uuid.UUID(incidental["id"]) not in {r["id"] for r in theirs["results"]}
    assert [r["id"] for r in ward] == [uuid.UUID(report["id"])]
    assert {uuid.UUID(report["id"]), uuid.UUID(incidental["id"])} <= {r["id"] for r in orderers}
    with db.tenant(facility.slug) as conn:
        service.sign_result(conn, doctor, patient["id"], uuid.UUID(report["id"]), "chest drain inserted")
        assert worklist.critical_unreviewed(conn, colleague, [patient["id"]]) == []


def test_performed_on_the_wrong_order_is_entered_in_error_and_the_order_awaits_its_study(
        radiographer, radiologist, db, facility, doctor, studies):
    base = IMAGING.format(tenant=facility.slug)
    order, _ = night_xray(db, facility, doctor, hours_ago=1, family_name="Ruto")
    nothing = radiographer.post(f"{base}/orders/{order}/performed/entered-in-error", json={"reason": "wrong patient"})
    assert nothing.status_code == 409 and "nothing to undo" in nothing.json()["detail"], nothing.text
    assert radiographer.post(f"{base}/orders/{order}/performed", json={"note": "PA"}).status_code == 200
    before = _written(db, facility)
    unsaid = radiographer.post(f"{base}/orders/{order}/performed/entered-in-error", json={"reason": " "})
    assert unsaid.status_code == 422 and "reason" in unsaid.json()["detail"], unsaid.text
    assert _written(db, facility) == before
    undone = radiographer.post(f"{base}/orders/{order}/performed/entered-in-error",
                               json={"reason": "recorded on the patient beside him on the list"})
    assert undone.status_code == 200, undone.text
    assert (undone.json()["state"], undone.json()["performed_at"], undone.json()["performed_note"]) == (
        "awaiting_study", None, None)
    with db.tenant(facility.slug) as conn:
        withdrawn = conn.execute(sa.text(
            "SELECT w.status, w.reason FROM entry w JOIN entry e ON w.supersedes = e.id JOIN specimen_receipt r "
            "ON r.entry_id = e.id WHERE r.service_request_id = :o"), {"o": order}).one()
    assert tuple(withdrawn) == ("entered_in_error", "recorded on the patient beside him on the list")
    assert sorted(e.event_type for e in audit.patient_access_log(db, facility.slug, undone.json()["patient_id"])
                  if e.event_type.startswith("record.imaging_performed")) == [
        "record.imaging_performed.create", "record.imaging_performed.retract"]
    listed = radiographer.get(f"{base}/orders", params={"state": "awaiting_study"}).json()["orders"]
    assert str(order) in {o["id"] for o in listed}  # back on the worklist to perform
    again = radiographer.post(f"{base}/orders/{order}/performed", json={"note": "PA, the right patient"})
    assert again.status_code == 200 and again.json()["performed_note"] == "PA, the right patient"
    reported = radiographer.post(f"{base}/orders/{studies['routine']}/performed/entered-in-error",
                                 json={"reason": "not this one"})
    assert reported.status_code == 409 and "correct the report" in reported.json()["detail"], reported.text


def test_a_ct_reports_findings_run_to_20000_characters_and_a_lab_results_note_stays_at_2000(
        radiographer, radiologist, db, facility, doctor):
    base = IMAGING.format(tenant=facility.slug)
    order, _ = night_xray(db, facility, doctor, hours_ago=2, family_name="Odhiambo")
    assert radiographer.post(f"{base}/orders/{order}/performed", json={}).status_code == 200
    paragraph = ("Contrast-enhanced CT of the chest, abdomen and pelvis. Multiple bilateral pulmonary nodules, the "
                 "largest 14 mm in the right lower lobe; no pleural effusion; mediastinal nodes not enlarged. ")
    findings = (paragraph * 120)[:19_000].strip()  # a staging CT's length: far past a lab note's 2,000
    reported = radiologist.post(f"{base}/orders/{order}/report", json={**REPORT, "findings": findings})
    assert reported.status_code == 200, reported.text[:500]
    [report] = reported.json()["reports"]
    assert report["findings"] == findings
    corrected = radiologist.post(f"{base}/results/{report['id']}/correction",
                                 json={**REPORT, "findings": findings + " Addendum: liver clear.",
                                       "reason": "liver not described"})
    assert corrected.status_code == 200 and corrected.json()["reports"][0]["findings"].endswith("liver clear.")
    with db.tenant(facility.slug) as conn:
        [charted] = service.results_of(conn, corrected.json()["patient_id"],
                                       entry_ids=[uuid.UUID(corrected.json()["reports"][0]["id"])])
    assert len(charted["note"]) > 19_000  # the chart reads the whole report
    with pytest.raises(ValidationError, match="2000 characters"):  # a lab result's note accepts what it did
        ResultIn(code=HB, value=13, note="x" * 2001)


def test_a_study_performed_in_the_night_is_recorded_in_the_morning_at_its_own_time(radiographer, db, facility,
                                                                                      doctor):
    base = IMAGING.format(tenant=facility.slug)
    order, ordered_at = night_xray(db, facility, doctor, hours_ago=10, family_name="Kiprotich")
    before = _written(db, facility)
    for at, words in ((dt.datetime.now(dt.UTC) + dt.timedelta(hours=1), "is still to come"),
                      (ordered_at - dt.timedelta(minutes=1), "is before the Chest X-ray was ordered")):
        refused = radiographer.post(f"{base}/orders/{order}/performed", json={"performed_at": at.isoformat()})
        assert refused.status_code == 422 and words in refused.json()["detail"], refused.text
        assert refused.json()["field"] == "performed_at"
    naive = radiographer.post(f"{base}/orders/{order}/performed", json={"performed_at": "2026-11-27T01:30:00"})
    assert naive.status_code == 422 and "UTC offset" in naive.json()["detail"], naive.text
    assert _written(db, facility) == before
    at = ordered_at + dt.timedelta(minutes=40)
    done = radiographer.post(f"{base}/orders/{order}/performed", json={"performed_at": at.isoformat(),
                                                                        "note": "AP supine: in a collar"})
    assert done.status_code == 200, done.text
    assert (dt.datetime.fromisoformat(done.json()["performed_at"]), done.json()["state"]) == (at, "performed")
    with db.tenant(facility.slug) as conn:
        late = conn.execute(sa.text("SELECT recorded_at - occurred_at FROM entry e JOIN specimen_receipt r "
                                    "ON r.entry_id = e.id WHERE r.service_request_id = :o"), {"o": order}).scalar_one()
    assert late > dt.timedelta(hours=9)  # recorded now, performed in the night


def test_a_correction_is_the_reports_next_version_reviewed_again_then_signed_off_it_leaves(
        radiologist, radiographer, db, facility, studies, doctor):
    base, order = IMAGING.format(tenant=facility.slug), studies["routine"]
    [report] = radiologist.get(f"{base}/orders/{order}").json()["reports"]
    corrected_report = {**REPORT, "impression": "Right upper lobe consolidation: tuberculosis or pneumonia.",
                        "unexpected": False}
    no_reason = radiologist.post(f"{base}/results/{report['id']}/correction", json=corrected_report)
    assert no_reason.status_code == 422 and "reason" in no_reason.json()["detail"], no_reason.text
    mine = radiographer.post(f"{base}/results/{report['id']}/correction",
                             json={**corrected_report, "reason": "not the radiographer's to report"})
    assert mine.status_code == 403
    corrected = radiologist.post(f"{base}/results/{report['id']}/correction",
                                 json={**corrected_report, "reason": "cavity not certain on review of the lateral"})
    assert corrected.status_code == 200, corrected.text
    [now] = corrected.json()["reports"]
    assert (now["impression"], now["critical"], now["flag"], now["corrected"], now["root_id"]) == (
        corrected_report["impression"], False, None, True, report["root_id"])
    stale = radiologist.post(f"{base}/results/{report['id']}/correction",
                             json={**corrected_report, "reason": "once more"})
    assert stale.status_code == 409 and "corrected since" in stale.json()["detail"]
    with db.tenant(facility.slug) as conn:
        waiting = {r["id"]: r for r in worklist.results_to_review(conn, doctor)["results"]}
        assert uuid.UUID(now["id"]) in waiting and uuid.UUID(report["id"]) not in waiting
        assert waiting[uuid.UUID(now["id"])]["corrected"]  # its reviewer is told the report changed
        service.sign_result(conn, doctor, studies["patient"], uuid.UUID(now["id"]), None)
    assert radiologist.get(f"{base}/orders/{order}").json()["state"] == "signed_off"
    assert str(order) not in {o["id"] for o in radiographer.get(f"{base}/orders").json()["orders"]}
    assert radiographer.post(f"{base}/orders/{order}/performed", json={}).status_code == 409


def test_another_facility_guessed_ids_and_a_lab_orders_id_are_refused_on_every_route(
        radiographer, radiologist, token_client, db, facility, other_facility, studies):
    base = IMAGING.format(tenant=facility.slug)
    intruder = token_client(other_facility.slug, role="clinician")
    some_report = radiologist.get(f"{base}/orders/{studies['routine']}").json()["reports"][0]["id"]
    before = _written(db, facility)
    routes = [("get", "/orders", None), ("get", f"/orders/{studies['first']}", None),
              ("post", f"/orders/{studies['first']}/performed", {}),
              ("post", f"/orders/{studies['first']}/performed/entered-in-error", {"reason": "not my facility"}),
              ("post", f"/orders/{studies['first']}/report", REPORT),
              ("post", f"/results/{some_report}/correction", {**REPORT, "reason": "not mine to correct"})]
    for method, path, body in routes:
        answer = getattr(intruder, method)(base + path, **({"json": body} if body is not None else {}))
        assert answer.status_code == 403, (path, answer.text)
        assert "Mutua" not in answer.text and "Chebet" not in answer.text
    assert _written(db, facility) == before
    with db.tenant(facility.slug) as conn:  # the blood count's result, which an imaging route may not correct
        service.record_result(conn, Principal(account_id=uuid.uuid4(), kind="staff", display_name="Lab",
                                              tenant=facility.slug, role="clinician"), studies["patient"],
                              ResultIn(code=HB, value=13, service_request_id=studies["blood"]))
        lab_result = conn.execute(sa.text("SELECT entry_id FROM result WHERE service_request_id = :o"),
                                  {"o": studies["blood"]}).scalar_one()
    before = _written(db, facility)
    guessed = uuid.uuid4()
    for method, path, body in [("get", f"/orders/{guessed}", None), ("post", f"/orders/{guessed}/performed", {}),
                               ("post", f"/orders/{guessed}/performed/entered-in-error", {"reason": "a guess"}),
                               ("post", f"/orders/{studies['blood']}/performed/entered-in-error",
                                {"reason": "a lab order"}),
                               ("post", f"/orders/{guessed}/report", REPORT),
                               ("post", f"/results/{guessed}/correction", {**REPORT, "reason": "a guess at it"}),
                               ("get", f"/orders/{studies['blood']}", None),  # a lab order: not imaging's
                               ("post", f"/orders/{studies['blood']}/performed", {}),
                               ("post", f"/orders/{studies['blood']}/report", REPORT),
                               ("post", f"/results/{lab_result}/correction", {**REPORT, "reason": "not a report"})]:
        client = radiologist if "report" in path or "correction" in path else radiographer
        answer = getattr(client, method)(base + path, **({"json": body} if body is not None else {}))
        assert answer.status_code == 404, (path, answer.text)
    assert _written(db, facility) == before
    # Its own facility's id, asked at the other facility with that facility's own token: not there.
    assert intruder.get(f"{IMAGING.format(tenant=other_facility.slug)}/orders/{studies['first']}").status_code == 404
