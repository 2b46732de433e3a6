"""The immunization clinic in a real browser (Debian's chromium, headless) against the appliance served over HTTP,
at a phone's width: a nurse opens the list of children due vaccines, finds a baby of seven weeks overdue, opens
the baby's Immunizations tab from it, forgets why a dose was not given (refused beside its field), then records
the first pentavalent dose, which the schedule card shows given. And the family planning clinic beside it, sharing
its server: a nurse finds a woman whose DMPA injection is overdue on the FP clients due, types two doses (refused
beside the quantity), then records the one injection, and the tab shows her next one not yet due."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from appliance.layers.clinical import family_planning, service
from appliance.layers.clinical.family_planning_policy import load_programme
from appliance.layers.clinical.family_planning_schemas import FamilyPlanningIn
from appliance.layers.clinical.schemas import EncounterIn, PatientIn
from appliance.substrate.principal import Principal
from appliance.substrate.tenancy import facility_timezone
from tests.e2e.conftest import Journey, Watch
from tests.e2e.test_journeys import new_page, sign_in

pytestmark = pytest.mark.slow
PHONE = {"width": 390, "height": 844}


def test_a_nurse_traces_an_overdue_baby_and_records_a_dose_on_a_phone(browser, live_server, clinic, db,
                                                                      person_factory):
    nurse, doctor = person_factory("nurse", clinic.slug), person_factory("clinician", clinic.slug)
    desk = Principal(account_id=doctor.account_id, kind="staff", display_name="Test", tenant=clinic.slug,
                     role="clinician")
    with db.tenant(clinic.slug) as conn:
        baby = service.register_patient(conn, desk, PatientIn.model_validate({
            "family_name": "Chepkoech", "given_names": "Imani", "sex": "female",
            "birth_date": (dt.date.today() - dt.timedelta(days=49)).isoformat(),
            "identifiers": [{"system": "birth_certificate", "value": "BC4471209"}]}))["id"]
        service.open_encounter(conn, desk, baby, EncounterIn(encounter_class="outpatient"))
    journey, watch = Journey("immunization-clinic"), Watch()
    context, page = new_page(browser, watch)
    sign_in(page, live_server, nurse)
    page.set_viewport_size(PHONE)
    page.goto(f"{live_server}/t/{clinic.slug}/immunizations/due?state=overdue")
    row = page.locator(f"#child-{baby}")
    assert "CHEPKOECH" in row.inner_text() and "Pentavalent (DTP-HepB-Hib), dose 1" in row.inner_text()
    journey.shot(page, "children-overdue")

    row.get_by_role("link").click()
    page.wait_for_url(re.compile(rf"/patients/{baby}/immunizations$"))
    assert "Overdue" in page.locator("#dose-PENTA-1").inner_text()
    form = page.locator("#dose-form")
    form.get_by_label("Vaccine").select_option("PENTA")
    form.get_by_label("Dose", exact=True).select_option("1")
    form.get_by_label("Given?").select_option("not_done")
    form.get_by_role("button", name="Record the dose").click()
    assert "needs its reason" in page.locator("#not_done_reason-error").inner_text()
    journey.shot(page, "refused-beside-the-reason")

    page.locator("#dose-form").get_by_label("Given?").select_option("completed")
    page.locator("#dose-form").get_by_label("Lot number").fill("PV-5521")
    page.locator("#dose-form").get_by_role("button", name="Record the dose").click()
    page.wait_for_url(re.compile(r"/immunizations\?done=dose-counts$"))
    assert "Given" in page.locator("#dose-PENTA-1").inner_text()
    # At a phone's width the form fits the screen: its button is not off the edge.
    button = page.locator("#dose-form").get_by_role("button", name="Record the dose").bounding_box()
    assert button is not None and button["x"] + button["width"] <= PHONE["width"]
    journey.shot(page, "dose-given")
    context.close()
    watch.assert_clean(provoked={422})


def test_a_nurse_traces_an_overdue_injection_and_gives_it_on_a_phone(browser, live_server, clinic, db, settings,
                                                                     person_factory):
    nurse, doctor = person_factory("nurse", clinic.slug), person_factory("clinician", clinic.slug)
    desk = Principal(account_id=doctor.account_id, kind="staff", display_name="Test", tenant=clinic.slug,
                     role="clinician")
    tz = facility_timezone(db, clinic.slug)
    today = dt.datetime.now(tz).date()
    with db.tenant(clinic.slug) as conn:
        woman = service.register_patient(conn, desk, PatientIn.model_validate({
            "family_name": "Jeptoo", "given_names": "Sharon", "sex": "female", "birth_date": "1998-04-02",
            "identifiers": [{"system": "national_id", "value": "FP88120455"}]}))["id"]
        service.open_encounter(conn, desk, woman, EncounterIn(encounter_class="outpatient"))
        family_planning.record_visit(conn, desk, woman, FamilyPlanningIn(
            method="DMPA_IM", quantity=1, client_type="new_acceptor", given_on=today - dt.timedelta(weeks=15)),
            programme=load_programme(settings.policies_dir / "family_planning.toml"), today=today, tz=tz)
    journey, watch = Journey("family-planning-clinic"), Watch()
    context, page = new_page(browser, watch)
    sign_in(page, live_server, nurse)
    page.set_viewport_size(PHONE)
    page.goto(f"{live_server}/t/{clinic.slug}/family-planning/due?state=overdue")
    row = page.locator(f"#client-{woman}")
    assert "JEPTOO" in row.inner_text() and "Injectable DMPA-IM" in row.inner_text()
    journey.shot(page, "clients-overdue")

    row.get_by_role("link").click()
    page.wait_for_url(re.compile(rf"/patients/{woman}/family-planning$"))
    assert "Overdue" in page.locator("#next-due").inner_text()
    form = page.locator("#visit-form")
    form.locator("#method").select_option("DMPA_IM")
    form.get_by_label("Quantity").fill("2")
    form.get_by_label("Client").select_option("continuing")
    form.get_by_role("button", name="Record the visit").click()
    assert "more than one visit gives" in page.locator("#quantity-error").inner_text()
    journey.shot(page, "refused-beside-the-quantity")

    page.locator("#visit-form").get_by_label("Quantity").fill("1")
    page.locator("#visit-form").get_by_role("button", name="Record the visit").click()
    page.wait_for_url(re.compile(r"/family-planning\?done=fp-recorded$"))
    assert "Not yet due" in page.locator("#next-due").inner_text()
    button = page.locator("#visit-form").get_by_role("button", name="Record the visit").bounding_box()
    assert button is not None and button["x"] + button["width"] <= PHONE["width"]
    journey.shot(page, "injection-given")
    context.close()
    watch.assert_clean(provoked={422})
