"""A doctor certifies a death in a real browser (Debian's chromium, headless) against the appliance served over
HTTP: "Record death" from the chart, the WHO form refusing a line left empty above a used one with what was
typed kept, the certificate, the banner saying "Deceased", and the certificate as it prints (the portal's
navigation and the banner left off)."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from appliance.layers.clinical import service
from appliance.layers.clinical.schemas import EncounterIn, PatientIn
from appliance.substrate.principal import Principal
from tests.e2e.conftest import Clinic, Journey, Watch
from tests.e2e.test_journeys import DESKTOP, new_page, sign_in

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def clinic(tenant_factory) -> Clinic:
    """A hospital with nobody in it yet: this journey needs no year of history."""
    config = tenant_factory(name="Lakeshore District Hospital")
    return Clinic(config.slug, config.name, [])


@pytest.fixture(scope="module")
def doctor(person_factory, clinic):
    return person_factory("clinician", clinic.slug)


@pytest.fixture(scope="module")
def patient(db, clinic, doctor) -> str:
    principal = Principal(account_id=doctor.account_id, kind="staff", display_name="Test clinician",
                          tenant=clinic.slug, role="clinician")
    data = PatientIn.model_validate({"family_name": "Odhiambo", "given_names": "Paul", "birth_date": "1948-01-20",
                                     "sex": "male", "identifiers": [{"system": "national_id", "value": "E2E-DEATH-1"}]})
    linked = service.with_subject(db, data, tenant=clinic.slug)
    with db.tenant(clinic.slug) as conn:
        registered = service.register_patient(conn, principal, linked)
        service.open_encounter(conn, principal, registered["id"], EncounterIn(
            encounter_class="emergency", status="in_progress", reason="Collapsed at home"))
    return str(registered["id"])


def test_a_doctor_certifies_a_death_and_prints_the_certificate(browser, live_server, clinic, doctor, patient):
    journey, watch = Journey("death-certificate"), Watch()
    context, page = new_page(browser, watch)
    sign_in(page, live_server, doctor)
    page.goto(f"{live_server}/t/{clinic.slug}/patients/{patient}/chart")
    page.get_by_role("link", name="Record death").click()
    page.wait_for_url(re.compile(r"/death/new$"))
    # On a phone Part 1's three columns made the page 556 px wide, each line's interval off the screen's edge.
    page.set_viewport_size({"width": 390, "height": 844})
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    interval = page.get_by_label("Line a interval").bounding_box()
    assert interval is not None and interval["x"] + interval["width"] <= 390
    journey.shot(page, "form-on-a-phone")
    page.set_viewport_size(DESKTOP)
    yesterday = dt.date.today() - dt.timedelta(days=1)
    page.get_by_label("Date of death").fill(yesterday.isoformat())
    page.get_by_label("Time of death").fill("23:40")
    page.get_by_label("Place of death").select_option("home")
    page.get_by_label("Line a code").fill("I46.9")
    page.get_by_label("Line a interval").fill("minutes")
    page.get_by_label("Line c code").fill("I25.1")
    page.get_by_label("Manner of death").select_option("disease")
    page.get_by_role("button", name="Certify the death").click()
    page.wait_for_load_state()
    assert "Leave no line empty" in page.locator(".error-summary").inner_text()
    assert page.get_by_label("Line c code").input_value() == "I25.1"  # what was typed is kept
    journey.shot(page, "refused-kept")

    page.get_by_label("Line c code").fill("")
    page.get_by_label("Line b code").fill("I25.1")
    page.get_by_label("Line b interval").fill("10 years")
    page.get_by_role("button", name="Certify the death").click()
    page.wait_for_url(re.compile(r"/death\?done=death-certified$"))
    certificate = page.locator("article.death-certificate")
    assert "Underlying cause as certified: I25.1" in certificate.inner_text()
    assert f"Deceased {yesterday:%d %b %Y}" in page.locator("#deceased").inner_text()
    journey.shot(page, "certified")

    page.emulate_media(media="print")
    assert certificate.is_visible()
    for hidden in ("header.top", "nav.layers", "section.banner", ".notice", "nav.tabs"):
        assert not page.locator(hidden).first.is_visible(), hidden
    journey.shot(page, "as-printed")
    watch.assert_clean(provoked={422})
    context.close()
