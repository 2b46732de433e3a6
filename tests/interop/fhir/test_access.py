"""Who may read what through the FHIR facade, tried from the attacker's side: another facility's
token, a guessed id, another facility's id under this facility's path, a token without the
permission, a clinician with no care relationship (break-the-glass), a browser session writing."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from appliance.layers.clinical import service
from appliance.layers.clinical.schemas import ConditionIn, PatientIn
from appliance.substrate import audit
from tests.interop.fhir.conftest import answer, base, refusal


def _patient_with_condition(db, tenant: str, writer, family: str) -> dict:
    with db.tenant(tenant) as conn:
        patient = service.register_patient(conn, writer, PatientIn(
            family_name=family, given_names="Test", birth_date=dt.date(1970, 1, 1), sex="male"))
        problem = service.add_condition(conn, writer, patient["id"], ConditionIn(code="I10"))
    return {"patient": patient["id"], "condition": problem["root_id"]}


@pytest.fixture(scope="module")
def unseen(db, facility, writer) -> dict:
    """A patient of the facility with no encounter: no clinician has a care relationship with them."""
    return _patient_with_condition(db, facility.slug, writer, "Unseen")


@pytest.fixture(scope="module")
def elsewhere(db, other_facility, writer) -> dict:
    return _patient_with_condition(db, other_facility.slug, writer, "Elsewhere")


def _every_read(tenant: str, ids: dict) -> list[str]:
    url = base(tenant)
    return [f"{url}/Patient/{ids['patient']}", f"{url}/Condition/{ids['condition']}",
            f"{url}/Condition?patient={ids['patient']}", f"{url}/Patient/{ids['patient']}/$everything",
            f"{url}/Patient?name=unseen", f"{url}/metadata"]


def test_another_facilitys_token_is_refused_everywhere(token_client, other_facility, facility, unseen):
    intruder = token_client(other_facility.slug, role="clinician")
    for url in _every_read(facility.slug, unseen):
        body = refusal(intruder.get(url), 403)
        assert body["issue"][0]["code"] == "forbidden", url
    assert refusal(intruder.post(f"{base(facility.slug)}/Condition", json={"resourceType": "Condition"}), 403)
    assert refusal(intruder.post(base(facility.slug), json={"resourceType": "Bundle", "type": "transaction"}), 403)


def test_no_credentials_is_401(client, facility, unseen):
    for url in _every_read(facility.slug, unseen):
        assert refusal(client.get(url), 401)["issue"][0]["code"] == "login"


def test_a_guessed_id_and_another_facilitys_id_look_the_same(api, facility, elsewhere):
    url = base(facility.slug)
    for resource_type, known in (("Patient", elsewhere["patient"]), ("Condition", elsewhere["condition"])):
        guess = uuid.uuid4()
        theirs = refusal(api.get(f"{url}/{resource_type}/{known}"), 404)
        guessed = refusal(api.get(f"{url}/{resource_type}/{guess}"), 404)
        # The same answer, word for word but for the id asked about: nothing says it exists elsewhere.
        assert theirs["issue"][0]["diagnostics"].replace(str(known), "ID") == \
            guessed["issue"][0]["diagnostics"].replace(str(guess), "ID")
        assert theirs["issue"][0]["code"] == guessed["issue"][0]["code"] == "not-found"
        assert refusal(api.get(f"{url}/{resource_type}/1%20OR%201=1"), 404)
    assert refusal(api.get(f"{url}/Condition", params={"patient": str(elsewhere["patient"])}), 404)
    assert refusal(api.get(f"{url}/Patient/{elsewhere['patient']}/$everything"), 404)
    # An id of one type asked for as another is not found either.
    assert refusal(api.get(f"{url}/Observation/{elsewhere['condition']}"), 404)


def test_a_token_without_the_permission_is_refused(token_client, facility, unseen):
    reader = token_client(facility.slug, permissions=["clinical.patient.read"])
    assert answer(reader.get(f"{base(facility.slug)}/Patient/{unseen['patient']}"))["id"] == str(unseen["patient"])
    body = refusal(reader.get(f"{base(facility.slug)}/Condition/{unseen['condition']}"), 403)
    assert "clinical.problem.read" in body["issue"][0]["diagnostics"]
    assert refusal(reader.post(f"{base(facility.slug)}/Patient", json={"resourceType": "Patient"}), 403)


def test_break_the_glass_to_read_outside_ones_care(signed_in, db, facility, unseen):
    clinician = signed_in("clinician", facility.slug)
    url = base(facility.slug)
    # Demographics open as they do in the JSON API (the registration desk's read) ...
    assert answer(clinician.get(f"{url}/Patient/{unseen['patient']}"))["id"] == str(unseen["patient"])
    # ... the record does not, whether asked by the resource's own id, by search or as $everything.
    for path in (f"/Condition/{unseen['condition']}", f"/Condition?patient={unseen['patient']}",
                 f"/Patient/{unseen['patient']}/$everything"):
        body = refusal(clinician.get(url + path), 403)
        assert "break-the-glass" in body["issue"][0]["diagnostics"], path
        assert body["issue"][0]["details"]["coding"][0]["code"] == "break-glass-required", path
    assert refusal(clinician.get(f"{url}/Condition/{unseen['condition']}",
                                 headers={"x-break-glass-reason": "short"}), 403)
    reason = "collapsed in the waiting room, chart needed now"
    opened = answer(clinician.get(f"{url}/Condition/{unseen['condition']}", headers={"x-break-glass-reason": reason}))
    assert opened["code"]["coding"][0]["code"] == "I10"
    glass = [e for e in audit.patient_access_log(db, facility.slug, unseen["patient"]) if e.break_the_glass]
    assert [(g.reason, g.who["account"]) for g in glass] == [(reason, str(clinician.person.account_id))]


def test_a_browser_session_reads_but_never_writes(signed_in, db, facility, unseen):
    clinician = signed_in("clinician", facility.slug)
    created = clinician.post(f"{base(facility.slug)}/Condition", json={
        "resourceType": "Condition", "subject": {"reference": f"Patient/{unseen['patient']}"},
        "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": "E11.9"}]}})
    assert refusal(created, 401)


def test_an_unsupported_search_parameter_is_named(api, facility, unseen):
    url = base(facility.slug)
    body = refusal(api.get(f"{url}/Condition", params={"patient": str(unseen["patient"]), "onset-date": "2020"}), 400)
    assert body["issue"][0]["expression"] == ["onset-date"] and "onset-date" in body["issue"][0]["diagnostics"]
    body = refusal(api.get(f"{url}/Patient", params={"name": "ab", "_sort": "family"}), 400)
    assert body["issue"][0]["expression"] == ["_sort"]
    assert refusal(api.get(f"{url}/Condition"), 400)["issue"][0]["expression"] == ["patient"]
    assert refusal(api.get(f"{url}/Patient", params={"birthdate": "last tuesday"}), 400)
    assert refusal(api.get(f"{url}/Patient", params={"birthdate": "ge1980-01-01"}), 400)["issue"][0][
        "expression"] == ["birthdate"]
    assert refusal(api.get(f"{url}/Condition", params=[("patient", str(unseen["patient"])),
                                                        ("patient", str(uuid.uuid4()))]), 400)
    assert refusal(api.get(f"{url}/Observation", params={"patient": str(unseen["patient"]), "date": "ge-1"}), 400)


def test_an_unserved_resource_type_says_what_is_served(api, facility):
    body = refusal(api.get(f"{base(facility.slug)}/Practitioner/{uuid.uuid4()}"), 404)
    assert body["issue"][0]["code"] == "not-supported" and "Patient" in body["issue"][0]["diagnostics"]
    assert refusal(api.get(f"{base(facility.slug)}/DiagnosticReport"), 404)


def test_other_refusals_are_operation_outcomes_too(api, facility):
    assert refusal(api.get("/api/t/atlantis_general/fhir/metadata"), 404)
    assert refusal(api.get("/api/t/NOT_A_SLUG/fhir/Patient?name=x"), 404)
    assert refusal(api.post(f"{base(facility.slug)}/Practitioner", json={"resourceType": "Practitioner"}), 405)
    assert refusal(api.delete(f"{base(facility.slug)}/Patient/{uuid.uuid4()}"), 405)
