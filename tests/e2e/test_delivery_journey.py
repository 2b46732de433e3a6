"""A midwife records a birth in a real browser (Debian's chromium, headless) against the appliance served over HTTP,
at a phone's width: "Record delivery" from the mother's chart on her ward, the form refusing a live-born baby
without its 5-minute Apgar with what was typed kept, the delivery, the baby's chart (opened without breaking the
glass: the baby is on the ward with her) saying whom it was born to, and back to the mother."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from appliance.layers.clinical import service
from appliance.layers.clinical.schemas import EncounterIn, PatientIn
from appliance.substrate.principal import Principal
from tests.e2e.conftest import Clinic, Journey, Watch
from tests.e2e.test_journeys import new_page, sign_in

pytestmark = pytest.mark.slow
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def clinic(tenant_factory) -> Clinic:
    """A hospital with nobody in it yet: this journey needs no year of history."""
    config = tenant_factory(name="Lakeview Sub-County Hospital")
    return Clinic(config.slug, config.name, [])


def test_a_midwife_records_a_birth_on_a_phone_and_opens_the_babys_chart(browser, live_server, clinic, db,
                                                                         person_factory):
    midwife, doctor = person_factory("nurse", clinic.slug, ward="GEN"), person_factory("clinician", clinic.slug)
    desk = Principal(account_id=doctor.account_id, kind="staff", display_name="Test", tenant=clinic.slug,
                     role="clinician")
    linked = service.with_subject(db, PatientIn.model_validate({
        "family_name": "Nekesa", "given_names": "Mercy", "birth_date": "1998-03-14", "sex": "female",
        "identifiers": [{"system": "national_id", "value": "E2E-BIRTH-1"}]}), tenant=clinic.slug)
    with db.tenant(clinic.slug) as conn:
        mother = service.register_patient(conn, desk, linked)["id"]
        service.open_encounter(conn, desk, mother, EncounterIn(encounter_class="inpatient", status="in_progress",
                                                               ward_code="GEN", reason="In labour"))
    journey, watch = Journey("delivery"), Watch()
    context, page = new_page(browser, watch)
    sign_in(page, live_server, midwife)
    page.set_viewport_size(PHONE)
    page.goto(f"{live_server}/t/{clinic.slug}/patients/{mother}/chart")
    page.get_by_role("link", name="Record delivery").click()
    page.wait_for_url(re.compile(r"/deliveries/new$"))
    yesterday = dt.date.today() - dt.timedelta(days=1)
    page.get_by_label("Date of birth").fill(yesterday.isoformat())
    page.get_by_label("Time of birth").fill("22:15")
    page.get_by_label("Gestation, completed weeks").fill("39")
    page.get_by_label("and days").fill("2")
    page.get_by_label("Mode of delivery").select_option("spontaneous_vaginal")
    baby = page.locator("#baby-0")
    baby.get_by_label("Outcome").select_option("live_birth")
    baby.get_by_label("Sex").select_option("female")
    baby.get_by_label("Birth weight").fill("3150")
    baby.get_by_label("Apgar at 1 minute").fill("8")
    page.get_by_label("Estimated blood loss").fill("300")
    page.get_by_label("Uterotonic given (third stage)").select_option("oxytocin")
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]  # nothing runs off a phone
    page.get_by_role("button", name="Record the delivery").click()
    page.wait_for_load_state()
    assert "Apgar score at 5 minutes" in page.locator(".error-summary").inner_text()
    assert page.locator("#baby-0").get_by_label("Birth weight").input_value() == "3150"  # what was typed is kept
    journey.shot(page, "refused-kept")

    page.locator("#baby-0").get_by_label("Apgar at 5 minutes").fill("9")
    page.get_by_role("button", name="Record the delivery").click()
    page.wait_for_url(re.compile(r"/deliveries/[0-9a-f-]+\?done=delivery-recorded$"))
    assert "3150 g" in page.locator("#baby-1").inner_text()
    journey.shot(page, "recorded")

    page.get_by_role("link", name="Baby's chart").click()
    page.wait_for_url(re.compile(r"/chart$"))
    assert "NEKESA, Baby of" in page.locator("#patient-name").inner_text()
    assert "Mercy Nekesa" in page.locator("#born-to").inner_text()
    journey.shot(page, "babys-chart")
    page.locator("#born-to").get_by_role("link", name="Mercy Nekesa").click()
    page.wait_for_url(re.compile(r"/deliveries/[0-9a-f-]+$"))
    assert "Spontaneous vaginal" in page.locator(".delivery-facts").inner_text()
    watch.assert_clean(provoked={422})
    context.close()
