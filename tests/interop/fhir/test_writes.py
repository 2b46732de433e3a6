"""Creating through the FHIR facade: single resources and transaction bundles, validated with the R4B
models, written through the clinical services in one transaction, all or nothing, audited; every
refusal an OperationOutcome naming the element, and no half-row left behind."""

from __future__ import annotations

import json
import uuid

import sqlalchemy as sa

from appliance.substrate import audit, identity
from appliance.substrate.db import tenant_schema
from tests.interop.fhir.conftest import answer, base, refusal
from tests.rows import RowCounts

ICD10 = "http://hl7.org/fhir/sid/icd-10"


def rows(db, tenant: str) -> dict[str, int]:
    """The rows of every table of the facility and of the appliance (`tests.rows`): a refused write changes none,
    the identity index's included (the subject a refused Patient would have been linked to)."""
    with db.control_autocommit() as conn:
        return RowCounts(conn, tenant).read()


def new_patient(national_id: str | None = None, **extra) -> dict:
    national_id = national_id or uuid.uuid4().hex[:10]
    return {"resourceType": "Patient", "name": [{"use": "official", "family": "Wekesa", "given": ["Daniel", "Simiyu"]}],
            "gender": "male", "birthDate": "1979-11-03",
            "identifier": [{"system": "urn:healthos:identifier:national_id", "value": national_id}],
            "telecom": [{"system": "email", "value": "d.wekesa@example.org"},
                        {"system": "phone", "value": "+254711000111"}],
            "address": [{"line": ["Plot 12"], "city": "Bungoma", "state": "Western", "country": "KE"}], **extra}


def condition(patient_ref: str, code: str = "E11.9", **extra) -> dict:
    return {"resourceType": "Condition", "subject": {"reference": patient_ref},
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                           "code": "active"}]},
            "code": {"coding": [{"system": ICD10, "code": code}]}, "onsetDateTime": "2019-05-01", **extra}


def heart_rate(patient_ref: str, value: float = 88, unit: str = "/min", **extra) -> dict:
    return {"resourceType": "Observation", "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                      "code": "vital-signs"}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
            "subject": {"reference": patient_ref}, "effectiveDateTime": "2024-03-02T09:30:00+03:00",
            "valueQuantity": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit},
            **extra}


def registered(api, tenant: str) -> str:
    created = answer(api.post(f"{base(tenant)}/Patient", json=new_patient()), 201)
    return created["id"]


def test_create_a_patient_then_read_it(api, db, facility):
    response = api.post(f"{base(facility.slug)}/Patient", json=new_patient(),
                        headers={"content-type": "application/fhir+json"})
    created = answer(response, 201)
    version = created["meta"]["versionId"]
    assert response.headers["location"].endswith(f"/fhir/Patient/{created['id']}/_history/{version}")
    assert response.headers["etag"] == f'W/"{created["meta"]["versionId"]}"'
    assert created["name"][0]["given"] == ["Daniel", "Simiyu"] and created["address"][0]["city"] == "Bungoma"
    # The phone is the registration's phone wherever the client listed it; the e-mail a contact.
    assert created["telecom"] == [{"system": "phone", "value": "+254711000111", "use": "mobile"},
                                  {"system": "email", "value": "d.wekesa@example.org"}]
    read = answer(api.get(f"{base(facility.slug)}/Patient/{created['id']}"))
    assert read["identifier"] == created["identifier"]
    with db.tenant(facility.slug) as conn:  # the chart links to its one-identity subject, as the API's does
        subject = conn.execute(sa.text("SELECT subject_id FROM patient WHERE id = :p"), {"p": created["id"]}).scalar()
    with db.control() as conn:  # and the facility is noted as holding it (where the patient portal looks)
        assert conn.execute(sa.text("SELECT tenant FROM control.subject_facility WHERE subject_id = :s"),
                            {"s": subject}).scalars().all() == [facility.slug]


def test_create_condition_allergy_and_vital_signs(api, db, facility):
    patient = f"Patient/{registered(api, facility.slug)}"
    url = base(facility.slug)
    problem = answer(api.post(f"{url}/Condition", json=condition(patient)), 201)
    assert problem["code"]["coding"][0]["code"] == "E11.9" and problem["code"]["coding"][0]["display"]
    assert problem["onsetDateTime"] == "2019-05-01"
    allergy = answer(api.post(f"{url}/AllergyIntolerance", json={
        "resourceType": "AllergyIntolerance", "patient": {"reference": patient}, "code": {"text": "Sulfonamides"},
        "category": ["medication"], "criticality": "high",
        "reaction": [{"manifestation": [{"text": "rash"}], "severity": "moderate"}]}), 201)
    assert (allergy["code"]["text"], allergy["reaction"][0]["severity"]) == ("Sulfonamides", "moderate")
    pulse = answer(api.post(f"{url}/Observation", json=heart_rate(patient)), 201)
    assert pulse["component"][0]["valueQuantity"]["value"] == 88
    assert pulse["effectiveDateTime"].startswith("2024-03-02T06:30:00")  # the time it was taken, not now
    panel = {key: value for key, value in heart_rate(patient).items() if key != "valueQuantity"}
    pressure = answer(api.post(f"{url}/Observation", json={
        **panel, "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]}, "component": [
            {"code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
             "valueQuantity": {"value": 132, "unit": "mm[Hg]"}},
            {"code": {"coding": [{"system": "http://loinc.org", "code": "8462-4"}]},
             "valueQuantity": {"value": 84, "unit": "mm[Hg]"}}]}), 201)
    assert {c["code"]["coding"][0]["code"] for c in pressure["component"]} == {"8480-6", "8462-4"}
    found = answer(api.get(f"{url}/Observation", params={"patient": patient.split("/")[1], "code": "8480-6"}))
    assert [e["resource"]["id"] for e in found["entry"]] == [pressure["id"]]
    events = {e.event_type for e in audit.patient_access_log(db, facility.slug, patient.split("/")[1])}
    assert {"record.demographics.create", "record.condition.create", "record.allergy.create",
            "record.vital_signs.create"} <= events


def test_a_code_not_in_icd10_is_422_naming_it_and_writes_nothing(api, db, facility):
    patient = f"Patient/{registered(api, facility.slug)}"
    before = rows(db, facility.slug)
    body = refusal(api.post(f"{base(facility.slug)}/Condition", json=condition(patient, "Q99.99")), 422)
    assert "Q99.99" in body["issue"][0]["diagnostics"]
    assert body["issue"][0]["expression"] == ["Condition.code.coding.code"]
    assert rows(db, facility.slug) == before


def test_a_nul_character_is_an_outcome_of_422_and_writes_nothing(api, db, facility):
    before = rows(db, facility.slug)
    sent = new_patient(name=[{"use": "official", "family": "Wekesa\u0000", "given": ["Daniel"]}])
    body = refusal(api.post(f"{base(facility.slug)}/Patient", json=sent), 422)
    assert "NUL" in body["issue"][0]["diagnostics"]
    assert rows(db, facility.slug) == before


def test_what_the_record_cannot_hold_is_422_not_supported(api, db, facility):
    patient = f"Patient/{registered(api, facility.slug)}"
    url = base(facility.slug)
    before = rows(db, facility.slug)
    snomed = condition(patient, code=None)
    snomed["code"] = {"coding": [{"system": "http://snomed.info/sct", "code": "44054006"}]}
    assert refusal(api.post(f"{url}/Condition", json=snomed), 422)["issue"][0]["code"] == "not-supported"
    lab = heart_rate(patient)
    lab["category"][0]["coding"][0]["code"] = "laboratory"
    assert "vital signs" in refusal(api.post(f"{url}/Observation", json=lab), 422)["issue"][0]["diagnostics"]
    bmi = heart_rate(patient)
    bmi["code"]["coding"][0]["code"] = "39156-5"
    assert refusal(api.post(f"{url}/Observation", json=bmi), 422)
    assert rows(db, facility.slug) == before


def test_invalid_input_is_named_and_writes_nothing(api, db, facility):
    patient = f"Patient/{registered(api, facility.slug)}"
    url = base(facility.slug)
    before = rows(db, facility.slug)
    body = refusal(api.post(f"{url}/Patient", json=new_patient(birthDate="3rd of May")), 400)
    assert body["issue"][0]["expression"] == ["Patient.birthDate"]
    body = refusal(api.post(f"{url}/Patient", json=new_patient(gender="femal")), 422)
    assert body["issue"][0]["expression"] == ["Patient.gender"]
    body = refusal(api.post(f"{url}/Observation", json=heart_rate(patient, unit="Hz")), 422)
    assert body["issue"][0]["expression"] == ["Observation.valueQuantity.code"]
    body = refusal(api.post(f"{url}/Observation", json=heart_rate(patient, value=900)), 422)
    assert body["issue"][0]["expression"] == ["Observation.value"]
    assert refusal(api.post(f"{url}/Condition", json=new_patient()), 400)["issue"][0]["expression"] == [
        "Condition.resourceType"]
    assert refusal(api.post(f"{url}/Condition", json=condition(f"Patient/{uuid.uuid4()}")), 404)
    assert refusal(api.post(f"{url}/Condition", json=condition("Patient/not-an-id")), 422)
    fhir_json = {"content-type": "application/fhir+json"}
    assert refusal(api.post(f"{url}/Condition", content=b"{not json", headers=fhir_json), 400)
    assert rows(db, facility.slug) == before


def test_a_date_sent_as_a_number_is_refused_naming_it(api, db, facility):
    """FHIR JSON writes dates as text; the R4B models would read 12345 as seconds since 1970, and the record
    as nothing it could read (a 500 until the sweep in tests/web/test_every_route_input.py found it)."""
    patient = f"Patient/{registered(api, facility.slug)}"
    url = base(facility.slug)
    before = rows(db, facility.slug)
    body = refusal(api.post(f"{url}/Condition", json=condition(patient, onsetDateTime=12345)), 400)
    assert body["issue"][0]["expression"] == ["Condition.onsetDateTime"]
    assert "written as text" in body["issue"][0]["diagnostics"]
    visit = _encounter(patient, f"urn:uuid:{uuid.uuid4()}")
    visit["period"]["start"] = 1692000000
    body = refusal(api.post(url, json=_transaction(visit)), 400)
    assert body["issue"][0]["expression"] == ["Bundle.entry[0].resource.period.start"]
    assert rows(db, facility.slug) == before


def test_a_national_id_already_registered_is_409(api, db, facility):
    national_id = uuid.uuid4().hex[:10]
    answer(api.post(f"{base(facility.slug)}/Patient", json=new_patient(national_id)), 201)
    before = rows(db, facility.slug)
    body = refusal(api.post(f"{base(facility.slug)}/Patient", json=new_patient(national_id)), 409)
    assert body["issue"][0]["code"] == "conflict" and body["issue"][0]["expression"] == ["Patient.identifier"]
    assert rows(db, facility.slug) == before


def test_a_national_id_whose_holder_elsewhere_differs_is_refused_naming_only_what_differs(
        api, db, facility, other_facility, token_client):
    """A Patient created through FHIR was linked to whoever held its national ID at any facility on the number
    alone. FHIR has no element to answer the question the desk is asked when that person was born on another
    day or is of another sex, so the write is refused (422 business-rule) naming only what differs, for the
    sender to check; nothing is written, alone or in a transaction."""
    national_id = uuid.uuid4().hex[:10]
    there = token_client(other_facility.slug, role="clinician")
    holder = new_patient(national_id, name=[{"use": "official", "family": "Barasa", "given": ["Tom"]}])  # a man
    answer(there.post(f"{base(other_facility.slug)}/Patient", json=holder), 201)
    before = rows(db, facility.slug)
    for url, body, where in [
            ("Patient", new_patient(national_id, gender="female"), "Patient"),
            ("", _transaction(new_patient(national_id, gender="female")), "Bundle.entry[0].resource")]:
        refused = api.post(f"{base(facility.slug)}/{url}".rstrip("/"), json=body)
        issue = refusal(refused, 422)["issue"][0]
        assert issue["code"] == "business-rule" and issue["expression"] == [f"{where}.identifier"], issue
        assert issue["details"]["coding"][0]["code"] == "national-id-holder-differs"
        assert "held by a person with another sex" in issue["diagnostics"]
        assert " male" not in issue["diagnostics"] and "Barasa" not in refused.text
        assert other_facility.slug not in refused.text
    assert rows(db, facility.slug) == before


def test_a_national_id_asked_about_too_often_is_refused_as_throttled(api, db, facility, other_facility, token_client):
    """Limited as the JSON API is: after five differing answers about one person in an hour, the sender's next
    Patient naming that ID is refused (429 throttled, an OperationOutcome saying to check the card or ask the
    records office), whatever it says of the patient; nothing is written."""
    national_id = uuid.uuid4().hex[:10]
    there = token_client(other_facility.slug, role="clinician")
    holder = new_patient(national_id, name=[{"use": "official", "family": "Barasa", "given": ["Tom"]}])  # a man
    answer(there.post(f"{base(other_facility.slug)}/Patient", json=holder), 201)
    for _ in range(identity.NATIONAL_ID_ANSWERS_PER_ASKER):
        refusal(api.post(f"{base(facility.slug)}/Patient", json=new_patient(national_id, gender="female")), 422)
    before = rows(db, facility.slug)
    issue = refusal(api.post(f"{base(facility.slug)}/Patient", json=new_patient(national_id)), 429)["issue"][0]
    assert issue["code"] == "throttled" and issue["expression"] == ["Patient.identifier"], issue
    assert issue["details"]["coding"][0]["code"] == "national-id-asked-too-often"
    assert "or ask the records office" in issue["diagnostics"]
    assert rows(db, facility.slug) == before


def _transaction(*resources: dict) -> dict:
    entries = []
    for resource in resources:
        full_url = resource.pop("fullUrl", None) or f"urn:uuid:{uuid.uuid4()}"
        entries.append({"fullUrl": full_url, "resource": resource,
                        "request": {"method": "POST", "url": resource["resourceType"]}})
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def _encounter(patient_ref: str, full_url: str) -> dict:
    return {"fullUrl": full_url, "resourceType": "Encounter", "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
            "subject": {"reference": patient_ref},
            "period": {"start": "2023-08-14T08:00:00Z", "end": "2023-08-14T08:40:00Z"},
            "reasonCode": [{"text": "annual review"}]}


def test_a_transaction_writes_a_patient_and_their_record_together(api, db, facility):
    patient_url, visit_url = f"urn:uuid:{uuid.uuid4()}", f"urn:uuid:{uuid.uuid4()}"
    bundle = _transaction({"fullUrl": patient_url, **new_patient()}, _encounter(patient_url, visit_url),
                          condition(patient_url, "E11.9", encounter={"reference": visit_url}),
                          condition(patient_url, "I10"), heart_rate(patient_url, encounter={"reference": visit_url}))
    response = answer(api.post(base(facility.slug), json=bundle))
    assert response["type"] == "transaction-response"
    statuses = [e["response"]["status"] for e in response["entry"]]
    assert statuses == ["201 Created"] * 5
    patient_id = response["entry"][0]["resource"]["id"]
    encounter_id = response["entry"][1]["resource"]["id"]
    assert response["entry"][2]["resource"]["encounter"]["reference"] == f"Encounter/{encounter_id}"
    assert response["entry"][4]["response"]["location"].startswith("Observation/")
    everything = answer(api.get(f"{base(facility.slug)}/Patient/{patient_id}/$everything"))
    types = sorted(e["resource"]["resourceType"] for e in everything["entry"])
    assert types == ["Condition", "Condition", "Encounter", "Observation", "Patient"]
    visit = next(e["resource"] for e in everything["entry"] if e["resource"]["resourceType"] == "Encounter")
    assert visit["status"] == "finished" and visit["period"]["start"].startswith("2023-08-14T08:00")


def test_one_bad_entry_and_the_transaction_writes_nothing(api, db, facility):
    patient_url = f"urn:uuid:{uuid.uuid4()}"
    before = rows(db, facility.slug)
    bundle = _transaction({"fullUrl": patient_url, **new_patient()},
                          _encounter(patient_url, f"urn:uuid:{uuid.uuid4()}"),
                          condition(patient_url, "I10"), condition(patient_url, "Z99.999"))
    body = refusal(api.post(base(facility.slug), json=bundle), 422)
    assert body["issue"][0]["expression"] == ["Bundle.entry[3].resource.code.coding.code"]
    assert "Z99.999" in body["issue"][0]["diagnostics"]
    assert rows(db, facility.slug) == before
    unserved = _transaction({"fullUrl": patient_url, **new_patient()},
                            {"resourceType": "Procedure", "status": "completed", "subject": {"reference": patient_url}})
    assert refusal(api.post(base(facility.slug), json=unserved), 422)["issue"][0]["expression"] == [
        "Bundle.entry[1].resource"]
    dangling = _transaction(condition(f"urn:uuid:{uuid.uuid4()}"))
    assert refusal(api.post(base(facility.slug), json=dangling), 422)["issue"][0]["expression"] == [
        "Bundle.entry[0].resource.subject"]
    assert refusal(api.post(base(facility.slug), json={**bundle, "type": "batch"}), 400)
    assert rows(db, facility.slug) == before


def test_a_transaction_needs_each_entrys_permission(token_client, db, facility):
    registrar = token_client(facility.slug, role="registrar")  # registers patients; records no diagnoses
    patient_url = f"urn:uuid:{uuid.uuid4()}"
    before = rows(db, facility.slug)
    body = refusal(registrar.post(base(facility.slug), json=_transaction(
        {"fullUrl": patient_url, **new_patient()}, condition(patient_url))), 403)
    assert "clinical.problem.create" in body["issue"][0]["diagnostics"]
    assert rows(db, facility.slug) == before


def test_the_tenant_schema_is_where_the_rows_went(api, db, facility, other_facility):
    # The other facility holds none of the patients this module registered here.
    with db.control() as conn:
        theirs = conn.execute(sa.text(f'SELECT count(*) FROM "{tenant_schema(other_facility.slug)}".patient '
                                      "WHERE family_name = 'Wekesa'")).scalar()
    assert theirs == 0


def test_vital_signs_from_the_future_are_refused(api, db, facility):
    patient = f"Patient/{registered(api, facility.slug)}"
    before = rows(db, facility.slug)
    body = refusal(api.post(f"{base(facility.slug)}/Observation",
                            json=heart_rate(patient, effectiveDateTime="2999-01-01T00:00:00Z")), 422)
    assert body["issue"][0]["expression"] == ["Observation.effectiveDateTime"]
    assert rows(db, facility.slug) == before


PROVENANCE = ("recorder", "recordedDate", "performer", "issued")


def test_what_one_facility_serves_another_can_take_in(api, token_client, db, facility, other_facility, charted):
    """Round trip: a patient's $everything at one facility, as a transaction to another, reads back the same."""
    served = answer(api.get(f"{base(facility.slug)}/Patient/{charted['patient']}/$everything"))
    creatable = {"Patient", "Encounter", "Condition", "AllergyIntolerance"}
    kept = [e["resource"] for e in served["entry"] if e["resource"]["resourceType"] in creatable
            or e["resource"].get("category", [{}])[0].get("coding", [{}])[0].get("code") == "vital-signs"]
    new_urls = {f"{r['resourceType']}/{r['id']}": f"urn:uuid:{uuid.uuid4()}" for r in kept}

    def relinked(resource: dict) -> dict:
        # Who recorded it and when, at the first facility, the second's record does not keep (it keeps its
        # own): sent, they would be refused by name, so the client leaves them out knowingly. The first
        # facility's MRN travels as an MRN of another system (type MR), which the second keeps.
        resource = {k: v for k, v in resource.items() if k not in ("id", "meta", *PROVENANCE)}
        if resource["resourceType"] == "Patient":
            resource["identifier"] = [{**i, "system": "urn:example:facility-a:mrn"} if i["system"].endswith(":mrn")
                                      else i for i in resource["identifier"]]
        text = json.dumps(resource)
        for old, new in new_urls.items():
            text = text.replace(f'"{old}"', f'"{new}"')
        return json.loads(text)

    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": new_urls[f"{r['resourceType']}/{r['id']}"], "resource": relinked(r),
         "request": {"method": "POST", "url": r["resourceType"]}} for r in kept]}
    theirs = token_client(other_facility.slug, role="clinician")
    written = answer(theirs.post(base(other_facility.slug), json=bundle))
    patient_id = written["entry"][0]["resource"]["id"]
    again = answer(theirs.get(f"{base(other_facility.slug)}/Patient/{patient_id}/$everything"))

    def summary(bundle: dict) -> list[tuple]:
        found = []
        for r in (e["resource"] for e in bundle["entry"]):
            code = r.get("code", {}).get("coding", [{}])[0].get("code") or r.get("code", {}).get("text")
            found.append((r["resourceType"], code, r.get("status"), r.get("gender"), r.get("birthDate")))
        return sorted(found, key=str)

    assert summary(again) == summary({"entry": [{"resource": r} for r in kept]})


def _refused_elements(response) -> list[str]:
    body = refusal(response, 422)
    assert all(issue["code"] == "not-supported" and "nothing was written" in issue["diagnostics"]
               for issue in body["issue"]), body
    return [issue["expression"][0] for issue in body["issue"]]


def test_a_patient_with_elements_the_record_would_not_keep_is_422_naming_each_and_writes_nothing(api, db, facility):
    before = rows(db, facility.slug)
    with db.control() as conn:
        subjects = conn.execute(sa.text("SELECT count(*) FROM control.subject")).scalar()
    sent = new_patient(
        maritalStatus={"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus", "code": "M"}]},
        photo=[{"contentType": "image/png", "data": "iVBORw0KGgo="}], multipleBirthBoolean=True,
        generalPractitioner=[{"reference": "Practitioner/123"}],
        extension=[{"url": "http://hl7.org/fhir/StructureDefinition/patient-birthPlace",
                    "valueAddress": {"city": "Kakamega"}}],
        _birthDate={"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/patient-birthTime",
                                   "valueDateTime": "1979-11-03T04:10:00+03:00"}]})
    sent["name"].append({"use": "nickname", "given": ["Danny"]})
    sent["address"][0]["postalCode"] = "50200"
    sent["telecom"][1]["use"] = "work"
    assert _refused_elements(api.post(f"{base(facility.slug)}/Patient", json=sent)) == [
        "Patient.name[1]", "Patient.telecom[1].use", "Patient.address[0].postalCode", "Patient.maritalStatus",
        "Patient.photo", "Patient.multipleBirthBoolean", "Patient.generalPractitioner", "Patient.extension",
        "Patient.birthDate.extension"]
    assert rows(db, facility.slug) == before
    with db.control() as conn:  # not even the one-identity subject a registration links to
        assert conn.execute(sa.text("SELECT count(*) FROM control.subject")).scalar() == subjects
    # What carries no patient data is taken: the client's id, meta and narrative.
    created = answer(api.post(f"{base(facility.slug)}/Patient", json=new_patient(
        id="client-side-id", meta={"profile": ["http://hl7.org/fhir/StructureDefinition/Patient"]},
        text={"status": "generated", "div": '<div xmlns="http://www.w3.org/1999/xhtml">Daniel Wekesa</div>'})), 201)
    assert created["id"] != "client-side-id"


def test_every_create_refuses_what_the_record_would_not_keep(api, db, facility):
    patient = f"Patient/{registered(api, facility.slug)}"
    url = base(facility.slug)
    before = rows(db, facility.slug)
    staged = condition(patient, recorder={"reference": "Practitioner/9"}, stage=[{"summary": {"text": "II"}}])
    assert _refused_elements(api.post(f"{url}/Condition", json=staged)) == ["Condition.recorder", "Condition.stage"]
    allergy = {"resourceType": "AllergyIntolerance", "patient": {"reference": patient}, "code": {"text": "Penicillin"},
               "type": "intolerance", "category": ["medication", "food"],
               "reaction": [{"manifestation": [{"text": "rash"}], "exposureRoute": {"text": "oral"}}]}
    assert _refused_elements(api.post(f"{url}/AllergyIntolerance", json=allergy)) == [
        "AllergyIntolerance.type", "AllergyIntolerance.category[1]", "AllergyIntolerance.reaction[0].exposureRoute"]
    interpreted = heart_rate(patient, status="preliminary", interpretation=[{"text": "high"}])
    assert _refused_elements(api.post(f"{url}/Observation", json=interpreted)) == [
        "Observation.status", "Observation.interpretation"]
    patient_url = f"urn:uuid:{uuid.uuid4()}"
    visit = _encounter(patient_url, f"urn:uuid:{uuid.uuid4()}")
    visit["hospitalization"] = {"dischargeDisposition": {"text": "home"}}
    bundle = _transaction({"fullUrl": patient_url, **new_patient(maritalStatus={"text": "Married"})}, visit,
                          condition(patient_url, "I10"))
    assert _refused_elements(api.post(url, json=bundle)) == [
        "Bundle.entry[0].resource.maritalStatus", "Bundle.entry[1].resource.hospitalization"]
    assert rows(db, facility.slug) == before


def test_the_capability_statement_lists_what_a_create_keeps(api, facility):
    statement = answer(api.get(f"{base(facility.slug)}/metadata"))
    described = {r["type"]: r.get("documentation", "") for r in statement["rest"][0]["resource"]}
    assert "birthDate" in described["Patient"] and "maritalStatus" not in described["Patient"]
    assert "address (one: line, city, district, state, country)" in described["Patient"]
    assert "onsetDateTime" in described["Condition"] and described["MedicationRequest"] == ""


LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"


def screening(patient_ref: str, muac: dict, oedema_code: str) -> dict:
    """A child's malnutrition screening as a vital signs panel: MUAC (LOINC 56072-2) and oedema (44966-0)."""
    panel = {key: value for key, value in heart_rate(patient_ref).items() if key != "valueQuantity"}
    return {**panel, "code": {"coding": [{"system": LOINC, "code": "85353-1"}]}, "component": [
        {"code": {"coding": [{"system": LOINC, "code": "56072-2"}]}, "valueQuantity": muac},
        {"code": {"coding": [{"system": LOINC, "code": "44966-0"}]},
         "valueCodeableConcept": {"coding": [{"system": SNOMED, "code": oedema_code}]}}]}


def test_a_childs_muac_and_oedema_round_trip(api, token_client, db, facility, other_facility):
    """A MUAC sent in cm is kept in mm and read back in mm with the LOINC code, oedema with its SNOMED CT
    finding; the growth API reads them as it reads the clinic's, and another facility takes them in whole."""
    url = base(facility.slug)
    child = answer(api.post(f"{url}/Patient", json=new_patient(birthDate="2023-05-20", gender="female")), 201)
    patient = f"Patient/{child['id']}"
    sent = screening(patient, {"value": 11.2, "unit": "cm", "system": "http://unitsofmeasure.org", "code": "cm"},
                     "52101004")
    created = answer(api.post(f"{url}/Observation", json=sent), 201)
    measured = {c["code"]["coding"][0]["code"]: c for c in created["component"]}
    assert measured["56072-2"]["valueQuantity"] == {"value": 112, "unit": "mm", "system": "http://unitsofmeasure.org",
                                                    "code": "mm"}
    assert measured["56072-2"]["code"]["coding"][0]["display"] == "Circumference Mid upper arm - right"
    assert measured["44966-0"]["valueCodeableConcept"]["coding"] == [
        {"system": SNOMED, "code": "52101004", "display": "Present"}]
    assert answer(api.get(f"{url}/Observation/{created['id']}"))["component"] == created["component"]
    for code in ("56072-2", "44966-0"):
        found = answer(api.get(f"{url}/Observation", params={"patient": child["id"], "code": code}))
        assert [e["resource"]["id"] for e in found["entry"]] == [created["id"]]
    grown = api.get(f"/api/t/{facility.slug}/patients/{child['id']}/growth")
    assert grown.status_code == 200, grown.text
    point = grown.json()["points"][-1]
    assert (point["muac_mm"], point["oedema"], point["acute_malnutrition"]) == (112, True, "severe")
    # Read back as served, written at another facility: the same MUAC and finding.
    theirs = token_client(other_facility.slug, role="clinician")
    there = answer(theirs.post(f"{base(other_facility.slug)}/Patient", json=new_patient(birthDate="2023-05-20")), 201)
    served = {k: v for k, v in created.items() if k not in ("id", "meta", *PROVENANCE)}
    copied = answer(theirs.post(f"{base(other_facility.slug)}/Observation",
                                json={**served, "subject": {"reference": f"Patient/{there['id']}"}}), 201)
    assert copied["component"] == created["component"]


GRADES = {"441614007": 1, "441517005": 2, "441521003": 3}  # SNOMED CT: present +, ++, +++ out of +++


def test_each_grade_of_oedema_round_trips_and_stays_at_its_facility(api, token_client, facility, other_facility):
    """Oedema sent graded (+, ++, +++ by SNOMED CT's "present N plus out of three plus") is kept as the
    finding with its grade, served back with the same code, found by the oedema code, and read by the growth
    API; another facility's token and a guessed id read none of it."""
    url = base(facility.slug)
    child = answer(api.post(f"{url}/Patient", json=new_patient(birthDate="2023-05-20", gender="male")), 201)
    created = {}
    for code in GRADES:
        made = answer(api.post(f"{url}/Observation", json=screening(
            f"Patient/{child['id']}", {"value": 130, "code": "mm"}, code)), 201)
        [oedema] = [c for c in made["component"] if c["code"]["coding"][0]["code"] == "44966-0"]
        assert [c["code"] for c in oedema["valueCodeableConcept"]["coding"]] == [code]
        assert answer(api.get(f"{url}/Observation/{made['id']}"))["component"] == made["component"]
        created[made["id"]] = code
    found = answer(api.get(f"{url}/Observation", params={"patient": child["id"], "code": "44966-0"}))
    assert {e["resource"]["id"] for e in found["entry"]} == set(created)
    points = api.get(f"/api/t/{facility.slug}/patients/{child['id']}/growth").json()["points"]
    graded = {p["oedema_grade"]: (p["oedema"], p["acute_malnutrition"], p["criteria"]) for p in points}
    assert graded == {1: (True, "severe", ["bilateral pitting oedema +"]),
                      2: (True, "severe", ["bilateral pitting oedema ++"]),
                      3: (True, "severe", ["bilateral pitting oedema +++ (severe oedema: WHO treats the child as "
                                           "an inpatient)"])}
    intruder = token_client(other_facility.slug, role="clinician")
    severe = next(i for i, code in created.items() if code == "441521003")
    taken = intruder.get(f"{url}/Observation/{severe}")
    assert taken.status_code == 403 and "441521003" not in taken.text
    assert refusal(intruder.get(f"{base(other_facility.slug)}/Observation/{severe}"), 404)
    assert refusal(api.get(f"{url}/Observation/{uuid.uuid4()}"), 404)


def test_a_muac_in_another_unit_or_an_oedema_finding_not_coded_is_422_and_writes_nothing(api, db, facility):
    url = base(facility.slug)
    patient = f"Patient/{registered(api, facility.slug)}"
    before = rows(db, facility.slug)
    inches = refusal(api.post(f"{url}/Observation", json=screening(patient, {"value": 4.4, "code": "[in_i]"},
                                                                    "2667000")), 422)
    assert inches["issue"][0]["expression"] == ["Observation.component[0].valueQuantity.code"]
    assert "recorded in mm or cm" in inches["issue"][0]["diagnostics"]
    unknown = refusal(api.post(f"{url}/Observation", json=screening(patient, {"value": 120, "code": "mm"},
                                                                     "373067005")), 422)
    assert unknown["issue"][0]["expression"] == ["Observation.component[1].valueCodeableConcept"]
    assert "52101004" in unknown["issue"][0]["diagnostics"] and "2667000" in unknown["issue"][0]["diagnostics"]
    too_small = refusal(api.post(f"{url}/Observation", json=screening(patient, {"value": 3, "code": "cm"},
                                                                       "2667000")), 422)
    assert too_small["issue"][0]["expression"] == ["Observation.component[0]"]
    assert "Circumference Mid upper arm - right in mm: Input should be greater than or equal to 50" in \
        too_small["issue"][0]["diagnostics"]
    assert rows(db, facility.slug) == before


def test_another_facility_and_a_guessed_id_read_no_muac(api, token_client, facility, other_facility):
    url = base(facility.slug)
    child = answer(api.post(f"{url}/Patient", json=new_patient(birthDate="2024-01-10")), 201)
    created = answer(api.post(f"{url}/Observation", json=screening(
        f"Patient/{child['id']}", {"value": 118, "code": "mm"}, "2667000")), 201)
    intruder = token_client(other_facility.slug, role="clinician")
    taken = intruder.get(f"{url}/Observation/{created['id']}")
    assert taken.status_code == 403 and "56072-2" not in taken.text
    assert refusal(intruder.get(f"{base(other_facility.slug)}/Observation/{created['id']}"), 404)
    assert refusal(api.get(f"{url}/Observation/{uuid.uuid4()}"), 404)
    planted = intruder.post(f"{url}/Observation", json=screening(f"Patient/{child['id']}", {"value": 100, "code": "mm"},
                                                                  "52101004"))
    assert planted.status_code == 403
    kept = answer(api.get(f"{url}/Observation", params={"patient": child["id"], "code": "56072-2"}))
    assert [c["valueQuantity"]["value"] for c in kept["entry"][0]["resource"]["component"]
            if "valueQuantity" in c] == [118]  # the intruder's MUAC was not written


def body_weight(patient_ref: str, value: float, unit: str) -> dict:
    return heart_rate(patient_ref, value, unit, code={"coding": [{"system": LOINC, "code": "29463-7"}]})


def test_a_newborns_weight_is_kept_to_the_gram_in_kg_or_g_and_another_facility_reads_none(
        api, token_client, db, facility, other_facility):
    """A 1450 g baby sent in grams, and the next day's 1.482 kg, are kept and read back to the gram (not 1.4 and 1.5
    kg); a weight in pounds is refused and writes nothing; another facility neither reads nor writes one."""
    url = base(facility.slug)
    baby = answer(api.post(f"{url}/Patient", json=new_patient(birthDate="2024-03-01", gender="female")), 201)
    patient = f"Patient/{baby['id']}"
    in_grams = answer(api.post(f"{url}/Observation", json=body_weight(patient, 1450, "g")), 201)
    in_kg = answer(api.post(f"{url}/Observation", json=body_weight(patient, 1.482, "kg")), 201)
    kept = [c["valueQuantity"] for created in (in_grams, in_kg)
            for c in answer(api.get(f"{url}/Observation/{created['id']}"))["component"]]
    assert [(q["value"], q["code"]) for q in kept] == [(1.45, "kg"), (1.482, "kg")]
    before = rows(db, facility.slug)
    pounds = refusal(api.post(f"{url}/Observation", json=body_weight(patient, 3.2, "[lb_av]")), 422)
    assert "Body weight is recorded in kg or g" in pounds["issue"][0]["diagnostics"]
    assert rows(db, facility.slug) == before
    intruder = token_client(other_facility.slug, role="clinician")
    taken = intruder.get(f"{url}/Observation/{in_grams['id']}")
    assert taken.status_code == 403 and "1.45" not in taken.text
    assert refusal(intruder.get(f"{base(other_facility.slug)}/Observation/{in_grams['id']}"), 404)
    assert intruder.post(f"{url}/Observation", json=body_weight(patient, 900, "g")).status_code == 403
    weighed = answer(api.get(f"{url}/Observation", params={"patient": baby["id"], "code": "29463-7"}))
    assert sorted(e["resource"]["id"] for e in weighed["entry"]) == sorted([in_grams["id"], in_kg["id"]])
