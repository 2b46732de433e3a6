"""A midwife records an antenatal contact in a real browser (Debian's chromium, headless) against the appliance served
over HTTP, at a phone's width: the woman's Antenatal tab, the first contact dating the pregnancy with a pressure and a
urine protein that flag pre-eclampsia, the card with its due date, flags and schedule, and the ANC clinic list from
the navigation naming her."""

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
    config = tenant_factory(name="Hillside Maternity Unit")
    return Clinic(config.slug, config.name, [])


def test_a_midwife_records_an_antenatal_contact_on_a_phone(browser, live_server, clinic, db, person_factory):
    midwife, doctor = person_factory("nurse", clinic.slug, ward="GEN"), person_factory("clinician", clinic.slug)
    desk = Principal(account_id=doctor.account_id, kind="staff", display_name="Test", tenant=clinic.slug,
                     role="clinician")
    linked = service.with_subject(db, PatientIn.model_validate({
        "family_name": "Wafula", "given_names": "Ruth", "birth_date": "1999-08-02", "sex": "female",
        "identifiers": [{"system": "national_id", "value": "E2E-ANC-1"}]}), tenant=clinic.slug)
    with db.tenant(clinic.slug) as conn:
        woman = service.register_patient(conn, desk, linked)["id"]
        service.open_encounter(conn, desk, woman, EncounterIn(encounter_class="inpatient", status="in_progress",
                                                              ward_code="GEN", reason="Raised blood pressure"))
    journey, watch = Journey("antenatal"), Watch()
    context, page = new_page(browser, watch)
    sign_in(page, live_server, midwife)
    page.set_viewport_size(PHONE)
    page.goto(f"{live_server}/t/{clinic.slug}/patients/{woman}/chart")
    page.get_by_role("link", name="Antenatal").first.click()
    page.wait_for_url(re.compile(r"/antenatal$"))
    lmp = dt.date.today() - dt.timedelta(weeks=32)
    page.get_by_label("Last menstrual period, first day").fill(lmp.isoformat())
    page.get_by_label("Blood pressure, systolic").fill("150")
    page.get_by_label("diastolic").fill("96")
    page.get_by_label("Urine protein (dipstick)").select_option("2+")
    page.get_by_label("Haemoglobin").fill("11.4")
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]  # nothing runs off a phone
    page.get_by_role("button", name="Record the contact").click()
    page.wait_for_url(re.compile(r"/antenatal\?done=anc-flagged$"))
    assert "Pre-eclampsia suspected" in page.locator("#anc-flags").inner_text()
    assert "32+" in page.locator("#gestation-today").inner_text()
    journey.shot(page, "card")
    page.goto(f"{live_server}/t/{clinic.slug}/antenatal/clinic")
    assert "WAFULA, Ruth" in page.locator("#clinic-table").inner_text()
    # Her flags and her next contact are on the phone's screen, not in a column scrolled to sideways.
    row = page.locator("#clinic-table tbody tr").first
    for cell in (row.get_by_text("Pre-eclampsia suspected"), row.locator("td[data-label='Next contact']")):
        box = cell.bounding_box()
        assert box is not None and box["x"] + box["width"] <= PHONE["width"], box
    said = row.locator("td[data-label='Next contact']").evaluate("e => getComputedStyle(e, '::before').content")
    assert said == '"Next contact: "', said  # its column's heading is hidden on a phone
    journey.shot(page, "clinic")
    watch.assert_clean()
    context.close()
