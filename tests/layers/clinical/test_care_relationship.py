"""Care relationships and break-the-glass, from the clinician's side and the patient's access log."""

import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from appliance.layers.clinical import service
from appliance.layers.clinical.schemas import EncounterIn
from appliance.substrate import audit
from appliance.substrate.policy import load_policy
from tests.layers.clinical.conftest import CLINICAL_CONFIG, GENERAL_AND_MATERNITY, new_patient

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def facility(tenant_factory):
    """The clinical test facility with a maternity ward beside its general ward, for a nurse of the other ward."""
    return tenant_factory(name="Clinical Test Facility", **CLINICAL_CONFIG, wards=GENERAL_AND_MATERNITY)


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


def _finished_days_ago(db, facility, clinician, family_name: str, days: int | None, ward: str = "GEN") -> uuid.UUID:
    """A patient whose one encounter (on `ward`) finished `days` ago; None: still in progress."""
    with db.tenant(facility.slug) as conn:
        patient = new_patient(conn, clinician, family_name=family_name)
        visit = service.open_encounter(conn, clinician, patient["id"], EncounterIn(
            encounter_class="inpatient", status="in_progress", ward_code=ward))
        if days is None:
            conn.execute(sa.text("UPDATE encounter SET started_at = now() - interval '400 days' WHERE id = :e"),
                         {"e": visit["id"]})
        else:
            service.transition_encounter(conn, clinician, patient["id"], visit["id"], "finished")
            conn.execute(sa.text("UPDATE encounter SET ended_at = now() - make_interval(days => :d) WHERE id = :e"),
                         {"d": days, "e": visit["id"]})
    return patient["id"]


def test_a_care_relationship_lasts_the_policys_window_after_the_encounter_ends(signed_in, db, facility, clinician):
    """policies/access.toml keeps a care relationship 90 days after an encounter ends: a patient discharged 10 days
    ago opens, one last seen 100 days ago needs a reason (for the nurse of the ward too), and an encounter still
    open opens however long ago it began."""
    assert load_policy(REPO / "policies" / "access.toml").care_days == 90
    recent = _finished_days_ago(db, facility, clinician, "Recent", 10)
    lapsed = _finished_days_ago(db, facility, clinician, "Lapsed", 100)
    long_stay = _finished_days_ago(db, facility, clinician, "Longstay", None)
    doctor, nurse = signed_in("clinician", facility.slug), signed_in("nurse", facility.slug, ward="GEN")
    chart = f"/api/t/{facility.slug}/patients/{{}}/chart"
    assert doctor.get(chart.format(recent)).status_code == 200
    assert doctor.get(chart.format(long_stay)).status_code == 200
    refused = doctor.get(chart.format(lapsed))
    assert refused.status_code == 403 and refused.json()["break_glass_required"] is True
    assert "(no visit of theirs here is open or ended in the last 90 days)" in refused.json()["detail"]
    page = doctor.get(f"/t/{facility.slug}/patients/{lapsed}/chart")
    assert page.status_code == 403 and "none is open, and none ended in the last 90 days" in page.text
    # The registration page says the same of the visits it does not list, not that there has been none 'yet'.
    desk = doctor.get(f"/t/{facility.slug}/patients/{lapsed}").text.split('id="no-care-relationship">')[1]
    assert desk.startswith("No encounter links you to this patient: none is open, and none ended in the last 90")
    assert doctor.get(chart.format(lapsed), headers={"x-break-glass-reason": "seen again today in casualty"}
                      ).status_code == 200
    nursing = f"/api/t/{facility.slug}/patients/{{}}/news2"
    assert nurse.get(nursing.format(recent)).status_code == 200
    refused_nurse = nurse.get(nursing.format(lapsed))
    assert refused_nurse.status_code == 403
    said = refused_nurse.json()["detail"]
    assert "(no visit of theirs here on your ward is open or ended in the last 90 days)" in said
    # Seen again: the registrar's new visit makes the relationship again.
    with db.tenant(facility.slug) as conn:
        service.open_encounter(conn, clinician, lapsed, EncounterIn(encounter_class="outpatient"))
    assert doctor.get(chart.format(lapsed)).status_code == 200
