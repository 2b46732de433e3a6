"""The fluid balance chart in a real browser (Debian's chromium, headless) against the appliance served over HTTP,
at a phone's width: a nurse at the bedside charts a catheter bag that holds too little, after a volume the chart
refuses beside its field; the chart flags oliguria and the ward worklist shows it with the day's balance. And, on the
same server, the ward's diet order: ordered from the chart's Diet tab after a combination refused beside its field,
shown on the ward board and on the kitchen's list."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from appliance.layers.clinical import service
from appliance.layers.clinical.schemas import AllergyIn, EncounterIn, PatientIn, VitalSignsIn
from appliance.layers.nursing import fluid
from appliance.substrate.principal import Principal
from tests.e2e.conftest import Journey, Watch
from tests.e2e.test_journeys import new_page, sign_in

pytestmark = pytest.mark.slow
PHONE = {"width": 390, "height": 844}


def test_a_nurse_charts_scanty_urine_on_a_phone_and_the_ward_sees_oliguria(browser, live_server, clinic, db,
                                                                           person_factory):
    nurse, doctor = person_factory("nurse", clinic.slug, ward="GEN"), person_factory("clinician", clinic.slug)
    desk = Principal(account_id=doctor.account_id, kind="staff", display_name="Test", tenant=clinic.slug,
                     role="clinician")
    now = dt.datetime.now(dt.UTC)
    with db.tenant(clinic.slug) as conn:
        patient = service.register_patient(conn, desk, PatientIn.model_validate({
            "family_name": "Barasa", "given_names": "Tom", "birth_date": "1962-03-09", "sex": "male",
            "identifiers": [{"system": "national_id", "value": "27730418"}]}))["id"]
        encounter = service.open_encounter(conn, desk, patient, EncounterIn(
            encounter_class="inpatient", status="in_progress", ward_code="GEN", reason="Post-operative, laparotomy"))
        service.record_vitals(conn, desk, patient, VitalSignsIn(weight_kg=70, encounter_id=encounter["id"]))
        # The catheter bag emptied seven hours ago: the chart covers the six hours the next measurement closes.
        fluid.record_line(conn, desk, patient, direction="output", route="urine", volume_ml=220,
                          occurred_at=now - dt.timedelta(hours=7), note=None, now=now)
    journey, watch = Journey("fluid-balance-oliguria"), Watch()
    context, page = new_page(browser, watch)
    sign_in(page, live_server, nurse)
    page.set_viewport_size(PHONE)
    page.goto(f"{live_server}/t/{clinic.slug}/patients/{patient}/fluids")
    form = page.locator("form.fluid-entry")
    form.get_by_label("What").select_option("output:urine")
    form.get_by_label("Volume").fill("9000")
    form.get_by_role("button", name="Chart it").click()
    assert "more than one line of the chart holds" in page.locator("#volume_ml-error").inner_text()
    journey.shot(page, "refused-beside-the-volume")

    page.locator("form.fluid-entry").get_by_label("Volume").fill("40")
    page.locator("form.fluid-entry").get_by_role("button", name="Chart it").click()
    page.wait_for_url(re.compile(r"/fluids\?done=fluid$"))
    # 40 ml in six hours at 70 kg: 0.10 ml/kg/h, below KDIGO's 0.5.
    assert "0.10 ml/kg/h" in page.locator("#oliguria").inner_text()
    button = page.locator("form.fluid-entry").get_by_role("button", name="Chart it").bounding_box()
    assert button is not None and button["x"] + button["width"] <= PHONE["width"]
    journey.shot(page, "oliguria-flagged")

    page.goto(f"{live_server}/t/{clinic.slug}/ward")
    assert "BARASA, Tom" in page.locator("#oliguria-alert").inner_text()
    assert "oliguria" in page.locator(f"tr[data-patient='{patient}'] .fluid-cell").inner_text()
    journey.shot(page, "worklist-oliguria")
    context.close()
    watch.assert_clean(provoked={422})


def test_a_nurse_orders_a_diabetic_diet_and_the_kitchen_list_shows_it_with_the_food_allergy(
        browser, live_server, clinic, db, person_factory):
    nurse, doctor = person_factory("nurse", clinic.slug, ward="GEN"), person_factory("clinician", clinic.slug)
    desk = Principal(account_id=doctor.account_id, kind="staff", display_name="Test", tenant=clinic.slug,
                     role="clinician")
    with db.tenant(clinic.slug) as conn:
        patient = service.register_patient(conn, desk, PatientIn.model_validate({
            "family_name": "Chelimo", "given_names": "Agnes", "birth_date": "1957-11-02", "sex": "female",
            "identifiers": [{"system": "national_id", "value": "21904736"}]}))["id"]
        service.open_encounter(conn, desk, patient, EncounterIn(
            encounter_class="inpatient", status="in_progress", ward_code="GEN", reason="Diabetic foot ulcer"))
        service.add_allergy(conn, desk, patient, AllergyIn(substance="Groundnuts", category="food",
                                                           criticality="high"))
    journey, watch = Journey("diet-order-kitchen"), Watch()
    context, page = new_page(browser, watch)
    sign_in(page, live_server, nurse)
    page.goto(f"{live_server}/t/{clinic.slug}/patients/{patient}/diet")
    assert "Groundnuts" in page.locator("#diet-allergies").inner_text()
    page.locator("select#diet").select_option("npo")
    page.get_by_label("Halal").check()
    page.get_by_role("button", name="Order it").click()
    assert "nothing is combined with it" in page.locator("#f\\.also-error").inner_text()
    journey.shot(page, "refused-beside-the-combination")
    page.locator("select#diet").select_option("diabetic")
    page.get_by_label("Texture (dysphagia)").select_option("6")
    page.get_by_role("button", name="Order it").click()
    page.wait_for_url(re.compile(r"/diet\?done=diet$"))
    assert "Diabetic, halal; IDDSI 6 Soft and bite-sized" in page.locator("#diet-label").inner_text()
    journey.shot(page, "diet-ordered")
    page.goto(f"{live_server}/t/{clinic.slug}/ward")
    assert "Diabetic, halal" in page.locator(f"tr[data-patient='{patient}'] .diet-cell").inner_text()
    page.goto(f"{live_server}/t/{clinic.slug}/kitchen?meal=supper&ward=GEN")
    row = page.locator(f"tr[data-patient='{patient}']").inner_text()
    assert "Diabetic, halal" in row and "Groundnuts" in row and "6 Soft and bite-sized" in row
    journey.shot(page, "kitchen-list")
    context.close()
    watch.assert_clean(provoked={422})
