"""Care relationships and break-the-glass, from the clinician's side and the patient's access log."""

import uuid

import pytest

from appliance.layers.clinical import service
from appliance.layers.clinical.schemas import EncounterIn
from appliance.substrate import audit
from tests.layers.clinical.conftest import new_patient


@pytest.fixture(scope="module")
def patients(db, facility, clinician):
    """One patient with an encounter on ward GEN, one registered with no encounter at all."""
    with db.tenant(facility.slug) as conn:
        seen = new_patient(conn, clinician, family_name="Wanjiru")
        service.open_encounter(conn, clinician, seen["id"],
                               EncounterIn(encounter_class="inpatient", ward_code="GEN"))
        unseen = new_patient(conn, clinician, family_name="Mutua")
    return {"seen": seen["id"], "unseen": unseen["id"]}


def test_a_clinician_opens_the_chart_of_a_patient_in_their_care(signed_in, facility, patients):
    client = signed_in("clinician", facility.slug)
    assert client.get(f"/api/t/{facility.slug}/patients/{patients['seen']}/chart").status_code == 200


def test_another_chart_needs_a_reason_then_opens_and_the_patient_sees_it(signed_in, db, facility, patients):
    client = signed_in("clinician", facility.slug)
    url = f"/api/t/{facility.slug}/patients/{patients['unseen']}/chart"
    refused = client.get(url)
    assert refused.status_code == 403
    assert refused.json()["break_glass_required"] is True
    assert "reason" in refused.json()["detail"]
    assert client.get(url, headers={"x-break-glass-reason": "short"}).status_code == 403
    opened = client.get(url, headers={"x-break-glass-reason": "unconscious in casualty, no next of kin"})
    assert opened.status_code == 200
    assert opened.json()["patient"]["id"] == str(patients["unseen"])

    log = audit.patient_access_log(db, facility.slug, patients["unseen"])
    glass = [entry for entry in log if entry.break_the_glass]
    assert len(glass) == 1
    assert glass[0].purpose_of_use == "ETREAT"
    assert glass[0].reason == "unconscious in casualty, no next of kin"
    assert glass[0].who["account"] == str(client.person.account_id)
    assert glass[0].who["role"] == "clinician"
    assert glass[0].facility["tenant"] == facility.slug


def test_every_per_patient_read_is_behind_the_same_gate(signed_in, facility, patients):
    client = signed_in("clinician", facility.slug)
    for part in ["problems", "allergies", "medications", "orders", "results", "notes", "encounters"]:
        response = client.get(f"/api/t/{facility.slug}/patients/{patients['unseen']}/{part}")
        assert response.status_code == 403, part
        assert response.json()["break_glass_required"] is True


def test_a_ward_scoped_nurse_sees_only_her_wards_patients(signed_in, facility, patients, db, clinician):
    on_ward = signed_in("nurse", facility.slug, ward="GEN")
    elsewhere = signed_in("nurse", facility.slug, ward="MAT")
    url = f"/api/t/{facility.slug}/patients/{patients['seen']}/chart"
    assert on_ward.get(url).status_code == 200
    assert elsewhere.get(url).status_code == 403


def test_guessed_patient_ids_and_other_facilities_are_refused_not_offered_break_the_glass(
        signed_in, facility, other_facility, patients):
    client = signed_in("clinician", facility.slug)
    guessed = client.get(f"/api/t/{facility.slug}/patients/{uuid.uuid4()}/chart",
                         headers={"x-break-glass-reason": "looking around for a patient"})
    assert guessed.status_code == 404
    intruder = signed_in("clinician", other_facility.slug)
    refused = intruder.get(f"/api/t/{facility.slug}/patients/{patients['seen']}/chart",
                           headers={"x-break-glass-reason": "I would like to read this chart"})
    assert refused.status_code == 403
    assert "break_glass_required" not in refused.json()
