"""A ward doctor's discharge summary in a real browser (Debian's chromium, headless) against the appliance
served over HTTP: from the inpatient stay on the chart to the form pre-filled from the stay's record, a
refusal that keeps what was typed, the signature, and the signed summary as it prints (the portal's
navigation and the patient banner left off, the summary whole)."""

from __future__ import annotations

import re

import pytest

from appliance.layers.clinical import service
from appliance.layers.clinical.schemas import ConditionIn, MedicationIn, PatientIn
from appliance.layers.operations import adt
from appliance.substrate.principal import Principal
from tests.e2e.conftest import Clinic, Journey, Watch
from tests.e2e.test_journeys import new_page, sign_in

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def clinic(tenant_factory) -> Clinic:
    """A hospital with a general ward and nobody in it yet: this journey needs no year of history."""
    config = tenant_factory(name="Lakeshore District Hospital", wards=[
        {"code": "GEN", "name": "General ward", "kind": "inpatient", "beds": 4}])
    return Clinic(config.slug, config.name, [])


@pytest.fixture(scope="module")
def doctor(person_factory, clinic):
    return person_factory("clinician", clinic.slug)


@pytest.fixture(scope="module")
def inpatient(db, clinic, doctor) -> dict:
    """Joseph, admitted to the general ward with pneumonia and on amoxicillin."""
    principal = Principal(account_id=doctor.account_id, kind="staff", display_name="Test clinician",
                          tenant=clinic.slug, role="clinician")
    with db.tenant(clinic.slug) as conn:
        patient = service.register_patient(conn, principal, PatientIn.model_validate({
            "family_name": "Mutua", "given_names": "Joseph", "birth_date": "1966-09-30", "sex": "male"}))
        stay = adt.admit(conn, principal, patient["id"], ward_code="GEN", reason="Fever and cough")
        service.add_condition(conn, principal, patient["id"], ConditionIn(code="J18.9",
                                                                          encounter_id=stay["encounter_id"]))
        service.request_medication(conn, principal, patient["id"], MedicationIn(
            drug="Amoxicillin", dose=500, dose_unit="mg", route="oral", frequency="every 8 hours", duration_days=5,
            encounter_id=stay["encounter_id"]))
    return {"id": str(patient["id"])}


def test_a_doctor_writes_signs_and_prints_a_discharge_summary(browser, live_server, clinic, doctor, inpatient):
    journey, watch = Journey("discharge-summary"), Watch()
    context, page = new_page(browser, watch)
    sign_in(page, live_server, doctor)
    page.goto(f"{live_server}/t/{clinic.slug}/patients/{inpatient['id']}/chart")
    page.get_by_role("link", name="Write discharge summary").click()
    page.wait_for_url(re.compile(r"/discharge-summaries/new\?encounter_id="))
    assert "Pneumonia, unspecified (J18.9)" in page.get_by_label("Diagnoses").input_value()
    assert page.get_by_label("Medicines on discharge").input_value().startswith("Amoxicillin 500 mg oral")
    assert page.locator("#stay-ward").inner_text() == "General ward"
    journey.shot(page, "form-pre-filled")

    # Signed without the hospital course: refused by the field, with what was typed kept.
    page.get_by_label("Discharge instructions").fill("Finish the amoxicillin; come back if the fever returns.")
    page.get_by_label("Follow-up (when and where)").fill("Medical outpatient clinic in two weeks")
    page.get_by_label("Condition at discharge").select_option("improved")
    page.get_by_role("button", name="Sign discharge summary").click()
    page.wait_for_load_state()
    assert "Hospital course is required" in page.locator(".error-summary").inner_text()
    assert page.get_by_label("Discharge instructions").input_value().startswith("Finish the amoxicillin")
    journey.shot(page, "refused-kept")

    page.get_by_label("Hospital course").fill("Oral amoxicillin from admission; afebrile from day two.")
    page.get_by_role("button", name="Sign discharge summary").click()
    page.wait_for_url(re.compile(r"/discharge-summaries/[0-9a-f-]{36}\?done=discharge-signed$"))
    assert page.get_by_role("button", name="Print").is_visible()  # shown by its script, which the CSP allows
    summary = page.locator("article.discharge-summary")
    assert "afebrile from day two" in summary.inner_text()
    journey.shot(page, "signed")

    assert page.locator("#discharge-not-yet").is_visible()  # signed before the bed board discharges him
    page.emulate_media(media="print")
    assert summary.is_visible() and page.locator("#part-hospital-course").is_visible()
    assert not page.locator("#discharge-not-yet").is_visible()  # the paper he takes home says no "not yet"
    for hidden in ("header.top", "nav.layers", "section.banner", ".notice", "nav.tabs"):
        assert not page.locator(hidden).first.is_visible(), hidden
    assert page.locator("#discharge-patient").inner_text() == "MUTUA, Joseph"
    journey.shot(page, "as-printed")
    watch.assert_clean(provoked={422})
    context.close()
