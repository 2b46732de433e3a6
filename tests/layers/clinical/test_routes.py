"""The clinical API over HTTP, through the real app, authentication and permission guard: the
acceptance cases as a client sees them, structured refusals (never a 500), and other facilities
kept out."""

import datetime as dt
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa

from appliance.layers.clinical import service
from appliance.layers.clinical.errors import Conflict
from appliance.substrate import audit
from appliance.substrate.db import Database
from tests.layers.clinical.test_chart_in_care import _last_seq
from tests.rows import RowCounts, changed

BASE = "/api/t/{tenant}"


def register(api, tenant: str, **overrides) -> dict:
    body = {"family_name": "Njoroge", "given_names": "Kevin", "birth_date": "2001-07-30", "sex": "male",
            "identifiers": [{"system": "national_id", "value": uuid.uuid4().hex[:10]}],
            "next_of_kin": [{"name": "Njoroge Ann", "relationship": "mother"}]}
    body.update(overrides)
    response = api.post(f"{BASE.format(tenant=tenant)}/patients", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def test_register_find_and_open_the_chart(api, facility):
    base = BASE.format(tenant=facility.slug)
    patient = register(api, facility.slug, family_name="Wafula", given_names="Brian")
    found = api.get(f"{base}/patients", params={"name": "brian wafulla"})
    assert found.status_code == 200 and found.json()[0]["id"] == patient["id"]
    opened = api.post(f"{base}/patients/{patient['id']}/encounters", json={
        "encounter_class": "outpatient", "reason": "cough", "vitals": {"temperature_c": 37.9, "spo2_percent": 95}})
    assert opened.status_code == 201, opened.text
    assert opened.json()["vitals"]["spo2_percent"] == 95
    ordered = api.post(f"{base}/patients/{patient['id']}/orders", json={
        "code": "36643-5", "encounter_id": opened.json()["id"]})
    assert ordered.status_code == 201, ordered.text
    summary = api.get(f"{base}/patients/{patient['id']}/chart")
    assert summary.status_code == 200
    body = summary.json()
    assert body["patient"]["mrn"] == patient["mrn"]
    assert [o["display"] for o in body["open_orders"]] == ["Chest X-ray, 2 views"]
    assert body["vitals"]["temperature_c"] in (37.9, "37.9")
    assert body["encounters"][0]["reason"] == "cough"


def test_the_api_finds_a_patient_by_phone_and_another_facility_finds_none(api, token_client, facility, other_facility):
    base = BASE.format(tenant=facility.slug)
    line = "7" + str(uuid.uuid4().int)[:8]
    patient = register(api, facility.slug, family_name="Wekesa", given_names="Naliaka", phone=f"0{line}")
    found = api.get(f"{base}/patients", params={"phone": f"+254 {line}"})
    assert found.status_code == 200 and [p["id"] for p in found.json()] == [patient["id"]]
    refused = api.get(f"{base}/patients", params={"phone": "12-AB"})
    assert refused.status_code == 422 and "is not a phone number" in refused.json()["detail"]
    elsewhere = token_client(other_facility.slug, role="clinician")
    assert elsewhere.get(f"{BASE.format(tenant=other_facility.slug)}/patients",
                         params={"phone": f"0{line}"}).json() == []
    assert elsewhere.get(f"{base}/patients", params={"phone": f"0{line}"}).status_code == 403


def test_a_registration_refused_for_an_identifier_another_patient_holds_leaves_no_person_behind(api, db, facility):
    """The identity index is asked before the chart is written, in its own transaction: a chart then refused (its
    insurance number another patient's) once left a new person of its national ID in the index, listed as having
    a chart here, whom the next registration of that number would have been linked to."""
    held = {"system": "nhif", "value": "NHIF-" + uuid.uuid4().hex[:8]}
    register(api, facility.slug, identifiers=[held])
    with db.control_autocommit() as conn:
        rows = RowCounts(conn, facility.slug)
        before = rows.read()
        refused = api.post(f"{BASE.format(tenant=facility.slug)}/patients", json={
            "family_name": "Achieng", "given_names": "Mary", "birth_date": "1995-03-12", "sex": "female",
            "identifiers": [{"system": "national_id", "value": uuid.uuid4().hex[:10]}, held]})
        assert refused.status_code == 409 and "already belongs to another patient" in refused.json()["detail"]
        assert changed(before, rows.read()) == ""


def test_unknown_icd10_code_is_a_422_naming_the_code(api, facility):
    patient = register(api, facility.slug)
    response = api.post(f"{BASE.format(tenant=facility.slug)}/patients/{patient['id']}/problems",
                        json={"code": "Q99.99"})
    assert response.status_code == 422
    assert response.json()["field"] == "code" and "Q99.99" in response.json()["detail"]


def test_missing_required_template_field_is_a_422_naming_the_field(api, facility):
    patient = register(api, facility.slug, sex="female")
    url = f"{BASE.format(tenant=facility.slug)}/patients/{patient['id']}/notes"
    response = api.post(url, json={"template_code": "ANC", "fields": {"fundal_height": 30}})
    assert response.status_code == 422
    assert response.json()["field"] == "fields.gestational_age"
    assert "gestational_age" in response.json()["detail"] and "required" in response.json()["detail"]
    saved = api.post(url, json={"template_code": "ANC", "fields": {"gestational_age": 32, "fundal_height": 30}})
    assert saved.status_code == 201 and saved.json()["fields"]["gestational_age"] == 32


def test_drug_allergy_refused_without_reason_then_accepted_with_one(api, facility):
    base = f"{BASE.format(tenant=facility.slug)}/patients/{register(api, facility.slug)['id']}"
    assert api.post(f"{base}/allergies", json={"substance": "Sulfonamides", "severity": "severe"}).status_code == 201
    order = {"drug": "Co-trimoxazole 960 mg", "dose": 960, "dose_unit": "mg", "route": "oral",
             "frequency": "every 12 hours", "duration_days": 5}
    refused = api.post(f"{base}/medications", json=order)
    assert refused.status_code == 409
    assert refused.json()["requires_override_reason"] is True
    assert refused.json()["conflicts"][0]["matches"][0]["substance"] == "Sulfonamides"
    assert api.get(f"{base}/medications").json() == []
    accepted = api.post(f"{base}/medications", json={**order, "allergy_override_reason": "PCP prophylaxis; "
                                                     "desensitised in 2024"})
    assert accepted.status_code == 201, accepted.text
    assert accepted.json()["allergy_override_reason"].startswith("PCP prophylaxis")


def test_a_cephalosporin_for_a_penicillin_allergy_asks_why_naming_the_cross_reactivity(api, facility):
    """Penicillins and cephalosporins cross-react: refused (409) without a reason as a class match is, both ways,
    the sentence naming both classes; with a reason, prescribed. An unrelated class stays clean."""
    def allergic_to(substance: str) -> str:
        base = f"{BASE.format(tenant=facility.slug)}/patients/{register(api, facility.slug)['id']}"
        assert api.post(f"{base}/allergies", json={"substance": substance, "severity": "moderate"}).status_code == 201
        return base

    def order(drug: str) -> dict:
        return {"drug": drug, "dose": 1, "dose_unit": "g", "route": "IV", "frequency": "once daily",
                "duration_days": 5}

    penicillin = allergic_to("Penicillin")
    refused = api.post(f"{penicillin}/medications", json=order("Ceftriaxone"))
    assert refused.status_code == 409 and refused.json()["requires_override_reason"] is True
    assert refused.json()["detail"].startswith("drug–allergy check: Ceftriaxone is a cephalosporin, which can "
                                               "cross-react with penicillins (recorded allergy to Penicillin); "
                                               "nothing was prescribed")
    [match] = refused.json()["conflicts"][0]["matches"]
    assert (match["kind"], match["classes"]) == ("cross-reactivity", ["cephalosporins", "penicillins"])
    assert api.get(f"{penicillin}/medications").json() == []
    accepted = api.post(f"{penicillin}/medications", json={
        **order("Ceftriaxone"), "allergy_override_reason": "rash as a child, not anaphylaxis; meningitis"})
    assert accepted.status_code == 201, accepted.text
    assert accepted.json()["allergy_override_reason"].startswith("rash as a child")

    cephalosporin = allergic_to("Ceftriaxone")
    reverse = api.post(f"{cephalosporin}/medications", json={**order("Amoxicillin"), "dose": 500, "dose_unit": "mg",
                                                               "route": "oral"})
    assert reverse.status_code == 409
    assert "Amoxicillin is a penicillin, which can cross-react with Ceftriaxone, a cephalosporin" in \
        reverse.json()["detail"]

    sulfonamide = allergic_to("Sulfonamides")
    assert api.post(f"{sulfonamide}/medications", json=order("Ceftriaxone")).status_code == 201


def test_order_set_is_all_or_nothing_over_http(api, facility, db: Database):
    base = f"{BASE.format(tenant=facility.slug)}/patients/{register(api, facility.slug)['id']}"
    placed = api.post(f"{base}/order-sets/MALARIA", json={"priority": "urgent"})
    assert placed.status_code == 201, placed.text
    assert len(placed.json()["service_requests"]) == 3 and len(placed.json()["medication_requests"]) == 1

    allergic = f"{BASE.format(tenant=facility.slug)}/patients/{register(api, facility.slug)['id']}"
    api.post(f"{allergic}/allergies", json={"substance": "Paracetamol"})
    refused = api.post(f"{allergic}/order-sets/MALARIA", json={})
    assert refused.status_code == 409
    assert api.get(f"{allergic}/orders").json() == [] and api.get(f"{allergic}/medications").json() == []
    assert api.post(f"{allergic}/order-sets/NOPE", json={}).status_code == 404


def test_an_order_set_leaves_out_the_drugs_named_and_places_the_rest(api, facility):
    """The drug–allergy check refuses a set whose drug the patient is allergic to; naming the drug in
    `leave_out` places the rest with no override; a drug the set does not hold is a 422, nothing placed."""
    patient = register(api, facility.slug)
    base = f"{BASE.format(tenant=facility.slug)}/patients/{patient['id']}"
    assert api.post(f"{base}/allergies", json={"substance": "Paracetamol"}).status_code == 201
    assert api.post(f"{base}/order-sets/MALARIA", json={}).status_code == 409
    placed = api.post(f"{base}/order-sets/MALARIA", json={"leave_out": ["Paracetamol"]})
    assert placed.status_code == 201, placed.text
    assert placed.json()["medication_requests"] == [] and len(placed.json()["service_requests"]) == 3
    strange = api.post(f"{base}/order-sets/MALARIA", json={"leave_out": ["Quinine"]})
    assert strange.status_code == 422 and strange.json()["field"] == "leave_out"
    assert len(api.get(f"{base}/orders").json()) == 3


def test_correction_and_entered_in_error_over_http(api, facility):
    base = f"{BASE.format(tenant=facility.slug)}/patients/{register(api, facility.slug)['id']}"
    first = api.post(f"{base}/problems", json={"code": "I10"}).json()
    corrected = api.put(f"{base}/problems/{first['id']}", json={"code": "I11.9", "reason": "hypertensive heart"})
    assert corrected.status_code == 200, corrected.text
    stale = api.put(f"{base}/problems/{first['id']}", json={"code": "I10", "reason": "editing an old copy"})
    assert stale.status_code == 409
    history = api.get(f"{base}/entries/{first['id']}/history").json()
    assert [(v["entry_status"], v["detail"]["code"]) for v in history] == [("final", "I10"), ("amended", "I11.9")]
    assert [p["code"] for p in api.get(f"{base}/problems").json()] == ["I11.9"]
    retracted = api.post(f"{base}/entries/{corrected.json()['id']}/entered-in-error", json={"reason": "wrong chart"})
    assert retracted.status_code == 200 and retracted.json()["entry_status"] == "entered_in_error"
    assert api.get(f"{base}/problems").json() == []


def test_a_registration_corrected_without_naming_its_subject_stays_linked_to_it(api, facility):
    """A client correcting a phone number sends the demographics it changes; the chart's link to the
    one-identity subject (which the patient portal reads by) is not the client's to drop by omission."""
    patient = register(api, facility.slug)
    assert patient["subject_id"] is not None
    body = {key: patient[key] for key in ("family_name", "given_names", "birth_date", "sex", "identifiers",
                                           "next_of_kin")}
    corrected = api.put(f"{BASE.format(tenant=facility.slug)}/patients/{patient['id']}",
                        json={**body, "phone": "+254700000001", "reason": "new phone number"})
    assert corrected.status_code == 200, corrected.text
    assert corrected.json()["phone"] == "+254700000001"
    assert corrected.json()["subject_id"] == patient["subject_id"]


def test_results_and_sign_off_over_http(api, facility):
    base = f"{BASE.format(tenant=facility.slug)}/patients/{register(api, facility.slug)['id']}"
    order = api.post(f"{base}/orders", json={"code": "58410-2"}).json()
    result = api.post(f"{base}/results", json={"code": "777-3", "value": 95, "service_request_id": order["id"]})
    assert result.status_code == 201, result.text
    assert (result.json()["flag"], result.json()["unit"]) == ("L", "10*3/uL")
    signed = api.post(f"{base}/results/{result.json()['id']}/sign-off", json={"comment": "repeat in 1 week"})
    assert signed.status_code == 200 and signed.json()["signed_by"] is not None
    assert api.post(f"{base}/results/{result.json()['id']}/sign-off", json={}).status_code == 409


def test_a_result_keeps_the_time_it_was_observed_over_http(api, token_client, facility, other_facility,
                                                           db: Database):
    """A laboratory system sending a backlog gives each result the time it was observed: the record keeps it as the
    result's time and its arrival as recorded_at, and lists the results by it. A time still to come, before the
    order or without its UTC offset is a 422 on occurred_at that writes nothing; another facility is kept out."""
    base = f"{BASE.format(tenant=facility.slug)}/patients/{register(api, facility.slug)['id']}"
    now = dt.datetime.now(dt.UTC)
    earlier = api.post(f"{base}/results", json={"code": "2345-7", "value": 6.1,
                                                "occurred_at": (now - dt.timedelta(hours=1)).isoformat()})
    observed = now - dt.timedelta(hours=2)
    backlog = api.post(f"{base}/results", json={"code": "2345-7", "value": 5.4, "occurred_at": observed.isoformat()})
    assert backlog.status_code == 201, backlog.text
    kept = backlog.json()
    assert dt.datetime.fromisoformat(kept["occurred_at"]) == observed
    assert dt.datetime.fromisoformat(kept["recorded_at"]) > now - dt.timedelta(minutes=1)
    assert [r["id"] for r in api.get(f"{base}/results").json()] == [earlier.json()["id"], kept["id"]]

    order = api.post(f"{base}/orders", json={"code": "58410-2"}).json()
    with db.tenant(facility.slug) as conn:
        entries = conn.execute(sa.text("SELECT count(*) FROM entry")).scalar()
    for at, says in [((now + dt.timedelta(hours=1)).isoformat(), "is still to come: give the time the Platelets "
                      "was observed"),
                     (observed.isoformat(), "is before the Platelets was ordered"),
                     (observed.replace(tzinfo=None).isoformat(), "with its UTC offset")]:
        refused = api.post(f"{base}/results", json={"code": "777-3", "value": 250, "service_request_id": order["id"],
                                                    "occurred_at": at})
        assert refused.status_code == 422 and says in refused.json()["detail"], refused.text
        assert "occurred_at" in (refused.json().get("field") or refused.json()["detail"]), refused.text
    outsider = token_client(other_facility.slug, role="clinician")
    assert outsider.post(f"{base}/results", json={"code": "2345-7", "value": 5.0,
                                                  "occurred_at": observed.isoformat()}).status_code == 403
    with db.tenant(facility.slug) as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM entry")).scalar() == entries


def test_an_order_keeps_the_time_it_was_placed_over_http(api, token_client, facility, other_facility, db: Database):
    """A ward's system sending its orders after its link came back gives each the time it was placed: the record
    keeps it as the order's time and its arrival as recorded_at, and a result observed since is not before it. A time
    still to come or without its UTC offset is a 422 on occurred_at that writes nothing; another facility is kept
    out."""
    base = f"{BASE.format(tenant=facility.slug)}/patients/{register(api, facility.slug)['id']}"
    now = dt.datetime.now(dt.UTC)
    placed = now - dt.timedelta(hours=3)
    ordered = api.post(f"{base}/orders", json={"code": "58410-2", "occurred_at": placed.isoformat()})
    assert ordered.status_code == 201, ordered.text
    kept = ordered.json()
    assert dt.datetime.fromisoformat(kept["occurred_at"]) == placed
    assert dt.datetime.fromisoformat(kept["recorded_at"]) > now - dt.timedelta(minutes=1)
    resulted = api.post(f"{base}/results", json={"code": "777-3", "value": 250, "service_request_id": kept["id"],
                                                 "occurred_at": (placed + dt.timedelta(hours=1)).isoformat()})
    assert resulted.status_code == 201, resulted.text

    with db.tenant(facility.slug) as conn:
        entries = conn.execute(sa.text("SELECT count(*) FROM entry")).scalar()
    for at, says in [((now + dt.timedelta(hours=1)).isoformat(), "is still to come: give the time the Full blood "
                      "count was ordered"),
                     (placed.replace(tzinfo=None).isoformat(), "with its UTC offset"),
                     ("0001-01-01T00:30:00+01:00", "in a year from 1 to 9999 in UTC")]:
        refused = api.post(f"{base}/orders", json={"code": "58410-2", "occurred_at": at})
        assert refused.status_code == 422 and says in refused.json()["detail"], refused.text
        assert "occurred_at" in (refused.json().get("field") or refused.json()["detail"]), refused.text
    outsider = token_client(other_facility.slug, role="clinician")
    assert outsider.post(f"{base}/orders", json={"code": "58410-2",
                                                 "occurred_at": placed.isoformat()}).status_code == 403
    with db.tenant(facility.slug) as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM entry")).scalar() == entries


def test_an_order_is_not_placed_before_its_patient_was_born_nor_before_its_visit_began(api, token_client, facility,
                                                                                     other_facility, db: Database):
    """The orders API and an order set take the time the order was placed (every order of the set the same), and
    its lower limits: not before the patient was born (on the facility's calendar), not before the visit it is
    ordered on began (give or take five minutes of another machine's clock). Each is a 422 naming occurred_at with a
    sentence, and writes nothing; another facility is kept out."""
    patient = register(api, facility.slug, birth_date="2001-07-30")
    base = f"{BASE.format(tenant=facility.slug)}/patients/{patient['id']}"
    visit = api.post(f"{base}/encounters", json={"encounter_class": "outpatient", "reason": "fever"}).json()
    began = dt.datetime.fromisoformat(visit["started_at"])
    within_skew = began - dt.timedelta(minutes=2)
    ordered = api.post(f"{base}/orders", json={"code": "58410-2", "encounter_id": visit["id"],
                                               "occurred_at": within_skew.isoformat()})
    assert ordered.status_code == 201, ordered.text
    earlier = dt.datetime.now(dt.UTC) - dt.timedelta(days=2)
    placed = api.post(f"{base}/order-sets/MALARIA", json={"occurred_at": earlier.isoformat()})
    assert placed.status_code == 201, placed.text
    every = [*placed.json()["service_requests"], *placed.json()["medication_requests"]]
    assert len(every) == 4 and {dt.datetime.fromisoformat(o["occurred_at"]) for o in every} == {earlier}
    # 21:30 UTC on the 29th is half past midnight on the 30th in Nairobi, the day he was born there.
    born_day = api.post(f"{base}/orders", json={"code": "58410-2", "occurred_at": "2001-07-29T21:30:00+00:00"})
    assert born_day.status_code == 201, born_day.text

    with db.tenant(facility.slug) as conn:
        entries = conn.execute(sa.text("SELECT count(*) FROM entry")).scalar()
    before_birth = "2001-07-29T23:30:00+03:00"  # the evening before, in Nairobi
    for path, body, says in [
        ("orders", {"code": "58410-2", "occurred_at": before_birth},
         "is before the patient was born (30 July 2001): give the time the Full blood count was ordered"),
        ("orders", {"code": "58410-2", "encounter_id": visit["id"],
                    "occurred_at": (began - dt.timedelta(hours=1)).isoformat()},
         "is before the visit it is ordered on began"),
        ("order-sets/MALARIA", {"occurred_at": before_birth},
         "is before the patient was born (30 July 2001): give the time the order set Suspected malaria was placed"),
        ("order-sets/MALARIA", {"encounter_id": visit["id"], "occurred_at": (began - dt.timedelta(days=1)).isoformat()},
         "is before the visit it is ordered on began"),
    ]:
        refused = api.post(f"{base}/{path}", json=body)
        assert refused.status_code == 422 and says in refused.json()["detail"], refused.text
        assert refused.json()["field"] == "occurred_at"
    outsider = token_client(other_facility.slug, role="clinician")
    assert outsider.post(f"{base}/order-sets/MALARIA", json={"occurred_at": earlier.isoformat()}).status_code == 403
    with db.tenant(facility.slug) as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM entry")).scalar() == entries


def test_a_figure_past_any_column_is_not_taken_as_a_number(api, facility, db: Database):
    """1e999999 overflowed the result's numeric column (a 500, found by tests/web/test_every_route_input.py): a
    figure of more than 18 digits is not a number, so a numeric analyte's value is refused as one (text is for
    analytes reported in words), and so is such a reference limit; neither writes anything."""
    base = f"{BASE.format(tenant=facility.slug)}/patients/{register(api, facility.slug)['id']}"
    with db.tenant(facility.slug) as conn:
        entries = conn.execute(sa.text("SELECT count(*) FROM entry")).scalar()
    value = api.post(f"{base}/results", json={"code": "2345-7", "value": "1e999999"})
    assert value.status_code == 422 and value.json()["field"] == "value", value.text
    assert "is a number in mmol/L" in value.json()["detail"]
    limit = api.post(f"{base}/results", json={"code": "2345-7", "value": "5.1", "reference_high": "1e999999"})
    assert limit.status_code == 422 and "reference_high" in limit.json()["detail"], limit.text
    with db.tenant(facility.slug) as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM entry")).scalar() == entries


def test_a_result_given_in_person_over_http(api, token_client, facility, other_facility, db: Database):
    base = f"{BASE.format(tenant=facility.slug)}/patients/{register(api, facility.slug)['id']}"
    result = api.post(f"{base}/results", json={"code": "2345-7", "value": 9.4}).json()
    url = f"{base}/results/{result['id']}/disclosure"
    with db.tenant(facility.slug) as conn:
        entries = conn.execute(sa.text("SELECT count(*) FROM entry")).scalar()
    early = api.post(url, json={})
    assert early.status_code == 409 and "review and sign it first" in early.json()["detail"]
    with db.tenant(facility.slug) as conn:  # refused: nothing written
        assert conn.execute(sa.text("SELECT count(*) FROM entry")).scalar() == entries
    api.post(f"{base}/results/{result['id']}/sign-off", json={})
    first_seq = _last_seq(db, facility.slug) + 1
    given = api.post(url, json={"note": "Told with her sister present; next review in a month"})
    assert given.status_code == 200, given.text
    assert given.json()["disclosed_at"] is not None and given.json()["disclosed_by"] is not None
    listed = {r["id"]: r for r in api.get(f"{base}/results").json()}
    assert listed[result["id"]]["disclosed_at"] == given.json()["disclosed_at"]
    written = [e for e in audit.read_events(db, facility.slug, first_seq=first_seq)
               if e["type"] == "record.result_disclosure.create"]
    assert len(written) == 1 and written[0]["event"]["action"] == "C" and written[0]["patient_ref"] is not None
    twice = api.post(url, json={})
    assert twice.status_code == 409 and "already recorded as given in person at" in twice.json()["detail"]

    assert api.post(f"{base}/results/{uuid.uuid4()}/disclosure", json={}).status_code == 404
    other = f"{BASE.format(tenant=facility.slug)}/patients/{register(api, facility.slug)['id']}"
    assert api.post(f"{other}/results/{result['id']}/disclosure", json={}).status_code == 404  # not this chart's
    outsider = token_client(other_facility.slug, role="clinician")
    assert outsider.post(url, json={}).status_code == 403
    theirs = url.replace(facility.slug, other_facility.slug, 1)
    assert outsider.post(theirs, json={}).status_code == 404
    assert token_client(facility.slug, role="nurse").post(url, json={}).status_code == 403

    retracted = api.post(f"{base}/results", json={"code": "2345-7", "value": 3.1}).json()
    api.post(f"{base}/results/{retracted['id']}/sign-off", json={})
    api.post(f"{base}/entries/{retracted['id']}/entered-in-error", json={"reason": "wrong patient's sample"})
    stale = api.post(f"{base}/results/{retracted['id']}/disclosure", json={})
    assert stale.status_code == 409 and "superseded" in stale.json()["detail"]
    too_long = api.post(url, json={"note": "x" * 2001})
    assert too_long.status_code == 422 and "note" in too_long.json()["detail"]


def test_a_disclosure_recorded_by_mistake_is_withdrawn_and_may_be_recorded_again(api, facility, clinician,
                                                                                   db: Database):
    # A click on the wrong result must not keep an HIV result on the patient's portal: the record of
    # giving it is marked entered in error like any entry, and the result is "not given" again.
    base = f"{BASE.format(tenant=facility.slug)}/patients/{register(api, facility.slug)['id']}"
    result = api.post(f"{base}/results", json={"code": "2345-7", "value": 5.2}).json()
    api.post(f"{base}/results/{result['id']}/sign-off", json={})
    given = api.post(f"{base}/results/{result['id']}/disclosure", json={}).json()
    assert given["disclosure_id"] is not None

    withdrawn = api.post(f"{base}/entries/{given['disclosure_id']}/entered-in-error",
                         json={"reason": "recorded on the wrong result; not yet told"})
    assert withdrawn.status_code == 200, withdrawn.text
    listed = {r["id"]: r for r in api.get(f"{base}/results").json()}
    assert listed[result["id"]]["disclosed_at"] is None and listed[result["id"]]["disclosure_id"] is None
    with db.tenant(facility.slug) as conn:
        assert service.disclosed_at_of(conn, uuid.UUID(base.rsplit("/", 1)[1]), [uuid.UUID(result["id"])]) == {}
        with pytest.raises(Conflict, match="not recorded as given in person"):
            service.withdraw_disclosure(conn, clinician, uuid.UUID(base.rsplit("/", 1)[1]),
                                        uuid.UUID(result["id"]), "again")

    again = api.post(f"{base}/results/{result['id']}/disclosure", json={})
    assert again.status_code == 200, again.text
    assert again.json()["disclosure_id"] not in (None, given["disclosure_id"])


def test_two_clinicians_recording_one_disclosure_at_once_record_it_once(api, facility, clinician, db: Database):
    patient_id = uuid.UUID(register(api, facility.slug)["id"])
    base = f"{BASE.format(tenant=facility.slug)}/patients/{patient_id}"
    result = api.post(f"{base}/results", json={"code": "2345-7", "value": 5.0}).json()
    api.post(f"{base}/results/{result['id']}/sign-off", json={})
    start = threading.Barrier(2)

    def give() -> str:
        start.wait()
        try:
            with db.tenant(facility.slug) as conn:
                service.disclose_result(conn, clinician, patient_id, uuid.UUID(result["id"]), None)
                time.sleep(0.2)  # hold the transaction open while the other clinician tries
            return "given"
        except Conflict as refused:
            return str(refused)

    with ThreadPoolExecutor(2) as pool:
        outcomes = sorted(pool.map(lambda _: give(), range(2)))
    assert outcomes[0] == "given" and "already recorded as given in person" in outcomes[1]
    with db.tenant(facility.slug) as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM result_disclosure WHERE result_id = :r"),
                            {"r": result["id"]}).scalar() == 1


def test_encounter_transitions_over_http(api, facility):
    base = f"{BASE.format(tenant=facility.slug)}/patients/{register(api, facility.slug)['id']}"
    visit = api.post(f"{base}/encounters", json={"encounter_class": "emergency", "status": "arrived"}).json()
    url = f"{base}/encounters/{visit['id']}/status"
    assert api.post(url, json={"status": "finished"}).status_code == 409
    assert api.post(url, json={"status": "in_progress"}).json()["status"] == "in_progress"
    assert api.post(url, json={"status": "finished"}).json()["status"] == "finished"
    refused = api.post(url, json={"status": "arrived"})
    assert refused.status_code == 409 and "finished cannot become arrived" in refused.json()["detail"]


@pytest.mark.parametrize(("path", "body", "status", "field"), [
    ("/patients", {"family_name": "X", "given_names": "Y", "sex": "female"}, 422, "birth_date"),
    ("/patients", {"family_name": "X", "given_names": "Y", "birth_date": "1990-13-40", "sex": "f"}, 422,
     "birth_date"),
    ("/patients", {"family_name": "X", "given_names": "Y", "birth_date": "1990-01-01", "sex": "male",
                   "nickname": "Z"}, 422, "nickname"),
    ("/patients/{patient}/medications", {"drug": "Paracetamol", "dose": -5, "dose_unit": "mg", "route": "oral",
                                         "frequency": "daily"}, 422, "dose"),
    ("/patients/{patient}/vitals", {"systolic_mmhg": 900}, 422, "systolic_mmhg"),
    ("/patients/{patient}/orders", {"code": "not-loinc"}, 422, "code"),
    ("/patients/{patient}/results", {"code": "718-7", "value": "very low"}, 422, "value"),
    ("/patients/{patient}/encounters", {"encounter_class": "teleconsult"}, 422, "encounter_class"),
    ("/patients/{patient}/notes", {"text": ""}, 422, "text"),
    ("/patients/{patient}/problems", {"code": "J18.9", "onset_date": "2099-01-01"}, 422, "onset date is in the future"),
    ("/patients/{patient}/problems", {"code": "J18.9", "clinical_status": "resolved", "resolved_date": "2099-01-01"},
     422, "resolved date is in the future"),
])
def test_bad_input_is_a_structured_422_never_a_500(api, facility, path, body, status, field, db: Database):
    patient = register(api, facility.slug)
    url = BASE.format(tenant=facility.slug) + path.format(patient=patient["id"])
    with db.tenant(facility.slug) as conn:
        before = conn.execute(sa.text("SELECT count(*) FROM entry")).scalar()
    response = api.post(url, json=body)
    assert response.status_code == status, response.text
    assert field in response.text and response.json()["detail"]
    with db.tenant(facility.slug) as conn:  # a refused write leaves no half-row behind
        assert conn.execute(sa.text("SELECT count(*) FROM entry")).scalar() == before


def test_malformed_json_and_unknown_patients_are_4xx(api, facility):
    base = BASE.format(tenant=facility.slug)
    broken = api.post(f"{base}/patients", content=b"{not json", headers={"content-type": "application/json"})
    assert 400 <= broken.status_code < 500
    missing = api.get(f"{base}/patients/{uuid.uuid4()}/chart")
    assert missing.status_code == 404 and "no patient" in missing.json()["detail"]
    assert api.get(f"{base}/patients/not-a-uuid").status_code == 404


def test_another_facility_cannot_reach_this_facilitys_patients(api, token_client, facility, other_facility):
    patient = register(api, facility.slug)
    outsider = token_client(other_facility.slug, role="clinician")
    # With its own token at our facility's URL: refused by the guard.
    assert outsider.get(f"{BASE.format(tenant=facility.slug)}/patients/{patient['id']}").status_code == 403
    # At its own facility, our patient's id finds nothing: the row is in another schema.
    theirs = f"{BASE.format(tenant=other_facility.slug)}/patients/{patient['id']}"
    assert outsider.get(theirs).status_code == 404
    assert outsider.get(f"{theirs}/chart").status_code == 404
    # Again once a chart read of their own has warmed the one-round-trip path (audit block and key).
    own = register(outsider, other_facility.slug)
    own_base = f"{BASE.format(tenant=other_facility.slug)}/patients/{own['id']}"
    assert outsider.post(f"{own_base}/encounters", json={"encounter_class": "outpatient"}).status_code == 201
    assert outsider.get(f"{own_base}/chart").status_code == 200
    assert outsider.get(f"{theirs}/chart").status_code == 404
    assert outsider.post(f"{theirs}/problems", json={"code": "B54"}).status_code == 404


def test_permissions_are_enforced_per_route(token_client, facility, api):
    patient = register(api, facility.slug)
    base = f"{BASE.format(tenant=facility.slug)}/patients/{patient['id']}"
    registrar = token_client(facility.slug, role="registrar")
    assert registrar.get(f"{base}").status_code == 200
    assert registrar.post(f"{base}/encounters", json={"encounter_class": "outpatient"}).status_code == 201
    assert registrar.post(f"{base}/problems", json={"code": "B54"}).status_code == 403
    assert registrar.get(f"{base}/chart").status_code == 403
    nurse = token_client(facility.slug, role="nurse")
    assert nurse.get(f"{base}/chart").status_code == 200
    assert nurse.post(f"{base}/medications", json={"drug": "Paracetamol", "dose": 1, "dose_unit": "g",
                                                   "route": "oral", "frequency": "daily"}).status_code == 403


def test_the_facility_configuration_is_listed(api, facility):
    base = BASE.format(tenant=facility.slug)
    assert {t["code"] for t in api.get(f"{base}/catalogue").json()} >= {"58410-2", "36643-5"}
    assert [t["code"] for t in api.get(f"{base}/note-templates").json()] == ["ANC"]
    sets = api.get(f"{base}/order-sets").json()
    assert sets[0]["definition"]["tests"] == ["32700-7", "70569-9", "58410-2"]


def test_a_nul_character_in_any_text_is_a_422_and_nothing_is_written(api, facility, db: Database):
    """PostgreSQL text cannot hold NUL (U+0000); a client that sends one (a scanner, a pasted binary) is told so
    in a sentence, never a 500, on every route, and the act leaves nothing behind."""
    base = BASE.format(tenant=facility.slug)
    refused = api.post(f"{base}/patients", json={
        "family_name": "Oduor\u0000", "given_names": "Mary", "birth_date": "1990-01-01", "sex": "female"})
    assert refused.status_code == 422, refused.text
    assert "NUL" in refused.json()["detail"] and "Traceback" not in refused.text
    patient = register(api, facility.slug)
    with db.tenant(facility.slug) as conn:
        before = conn.execute(sa.text("SELECT count(*) FROM entry")).scalar()
    problem = api.post(f"{base}/patients/{patient['id']}/problems", json={"code": "B50.9", "note": "fever\u0000"})
    assert problem.status_code == 422, problem.text
    with db.tenant(facility.slug) as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM entry")).scalar() == before
