"""An operation in a real browser (Debian's chromium, headless) against the appliance served over HTTP, at a
phone's width: a surgeon books it from the chart, the theatre nurse records the Sign In on the case's page (refused
first with one check left unticked, the ticks kept), the surgeon is refused completing it before the Time Out and
Sign Out, and the theatre list shows the case in theatre with its checklist progress."""

from __future__ import annotations

import re

import pytest

from appliance.layers.clinical import service, surgery
from appliance.layers.clinical.schemas import EncounterIn, PatientIn
from appliance.substrate.principal import Principal
from tests.e2e.conftest import Clinic, Journey, Watch
from tests.e2e.test_journeys import new_page, sign_in

pytestmark = pytest.mark.slow
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def clinic(tenant_factory) -> Clinic:
    """A hospital with two theatres and nobody in it yet: this journey needs no year of history."""
    config = tenant_factory(name="Lakeview Theatre Hospital", theatres=[{"code": "MAIN", "name": "Main theatre"},
                                                                       {"code": "MAT", "name": "Maternity theatre"}],
                            procedures=[{"code": "HERNIA", "name": "Inguinal hernia repair"}])
    return Clinic(config.slug, config.name, [])


def test_a_surgeon_books_and_a_nurse_signs_in_on_a_phone(browser, live_server, clinic, db, person_factory):
    surgeon, nurse = person_factory("clinician", clinic.slug), person_factory("nurse", clinic.slug, ward="GEN")
    desk = Principal(account_id=surgeon.account_id, kind="staff", display_name="Test", tenant=clinic.slug,
                     role="clinician")
    with db.tenant(clinic.slug) as conn:
        patient = service.register_patient(conn, desk, PatientIn.model_validate({
            "family_name": "Barasa", "given_names": "Tom", "birth_date": "1971-08-09", "sex": "male",
            "identifiers": [{"system": "national_id", "value": "E2E-THEATRE-1"}]}))["id"]
        service.open_encounter(conn, desk, patient, EncounterIn(encounter_class="inpatient", status="in_progress",
                                                                ward_code="GEN", reason="Inguinal hernia"))
    journey, watch = Journey("theatre"), Watch()
    context, page = new_page(browser, watch)
    sign_in(page, live_server, surgeon)
    page.set_viewport_size(PHONE)
    page.goto(f"{live_server}/t/{clinic.slug}/patients/{patient}/chart")
    page.get_by_role("link", name="Book surgery").click()
    page.wait_for_url(re.compile(r"/surgery/new$"))
    page.locator("#procedure").fill("Right inguinal hernia repair (mesh)")
    page.get_by_label("From the facility's procedure list").select_option("HERNIA")
    page.locator("#planned_time").fill("10:30")
    page.locator("#theatre").select_option("MAIN")
    page.locator("#surgeon").fill("Dr Wafula")
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]  # nothing runs off a phone
    page.get_by_role("button", name="Book the operation").click()
    page.wait_for_url(re.compile(r"/theatre/cases/[0-9a-f-]+\?done=surgery-booked$"))
    case_url = page.url.split("?")[0]
    journey.shot(page, "booked")
    surgeons_context, surgeons_page = context, page  # kept: a second sign-in would reuse the code (replay)

    context, page = new_page(browser, watch)
    sign_in(page, live_server, nurse)
    page.set_viewport_size(PHONE)
    page.goto(case_url)
    sign_in_form = page.locator("#phase-sign_in-form")
    checks = [key for key, _ in surgery.PHASES["sign_in"].items]
    for key in checks[:-1]:
        sign_in_form.locator(f"#phase-sign_in-{key}").check()
    sign_in_form.get_by_role("button", name="Record the Sign In").click()
    page.wait_for_load_state()
    assert "not confirmed" in page.locator("#case-refusal").inner_text()
    assert page.locator(f"#phase-sign_in-{checks[0]}").is_checked()  # what was ticked is kept
    page.locator(f"#phase-sign_in-{checks[-1]}").check()
    page.get_by_role("button", name="Record the Sign In").click()
    page.wait_for_url(re.compile(r"\?done=phase-recorded$"))
    assert "Recorded" in page.locator("#phase-sign_in-recorded").inner_text()
    journey.shot(page, "signed-in")
    context.close()

    context, page = surgeons_context, surgeons_page
    page.goto(case_url)
    page.get_by_role("button", name="Into theatre").click()
    page.wait_for_url(re.compile(r"\?done=case-moved$"))
    page.get_by_role("button", name="Completed").click()
    page.wait_for_load_state()
    assert "Time Out and Sign Out have not been recorded" in page.locator("#case-refusal").inner_text()
    page.get_by_role("link", name="Main theatre").click()
    page.wait_for_url(re.compile(r"/theatre\?day="))
    assert "Checklist 1/3" in page.locator(".theatre-case").first.inner_text()
    assert "in theatre" in page.locator(".theatre-case").first.inner_text()
    journey.shot(page, "list")
    watch.assert_clean(provoked={422})
    context.close()
