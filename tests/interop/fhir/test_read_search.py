"""Read, search, $everything and the CapabilityStatement over HTTP: every answer a valid FHIR R4B
resource mapped from the one record, and every read audited."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid

from appliance.interop.fhir.routes import HANDLERS, RESOURCE_ROUTES
from appliance.interop.fhir.store import SEARCH_PARAMETERS
from appliance.layers.clinical import service
from appliance.layers.clinical.schemas import PatientIn
from appliance.substrate import audit, record
from tests.interop.fhir.conftest import answer, base


def test_patient_read_maps_the_registration(api, facility, charted):
    patient = answer(api.get(f"{base(facility.slug)}/Patient/{charted['patient']}"))
    assert patient["id"] == str(charted["patient"])
    assert patient["name"][0]["family"] == "Achieng" and patient["name"][0]["given"] == ["Grace", "Atieno"]
    assert (patient["gender"], patient["birthDate"]) == ("female", "1984-02-29")
    systems = {i["system"]: i["value"] for i in patient["identifier"]}
    assert systems["urn:healthos:identifier:mrn"] == charted["mrn"]
    assert systems["urn:healthos:identifier:national_id"] == charted["national_id"]
    assert patient["contact"][0]["name"]["text"] == "Otieno Peter"
    assert patient["meta"]["versionId"] and patient["meta"]["lastUpdated"]


def test_each_resource_reads_by_the_records_id(api, facility, charted, writer):
    url = base(facility.slug)
    encounter = answer(api.get(f"{url}/Encounter/{charted['encounter']}"))
    assert (encounter["status"], encounter["class"]["code"]) == ("arrived", "AMB")
    assert encounter["subject"]["reference"] == f"Patient/{charted['patient']}"
    malaria = answer(api.get(f"{url}/Condition/{charted['malaria']}"))
    assert malaria["code"]["coding"][0] == {"system": "http://hl7.org/fhir/sid/icd-10", "code": "B50.9",
                                            "display": malaria["code"]["text"]}
    assert malaria["clinicalStatus"]["coding"][0]["code"] == "active"
    assert malaria["encounter"]["reference"] == f"Encounter/{charted['encounter']}"
    # Who recorded it, by account id (no Practitioner is served for a literal reference to point at).
    assert malaria["recorder"] == {"type": "Practitioner", "identifier": {"system": "urn:healthos:account",
                                                                          "value": str(writer.account_id)}}
    allergy = answer(api.get(f"{url}/AllergyIntolerance/{charted['allergy']}"))
    assert (allergy["code"]["text"], allergy["criticality"]) == ("Penicillin", "high")
    assert allergy["reaction"][0]["severity"] == "severe"
    medication = answer(api.get(f"{url}/MedicationRequest/{charted['medication']}"))
    assert medication["status"] == "active" and medication["medicationCodeableConcept"]["text"].startswith("Artemether")
    order = answer(api.get(f"{url}/ServiceRequest/{charted['order']}"))
    assert order["code"]["coding"][0]["code"] == "58410-2" and order["category"][0]["coding"][0]["code"] == "108252007"


def test_laboratory_and_vital_signs_observations(api, facility, charted):
    url = base(facility.slug)
    haemoglobin = answer(api.get(f"{url}/Observation/{charted['haemoglobin']}"))
    assert haemoglobin["category"][0]["coding"][0]["code"] == "laboratory"
    assert haemoglobin["code"]["coding"][0]["code"] == "718-7"
    assert haemoglobin["valueQuantity"]["value"] == 9.8 and haemoglobin["valueQuantity"]["unit"] == "g/dL"
    assert haemoglobin["referenceRange"][0]["low"]["value"] == 12
    assert haemoglobin["referenceRange"][0]["high"]["value"] == 16
    assert haemoglobin["interpretation"][0]["coding"][0]["code"] == "L"
    assert haemoglobin["basedOn"][0]["reference"] == f"ServiceRequest/{charted['order']}"
    smear = answer(api.get(f"{url}/Observation/{charted['smear']}"))
    assert smear["valueString"] == "positive" and smear["interpretation"][0]["coding"][0]["code"] == "A"
    vitals = answer(api.get(f"{url}/Observation/{charted['vitals']}"))
    assert vitals["category"][0]["coding"][0]["code"] == "vital-signs"
    measured = {c["code"]["coding"][0]["code"]: c["valueQuantity"] for c in vitals["component"]}
    assert measured["8310-5"] == {"value": 38.6, "unit": "Cel", "system": "http://unitsofmeasure.org", "code": "Cel"}
    assert measured["8867-4"]["value"] == 104 and measured["8480-6"]["value"] == 118


def test_versions_and_entered_in_error(api, facility, charted):
    url = base(facility.slug)
    corrected = answer(api.get(f"{url}/Condition/{charted['hypertension']}"))
    assert corrected["code"]["coding"][0]["code"] == "I11.9"
    assert corrected["meta"]["versionId"] == str(charted["hypertension_version"])
    mistaken = answer(api.get(f"{url}/Condition/{charted['mistaken']}"))
    assert mistaken["verificationStatus"]["coding"][0]["code"] == "entered-in-error"
    assert "clinicalStatus" not in mistaken and mistaken["code"]["coding"][0]["code"] == "J18.9"
    withdrawn = answer(api.get(f"{url}/Observation/{charted['glucose']}"))
    assert withdrawn["status"] == "entered-in-error" and withdrawn["valueQuantity"]["value"] == 31
    listed = answer(api.get(f"{url}/Condition", params={"patient": str(charted["patient"])}))
    assert sorted(e["resource"]["code"]["coding"][0]["code"] for e in listed["entry"]) == ["B50.9", "I11.9"]


def test_a_stopped_prescription_was_authored_when_it_was_prescribed(api, db, facility, writer):
    """authoredOn is when the drug was prescribed (the record's first version), not when it was stopped; the
    stop's time is the version's lastUpdated. It read the stop's time as authoredOn."""
    year_ago = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(days=365)
    with db.tenant(facility.slug) as conn:
        patient = service.register_patient(conn, writer, PatientIn.model_validate({
            "family_name": "Wanjiru", "given_names": "Esther", "birth_date": dt.date(1970, 5, 1), "sex": "female"}))
        placed = record.append(conn, writer, "medication_request", patient_id=patient["id"], occurred_at=year_ago,
                               detail={"drug": "Ferrous sulfate", "dose": 200, "dose_unit": "mg", "route": "oral",
                                       "frequency": "daily", "duration_days": None, "status": "active",
                                       "instructions": None, "allergy_override_reason": None, "order_set": None})
        stopper = dataclasses.replace(writer, account_id=uuid.uuid4(), display_name="Dr Stopper")
        service.change_medication_status(conn, stopper, patient["id"], placed.id, "stopped", "haemoglobin normal")
    stopped = answer(api.get(f"{base(facility.slug)}/MedicationRequest/{placed.id}"))
    assert stopped["status"] == "stopped"
    assert dt.datetime.fromisoformat(stopped["authoredOn"]) == year_ago
    assert dt.datetime.fromisoformat(stopped["meta"]["lastUpdated"]) > year_ago + dt.timedelta(days=364)
    # The requester is who prescribed it, not who stopped it.
    assert stopped["requester"]["identifier"]["value"] == str(writer.account_id)
    [found] = answer(api.get(f"{base(facility.slug)}/MedicationRequest",
                             params={"patient": str(patient["id"])}))["entry"]
    assert found["resource"]["requester"] == stopped["requester"]


def test_patient_search_by_each_parameter(api, facility, charted):
    url = f"{base(facility.slug)}/Patient"
    for params in ({"name": "grace achieng"}, {"family": "Achi"}, {"given": "atieno", "family": "achieng"},
                   {"identifier": charted["national_id"]},
                   {"identifier": f"urn:healthos:identifier:national_id|{charted['national_id']}"},
                   {"identifier": charted["mrn"]}, {"birthdate": "1984-02-29"},
                   {"name": "achieng", "gender": "female"}):
        found = answer(api.get(url, params=params))
        assert found["type"] == "searchset" and found["total"] == len(found["entry"]), params
        assert str(charted["patient"]) in [e["resource"]["id"] for e in found["entry"]], params
        assert found["link"][0]["relation"] == "self"
    assert answer(api.get(url, params={"name": "achieng", "gender": "male"}))["total"] == 0
    assert answer(api.get(url, params={"identifier": f"urn:healthos:identifier:passport|{charted['national_id']}"}))[
        "total"] == 0


def test_patient_search_folds_case_and_accents(api, db, facility, writer):
    """FHIR matches strings "after both have been normalized by case and accent": name, family and given."""
    with db.tenant(facility.slug) as conn:
        patient = service.register_patient(conn, writer, PatientIn.model_validate({
            "family_name": "Müller-Nuñez", "given_names": "Zoë Aïcha", "birth_date": dt.date(1991, 3, 7),
            "sex": "female"}))
    url = f"{base(facility.slug)}/Patient"
    for params in ({"name": "zoe muller"}, {"name": "MÜLLER"}, {"family": "muller"}, {"family": "MULLER-NUNEZ"},
                   {"given": "aicha", "family": "müller"}, {"given": "ZOE"}):
        found = answer(api.get(url, params=params))
        assert str(patient["id"]) in [e["resource"]["id"] for e in found["entry"]], params
    # family= is still the family name's start and given= a given name's.
    for params in ({"family": "nunez"}, {"family": "zoe"}, {"given": "muller"}):
        found = answer(api.get(url, params=params))
        assert str(patient["id"]) not in [e["resource"]["id"] for e in found.get("entry", [])], params


def test_searches_of_a_patients_record(api, facility, charted):
    url, patient = base(facility.slug), str(charted["patient"])

    def codes(resource_type: str, **params) -> list[str]:
        found = answer(api.get(f"{url}/{resource_type}", params={"patient": patient, **params}))
        assert found["total"] == len(found["entry"])
        return sorted(e["resource"]["code"]["coding"][0]["code"] if "coding" in e["resource"].get("code", {})
                      else e["resource"]["id"] for e in found["entry"])

    assert codes("Condition", code="B50.9") == ["B50.9"]
    assert codes("Condition", **{"clinical-status": "active"}) == ["B50.9", "I11.9"]
    assert codes("Condition", **{"clinical-status": "resolved"}) == []
    assert codes("Observation", category="laboratory") == ["32700-7", "718-7"]
    assert codes("Observation", category="vital-signs") == ["85353-1"]
    assert codes("Observation", code="http://loinc.org|8867-4") == ["85353-1"]
    assert len(codes("Observation", date="ge2000-01-01")) == 3 and codes("Observation", date="lt2000-01-01") == []
    assert codes("ServiceRequest", status="active") == ["58410-2"]
    assert len(codes("MedicationRequest", status="active")) == 1
    assert codes("AllergyIntolerance", category="medication") == [str(charted["allergy"])]
    assert codes("Encounter", status="arrived") == [str(charted["encounter"])]
    assert codes("Encounter", **{"class": "IMP"}) == []
    assert codes("Encounter", date="ge2000-01-01") == [str(charted["encounter"])]
    assert codes("Encounter", date="lt2000-01-01") == []


def test_everything_is_the_patient_and_every_resource(api, facility, charted):
    everything = answer(api.get(f"{base(facility.slug)}/Patient/{charted['patient']}/$everything"))
    types = [e["resource"]["resourceType"] for e in everything["entry"]]
    assert types[0] == "Patient" and everything["total"] == len(types)
    assert {t: types.count(t) for t in set(types)} == {
        "Patient": 1, "Encounter": 1, "Condition": 2, "AllergyIntolerance": 1, "MedicationRequest": 1,
        "ServiceRequest": 1, "Observation": 3}
    assert all(e["fullUrl"].endswith(f"/{e['resource']['resourceType']}/{e['resource']['id']}")
               for e in everything["entry"])


def test_reads_are_audited(api, db, facility, charted):
    before = len(audit.patient_access_log(db, facility.slug, charted["patient"]))
    answer(api.get(f"{base(facility.slug)}/Condition/{charted['malaria']}"))
    answer(api.get(f"{base(facility.slug)}/Observation", params={"patient": str(charted["patient"])}))
    log = audit.patient_access_log(db, facility.slug, charted["patient"])
    assert len(log) >= before + 3  # the condition; the results and the vital signs of the search
    kinds = [entry.event_type for entry in log[before:]]  # oldest first: these are the new ones
    assert "record.condition.read" in kinds and "record.result.read" in kinds and "record.vital_signs.read" in kinds


def test_everything_is_one_audited_read_of_the_chart_naming_every_resource(api, db, facility, charted):
    before = len(audit.patient_access_log(db, facility.slug, charted["patient"]))
    answer(api.get(f"{base(facility.slug)}/Patient/{charted['patient']}/$everything"))
    [event] = audit.patient_access_log(db, facility.slug, charted["patient"])[before:]
    assert (event.event_type, event.action) == ("record.chart.read", "R")
    assert event.detail == {"interface": "FHIR Patient/$everything"}


def test_capability_statement_lists_exactly_what_is_served(api, facility):
    statement = answer(api.get(f"{base(facility.slug)}/metadata"))
    served = {r["type"]: r for r in statement["rest"][0]["resource"]}
    assert set(served) == {r.type for r in RESOURCE_ROUTES}
    for resource_type, entry in served.items():
        assert {p["name"] for p in entry["searchParam"]} == {*SEARCH_PARAMETERS[resource_type], "_count"}
        for interaction in entry["interaction"]:
            name = {"read": "fhir-read-", "search-type": "fhir-search-", "create": "fhir-create-"}[interaction["code"]]
            assert any(h.name == name + resource_type for h in HANDLERS)
    assert [i["code"] for i in served["Condition"]["interaction"]] == ["read", "search-type", "create"]
    assert [i["code"] for i in served["MedicationRequest"]["interaction"]] == ["read", "search-type"]
    # What the statement claims, a client can do.
    assert answer(api.get(f"{base(facility.slug)}/MedicationRequest", params={"patient": str(uuid.uuid4())}),
                  404)


def test_a_patient_certified_deceased_at_another_facility_reads_deceased_everywhere(api, token_client, facility,
                                                                                   other_facility):
    """The death is the one identity's: the Patient read, searched and in $everything at a facility that did
    not certify it carries deceasedDateTime; a living patient carries none."""
    national_id = uuid.uuid4().hex[:10]
    person = {"family_name": "Wafula", "given_names": "Joseph", "birth_date": "1950-03-01", "sex": "male",
              "identifiers": [{"system": "national_id", "value": national_id}]}
    certifier = token_client(other_facility.slug, role="clinician")
    there = certifier.post(f"/api/t/{other_facility.slug}/patients", json=person).json()["id"]
    here = api.post(f"/api/t/{facility.slug}/patients", json=person).json()["id"]
    assert "deceasedDateTime" not in answer(api.get(f"{base(facility.slug)}/Patient/{here}"))
    died_at = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=3)).replace(microsecond=0)
    certified = certifier.post(f"/api/t/{other_facility.slug}/patients/{there}/death", json={
        "died_at": died_at.isoformat(), "place": "this_facility", "manner": "disease",
        "part1": [{"code": "I21.9", "interval": "2 hours"}]})
    assert certified.status_code == 201, certified.text

    read = answer(api.get(f"{base(facility.slug)}/Patient/{here}"))
    searched = answer(api.get(f"{base(facility.slug)}/Patient", params={"identifier": national_id}))
    everything = answer(api.get(f"{base(facility.slug)}/Patient/{here}/$everything"))
    for patient in (read, searched["entry"][0]["resource"], everything["entry"][0]["resource"]):
        assert dt.datetime.fromisoformat(patient["deceasedDateTime"]) == died_at
