"""The laboratory bench over real HTTP and the real record (appliance/layers/clinical/lab.py): the lab
technician's role holds the bench and nothing of the chart; the worklist's order, states and audit; receiving a
specimen; a panel's results entered in one act (one bad value: 422 naming the component, nothing written) and
flagged as record_result flags them; a correction; the results reaching the clinician's review list and the
lab turnaround KPI; and another facility's credentials and guessed ids refused on every route."""

from __future__ import annotations

import datetime as dt
import uuid
import zoneinfo

import pytest
import sqlalchemy as sa

from appliance.layers.clinical import service, worklist
from appliance.layers.clinical.schemas import EncounterIn, ServiceRequestIn
from appliance.substrate import audit, kpis, record
from appliance.substrate.principal import Principal
from tests.layers.clinical.conftest import born_years_ago, new_patient

LAB = "/api/t/{tenant}/lab"
FBC, HB, WCC, PLT, GLUCOSE, SMEAR, XRAY = "58410-2", "718-7", "6690-2", "777-3", "2345-7", "32700-7", "36643-5"


@pytest.fixture(scope="module")
def doctor(facility, person_factory) -> Principal:
    """A clinician with an account of their own: the review list is of the orders they placed."""
    person = person_factory("clinician", facility.slug)
    return Principal(account_id=person.account_id, kind="staff", display_name="Dr Lab Orders", tenant=facility.slug,
                     role="clinician")


@pytest.fixture(scope="module")
def bench(db, facility, doctor) -> dict:
    """A patient seen today with a routine blood count, a STAT glucose, a routine malaria smear and a chest
    X-ray (imaging: not the laboratory's); a second patient with a routine smear ordered earlier."""
    with db.tenant(facility.slug) as conn:
        patient = new_patient(conn, doctor, family_name="Achieng", given_names="Grace", sex="female",
                              birth_date=born_years_ago(34))
        visit = service.open_encounter(conn, doctor, patient["id"], EncounterIn(encounter_class="outpatient"))
        earlier = new_patient(conn, doctor, family_name="Barasa", given_names="Tom", sex="male",
                              birth_date=born_years_ago(3))
        smear_first = service.order_test(conn, doctor, earlier["id"], ServiceRequestIn(code=SMEAR))
    orders = {}
    for code in (FBC, GLUCOSE, SMEAR, XRAY):  # a transaction each: an order's time is its transaction's
        with db.tenant(facility.slug) as conn:
            orders[code] = service.order_test(conn, doctor, patient["id"], ServiceRequestIn(
                code=code, priority="stat" if code == GLUCOSE else "routine", encounter_id=visit["id"]))["id"]
    return {"patient": patient["id"], "earlier": earlier["id"], "first_smear": smear_first["id"], **orders}


@pytest.fixture(scope="module")
def lab(app, db, facility, policy):
    """The facility's lab technician's API client (a token with the role's permissions)."""
    from litestar.testing import TestClient

    from appliance.substrate import identity

    with db.control() as conn:
        machine = identity.create_account(conn, policy, kind="machine", display_name="Bench", role="facility_admin",
                                          email=f"lab-{uuid.uuid4().hex[:8]}@test.invalid", tenant=facility.slug)
        token = identity.issue_api_token(conn, account_id=machine.account_id, tenant=facility.slug, name="bench",
                                         permissions=sorted(policy.permissions_of("lab_technician")))
    client = TestClient(app=app, raise_server_exceptions=False)
    client.headers["authorization"] = f"Bearer {token}"
    return client


def _results_of(db, facility, order_id) -> list:
    with db.tenant(facility.slug) as conn:
        return conn.execute(sa.text("SELECT code, flag FROM result WHERE service_request_id = :o ORDER BY code"),
                            {"o": order_id}).all()


def test_the_lab_technician_holds_the_bench_and_nothing_of_the_chart(policy, lab, token_client, facility, bench):
    assert policy.permissions_of("lab_technician") == {"clinical.lab.read", "clinical.lab.receive",
                                                       "clinical.lab.result", "clinical.blood.read",
                                                       "clinical.blood.stock", "clinical.blood.crossmatch",
                                                       "identity.session.read", "identity.session.revoke",
                                                       "operations.ward.read", "operations.incident.report"}
    patient = f"/api/t/{facility.slug}/patients/{bench['patient']}"
    for path in ("/chart", "/results", "/orders", ""):
        assert lab.get(patient + path).status_code == 403, path
    assert lab.get(patient + "/chart", headers={"x-break-glass-reason": "checking a sample label"}).status_code == 403
    assert lab.post(patient + "/medications", json={"drug": "Paracetamol", "dose": 1, "dose_unit": "g",
                                                    "route": "oral", "frequency": "daily"}).status_code == 403
    assert lab.get(f"/api/t/{facility.slug}/patients", params={"name": "Achieng"}).status_code == 403
    clinician = token_client(facility.slug, role="clinician")
    assert clinician.get(patient + "/chart").status_code == 200
    assert clinician.post(patient + "/medications", json={"drug": "Paracetamol", "dose": 1, "dose_unit": "g",
                                                          "route": "oral", "frequency": "daily"}).status_code == 201
    assert clinician.get(LAB.format(tenant=facility.slug) + "/orders").status_code == 200


def test_the_worklist_puts_stat_then_the_oldest_first_and_audits_each_patient_listed(lab, db, facility, bench):
    answer = lab.get(LAB.format(tenant=facility.slug) + "/orders")
    assert answer.status_code == 200, answer.text
    listed = [o for o in answer.json()["orders"] if o["patient_id"] in (str(bench["patient"]), str(bench["earlier"]))]
    assert [o["code"] for o in listed] == [GLUCOSE, SMEAR, FBC, SMEAR]  # the X-ray is not the laboratory's
    assert listed[1]["id"] == str(bench["first_smear"]) and listed[1]["age"] == "3 y"
    glucose = listed[0]
    assert (glucose["priority"], glucose["state"], glucose["mrn"], glucose["sex"], glucose["age"]) == (
        "stat", "awaiting_specimen", glucose["mrn"], "female", "34 y")
    assert glucose["location"] == "outpatient" and glucose["received_at"] is None
    assert set(glucose) >= {"family_name", "given_names", "ordered_by", "ordered_at", "display"}
    assert not {"birth_date", "clinical_info", "identifiers", "encounter_id"} & set(glucose)
    received = lab.get(LAB.format(tenant=facility.slug) + "/orders", params={"state": "specimen_received"}).json()
    assert all(o["state"] == "specimen_received" for o in received["orders"])
    refused = lab.get(LAB.format(tenant=facility.slug) + "/orders", params={"state": "lost"})
    assert refused.status_code == 422 and "state" in refused.json()["detail"], refused.text
    read = [e for e in audit.patient_access_log(db, facility.slug, bench["earlier"])
            if e.event_type == "record.service_request.read" and e.detail.get("list") == "laboratory"]
    assert read, "the patient listed has the read in their access log"


def test_receiving_a_specimen_then_a_panel_all_or_nothing_with_its_flags(lab, db, facility, bench):
    base = LAB.format(tenant=facility.slug)
    early = lab.post(f"{base}/orders/{bench[FBC]}/results", json={"results": [{"code": HB, "value": 13}]})
    assert early.status_code == 409 and "receive it first" in early.json()["detail"], early.text
    received = lab.post(f"{base}/orders/{bench[FBC]}/receipt", json={"note": "slightly haemolysed"})
    assert received.status_code == 200, received.text
    assert (received.json()["state"], received.json()["specimen_note"]) == ("specimen_received", "slightly haemolysed")
    assert received.json()["received_at"] is not None and received.json()["received_by"] is not None
    assert [a["code"] for a in received.json()["analytes"]] == [HB, WCC, PLT]
    again = lab.post(f"{base}/orders/{bench[FBC]}/receipt", json={})
    assert again.status_code == 409 and "already received" in again.json()["detail"]
    # At the time the bench shows it received, on the facility's clock, not three hours off in UTC.
    at = dt.datetime.fromisoformat(received.json()["received_at"]).astimezone(zoneinfo.ZoneInfo("Africa/Nairobi"))
    assert again.json()["detail"].endswith(f"already received at {at:%d %b %Y %H:%M}"), again.text
    # The specimen reached the bench, so the ward's task to collect it is done (the nursing layer's reaction).
    with db.tenant(facility.slug) as conn:
        collect = conn.execute(sa.text(
            "SELECT t.status, t.note FROM nursing_task t JOIN entry e ON e.id = t.entry_id WHERE t.source_id = :o "
            "AND t.code = 'collect_specimen' AND NOT EXISTS (SELECT 1 FROM entry s WHERE s.supersedes = e.id)"),
            {"o": bench[FBC]}).all()
    assert [tuple(task) for task in collect] == [("done", "specimen received at the laboratory")]
    bad = lab.post(f"{base}/orders/{bench[FBC]}/results", json={"results": [
        {"code": HB, "value": 7.1}, {"code": WCC, "value": 12.5}, {"code": PLT, "value": "plenty"}]})
    assert bad.status_code == 422, bad.text
    assert bad.json()["field"] == f"results.{PLT}" and bad.json()["detail"].startswith("Platelets"), bad.text
    assert _results_of(db, facility, bench[FBC]) == []  # haemoglobin and white cells were not kept either
    stranger = lab.post(f"{base}/orders/{bench[FBC]}/results", json={"results": [{"code": GLUCOSE, "value": 5}]})
    assert stranger.status_code == 422 and "not a component of Full blood count" in stranger.json()["detail"]
    entered = lab.post(f"{base}/orders/{bench[FBC]}/results", json={"results": [
        {"code": HB, "value": 7.1}, {"code": WCC, "value": 12.5}, {"code": PLT, "value": 210}]})
    assert entered.status_code == 200, entered.text
    assert entered.json()["state"] == "resulted"
    assert {r["code"]: r["flag"] for r in entered.json()["results"]} == {HB: "L", WCC: "H", PLT: "N"}
    twice = lab.post(f"{base}/orders/{bench[FBC]}/results", json={"results": [{"code": HB, "value": 7.1}]})
    assert twice.status_code == 409 and "correct a result" in twice.json()["detail"]
    lab.post(f"{base}/orders/{bench[GLUCOSE]}/receipt", json={})
    critical = lab.post(f"{base}/orders/{bench[GLUCOSE]}/results", json={"results": [{"code": GLUCOSE, "value": 31}]})
    assert critical.json()["results"][0]["flag"] == "HH", critical.text
    lab.post(f"{base}/orders/{bench[SMEAR]}/receipt", json={})
    unknown = lab.post(f"{base}/orders/{bench[SMEAR]}/results", json={"results": [{"code": SMEAR, "value": "maybe"}]})
    assert unknown.status_code == 422 and "negative" in unknown.json()["detail"], unknown.text
    smear = lab.post(f"{base}/orders/{bench[SMEAR]}/results", json={"results": [{"code": SMEAR, "value": "Positive"}]})
    assert (smear.json()["results"][0]["value_text"], smear.json()["results"][0]["flag"]) == ("positive", "A")
    resulted = lab.get(f"{base}/orders", params={"state": "resulted"}).json()["orders"]
    assert {str(bench[c]) for c in (FBC, GLUCOSE, SMEAR)} <= {o["id"] for o in resulted}
    # The bench's work comes first: the routine smear whose specimen is still to receive before the STAT glucose,
    # resulted and waiting only for the clinician's sign-off.
    listed = [o["id"] for o in lab.get(f"{base}/orders").json()["orders"]]
    assert listed.index(str(bench["first_smear"])) < listed.index(str(bench[GLUCOSE]))


def test_a_correction_is_the_results_next_version_flagged_and_reviewed_again(lab, db, facility, bench, doctor):
    base = LAB.format(tenant=facility.slug)
    order = lab.get(f"{base}/orders/{bench[FBC]}").json()
    haemoglobin = next(r for r in order["results"] if r["code"] == HB)
    no_reason = lab.post(f"{base}/results/{haemoglobin['id']}/correction", json={"value": 11.2})
    assert no_reason.status_code == 422 and "reason" in no_reason.json()["detail"], no_reason.text
    corrected = lab.post(f"{base}/results/{haemoglobin['id']}/correction",
                         json={"value": 11.2, "reason": "transcribed from the wrong analyser line"})
    assert corrected.status_code == 200, corrected.text
    now = next(r for r in corrected.json()["results"] if r["code"] == HB)
    assert (now["value_numeric"], now["flag"], now["corrected"], now["root_id"]) == (
        "11.2", "L", True, haemoglobin["root_id"])
    stale = lab.post(f"{base}/results/{haemoglobin['id']}/correction", json={"value": 12, "reason": "once more"})
    assert stale.status_code == 409 and "corrected since" in stale.json()["detail"]
    with db.tenant(facility.slug) as conn:
        review = worklist.results_to_review(conn, doctor)["results"]
    waiting = {r["id"]: r for r in review}
    assert uuid.UUID(now["id"]) in waiting and uuid.UUID(haemoglobin["id"]) not in waiting
    assert waiting[uuid.UUID(now["id"])]["corrected"]  # its reviewer is told the value changed
    assert not any(r["corrected"] for r in review if r["code"] != HB)
    critical = [r for r in review if r["code"] == GLUCOSE]
    assert critical and review[0]["flag"] == "HH"  # the critical glucose heads the doctor's list


def test_a_correction_to_a_critical_value_heads_every_clinicians_review_as_a_new_critical_result_does(
        lab, db, facility, doctor, person_factory):
    """A glucose of 5.1 signed off, then found to be 1.9 (the slip of the neighbouring tube): the correction is
    flagged critical low and waits at the head of the review list of the clinician who ordered it and of another
    clinician of the facility, as a new critical result does, marked corrected."""
    with db.tenant(facility.slug) as conn:
        patient = new_patient(conn, doctor, family_name="Kamau", given_names="Jane", sex="female",
                              birth_date=born_years_ago(61))
        visit = service.open_encounter(conn, doctor, patient["id"], EncounterIn(encounter_class="outpatient"))
        order = service.order_test(conn, doctor, patient["id"], ServiceRequestIn(code=GLUCOSE,
                                                                                encounter_id=visit["id"]))["id"]
    base = LAB.format(tenant=facility.slug)
    lab.post(f"{base}/orders/{order}/receipt", json={})
    [normal] = lab.post(f"{base}/orders/{order}/results", json={"results": [{"code": GLUCOSE, "value": 5.1}]}
                        ).json()["results"]
    with db.tenant(facility.slug) as conn:
        service.sign_result(conn, doctor, patient["id"], uuid.UUID(normal["id"]), None)
    corrected = lab.post(f"{base}/results/{normal['id']}/correction",
                         json={"value": 1.9, "reason": "the neighbouring tube's slip was typed"})
    assert corrected.status_code == 200, corrected.text
    [now] = corrected.json()["results"]
    assert (now["flag"], now["corrected"], now["signed"], corrected.json()["state"]) == ("LL", True, False, "resulted")
    other = person_factory("clinician", facility.slug)
    colleague = Principal(account_id=other.account_id, kind="staff", display_name="Dr Colleague",
                          tenant=facility.slug, role="clinician")
    for reader in (doctor, colleague):
        with db.tenant(facility.slug) as conn:
            review = worklist.results_to_review(conn, reader)["results"]
        heading = [r for r in review if r["flag"] in service.CRITICAL_FLAGS]
        assert uuid.UUID(now["id"]) in {r["id"] for r in heading}, reader.display_name
        assert next(r for r in review if r["id"] == uuid.UUID(now["id"]))["corrected"]
        assert review.index(next(r for r in review if r["id"] == uuid.UUID(now["id"]))) < len(heading)


def test_signed_off_bench_results_leave_the_bench_and_count_in_lab_turnaround(lab, db, facility, bench, doctor):
    base = LAB.format(tenant=facility.slug)
    order = lab.get(f"{base}/orders/{bench[GLUCOSE]}").json()
    with db.tenant(facility.slug) as conn:
        for result in order["results"]:
            service.sign_result(conn, doctor, bench["patient"], uuid.UUID(result["id"]), None)
        row = conn.execute(sa.text("SELECT ordered_at, verified_at FROM lab_turnaround WHERE order_id = :o"),
                           {"o": bench[GLUCOSE]}).one()
        nairobi = zoneinfo.ZoneInfo("Africa/Nairobi")
        window = kpis.Window(row.ordered_at - dt.timedelta(hours=1), row.verified_at + dt.timedelta(hours=1), nairobi)
        figure = kpis.computation_of("lab_turnaround").compute(conn, [window])[0]
    assert figure.denominator >= 1 and figure.value is not None
    assert lab.get(f"{base}/orders/{bench[GLUCOSE]}").json()["state"] == "signed_off"
    open_orders = lab.get(f"{base}/orders").json()
    assert str(bench[GLUCOSE]) not in {o["id"] for o in open_orders["orders"]}
    # Kept apart for corrections, as long as a resulted order stays: an error found after the sign-off.
    signed = lab.get(f"{base}/orders", params={"state": "signed_off"}).json()
    assert str(bench[GLUCOSE]) in {o["id"] for o in signed["orders"]} and signed["state"] == "signed_off"
    assert {o["state"] for o in signed["orders"]} == {"signed_off"}
    assert open_orders["counts"]["signed_off"] == len(signed["orders"])
    done = lab.post(f"{base}/orders/{bench[GLUCOSE]}/receipt", json={})
    assert done.status_code == 409


def test_another_facilitys_lab_and_guessed_ids_are_refused_on_every_route(lab, token_client, facility, other_facility,
                                                                          bench):
    base = LAB.format(tenant=facility.slug)
    intruder = token_client(other_facility.slug, role="lab_technician")
    some_result = lab.get(f"{base}/orders/{bench[FBC]}").json()["results"][0]["id"]
    routes = [("get", "/orders", None), ("get", f"/orders/{bench[SMEAR]}", None),
              ("post", f"/orders/{bench['first_smear']}/receipt", {}),
              ("post", f"/orders/{bench['first_smear']}/rejection", {"reason": "haemolysed"}),
              ("post", f"/orders/{bench['first_smear']}/results", {"results": [{"code": SMEAR, "value": "negative"}]}),
              ("post", f"/results/{some_result}/correction", {"value": 1, "reason": "not mine to correct"})]
    for method, path, body in routes:
        answer = getattr(intruder, method)(base + path, **({"json": body} if body is not None else {}))
        assert answer.status_code == 403, (path, answer.text)
        assert "Barasa" not in answer.text and "Achieng" not in answer.text
    guessed = uuid.uuid4()
    for method, path, body in [("get", f"/orders/{guessed}", None), ("post", f"/orders/{guessed}/receipt", {}),
                               ("post", f"/orders/{guessed}/rejection", {"reason": "haemolysed"}),
                               ("post", f"/orders/{guessed}/results", {"results": [{"code": HB, "value": 1}]}),
                               ("post", f"/results/{guessed}/correction", {"value": 1, "reason": "a guess at it"}),
                               ("post", f"/orders/{bench[XRAY]}/receipt", {})]:  # an imaging order: not the lab's
        answer = getattr(lab, method)(base + path, **({"json": body} if body is not None else {}))
        assert answer.status_code == 404, (path, answer.text)
    # Its own facility's id, asked at the other facility with that facility's own token: not there.
    assert intruder.get(f"{LAB.format(tenant=other_facility.slug)}/orders/{bench[FBC]}").status_code == 404


def test_the_bench_reads_its_window_not_every_order_the_facility_ever_placed(lab, db, facility, doctor):
    """An order of 100 days ago still awaiting its specimen is off the bench (found by its id all the same), and
    so is one resulted 10 days ago and never signed off: signing off is the clinician's, not the lab's. One
    resulted yesterday stays, for corrections; signed off, it stays as long under signed_off, and one resulted 10
    days ago and signed off has left."""
    now = dt.datetime.now(dt.UTC)
    with db.tenant(facility.slug) as conn:
        patient = new_patient(conn, doctor, family_name="Wafula", given_names="Ann", sex="female",
                              birth_date=born_years_ago(40))

        def order(days_ago: int, resulted_days_ago: int | None) -> uuid.UUID:
            when = now - dt.timedelta(days=days_ago)
            [placed] = record.append_many(conn, doctor, [record.NewEntry("service_request", patient["id"], {
                "category": "lab", "code": GLUCOSE, "display": "Glucose", "priority": "routine", "status": "active",
                "clinical_info": None, "order_set": None}, None, when, recorded_at=when)])
            if resulted_days_ago is not None:
                reported = now - dt.timedelta(days=resulted_days_ago)
                record.append_many(conn, doctor, [record.NewEntry("result", patient["id"], {
                    "service_request_id": placed.id, "code": GLUCOSE, "display": "Glucose", "value_numeric": 5,
                    "value_text": None, "unit": "mmol/L", "reference_low": 3.9, "reference_high": 7.8, "flag": "N",
                    "note": None}, None, reported, recorded_at=reported)])
            return placed.id

        forgotten, unsigned, yesterdays = order(100, None), order(20, 10), order(2, 1)
    base = LAB.format(tenant=facility.slug)
    listed = {o["id"] for o in lab.get(f"{base}/orders").json()["orders"]}
    assert str(yesterdays) in listed and not {str(forgotten), str(unsigned)} & listed
    found = lab.get(f"{base}/orders/{forgotten}")
    assert found.status_code == 200 and found.json()["state"] == "awaiting_specimen"
    with db.tenant(facility.slug) as conn:
        for order_id in (unsigned, yesterdays):
            for result in lab.get(f"{base}/orders/{order_id}").json()["results"]:
                service.sign_result(conn, doctor, patient["id"], uuid.UUID(result["id"]), None)
    signed = {o["id"] for o in lab.get(f"{base}/orders", params={"state": "signed_off"}).json()["orders"]}
    assert str(yesterdays) in signed and str(unsigned) not in signed


def test_a_specimen_the_lab_cannot_test_is_rejected_and_the_ward_asked_for_another(lab, db, facility, doctor):
    """Haemolysed: the receipt is entered in error with the reason (kept in its history), the order awaits a
    specimen again, and the ward's task to collect one opens again saying why; the next specimen received
    closes it. Nothing received, a blank reason or an order already resulted: refused, nothing written."""
    with db.tenant(facility.slug) as conn:
        patient = new_patient(conn, doctor, family_name="Otieno", given_names="Paul", sex="male",
                              birth_date=born_years_ago(52))
        order = service.order_test(conn, doctor, patient["id"], ServiceRequestIn(code=GLUCOSE, priority="urgent"))["id"]
    base = LAB.format(tenant=facility.slug)

    def collect_tasks() -> list[tuple]:
        with db.tenant(facility.slug) as conn:
            return [tuple(t) for t in conn.execute(sa.text(
                "SELECT t.status, t.title FROM nursing_task t JOIN entry e ON e.id = t.entry_id "
                "WHERE t.source_id = :o AND t.code = 'collect_specimen' "
                "AND NOT EXISTS (SELECT 1 FROM entry s WHERE s.supersedes = e.id) ORDER BY e.recorded_at"),
                {"o": order}).all()]

    early = lab.post(f"{base}/orders/{order}/rejection", json={"reason": "haemolysed"})
    assert early.status_code == 409 and "none to reject" in early.json()["detail"]
    assert lab.post(f"{base}/orders/{order}/receipt", json={}).status_code == 200
    blank = lab.post(f"{base}/orders/{order}/rejection", json={"reason": " "})
    assert blank.status_code == 422 and "invalid reason" in blank.json()["detail"], blank.text
    rejected = lab.post(f"{base}/orders/{order}/rejection", json={"reason": "haemolysed, cannot be read"})
    assert rejected.status_code == 200, rejected.text
    assert (rejected.json()["state"], rejected.json()["received_at"]) == ("awaiting_specimen", None)
    assert collect_tasks() == [("done", "Collect specimen: Glucose (urgent)"),
                               ("open", "Collect specimen again: Glucose (rejected: haemolysed, cannot be read)")]
    with db.tenant(facility.slug) as conn:
        receipt = conn.execute(sa.text("SELECT e.id FROM entry e JOIN specimen_receipt r ON r.entry_id = e.id "
                                       "WHERE r.service_request_id = :o"), {"o": order}).scalar_one()
        kept = record.history(conn, receipt)
    assert [(v.status, v.reason) for v in kept] == [("final", None), ("entered_in_error", "haemolysed, cannot be read")]

    assert lab.post(f"{base}/orders/{order}/receipt", json={}).status_code == 200  # the second specimen
    assert [status for status, _ in collect_tasks()] == ["done", "done"]
    assert lab.post(f"{base}/orders/{order}/results", json={"results": [{"code": GLUCOSE, "value": 5.2}]}
                    ).status_code == 200
    tested = lab.post(f"{base}/orders/{order}/rejection", json={"reason": "too late now"})
    assert tested.status_code == 409 and "correct a result" in tested.json()["detail"]
