"""A nurse files paper on a chart in a real browser (Debian's chromium, headless) against the appliance served over
HTTP: the Documents tab, a wound photograph uploaded through the form (multipart, CSRF) and shown when opened (an
image under the file's sandboxing policy still draws), and a referral letter PDF downloaded byte for byte rather
than shown (served as an attachment: no PDF viewer runs in the appliance's origin)."""

from __future__ import annotations

import re

import pytest

from appliance.layers.clinical import service
from appliance.layers.clinical.document_demo import tiny_pdf, tiny_png
from appliance.layers.clinical.schemas import EncounterIn, PatientIn
from appliance.substrate.principal import Principal
from tests.e2e.conftest import Clinic, Journey, Watch
from tests.e2e.test_journeys import DESKTOP, new_page, sign_in

pytestmark = pytest.mark.slow
PHOTO = tiny_png(48, 32, (170, 70, 60))
LETTER = tiny_pdf(["Mercy Private Clinic", "Referral: please assess"])


@pytest.fixture(scope="module")
def clinic(tenant_factory) -> Clinic:
    """A hospital with nobody in it yet: this journey needs no year of history."""
    config = tenant_factory(name="Paperwork District Hospital")
    return Clinic(config.slug, config.name, [])


def test_a_nurse_files_a_photograph_and_a_letter_and_opens_both(browser, live_server, clinic, db, person_factory,
                                                                tmp_path):
    nurse, doctor = person_factory("nurse", clinic.slug, ward="GEN"), person_factory("clinician", clinic.slug)
    desk = Principal(account_id=doctor.account_id, kind="staff", display_name="Test", tenant=clinic.slug,
                     role="clinician")
    with db.tenant(clinic.slug) as conn:
        chart = service.register_patient(conn, desk, PatientIn.model_validate({
            "family_name": "Njeri", "given_names": "Alice", "birth_date": "1971-01-30", "sex": "female",
            "identifiers": [{"system": "national_id", "value": "E2E-DOC-1"}]}))["id"]
        service.open_encounter(conn, desk, chart, EncounterIn(encounter_class="inpatient", status="in_progress",
                                                              ward_code="GEN", reason="Leg ulcer"))
    (tmp_path / "wound.png").write_bytes(PHOTO)
    (tmp_path / "letter.pdf").write_bytes(LETTER)
    journey, watch = Journey("documents"), Watch()
    context, page = new_page(browser, watch)
    sign_in(page, live_server, nurse)
    page.goto(f"{live_server}/t/{clinic.slug}/patients/{chart}/chart")
    page.get_by_role("link", name="Documents").first.click()
    page.wait_for_url(re.compile(r"/documents$"))
    for path, category, title in [(tmp_path / "wound.png", "clinical_photograph", "Leg ulcer, day 1"),
                                  (tmp_path / "letter.pdf", "referral_letter", "Referral from Mercy Private Clinic")]:
        page.locator("#file").set_input_files(path)
        page.locator("#category").select_option(category)
        page.locator("#title").fill(title)
        page.get_by_role("button", name="File the document").click()
        page.wait_for_url(re.compile(r"/documents\?done=document-filed$"))
    assert "Leg ulcer, day 1" in page.locator("#documents-table").inner_text()
    journey.shot(page, "documents")
    # On a phone the table of documents made the page wider than the screen: each document is a block there, its
    # two dates saying which is the paper's and which the filing's.
    page.set_viewport_size({"width": 390, "height": 844})
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    letter = page.locator("#documents-table tr", has_text="Referral from Mercy Private Clinic").first
    said = letter.locator("td[data-label]").evaluate_all(
        "cells => cells.map(c => getComputedStyle(c, '::before').content)")
    assert said == ['"Dated: "', '"Filed: "']
    journey.shot(page, "documents-on-a-phone")
    page.set_viewport_size(DESKTOP)
    with page.expect_download() as downloading:
        page.get_by_role("link", name="Referral from Mercy Private Clinic").click()
    assert downloading.value.suggested_filename.endswith(".pdf")
    assert downloading.value.path().read_bytes() == LETTER
    page.get_by_role("link", name="Leg ulcer, day 1").click()
    page.wait_for_url(re.compile(r"/content$"))
    page.wait_for_function("document.images.length === 1 && document.images[0].complete")
    assert page.evaluate("[document.images[0].naturalWidth, document.images[0].naturalHeight]") == [48, 32]
    journey.shot(page, "photograph")
    # Chromium's own image viewer styles the page it draws an image in with inline style, which the appliance's
    # policy (style-src 'self') refuses: the image is drawn all the same, unstyled. Those complaints, and no other.
    viewer = [c for c in watch.csp if c.startswith("Applying inline style violates")]
    assert len(viewer) == len(watch.csp)
    watch.csp.clear()
    watch.assert_clean()
    context.close()
