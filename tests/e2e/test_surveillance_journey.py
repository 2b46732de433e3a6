"""The ministry's Alerts page in a real browser: a case of cholera diagnosed at the hospital today is an open alert
the analyst reaches from home, with the case as it leaves the facility; acknowledging it without a note is
refused in words, with a note it moves to Acknowledged."""

from __future__ import annotations

import pytest

from appliance.layers.clinical import service
from appliance.layers.clinical.schemas import ConditionIn, PatientIn
from appliance.substrate.principal import Principal
from tests.e2e.conftest import Journey, Watch
from tests.e2e.test_journeys import new_page, sign_in

pytestmark = pytest.mark.slow


def test_the_analyst_acknowledges_a_case_of_cholera_the_day_it_is_diagnosed(browser, live_server, clinic, db,
                                                                             person_factory):
    doctor = person_factory("clinician", clinic.slug)
    desk = Principal(account_id=doctor.account_id, kind="staff", display_name="Test", tenant=clinic.slug,
                     role="clinician")
    with db.tenant(clinic.slug) as conn:
        patient = service.register_patient(conn, desk, PatientIn.model_validate({
            "family_name": "Owino", "given_names": "Kevin", "sex": "male", "birth_date": "1991-03-08",
            "identifiers": [{"system": "national_id", "value": "30918822"}]}))
        service.add_condition(conn, desk, patient["id"], ConditionIn(code="A00.9"))
    journey, watch = Journey("ministry-alerts"), Watch()
    context, page = new_page(browser, watch)
    sign_in(page, live_server, person_factory("ministry_analyst", kind="ministry_analyst"))
    page.get_by_role("link", name="Open the notifiable disease alerts").click()
    page.wait_for_url(f"{live_server}/national/alerts")
    row = page.locator(f'#open-alerts tr[data-alert^="{clinic.slug}/cholera/"]')
    text = row.inner_text()
    assert clinic.name in text and "Cholera" in text and "A00.9 · male · age 15-49Y" in text
    assert "OWINO" not in page.content().upper() and patient["mrn"] not in page.content()
    journey.shot(page, "open-alert")

    row.get_by_role("button", name="Acknowledge").click()  # the browser asks for the note it requires
    assert page.url == f"{live_server}/national/alerts"
    row.get_by_label("Note").fill("District surveillance officer called; stool sample sent to the reference lab")
    with page.expect_navigation():  # the redirect comes back to the page it left
        row.get_by_role("button", name="Acknowledge").click()
    done = page.locator(f'#acknowledged-alerts tr[data-alert^="{clinic.slug}/cholera/"]')
    assert "stool sample sent" in done.inner_text()
    journey.shot(page, "acknowledged")
    watch.assert_clean()
    context.close()
