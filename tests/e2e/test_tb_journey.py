"""The TB clinic in a real browser (Debian's chromium, headless) against the appliance served over HTTP: a clinician
opens a coughing patient's TB tab, registers the case (numbered in the year's register), records the month 2 smear,
is refused "cured" for a clinically diagnosed case beside the outcome with the WHO rule, records treatment completed,
and finds the case and its cohort on the facility's TB register."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from appliance.layers.clinical import service
from appliance.layers.clinical.schemas import EncounterIn, PatientIn
from appliance.substrate.principal import Principal
from tests.e2e.conftest import Journey, Watch
from tests.e2e.test_journeys import new_page, sign_in

pytestmark = pytest.mark.slow


def test_a_clinician_registers_follows_and_closes_a_tb_case(browser, live_server, clinic, db, person_factory):
    doctor = person_factory("clinician", clinic.slug)
    desk = Principal(account_id=doctor.account_id, kind="staff", display_name="Test", tenant=clinic.slug,
                     role="clinician")
    with db.tenant(clinic.slug) as conn:
        patient = service.register_patient(conn, desk, PatientIn.model_validate({
            "family_name": "Njoroge", "given_names": "Samuel", "sex": "male", "birth_date": "1979-06-02",
            "identifiers": [{"system": "national_id", "value": "TB77120034"}]}))["id"]
        service.open_encounter(conn, desk, patient, EncounterIn(encounter_class="outpatient"))
    started = dt.date.today() - dt.timedelta(days=190)
    journey, watch = Journey("tb-clinic"), Watch()
    context, page = new_page(browser, watch)
    sign_in(page, live_server, doctor)
    page.goto(f"{live_server}/t/{clinic.slug}/patients/{patient}/chart")
    page.get_by_role("link", name="TB", exact=True).click()
    page.wait_for_url(re.compile(rf"/patients/{patient}/tb$"))
    form = page.locator("#register-form")
    form.get_by_label("Treatment started").fill(started.isoformat())
    form.get_by_label("Site").select_option("pulmonary")
    form.get_by_label("Bacteriological status").select_option("clinically_diagnosed")
    form.get_by_label("History of previous treatment").select_option("new")
    form.get_by_label("HIV status at the start").select_option("negative")
    form.get_by_label("Weight at the start").fill("49.5")
    form.get_by_role("button", name="Register").click()
    page.wait_for_url(re.compile(r"/tb\?done=tb-registered$"))
    card = page.locator("section[id^=treatment-]")
    assert re.search(rf"{started.year}/\d{{4}}", card.locator("h2").inner_text())
    journey.shot(page, "registered")

    follow = card.locator("form[id^=follow-up-]")
    follow.get_by_label("Month of treatment").fill("2")
    follow.get_by_label("Day").fill((started + dt.timedelta(days=61)).isoformat())
    follow.get_by_label("Sputum smear").select_option("negative")
    follow.get_by_role("button", name="Record the follow-up").click()
    page.wait_for_url(re.compile(r"/tb\?done=tb-follow-up$"))

    outcome = page.locator("section[id^=treatment-] form[id^=outcome-]")
    outcome.get_by_label("Outcome").select_option("cured")
    outcome.get_by_role("button", name="Record the outcome").click()
    refusal = page.locator("section[id^=treatment-] form[id^=outcome-] .field-error")
    assert "Cured is only for a case bacteriologically confirmed" in refusal.inner_text()
    journey.shot(page, "cured-refused")
    page.locator("section[id^=treatment-] form[id^=outcome-]").get_by_label("Outcome").select_option(
        "treatment_completed")
    page.locator("section[id^=treatment-] form[id^=outcome-]").get_by_role("button", name="Record the outcome").click()
    page.wait_for_url(re.compile(r"/tb\?done=tb-outcome$"))
    assert "Treatment completed" in page.locator("section[id^=treatment-] h2").inner_text()

    page.goto(f"{live_server}/t/{clinic.slug}/tb/register?year={started.year}")
    assert "NJOROGE" in page.locator("#register-table").inner_text()
    assert "Treatment completed" in page.locator("#register-table").inner_text()
    journey.shot(page, "register")
    context.close()
    watch.assert_clean(provoked={422})


def test_a_clinician_enrols_starts_art_and_records_a_pick_up(browser, live_server, clinic, db, person_factory):
    """The ART clinic in the TB clinic's server (one start for both programmes' journeys): a clinician opens the HIV
    care tab, is refused an enrolment without the WHO stage beside it, enrols (the facility's ART number), starts
    TDF+3TC+DTG, records 90 days of ARVs with the next appointment, and finds the person on the ART register."""
    doctor = person_factory("clinician", clinic.slug)
    desk = Principal(account_id=doctor.account_id, kind="staff", display_name="Test", tenant=clinic.slug,
                     role="clinician")
    with db.tenant(clinic.slug) as conn:
        patient = service.register_patient(conn, desk, PatientIn.model_validate({
            "family_name": "Chirwa", "given_names": "Mercy", "sex": "female", "birth_date": "1991-09-09",
            "identifiers": [{"system": "national_id", "value": "HV55120071"}]}))["id"]
        service.open_encounter(conn, desk, patient, EncounterIn(encounter_class="outpatient"))
    today = dt.date.today()
    journey, watch = Journey("art-clinic"), Watch()
    context, page = new_page(browser, watch)
    sign_in(page, live_server, doctor)
    page.goto(f"{live_server}/t/{clinic.slug}/patients/{patient}/chart")
    page.get_by_role("link", name="HIV care", exact=True).click()
    page.wait_for_url(re.compile(rf"/patients/{patient}/hiv$"))
    form = page.locator("#enrol-form")
    form.get_by_label("HIV confirmed").fill((today - dt.timedelta(days=5)).isoformat())
    form.get_by_role("button", name="Enrol").click()
    page.locator("#who_stage-error").wait_for()  # refused beside the stage, the rest kept as typed
    page.locator("#enrol-form").get_by_label("WHO clinical stage").select_option("2")
    page.locator("#enrol-form").get_by_role("button", name="Enrol").click()
    page.wait_for_url(re.compile(r"/hiv\?done=hiv-enrolled$"))
    assert re.fullmatch(r"ART-\d{5}", page.locator("#art-number").inner_text())
    page.locator("#regimen-form").get_by_role("button", name="Start ART").click()
    page.wait_for_url(re.compile(r"/hiv\?done=hiv-regimen$"))
    visit = page.locator("#visit-form")
    visit.get_by_label("ARVs dispensed").fill("90")
    visit.get_by_label("Next appointment").fill((today + dt.timedelta(days=90)).isoformat())
    visit.get_by_role("button", name="Record the visit").click()
    page.wait_for_url(re.compile(r"/hiv\?done=hiv-visit$"))
    assert "Active on ART" in page.locator("#hiv-status").inner_text()
    journey.shot(page, "on-art")
    page.goto(f"{live_server}/t/{clinic.slug}/hiv/register")
    assert "CHIRWA" in page.locator("#register-table").inner_text()
    context.close()
    watch.assert_clean(provoked={422})
