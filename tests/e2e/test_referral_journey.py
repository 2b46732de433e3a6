"""A patient is referred up the chain in a real browser (Debian's chromium, headless) against the appliance served
over HTTP: a clinician at the health centre refers from the chart with a letter, the district hospital's clinician
on a phone reads it in "Referrals received", accepts it (the patient registered there from the letter) and writes
the feedback, and the health centre reads the feedback back on the patient's referrals."""

from __future__ import annotations

import re

import pytest

from appliance.layers.clinical import service
from appliance.layers.clinical.schemas import ConditionIn, EncounterIn, PatientIn
from appliance.substrate.principal import Principal
from tests.e2e.conftest import Clinic, Journey, Watch
from tests.e2e.test_journeys import new_page, sign_in

pytestmark = pytest.mark.slow
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def clinic(tenant_factory) -> Clinic:
    """The district hospital referred to, with nobody in it yet."""
    config = tenant_factory(name="Lakeshore District Hospital")
    return Clinic(config.slug, config.name, [])


@pytest.fixture(scope="module")
def health_centre(tenant_factory) -> Clinic:
    config = tenant_factory(name="Hillview Health Centre", facility_type="health_centre")
    return Clinic(config.slug, config.name, [])


@pytest.fixture(scope="module")
def referrer(person_factory, health_centre):
    return person_factory("clinician", health_centre.slug)


@pytest.fixture(scope="module")
def patient(db, health_centre, referrer) -> str:
    principal = Principal(account_id=referrer.account_id, kind="staff", display_name="Test clinician",
                          tenant=health_centre.slug, role="clinician")
    data = PatientIn.model_validate({"family_name": "Chebet", "given_names": "Ruth", "birth_date": "1983-06-02",
                                     "sex": "female", "identifiers": [{"system": "national_id", "value": "E2E-REF-1"}]})
    linked = service.with_subject(db, data, tenant=health_centre.slug)
    with db.tenant(health_centre.slug) as conn:
        registered = service.register_patient(conn, principal, linked)
        service.open_encounter(conn, principal, registered["id"], EncounterIn(
            encounter_class="outpatient", status="in_progress", reason="Headaches"))
        service.add_condition(conn, principal, registered["id"], ConditionIn(code="I10"))
    return str(registered["id"])


def test_refer_at_the_health_centre_answer_at_the_hospital_and_read_it_back(browser, live_server, clinic,
                                                                          health_centre, referrer, patient,
                                                                          person_factory):
    journey, watch = Journey("referral"), Watch()
    context, page = new_page(browser, watch)
    sign_in(page, live_server, referrer)
    page.goto(f"{live_server}/t/{health_centre.slug}/patients/{patient}/referrals")
    page.get_by_role("link", name="Refer to another facility").click()
    page.wait_for_url(re.compile(r"/referrals/new$"))
    page.get_by_label("Facility referred to").select_option(
        label="Lakeshore District Hospital — the facility decides the clinic")
    page.get_by_label("Urgency").select_option("urgent")
    page.get_by_label("Reason for referral").fill("Blood pressure uncontrolled on two drugs")
    page.get_by_label("Clinical summary").fill("BP 184/112 on amlodipine and hydrochlorothiazide; headaches.")
    assert page.get_by_label(re.compile("Essential")).is_checked()  # the active problem goes by default
    journey.shot(page, "letter")
    page.get_by_role("button", name="Send the referral").click()
    page.wait_for_url(re.compile(r"/referrals\?done=referral-sent$"))
    assert "Referred to Lakeshore District Hospital" in page.locator("article.referral-letter").inner_text()

    doctor = person_factory("clinician", clinic.slug)
    there, phone = new_page(browser, watch)
    phone.set_viewport_size(PHONE)
    sign_in(phone, live_server, doctor)
    phone.goto(f"{live_server}/t/{clinic.slug}/referrals")
    phone.get_by_role("link", name="CHEBET, Ruth").click()
    assert "BP 184/112" in phone.locator(".referral-letter").inner_text()
    assert "Essential" in phone.locator(".referral-letter").inner_text()
    journey.shot(phone, "received-on-a-phone")
    phone.get_by_role("button", name="Accept").click()
    phone.wait_for_url(re.compile(r"done=referral-registered$"))
    phone.get_by_label("Findings").fill("Hypertensive retinopathy grade 2; creatinine normal")
    phone.get_by_label("Advice for the referring facility").fill("Losartan 50 mg added; recheck BP in 2 weeks")
    button = phone.get_by_role("button", name="Send the feedback")
    box = button.bounding_box()
    assert box is not None and box["x"] + box["width"] <= PHONE["width"]  # the form fits the phone
    button.click()
    phone.wait_for_url(re.compile(r"done=referral-completed$"))
    journey.shot(phone, "feedback-sent")

    page.goto(f"{live_server}/t/{health_centre.slug}/patients/{patient}/referrals")
    read_back = page.locator("article.referral-letter").inner_text()
    assert "Losartan 50 mg added; recheck BP in 2 weeks" in read_back and "Completed, feedback given" in read_back
    journey.shot(page, "feedback-read-back")
    watch.assert_clean()
    there.close()
    context.close()
