"""The department benches in a real browser (Debian's chromium, headless) against the appliance served over HTTP:
a lab technician signs in and lands on the lab worklist, receives the specimen of a full blood count, enters
its three results (a mistyped platelet count refused beside its field, the others kept as typed), and the
ordering clinician finds them on their list of results to review; a radiographer records a chest X-ray performed
and the clinician's report of it, a critical finding, reaches their list flagged."""

from __future__ import annotations

import re

import pytest

from appliance.layers.clinical import service
from appliance.layers.clinical.schemas import EncounterIn, PatientIn, ServiceRequestIn
from appliance.substrate.principal import Principal
from tests.e2e.conftest import Journey, Watch
from tests.e2e.test_journeys import DESKTOP, new_page, sign_in

pytestmark = pytest.mark.slow


def test_a_lab_technician_receives_a_specimen_and_enters_a_blood_count(browser, live_server, clinic, db,
                                                                        person_factory):
    technician, doctor = person_factory("lab_technician", clinic.slug), person_factory("clinician", clinic.slug)
    ordering = Principal(account_id=doctor.account_id, kind="staff", display_name="Test", tenant=clinic.slug,
                         role="clinician")
    with db.tenant(clinic.slug) as conn:
        patient_id = service.register_patient(conn, ordering, PatientIn.model_validate({
            "family_name": "Nafula", "given_names": "Rose", "birth_date": "1994-02-11", "sex": "female",
            "identifiers": [{"system": "national_id", "value": "31877402"}]}))["id"]
        visit = service.open_encounter(conn, ordering, patient_id, EncounterIn(encounter_class="outpatient"))
        order = service.order_test(conn, ordering, patient_id, ServiceRequestIn(
            code="58410-2", priority="urgent", encounter_id=visit["id"]))["id"]
    journey, watch = Journey("lab-bench"), Watch()
    context, page = new_page(browser, watch)
    sign_in(page, live_server, technician, journey)
    page.get_by_role("link", name=re.compile("Open the portal")).click()
    page.wait_for_url(re.compile(r"/lab$"))
    card = page.locator(f"#lab-{order}")
    assert "NAFULA, Rose" in card.inner_text() and "Awaiting specimen" in card.inner_text()
    journey.shot(page, "worklist")

    card.get_by_role("button", name=re.compile("Specimen received")).click()
    page.wait_for_url(re.compile(r"/lab\?done=specimen-received$"))
    card = page.locator(f"#lab-{order}")
    card.locator("summary", has_text="Enter results").click()
    card.get_by_label("Haemoglobin").fill("8.9")
    card.get_by_label("White cell count").fill("6.2")
    card.get_by_label("Platelets").fill("2OO")  # letters O for zeros
    card.get_by_role("button", name=re.compile("Record results")).click()
    error = page.locator("#v\\.777-3-error")
    assert "Platelets is a number" in error.inner_text()
    assert page.locator(f"#results-{order}-718-7").input_value() == "8.9"
    journey.shot(page, "refused-beside-platelets")
    page.locator(f"#results-{order}-777-3").fill("200")
    page.get_by_role("button", name=re.compile("Record results")).click()
    page.wait_for_url(re.compile(r"/lab\?done=lab-resulted$"))
    card = page.locator(f"#lab-{order}")
    assert "Resulted: awaiting sign-off" in card.inner_text() and "Low" in card.inner_text()
    journey.shot(page, "resulted")
    # On a phone a result's correction opens at the card's width, not off the screen's edge inside its table.
    page.set_viewport_size({"width": 390, "height": 844})
    card.locator("tr", has_text="Platelets").locator("summary").click()
    width, room = card.locator("table.bench-results").evaluate("t => [t.scrollWidth, t.parentElement.clientWidth]")
    assert width <= room, (width, room)
    button = card.locator("tr", has_text="Platelets").get_by_role("button", name=re.compile("Correct")).bounding_box()
    assert button is not None and button["x"] + button["width"] <= 390
    journey.shot(page, "correction-on-a-phone")
    page.set_viewport_size(DESKTOP)
    context.close()

    context, page = new_page(browser, watch)
    sign_in(page, live_server, doctor)
    page.goto(f"{live_server}/t/{clinic.slug}/today")
    review = page.locator("#results-to-review")
    assert "Haemoglobin" in review.inner_text() and "NAFULA" in review.inner_text().upper()
    # On a phone the patient's results to review keep each one's sign-off on the screen.
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"{live_server}/t/{clinic.slug}/patients/{patient_id}/results")
    sign = page.locator("table.review").get_by_role("button", name=re.compile("Sign")).first.bounding_box()
    assert sign is not None and sign["x"] + sign["width"] <= 390, sign
    context.close()
    watch.assert_clean(provoked={422})  # the mistyped platelet count


def test_a_radiographer_performs_a_chest_xray_and_a_clinician_reports_a_critical_finding(browser, live_server, clinic,
                                                                                         db, person_factory):
    """The imaging bench, leanly: the radiographer lands on the imaging worklist, sees the indication and records
    the study performed; a clinician reports it with a critical finding and finds it flagged on their results to
    review (they ordered it)."""
    radiographer, doctor = person_factory("radiographer", clinic.slug), person_factory("clinician", clinic.slug)
    ordering = Principal(account_id=doctor.account_id, kind="staff", display_name="Test", tenant=clinic.slug,
                         role="clinician")
    with db.tenant(clinic.slug) as conn:
        patient_id = service.register_patient(conn, ordering, PatientIn.model_validate({
            "family_name": "Kamau", "given_names": "Peter", "birth_date": "1979-06-02", "sex": "male",
            "identifiers": [{"system": "national_id", "value": "22771903"}]}))["id"]
        visit = service.open_encounter(conn, ordering, patient_id, EncounterIn(encounter_class="emergency"))
        order = service.order_test(conn, ordering, patient_id, ServiceRequestIn(
            code="36643-5", priority="stat", clinical_info="fall from a roof, right chest pain",
            encounter_id=visit["id"]))["id"]
    journey, watch = Journey("imaging-bench"), Watch()
    context, page = new_page(browser, watch)
    sign_in(page, live_server, radiographer, journey)
    page.get_by_role("link", name=re.compile("Open the portal")).click()
    page.wait_for_url(re.compile(r"/imaging$"))
    card = page.locator(f"#imaging-{order}")
    assert "KAMAU, Peter" in card.inner_text() and "fall from a roof" in card.inner_text()
    card.get_by_label("How it was done").fill("AP supine")
    card.get_by_role("button", name=re.compile("Study performed")).click()
    page.wait_for_url(re.compile(r"/imaging\?done=study-performed$"))
    assert "AP supine" in page.locator(f"#imaging-{order}").inner_text()
    journey.shot(page, "performed")
    context.close()

    context, page = new_page(browser, watch)
    sign_in(page, live_server, doctor)
    page.goto(f"{live_server}/t/{clinic.slug}/imaging?state=performed")
    card = page.locator(f"#imaging-{order}")
    card.locator("summary", has_text="Report the study").click()
    card.get_by_label("Findings").fill("Right-sided pneumothorax with mediastinal shift.")
    card.get_by_label("Impression").fill("Tension pneumothorax.")
    card.get_by_label(re.compile("Critical: to act on now")).check()
    card.get_by_role("button", name=re.compile("Sign the report")).click()
    page.wait_for_url(re.compile(r"/imaging\?done=study-reported-critical&state=performed$"))
    assert "telephone the clinician who ordered it" in page.locator("body").inner_text()
    page.goto(f"{live_server}/t/{clinic.slug}/imaging?state=reported")
    assert "Tension pneumothorax." in page.locator(f"#imaging-{order}").inner_text()
    journey.shot(page, "reported")
    page.goto(f"{live_server}/t/{clinic.slug}/today")
    row = page.locator("#results-to-review tr", has_text="Tension pneumothorax")
    assert "Critical" in row.inner_text() and "KAMAU" in row.inner_text().upper()
    context.close()
    watch.assert_clean()
