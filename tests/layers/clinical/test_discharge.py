"""Discharge summaries over the clinical API: the draft read from the stay's record, signing one note,
the refusals (a field missing, a second summary, not a stay), a correction superseding it with its
history kept, every read and write audited, and another facility's token or a guessed id refused."""

from __future__ import annotations

import uuid

import pytest

from appliance.layers.clinical import service
from appliance.layers.clinical.schemas import AllergyIn, ConditionIn, EncounterIn, MedicationIn, ResultIn
from appliance.substrate import audit
from appliance.substrate.record import NewEntry, append_many
from tests.layers.clinical.conftest import new_patient
from tests.layers.clinical.test_chart_in_care import _last_seq
from tests.layers.clinical.test_routes import BASE, register

WRITTEN = {"hospital_course": "Admitted with fever and cough; treated with oral amoxicillin, afebrile from day 2.",
           "condition": "improved", "instructions": "Finish the antibiotics; come back if the fever returns.",
           "follow_up": "Medical outpatient clinic in two weeks", "follow_up_date": "2026-12-11"}


@pytest.fixture(scope="module")
def admitted(db, facility, clinician) -> dict:
    """A patient with an allergy and a problem from an earlier visit, now in a stay with a diagnosis, a
    result and a prescription recorded in it."""
    with db.tenant(facility.slug) as conn:
        patient = new_patient(conn, clinician, family_name="Chebet", given_names="Ruth")
        pid = patient["id"]
        visit = service.open_encounter(conn, clinician, pid, EncounterIn(encounter_class="outpatient"))
        service.add_condition(conn, clinician, pid, ConditionIn(code="E11.9", encounter_id=visit["id"]))
        service.add_allergy(conn, clinician, pid, AllergyIn(substance="Penicillin", reaction="rash",
                                                            severity="moderate"))
        stay = service.open_encounter(conn, clinician, pid, EncounterIn(
            encounter_class="inpatient", status="in_progress", ward_code="GEN", reason="fever and cough"))
        service.add_condition(conn, clinician, pid, ConditionIn(code="J18.9", encounter_id=stay["id"]))
        service.record_result(conn, clinician, pid, ResultIn(code="2345-7", value="9.1", encounter_id=stay["id"]))
        service.request_medication(conn, clinician, pid, MedicationIn(
            drug="Azithromycin", dose=500, dose_unit="mg", route="oral", frequency="once daily", duration_days=3,
            encounter_id=stay["id"]))
    return {"patient": patient, "base": f"{BASE.format(tenant=facility.slug)}/patients/{pid}",
            "visit": {"id": str(visit["id"])}, "stay": {"id": str(stay["id"])}}


def test_the_draft_reads_the_stay_and_a_summary_is_signed_once(api, db, facility, admitted):
    base, stay = admitted["base"], admitted["stay"]
    before = _last_seq(db, facility.slug)
    draft = api.get(f"{base}/discharge-summaries/draft")  # no stay named: the open one
    assert draft.status_code == 200, draft.text
    body = draft.json()
    assert body["stay"]["id"] == stay["id"] and body["stay"]["ward_code"] == "GEN" and body["summary_id"] is None
    fields = body["fields"]
    assert "J18.9" in fields["diagnoses"] and "E11.9" not in fields["diagnoses"]  # the stay's, not the earlier visit's
    assert fields["results"].startswith("Glucose 9.1 mmol/L (high), ")
    assert fields["medications"] == "Azithromycin 500 mg oral, once daily, for 3 days"
    assert fields["allergies"] == "Penicillin: rash (moderate)"
    assert {f["key"] for f in body["template"]["fields"] if f["required"]} >= {"hospital_course", "condition"}
    read = {e["type"] for e in audit.read_events(db, facility.slug, first_seq=before + 1)}
    assert {"record.encounter.read", "record.condition.read", "record.result.read", "record.medication_request.read",
            "record.allergy.read"} <= read

    missing = api.post(f"{base}/discharge-summaries", json={
        "encounter_id": stay["id"], "fields": {**fields, **WRITTEN, "hospital_course": " "}})
    assert missing.status_code == 422
    assert missing.json()["field"] == "fields.hospital_course" and "Hospital course" in missing.json()["detail"]
    assert api.get(f"{base}/discharge-summaries").json() == []  # a refused write leaves nothing

    before = _last_seq(db, facility.slug)
    signed = api.post(f"{base}/discharge-summaries", json={"encounter_id": stay["id"], "fields": {**fields, **WRITTEN}})
    assert signed.status_code == 201, signed.text
    summary = signed.json()
    assert summary["title"] == "Discharge summary" and summary["template_code"] == "discharge"
    assert summary["encounter_id"] == stay["id"] and summary["fields"]["condition"] == "improved"
    assert summary["stay"]["started_at"] is not None and summary["reason"] is None
    written = [e["type"] for e in audit.read_events(db, facility.slug, first_seq=before + 1)]
    assert written == ["record.discharge_summary.create"]  # the access log says what it was, not "a note"

    again = api.post(f"{base}/discharge-summaries", json={"encounter_id": stay["id"], "fields": {**fields, **WRITTEN}})
    assert again.status_code == 409 and again.json()["entry_id"] == summary["id"]
    assert "correct it" in again.json()["detail"]
    listed = api.get(f"{base}/discharge-summaries").json()
    assert [s["id"] for s in listed] == [summary["id"]]
    assert api.get(f"{base}/discharge-summaries/draft",
                   params={"encounter_id": stay["id"]}).json()["summary_id"] == summary["id"]


def signed_stay(api, facility) -> tuple[str, dict, dict]:
    """A patient admitted and given a discharge summary by `api`'s clinician: (chart URL, stay, summary)."""
    base = f"{BASE.format(tenant=facility.slug)}/patients/{register(api, facility.slug)['id']}"
    stay = api.post(f"{base}/encounters", json={"encounter_class": "inpatient", "status": "in_progress"}).json()
    fields = api.get(f"{base}/discharge-summaries/draft").json()["fields"]
    signed = api.post(f"{base}/discharge-summaries", json={"encounter_id": stay["id"],
                                                           "fields": {**fields, **WRITTEN, "diagnoses": "Malaria"}})
    assert signed.status_code == 201, signed.text
    return base, stay, signed.json()


def test_a_correction_supersedes_by_its_author_and_the_history_is_kept(api, token_client, db, facility):
    base, stay, first = signed_stay(api, facility)
    changed = {**first["fields"], "follow_up": "Chest clinic in one week", "follow_up_date": "2026-12-04"}
    unreasoned = api.put(f"{base}/discharge-summaries/{first['id']}", json={"fields": changed})
    assert unreasoned.status_code == 422 and "reason" in unreasoned.json()["detail"]
    someone_else = token_client(facility.slug, role="clinician")
    refused = someone_else.put(f"{base}/discharge-summaries/{first['id']}",
                               json={"fields": changed, "reason": "clinic moved"})
    assert refused.status_code == 409 and "signed it" in refused.json()["detail"]

    before = _last_seq(db, facility.slug)
    corrected = api.put(f"{base}/discharge-summaries/{first['id']}", json={"fields": changed, "reason": "clinic moved"})
    assert corrected.status_code == 200, corrected.text
    body = corrected.json()
    assert body["entry_status"] == "amended" and body["root_id"] == first["root_id"]
    assert body["reason"] == "clinic moved"
    assert body["fields"]["follow_up"] == "Chest clinic in one week" and body["occurred_at"] == first["occurred_at"]
    amended = {e["type"] for e in audit.read_events(db, facility.slug, first_seq=before + 1)}
    assert "record.discharge_summary.amend" in amended

    # The old id opens the summary in force; correcting the old version again is refused.
    assert api.get(f"{base}/discharge-summaries/{first['id']}").json()["id"] == body["id"]
    stale = api.put(f"{base}/discharge-summaries/{first['id']}", json={"fields": changed, "reason": "again"})
    assert stale.status_code == 409 and stale.json()["entry_id"] == body["id"]
    history = api.get(f"{base}/entries/{body['id']}/history").json()
    assert [v["detail"]["fields"]["follow_up"] for v in history] == [first["fields"]["follow_up"],
                                                                     "Chest clinic in one week"]
    assert [s["id"] for s in api.get(f"{base}/discharge-summaries").json()] == [body["id"]]

    # Marked entered in error, it leaves the chart (its history stays) and the stay may be summarised again.
    withdrawn = api.post(f"{base}/entries/{body['id']}/entered-in-error", json={"reason": "wrong patient"})
    assert withdrawn.status_code == 200
    assert api.get(f"{base}/discharge-summaries/{body['id']}").status_code == 404
    assert api.get(f"{base}/discharge-summaries/draft").json()["summary_id"] is None
    again = api.post(f"{base}/discharge-summaries", json={"encounter_id": stay["id"], "fields": changed})
    assert again.status_code == 201, again.text


def test_only_a_stay_that_began_has_a_summary(api, facility, admitted):
    base = admitted["base"]
    visit = api.post(f"{base}/discharge-summaries", json={"encounter_id": admitted["visit"]["id"], "fields": WRITTEN})
    assert visit.status_code == 422 and visit.json()["field"] == "encounter_id"
    assert "outpatient" in visit.json()["detail"]
    planned = api.post(f"{base}/encounters", json={"encounter_class": "inpatient", "status": "planned"}).json()
    refused = api.get(f"{base}/discharge-summaries/draft", params={"encounter_id": planned["id"]})
    assert refused.status_code == 422 and "planned" in refused.json()["detail"]
    unknown = api.post(f"{base}/discharge-summaries", json={"fields": WRITTEN})
    assert unknown.status_code == 422 and "encounter_id" in unknown.json()["detail"]

    outpatient_only = register(api, facility.slug, family_name="Kamau")
    none = api.get(f"{BASE.format(tenant=facility.slug)}/patients/{outpatient_only['id']}/discharge-summaries/draft")
    assert none.status_code == 422 and "no inpatient stay" in none.json()["detail"]
    # Another patient's stay is not this patient's.
    theirs = api.post(f"{BASE.format(tenant=facility.slug)}/patients/{outpatient_only['id']}/discharge-summaries",
                      json={"encounter_id": admitted["stay"]["id"], "fields": WRITTEN})
    assert theirs.status_code == 422 and theirs.json()["field"] == "encounter_id"


def test_the_notes_api_cannot_write_one_around_the_template(api, admitted):
    written = api.post(f"{admitted['base']}/notes", json={"template_code": "discharge", "fields": WRITTEN})
    assert written.status_code == 422 and written.json()["field"] == "template_code"


def test_another_facilitys_token_and_guessed_ids_are_refused(api, token_client, facility, other_facility, admitted):
    base, stay = admitted["base"], admitted["stay"]
    summary = api.get(f"{base}/discharge-summaries").json()[0]
    intruder = token_client(other_facility.slug, role="clinician")
    calls = [("get", f"{base}/discharge-summaries/draft", None), ("get", f"{base}/discharge-summaries", None),
             ("get", f"{base}/discharge-summaries/{summary['id']}", None),
             ("post", f"{base}/discharge-summaries", {"encounter_id": stay["id"], "fields": WRITTEN}),
             ("put", f"{base}/discharge-summaries/{summary['id']}", {"fields": WRITTEN, "reason": "mine now"})]
    for method, url, body in calls:
        answer = getattr(intruder, method)(url, **({"json": body} if body else {}))
        assert answer.status_code == 403, (method, url, answer.text)
        assert "Chebet" not in answer.text

    guessed = f"{BASE.format(tenant=facility.slug)}/patients/{uuid.uuid4()}"
    for method, url, body in [("get", f"{guessed}/discharge-summaries/draft", None),
                              ("get", f"{guessed}/discharge-summaries", None),
                              ("post", f"{guessed}/discharge-summaries",
                               {"encounter_id": stay["id"], "fields": WRITTEN})]:
        assert getattr(api, method)(url, **({"json": body} if body else {})).status_code == 404, url
    note = api.post(f"{base}/notes", json={"text": "Ward round: well."}).json()
    for entry_id in (uuid.uuid4(), note["id"]):  # a guessed id, and a note that is not a discharge summary
        assert api.get(f"{base}/discharge-summaries/{entry_id}").status_code == 404
        answer = api.put(f"{base}/discharge-summaries/{entry_id}", json={"fields": WRITTEN, "reason": "guess"})
        assert answer.status_code == 404 and "no discharge summary" in answer.json()["detail"]
    nurse = token_client(facility.slug, role="nurse")  # reads notes; does not sign discharge summaries
    assert nurse.get(f"{base}/discharge-summaries").status_code == 200
    assert nurse.post(f"{base}/discharge-summaries", json={"encounter_id": stay["id"], "fields": WRITTEN}) \
        .status_code == 403


def test_the_draft_leaves_out_a_result_given_in_person_and_says_which(api, db, facility, clinician):
    """An HIV test taken in the stay, which REL-001 keeps to be given with counselling: not in the pre-filled key
    results (the summary is the patient's to read), named apart with its rule; its read audited as the others."""
    base = f"{BASE.format(tenant=facility.slug)}/patients/{register(api, facility.slug)['id']}"
    stay = api.post(f"{base}/encounters", json={"encounter_class": "inpatient", "status": "in_progress"}).json()
    patient_id, hiv = uuid.UUID(base.rsplit("/", 1)[1]), uuid.uuid4()
    with db.tenant(facility.slug) as conn:
        service.record_result(conn, clinician, patient_id, ResultIn(code="2345-7", value="5.0",
                                                                    encounter_id=stay["id"]))
        append_many(conn, clinician, [NewEntry("result", patient_id, encounter_id=uuid.UUID(stay["id"]), id=hiv,
                                               detail={"service_request_id": None, "code": "68961-2",
                                                       "display": "HIV rapid test", "value_numeric": None,
                                                       "value_text": "reactive", "unit": None, "reference_low": None,
                                                       "reference_high": None, "flag": "A", "note": None})])
    before = _last_seq(db, facility.slug)
    body = api.get(f"{base}/discharge-summaries/draft").json()
    assert body["fields"]["results"].startswith("Glucose 5.0") and "HIV" not in body["fields"]["results"]
    assert [(h["id"], h["test"], h["rule_id"]) for h in body["held_back"]] == [(str(hiv), "HIV rapid test", "REL-001")]
    (read,) = [e for e in audit.read_events(db, facility.slug, first_seq=before + 1)
               if e["type"] == "record.result.read"]
    assert str(hiv) in str(read)
